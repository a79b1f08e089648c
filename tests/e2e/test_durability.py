"""Durability over real processes: SIGKILL and restart, SIGTERM with open streams, and two
server processes sharing one PostgreSQL.

Contract (API.md): the server "on restart carries on from the stored events as if nothing
happened", "exits cleanly on SIGTERM/SIGINT (open streams are closed)", a stream resumes
from Last-Event-ID "after a server restart as well as before", and "streams work across
processes".

Killing and restarting a server takes seconds, so each scene is played once per store by a
module-scoped fixture that keeps what the clients saw; the tests then check one behaviour
each. A scene that goes on after what some tests look at (the lifecycle after the restart)
is a separate fixture, played after the reads it would otherwise change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
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
from tests.support import ALICE, BOB, RUNNER, Server, fresh_store, postgres_schema

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


# -- SIGKILL mid-append, then a restart ------------------------------------------------------


@dataclass
class Killed:
    """Three runs on a server SIGKILLed while a runner appended to run b, and the restarted
    server: run a was sent back for changes, run c is still pending."""

    server: Server
    run_a: str
    run_b: str
    run_c: str
    token_a: int
    token_b: int
    revision: int  # run a's revision when it was first claimed
    review: httpx.Response  # the answer to run a's review (changes requested)
    head: int  # the review's position: the last before run b's appends
    before: dict[str, dict[str, Any]]  # snapshots of runs a and c at head
    global_before: list[dict[str, Any]]
    global_resume: int
    global_frames_before: list[Frame]
    acked: list[dict[str, Any]]  # run b's appends acknowledged before the kill
    failures: list[BaseException]  # what run b's writer saw when the server died


@pytest.fixture(scope="module")
def killed(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killed]:
    """Play the scene up to the kill, then start a second server on the same store."""
    with ExitStack() as stack:
        base = tmp_path_factory.mktemp(f"sigkill-{store_kind}")
        store_url = stack.enter_context(fresh_store(store_kind, base))
        data_dir = base / "data"
        first = Server(store_url, data_dir).start()
        stack.callback(first.kill)
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
            head = review.json()["position"]

            before = {run: snapshot(alice, run, head) for run in (run_a, run_c)}
            global_before = global_history(alice)
            global_resume = global_before[len(global_before) // 3]["position"]
            global_frames_before = read_frames(
                alice,
                "/api/events/stream",
                last_event_id=global_resume,
                until=lambda f: f.id == head,
            )

        acked, failures = append_until_killed(first, run_b, token_b)
        second = Server(store_url, data_dir).start()
        stack.callback(second.kill)
        yield Killed(
            server=second,
            run_a=run_a,
            run_b=run_b,
            run_c=run_c,
            token_a=token_a,
            token_b=token_b,
            revision=lease_a["run"]["revision"],
            review=review,
            head=head,
            before=before,
            global_before=global_before,
            global_resume=global_resume,
            global_frames_before=global_frames_before,
            acked=acked,
            failures=failures,
        )


def append_until_killed(
    server: Server, run_id: str, token: int
) -> tuple[list[dict[str, Any]], list[BaseException]]:
    """A runner appends batch after batch; the server is SIGKILLed mid-way. What was
    acknowledged, and what the runner saw go wrong."""
    acked: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    def writer() -> None:
        with server.client(RUNNER) as w:
            for i in range(500):
                try:
                    answer = append(w, run_id, token, deltas(f"b{i}", BATCH))
                except (httpx.HTTPError, AssertionError) as exc:
                    failures.append(exc)
                    return
                acked.append(answer)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    wait_for(lambda: len(acked) >= 5 or not thread.is_alive(), 20, "five acknowledged appends")
    server.kill()
    thread.join(15)
    assert not thread.is_alive()
    return acked, failures


@dataclass
class Restarted:
    """What the restarted server shows before anything else happens."""

    snapshots: dict[str, dict[str, Any]]  # runs a and c at the head before the kill
    global_after: list[dict[str, Any]]
    global_frames_after: list[Frame]
    history_b: list[dict[str, Any]]
    view_b: dict[str, Any]  # run b's read model once it includes the last acknowledged append
    rebuilt: httpx.Response  # run b's state rebuilt at its last sequence
    resume_b: int
    frames_b: list[Frame]  # run b's stream resumed from its first acknowledged append


@pytest.fixture(scope="module")
def restarted(killed: Killed) -> Restarted:
    k = killed
    with k.server.client(ALICE) as alice:
        snapshots = {run: snapshot(alice, run, k.head) for run in (k.run_a, k.run_c)}
        global_after = global_history(alice)
        global_frames_after = read_frames(
            alice,
            "/api/events/stream",
            last_event_id=k.global_resume,
            until=lambda f: f.id == k.head,
        )
        history_b = run_history(alice, k.run_b)
        last_b = len(history_b)
        view_b = read_model(alice, k.run_b, k.acked[-1]["position"])
        rebuilt = alice.get(f"/api/runs/{k.run_b}", params={"at_sequence": last_b})
        resume_b = k.acked[0]["sequence"]
        frames_b = read_frames(
            alice,
            f"/api/runs/{k.run_b}/stream",
            last_event_id=resume_b,
            until=lambda f: f.id == last_b,
        )
    return Restarted(
        snapshots=snapshots,
        global_after=global_after,
        global_frames_after=global_frames_after,
        history_b=history_b,
        view_b=view_b,
        rebuilt=rebuilt,
        resume_b=resume_b,
        frames_b=frames_b,
    )


@dataclass
class CarriedOn:
    """The lifecycle after the restart: b appends and completes, a and c are claimed again,
    a is merged and c cancelled."""

    last_b: int  # run b's last sequence right after the restart
    more: dict[str, Any]  # run b's first append after the restart
    done_b: dict[str, Any]
    tail_b: list[Frame]  # run b's stream after last_b
    leases: dict[str, dict[str, Any]]  # the new leases on runs a and c, by run
    stale: httpx.Response  # an append to run a with its lease from before the kill
    approved: httpx.Response
    cancelled: httpx.Response
    views: dict[str, dict[str, Any]]  # every run's read model at the end
    frames: dict[str, list[Frame]]  # every run's whole stream at the end
    a_frames: list[Frame]  # run a's stream resumed where its snapshot before the kill was


@pytest.fixture(scope="module")
def carried_on(killed: Killed, restarted: Restarted) -> CarriedOn:
    k = killed
    last_b = len(restarted.history_b)
    with k.server.client(ALICE) as alice, k.server.client(RUNNER) as runner:
        more = append(runner, k.run_b, k.token_b, deltas("after-restart", 3))
        done_b = report(runner, k.run_b, k.token_b, "no_changes")
        tail_b = read_frames(alice, f"/api/runs/{k.run_b}/stream", last_event_id=last_b)

        leases = {}
        for _ in range(2):
            lease = claim(runner, "r2")
            leases[lease["run"]["run_id"]] = lease
        stale = runner.post(
            f"/api/runs/{k.run_a}/events",
            json={"fencing_token": k.token_a, "events": deltas("stale", 1)},
        )
        token_a2 = leases[k.run_a]["fencing_token"]
        append(runner, k.run_a, token_a2, deltas("a-rev2", 5))
        report(runner, k.run_a, token_a2, "changes", tree_hash="bbbb2222")
        approved = alice.post(f"/api/runs/{k.run_a}/review", json={"approved": True})
        cancelled = alice.post(f"/api/runs/{k.run_c}/cancel", json={"reason": "enough"})

        final = cancelled.json()["position"]
        runs = (k.run_a, k.run_b, k.run_c)
        views = {run: read_model(alice, run, final) for run in runs}
        frames = {run: read_frames(alice, f"/api/runs/{run}/stream") for run in runs}
        a_frames = read_frames(
            alice, f"/api/runs/{k.run_a}/stream", last_event_id=k.before[k.run_a]["resume_from"]
        )
    return CarriedOn(
        last_b=last_b,
        more=more,
        done_b=done_b,
        tail_b=tail_b,
        leases=leases,
        stale=stale,
        approved=approved,
        cancelled=cancelled,
        views=views,
        frames=frames,
        a_frames=a_frames,
    )


def test_a_review_requesting_changes_sends_the_run_back_as_a_new_revision(
    killed: Killed,
) -> None:
    run_a, revision, before, review = killed.run_a, killed.revision, killed.before, killed.review
    assert review.json()["status"] == "in_progress"
    assert before[run_a]["view"]["revision"] == revision + 1
    assert len(before[run_a]["history"]) == 1 + 1 + 60 + 1 + 1


def test_the_global_log_ends_at_the_position_of_the_last_command(killed: Killed) -> None:
    global_before, head = killed.global_before, killed.head
    assert [e["position"] for e in global_before][-1] == head


def test_a_runner_appending_when_the_server_is_killed_sees_it_die(killed: Killed) -> None:
    failures, acked = killed.failures, killed.acked
    assert failures, "the writer should have seen the server die"
    assert len(acked) >= 5


def test_runs_the_kill_did_not_touch_read_and_stream_after_the_restart_as_before(
    killed: Killed, restarted: Restarted
) -> None:
    before = killed.before
    for run in (killed.run_a, killed.run_c):
        assert restarted.snapshots[run] == before[run], run


def test_the_global_log_keeps_its_prefix_and_grows_only_by_the_run_being_appended(
    killed: Killed, restarted: Restarted
) -> None:
    global_before, global_after, run_b = killed.global_before, restarted.global_after, killed.run_b
    assert global_after[: len(global_before)] == global_before
    assert {e["run_id"] for e in global_after[len(global_before) :]} == {run_b}


def test_a_global_stream_resumed_after_the_restart_replays_the_same_frames(
    killed: Killed, restarted: Restarted
) -> None:
    global_frames_before = killed.global_frames_before
    global_frames_after = restarted.global_frames_after
    assert global_frames_after == global_frames_before


def test_the_runs_appends_survive_the_kill_in_whole_batches_each_acknowledged_one_included(
    killed: Killed, restarted: Restarted
) -> None:
    acked, history_b = killed.acked, restarted.history_b
    assert [e["sequence"] for e in history_b] == list(range(1, len(history_b) + 1))
    appended = len(history_b) - 2
    assert appended % BATCH == 0, f"a batch was torn: {appended} output events"
    assert appended // BATCH in (len(acked), len(acked) + 1)
    texts = [e["data"]["text"] for e in history_b[2:]]
    assert texts == [f"b{i}-{j}" for i in range(appended // BATCH) for j in range(BATCH)]


def test_every_acknowledged_append_is_stored_at_the_sequence_and_position_it_was_told(
    killed: Killed, restarted: Restarted
) -> None:
    by_sequence = {e["sequence"]: e["position"] for e in restarted.history_b}
    for answer in killed.acked:
        assert by_sequence[answer["sequence"]] == answer["position"]


def test_the_read_model_catches_up_with_everything_stored_and_agrees_with_a_rebuild(
    restarted: Restarted,
) -> None:
    view_b, rebuilt, last_b = restarted.view_b, restarted.rebuilt, len(restarted.history_b)
    assert view_b["status"] == "in_progress" and view_b["last_sequence"] == last_b
    assert rebuilt.status_code == 200 and rebuilt.json() == view_b


def test_a_stream_of_the_killed_run_resumes_after_the_restart_with_what_was_stored(
    restarted: Restarted,
) -> None:
    frames_b, resume_b, history_b = restarted.frames_b, restarted.resume_b, restarted.history_b
    last_b = len(history_b)
    assert event_ids(frames_b) == list(range(resume_b + 1, last_b + 1))
    assert [f.envelope for f in frames_b] == history_b[resume_b:]


def test_a_lease_held_through_the_kill_still_appends_and_reports_after_the_restart(
    carried_on: CarriedOn,
) -> None:
    more, done_b, last_b = carried_on.more, carried_on.done_b, carried_on.last_b
    assert more["sequence"] == last_b + 3
    assert done_b["status"] == "completed"


def test_a_run_completed_after_the_restart_streams_its_new_events_and_done(
    carried_on: CarriedOn,
) -> None:
    tail_b, last_b, done_b = carried_on.tail_b, carried_on.last_b, carried_on.done_b
    assert event_ids(tail_b) == list(range(last_b + 1, done_b["sequence"] + 1))
    assert tail_b[-1].event == "done" and tail_b[-2].event == "run.completed"


def test_runs_not_held_at_the_kill_are_claimed_again_with_the_requested_changes(
    killed: Killed, carried_on: CarriedOn
) -> None:
    leases, run_a, run_c, revision = carried_on.leases, killed.run_a, killed.run_c, killed.revision
    assert set(leases) == {run_a, run_c}
    assert leases[run_a]["run"]["revision"] == revision + 1
    assert leases[run_a]["run"]["comment"] == "add a test"


def test_a_run_claimed_again_after_the_restart_fences_off_its_lease_from_before(
    killed: Killed, carried_on: CarriedOn
) -> None:
    leases, run_a, token_a, stale = (
        carried_on.leases,
        killed.run_a,
        killed.token_a,
        carried_on.stale,
    )
    assert leases[run_a]["fencing_token"] > token_a
    assert stale.status_code == 409 and stale.json()["error"] == "stale_lease"


def test_a_run_sent_back_before_the_kill_is_merged_after_the_restart(
    carried_on: CarriedOn,
) -> None:
    approved = carried_on.approved
    assert approved.status_code == 200 and approved.json()["status"] == "merged"


def test_a_run_pending_through_the_kill_is_cancelled_after_the_restart(
    carried_on: CarriedOn,
) -> None:
    cancelled = carried_on.cancelled
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_every_run_ends_after_the_restart_and_streams_its_whole_history_then_done(
    killed: Killed, carried_on: CarriedOn
) -> None:
    expected = {killed.run_a: "merged", killed.run_b: "completed", killed.run_c: "cancelled"}
    for run, status in expected.items():
        view = carried_on.views[run]
        assert view["status"] == status, run
        frames = carried_on.frames[run]
        assert event_ids(frames) == list(range(1, view["last_sequence"] + 1))
        assert frames[-1] == Frame(None, "done", "{}")


def test_a_stream_resumed_from_before_the_kill_begins_with_the_frames_seen_then(
    killed: Killed, carried_on: CarriedOn
) -> None:
    a_frames = carried_on.a_frames
    old = killed.before[killed.run_a]["frames"]
    assert [(f.id, f.event, f.envelope) for f in a_frames[: len(old)]] == old


# -- SIGTERM with open streams ---------------------------------------------------------------


@dataclass
class Stopped:
    """A server SIGTERMed while a run stream and a global stream were open, and a restart."""

    last: int  # the run's last sequence
    paths: dict[str, str]  # the streams, by name
    took: float  # seconds from SIGTERM to exit
    stragglers: list[str]  # the streams still open five seconds after the exit
    outcome: dict[str, tuple[str, list[Frame]]]  # how each stream ended, and its frames
    replayed: list[Frame]  # the run stream read from the start on the restarted server
    code: int
    output: list[str]


@pytest.fixture(scope="module")
def stopped(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stopped]:
    with ExitStack() as stack:
        base = tmp_path_factory.mktemp(f"sigterm-{store_kind}")
        store_url = stack.enter_context(fresh_store(store_kind, base))
        data_dir = base / "data"
        srv = Server(store_url, data_dir).start()
        stack.callback(srv.kill)
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

        threads = {n: threading.Thread(target=follow, args=(n,), daemon=True) for n in paths}
        for thread in threads.values():
            thread.start()
        for name, event in caught_up.items():
            assert event.wait(10), f"the {name} stream never replayed the history"

        started = time.monotonic()
        code = srv.stop()
        took = time.monotonic() - started
        for thread in threads.values():
            thread.join(5)
        stragglers = [name for name, thread in threads.items() if thread.is_alive()]

        again = Server(store_url, data_dir).start()
        stack.callback(again.kill)
        with again.client(ALICE) as alice:
            replayed = read_frames(alice, paths["run"], until=lambda f: f.id == last)
        yield Stopped(
            last=last,
            paths=paths,
            took=took,
            stragglers=stragglers,
            outcome=outcome,
            replayed=replayed,
            code=code,
            output=srv.output,
        )


def test_sigterm_closes_open_streams_within_seconds(stopped: Stopped) -> None:
    took = stopped.took
    assert took < 4.5, f"SIGTERM took {took:.1f} s with open streams"
    assert not stopped.stragglers, "a stream stayed open after SIGTERM"


def test_streams_open_at_sigterm_are_ended_by_the_server_rather_than_cut(
    stopped: Stopped,
) -> None:
    outcome, paths = stopped.outcome, stopped.paths
    assert set(outcome) == set(paths), "a follower failed before the stop"
    for name, (how, _) in outcome.items():
        assert how == "closed", f"the {name} stream was cut ({how}) rather than closed"


def test_streams_ended_by_sigterm_had_every_event_in_order_and_no_done(stopped: Stopped) -> None:
    last = stopped.last
    for name, (_, frames) in stopped.outcome.items():
        assert [f.id for f in frames] == (
            list(range(1, last + 1)) if name == "run" else sorted({f.id for f in frames})
        )
        assert all(f.event != "done" for f in frames)  # the run has not ended


def test_a_server_restarted_after_sigterm_replays_the_same_stream(stopped: Stopped) -> None:
    frames, outcome = stopped.replayed, stopped.outcome
    assert frames == outcome["run"][1]


def test_the_server_exits_with_status_zero_on_sigterm(stopped: Stopped) -> None:
    code = stopped.code  # a clean exit is status 0, not -SIGTERM
    assert code == 0, f"exit status {code} after SIGTERM:\n" + "".join(stopped.output)


# -- two server processes on one PostgreSQL --------------------------------------------------


@dataclass
class TwoServers:
    """Alice's streams on server a, while everything is written through server b."""

    run_id: str
    bob_run: str
    final: dict[str, Any]  # the run's report
    history: list[dict[str, Any]]  # the run's history, read through b
    run_frames: list[Frame]  # the run's stream on a
    global_frames: list[Frame]  # alice's global stream on a
    expected: list[dict[str, Any]]  # alice's global history, read through b


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoServers]:
    base = tmp_path_factory.mktemp("two-servers")
    with ExitStack() as stack:
        url = stack.enter_context(postgres_schema())
        server_a = Server(url, base / "a").start()
        stack.callback(server_a.kill)
        server_b = Server(url, base / "b").start()
        stack.callback(server_b.kill)
        yield follow_a_while_writing_through_b(server_a, server_b)


def follow_a_while_writing_through_b(server_a: Server, server_b: Server) -> TwoServers:
    """Alice follows her global stream and a run's stream on a; the run is written through
    b, whose events must show on a's streams as they happen, not replayed later."""
    with (
        server_b.client(ALICE) as alice_b,
        server_b.client(BOB) as bob_b,
        server_b.client(RUNNER) as runner_b,
    ):
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
        expected = global_history(alice_b)
    return TwoServers(
        run_id=run_id,
        bob_run=bob_run,
        final=final,
        history=history,
        run_frames=run_frames,
        global_frames=global_frames,
        expected=expected,
    )


@pytest.mark.postgres
def test_a_run_stream_on_one_server_follows_a_run_written_through_another_to_its_end(
    two_servers: TwoServers,
) -> None:
    history, final, run_frames = two_servers.history, two_servers.final, two_servers.run_frames
    assert len(history) == final["sequence"] == 1 + 1 + 150 + 1
    assert event_ids(run_frames) == list(range(1, final["sequence"] + 1))
    assert run_frames[-1] == Frame(None, "done", "{}")
    assert [f.envelope for f in run_frames[:-1]] == history


@pytest.mark.postgres
def test_a_global_stream_on_one_server_shows_every_event_written_through_another(
    two_servers: TwoServers,
) -> None:
    global_frames, expected = two_servers.global_frames, two_servers.expected
    assert [f.id for f in global_frames] == [e["position"] for e in expected]
    assert [f.envelope for f in global_frames] == expected


@pytest.mark.postgres
def test_a_global_stream_on_one_server_leaves_out_another_users_runs_written_through_another(
    two_servers: TwoServers,
) -> None:
    bob_run, global_frames = two_servers.bob_run, two_servers.global_frames
    assert bob_run not in {f.envelope["run_id"] for f in global_frames}
