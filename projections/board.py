"""The board read model: a project's tasks (from its board events) joined with each
task's last run (from that run's events), so a task's shown column follows its run."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from adapters import readmodels
from adapters.db import Cursor, StoredRow
from adapters.readmodels import board, board_settings
from domain.board import FAILED_RUN
from domain.projects import Project
from domain.runs import Run
from domain.timestamps import format_timestamp
from domain.topics import PROJECT_TOPICS, RUN_TOPICS
from projections.folding import Folder, Loader

TASKLESS_KEPT = 100_000  # runs the board projection remembers as no task's


def task_doc(task_id: str, task: dict[str, Any]) -> dict[str, Any]:
    """A task's own fields, as the board shows them."""
    return {
        "task_id": task_id,
        "title": task["title"],
        "description": task["description"],
        "column": task["column"],
        "run_id": task["run_id"],
    }


def run_summary(run: Run) -> dict[str, Any]:
    """What the board shows of a task's run."""
    return {
        "run_id": str(run.id),
        "status": run.status,
        "open_gates": len(run.open_gates),
        "last_event_at": format_timestamp(run.modified_on),
    }


def run_failure(run: Run) -> dict[str, Any] | None:
    """The failure a task shows after its run failed, was declined, could not merge or
    was cancelled; None while it has not."""
    if run.status not in FAILED_RUN:
        return None
    failure = run.failure or {}
    message = failure.get("message")
    if message is None and run.review is not None:
        message = run.review.get("comment")
    return {
        "run_id": str(run.id),
        "category": failure.get("category", run.status),
        "message": message or "",
    }


class BoardProjection:
    """Applies board events and the events of the tasks' runs to the board view.

    Most runs are no task's: it remembers the runs it found to be none (`_taskless`, up to
    TASKLESS_KEPT) until the next board event, which may make one a task's run, so that
    their output costs no look at the board.
    """

    name = "board"
    tables: tuple[str, ...] = ("board_view", "board_settings_view")

    def __init__(self, engine: Loader) -> None:
        self.projects = Folder(engine)
        self.runs = Folder(engine)
        self._taskless: set[str] = set()  # runs that are no task's last run

    def forget(self) -> None:
        """Drop the in-memory projects and runs."""
        self.projects.forget()
        self.runs.forget()
        self._taskless.clear()

    def reset(self, cur: Cursor) -> None:
        """Empty the view and rewind, for a rebuild."""
        readmodels.reset(cur, "board_view", self.name)
        board_settings.delete_settings(cur)

    def apply(self, cur: Cursor, rows: list[StoredRow]) -> None:
        """Apply a batch in log order, a stretch of project events, then a stretch of run
        events, and so on: a run's events reach the task whose run it was at that point
        (a task's start precedes its run's first event), so the last failure of a task's
        earlier run is kept however the log is cut into batches (a rebuild reads it whole)."""
        for on_project, stretch in groupby(rows, key=lambda row: row.topic in PROJECT_TOPICS):
            if on_project:
                self._taskless.clear()  # a task may start, or move to, any run
                rows_of = list(stretch)
                last = {row.run_id: row.position for row in rows_of}
                for project in self.projects.fold(rows_of).values():
                    self._write_board(cur, project)
                    self._write_settings(cur, project, last[project.id])
            else:
                self._apply_runs(cur, [row for row in stretch if row.topic in RUN_TOPICS])

    def _write_settings(self, cur: Cursor, project: Project, stamp: int) -> None:
        if project.deleted:
            board_settings.delete_settings(cur, str(project.id))
        else:
            board_settings.set_settings(cur, str(project.id), project.board_settings, stamp)

    def _apply_runs(self, cur: Cursor, run_rows: list[StoredRow]) -> None:
        asked = {str(row.run_id) for row in run_rows} - self._taskless
        found = board.tasks_of_runs(cur, list(asked)) if asked else {}
        if len(self._taskless) + len(asked) > TASKLESS_KEPT:
            self._taskless.clear()  # a bound, not a loss: a forgotten run costs a look
        self._taskless.update(asked - found.keys())
        tasks = {row.run_id: found[str(row.run_id)] for row in run_rows if str(row.run_id) in found}
        wanted = [row for row in run_rows if row.run_id in tasks]
        for run_id, run in self.runs.fold(wanted).items():
            task_id, _ = tasks[run_id]
            board.set_task_run(cur, task_id, run_summary(run), run_failure(run))
        stamps: dict[str, int] = {}
        for row in wanted:  # in log order: the last one of each project stays
            stamps[tasks[row.run_id][1]] = row.position
        for project_id, stamp in stamps.items():
            board_settings.touch(cur, project_id, stamp)

    def _write_board(self, cur: Cursor, project: Project) -> None:
        """Write the rows of the project's tasks whose own fields or rank changed (a batch
        moves a few tasks; rewriting all of them made every board event cost O(tasks))."""
        project_id = str(project.id)
        if project.deleted:
            board.delete_board(cur, project_id)
            return
        known = board.board_tasks(cur, project_id)
        changed = []
        for column in project.columns.values():
            for rank, task_id in enumerate(column):
                doc = task_doc(task_id, project.tasks[task_id])
                doc_text = board.encode_doc(doc)
                stored = known.get(task_id)
                if stored is None or stored.rank != rank or stored.doc != doc_text:
                    row = board.task_row(project_id, project.owner, doc, rank, stored, doc_text)
                    changed.append(row)
        board.upsert_tasks(cur, changed)
        board.delete_tasks(cur, [t for t in known if t not in project.tasks])
