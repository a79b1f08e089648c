#!/bin/sh
# An example agent for `runledger runner --command './scripts/my-agent.sh'` (README, "How to
# run a runner"): it reads the task on stdin, says what it does, and adds the task to
# AGENT_NOTES.md in the run's worktree, which the runner then commits and reports as changes.
task=$(cat)
echo "my-agent: working on: $task"
printf '%s\n' "$task" >> AGENT_NOTES.md
echo "my-agent: wrote AGENT_NOTES.md"
