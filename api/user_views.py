"""What each user subcommand does and prints (api/user_cli.py parses the command line):
readable tables and lines for people, the API's own JSON with `--json`."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from adapters.user_api import UserApi, quote

Handler = Callable[[UserApi, argparse.Namespace], int]
ENDED = {"completed": 0, "merged": 0, "failed": 1, "merge_failed": 1, "declined": 3, "cancelled": 4}


class Usage(ValueError):
    """A command line the server would refuse anyway: said before asking it."""


def _out(line: str = "") -> None:
    print(line, flush=True)


def _json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), flush=True)


def _width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


CONTROL = dict.fromkeys([*range(0, 32), *range(127, 160)], " ")  # C0, DEL, C1


def _clip(text: str, width: int) -> str:
    """One line of at most `width` characters, with no control character (agent output
    could otherwise move the cursor, retitle the terminal, or hide lines)."""
    line = " ".join(str(text).translate(CONTROL).split())
    return line if len(line) <= width else line[: max(1, width - 1)] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Columns padded to their widest cell; the last one clipped to the terminal."""
    cells = [[str("" if v is None else v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers[:-1])]
    room = max(20, _width() - sum(widths) - 2 * len(widths))

    def line(values: Sequence[str]) -> str:
        head = "  ".join(v.ljust(w) for v, w in zip(values[:-1], widths, strict=False))
        return (head + "  " if head else "") + _clip(values[-1], room)

    return [line(list(headers)), *(line(r) for r in cells)]


def _when(stamp: str | None) -> str:
    """An RFC 3339 time to the second: 2026-12-03 10:04:05."""
    return "" if not stamp else stamp[:19].replace("T", " ")


# -- runs ----------------------------------------------------------------------------------


def list_runs(api: UserApi, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 500:
        raise Usage("--limit must be 1..500")
    params = {
        "status": args.status or None,
        "project_id": args.project,
        "parent_run_id": args.parent,
        "archived": "true" if args.archived else None,
        "limit": args.limit,
    }
    page = api.get("/api/runs", **params)
    if args.json:
        _json(page)
        return 0
    rows = [
        (r["run_id"], r["status"], _when(r.get("updated_at")), r.get("task", ""))
        for r in page["items"]
    ]
    if not rows:
        _out("no runs")
        return 0
    for text in table(("RUN", "STATUS", "UPDATED", "TASK"), rows):
        _out(text)
    if page.get("next_cursor"):
        _out(f"… more runs than {args.limit}: raise --limit, or filter")
    return 0


def show_run(api: UserApi, args: argparse.Namespace) -> int:
    params = {} if args.at_sequence is None else {"at_sequence": args.at_sequence}
    run = api.get(f"/api/runs/{quote(args.run)}", **params)
    if args.json:
        _json(run)
        return 0
    for line in describe_run(run):
        _out(line)
    return 0


def describe_run(run: dict[str, Any]) -> list[str]:
    """A run read model as `field: value` lines, the empty ones left out."""
    failure = run.get("failure") or {}
    review = run.get("review") or {}
    stats = run.get("diff_stats") or {}
    fields = [
        ("run", run.get("run_id")),
        ("status", run.get("status")),
        ("task", _clip(run.get("task", ""), _width() - 12)),
        ("project", run.get("project_id")),
        ("parent", run.get("parent_run_id")),
        ("retried from", run.get("retried_from")),
        ("attempt", f"{run.get('attempt')} of {run.get('max_attempts')}"),
        ("revision", run.get("revision") or None),
        ("created", _when(run.get("created_at"))),
        ("started", _when(run.get("started_at"))),
        ("ended", _when(run.get("ended_at"))),
        ("events", run.get("last_sequence")),
        ("failure", failure and f"{failure.get('category')}: {failure.get('message')}"),
        (
            "review",
            review
            and f"{review.get('decision')} by {review.get('reviewer')}"
            + (f": {review['comment']}" if review.get("comment") else ""),
        ),
        (
            "changes",
            stats and f"{stats.get('files')} files +{stats.get('added')} -{stats.get('removed')}",
        ),
        ("merge", run.get("merge_result")),
    ]
    lines = [
        f"{name + ':':<14}{_clip(str(value), 1000)}"
        for name, value in fields
        if value not in (None, "", {})
    ]
    for gate in run.get("open_gates") or []:
        lines.append(
            f"{'open gate:':<14}{gate['gate_id']} {gate['kind']}: {gate.get('prompt', '')}"
        )
    return lines


def submit_run(api: UserApi, args: argparse.Namespace) -> int:
    task = sys.stdin.read() if args.task == "-" else args.task
    if not task.strip():
        raise Usage("the task is empty")
    body: dict[str, Any] = {"task": task}
    for field, value in (
        ("project_id", args.project),
        ("originating_branch", args.branch),
        ("agent", args.agent),
        ("model", args.model),
        ("max_attempts", args.max_attempts),
    ):
        if value is not None:
            body[field] = value
    if args.auto_approve_tools:
        body["auto_approve_tools"] = True
    answer = api.post("/api/runs", body)
    if args.json:
        _json(answer)
    else:
        _out(f"{answer['run_id']} {answer['status']}")
    return 0


def decide(verb: str) -> Handler:
    """The handler of `runs cancel|approve|decline|request-changes|retry`."""

    def handler(api: UserApi, args: argparse.Namespace) -> int:
        path = f"/api/runs/{quote(args.run)}"
        if verb == "cancel":
            answer = api.post(f"{path}/cancel", {"reason": args.reason} if args.reason else {})
        elif verb == "retry":
            answer = api.post(f"{path}/retry")
        else:
            body: dict[str, Any] = {"approved": verb == "approve"}
            if verb == "request-changes":
                body["request_changes"] = True
            if args.comment:
                body["comment"] = args.comment
            answer = api.post(f"{path}/review", body)
        if args.json:
            _json(answer)
        elif verb == "retry":
            _out(f"{answer['run_id']} {answer['status']} (retries {answer['retried_from']})")
        else:
            _out(f"{answer['run_id']} {answer['status']}")
        return 0

    return handler


# -- tail ----------------------------------------------------------------------------------


def summary(event: dict[str, Any]) -> str:
    """One line about an event's data, for people."""
    data = event.get("data") or {}
    kind = event["type"]
    for field in ("line", "text", "prompt", "message", "comment", "instruction", "reason"):
        if isinstance(data.get(field), str) and data[field]:
            return str(data[field])
    if kind == "run.failed" and isinstance(data.get("failure"), dict):
        return f"{data['failure'].get('category')}: {data['failure'].get('message')}"
    if kind.startswith("tool.") and data.get("name"):
        return str(data["name"])
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) if data else ""


def tail(api: UserApi, args: argparse.Namespace) -> int:
    def reconnecting(last: int, reason: str) -> None:
        print(f"runledger: {reason}; resuming after event {last}", file=sys.stderr, flush=True)

    last, got = args.after, False
    width = _width()
    for event in api.follow(quote(args.run), args.after, reconnecting, args.give_up_after):
        last, got = event["sequence"], True
        if args.json:
            _json(event)
        else:
            head = f"{last:>6}  {event['at'][11:23]}  {event['type']:<22}  "
            _out(head + _clip(summary(event), max(20, width - len(head))))
    # The run as it stood after the last event received: rebuilt from the events, never
    # behind. With none received (it had ended before --after), as the read model has it.
    found = api.get(f"/api/runs/{quote(args.run)}", **({"at_sequence": last} if got else {}))
    status = str(found["status"])
    print(f"runledger: run {args.run} ended {status}", file=sys.stderr, flush=True)
    return ENDED.get(status, 0)


# -- gates and the board -------------------------------------------------------------------


def list_gates(api: UserApi, args: argparse.Namespace) -> int:
    gates = api.get(f"/api/runs/{quote(args.run)}").get("open_gates") or []
    if args.json:
        _json(gates)
    elif not gates:
        _out("no open gates")
    else:
        rows = [
            (g["gate_id"], g["kind"], _when(g.get("opened_at")), g.get("prompt", "")) for g in gates
        ]
        for text in table(("GATE", "KIND", "OPENED", "PROMPT"), rows):
            _out(text)
    return 0


def resolve_gate(api: UserApi, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"scope": args.scope}
    if args.answer is not None:
        body.update(decision="answer", answer=args.answer)
    else:
        body["decision"] = "approve" if args.approve else "deny"
    answer = api.post(f"/api/runs/{quote(args.run)}/gates/{quote(args.gate)}", body)
    if args.json:
        _json(answer)
    else:
        gate, run = f"gate {answer['gate_id']} {answer['decision']}", answer["run_id"]
        _out(f"{gate}; run {run} {answer['status']}")
    return 0


def show_board(api: UserApi, args: argparse.Namespace) -> int:
    board = api.get(f"/api/projects/{quote(args.project)}/board")
    if args.json:
        _json(board)
        return 0
    width = _width()
    for column in board["columns"]:
        tasks = column["tasks"]
        _out(f"{column['name'].upper().replace('_', ' ')} ({len(tasks)})")
        for task in tasks:
            run = task.get("run") or {}
            state = f"  [{run['status']}]" if run.get("status") else ""
            failed = task.get("last_failure")
            note = f"  (last run failed: {failed.get('category')})" if failed else ""
            line = f"  {task['rank']:>3}  {task['task_id']}  "
            _out(line + _clip(task["title"] + state + note, max(20, width - len(line))))
    return 0
