"""Many SSE streams held open by one cheap client process: raw asyncio sockets, no httpx.

The memory tests and `scripts/bench_stream_memory.py` measure the server's RSS while
hundreds of streams are open, so the client runs in its own process (its memory is not the
server's) and costs a few kilobytes per stream. `StreamHolder` drives it over stdin/stdout:

    holder = StreamHolder(port, path, keys, count, until_id)  # connects and replays
    result = holder.wait_replayed(timeout)                     # every stream got `until_id`
    holder.close()                                             # drops every connection

and reads a server's RSS from /proc (`rss_mb`, `settled_rss`).

Imports neither pytest nor anything of the tests', like tests/serve.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Replayed:
    """What the streams answered: how many replayed up to the id, and every other status."""

    replayed: int
    statuses: dict[int, int]


class StreamHolder:
    """A client subprocess holding `count` streams of `path`, keys taken in turn."""

    def __init__(self, port: int, path: str, keys: list[str], count: int, until_id: int) -> None:
        args = [str(port), path, ",".join(keys), str(count), str(until_id)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.streamclient", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_replayed(self, timeout: float) -> Replayed:
        """Block until every stream replayed (or was refused); its tally."""
        line = self._line(timeout)
        body = json.loads(line)
        return Replayed(body["replayed"], {int(k): v for k, v in body["statuses"].items()})

    def close(self, timeout: float = 30.0) -> None:
        """Drop every connection and let the process exit."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("close\n")
                self.proc.stdin.flush()
                self._line(timeout)
            except (BrokenPipeError, TimeoutError):
                pass
        self.kill()

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"stream client said nothing for {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"stream client exited with {self.proc.wait(10)}")
        return line


def rss_mb(pid: int) -> float:
    """A process's resident set (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss(pid: int, quiet: float = 3.0, limit: float = 20.0) -> float:
    """RSS once it has not moved by more than 1 MB for `quiet` seconds (or after `limit`)."""
    deadline = time.monotonic() + limit
    mark, since = rss_mb(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rss_mb(pid)
        if abs(now - mark) > 1.0:
            mark, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return rss_mb(pid)


# -- the client process -----------------------------------------------------------------------


async def _hold(port: int, path: str, key: str, marker: bytes, done: asyncio.Queue) -> None:
    """One stream: connect, replay up to the marker, report, then drain until cancelled."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        await done.put(-2)  # could not connect
        return
    reported = False
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            await done.put(status)
            return
        tail = b""
        while marker not in tail:
            chunk = await reader.read(65536)
            if not chunk:
                await done.put(-1)  # the server ended the stream before the replay did
                return
            tail = tail[-len(marker) :] + chunk
        await done.put(200)
        reported = True
        while await reader.read(65536):  # pings, live events: keep the socket empty
            pass
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        if not reported:
            await done.put(-3)  # broken before the replay ended
    finally:
        writer.close()


async def _main(port: int, path: str, keys: list[str], count: int, until_id: int) -> None:
    marker = b"id: %d\n" % until_id
    done: asyncio.Queue[int] = asyncio.Queue()
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(_hold(port, path, keys[i % len(keys)], marker, done)))
        if i % 50 == 49:
            await asyncio.sleep(0)  # let connections start before the next batch
    tally: Counter[int] = Counter()
    for _ in range(count):
        tally[await done.get()] += 1
    statuses = {k: v for k, v in tally.items() if k != 200}
    print(json.dumps({"replayed": tally[200], "statuses": statuses}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print("closed", flush=True)


if __name__ == "__main__":
    port_, path_, keys_, count_, until_ = sys.argv[1:6]
    asyncio.run(_main(int(port_), path_, keys_.split(","), int(count_), int(until_)))
