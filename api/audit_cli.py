"""`runledger verify`, `runledger export` and `runledger import` (docs/audit.md).

Each works on a database (`--database`, as `serve`), also a stopped server's; verify and
export only read it. A progress bar on a terminal (rich), a plain line every so often
otherwise. Exit status 0 when everything checks; 1 when something does not, each failure
printed as `run <id> sequence <n>: <reason>` (or project, checkpoint, line); 2 when the
command cannot run (no store there, not empty, no such file).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapters.ledger_verify import KeptCheckpoint, Report
from adapters.store_audit import Progress
from api.config import Config

COMMANDS = ("verify", "export", "import")
PLAIN_EVERY = 10.0  # seconds between two progress lines when not on a terminal


def add_commands(commands: Any) -> None:
    """Register the three commands on the `runledger` parser's subcommands."""
    verify = commands.add_parser("verify", help="check chains, the Merkle log, checkpoints")
    _scope(verify)
    verify.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="a signed checkpoint kept from before: the history must still extend it",
    )
    verify.add_argument("--file", type=Path, help="verify this export offline (no database)")
    verify.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="KEY",
        help="the log's verifier key (vkey text, or a file holding it); repeatable",
    )
    verify.add_argument("--database")
    export = commands.add_parser("export", help="write the history as NDJSON")
    _scope(export)
    export.add_argument("-o", "--output", type=Path, help="the file (default: stdout)")
    export.add_argument("--database")
    load = commands.add_parser("import", help="store an export in an empty database")
    load.add_argument("file", type=Path)
    load.add_argument("--database")


def _scope(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--run", metavar="ID")
    group.add_argument("--project", metavar="ID")
    group.add_argument("--all", action="store_true", help="everything (the default)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run one of the three commands."""
    from uuid import UUID

    try:
        Config.from_env(database_url=args.database)  # a malformed RUNLEDGER_* said now
    except ValueError as exc:
        parser.error(str(exc))
    scope: tuple[str, str | None] = ("all", None)
    for name in ("run", "project"):
        value = getattr(args, name, None)
        if value is not None:
            try:
                scope = (name, str(UUID(value)))
            except ValueError:
                parser.error(f"--{name} wants a UUID; not {value!r}")
    try:
        if args.subcommand == "verify":
            return _verify(args, parser, scope)
        if args.subcommand == "export":
            return _export(args, scope)
        return _import(args)
    except (LookupError, OSError, RuntimeError) as exc:
        print(f"runledger {args.subcommand}: {exc}", file=sys.stderr)
        return 2


def _settings(args: argparse.Namespace) -> Any:
    return Config.from_env(database_url=args.database).store_settings()


def _verify(
    args: argparse.Namespace, parser: argparse.ArgumentParser, scope: tuple[str, str | None]
) -> int:
    keys = [_key(value) for value in args.public_key]
    if args.file is not None:
        from adapters.export_verify import verify_export

        if args.checkpoint or args.database or scope[0] != "all":
            parser.error("--file verifies the export alone: no --checkpoint, --database, scope")
        with args.file.open("rb") as lines, meter("verify", None) as step:
            report = verify_export(lines, keys, step)
        return _conclude("verify", report)
    if args.checkpoint and scope[0] != "all":
        parser.error("--checkpoint holds the whole log: use it with --all")
    from adapters.ledger_verify import verify_store
    from adapters.store_audit import count_events, open_store

    kept = [KeptCheckpoint(f"checkpoint file {f}", Path(f).read_text()) for f in args.checkpoint]
    db = open_store(_settings(args))
    try:
        total = count_events(db) if scope[0] == "all" else None
        with meter("verify", total) as step:
            report = verify_store(db, scope, kept, keys, step)
    finally:
        db.close()
    return _conclude("verify", report)


def _key(value: str) -> str:
    """A vkey given as text, or the text of a file that holds one."""
    path = Path(value)
    if "+" not in value and path.is_file():
        return path.read_text().strip()
    return value.strip()


def _conclude(command: str, report: Report) -> int:
    for failure in report.failures:
        print(failure, flush=False)
    for note in report.notes:
        print(f"runledger {command}: note: {note}")
    tree = ""
    if report.tree_size is not None and report.root_hash is not None:
        tree = f", Merkle tree of {report.tree_size} with root {report.root_hash.hex()}"
    verdict = "ok" if report.ok else f"FAILED ({len(report.failures)} failures)"
    print(
        f"runledger {command}: {verdict}: {report.events} events in {report.streams} streams"
        f"{tree}, {report.checkpoints} checkpoints",
        flush=True,
    )
    return 0 if report.ok else 1


def _export(args: argparse.Namespace, scope: tuple[str, str | None]) -> int:
    from adapters.ledger_export import export
    from adapters.store_audit import count_events, open_store

    db = open_store(_settings(args))
    try:
        total = count_events(db) if scope[0] == "all" else None
        with _output(args.output) as out, meter("export", total) as step:
            written = export(db, scope, out, step)
    finally:
        db.close()
    print(f"runledger export: {written} events", file=sys.stderr)
    return 0


@contextmanager
def _output(path: Path | None) -> Iterator[Any]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        yield out
    partial.replace(path)  # a complete file, or none


def _import(args: argparse.Namespace) -> int:
    from api.service.ledger_import import import_file
    from api.service.runtime import Runtime

    if not args.file.is_file():
        raise FileNotFoundError(f"no file {args.file}")
    runtime = Runtime(Config.from_env(database_url=args.database))
    try:
        with meter("import", None) as step:  # checked, then stored
            report = import_file(runtime, args.file, step, step)
    finally:
        runtime.close()
    if not report.ok:
        print("runledger import: refused, nothing stored", file=sys.stderr)
    return _conclude("import", report)


@contextmanager
def meter(label: str, total: int | None) -> Iterator[Progress]:
    """A progress counter of events: a bar on a terminal, else a line now and then."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress as Bar

        # On stderr: stdout may be the export itself.
        with Bar(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n: bar.advance(task, n)
        return
    done, last = 0, time.monotonic()

    def step(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= PLAIN_EVERY:
            last = now
            of = f"/{total}" if total is not None else ""
            print(f"runledger {label}: {done}{of} events", file=sys.stderr, flush=True)

    yield step
