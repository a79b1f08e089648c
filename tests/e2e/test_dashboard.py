"""The dashboard in a real browser (Debian's Chromium under Playwright) against a real
`runledger serve`, on SQLite and PostgreSQL: sign in; a run's timeline follows a runner's
events without a reload and resumes across a server killed and restarted, showing every
event once; approve a run from the page and see it merged; resolve gates; the time
slider; drag a board task and find the new order after a reload; a coordinator's graph
follows its subtasks live. Each view is saved as a screenshot in test-artifacts/dashboard/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.board_helpers import columns, create_task
from tests.e2e.clients import launch_chromium
from tests.e2e.coordination_helpers import claim_child, set_plan
from tests.e2e.coordination_helpers import report as report_child
from tests.e2e.helpers import wait_for
from tests.e2e.projects_helpers import create_project
from tests.e2e.runs_helpers import append, claim, log, ok, report, submit
from tests.support import ALICE, RUNNER, Server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
WAIT = 20_000  # ms: the longest any view may take to show what it should


@pytest.fixture
def page(srv: Server, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A signed-in page: the key typed into the sign-in field and submitted with Enter."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.set_default_timeout(WAIT)
            tab.goto(f"{srv.url}/")
            tab.wait_for_selector("#key")
            shot(tab, request, "sign-in")
            tab.fill("#key", ALICE)
            tab.press("#key", "Enter")
            tab.wait_for_selector("h1:text('Runs')")
            yield tab
        finally:
            browser.close()
    assert not errors, errors  # no uncaught script error on any view


def shot(tab: Any, request: pytest.FixtureRequest, view: str) -> None:
    """Save a screenshot of the view, named after the test and the store."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "-", request.node.name)
    tab.screenshot(path=str(ARTIFACTS / f"{name}--{view}.png"), full_page=True)


def timeline(tab: Any) -> list[int]:
    """The sequences of the timeline's rows, in page order."""
    return [
        int(s)
        for s in tab.eval_on_selector_all(
            "#timeline [data-seq]", "rows => rows.map(r => r.dataset.seq)"
        )
    ]


def wait_rows(tab: Any, count: int) -> None:
    tab.wait_for_function(
        "n => document.querySelectorAll('#timeline [data-seq]').length >= n", arg=count
    )


def test_a_run_follows_live_and_resumes_after_a_server_restart_showing_each_event_once(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run = submit(alice, task="refactor the parser")["run_id"]
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, log("reading the code"))
        page.wait_for_selector(f"[data-run='{run}']")  # the list is live: no reload
        shot(page, request, "runs")
        page.click(f"[data-run='{run}'] a")
        page.wait_for_selector("#timeline")
        wait_rows(page, 3)
        append(runner, run, token, log("live one"), log("live two"))
        wait_rows(page, 5)  # appear without a reload
        assert timeline(page) == [1, 2, 3, 4, 5]
        shot(page, request, "run")

        srv.kill()  # no goodbye: the page's stream just breaks
        page.wait_for_function("document.getElementById('connection').textContent !== 'live'")
        srv.start()
        append(runner, run, token, log("after the restart"), log("and more"))
        wait_rows(page, 7)
        page.wait_for_function("document.getElementById('connection').textContent === 'live'")
        report(runner, run, token, "failed", failure={"category": "agent", "message": "gave up"})
        wait_rows(page, 8)
        page.wait_for_selector("#run-fields [data-status='failed']")
        total = len(ok(alice.get(f"/api/runs/{run}/events"))["events"])
    assert timeline(page) == list(range(1, total + 1))  # every event, once, in order
    shot(page, request, "run-after-restart")


def test_approve_from_the_page_and_see_merged(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run = submit(alice, task="ship the fix")["run_id"]
        token = claim(runner, run)["fencing_token"]
        stats = {"files": 1, "added": 3, "removed": 1}
        report(runner, run, token, "changes", tree_hash="abcd1234", diff_stats=stats)
        page.goto(f"{srv.url}/#/runs/{run}")
        page.wait_for_selector("#run-fields [data-status='awaiting_review']")
        page.fill("#review-comment", "looks right")
        shot(page, request, "review")
        page.click("#review button:text('Approve')")
        page.wait_for_selector("#run-fields [data-status='merged']")
        page.wait_for_selector("#review:has-text('approved by alice')")
        assert ok(alice.get(f"/api/runs/{run}", params={"min_position": 0}))["status"] in (
            "merging",
            "merged",
        )
        shot(page, request, "merged")


def test_a_run_read_before_its_view_caught_up_shows_its_latest_state(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    # The run's view lags its events a little (a projection); a page opened in that moment
    # reads the view as it was and the history as it is. Every read of the view without
    # min_position answers the state before the report here, as a lagging projection
    # would: the page must read it again up to the events it shows, with no event to come.
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run = submit(alice, task="read while it lags")["run_id"]
        token = claim(runner, run)["fencing_token"]
        before = ok(alice.get(f"/api/runs/{run}", params={"min_position": 0}))
        report(runner, run, token, "changes", tree_hash="abcd1234")
        lagging = re.compile(rf"/api/runs/{run}(\?.*)?$")

        def as_before(route: Any) -> None:
            if "min_position=" in route.request.url:
                route.continue_()
            else:
                route.fulfill(json=before)

        page.route(lagging, as_before)
        page.goto(f"{srv.url}/#/runs/{run}")
        page.wait_for_selector("#run-fields [data-status='awaiting_review']")
        assert before["status"] != "awaiting_review"  # (it was read before the report)
        shot(page, request, "caught-up")


def test_resolve_gates_from_the_page(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run = submit(alice, task="needs answers")["run_id"]
        token = claim(runner, run)["fencing_token"]
        gates = [
            {"gate_id": "q1", "kind": "question", "prompt": "Which database?"},
            {"gate_id": "t1", "kind": "shell_approval", "prompt": "rm -rf build"},
        ]
        append(runner, run, token, *({"type": "gate.opened", "data": g} for g in gates))
        page.goto(f"{srv.url}/#/runs/{run}")
        page.wait_for_selector("[data-gate='q1']")
        shot(page, request, "gates")
        page.fill("#answer-q1", "PostgreSQL")
        page.press("#answer-q1", "Enter")
        page.wait_for_selector("[data-gate='q1']", state="detached")
        page.click("[data-gate='t1'] button:text('Deny')")
        page.wait_for_selector("#gates", state="detached")  # no gate left open
        events = ok(alice.get(f"/api/runs/{run}/events"))["events"]
    resolved = {e["data"]["gate_id"]: e["data"] for e in events if e["type"] == "gate.resolved"}
    assert resolved["q1"]["decision"] == "answer" and resolved["q1"]["answer"] == "PostgreSQL"
    assert resolved["t1"]["decision"] == "deny"


def test_the_time_slider_shows_the_run_as_it_stood(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        run = submit(alice, task="travel in time")["run_id"]
        token = claim(runner, run)["fencing_token"]
        append(runner, run, token, log("a"), log("b"))
        ok(alice.post(f"/api/runs/{run}/cancel", json={}))
        page.goto(f"{srv.url}/#/runs/{run}")
        page.wait_for_selector("#run-fields [data-status='cancelled']")
        page.fill("#time-slider", "1")  # as it stood after run.submitted
        page.wait_for_selector(".timetravel:has-text('after event 1 of 5')")
        page.wait_for_selector("#run-fields [data-status='pending']")
        shot(page, request, "time-slider")
        page.click("#back-to-live")
        page.wait_for_selector("#run-fields [data-status='cancelled']")


def test_drag_a_board_task_and_find_the_new_order_after_a_reload(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    with srv.client(ALICE) as alice:
        project = create_project(alice, name="website")["project_id"]
        first = create_task(alice, project, "write the copy")["task_id"]
        create_task(alice, project, "pick the colours")
        third = create_task(alice, project, "ship it")["task_id"]
        columns(alice, project)  # the board's read model has them
        page.goto(f"{srv.url}/#/projects/{project}")
        page.wait_for_selector(f"[data-task='{third}']")
        shot(page, request, "board")
        page.drag_and_drop(f"[data-task='{third}']", f"[data-task='{first}']")
        want = ["ship it", "write the copy", "pick the colours"]
        page.wait_for_function(
            "want => [...document.querySelectorAll('[data-column=backlog] .card strong')]"
            ".map(e => e.textContent).join('|') === want",
            arg="|".join(want),
        )
        page.reload()
        page.wait_for_selector(f"[data-task='{third}']")
        shown = page.eval_on_selector_all(
            "[data-column=backlog] .card strong", "cards => cards.map(c => c.textContent)"
        )
        assert shown == want
        assert columns(alice, project)["backlog"] == want
        # a card dragged to another column moves there
        page.drag_and_drop(f"[data-task='{first}']", "[data-column=ready]")
        page.wait_for_selector(f"[data-column=ready] [data-task='{first}']")
        shot(page, request, "board-after-drag")
        # and from the keyboard: the card's own buttons, focused and pressed with Enter
        page.focus("button[aria-label='Move pick the colours up']")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "want => [...document.querySelectorAll('[data-column=backlog] .card strong')]"
            ".map(e => e.textContent).join('|') === want",
            arg="pick the colours|ship it",
        )
        assert columns(alice, project)["backlog"] == ["pick the colours", "ship it"]


def test_a_coordinators_graph_follows_its_subtasks_live(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    with srv.client(ALICE) as alice, srv.client(RUNNER) as runner:
        coordinator = submit(alice, task="build the feature")["run_id"]
        plan = [
            {"key": "api", "title": "The API", "depends_on": []},
            {"key": "ui", "title": "The UI", "depends_on": ["api"]},
        ]
        set_plan(alice, coordinator, plan)
        page.goto(f"{srv.url}/#/runs/{coordinator}")
        node = "document.querySelector(\"#plan-graph [data-node='{}']\")?.dataset.status"
        status = "n => " + node.format("api") + " === n[0] && " + node.format("ui") + " === n[1]"
        page.wait_for_function(status, arg=["dispatched", "waiting"])
        shot(page, request, "graph-before")
        for key in ("api", "ui"):  # each child done in turn: the graph follows without reload
            lease = claim_child(runner)
            assert lease is not None
            report_child(runner, lease, "no_changes")
            if key == "api":
                page.wait_for_function(status, arg=["completed", "dispatched"])
                page.wait_for_selector("#children [data-subtask='api']")
                shot(page, request, "graph-during")
        page.wait_for_function(status, arg=["completed", "completed"])
        page.wait_for_selector("#plan-graph [data-node='@assembly']")
        shot(page, request, "graph-after")


def test_diagnostics_and_projects_views(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    with srv.client(ALICE) as alice:
        create_project(alice, name="docs site")
    page.click("nav a:text('Projects')")
    page.wait_for_selector("li a:text('docs site')")
    shot(page, request, "projects")
    page.click("nav a:text('Diagnostics')")
    page.wait_for_selector("#head-position")
    assert int(page.text_content("#head-position") or "0") >= 1
    shot(page, request, "diagnostics")
    # signing out ends the session: the page asks for a key again
    page.click("#sign-out")
    page.wait_for_selector("#key")
    assert page.evaluate("fetch('/api/runs').then(r => r.status)") == 401


def test_leaving_a_view_closes_its_streams_even_while_it_loads(
    srv: Server, page: Any, request: pytest.FixtureRequest
) -> None:
    with srv.client(ALICE) as alice:
        runs = [submit(alice, task=f"run {i}")["run_id"] for i in range(3)]
        for run in runs:  # hop between views without waiting for any to finish loading
            page.evaluate("id => { location.hash = '#/runs/' + id }", run)
            page.evaluate("() => { location.hash = '#/runs' }")
        page.evaluate("id => { location.hash = '#/runs/' + id }", runs[0])
        page.wait_for_selector("#timeline [data-seq='1']")
        page.wait_for_timeout(1500)  # any stream a left view still opened has connected

        def subscribers() -> int:
            return int(ok(alice.get("/api/diagnostics"))["subscribers"])

        # The run view's own stream, nothing left behind: a stream a left view opened is
        # closed by the browser, and the server notices as soon as its loop gets to it (on
        # a loaded machine, not always within the pause above); one left open never is.
        wait_for(lambda: subscribers() == 1, 10, "only the run view's stream to stay open")


def test_a_session_that_ends_under_an_open_view_brings_the_sign_in_back(
    store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import sync_playwright

    srv = Server(store_url, tmp_path / "data", RUNLEDGER_SESSION_HOURS=str(4 / 3600)).start()
    try:
        with srv.client(ALICE) as alice, sync_playwright() as p:
            run = submit(alice, task="watched")["run_id"]
            browser = launch_chromium(p)
            try:
                tab = browser.new_page()
                tab.set_default_timeout(WAIT)
                tab.goto(f"{srv.url}/#/runs/{run}")
                tab.fill("#key", ALICE)
                tab.press("#key", "Enter")
                tab.wait_for_selector("#timeline [data-seq='1']")
                tab.wait_for_timeout(4500)  # the session expires; the stream is still open
                srv.kill()  # its stream breaks; the browser's reconnect is refused (401)
                srv.start()
                tab.wait_for_selector("#key", timeout=30_000)
                shot(tab, request, "signed-out")
            finally:
                browser.close()
    finally:
        srv.kill()
