"""Folding stored events into aggregates, for projections that read the whole state."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Repository
from eventsourcing.persistence import Mapper, StoredEvent

from adapters.db import StoredRow
from adapters.stored import EVENT_CLASSES, current_state, domain_event


class Loader(Protocol):
    """What folding needs of the application (the engine is one): its mapper, to read a
    stored form current_state does not, and its repository, for an aggregate at a version.
    Projections depend on this, not on the engine, which lives in the layer above them."""

    @property
    def mapper(self) -> Mapper[UUID]: ...

    @property
    def repository(self) -> Repository[UUID]: ...


class Folder:
    """Keeps recently seen aggregates in memory and applies each next event to them.

    A miss (or a version the cache does not have) loads the aggregate as it stood just
    before the event, so the result is always exactly the state after that event.
    """

    def __init__(self, engine: Loader, capacity: int = 5000) -> None:
        self.engine = engine
        self.capacity = capacity
        self._cache: OrderedDict[UUID, Any] = OrderedDict()

    def _event(self, row: StoredRow, plain: bool) -> Any:
        """The domain event of a row, read (and upcast) by current_state as the mapper
        reads it, without making the StoredEvent the mapper takes; a stored form that
        current_state does not read (`plain` false) goes through the mapper."""
        cls = EVENT_CLASSES.get(row.topic)
        if cls is None or not plain:
            return self.engine.mapper.to_domain_event(
                StoredEvent(row.run_id, row.sequence, row.topic, row.state)
            )
        return domain_event(cls, row.run_id, row.sequence, current_state(row.topic, row.state))

    def _plain(self) -> bool:
        return bool(getattr(self.engine.mapper, "plain", False))

    def forget(self) -> None:
        """Drop everything (after a failed transaction or a rewind)."""
        self._cache.clear()

    def advance(self, row: StoredRow) -> Any:
        """The aggregate after the event in `row`."""
        return self.fold([row])[row.run_id]

    def fold(self, rows: list[StoredRow]) -> dict[UUID, Any]:
        """The aggregates after the events in `rows` (in log order), by id.

        Runner output comes in long runs of one aggregate's events: each run of rows is
        folded into one aggregate taken from (and put back into) the cache once.
        """
        plain = self._plain()
        folded: dict[UUID, Any] = {}
        key: UUID | None = None
        aggregate: Any = None
        for row in rows:
            if row.run_id != key:
                if key is not None:
                    folded[key] = aggregate
                key = row.run_id
                aggregate = folded.pop(key) if key in folded else self._cache.pop(key, None)
            event = self._event(row, plain)
            if row.sequence == 1:
                aggregate = event.mutate(None)
                continue
            if aggregate is None or aggregate.version != row.sequence - 1:
                aggregate = self.engine.repository.get(row.run_id, version=row.sequence - 1)
            event.mutate(aggregate)
        if key is not None:
            folded[key] = aggregate
        for key, aggregate in folded.items():
            self._cache.pop(key, None)
            self._cache[key] = aggregate
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return folded
