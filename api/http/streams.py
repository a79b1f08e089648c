"""SSE: the gapless resumable streams over the hub (api/service/hub.py).

Flows (each its own task or thread):
  feed thread ──call_soon_threadsafe──► Hub.publish ──► each Subscriber's bounded buffer
  request: a finished run's client that already has its last event gets 204 (stop);
    take one of the key's stream slots (429 when none is left) ─► stream task
  stream task: register ─► `retry:` ─► replay stored events after N, a page at a time (read and
    encoded on a replay thread) ─► drain live, skipping seen ids ─► give the slot back
  api/http/sse.py: `: ping` when idle; client disconnect or server shutdown ends the stream
  live, once caught up: the hub's publish calls the stream's sink, which writes the frame at
  once (`write`, SseResponse.write_now); a gap, the run's end, or a write that cannot go now
  hands the event back to the buffer, and the stream's task takes over (as above)
  after a wave of streams ended: collect cycles and trim the heap, on a replay thread
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import NamedTuple
from uuid import UUID

from adapters.db import Database
from api.envelopes import DONE_FRAME, DONE_FRAME_UNNAMED, Envelope, RunDirectory
from api.http.sse import WriteNow
from api.service.hub import Hub

# A replay reads this many events at a time and writes them in chunks of about this size:
# what a stream holds at once (encoded, in flight) is bounded, however long the history.
REPLAY_PAGE = 200
CHUNK_BYTES = 32 * 1024
# Sent once, first: how long a client that lost the stream waits before it reconnects.
RETRY_MS = 3000
RETRY_FRAME = b"retry: %d\n\n" % RETRY_MS


class Framing(NamedTuple):
    """How a stream writes its events: named frames (`event: <type>`, the default), or
    unnamed ones (`?named=false`) that an EventSource's `onmessage` receives all of."""

    frame: Callable[[Envelope, int], bytes]
    done: bytes


NAMED = Framing(Envelope.sse, DONE_FRAME)
UNNAMED = Framing(Envelope.sse_unnamed, DONE_FRAME_UNNAMED)


async def run_stream(
    hub: Hub,
    db: Database,
    run_id: UUID,
    after: int,
    finished: bool,
    framing: Framing = NAMED,
    write: WriteNow | None = None,
) -> AsyncIterator[bytes]:
    """A run's events with sequence > after, then live ones, then `done` once it ends.

    With `write`, live events that follow on are written by it from the publish itself
    (False from it: the event goes the stream's way instead)."""
    key = str(run_id)
    sub = hub.subscribe(lambda env: env.run_id == key)
    last = after

    def sink(env: Envelope) -> bool:
        nonlocal last
        seq = env.sequence
        if seq is None or seq <= last:  # a project's event, or one the stream has
            return True
        if seq == last + 1 and not env.is_terminal and write(framing.frame(env, seq)):  # type: ignore[misc]
            last = seq
            return True
        return False  # a gap, the run's end, or a write under way: the task takes over

    try:
        yield RETRY_FRAME
        while True:  # replay, and catch up again if live delivery ever shows a gap
            while True:
                page = await hub.off_loop(_run_page, db, run_id, last, framing)
                for chunk in page.chunks:
                    yield chunk
                last, finished = page.last, finished or page.terminal
                if page.rows < REPLAY_PAGE:
                    break
            del page  # nothing of the replay stays with the stream while it waits
            if finished:
                yield framing.done
                return
            gap = ended = False
            while not (gap or ended):
                batch = await sub.take(None if write is None else sink)
                if not batch:
                    return
                frames = []
                for env in batch:
                    if env.sequence is None or env.sequence <= last:  # None: a project's
                        continue
                    if env.sequence != last + 1:
                        gap = True
                        break
                    frames.append(framing.frame(env, env.sequence))
                    last = env.sequence
                    if env.is_terminal:
                        frames.append(framing.done)
                        ended = True
                        break
                del batch  # the envelopes are shared: let them go once every stream sent them
                for chunk in _chunked(frames):
                    yield chunk
            if ended:
                return
    finally:
        hub.unsubscribe(sub)


class Page(NamedTuple):
    """One page of replay, already encoded: the stream keeps no envelope of it."""

    chunks: list[bytes]
    last: int  # the id of the page's last event (the resume point when it is empty)
    rows: int  # rows read: fewer than REPLAY_PAGE means the replay reached the end
    terminal: bool = False


def _run_page(db: Database, run_id: UUID, after: int, framing: Framing) -> Page:
    """Up to REPLAY_PAGE of a run's stored events after a sequence, as SSE writes."""
    rows = db.run_events(run_id, after, REPLAY_PAGE)
    frames, terminal = [], False
    for row in rows:
        env = Envelope.from_row(row)
        frames.append(framing.frame(env, row.sequence))
        terminal = terminal or env.is_terminal
    last = rows[-1].sequence if rows else after
    return Page(_chunked(frames), last, len(rows), terminal)


def _chunked(frames: list[bytes]) -> list[bytes]:
    """Frames joined into writes of at most about CHUNK_BYTES (fewer writes, bounded size).

    sse-starlette keeps the last write of a stream referenced while the stream waits for
    the next one: a whole replay joined into one write stayed with every open stream.
    """
    chunks: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for frame in frames:
        if pending and size + len(frame) > CHUNK_BYTES:
            chunks.append(_joined(pending))
            pending, size = [], 0
        pending.append(frame)
        size += len(frame)
    if pending:
        chunks.append(_joined(pending))
    return chunks


def _joined(frames: list[bytes]) -> bytes:
    """One write of the frames; a lone frame as it is (shared by every stream sending it)."""
    return frames[0] if len(frames) == 1 else b"".join(frames)


async def global_stream(
    hub: Hub,
    db: Database,
    directory: RunDirectory,
    after: int,
    accepts: Callable[[Envelope], bool],
    framing: Framing = NAMED,
    write: WriteNow | None = None,
) -> AsyncIterator[bytes]:
    """The caller's events in global order after a position, then live ones (written by
    `write` from the publish itself when it can, as in run_stream)."""
    sub = hub.subscribe(accepts)
    last = after

    def sink(env: Envelope) -> bool:
        nonlocal last
        if env.position <= last:
            return True
        if write(framing.frame(env, env.position)):  # type: ignore[misc]
            last = env.position
            return True
        return False

    try:
        yield RETRY_FRAME
        while True:
            page = await hub.off_loop(_global_page, db, directory, last, accepts, framing)
            for chunk in page.chunks:
                yield chunk
            last = page.last
            if page.rows < REPLAY_PAGE:
                break
        del page
        while True:
            batch = await sub.take(None if write is None else sink)
            if not batch:
                return
            frames = []
            for env in batch:
                if env.position > last:
                    frames.append(framing.frame(env, env.position))
                    last = env.position
            del batch
            for chunk in _chunked(frames):
                yield chunk
    finally:
        hub.unsubscribe(sub)


def _global_page(
    db: Database,
    directory: RunDirectory,
    position: int,
    accepts: Callable[[Envelope], bool],
    framing: Framing,
) -> Page:
    """The accepted events among the next REPLAY_PAGE stored after a position, as writes."""
    rows = db.events_after(position, REPLAY_PAGE)
    frames = []
    for row in rows:
        env = directory.stamp(Envelope.from_row(row))
        if accepts(env):
            frames.append(framing.frame(env, env.position))
    last = rows[-1].position if rows else position
    return Page(_chunked(frames), last, len(rows))
