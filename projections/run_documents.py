"""The runs view's documents kept in memory, encoded, by the process that projects them: a
read of one run answers from here without a thread or a query (GET /api/runs/{id}).

Never newer than what is committed, never older than the position this process reports:
the runs projection stages each run it writes, and the feeder publishes the batch's
documents after its transaction commits and before its position moves. A document read
from the table fills the cache only if no batch was published (and nothing cleared) since
the read began, so a slow read never puts back what a batch replaced. Bounded: the least
recently used documents go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from adapters import readmodels
from adapters.db import Cursor

CAPACITY = 20_000  # documents (a run's is about 1 to 2 KB)


class RunDocuments:
    """run id -> (owner, the document's JSON), as the runs view holds it."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._docs: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._staged: dict[str, tuple[str, bytes] | None] = {}
        self._generation = 0  # moves with every publish and clear
        self._lock = threading.Lock()

    def get(self, run_id: str, owner: str) -> bytes | None:
        """The owner's run's document, if it is here."""
        with self._lock:
            found = self._docs.get(run_id)
            if found is None or found[0] != owner:
                return None
            self._docs.move_to_end(run_id)
            return found[1]

    def read(self, cur: Cursor, run_id: str, owner: str) -> bytes | None:
        """The owner's run's document from the runs view, kept here unless a batch was
        published (or everything cleared) while it was read."""
        generation = self._generation
        doc = readmodels.get_run_json(cur, run_id, owner)
        if doc is not None:
            with self._lock:
                if generation == self._generation:
                    self._put(run_id, (owner, doc))
        return doc

    def stage(self, run_id: str, owner: str, doc: bytes | None) -> None:
        """A run written (None: deleted) by the batch in progress (the feeder's thread)."""
        self._staged[run_id] = None if doc is None else (owner, doc)

    def publish(self) -> None:
        """The batch committed: its documents replace the ones here."""
        staged, self._staged = self._staged, {}
        with self._lock:
            self._generation += 1
            for run_id, entry in staged.items():
                if entry is None:
                    self._docs.pop(run_id, None)
                else:
                    self._put(run_id, entry)

    def clear(self) -> None:
        """Forget everything (a batch rolled back, the projection rewound, or this process
        is about to project again after another did)."""
        self._staged = {}
        with self._lock:
            self._generation += 1
            self._docs.clear()

    def __len__(self) -> int:
        return len(self._docs)

    def _put(self, run_id: str, entry: tuple[str, bytes]) -> None:
        self._docs[run_id] = entry
        self._docs.move_to_end(run_id)
        if len(self._docs) > self.capacity:
            self._docs.popitem(last=False)
