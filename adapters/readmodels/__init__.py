"""The SQL of the read models and their tracking positions, one module per view:
runs.py, projects.py, leases.py, owners.py, plans.py, board.py, board_settings.py,
tracking.py; schema.py creates them all.

Callers use the package (`readmodels.get_run(cur, …)`): every query is re-exported here.
"""

from adapters.readmodels.board import get_board, get_board_encoded
from adapters.readmodels.board_settings import (
    board_stamp,
    get_board_settings,
    pickup_candidates,
)
from adapters.readmodels.leases import (
    confirm_leases,
    delete_lease,
    expired_leases,
    next_lease_deadline,
    renew_lease,
    run_of_lease,
    runner_leases,
    unconfirmed_claims,
    upsert_lease,
)
from adapters.readmodels.owners import note_owner, owner_start
from adapters.readmodels.plans import (
    active_coordinators,
    children_to_cancel,
    coordinators_of,
    delete_plan,
    get_plan,
    run_docs,
    run_statuses,
    upsert_plan,
)
from adapters.readmodels.projects import (
    delete_project,
    get_project,
    list_projects,
    upsert_project,
)
from adapters.readmodels.runs import (
    active_runs_of_project,
    all_runs,
    claimable_runs,
    delete_run,
    get_run,
    get_run_json,
    list_runs,
    next_claimable_at,
    runs_in_status,
    runs_of_missing_projects,
    upsert_run,
)
from adapters.readmodels.schema import (
    READ_MODEL_TABLES,
    READ_MODEL_VERSION,
    analyze,
    create_schema,
    reset,
)
from adapters.readmodels.tracking import (
    advance_tracking_all,
    tracked_position,
    tracked_positions,
)
from adapters.readmodels.usage import add_usage, note_run, project_usage, run_usage

__all__ = [
    "READ_MODEL_TABLES",
    "READ_MODEL_VERSION",
    "active_coordinators",
    "active_runs_of_project",
    "add_usage",
    "advance_tracking_all",
    "all_runs",
    "analyze",
    "board_stamp",
    "children_to_cancel",
    "claimable_runs",
    "confirm_leases",
    "coordinators_of",
    "create_schema",
    "delete_lease",
    "delete_plan",
    "delete_project",
    "delete_run",
    "expired_leases",
    "get_board",
    "get_board_encoded",
    "get_board_settings",
    "get_plan",
    "get_project",
    "get_run",
    "get_run_json",
    "list_projects",
    "list_runs",
    "next_claimable_at",
    "next_lease_deadline",
    "note_owner",
    "note_run",
    "owner_start",
    "pickup_candidates",
    "project_usage",
    "renew_lease",
    "reset",
    "run_docs",
    "run_of_lease",
    "run_statuses",
    "run_usage",
    "runner_leases",
    "runs_in_status",
    "runs_of_missing_projects",
    "tracked_position",
    "tracked_positions",
    "unconfirmed_claims",
    "upsert_lease",
    "upsert_plan",
    "upsert_project",
    "upsert_run",
]
