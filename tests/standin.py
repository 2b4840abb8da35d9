"""OpenAI-compatible stand-in server for tests (stdlib only, real HTTP on 127.0.0.1).

Test-only code: the product never ships a fake model.
"""

from __future__ import annotations

import collections
import json
import math
import re
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Optional
from urllib.parse import parse_qs

from tests.standin_batches import Batches

__all__ = ["StandIn", "Reply", "Request", "sample_from_schema"]

_AZURE_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_MODEL_ITEM = re.compile(r"^(?:.*)/models/([^/]+)$")


# --------------------------------------------------------------------------- #
# Request / Reply
# --------------------------------------------------------------------------- #


def _text_of(content: Any) -> str:
    """Text of a message content: a string or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


@dataclass
class Request:
    """One request received on a chat-completions path."""

    body: dict = field(repr=False)
    headers: dict = field(repr=False)
    path: str
    received_at: float
    query: dict = field(default_factory=dict, repr=False)
    sample: int = 0  # which of the request's n answers is being made (0 to n-1)

    @property
    def messages(self) -> list:
        msgs = self.body.get("messages")
        return msgs if isinstance(msgs, list) else []

    @property
    def model(self) -> Optional[str]:
        return self.body.get("model")

    @property
    def schema(self) -> Optional[dict]:
        """The JSON Schema under response_format.json_schema.schema, else None."""
        rf = self.body.get("response_format")
        if isinstance(rf, dict) and rf.get("type") == "json_schema":
            js = rf.get("json_schema")
            if isinstance(js, dict) and isinstance(js.get("schema"), dict):
                return js["schema"]
        return None

    @property
    def user_text(self) -> str:
        return "\n".join(
            _text_of(m.get("content"))
            for m in self.messages
            if isinstance(m, dict) and m.get("role") == "user"
        )

    @property
    def last_user_text(self) -> str:
        """The last user message: the task itself, after any few-shot examples."""
        users = [m for m in self.messages if isinstance(m, dict) and m.get("role") == "user"]
        return _text_of(users[-1].get("content")) if users else ""

    @property
    def all_text(self) -> str:
        return "\n".join(
            _text_of(m.get("content")) for m in self.messages if isinstance(m, dict)
        )


@dataclass(frozen=True)
class Reply:
    """A canned answer; build it with the constructors below."""

    kind: str
    content: Any = None
    status: int = 200
    message: Optional[str] = None
    code: Optional[str] = None
    retry_after: Optional[float] = None
    usage: Optional[tuple] = None
    logprobs: Optional[float] = None
    seconds: float = 0.0
    delay: float = 0.0
    obj: Any = None
    confidence: Optional[dict] = None

    @classmethod
    def json(cls, obj: Any, *, usage: Optional[tuple] = None,
             logprobs: Optional[float] = None, confidence: Optional[dict] = None,
             delay: float = 0) -> "Reply":
        """Completion whose content is json.dumps(obj).

        logprobs: the log-probability of every token of the answer (default -0.01).
        confidence: {top-level key: probability} instead; each named value then starts a token
        whose log-probability is log(p), and every other token of the answer is certain (0.0),
        as a model that hesitates only over its decisions."""
        if confidence and not all(0 < float(p) <= 1 for p in confidence.values()):
            raise ValueError("confidence: probabilities must be in (0, 1]")
        return cls("json", content=json.dumps(obj), usage=usage, logprobs=logprobs, delay=delay,
                   obj=obj, confidence=dict(confidence) if confidence else None)

    @classmethod
    def text(cls, content: str, *, usage: Optional[tuple] = None, delay: float = 0) -> "Reply":
        """Completion whose content is the raw string."""
        return cls("text", content=content, usage=usage, delay=delay)

    @classmethod
    def error(cls, status: int, message: Optional[str] = None, *,
              retry_after: Optional[float] = None, delay: float = 0,
              code: Optional[str] = None) -> "Reply":
        """HTTP error in OpenAI's {"error": {...}} shape."""
        return cls("error", status=int(status), message=message, code=code,
                   retry_after=retry_after, delay=delay)

    @classmethod
    def hang(cls, seconds: float, *, delay: float = 0) -> "Reply":
        """Send nothing for `seconds`, then close the connection (wakes on stop())."""
        return cls("hang", seconds=float(seconds), delay=delay)

    @classmethod
    def refusal(cls, text: str, *, delay: float = 0) -> "Reply":
        """Completion with message.refusal set and content null."""
        return cls("refusal", content=text, delay=delay)

    @classmethod
    def truncated(cls, content: str, *, usage: Optional[tuple] = None, delay: float = 0) -> "Reply":
        """Completion with finish_reason "length"."""
        return cls("truncated", content=content, usage=usage, delay=delay)


_ERROR_DEFAULTS = {
    # status: (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("authentication_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to perform this request."),
    404: ("not_found_error", None, "The requested resource was not found."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _error_body(status: int, message: Optional[str], code: Optional[str],
                type_: Optional[str] = None, param: Any = None) -> dict:
    d_type, d_code, d_msg = _ERROR_DEFAULTS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None,
         HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"),
    )
    return {"error": {
        "message": message if message is not None else d_msg,
        "type": type_ if type_ is not None else d_type,
        "param": param,
        "code": code if code is not None else d_code,
    }}


# --------------------------------------------------------------------------- #
# Schema-valid sample answers
# --------------------------------------------------------------------------- #


def sample_from_schema(schema: Any, root: Any = None, _depth: int = 0) -> Any:
    """A minimal value valid for `schema`: first enum value, "" / 0 / False / [] / objects
    with every listed property. Follows local $ref, anyOf/oneOf/allOf (first branch)."""
    if root is None:
        root = schema
    if not isinstance(schema, dict) or _depth > 50:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        return sample_from_schema(_resolve(ref, root), root, _depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            non_null = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            return sample_from_schema((non_null or branches)[0], root, _depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            if isinstance(sub, dict) and "$ref" in sub:
                sub = _resolve(sub["$ref"], root)
            if isinstance(sub, dict):
                for k, v in sub.items():
                    if k == "properties" and isinstance(merged.get(k), dict):
                        merged[k] = {**merged[k], **v}
                    elif k == "required" and isinstance(merged.get(k), list):
                        merged[k] = merged[k] + list(v)
                    else:
                        merged.setdefault(k, v)
        return sample_from_schema(merged, root, _depth + 1)

    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ is None:
        if "properties" in schema:
            typ = "object"
        elif "items" in schema:
            typ = "array"
    if typ == "object":
        props = schema.get("properties") or {}
        names = list(props)
        for name in schema.get("required") or []:
            if name not in props:
                names.append(name)
        return {n: sample_from_schema(props.get(n, {}), root, _depth + 1) for n in names}
    if typ == "array":
        n = int(schema.get("minItems") or 0)
        item = sample_from_schema(schema.get("items", {}), root, _depth + 1)
        return [item for _ in range(n)]
    if typ == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "1970-01-01T00:00:00Z"
        if fmt == "date":
            return "1970-01-01"
        return "x" * int(schema.get("minLength") or 0)
    if typ in ("number", "integer"):
        value: Any = 0
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        if isinstance(lo, (int, float)) and lo >= 0:
            value = lo + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        elif isinstance(hi, (int, float)) and hi <= 0:
            value = hi - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
        return int(value) if typ == "integer" else value
    if typ == "boolean":
        return False
    return None


def _resolve(ref: str, root: Any) -> Any:
    target = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part and isinstance(target, dict):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
    return target


# --------------------------------------------------------------------------- #
# HTTP plumbing
# --------------------------------------------------------------------------- #


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address, handler, standin: "StandIn"):
        self.standin = standin
        self._conn_lock = threading.Lock()
        self._conns: set = set()
        self._workers: set = set()
        self.stopping = False
        super().__init__(address, handler)

    def server_bind(self):
        # Skip HTTPServer's reverse-DNS lookup (getfqdn) which can be slow offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def process_request(self, request, client_address):
        t = threading.Thread(target=self._work, args=(request, client_address),
                             name="standin-conn", daemon=True)
        with self._conn_lock:
            self._conns.add(request)
            self._workers.add(t)
        t.start()

    def _work(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._conn_lock:
                self._conns.discard(request)
                self._workers.discard(threading.current_thread())

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if self.stopping or isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)

    def close_connections(self, join_timeout: float = 2.0) -> None:
        with self._conn_lock:
            conns = list(self._conns)
            workers = list(self._workers)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + join_timeout
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "StandIn/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = None

    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._read_body()
        self._send(404, b"", content_type="application/json")

    # -- helpers -------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, *, content_type: str = "application/json",
              headers: Optional[dict] = None) -> None:
        standin = self.server.standin
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            f"x-request-id: req_standin_{standin._next_request_id()}",
        ]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)  # one write: no Nagle/delayed-ACK stalls
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: Optional[dict] = None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), headers=headers)

    def _authorized(self) -> bool:
        key = self.server.standin.api_key
        if key is None:
            return True
        auth = self.headers.get("Authorization") or ""
        if auth == f"Bearer {key}":
            return True
        return (self.headers.get("api-key") or "") == key

    # -- routing -------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        standin = self.server.standin
        raw = self._read_body()
        path, _, qs = self.path.partition("?")
        standin._count_path(path)

        if method == "POST" and path.endswith("/chat/completions"):
            self._chat(path, qs, raw)
            return
        if not self._authorized():
            self._send_json(401, _unauthorized(self.headers))
            return
        if method == "POST" and path.endswith("/embeddings"):
            self._embeddings(raw)
            return
        routed = standin.batches.route(method, path, self.headers, raw)
        if routed is not None:
            status, body = routed
            if isinstance(body, bytes):
                self._send(status, body, content_type="application/octet-stream")
            else:
                self._send_json(status, body)
            return
        if method == "GET" and path.endswith("/models"):
            scripted = standin._next_models_reply()
            if scripted is not None and scripted.kind in ("error", "hang"):
                self._answer([scripted], None)
                return
            if scripted is not None and scripted.delay and standin._stop_event.wait(scripted.delay):
                self.close_connection = True
                return
            if not standin.list_models:
                self._send_json(404, _error_body(404, "Not found.", None))
                return
            self._send_json(200, {"object": "list",
                                  "data": [_model_obj(m) for m in standin.models]})
            return
        m = _MODEL_ITEM.match(path)
        if method == "GET" and m and standin.list_models:
            if m.group(1) in standin.models:
                self._send_json(200, _model_obj(m.group(1)))
            else:
                self._send_json(404, _model_not_found(m.group(1)))
            return
        self._send_json(404, _error_body(404, f"Unknown request URL: {method} {path}.", "unknown_url"))

    def _embeddings(self, raw: bytes) -> None:
        """Vectors that make texts sharing words similar: each word counted into one of
        EMBEDDING_SIZE dimensions (by a stable hash), normalised. Recorded in ``embedding_requests``."""
        standin = self.server.standin
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._send_json(400, _error_body(400, "We could not parse the JSON body of your request.", None))
            return
        with standin._lock:
            standin.embedding_requests.append(body)
            failing = standin.embeddings_fail
        if failing:
            self._send_json(500, _error_body(500, "The embeddings server had an error.", None))
            return
        self._send_json(200, standin.embeddings_body(body))

    def _chat(self, path: str, qs: str, raw: bytes) -> None:
        standin = self.server.standin
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(body=body if isinstance(body, dict) else {}, headers=headers, path=path,
                      received_at=time.monotonic(),
                      query={k: v[-1] for k, v in parse_qs(qs).items()})
        standin._record(req)

        if not self._authorized():
            self._send_json(401, _unauthorized(self.headers))
            return
        if not isinstance(body, dict):
            self._send_json(400, _error_body(
                400, "We could not parse the JSON body of your request.", None))
            return
        azure = _AZURE_DEPLOYMENT.match(path)
        if azure:
            if standin.deployments is not None and azure.group(1) not in standin.deployments:
                self._send_json(404, {"error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist. If you "
                               "created the deployment within the last 5 minutes, please wait "
                               "a moment and try again.",
                }})
                return
        else:
            model = body.get("model")
            if not model:
                self._send_json(400, _error_body(
                    400, "you must provide a model parameter", None, param="model"))
                return
            if standin.models and model not in standin.models:
                self._send_json(404, _model_not_found(model))
                return
        if body.get("stream"):
            self._send_json(400, _error_body(
                400, "The stand-in server does not support stream=true.", "unsupported_value",
                param="stream"))
            return

        n = body.get("n") or 1
        asked = int(n) if isinstance(n, int) and n > 1 and standin.honours_n else 1
        try:
            replies = [standin._next_reply(req)]
            if replies[0].kind in ("json", "text", "refusal", "truncated"):
                replies += [standin._next_reply(_sample(req, i)) for i in range(1, asked)]
        except Exception as exc:  # a broken respond_with function
            self._send_json(500, _error_body(
                500, f"stand-in responder raised {type(exc).__name__}: {exc}", None))
            return
        self._answer(replies, req)

    def _answer(self, replies: list, req: Request) -> None:
        reply = replies[0]
        stop = self.server.standin._stop_event
        if reply.delay > 0 and stop.wait(reply.delay):
            self.close_connection = True
            return
        if reply.kind == "hang":
            stop.wait(reply.seconds)
            self.close_connection = True  # close without any response
            return
        if reply.kind == "error":
            headers = {}
            if reply.retry_after is not None:
                ra = reply.retry_after
                headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            self._send_json(reply.status, _error_body(reply.status, reply.message, reply.code),
                            headers=headers)
            return
        self._send_json(200, self.server.standin._completion(replies, req))


def _sample(req: Request, index: int) -> Request:
    return Request(body=req.body, headers=req.headers, path=req.path, received_at=req.received_at,
                   query=req.query, sample=index)


def _unauthorized(headers) -> dict:
    given = headers.get("api-key") or (headers.get("Authorization") or "").removeprefix("Bearer ")
    shown = (given[:3] + "*" * 4 + given[-4:]) if len(given) > 8 else "****"
    return _error_body(401, f"Incorrect API key provided: {shown}.", "invalid_api_key")


def _model_not_found(model: str) -> dict:
    return _error_body(
        404, f"The model `{model}` does not exist or you do not have access to it.",
        "model_not_found", type_="invalid_request_error")


def _model_obj(model: str) -> dict:
    return {"id": model, "object": "model", "created": 1700000000, "owned_by": "standin"}


EMBEDDING_SIZE = 64
_WORD = re.compile(r"[a-z0-9]+")


def embed_words(text: str) -> list:
    """The stand-in's embedding of a text: a bag of its words in EMBEDDING_SIZE dimensions, unit length."""
    import hashlib

    vector = [0.0] * EMBEDDING_SIZE
    for word in _WORD.findall(text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % EMBEDDING_SIZE] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def _tokens(text: str, logprob: float) -> list:
    return [_token(tok, logprob) for tok in (text[i:i + 4] for i in range(0, len(text), 4))]


def _token(text: str, logprob: float) -> dict:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8")), "top_logprobs": []}


def _confident_tokens(obj: dict, confidence: dict) -> list:
    """json.dumps(obj) as tokens: each top-level value (inside its quotes, for a string) split in
    4-character tokens, the first carrying log(confidence[key]), everything else 0.0."""
    pieces = [("{", 0.0)]
    for i, (key, value) in enumerate(obj.items()):
        written = json.dumps(value)
        quoted = isinstance(value, str) and bool(value)
        inner = written[1:-1] if quoted else written
        pieces.append(((", " if i else "") + json.dumps(key) + ": " + ('"' if quoted else ""), 0.0))
        p = confidence.get(key)
        for j in range(0, len(inner), 4):
            pieces.append((inner[j:j + 4], math.log(p) if p is not None and j == 0 else 0.0))
        if quoted:
            pieces.append(('"', 0.0))
    pieces.append(("}", 0.0))
    return [_token(text, lp) for text, lp in pieces]


# --------------------------------------------------------------------------- #
# Public server
# --------------------------------------------------------------------------- #


class StandIn:
    """OpenAI-compatible HTTP stand-in on 127.0.0.1 for tests."""

    def __init__(self, models: Iterable[str] = ("gpt-4o-mini", "gpt-4o"),
                 api_key: Optional[str] = None, list_models: bool = True,
                 deployments: Optional[Iterable[str]] = None):
        self.models = tuple(models or ())
        self.api_key = api_key
        self.list_models = list_models
        self.deployments = None if deployments is None else frozenset(deployments)
        self._lock = threading.Lock()
        self.embedding_requests: list = []  # bodies of POST .../embeddings, in order
        self.embeddings_fail = False  # answer them with a 500
        self.gives_logprobs = True  # False: a server that never returns log-probabilities
        self.honours_n = True  # False: a server that ignores n and answers once (as Ollama does)
        self._queue: collections.deque = collections.deque()
        self._models_queue: collections.deque = collections.deque()
        self._responder: Optional[Callable[[Request], Reply]] = None
        self._requests: list = []
        self._counts: dict = {}
        self._completion_n = 0
        self._request_n = 0
        self._stop_event = threading.Event()
        self.batches = Batches(self)  # the Files and Batches endpoints (tests/standin_batches.py)
        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "StandIn":
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stop_event.clear()
        self._httpd = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="standin-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed/hanging requests, close connections, join threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping = True
        self._stop_event.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("StandIn is not started")
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    # -- behaviour -----------------------------------------------------------

    def script(self, *replies: Reply) -> "StandIn":
        """Queue replies, consumed in order by chat-completions requests."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def script_models(self, *replies: Reply) -> "StandIn":
        """Queue replies (errors, hangs, delays) for the next GET .../models requests."""
        with self._lock:
            self._models_queue.extend(replies)
        return self

    def respond_with(self, fn: Optional[Callable[[Request], Reply]]) -> "StandIn":
        """Set the default responder used when the queue is empty (None restores the built-in)."""
        self._responder = fn
        return self

    def reset(self) -> None:
        """Clear the queue, the default responder and all counters."""
        with self._lock:
            self._queue.clear()
            self._models_queue.clear()
            self._responder = None
            self._requests.clear()
            self._counts.clear()
            self.embedding_requests.clear()
            self.batches.reset()
            self.gives_logprobs = True
            self.honours_n = True
            self._completion_n = 0

    @property
    def requests(self) -> list:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def counts(self) -> dict:
        with self._lock:
            return dict(self._counts)

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self._lock:
            return len(self._queue)

    # -- internals -----------------------------------------------------------

    def _count_path(self, path: str) -> None:
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1

    def _record(self, req: Request) -> None:
        with self._lock:
            self._requests.append(req)

    def _next_request_id(self) -> int:
        with self._lock:
            self._request_n += 1
            return self._request_n

    def _next_models_reply(self) -> Optional[Reply]:
        with self._lock:
            return self._models_queue.popleft() if self._models_queue else None

    def _next_reply(self, req: Request) -> Reply:
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
            responder = self._responder
        if reply is None and responder is not None:
            reply = responder(req)
        if reply is None:
            reply = self.default_reply(req)
        if not isinstance(reply, Reply):
            raise TypeError(f"expected a Reply, got {type(reply).__name__}")
        return reply

    @staticmethod
    def embeddings_body(body: dict) -> dict:
        """The answer to an embeddings request: each input text's vector (embed_words)."""
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        data = [{"object": "embedding", "index": i, "embedding": embed_words(t)} for i, t in enumerate(texts)]
        words = sum(len(_WORD.findall(t)) for t in texts)
        return {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": words, "total_tokens": words}}

    @staticmethod
    def default_reply(req: Request) -> Reply:
        """Built-in answer: a schema-valid sample for json_schema requests, else {}."""
        schema = req.schema
        return Reply.json(sample_from_schema(schema) if schema is not None else {})

    def _completion(self, replies: list, req: Request) -> dict:
        """One completion answering with each reply as a choice (n > 1: several)."""
        with self._lock:
            self._completion_n += 1
            n = self._completion_n
        choices, prompt_tokens, completion_tokens, cached_tokens = [], None, 0, 0
        for index, reply in enumerate(replies):
            choice, used = self._choice(reply, req, index)
            choices.append(choice)
            if prompt_tokens is None:  # the prompt is read, and billed, once for all the answers
                prompt_tokens = int(reply.usage[0]) if reply.usage is not None else len(req.all_text) // 4 + 1
                cached_tokens = int(reply.usage[2]) if reply.usage is not None and len(reply.usage) > 2 else 0  # (prompt, completion, cached)
            completion_tokens += used
        return {
            "id": f"chatcmpl-standin-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0},
            },
            "system_fingerprint": "fp_standin",
        }

    def _choice(self, reply: Reply, req: Request, index: int) -> tuple:
        if reply.kind == "refusal":
            content, refusal, finish = None, reply.content, "stop"
        else:
            content, refusal = reply.content, None
            finish = "length" if reply.kind == "truncated" else "stop"
        out_text = content if content is not None else (refusal or "")
        used = int(reply.usage[1]) if reply.usage is not None else len(out_text) // 4 + 1
        logprobs = None
        if req.body.get("logprobs") and self.gives_logprobs:
            lp = -0.01 if reply.logprobs is None else float(reply.logprobs)
            if refusal is not None:
                logprobs = {"content": None, "refusal": _tokens(refusal, lp)}
            elif reply.confidence and isinstance(reply.obj, dict):
                logprobs = {"content": _confident_tokens(reply.obj, reply.confidence), "refusal": None}
            else:
                logprobs = {"content": _tokens(content or "", lp), "refusal": None}
        choice = {
            "index": index,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "logprobs": logprobs,
            "finish_reason": finish,
        }
        return choice, used
