"""tests/signing_proxy.py against a plain TCP server that records what reaches it: the rewritten
head of each connection, the address it comes from, and a WebSocket-like upgrade piped both ways."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from tests.signing_proxy import SigningProxy


class Recorder:
    """Accepts connections on 127.0.0.1; answers a plain request and closes, echoes after an upgrade."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.seen: list[tuple[str, str]] = []  # (peer address, request head)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer[0]), daemon=True).start()

    def _serve(self, conn: socket.socket, peer: str) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            self.seen.append((peer, head))
            if "upgrade: websocket" in head.lower():
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                while chunk := conn.recv(4096):
                    conn.sendall(chunk.upper())
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.listener.shutdown(socket.SHUT_RDWR)
    server.listener.close()


def exchange(proxy: SigningProxy, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    return answer


def fields(head: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in head.split("\r\n")[1:]:
        name, value = line.split(":", 1)
        found.setdefault(name.strip().lower(), []).append(value.strip())
    return found


def test_each_request_head_is_rewritten_and_sent_from_the_chosen_address(recorder):
    with SigningProxy(recorder.url, headers={"X-Forwarded-Email": "lead@example.com"}, present_as="team.example:443", source="127.0.0.2") as proxy:
        for path in ("/", "/static/app.js"):
            answer = exchange(
                proxy,
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nX-Forwarded-Email: mallory@example.com\r\n"
                "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n".encode(),
            )
            assert answer.endswith(b"\r\n\r\nok")
    assert [(peer, head.split("\r\n")[0]) for peer, head in recorder.seen] == [("127.0.0.2", "GET / HTTP/1.1"), ("127.0.0.2", "GET /static/app.js HTTP/1.1")]
    for _, head in recorder.seen:
        assert fields(head) == {"x-forwarded-email": ["lead@example.com"], "host": ["team.example:443"], "connection": ["close"]}


def test_an_upgrade_keeps_its_connection_header_and_is_piped_both_ways(recorder):
    with SigningProxy(recorder.url, headers={"X-Forwarded-Email": "lead@example.com"}, present_as="team.example:443") as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            client.sendall(
                b"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += client.recv(4096)
            assert answer.startswith(b"HTTP/1.1 101")
            client.sendall(b"hello")
            assert client.recv(4096) == b"HELLO"
    (peer, head), = recorder.seen
    assert peer == "127.0.0.1"
    assert fields(head) == {
        "upgrade": ["websocket"],
        "connection": ["Upgrade"],
        "x-forwarded-email": ["lead@example.com"],
        "host": ["team.example:443"],
        "origin": ["http://team.example:443"],
    }
