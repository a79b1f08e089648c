"""`runledger runs|tail|gates|board`: the API for people at a terminal (adapters/user_api.py
speaks HTTP). Readable tables by default, `--json` for scripts.

Exit status: 0 when the command did what it was asked (`tail`: the run ended `completed`
or `merged`); `tail` ends with 1 for `failed` or `merge_failed`, 3 for `declined`, 4 for
`cancelled`; 2 when the server refused the request (a bad id, a run in the wrong state, a
bad key) or the command line is wrong; 5 when the server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.user_api import ApiError, Unreachable, UserApi
from api import user_views as views
from domain.runs.states import STATUSES

COMMANDS = ("runs", "tail", "gates", "board")
REFUSED, UNREACHABLE = 2, 5
EPILOG = (
    "exit status: 0 done; 2 refused by the server or a bad command line; 5 server "
    "unreachable; `tail` also 1 (failed, merge_failed), 3 (declined), 4 (cancelled)"
)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("RUNLEDGER_SERVER", "http://127.0.0.1:8000"),
        help="the server's URL (RUNLEDGER_SERVER, else http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--key",
        help="a user key (default: RUNLEDGER_KEY, else the key `runledger serve` generated "
        "in the data directory, RUNLEDGER_DATA_DIR/api-key, when there is one)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def _command(
    parent: Any, name: str, help_text: str, handler: Callable[..., int]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = parent.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=EPILOG,
        formatter_class=_Help,
    )
    _connection_flags(parser)
    parser.set_defaults(handler=handler)
    return parser


def add_commands(commands: Any) -> None:
    """The user subcommands, on the `runledger` parser's subparsers."""
    runs = commands.add_parser("runs", help="list, show, submit and decide runs")
    verbs = runs.add_subparsers(dest="verb", required=True, metavar="VERB")

    listing = _command(verbs, "list", "list your runs, newest first", views.list_runs)
    listing.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        metavar="STATUS",
        help="only runs in this status; repeatable; one of " + ", ".join(STATUSES),
    )
    listing.add_argument("--project", help="only this project's runs (its id)")
    listing.add_argument("--parent", help="only the children of this coordinator run")
    listing.add_argument("--archived", action="store_true", help="include archived runs")
    listing.add_argument("--limit", type=int, default=50, help="runs to show (1..500)")

    show = _command(verbs, "show", "show one run", views.show_run)
    show.add_argument("run", help="the run's id")
    show.add_argument("--at-sequence", type=int, help="the run as it stood after event N")

    submit = _command(verbs, "submit", "submit a run", views.submit_run)
    submit.add_argument("task", help="what to do; - reads it from standard input")
    submit.add_argument("--project", help="the project whose repository the run works in")
    submit.add_argument("--branch", help="the branch to start from and merge into")
    submit.add_argument("--agent", help="which agent the runner should use")
    submit.add_argument("--model", help="which model the agent should use")
    submit.add_argument("--max-attempts", type=int, help="1..10 (server default 1)")
    submit.add_argument("--auto-approve-tools", action="store_true", help="no tool gates")

    cancel = _command(verbs, "cancel", "cancel a run", views.decide("cancel"))
    cancel.add_argument("run", help="the run's id")
    cancel.add_argument("--reason", help="why (kept in the run's history)")
    for verb, text in (
        ("approve", "approve a run's review: it is merged"),
        ("decline", "decline a run's review: it ends declined"),
        ("request-changes", "send a run back to its runner with a comment"),
    ):
        review = _command(verbs, verb, text, views.decide(verb))
        review.add_argument("run", help="the run's id")
        review.add_argument(
            "--comment", required=verb == "request-changes", help="for the runner and the log"
        )
    retry = _command(
        verbs, "retry", "start a failed run again, as a new run", views.decide("retry")
    )
    retry.add_argument("run", help="the failed run's id")

    tail = _command(commands, "tail", "follow a run's events until it ends", views.tail)
    tail.add_argument("run", help="the run's id")
    tail.add_argument("--after", type=int, default=0, help="start after this sequence")
    tail.add_argument(
        "--give-up-after",
        type=float,
        default=300.0,
        help="seconds without reaching the server before giving up (exit 5)",
    )

    gates = commands.add_parser("gates", help="list and resolve a run's gates")
    gate_verbs = gates.add_subparsers(dest="verb", required=True, metavar="VERB")
    listed = _command(gate_verbs, "list", "list a run's open gates", views.list_gates)
    listed.add_argument("run", help="the run's id")
    resolve = _command(gate_verbs, "resolve", "resolve an open gate", views.resolve_gate)
    resolve.add_argument("run", help="the run's id")
    resolve.add_argument("gate", help="the gate's id (from `runledger gates list`)")
    decision = resolve.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", action="store_true", help="let the tool call go ahead")
    decision.add_argument("--deny", action="store_true", help="refuse it")
    decision.add_argument("--answer", help="answer the agent's question")
    resolve.add_argument(
        "--scope", choices=("once", "run"), default="once", help="run: for the rest of the run"
    )

    board = _command(commands, "board", "show a project's board", views.show_board)
    board.add_argument("project", help="the project's id")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run a user subcommand; its exit status."""
    key = args.key or os.environ.get("RUNLEDGER_KEY") or _local_key()
    if not key:
        parser.error("no key: pass --key or set RUNLEDGER_KEY")
    try:
        api = UserApi(args.server, key)
    except ValueError as exc:
        parser.error(f"--server: {exc}")
    try:
        code: int = args.handler(api, args)
        return code
    except ApiError as exc:
        if args.json:
            print(json.dumps({"status": exc.status, **exc.body}))
        now = f" (the run is {exc.body['status']})" if exc.body.get("status") else ""
        print(f"runledger: {exc.status} {exc.error}: {exc.detail}{now}", file=sys.stderr)
        return REFUSED
    except Unreachable as exc:
        print(f"runledger: cannot reach the server: {exc}", file=sys.stderr)
        return UNREACHABLE
    except views.Usage as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130


def _local_key() -> str | None:
    """The key `runledger serve` generated for the user `local`, if this directory has one."""
    path = Path(os.environ.get("RUNLEDGER_DATA_DIR", ".runledger")) / "api-key"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
