"""Folding stored events into aggregates, for projections that read the whole state."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from eventsourcing.persistence import StoredEvent

from adapters.db import StoredRow
from domain.engine import Engine


class Folder:
    """Keeps recently seen aggregates in memory and applies each next event to them.

    A miss (or a version the cache does not have) loads the aggregate as it stood just
    before the event, so the result is always exactly the state after that event.
    """

    def __init__(self, engine: Engine, capacity: int = 5000) -> None:
        self.engine = engine
        self.capacity = capacity
        self._cache: OrderedDict[str, Any] = OrderedDict()

    def forget(self) -> None:
        """Drop everything (after a failed transaction or a rewind)."""
        self._cache.clear()

    def advance(self, row: StoredRow) -> Any:
        """The aggregate after the event in `row`."""
        key = str(row.run_id)
        event = self.engine.mapper.to_domain_event(
            StoredEvent(row.run_id, row.sequence, row.topic, row.state)
        )
        aggregate = self._cache.pop(key, None)
        if row.sequence == 1:
            aggregate = event.mutate(None)
        else:
            if aggregate is None or aggregate.version != row.sequence - 1:
                aggregate = self.engine.repository.get(row.run_id, version=row.sequence - 1)
            event.mutate(aggregate)
        self._cache[key] = aggregate
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return aggregate
