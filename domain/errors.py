"""The small hierarchy of domain errors that the API maps to HTTP statuses in one place."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a command was refused and nothing was appended."""


class NotFound(DomainError):
    """No such aggregate, or it is not the caller's (no existence leak)."""


class Invalid(DomainError):
    """The command's arguments are not acceptable whatever the state."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Conflict(DomainError):
    """The command is not allowed in the aggregate's current status."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class StaleLease(DomainError):
    """A runner spoke with a lease or fencing token that is no longer current."""
