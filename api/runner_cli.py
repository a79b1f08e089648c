"""`runledger runner`: the reference runner's command line (adapters/runner_agent.py does
the work)."""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from adapters.runner_formats import FORMATS
from adapters.runner_process import kill_every_group

DEFAULT_AUTHOR = "runledger <runledger@localhost>"
STOP_SECONDS = 5.0  # how long a SIGTERM's unwinding may take before the runner ends at once
_stopping = threading.Event()


def add_parser(commands: Any) -> None:
    """The `runner` subcommand and its flags."""
    agent = commands.add_parser(
        "runner",
        help="claim runs and do them with a command",
        description="Claim runs from a runledger server and do each with a command, in a git "
        "worktree of the run's repository (or a scratch directory), streaming its output.",
    )
    agent.add_argument(
        "--server",
        default=os.environ.get("RUNLEDGER_SERVER", "http://127.0.0.1:8000"),
        help="the server's URL (RUNLEDGER_SERVER; default http://127.0.0.1:8000)",
    )
    agent.add_argument(
        "--key",
        default=os.environ.get("RUNLEDGER_RUNNER_KEY"),
        help="a key with the runner role (RUNLEDGER_RUNNER_KEY)",
    )
    agent.add_argument(
        "--command",
        help="the agent: a shell command run with the task on stdin; a relative program "
        "path (./my-agent.sh) is found from the directory you start the runner in",
    )
    agent.add_argument("--runner-id", default=f"{socket.gethostname()}-{os.getpid()}")
    agent.add_argument(
        "--workdir", default=".runledger-runner", help="worktrees go here (.runledger-runner)"
    )
    agent.add_argument("--once", action="store_true", help="exit after one run")
    agent.add_argument(
        "--plan",
        action="store_true",
        help="a planner: the command prints a work plan (JSON) that the run's children do",
    )
    agent.add_argument(
        "--exit-category",
        action="append",
        default=[],
        metavar="STATUS=CATEGORY",
        help="map an exit status to a failure category (e.g. 3=flaky-test)",
    )
    agent.add_argument(
        "--git-author",
        default=DEFAULT_AUTHOR,
        metavar="'NAME <EMAIL>'",
        help="who commits the agent's changes when the repository has no user.name and "
        f"user.email configured (default {DEFAULT_AUTHOR!r})",
    )
    agent.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="end an agent that printed nothing for this long, and report the run failed "
        "(runner-transient): agent CLIs sometimes hang without a final message",
    )
    agent.add_argument(
        "--format",
        choices=FORMATS,
        default="lines",
        help="how to read the agent's stdout: lines (each line is tool.output, the default), "
        "claude-stream-json (claude -p --output-format stream-json --verbose) or codex-json "
        "(codex exec --json): messages, tool calls, turns and token usage become events",
    )
    agent.add_argument(
        "--cleanup",
        action="store_true",
        help="remove the worktrees and scratch directories left in --workdir (by an earlier "
        "version, or a runner that was killed), then exit; uncommitted changes in them are lost",
    )


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the reference runner (or its cleanup) as the flags say."""
    from adapters.git import parse_author
    from adapters.runner_agent import DEFAULT_EXIT_CATEGORIES, RunnerConfig, serve_forever
    from adapters.runner_workspace import cleanup, resolve_command
    from domain.runs.states import FAILURE_CATEGORIES

    workdir = Path(args.workdir)
    if args.cleanup:
        return cleanup(workdir)
    if not args.command:
        parser.error("runner needs --command: the agent to run for each claimed run")
    if not args.key:
        parser.error("runner needs --key (or RUNLEDGER_RUNNER_KEY): a key with the runner role")
    categories = dict(DEFAULT_EXIT_CATEGORIES)
    for entry in args.exit_category:
        status, _, category = entry.partition("=")
        if not status.strip().lstrip("-").isdigit() or category not in FAILURE_CATEGORIES:
            parser.error(
                f"--exit-category wants STATUS=CATEGORY with a category of "
                f"{', '.join(FAILURE_CATEGORIES)}; not {entry!r}"
            )
        categories[int(status)] = category
    author = parse_author(args.git_author)
    if author is None:
        parser.error(f"--git-author wants 'NAME <EMAIL>'; not {args.git_author!r}")
    if args.idle_timeout is not None and not args.idle_timeout > 0:
        parser.error("--idle-timeout wants a number of seconds above 0")
    config = RunnerConfig(
        server=args.server,
        key=args.key,
        command=resolve_command(args.command, Path.cwd()),
        runner_id=args.runner_id,
        workdir=workdir,
        exit_categories=categories,
        once=args.once,
        plan=args.plan,
        author=author,
        idle_timeout=args.idle_timeout,
        format=args.format,
    )
    stop_on_sigterm()
    try:
        return serve_forever(config)
    except KeyboardInterrupt:
        return 130


def stop_on_sigterm() -> None:
    """A SIGTERM unwinds like Ctrl-C, so the agent's process group (a session of its own,
    which a terminal's Ctrl-C does not reach) is ended on the way out."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(sig: int, frame: FrameType | None) -> None:
    """Unwind (the agent's group is ended on the way out), under a watchdog: a runner that
    has not gone within STOP_SECONDS says where it stood, kills its agents and exits.
    A second SIGTERM while unwinding changes nothing."""
    if _stopping.is_set():
        return
    _stopping.set()
    threading.Thread(target=_stop_watchdog, name="stop-watchdog", daemon=True).start()
    faulthandler.dump_traceback_later(STOP_SECONDS + 3, exit=True)  # should Python itself hang
    raise SystemExit(128 + signal.SIGTERM)


def _stop_watchdog() -> None:
    time.sleep(STOP_SECONDS)
    print(
        f"runledger runner: still stopping after {STOP_SECONDS:g} s; its threads were at:",
        file=sys.stderr,
        flush=True,
    )
    faulthandler.dump_traceback(all_threads=True)
    kill_every_group()
    os._exit(128 + signal.SIGTERM)
