"""The runs view's documents kept in memory, encoded, by the process that projects them: a
read of one run answers from here without a thread or a query (GET /api/runs/{id}); and the
list pages read lately (GET /api/runs), each kept until a batch changes one of its owner's
runs.

Never newer than what is committed, never older than the position this process reports:
the runs projection stages each run it writes, and the feeder publishes the batch's
documents after its transaction commits and before its position moves. A document read
from the table fills the cache only if no batch was published (and nothing cleared) since
the read began, so a slow read never puts back what a batch replaced. Bounded: the least
recently used documents go first.

A list page is kept under its query (owner, filters, cursor, limit) with the owner's
generation, which moves whenever a published batch wrote one of the owner's runs: a page is
answered from here only while that has not happened, so it equals what the view would give
at the position reported. As for documents, a page read while a batch of the owner's was
published, or everything was cleared, is not kept. Bounded by bytes, least recent first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from adapters import readmodels
from adapters.db import Cursor

CAPACITY = 20_000  # documents (a run's is about 1 to 2 KB)
PAGE_BYTES = 16 * 1024 * 1024  # list pages kept, in bytes of their bodies


class RunDocuments:
    """run id -> (owner, the document's JSON), as the runs view holds it."""

    def __init__(self, capacity: int = CAPACITY, page_bytes: int = PAGE_BYTES) -> None:
        self.capacity = capacity
        self.page_bytes = page_bytes
        self._docs: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._staged: dict[str, tuple[str, bytes | None]] = {}
        self._generation = 0  # moves with every publish and clear
        self._clears = 0  # moves with every clear
        self._owners: dict[str, int] = {}  # owner -> generation of their runs
        self._pages: OrderedDict[tuple[str, Hashable], tuple[int, bytes]] = OrderedDict()
        self._kept_bytes = 0  # of the pages
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

    def page(self, owner: str, query: Hashable) -> bytes | None:
        """A list page of the owner's kept since none of their runs changed, if there is one."""
        key = (owner, query)
        with self._lock:
            found = self._pages.get(key)
            if found is None or found[0] != self._owners.get(owner, 0):
                return None
            self._pages.move_to_end(key)
            return found[1]

    def read_page(self, owner: str, query: Hashable, read: Callable[[], bytes]) -> bytes:
        """`read()` the page from the view; kept unless one of the owner's runs changed (or
        everything was cleared) while it was read."""
        with self._lock:
            before = (self._clears, self._owners.get(owner, 0))
        body = read()
        if len(body) <= self.page_bytes // 4:  # a huge page would push out many others
            with self._lock:
                if before == (self._clears, self._owners.get(owner, 0)):
                    self._keep_page((owner, query), before[1], body)
        return body

    def stage(self, run_id: str, owner: str, doc: bytes | None) -> None:
        """A run written (None: deleted) by the batch in progress (the feeder's thread)."""
        self._staged[run_id] = (owner, doc)

    def publish(self) -> None:
        """The batch committed: its documents replace the ones here, and its owners' pages
        are no longer answered."""
        staged, self._staged = self._staged, {}
        with self._lock:
            self._generation += 1
            for run_id, (owner, doc) in staged.items():
                self._owners[owner] = self._owners.get(owner, 0) + 1
                if doc is None:
                    self._docs.pop(run_id, None)
                else:
                    self._put(run_id, (owner, doc))

    def clear(self) -> None:
        """Forget everything (a batch rolled back, the projection rewound, or this process
        is about to project again after another did)."""
        self._staged = {}
        with self._lock:
            self._generation += 1
            self._clears += 1
            self._docs.clear()
            self._pages.clear()
            self._kept_bytes = 0

    def __len__(self) -> int:
        return len(self._docs)

    def _put(self, run_id: str, entry: tuple[str, bytes]) -> None:
        self._docs[run_id] = entry
        self._docs.move_to_end(run_id)
        if len(self._docs) > self.capacity:
            self._docs.popitem(last=False)

    def _keep_page(self, key: tuple[str, Hashable], generation: int, body: bytes) -> None:
        old = self._pages.pop(key, None)
        if old is not None:
            self._kept_bytes -= len(old[1])
        self._pages[key] = (generation, body)
        self._kept_bytes += len(body)
        while self._kept_bytes > self.page_bytes:
            _, (_, gone) = self._pages.popitem(last=False)
            self._kept_bytes -= len(gone)
