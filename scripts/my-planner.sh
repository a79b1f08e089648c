#!/bin/sh
# An example planner for `runledger runner --plan --command './scripts/my-planner.sh'`
# (README, "How to run a runner"): it reads the task on stdin and prints a work plan of two
# subtasks, tests first, then the code; the engine dispatches each as a child run.
task=$(head -n 1 | sed 's/\\/\\\\/g; s/"/\\"/g')
cat <<PLAN
{"subtasks": [
  {"key": "tests", "title": "Write the tests for: $task"},
  {"key": "code", "title": "Make the tests pass: $task", "depends_on": ["tests"]}
]}
PLAN
