"""The reference runner: claims runs and does each with any command, in a git worktree.

For each claimed run it makes (or reuses, after a request for changes) a worktree of the
project's repository on branch `runledger/<run_id>`, runs the command there with the task
on stdin and in RUNLEDGER_TASK, streams stdout and stderr as `tool.output` events in
batches (or, with `--format`, reads an agent CLI's JSON lines into messages, tool calls,
turns and usage: adapters/runner_formats.py), heartbeats while the command works, then
commits what changed and reports `changes` or `no_changes` — or `failed`, with a category
read from the exit status. A run with no repository runs in a scratch directory, and
either is removed when the attempt ends (adapters/runner_workspace.py). Only the standard
library is used.

While the command works the runner follows the run's stream (adapters/runner_stream.py,
with the heartbeat answers as the fallback; adapters/runner_news.py keeps what they say):
a cancel, a `stop` or a lost lease ends the command's whole process group at once
(adapters/runner_process.py) and nothing is reported; a `redirect` stops the current turn
and an `amend` waits for it to end, then the command runs again in the same worktree with
the directives in RUNLEDGER_DIRECTIVES and appended to the task on stdin, and each is
acknowledged with `steering.applied`. The agent opens gates through two named pipes
(adapters/runner_gates.py has the protocol).

With `plan` (`runledger runner --plan`) it is a planner: the command runs in a detached
checkout of the originating branch, and its stdout, a work plan as JSON (`{"subtasks":
[…]}` or the list of subtasks), becomes the run's work plan, which ends the runner's lease:
the engine dispatches the subtasks to other runners.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters import git
from adapters.runner_api import Api, LeaseLost, Refused
from adapters.runner_formats import Reader, bounded, reader
from adapters.runner_gates import GateDesk
from adapters.runner_news import News
from adapters.runner_process import KILL_GRACE, AgentProcess
from adapters.runner_stream import RunStream
from adapters.runner_workspace import plan_body, remove_workspace, task_text

log = logging.getLogger("runledger.runner")
# Exit statuses with a meaning (sysexits.h); anything else non-zero is the agent's failure.
DEFAULT_EXIT_CATEGORIES = {75: "runner-transient", 69: "network", 68: "network"}
MAX_LINE = 16_000  # characters of one output line (the rest is cut, and says so)
MAX_BATCH_BYTES = 256_000  # well under the server's 1 MiB body limit


@dataclass
class RunnerConfig:
    """How the runner talks to the server and what it runs."""

    server: str
    key: str
    command: str
    runner_id: str = field(default_factory=lambda: f"runner-{os.getpid()}")
    workdir: Path = Path(".runledger-runner")
    wait_seconds: float = 30.0
    batch_interval: float = 0.2
    batch_size: int = 200
    exit_categories: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_EXIT_CATEGORIES))
    once: bool = False
    plan: bool = False  # a planner: the command's stdout is the run's work plan
    kill_grace: float = KILL_GRACE  # seconds between SIGTERM and SIGKILL of the agent
    author: tuple[str, str] = ("runledger", "runledger@localhost")  # without the repo's own
    idle_timeout: float | None = None  # end an agent silent this long (runner-transient)
    format: str = "lines"  # how to read the agent's stdout (adapters/runner_formats.py)


class Session:
    """One claimed run: heartbeats, the run's stream, output batching, the command's turns,
    the report."""

    def __init__(self, config: RunnerConfig, api: Api, claim: dict[str, Any]) -> None:
        self.config, self.api = config, api
        self.run = claim["run"]
        self.run_id = self.run["run_id"]
        self.lease_id = claim["lease_id"]
        self.token = claim["fencing_token"]
        self.lease_seconds = _seconds_until(claim["lease_expires_at"])
        self.news = News(self.lease_id, self.run.get("directives"))
        self.lost = self.news.ended  # the lease is gone: stop the agent, report nothing
        self.done = threading.Event()
        self.output: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.stdout: list[str] = []  # a planner's plan (its last turn's)
        self.gate_ids: set[str] = set()
        self.stream = RunStream(
            api, self.run_id, int(self.run.get("sequence") or 0), self.news.heard, self.news.end
        )
        self.last_output = time.monotonic()  # when the agent last printed a line
        self.reader: Reader | None = None  # this turn's reader of structured output
        self.idled = False  # the watchdog ended the agent (--idle-timeout)

    def work(self) -> None:
        """Do the run from claim to report."""
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        sender = threading.Thread(target=self._send_output, daemon=True)
        heartbeat.start()
        sender.start()
        self.stream.start()
        where, repo = self.config.workdir.resolve() / self.run_id, self.run.get("repository_path")
        try:
            try:
                where, repo = self._prepare()
                code = self._turns(where)
            except Exception as exc:  # the runner itself failed: say so, transiently
                log.exception("run %s: runner error", self.run_id)
                self._stop_listening()
                sender.join()
                if not self.lost.is_set():
                    failure = _failure("runner-transient", exc)
                    self._report({"outcome": "failed", "failure": failure})
                return
            finally:
                self._stop_listening()
            sender.join()
            heartbeat.join(timeout=1)
            if self.lost.is_set():
                log.warning("run %s: %s; not reporting", self.run_id, self.news.why)
                return
            if self.config.plan:
                self._finish_planning(code, where, repo)
                return
            self._report(self._outcome(code, where, repo))
        finally:
            remove_workspace(where, repo)  # its branch keeps the work; a redo checks it out

    def _stop_listening(self) -> None:
        self.done.set()
        self.stream.stop()

    def _prepare(self) -> tuple[Path, str | None]:
        root = self.config.workdir.resolve()
        root.mkdir(parents=True, exist_ok=True)
        where = root / self.run_id
        repo = self.run.get("repository_path")
        if repo is None:
            where.mkdir(exist_ok=True)
            return where, None
        base = self.run.get("originating_branch") or "main"
        if self.config.plan:  # read the code, change nothing: no branch of its own
            git.git(repo, "worktree", "add", "--detach", str(where), base)
        elif not where.exists():
            git.add_worktree(repo, where, f"runledger/{self.run_id}", base)
        return where, repo

    def _turns(self, where: Path) -> int:
        """Run the command until a turn ends with nothing left to apply: a redirect stops
        the current turn, an amendment waits for it to end (a failed turn ends the run,
        leaving the amendment to the next attempt); each next turn carries every directive
        so far. Each directive is acknowledged (`steering.applied`) as its turn starts."""
        applied: list[dict[str, Any]] = []
        turn = 0
        while True:
            fresh = self.news.take_directives()
            for directive in fresh:
                self.output.put(("steering.applied", {"directive_id": directive["directive_id"]}))
            applied += fresh
            turn += 1
            code, redirected = self._turn(where, turn, applied)
            if self.lost.is_set() or (not redirected and code != 0):
                return code
            if not redirected and not self.news.directives_waiting():
                return code

    def _turn(self, where: Path, turn: int, directives: list[dict[str, Any]]) -> tuple[int, bool]:
        """One run of the command: (its exit status, whether a redirect stopped it)."""
        self.stdout = []
        desk = GateDesk(self.news, self._send, self.gate_ids)
        env = {
            **os.environ,
            "RUNLEDGER_TASK": self.run["task"],
            "RUNLEDGER_RUN_ID": self.run_id,
            "RUNLEDGER_ATTEMPT": str(self.run.get("attempt", 1)),
            "RUNLEDGER_REVISION": str(self.run.get("revision", 0)),
            "RUNLEDGER_COMMENT": self.run.get("comment") or "",
            "RUNLEDGER_TURN": str(turn),
            "RUNLEDGER_DIRECTIVES": json.dumps(directives),
            **desk.env(),
        }
        self._send(
            "step.started", {"name": "command", "command": self.config.command, "turn": turn}
        )
        redirected = False
        self.reader = reader(self.config.format, self.run.get("model"))
        try:
            agent = AgentProcess(
                self.config.command, where, env, task_text(self.run["task"], directives), self._line
            )
            try:
                suspended = False
                self.last_output = time.monotonic()
                while agent.running():
                    if self.lost.is_set() or self.news.redirect_waiting():
                        redirected = not self.lost.is_set()
                        agent.stop(self.config.kill_grace)
                        break
                    if self._silent_too_long(suspended):
                        self.idled = True
                        agent.stop(self.config.kill_grace)
                        break
                    if self.news.paused.is_set() != suspended:  # a pause holds the agent
                        suspended = not suspended
                        agent.suspend(suspended)
                    self.news.wait(0.05)
            finally:
                if agent.running():  # the runner itself is being stopped
                    agent.stop(self.config.kill_grace)
            code = agent.finish()
        finally:
            desk.close()
        if self.reader is not None:
            for kind, data in map(bounded, self.reader.finish()):
                self._send(kind, data)
        ended = {"exit_code": code, **({"stopped_by": "redirect"} if redirected else {})}
        self._send("step.completed", {"name": "command", "turn": turn, **ended})
        return code, redirected

    def _silent_too_long(self, suspended: bool) -> bool:
        """The watchdog: the agent printed nothing for --idle-timeout seconds (a paused
        agent is not idle: its silence restarts when it resumes)."""
        limit = self.config.idle_timeout
        if limit is None or suspended:
            if suspended:
                self.last_output = time.monotonic()
            return False
        return time.monotonic() - self.last_output > limit

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        self.output.put((kind, data))

    def _line(self, name: str, line: str) -> None:
        self.last_output = time.monotonic()
        text = line.rstrip("\n")
        if name == "stdout" and self.config.plan:
            self.stdout.append(line)
        if name == "stdout" and self.reader is not None:
            for event in self.reader.feed(text):
                self.output.put(bounded(event))
            return
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + f"… [{len(text) - MAX_LINE} more characters]"
        self.output.put(("tool.output", {"stream": name, "text": text}))

    def _send_output(self) -> None:
        """Batch queued output into event posts until the command is done and drained."""
        while True:
            finished = self.done.wait(self.config.batch_interval)
            batch: list[dict[str, Any]] = []
            size = 0
            while len(batch) < self.config.batch_size and size < MAX_BATCH_BYTES:
                try:
                    kind, data = self.output.get_nowait()
                except queue.Empty:
                    break
                batch.append({"type": kind, "data": data})
                size += len(json.dumps(data)) + 32
            if batch and not self.lost.is_set():
                try:
                    self.api.call_reliably(
                        f"/api/runs/{self.run_id}/events",
                        {"fencing_token": self.token, "events": batch},
                    )
                except LeaseLost:
                    self.news.end("the lease was lost")
                except (OSError, RuntimeError):
                    log.exception("run %s: output lost after retries", self.run_id)
            if finished and self.output.empty():
                return

    def _heartbeat(self) -> None:
        # The first beat at once: it confirms the claim, which the server gives back when
        # its runner says nothing within RUNLEDGER_CLAIM_CONFIRM_SECONDS.
        interval = max(self.lease_seconds / 3, 0.2)
        while True:
            try:
                _, answer = self.api.call(f"/api/runner/leases/{self.lease_id}/heartbeat", {}, 10)
                self.news.heartbeat(answer)
            except LeaseLost:
                self.news.end("the lease was lost")
                return
            except Exception:
                log.warning("run %s: heartbeat failed; will retry", self.run_id, exc_info=True)
            if self.done.wait(interval):
                return

    def _outcome(self, code: int, where: Path, repo: str | None) -> dict[str, Any]:
        if self.idled:
            silence = f"{self.config.idle_timeout:g} s"
            message = f"The agent printed nothing for {silence} and was ended (--idle-timeout)."
            return {"outcome": "failed", "failure": _failure("runner-transient", message)}
        if code != 0:
            category = self.config.exit_categories.get(code, "agent")
            if code < 0:
                category = "runner-transient"  # killed by a signal
            return {"outcome": "failed", "failure": _failure(category, f"exit status {code}")}
        if repo is None:
            return {"outcome": "no_changes"}
        author = git.identity(where) or self.config.author
        git.commit_all(where, f"runledger: {self.run['task'].splitlines()[0][:72]}", author)
        base = self.run.get("originating_branch") or "main"
        branch = f"runledger/{self.run_id}"
        files = git.changed_files(repo, base, branch)
        if not files:
            return {"outcome": "no_changes"}
        return {
            "outcome": "changes",
            "branch": branch,
            "tree_hash": git.tree_of(repo, branch),
            "diff_stats": {
                "files": len(files),
                "added": sum(f.added for f in files),
                "removed": sum(f.removed for f in files),
            },
        }

    def _finish_planning(self, code: int, where: Path, repo: str | None) -> None:
        """Send the planner's plan (the lease ends with it), or report why there is none."""
        if code != 0:
            self._report(self._outcome(code, where, None))
            return
        try:
            body = plan_body("".join(self.stdout))
            self.api.call_reliably(
                f"/api/runs/{self.run_id}/work-plan",
                {**body, "fencing_token": self.token},
                method="PUT",
            )
        except ValueError as exc:
            failure = _failure("agent", f"The planner's output is not a work plan: {exc}")
        except Refused as exc:
            failure = _failure("agent", f"The server refused the plan: {exc.detail}")
        except LeaseLost:
            log.warning("run %s: lease lost before the plan", self.run_id)
            return
        else:
            log.info("run %s: work plan set", self.run_id)
            return
        self._report({"outcome": "failed", "failure": failure})

    def _report(self, body: dict[str, Any]) -> None:
        try:
            self.api.call_reliably(
                f"/api/runs/{self.run_id}/report", {"fencing_token": self.token, **body}
            )
            log.info("run %s: reported %s", self.run_id, body["outcome"])
        except LeaseLost:
            log.warning("run %s: lease lost before the report", self.run_id)


def _failure(category: str, detail: object) -> dict[str, str]:
    return {"category": category, "message": str(detail)[:2000]}


def _seconds_until(stamp: str) -> float:
    from domain.timestamps import parse_timestamp

    return max(parse_timestamp(stamp).timestamp() - time.time(), 1.0)


def serve_forever(config: RunnerConfig) -> int:
    """Claim and do runs until interrupted (or after one run with `once`); 2 when the
    server refuses the key (or the claim itself): retrying would be refused again."""
    api = Api(config.server, config.key)
    log.info("runner %s: waiting for work at %s", config.runner_id, config.server)
    while True:
        try:
            claim = api.claim(config.runner_id, config.wait_seconds)
        except Refused as exc:
            why = {
                401: "the server does not know this key (check --key or RUNLEDGER_RUNNER_KEY)",
                403: "this key is not a runner key (it needs the runner role)",
            }.get(exc.status, f"the server refused the claim: {exc.detail}")
            print(f"runledger runner: {why} ({exc.status}).", file=sys.stderr, flush=True)
            return 2
        except (OSError, RuntimeError) as exc:
            log.warning("claim failed (%s); retrying in 2 s", exc)
            time.sleep(2)
            continue
        if claim is None:
            continue
        log.info("run %s: claimed (revision %s)", claim["run"]["run_id"], claim["run"]["revision"])
        try:
            Session(config, api, claim).work()
        except Exception:  # this run's trouble must not stop the runner
            log.exception("run %s: the runner could not finish it", claim["run"]["run_id"])
        if config.once:
            return 0
