"""The reference runner's work directories and what goes in and out of its command: a run's
worktree or scratch directory removed when its attempt ends, `runner --cleanup` for what
older versions left, the command's program found from where the runner was started, the
text on its stdin and a planner's plan from its stdout. Standard library only."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from adapters import git

log = logging.getLogger("runledger.runner")


def remove_workspace(where: Path, repo: str | None) -> None:
    """Remove a run's worktree (its branch stays: a redo checks it out again) or scratch
    directory; quiet when it is gone already."""
    try:
        if repo is not None and (where / ".git").exists():
            git.remove_worktree(repo, where)
        if where.exists():
            shutil.rmtree(where, ignore_errors=True)
    except (OSError, git.GitError):
        log.warning("could not remove %s", where, exc_info=True)


def cleanup(workdir: Path) -> int:
    """`runner --cleanup`: remove every run's worktree and scratch directory left in
    `workdir` (their branches stay); 0, or 1 if one could not be removed."""
    if not workdir.is_dir():
        print(f"runledger runner: nothing to clean up in {workdir} (no such directory)")
        return 0
    failed = 0
    removed = 0
    for where in sorted(workdir.iterdir()):
        if not where.is_dir():
            continue
        repo = git.main_repository(where) if (where / ".git").is_file() else None
        remove_workspace(where, repo)
        if where.exists():
            failed += 1
            print(f"runledger runner: could not remove {where}", file=sys.stderr)
        else:
            removed += 1
    print(f"runledger runner: removed {removed} run director{'y' if removed == 1 else 'ies'}")
    return 1 if failed else 0


def resolve_command(command: str, cwd: Path) -> str:
    """The command with a relative program path (`./my-agent.sh`, `scripts/agent`) made
    absolute from `cwd`, the directory the runner was started in: the command runs in
    each run's worktree, where that path would mean something else. A bare name (found on
    PATH), an absolute path, or a program written with quotes or shell syntax is left as
    it is."""
    stripped = command.lstrip()
    program, _, rest = stripped.partition(" ")
    if "/" not in program or program.startswith("/") or program.startswith("~"):
        return command
    if any(c in program for c in "'\"$`\\;&|<>()*?[]{}="):
        return command
    found = (cwd / program).resolve()
    if not found.exists():
        return command
    return shlex.quote(str(found)) + (" " + rest if rest else "")


def plan_body(text: str) -> dict[str, Any]:
    """A planner's stdout as a work plan's body: `{"subtasks": […],
    "auto_approve_children"?}` or the bare list of subtasks (ValueError otherwise)."""
    found = json.loads(text)
    if isinstance(found, list):
        return {"subtasks": found}
    if isinstance(found, dict) and isinstance(found.get("subtasks"), list):
        return {k: v for k, v in found.items() if k in ("subtasks", "auto_approve_children")}
    raise ValueError("expected a JSON object with a subtasks list, or a list of subtasks")


def task_text(task: str, directives: list[dict[str, Any]]) -> str:
    """What the command reads on stdin: the task, then one paragraph per directive so far,
    `Redirect: <instruction>` or `Amend: <instruction>`."""
    said = [f"{d['kind'].capitalize()}: {d['instruction']}" for d in directives]
    return "\n\n".join([task, *said])
