"""The fault-injecting proxy (tests/proxy.py), against a tiny local HTTP server that records what it got."""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Iterator, NamedTuple

import httpx
import pytest

from tests.proxy import (FaultProxy, LogEntry, drop_response, hold, hold_response, stall, status,
                         status_after_forward)


class Received(NamedTuple):
    method: str
    path: str
    headers: dict
    body: bytes


class Target:
    """An HTTP/1.1 server on loopback that records every request and echoes it back as JSON.

    ``/chunked`` answers with a chunked body; ``/status/NNN`` answers NNN.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
                code = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
                answer = json.dumps({"method": self.command, "path": self.path, "body": body.decode()}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Set-Cookie", "a=1")
                self.send_header("Set-Cookie", "b=2")
                if self.path == "/chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in (answer[:5], answer[5:], b""):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def bodies(self, method: str = "POST") -> list[bytes]:
        return [r.body for r in self.received if r.method == method]


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


@pytest.fixture
def proxy(target: Target) -> Iterator[FaultProxy]:
    with FaultProxy(target.url) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=5) as http_client:
        yield http_client


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    """Runs a client call in a thread while the test drives the proxy."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def test_passes_get_and_post_through_with_query_body_and_headers(proxy, target, client):
    got = client.get("/api/things?page=2&q=a%20b", headers={"X-Token": "t"})
    posted = client.post("/api/things/7", json={"n": 1})

    assert got.status_code == 200 and got.json()["path"] == "/api/things?page=2&q=a%20b"
    assert posted.status_code == 200 and json.loads(posted.json()["body"]) == {"n": 1}
    assert got.headers.get_list("set-cookie") == ["a=1", "b=2"]
    first, second = target.received
    assert (first.method, first.path, first.body) == ("GET", "/api/things?page=2&q=a%20b", b"")
    assert first.headers["X-Token"] == "t"
    assert first.headers["Host"] == target.url.removeprefix("http://")
    assert (second.method, second.path, json.loads(second.body)) == ("POST", "/api/things/7", {"n": 1})
    assert proxy.log == [LogEntry("GET", "/api/things", 200, None), LogEntry("POST", "/api/things/7", 200, None)]


def test_relays_statuses_chunked_answers_and_chunked_request_bodies(proxy, target, client):
    assert client.get("/status/404").status_code == 404
    assert client.get("/chunked").json()["path"] == "/chunked"
    assert client.post("/upload", content=iter([b"ab", b"cd"])).json()["body"] == "abcd"
    assert client.head("/api/things").status_code == 200
    assert target.bodies() == [b"abcd"]
    assert [entry.status for entry in proxy.log] == [404, 200, 200, 200]


def test_keeps_client_connections_alive(proxy, target):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        conn.request("GET", "/one")
        assert conn.getresponse().read()
        sock = conn.sock
        conn.request("POST", "/two", body=b"x")
        assert conn.getresponse().read()
        assert conn.sock is sock  # the same connection served both
    finally:
        conn.close()
    assert [r.path for r in target.received] == ["/one", "/two"]


def test_drop_response_commits_on_the_server_but_the_client_gets_no_answer(proxy, target, client):
    rule = proxy.add_rule(method="POST", path=r"/api/projects/\d+/import/predictions", action=drop_response)

    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/projects/3/import/predictions", json=[{"result": []}])

    assert target.bodies() == [b'[{"result":[]}]']
    assert rule.matched == 1 and rule.forwarded.is_set()
    assert proxy.log == [LogEntry("POST", "/api/projects/3/import/predictions", None, "drop_response")]
    assert client.post("/api/projects/3/import/predictions", json=[]).status_code == 200  # used up


def test_status_answers_without_forwarding(proxy, target, client):
    rule = proxy.add_rule(method="POST", path=r"/api/tasks", action=status(502))

    answer = client.post("/api/tasks", json={"a": 1})

    assert answer.status_code == 502
    assert target.received == []
    assert rule.matched == 1 and rule.arrived.is_set() and not rule.forwarded.is_set()
    assert proxy.log == [LogEntry("POST", "/api/tasks", 502, "status")]
    assert client.get("/api/tasks").status_code == 200  # same keep-alive client, rule used up


def test_status_after_forward_commits_then_answers_the_status(proxy, target, client):
    proxy.add_rule(method="POST", path=r"/api/tasks", action=status_after_forward(503))

    assert client.post("/api/tasks", content=b"payload").status_code == 503

    assert target.bodies() == [b"payload"]
    assert proxy.log == [LogEntry("POST", "/api/tasks", 503, "status_after_forward")]


def test_hold_keeps_the_request_from_the_server_until_released(proxy, target, client, background):
    rule = proxy.add_rule(method="POST", path=r"/api/tasks", action=hold)

    pending = background.submit(client.post, "/api/tasks", content=b"held")
    assert rule.arrived.wait(5)
    assert target.received == [] and not pending.done()

    rule.release()

    assert pending.result(5).status_code == 200
    assert target.bodies() == [b"held"]
    assert proxy.log == [LogEntry("POST", "/api/tasks", 200, "hold")]


def test_hold_response_commits_on_the_server_before_release(proxy, target, client, background):
    rule = proxy.add_rule(method="POST", path=r"/api/tasks", action=hold_response)

    pending = background.submit(client.post, "/api/tasks", content=b"committed")
    assert rule.arrived.wait(5) and rule.forwarded.wait(5)
    assert target.bodies() == [b"committed"] and not pending.done()

    proxy.release_all()

    assert pending.result(5).json()["body"] == "committed"
    assert proxy.log == [LogEntry("POST", "/api/tasks", 200, "hold_response")]


def test_release_lets_go_only_of_requests_held_so_far(proxy, target, background):
    rule = proxy.add_rule(path=r"/held/\d", action=hold, times=None)
    post = lambda n: httpx.post(f"{proxy.url}/held/{n}", timeout=5)  # noqa: E731 (one connection each)

    first = background.submit(post, 1)
    assert rule.wait_matched(1)
    rule.release()
    assert first.result(5).status_code == 200

    second = background.submit(post, 2)
    assert rule.wait_matched(2)
    assert not second.done() and [r.path for r in target.received] == ["/held/1"]
    rule.release()
    assert second.result(5).status_code == 200
    assert [r.path for r in target.received] == ["/held/1", "/held/2"]


def test_times_limits_a_rule_and_rules_apply_in_order(proxy, target, client):
    seen = []
    first = proxy.add_rule(method="GET", path=r"/api/x", action=status(500), times=2, on_match=seen.append)
    second = proxy.add_rule(path=r"/api/.*", action=status(502), times=1)

    codes = [client.get("/api/x?n=%d" % n).status_code for n in range(4)]
    assert client.post("/api/x").status_code == 200  # method does not match the first rule; second used up

    assert codes == [500, 500, 502, 200]
    assert (first.matched, second.matched) == (2, 1)
    assert [s.query for s in seen] == ["n=0", "n=1"]
    assert [r.path for r in target.received] == ["/api/x?n=3", "/api/x"]


def test_the_path_regex_must_match_the_whole_path(proxy, client):
    rule = proxy.add_rule(path=r"/api/y", action=status(500))
    assert client.get("/api/yy").status_code == 200
    assert client.get("/v2/api/y").status_code == 200
    assert client.get("/api/y?x=1").status_code == 500  # the query string is not part of the path
    assert rule.matched == 1


def test_stall_delays_then_relays_the_answer(proxy, target, client):
    rule = proxy.add_rule(method="GET", path=r"/slow", action=stall(0.2))

    assert client.get("/slow").json()["path"] == "/slow"

    assert rule.forwarded.is_set()
    assert proxy.log == [LogEntry("GET", "/slow", 200, "stall")]


def test_unreachable_target_is_a_502():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with FaultProxy(f"http://127.0.0.1:{port}") as proxy:
        assert httpx.get(f"{proxy.url}/x", timeout=5).status_code == 502
        assert proxy.log == [LogEntry("GET", "/x", 502, "upstream_error")]


def test_clients_that_go_away_do_not_break_the_proxy(proxy, target, client, capfd):
    rule = proxy.add_rule(path=r"/gone", action=hold)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
        assert rule.arrived.wait(5)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.sendall(b"GET /reset HTTP/1.1\r\n")
    rule.release()

    assert client.get("/still-fine").status_code == 200
    assert rule.forwarded.wait(5)
    proxy.close()  # joins the connection threads, so everything they would print is printed
    assert "Traceback" not in capfd.readouterr().err
    assert sorted(r.path for r in target.received) == ["/gone", "/still-fine"]  # not half a request


def test_closing_releases_held_requests_and_ends_every_thread(target, background):
    with FaultProxy(target.url) as proxy:
        rule = proxy.add_rule(path=r"/held", action=hold)
        idle = httpx.Client(base_url=proxy.url, timeout=5)
        assert idle.get("/warm").status_code == 200  # leaves a keep-alive connection open
        pending = background.submit(httpx.get, f"{proxy.url}/held", timeout=5)
        assert rule.arrived.wait(5)

    with pytest.raises(httpx.TransportError):
        pending.result(5)
    idle.close()
    assert [r.path for r in target.received] == ["/warm"]
    assert proxy.log[-1] == LogEntry("GET", "/held", None, "aborted")
    assert not [t for t in threading.enumerate() if t.name.startswith(f"FaultProxy-{proxy.port}")]
