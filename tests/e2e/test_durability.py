"""Durability over real processes: SIGKILL and restart, SIGTERM with open streams, and two
server processes sharing one PostgreSQL.

Contract (API.md): the server "on restart carries on from the stored events as if nothing
happened", "exits cleanly on SIGTERM/SIGINT (open streams are closed)", a stream resumes
from Last-Event-ID "after a server restart as well as before", and "streams work across
processes".
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import (
    Follower,
    Frame,
    append,
    claim,
    deltas,
    event_ids,
    global_history,
    open_stream,
    read_frames,
    read_model,
    report,
    run_history,
    submit,
    wait_for,
)
from tests.support import ALICE, BOB, RUNNER, Server, postgres_schema

BATCH = 10  # events per runner append while the server is being killed


def snapshot(client: httpx.Client, run_id: str, position: int) -> dict[str, Any]:
    """What a client can see of a run: history, read model, and a resumed stream."""
    history = run_history(client, run_id)
    last = len(history)
    resume_from = last // 2
    frames = read_frames(
        client,
        f"/api/runs/{run_id}/stream",
        last_event_id=resume_from,
        until=lambda f: f.id == last,
    )
    return {
        "history": history,
        "view": read_model(client, run_id, position),
        "resume_from": resume_from,
        "frames": [(f.id, f.event, f.envelope) for f in frames],
    }


def test_sigkill_mid_append_loses_nothing_acknowledged_and_the_run_carries_on(
    store_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = Server(store_url, data_dir).start()
    second: Server | None = None
    try:
        with first.client(ALICE) as alice, first.client(RUNNER) as runner:
            run_a = submit(alice, "run a: reviewed, sent back for changes")["run_id"]
            run_b = submit(alice, "run b: killed while appending")["run_id"]
            run_c = submit(alice, "run c: still pending")["run_id"]
            lease_a, lease_b = claim(runner), claim(runner)
            assert lease_a["run"]["run_id"] == run_a and lease_b["run"]["run_id"] == run_b
            token_a, token_b = lease_a["fencing_token"], lease_b["fencing_token"]
            for i in range(3):
                append(runner, run_a, token_a, deltas(f"a{i}", 20))
            report(
                runner,
                run_a,
                token_a,
                "changes",
                tree_hash="aaaa1111",
                diff_stats={"files": 2, "added": 5, "removed": 1},
            )
            review = alice.post(
                f"/api/runs/{run_a}/review",
                json={"approved": False, "request_changes": True, "comment": "add a test"},
            )
            assert review.status_code == 200, review.text
            assert review.json()["status"] == "in_progress"
            head = review.json()["position"]

            before = {run: snapshot(alice, run, head) for run in (run_a, run_c)}
            revision = lease_a["run"]["revision"]
            assert before[run_a]["view"]["revision"] == revision + 1
            assert len(before[run_a]["history"]) == 1 + 1 + 60 + 1 + 1
            global_before = global_history(alice)
            assert [e["position"] for e in global_before][-1] == head
            global_resume = global_before[len(global_before) // 3]["position"]
            global_frames_before = read_frames(
                alice,
                "/api/events/stream",
                last_event_id=global_resume,
                until=lambda f: f.id == head,
            )

        # Run b: a runner appends batch after batch; the server is SIGKILLed mid-way.
        acked: list[dict[str, Any]] = []
        failures: list[BaseException] = []

        def writer() -> None:
            with first.client(RUNNER) as w:
                for i in range(500):
                    try:
                        answer = append(w, run_b, token_b, deltas(f"b{i}", BATCH))
                    except (httpx.HTTPError, AssertionError) as exc:
                        failures.append(exc)
                        return
                    acked.append(answer)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        wait_for(lambda: len(acked) >= 5 or not thread.is_alive(), 20, "five acknowledged appends")
        first.kill()
        thread.join(15)
        assert not thread.is_alive()
        assert failures, "the writer should have seen the server die"
        assert len(acked) >= 5

        second = Server(store_url, data_dir).start()
        with second.client(ALICE) as alice, second.client(RUNNER) as runner:
            # Runs a and c: history, read model and resumed streams exactly as before.
            for run in (run_a, run_c):
                assert snapshot(alice, run, head) == before[run], run

            # The global log: the same prefix, and the same resumed global stream.
            global_after = global_history(alice)
            assert global_after[: len(global_before)] == global_before
            assert {e["run_id"] for e in global_after[len(global_before) :]} == {run_b}
            global_frames_after = read_frames(
                alice,
                "/api/events/stream",
                last_event_id=global_resume,
                until=lambda f: f.id == head,
            )
            assert global_frames_after == global_frames_before

            # Run b: every acknowledged batch is there, whole; the one in flight is all or none.
            history_b = run_history(alice, run_b)
            assert [e["sequence"] for e in history_b] == list(range(1, len(history_b) + 1))
            appended = len(history_b) - 2
            assert appended % BATCH == 0, f"a batch was torn: {appended} output events"
            assert appended // BATCH in (len(acked), len(acked) + 1)
            texts = [e["data"]["text"] for e in history_b[2:]]
            assert texts == [f"b{i}-{j}" for i in range(appended // BATCH) for j in range(BATCH)]
            by_sequence = {e["sequence"]: e["position"] for e in history_b}
            for answer in acked:
                assert by_sequence[answer["sequence"]] == answer["position"]
            last_b = len(history_b)

            # The read model caught up with everything stored, and agrees with a rebuild.
            view_b = read_model(alice, run_b, acked[-1]["position"])
            assert view_b["status"] == "in_progress" and view_b["last_sequence"] == last_b
            rebuilt = alice.get(f"/api/runs/{run_b}", params={"at_sequence": last_b})
            assert rebuilt.status_code == 200 and rebuilt.json() == view_b

            resume_b = acked[0]["sequence"]
            frames_b = read_frames(
                alice,
                f"/api/runs/{run_b}/stream",
                last_event_id=resume_b,
                until=lambda f: f.id == last_b,
            )
            assert event_ids(frames_b) == list(range(resume_b + 1, last_b + 1))
            assert [f.envelope for f in frames_b] == history_b[resume_b:]

            # The lifecycle carries on: b's lease survived, a and c are claimed again.
            more = append(runner, run_b, token_b, deltas("after-restart", 3))
            assert more["sequence"] == last_b + 3
            done_b = report(runner, run_b, token_b, "no_changes")
            assert done_b["status"] == "completed"
            tail_b = read_frames(alice, f"/api/runs/{run_b}/stream", last_event_id=last_b)
            assert event_ids(tail_b) == list(range(last_b + 1, done_b["sequence"] + 1))
            assert tail_b[-1].event == "done" and tail_b[-2].event == "run.completed"

            leases = {}
            for _ in range(2):
                lease = claim(runner, "r2")
                leases[lease["run"]["run_id"]] = lease
            assert set(leases) == {run_a, run_c}
            assert leases[run_a]["run"]["revision"] == revision + 1
            assert leases[run_a]["run"]["comment"] == "add a test"
            assert leases[run_a]["fencing_token"] > token_a
            token_a2 = leases[run_a]["fencing_token"]
            stale = runner.post(
                f"/api/runs/{run_a}/events",
                json={"fencing_token": token_a, "events": deltas("stale", 1)},
            )
            assert stale.status_code == 409 and stale.json()["error"] == "stale_lease"
            append(runner, run_a, token_a2, deltas("a-rev2", 5))
            report(runner, run_a, token_a2, "changes", tree_hash="bbbb2222")
            approved = alice.post(f"/api/runs/{run_a}/review", json={"approved": True})
            assert approved.status_code == 200 and approved.json()["status"] == "merged"
            cancelled = alice.post(f"/api/runs/{run_c}/cancel", json={"reason": "enough"})
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

            final = cancelled.json()["position"]
            expected = {run_a: "merged", run_b: "completed", run_c: "cancelled"}
            for run, status in expected.items():
                view = read_model(alice, run, final)
                assert view["status"] == status, run
                frames = read_frames(alice, f"/api/runs/{run}/stream")
                assert event_ids(frames) == list(range(1, view["last_sequence"] + 1))
                assert frames[-1] == Frame(None, "done", "{}")
            a_frames = read_frames(
                alice, f"/api/runs/{run_a}/stream", last_event_id=before[run_a]["resume_from"]
            )
            old = before[run_a]["frames"]
            assert [(f.id, f.event, f.envelope) for f in a_frames[: len(old)]] == old
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_sigterm_closes_open_streams_and_exits_zero(store_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    srv = Server(store_url, data_dir).start()
    try:
        with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
            run_id = submit(alice, "stream me while the server stops")["run_id"]
            lease = claim(runner)
            last = append(runner, run_id, lease["fencing_token"], deltas("x", 5))["sequence"]

        outcome: dict[str, tuple[str, list[Frame]]] = {}
        caught_up = {name: threading.Event() for name in ("run", "global")}
        paths = {"run": f"/api/runs/{run_id}/stream", "global": "/api/events/stream"}

        def follow(name: str) -> None:
            frames: list[Frame] = []
            try:
                with srv.client(ALICE) as client, open_stream(client, paths[name]) as it:
                    for frame in it:
                        frames.append(frame)
                        if len(frames) == last:
                            caught_up[name].set()
                outcome[name] = ("closed", frames)
            except httpx.HTTPError as exc:  # the connection was cut rather than ended
                outcome[name] = (type(exc).__name__, frames)

        threads = [threading.Thread(target=follow, args=(n,), daemon=True) for n in paths]
        for thread in threads:
            thread.start()
        for name, event in caught_up.items():
            assert event.wait(10), f"the {name} stream never replayed the history"

        started = time.monotonic()
        code = srv.stop()
        took = time.monotonic() - started
        for thread in threads:
            thread.join(5)
        assert took < 4.5, f"SIGTERM took {took:.1f} s with open streams"
        assert not any(t.is_alive() for t in threads), "a stream stayed open after SIGTERM"
        assert set(outcome) == set(paths), "a follower failed before the stop"
        for name, (how, frames) in outcome.items():
            assert how == "closed", f"the {name} stream was cut ({how}) rather than closed"
            assert [f.id for f in frames] == (
                list(range(1, last + 1)) if name == "run" else sorted({f.id for f in frames})
            )
            assert all(f.event != "done" for f in frames)  # the run has not ended

        # Nothing was lost: a restarted server replays the same stream from the start.
        again = Server(store_url, data_dir).start()
        try:
            with again.client(ALICE) as alice:
                frames = read_frames(alice, paths["run"], until=lambda f: f.id == last)
                assert frames == outcome["run"][1]
        finally:
            again.kill()
        # Last, so that the checks above still report: a clean exit is status 0, not -SIGTERM.
        assert code == 0, f"exit status {code} after SIGTERM:\n" + "".join(srv.output)
    finally:
        srv.kill()


@pytest.mark.postgres
def test_a_stream_on_one_server_sees_live_events_appended_through_another(tmp_path: Path) -> None:
    with postgres_schema() as url:
        server_a = Server(url, tmp_path / "a").start()
        server_b: Server | None = None
        try:
            server_b = Server(url, tmp_path / "b").start()
            _two_servers(server_a, server_b)
        finally:
            server_a.kill()
            if server_b is not None:
                server_b.kill()


def _two_servers(server_a: Server, server_b: Server) -> None:
    with (
        server_b.client(ALICE) as alice_b,
        server_b.client(BOB) as bob_b,
        server_b.client(RUNNER) as runner_b,
    ):
        # Alice follows her global stream on server a; everything is written through b.
        global_a = Follower(
            lambda: server_a.client(ALICE),
            "/api/events/stream",
            stop=lambda f: f.event == "run.completed",
        ).start()
        run_id = submit(alice_b, "appended through server b")["run_id"]
        global_a.wait_started()  # connected: run.submitted came through a
        run_a = Follower(lambda: server_a.client(ALICE), f"/api/runs/{run_id}/stream").start()
        run_a.wait_started()

        bob_run = submit(bob_b, "bob's run, never on alice's streams")["run_id"]
        lease = claim(runner_b)
        assert lease["run"]["run_id"] == run_id
        token = lease["fencing_token"]
        for i in range(30):
            sent = append(runner_b, run_id, token, deltas(f"live{i}", 5))
            if i in (0, 15):  # live, not replayed later: a's streams show it before we go on
                wait_for(
                    lambda sent=sent: (
                        run_a.seen(sent["sequence"]) and global_a.seen(sent["position"])
                    ),
                    5,
                    f"event {sent['sequence']} from b on a's streams",
                )
            time.sleep(0.01)
        final = report(runner_b, run_id, token, "no_changes")

        run_frames = run_a.result(20)
        global_frames = global_a.result(20)

        history = run_history(alice_b, run_id)
        assert len(history) == final["sequence"] == 1 + 1 + 150 + 1
        assert event_ids(run_frames) == list(range(1, final["sequence"] + 1))
        assert run_frames[-1] == Frame(None, "done", "{}")
        assert [f.envelope for f in run_frames[:-1]] == history

        expected = global_history(alice_b)
        assert [f.id for f in global_frames] == [e["position"] for e in expected]
        assert [f.envelope for f in global_frames] == expected
        assert bob_run not in {f.envelope["run_id"] for f in global_frames}
