"""What the engine's commands give back: what was appended, and a runner's lease."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class Appended:
    """What a command appended: the run, its status and last sequence, the global position."""

    run_id: UUID
    status: str
    sequence: int
    position: int | None  # None when the command appended nothing


@dataclass(frozen=True)
class Lease:
    """A runner's hold on a run: only its fencing token may report. `run` is the work it
    was given (Run.assignment, read-only): values, not the engine's cached run."""

    lease_id: str
    fencing_token: int
    expires_at: datetime
    run: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
