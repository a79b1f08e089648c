"""The runs' documents in memory (projections/run_documents.py), on each store: what a
read from memory answers is the runs view's row, never behind the position the process
reports, never a document a batch has replaced, and gone with a run that is deleted."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from adapters import readmodels
from adapters.db import Cursor
from projections.run_documents import RunDocuments


def stored(runtime: Any, run_id: str, owner: str = "alice") -> bytes | None:
    with runtime.db.reading() as cur:
        return readmodels.get_run_json(cur, run_id, owner)


def test_each_batch_leaves_memory_equal_to_the_view_before_its_position_moves(
    runtime: Any,
) -> None:
    documents: RunDocuments = runtime.run_documents
    seen: list[tuple[int, bytes | None, bytes | None]] = []
    run_id = str(runtime.engine.submit_run("alice", "first").run_id)

    def at_advance(position: int) -> None:  # what a reader at `position` gets
        seen.append((position, documents.get(run_id, "alice"), stored(runtime, run_id)))

    runtime.projection.on_advance.append(at_advance)
    runtime.catch_up()
    runtime.engine.cancel_run(UUID(run_id), "alice")
    runtime.catch_up()

    assert len(seen) == 2
    for _, in_memory, in_view in seen:
        assert in_memory is not None and in_memory == in_view
    assert orjson.loads(seen[-1][1] or b"")["status"] == "cancelled"
    assert documents.get(run_id, "bob") is None  # another user's run is not found here


def test_a_deleted_run_leaves_memory_with_its_row(runtime: Any) -> None:
    run = runtime.engine.submit_run("alice", "short-lived").run_id
    runtime.catch_up()
    assert runtime.run_documents.get(str(run), "alice") is not None
    runtime.engine.delete_run(run, "alice")
    runtime.catch_up()
    assert stored(runtime, str(run)) is None
    assert runtime.run_documents.get(str(run), "alice") is None


def test_a_read_from_the_view_is_kept_only_if_no_batch_was_published_meanwhile(
    runtime: Any,
) -> None:
    run_id = str(runtime.engine.submit_run("alice", "read").run_id)
    runtime.catch_up()
    row = stored(runtime, run_id)
    documents = RunDocuments()  # empty: as in a process that has just taken the lead
    with runtime.db.reading() as cur:
        assert documents.read(cur, run_id, "alice") == row
    assert documents.get(run_id, "alice") == row

    later = RunDocuments()

    class PublishedMidRead(Cursor):  # a batch is published while the row is being read
        def __init__(self, inner: Cursor) -> None:
            self.inner = inner

        def execute(self, sql: str, params: Any = ()) -> Cursor:
            later.publish()
            return self.inner.execute(sql, params)

    with runtime.db.reading() as cur:
        assert later.read(PublishedMidRead(cur), run_id, "alice") is not None
    assert later.get(run_id, "alice") is None  # what it read may be older than the batch


def test_a_failed_batch_or_a_rewind_forgets_everything(runtime: Any) -> None:
    run_id = str(runtime.engine.submit_run("alice", "kept").run_id)
    runtime.catch_up()
    assert runtime.run_documents.get(run_id, "alice") is not None
    runtime.projection.reload()  # as when this process takes the lead again
    assert len(runtime.run_documents) == 0


def test_the_oldest_documents_go_first_beyond_capacity() -> None:
    documents = RunDocuments(capacity=2)
    for run_id in ("a", "b"):
        documents.stage(run_id, "alice", run_id.encode())
    documents.publish()
    assert documents.get("a", "alice") == b"a"  # used: now the newest
    documents.stage("c", "alice", b"c")
    documents.publish()
    assert [documents.get(r, "alice") for r in "abc"] == [b"a", None, b"c"]


# -- list pages ---------------------------------------------------------------------------------


def read_page(documents: RunDocuments, owner: str, query: str, body: bytes) -> bytes:
    return documents.read_page(owner, query, lambda: body)


def test_a_list_page_is_answered_until_one_of_its_owners_runs_changes() -> None:
    documents = RunDocuments()
    assert documents.page("alice", "page 1") is None
    assert read_page(documents, "alice", "page 1", b"[a1]") == b"[a1]"
    assert documents.page("alice", "page 1") == b"[a1]"
    assert documents.page("bob", "page 1") is None  # pages are the owner's

    documents.stage("b-run", "bob", b"{}")  # another user's run changed
    documents.publish()
    assert documents.page("alice", "page 1") == b"[a1]"

    documents.stage("a-run", "alice", None)  # one of alice's runs went (or changed)
    documents.publish()
    assert documents.page("alice", "page 1") is None
    read_page(documents, "alice", "page 1", b"[a2]")
    assert documents.page("alice", "page 1") == b"[a2]"

    documents.clear()  # a failed batch, a rewind, or taking the lead again
    assert documents.page("alice", "page 1") is None


def test_a_page_read_while_its_owner_changed_or_all_was_cleared_is_not_kept() -> None:
    documents = RunDocuments()

    def published_mid_read() -> bytes:
        documents.stage("a-run", "alice", b"{}")
        documents.publish()
        return b"[maybe older than the batch]"

    assert documents.read_page("alice", "q", published_mid_read) == b"[maybe older than the batch]"
    assert documents.page("alice", "q") is None

    def cleared_mid_read() -> bytes:
        documents.clear()
        return b"[old]"

    documents.read_page("alice", "q", cleared_mid_read)
    assert documents.page("alice", "q") is None

    def bob_mid_read() -> bytes:  # another user's batch changes nothing of alice's
        documents.stage("b-run", "bob", b"{}")
        documents.publish()
        return b"[a]"

    documents.read_page("alice", "q", bob_mid_read)
    assert documents.page("alice", "q") == b"[a]"


def test_pages_are_bounded_by_bytes_least_recent_first() -> None:
    documents = RunDocuments(page_bytes=120)  # six pages of 20 bytes; none over 30 kept
    for i in range(1, 7):
        read_page(documents, "alice", f"p{i}", b"x" * 20)
    assert all(documents.page("alice", f"p{i}") for i in range(1, 7))
    assert documents.page("alice", "p1")  # used: now the most recent
    read_page(documents, "alice", "p7", b"x" * 20)
    kept = [i for i in range(1, 8) if documents.page("alice", f"p{i}") is not None]
    assert kept == [1, 3, 4, 5, 6, 7]  # p2 went: the least recently used
    read_page(documents, "alice", "big", b"x" * 31)
    assert documents.page("alice", "big") is None  # it would push out too many others
