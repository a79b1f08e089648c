"""Faults the tests cause for real: a TCP proxy in front of PostgreSQL that can cut it off.

A server under test is pointed at the proxy instead of the database (`proxied_url`), so a
test can take its database away (every proxied connection closed, new ones refused) and
give it back, without touching the PostgreSQL server that other tests share.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:port to a target address until `cut()`, again after `restore()`."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.port = self._listen(0)

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listener.settimeout(0.05)  # so the acceptor sees a cut at once
        self._cutting = threading.Event()
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener, self._cutting), daemon=True
        )
        self._acceptor.start()
        return int(listener.getsockname()[1])

    def _accept(self, listener: socket.socket, cutting: threading.Event) -> None:
        while not cutting.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if cutting.is_set():  # cut while connecting: this one goes too
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    @property
    def connections(self) -> int:
        """Sockets open through the proxy (two per proxied connection)."""
        with self._lock:
            return len(self._open)

    def cut(self) -> None:
        """The database goes away: new connections are refused, open ones are closed."""
        with self._lock:
            self._cutting.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
        if self._listener is not None:
            self._listener.close()  # from now on, connecting is refused
            self._listener = None
        self.drop()

    def drop(self) -> None:
        """Every open connection is closed (as when backends are killed); new ones work."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            self._drop(sock)

    def restore(self) -> None:
        """The database is back, on the same port."""
        if self._listener is None:
            self._listen(self.port)

    def close(self) -> None:
        """Cut, for good."""
        self.cut()

    def proxied_url(self, url: str) -> str:
        """`url` (a postgresql:// URL) with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))
