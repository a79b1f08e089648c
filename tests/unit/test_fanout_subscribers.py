"""bench_fanout.py's subscribers parse what they noted only after the streams ended
(scripts/fanout_subscribers.py): a chunked SSE body read back from (time, bytes) pieces,
however the reads split it, with every event's latency taken at the read that completed it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from fanout_subscribers import Follower, _frames  # noqa: E402

HEAD = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(frame: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(frame), frame)


def event(i: int, sent: float) -> bytes:
    return chunk(
        b'id: %d\nevent: log\ndata: {"data":{"bench_i":%d,"sent":%r}}\n\n' % (i + 1, i, sent)
    )


DONE = chunk(b"event: done\ndata: {}\n\n") + b"0\r\n\r\n"


def follower(pieces: list[tuple[float, bytes]]) -> Follower:
    async def make() -> Follower:
        made = Follower(b"GET / HTTP/1.1\r\n\r\n")
        made.pieces = pieces
        return made

    return asyncio.run(make())


def test_events_split_across_reads_are_timed_at_the_read_that_completed_them() -> None:
    body = event(0, 100.0) + event(1, 101.0)
    cut = len(event(0, 100.0)) + 5  # the second event's chunk ends in the next read
    pieces = [(100.5, HEAD + body[:cut]), (101.25, body[cut:] + DONE[:4]), (102.0, DONE[4:])]
    samples: list[float] = []
    assert _frames(0, follower(pieces), samples) == []
    assert samples == [0.5, 0.25]


def test_a_gap_a_missing_end_and_a_refusal_are_reported() -> None:
    samples: list[float] = []
    gap = [(1.0, HEAD + event(0, 0.0) + event(2, 0.0) + DONE)]
    assert _frames(3, follower(gap), samples) == ["subscriber 3: event 2 where 1 was due"]
    cut_short = follower([(1.0, HEAD + event(0, 0.0))])
    cut_short.lost = "the connection was closed first (None)"
    assert _frames(4, cut_short, []) == [
        "subscriber 4: the connection was closed first (None) after 1 events"
    ]
    refused = [(1.0, b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n\r\n{}")]
    assert _frames(5, follower(refused), [])[0].startswith("subscriber 5: b'HTTP/1.1 429")


def test_the_stream_ends_at_done_even_when_its_read_splits_it() -> None:
    async def scenario() -> list[bool]:
        made, ended = Follower(b""), []
        cut = DONE.index(b"done") + 2  # "event: do" | "ne\ndata: {}\n\n\r\n0\r\n\r\n"
        for piece in (HEAD + event(0, 0.0) + DONE[:cut], DONE[cut:-5]):
            made.data_received(piece)
            ended.append(made.ended.done())
        return ended

    assert asyncio.run(scenario()) == [False, True]  # (without waiting for the last chunk)
