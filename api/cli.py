"""The `runledger` command: `serve`, `runner`, `projections rebuild|status`, the audit's
`verify`, `export` and `import` (api/audit_cli.py), and the user's `runs`, `tail`, `gates`
and `board` over the HTTP API (api/user_cli.py)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from api import audit_cli, projections_cli, runner_cli, user_cli
from api.config import ROLES, Config
from api.workers import reuse_port_socket, supervise, usable_cpus

if TYPE_CHECKING:
    from starlette.applications import Starlette

log = logging.getLogger("runledger")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="runledger", description=__doc__)
    commands = parser.add_subparsers(dest="subcommand", required=True)
    serve = commands.add_parser("serve", help="run the engine: API, projections, streams")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--database", help="sqlite:///path.db or postgresql://user@host:port/db")
    serve.add_argument(
        "--role",
        choices=ROLES,
        help="api: HTTP only; worker: projections and policies (one process at a time "
        "does them); all: both (default, or RUNLEDGER_ROLE)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes behind the one port (default 1); more use more cores",
    )
    serve.add_argument(
        "--pin",
        action="store_true",
        help="keep each server process on one CPU: worker i on the i-th CPU this process may "
        "use (one process: the first); Linux only",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker
    serve.add_argument("--cpu", type=int, help=argparse.SUPPRESS)  # a pinned worker's CPU
    runner_cli.add_parser(commands)
    projections_cli.add_parser(commands)
    audit_cli.add_commands(commands)
    user_cli.add_commands(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.subcommand == "runner":
        return runner_cli.run(parser, args)
    if args.subcommand in user_cli.COMMANDS:
        return user_cli.run(args, parser)
    if args.subcommand in audit_cli.COMMANDS:
        return audit_cli.run(args, parser)
    try:
        config = Config.from_env(database_url=args.database, role=getattr(args, "role", None))
    except ValueError as exc:
        parser.error(str(exc))
    if config.role not in ROLES:
        parser.error(f"RUNLEDGER_ROLE must be one of {', '.join(ROLES)}; not {config.role!r}")
    if config.cookie_secure not in ("auto", "true", "false"):
        parser.error(
            f"RUNLEDGER_COOKIE_SECURE must be auto, true or false; not {config.cookie_secure!r}"
        )
    if args.subcommand == "serve":
        if not 1 <= args.workers <= 64:
            parser.error("--workers wants a number of processes from 1 to 64")
        if (args.pin or args.cpu is not None) and not hasattr(os, "sched_setaffinity"):
            parser.error("--pin needs Linux (sched_setaffinity)")
        if args.workers > 1:
            passed = [
                f"--{name}={value}"
                for name in ("database", "role")
                if (value := getattr(args, name))
            ]
            return _serve(
                config, args.host, args.port, workers=args.workers, passed=passed, pin=args.pin
            )
        cpu = args.cpu
        if cpu is None and args.pin:
            cpu = usable_cpus()[0]
        if cpu is not None and cpu not in usable_cpus():
            parser.error(f"--cpu {cpu}: not one of the CPUs this process may use")
        return _serve(config, args.host, args.port, reuse_port=args.reuse_port, cpu=cpu)
    return projections_cli.run(args, config, parser.error)


def _serve(
    config: Config,
    host: str,
    port: int,
    reuse_port: bool = False,
    workers: int = 1,
    passed: list[str] | None = None,
    pin: bool = False,
    cpu: int | None = None,
) -> int:
    """Serve in this process (a worker of a supervisor's when `reuse_port`), kept on `cpu`
    if one is given, or supervise `workers` processes (api/workers.py), each given the
    `passed` flags, and each kept on a CPU of its own when `pin`."""
    if cpu is not None:
        # Before any thread starts (threads keep the CPUs of the thread that started them).
        os.sched_setaffinity(0, {cpu})
    from api.http.app import create_app
    from api.service.bootstrap import load_keyring
    from api.service.usage import load_prices

    try:
        load_prices(config.prices_file)
    except ValueError as exc:
        print(f"runledger: RUNLEDGER_PRICES_FILE: {exc}", file=sys.stderr)
        return 2
    _, generated = load_keyring(config)
    if generated is not None:
        print(f"runledger: no API keys configured; use the key for user 'local': {generated}")
        print(f"runledger: (stored in {config.data_dir / 'api-key'})", flush=True)
    if workers > 1:
        return supervise(host, port, workers, passed or [], pin)
    app = create_app(config)
    server = _Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5),
        app,
    )
    server.run(sockets=[reuse_port_socket(host, port)] if reuse_port else None)
    return 0


class _Server(uvicorn.Server):
    """uvicorn with one readiness line, and open streams closed when it is asked to exit."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.runledger_app = app  # config.app, as what it is (uvicorn types it as any app)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.config.host, self.config.port
            runtime = self.runledger_app.state.services.runtime
            store, role = runtime.settings.describe(), runtime.config.role
            # One write: a supervisor's workers share its output, and print writes the
            # line and its end apart when unbuffered.
            ready = f"runledger: ready on http://{host}:{port} ({store}, role {role})\n"
            sys.stdout.write(ready)
            sys.stdout.flush()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, minus re-raising the signal afterwards: a graceful stop exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self.runledger_app.state, "services", None)
        hub = services.hub if services is not None else None
        if hub is not None and hub.loop is not None:
            hub.loop.call_soon_threadsafe(hub.close_all)
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    sys.exit(main())
