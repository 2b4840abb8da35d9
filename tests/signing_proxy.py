"""A sign-in proxy for the tests (stdlib only, loopback only): what a team's reverse proxy does in
front of the dashboard, reduced to the part the dashboard relies on.

    with SigningProxy(dashboard.url, headers={"X-Forwarded-Email": "lead@example.com"}) as proxy:
        page.goto(proxy.url)  # the browser talks to the proxy; the dashboard sees the header

It listens on 127.0.0.1 (``port``, or a free one), opens one connection to the target per client
connection, from ``source`` (any address of 127/8 is this machine's loopback on Linux, so 127.0.0.2
is "another machine" to the dashboard), and rewrites the first request head of each connection:

* every header of ``headers`` is set, replacing any the client sent under that name;
* with ``present_as`` (a host:port), the Host header becomes that, and an Origin header
  ``http://<present_as>``, as if the browser had opened the dashboard at that address;
* a plain request gets ``Connection: close``, so the browser opens a new connection for the next
  request and every request head passes through the rewrite; a WebSocket upgrade keeps its
  ``Connection: Upgrade``, and after its head the bytes are piped both ways unchanged.

``proxy.heads`` lists the rewritten heads (request line and headers) in the order they were sent.
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

__all__ = ["SigningProxy"]

_END_OF_HEAD = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection"}


class SigningProxy:
    def __init__(self, target: str, *, headers: dict[str, str] | None = None, present_as: str | None = None, source: str = "127.0.0.1", port: int = 0):
        parts = urlsplit(target if "://" in target else f"http://{target}")
        self.target = (parts.hostname, parts.port or 80)
        self.headers = dict(headers or {})
        self.present_as = present_as
        self.source = source
        self.listen_port = port
        self.heads: list[str] = []
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "SigningProxy":
        # Fail here, not at the first request, when the source address cannot be used.
        probe = socket.create_connection(self.target, timeout=10, source_address=(self.source, 0))
        probe.close()
        self._listener = socket.create_server(("127.0.0.1", self.listen_port))
        self._start(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._closed = True
            open_sockets = list(self._sockets)
        _shut(self._listener)  # wakes the accept() under way (closing alone does not, on Linux)
        self._listener.close()
        for sock in open_sockets:
            _shut(sock)
        for thread in list(self._threads):
            thread.join(timeout=5)

    # -- the connections ---------------------------------------------------------------------------

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _keep(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                sock.close()
                return False
            self._sockets.add(sock)
            return True

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
        for sock in sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was closed
                return
            if self._keep(client):
                self._start(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            head, rest = _read_head(client)
            if head is None:
                return
            upstream = socket.create_connection(self.target, timeout=30, source_address=(self.source, 0))
            upstream.settimeout(None)
            if not self._keep(upstream):
                return
            rewritten = self._rewrite(head)
            with self._lock:
                self.heads.append(rewritten.decode("latin-1"))
            upstream.sendall(rewritten + rest)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()
        except OSError:
            pass
        finally:
            self._forget(*(s for s in (client, upstream) if s is not None))

    def _rewrite(self, head: bytes) -> bytes:
        request_line, *lines = head.decode("latin-1").split("\r\n")
        fields = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if ":" in line]
        names = {name.lower() for name, _ in fields}
        connection = ",".join(value for name, value in fields if name.lower() == "connection").lower()
        upgrade = "upgrade" in names and "upgrade" in connection
        wanted = {name.lower(): (name, value) for name, value in self.headers.items()}
        if self.present_as:
            wanted["host"] = ("Host", self.present_as)
            if "origin" in names:
                wanted["origin"] = ("Origin", f"http://{self.present_as}")
        kept = [
            (name, value)
            for name, value in fields
            if name.lower() not in wanted and (upgrade or name.lower() not in _HOP_BY_HOP)
        ]
        added = list(wanted.values())
        if not upgrade:
            added.append(("Connection", "close"))
        return ("\r\n".join([request_line, *(f"{name}: {value}" for name, value in kept + added)]) + "\r\n\r\n").encode("latin-1")


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """The request head (up to and without the blank line) and what came after it; None when the
    client closed first."""
    data = b""
    while _END_OF_HEAD not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
        if len(data) > _MAX_HEAD:
            raise OSError("request head too long")
    head, rest = data.split(_END_OF_HEAD, 1)
    return head, rest


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until ``source`` ends, then end the writing half of ``sink``."""
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
