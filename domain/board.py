"""The board's pure rules: its columns, a task's run id, where a task goes in a column.

A project's board keeps one ordered list of task ids per column a user moves tasks
between (backlog, ready, archived). The order is guarded by the Project aggregate's
version: two concurrent edits conflict and the engine decides the second again on the
first's result, so a task is never lost or duplicated and no order depends on timing.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from domain.errors import Conflict, Invalid

BACKLOG, READY, ARCHIVED = "backlog", "ready", "archived"
COLUMNS = (BACKLOG, READY, ARCHIVED)
"""The columns a user moves a task between (archived ones are hidden from the board)."""

# What a task's run says about the task: busy while it runs, done, or back to the user.
ACTIVE_RUN = frozenset({"pending", "in_progress", "paused", "awaiting_review", "merging"})
DONE_RUN = frozenset({"merged", "completed"})
FAILED_RUN = frozenset({"failed", "declined", "merge_failed", "cancelled"})

MAX_TITLE = 500
MAX_CONCURRENT_RUNS = 50
DEFAULT_SETTINGS = {"auto_pickup": False, "max_concurrent_runs": 1}
"""A board's auto-pickup settings until a user sets them: off, one run at a time."""
PICKUP_ACTOR = "auto-pickup"
"""Who starts the tasks the auto-pickup policy starts."""
MAX_DESCRIPTION = 20_000

_TASK_RUN_NAMESPACE = uuid5(NAMESPACE_URL, "https://runledger.dev/ns/task-run")


def task_run_id(project_id: UUID, task_id: str, start: int) -> UUID:
    """The id of a task's `start`-th run: the same however often the start is repeated, so
    a crash between recording the start and creating the run never makes two runs."""
    return uuid5(_TASK_RUN_NAMESPACE, f"{project_id}/{task_id}/{start}")


def run_task(title: str, description: str) -> str:
    """The `task` of a task's run: its title, a blank line and its description if any."""
    return f"{title}\n\n{description}" if description.strip() else title


def check_text(title: str | None, description: str | None) -> None:
    """A title must not be blank; both have a length limit."""
    if title is not None:
        if not title.strip():
            raise Invalid("The title must not be empty.", "title")
        if len(title) > MAX_TITLE:
            raise Invalid(f"The title is longer than {MAX_TITLE} characters.", "title")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise Invalid(
            f"The description is longer than {MAX_DESCRIPTION} characters.", "description"
        )


def placement(order: list[str], task_id: str, before: str | None, after: str | None) -> int:
    """The index `task_id` takes in its column's `order` (which holds it) when placed right
    before `before` or right after `after` (exactly one given, another task of the column).
    The index is the one in the order without the task, so inserting there places it."""
    if (before is None) == (after is None):
        raise Invalid("Give exactly one of before_task_id and after_task_id.", "before_task_id")
    other = before if before is not None else after
    field = "before_task_id" if before is not None else "after_task_id"
    if other == task_id:
        raise Invalid("A task cannot be placed next to itself.", field)
    rest = [t for t in order if t != task_id]
    if other not in rest:
        raise Invalid("That task is not in the same column.", field)
    index = rest.index(other)
    return index if before is not None else index + 1


def check_settings(max_concurrent_runs: int) -> None:
    """The limit of a board's concurrent runs is 1..MAX_CONCURRENT_RUNS."""
    if not 1 <= max_concurrent_runs <= MAX_CONCURRENT_RUNS:
        raise Invalid(
            f"max_concurrent_runs must be between 1 and {MAX_CONCURRENT_RUNS}.",
            "max_concurrent_runs",
        )


def check_idle(column: str, run_status: str | None) -> None:
    """A task whose run is still going cannot be moved, edited away or started again."""
    if run_status in ACTIVE_RUN:
        raise Conflict("The task's run is still going.", run_status or column)


SHOWN_COLUMNS = ("backlog", "ready", "in_progress", "in_review", "done")
"""The board's columns as shown: a started task's column follows its run."""


def shown_column(column: str, run_id: str | None, run_status: str | None) -> str:
    """Where the board shows a task: its own column until it is started, then its run's
    (`in_progress` from the start on, also before the run is seen), back to `ready`
    when the run failed, was declined, could not merge or was cancelled."""
    if run_id is None:
        return column
    if run_status in ("awaiting_review", "merging"):
        return "in_review"
    if run_status in DONE_RUN:
        return "done"
    if run_status in FAILED_RUN:
        return READY
    return "in_progress"
