"""A fault-injecting HTTP/1.1 reverse proxy for fault tests (stdlib only, loopback only).

The proxy sits between the app (httpx, the label-studio-sdk) and a real server on 127.0.0.1 and
forwards every request unchanged, except those matched by a rule, which get a fault instead::

    with FaultProxy("http://127.0.0.1:8080") as proxy:
        rule = proxy.add_rule(method="POST", path=r"/api/projects/\\d+/import/predictions",
                              action=drop_response, times=1)
        ...  # point the client at proxy.url
        assert rule.matched == 1
        assert proxy.log[-1] == LogEntry("POST", "/api/projects/3/import/predictions", None, "drop_response")

Rules are tried in the order they were added; the first one that matches the method (``None``: any)
and whose regex *fully* matches the path (query string excluded) applies, ``times`` times
(``None``: always), and is then used up (``rule.stop()`` uses it up at once). Actions:

``forward``                  forward normally (with ``on_match`` or the events: an observer).
``drop_response``            forward (the server commits), read its whole answer, then close the
                             client connection without sending a byte.
``status(502)``              answer 502 without forwarding.
``status_after_forward(502)`` forward (the server commits), discard its answer, answer 502.
``stall(seconds)``           forward, then hold the answer back for ``seconds``.
``hold``                     keep the request at the proxy until ``rule.release()``, then forward.
``hold_response``            forward (the server commits), keep the answer until ``rule.release()``.

Every rule counts its matches (``rule.matched``, ``rule.wait_matched(n)``) and has two events:
``arrived`` (a matching request reached the proxy) and ``forwarded`` (the target answered one), so
tests are driven by events, never by sleeps. ``rule.release()`` lets go of every request of that
rule held so far (later ones are held again). ``proxy.log`` lists what happened, one
``LogEntry(method, path, status, fault)`` per request, written before the client gets its answer.

Each client connection gets a daemon thread (keep-alive supported); each forwarded request opens a
fresh connection to the target. Closing the proxy releases held requests (they are dropped, not
forwarded), shuts every connection down and joins the threads with a timeout.
"""

from __future__ import annotations

import http.client
import re
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Callable, NamedTuple, Optional, Union
from urllib.parse import urlsplit

__all__ = [
    "FaultProxy", "Rule", "Action", "LogEntry", "SeenRequest",
    "forward", "drop_response", "status", "status_after_forward", "stall", "hold", "hold_response",
]

# Headers that describe one connection, not the message: never relayed as they are.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "expect", "content-length", "host",
})


# --------------------------------------------------------------------------- #
# Actions, rules, log
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Action:
    """What a rule does to the requests it matches; build one with the helpers below."""

    kind: str
    status: Optional[int] = None
    seconds: float = 0.0


forward = Action("forward")
drop_response = Action("drop_response")
hold = Action("hold")
hold_response = Action("hold_response")
_NAMED = {a.kind: a for a in (forward, drop_response, hold, hold_response)}


def status(code: int = 502) -> Action:
    """Answer ``code`` without forwarding the request."""
    return Action("status", status=code)


def status_after_forward(code: int = 502) -> Action:
    """Forward the request, discard the target's answer, answer ``code``."""
    return Action("status_after_forward", status=code)


def stall(seconds: float) -> Action:
    """Forward the request, then delay its answer by ``seconds`` (the injected fault)."""
    return Action("stall", seconds=seconds)


class LogEntry(NamedTuple):
    """One request seen by the proxy.

    ``status`` is the status sent to the client (None: nothing was sent); ``fault`` the kind of the
    action applied (None: passed through), or ``"upstream_error"`` / ``"aborted"``.
    """

    method: str
    path: str
    status: Optional[int]
    fault: Optional[str]


class SeenRequest(NamedTuple):
    """A matched request, as given to ``on_match``."""

    method: str
    path: str
    query: str
    headers: list
    body: bytes


class Rule:
    """A fault for the requests matching (method, path regex); see the module docstring."""

    def __init__(self, proxy: "FaultProxy", method: Optional[str], path: Optional[str], action: Action,
                 times: Optional[int], on_match: Optional[Callable[[SeenRequest], None]]):
        self.method = method.upper() if method else None
        self.pattern = re.compile(path) if path is not None else None
        self.action = action
        self.times = times
        self.on_match = on_match
        self.matched = 0
        self.arrived = threading.Event()
        self.forwarded = threading.Event()
        self._proxy = proxy
        self._released = 0  # requests of this rule numbered up to this one are released

    def __repr__(self) -> str:
        pattern = self.pattern.pattern if self.pattern else None
        return f"Rule({self.method}, {pattern!r}, {self.action}, times={self.times}, matched={self.matched})"

    @property
    def used_up(self) -> bool:
        return self.times is not None and self.matched >= self.times

    def matches(self, method: str, path: str) -> bool:
        return (not self.used_up and (self.method is None or self.method == method)
                and (self.pattern is None or self.pattern.fullmatch(path) is not None))

    def release(self) -> None:
        """Let go of every request (``hold``) or answer (``hold_response``) of this rule held so far."""
        with self._proxy._cond:
            self._released = self.matched
            self._proxy._cond.notify_all()

    def stop(self) -> None:
        """Apply to no further request (those held so far stay held until released)."""
        with self._proxy._cond:
            self.times = self.matched

    def wait_matched(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``count`` requests matched this rule; False on timeout."""
        with self._proxy._cond:
            return self._proxy._cond.wait_for(lambda: self.matched >= count, timeout)

    def _wait_release(self, ticket: int) -> bool:
        """Block until request number ``ticket`` is released: True, or the proxy closes: False."""
        proxy = self._proxy
        with proxy._cond:
            proxy._cond.wait_for(lambda: self._released >= ticket or proxy._closed.is_set())
            return self._released >= ticket


# --------------------------------------------------------------------------- #
# The proxy
# --------------------------------------------------------------------------- #


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False  # the proxy joins its own threads, with a timeout

    def __init__(self, proxy: "FaultProxy"):
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client going away is no error
            super().handle_error(request, client_address)


class FaultProxy:
    """A reverse proxy to ``target_url`` on a free loopback port; see the module docstring."""

    def __init__(self, target_url: str, *, upstream_timeout: float = 60.0):
        target = urlsplit(target_url)
        if target.scheme != "http" or not target.hostname:
            raise ValueError(f"FaultProxy needs an http:// target, not {target_url!r}")
        self.target_host = target.hostname
        self.target_port = target.port or 80
        self.target_netloc = target.netloc
        self.target_prefix = target.path.rstrip("/")
        self.upstream_timeout = upstream_timeout
        self.rules: list[Rule] = []
        self._log: list[LogEntry] = []
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._handlers: set[_Handler] = set()
        self._server = _Server(self)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"FaultProxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> list[LogEntry]:
        """A copy of the log: one entry per request, in the order they were answered."""
        with self._cond:
            return list(self._log)

    def add_rule(self, method: Optional[str] = None, path: Optional[str] = None,
                 action: Union[Action, str] = forward, times: Optional[int] = 1,
                 on_match: Optional[Callable[[SeenRequest], None]] = None) -> Rule:
        """Add a rule after the existing ones and return it. ``action`` may be a name ("hold")."""
        if isinstance(action, str):
            action = _NAMED[action]
        rule = Rule(self, method, path, action, times, on_match)
        with self._cond:
            self.rules.append(rule)
        return rule

    def release_all(self) -> None:
        """Release everything held so far, by every rule."""
        for rule in list(self.rules):
            rule.release()

    def close(self, timeout: float = 5.0) -> None:
        """Drop held requests, stop serving, shut every connection down and join the threads."""
        if self._closed.is_set():
            return
        with self._cond:
            self._closed.set()
            self._cond.notify_all()
            handlers = list(self._handlers)
        self._server.shutdown()
        self._server.server_close()
        for handler in handlers:
            handler.abort_io()
        deadline = time.monotonic() + timeout
        for thread in [self._thread] + [h.thread for h in handlers]:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- used by the handlers ---------------------------------------------------

    def _match(self, method: str, path: str) -> tuple[Optional[Rule], int]:
        with self._cond:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.matched += 1
                    self._cond.notify_all()
                    return rule, rule.matched
        return None, 0

    def _record(self, entry: LogEntry) -> None:
        with self._cond:
            self._log.append(entry)

    def _register(self, handler: "_Handler") -> None:
        with self._cond:
            if self._closed.is_set():
                handler.abort_io()
            else:
                self._handlers.add(handler)

    def _unregister(self, handler: "_Handler") -> None:
        with self._cond:
            self._handlers.discard(handler)


class _Upstream(NamedTuple):
    status: int
    reason: str
    headers: list
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    upstream: Optional[http.client.HTTPConnection] = None

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.thread = threading.current_thread()
        self.thread.name = f"FaultProxy-{self.server.proxy.port}-conn"
        self.server.proxy._register(self)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # the client went away, or the proxy is closing
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.proxy._unregister(self)

    def abort_io(self) -> None:
        """Unblock this handler's thread: shut its client and upstream sockets down."""
        for sock in (self.connection, getattr(self.upstream, "sock", None)):
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def _proxy(self) -> None:
        proxy = self.server.proxy
        path, _, query = self.path.partition("?")
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400, "bad request body")
            self.close_connection = True
            return
        rule, ticket = proxy._match(self.command, path)
        action = rule.action if rule else forward
        fault = None if action.kind == "forward" else action.kind
        if rule:
            if rule.on_match:
                rule.on_match(SeenRequest(self.command, path, query, self.headers.items(), body))
            rule.arrived.set()

        if action.kind == "status":
            return self._answer(path, action.status, fault)
        if action.kind == "hold" and not rule._wait_release(ticket):
            return self._abort(path)
        try:
            upstream = self._forward(body)
        except (OSError, http.client.HTTPException) as exc:
            return self._answer(path, 502, "upstream_error", f"proxy: target failed: {exc!r}")
        if rule:
            rule.forwarded.set()

        if action.kind == "drop_response":
            proxy._record(LogEntry(self.command, path, None, fault))
            self.close_connection = True
            return
        if action.kind == "status_after_forward":
            return self._answer(path, action.status, fault)
        if action.kind == "stall":
            proxy._closed.wait(action.seconds)
        if action.kind == "hold_response" and not rule._wait_release(ticket):
            return self._abort(path)
        self._relay(path, upstream, fault)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _proxy

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self._read_exactly(size))
                self.rfile.readline()
        return self._read_exactly(int(self.headers.get("Content-Length") or 0))

    def _read_exactly(self, size: int) -> bytes:
        data = self.rfile.read(size) if size > 0 else b""
        if len(data) < size:  # never forward half a request
            raise ConnectionAbortedError("the client closed the connection within the request body")
        return data

    def _forward(self, body: bytes) -> _Upstream:
        proxy = self.server.proxy
        has_body = body or "Content-Length" in self.headers or "Transfer-Encoding" in self.headers
        self.upstream = conn = http.client.HTTPConnection(proxy.target_host, proxy.target_port,
                                                          timeout=proxy.upstream_timeout)
        try:
            conn.putrequest(self.command, proxy.target_prefix + self.path,
                            skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", proxy.target_netloc)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            if has_body:
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body if has_body else None)
            response = conn.getresponse()
            return _Upstream(response.status, response.reason, response.getheaders(), response.read())
        finally:
            conn.close()
            self.upstream = None

    def _relay(self, path: str, upstream: _Upstream, fault: Optional[str]) -> None:
        self.server.proxy._record(LogEntry(self.command, path, upstream.status, fault))
        self.send_response_only(upstream.status, upstream.reason)
        for name, value in upstream.headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD" or upstream.status in (204, 304) or upstream.status < 200:
            length = next((v for n, v in upstream.headers if n.lower() == "content-length"), None)
            body = b""
        else:
            length, body = str(len(upstream.body)), upstream.body
        self._finish_answer(length, body)

    def _answer(self, path: str, code: int, fault: Optional[str], text: Optional[str] = None) -> None:
        self.server.proxy._record(LogEntry(self.command, path, code, fault))
        body = (text or f"proxy: injected fault {fault}: {code}").encode() + b"\n"
        self.send_response_only(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self._finish_answer(str(len(body)), b"" if self.command == "HEAD" else body)

    def _finish_answer(self, length: Optional[str], body: bytes) -> None:
        if length is not None:
            self.send_header("Content-Length", length)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _abort(self, path: str) -> None:
        self.server.proxy._record(LogEntry(self.command, path, None, "aborted"))
        self.close_connection = True
