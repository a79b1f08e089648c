"""Idempotency records on both stores: reservations, receipts saved with the events, and
taking over the reservations of requests that died."""

from __future__ import annotations

import time
from uuid import UUID

import pytest

from adapters.idempotency import RESERVATION_TIMEOUT, Idempotency
from adapters.locks import Instance, instance_alive
from api.service.runtime import Runtime
from domain.receipts import CURRENT_RECEIPT, Receipt, ReceiptTakenOver

OWNER = "alice"


def records_of(runtime: Runtime, holder: int) -> Idempotency:
    """Another process's view of the same records: its own instance token."""
    return Idempotency(runtime.db, holder, lambda token: instance_alive(runtime.settings, token))


def dead_process(runtime: Runtime) -> Idempotency:
    """The records as a process that has since died used them."""
    instance = Instance(runtime.settings)
    records = records_of(runtime, instance.token)
    instance.close()
    return records


def submit_under(runtime: Runtime, receipt: Receipt) -> UUID:
    """Submit a run as an idempotent request's command would."""
    token = CURRENT_RECEIPT.set(receipt)
    try:
        return runtime.engine.submit_run(OWNER, "task").run_id
    finally:
        CURRENT_RECEIPT.reset(token)


def test_a_running_request_keeps_its_reservation(runtime: Runtime) -> None:
    records = runtime.idempotency
    assert records.reserve(OWNER, "k", "f").attempt is not None
    assert records.reserve(OWNER, "k", "f").in_progress


def test_a_reused_key_for_another_request_is_a_mismatch(runtime: Runtime) -> None:
    runtime.idempotency.reserve(OWNER, "k", "f")
    assert runtime.idempotency.reserve(OWNER, "k", "other").mismatch


def test_an_answered_request_is_replayed(runtime: Runtime) -> None:
    records = runtime.idempotency
    attempt = records.reserve(OWNER, "k", "f").attempt
    assert attempt is not None
    records.record(OWNER, "k", attempt, 201, b'{"a": 1}')
    assert records.reserve(OWNER, "k", "f").answer == (201, b'{"a": 1}')


def test_keys_are_per_owner(runtime: Runtime) -> None:
    runtime.idempotency.reserve(OWNER, "k", "f")
    assert runtime.idempotency.reserve("bob", "k", "f").attempt is not None


def test_a_reservation_of_a_dead_process_is_taken_over_at_once(runtime: Runtime) -> None:
    first = dead_process(runtime).reserve(OWNER, "k", "f").attempt
    again = runtime.idempotency.reserve(OWNER, "k", "f")
    assert again.attempt is not None and again.attempt != first


def test_a_reservation_of_a_live_process_is_in_progress(runtime: Runtime) -> None:
    other = Instance(runtime.settings)
    try:
        records_of(runtime, other.token).reserve(OWNER, "k", "f")
        assert runtime.idempotency.reserve(OWNER, "k", "f").in_progress
    finally:
        other.close()


def test_a_reservation_older_than_any_request_is_taken_over(runtime: Runtime) -> None:
    other = Instance(runtime.settings)
    try:
        records_of(runtime, other.token).reserve(OWNER, "k", "f")
        with runtime.db.transaction() as cur:
            cur.execute(
                "UPDATE idempotency_keys SET created_at = ? WHERE key = 'k'",
                (time.time() - RESERVATION_TIMEOUT - 1,),
            )
        assert runtime.idempotency.reserve(OWNER, "k", "f").attempt is not None
    finally:
        other.close()


def test_a_failed_request_in_this_process_leaves_its_key_free(runtime: Runtime) -> None:
    records = runtime.idempotency
    attempt = records.reserve(OWNER, "k", "f").attempt
    assert attempt is not None and records.release(OWNER, "k", attempt)
    assert records.reserve(OWNER, "k", "f").attempt is not None


def test_a_save_records_what_it_appended_with_its_events(runtime: Runtime) -> None:
    dead = dead_process(runtime)
    attempt = dead.reserve(OWNER, "k", "f").attempt
    assert attempt is not None
    run_id = submit_under(runtime, Receipt(OWNER, "k", attempt))
    found = runtime.idempotency.reserve(OWNER, "k", "f")
    assert found.result == {"id": str(run_id), "status": "pending", "sequence": 1}
    assert found.taken_from == attempt


def test_a_committed_request_cannot_be_released(runtime: Runtime) -> None:
    records = runtime.idempotency
    attempt = records.reserve(OWNER, "k", "f").attempt
    assert attempt is not None
    submit_under(runtime, Receipt(OWNER, "k", attempt))
    assert not records.release(OWNER, "k", attempt)


def test_a_save_whose_reservation_was_taken_over_stores_nothing(runtime: Runtime) -> None:
    slow = dead_process(runtime).reserve(OWNER, "k", "f").attempt
    assert slow is not None
    assert runtime.idempotency.reserve(OWNER, "k", "f").attempt not in (None, slow)
    head = runtime.db.head()
    with pytest.raises(ReceiptTakenOver):
        submit_under(runtime, Receipt(OWNER, "k", slow))
    assert runtime.db.head() == head


def test_a_row_from_before_holders_waits_for_the_timeout(runtime: Runtime) -> None:
    with runtime.db.transaction() as cur:
        cur.execute(
            "INSERT INTO idempotency_keys (owner, key, fingerprint, created_at) "
            "VALUES (?, 'k', 'f', ?)",
            (OWNER, time.time()),
        )
    assert runtime.idempotency.reserve(OWNER, "k", "f").in_progress
