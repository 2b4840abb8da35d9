"""A plain HTTP listener on 127.0.0.1 that writes down every request it gets (method, path, headers),
for tests that must show what was, or was not, sent to an address.

It answers ``GET .../models`` with one model, so a key test against it passes, and 404 otherwise.
Test-only code, stdlib only.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Heard:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


class Listener:
    def __init__(self):
        self.heard: list[Heard] = []
        self._lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with listener._lock:
                    listener.heard.append(Heard(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                found = self.command == "GET" and self.path.split("?")[0].endswith("/models")
                body = json.dumps(
                    {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "listener"}]}
                    if found
                    else {"error": {"message": "not here", "type": "invalid_request_error", "param": None, "code": None}}
                ).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def requests(self) -> list[Heard]:
        with self._lock:
            return list(self.heard)

    def header_values(self) -> list[str]:
        """Every header value of every request, to look for a secret in."""
        return [value for heard in self.requests() for value in heard.headers.values()]

    def __enter__(self) -> "Listener":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
