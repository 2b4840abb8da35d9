"""The stand-in's Files and Batches endpoints (OpenAI's Batch API), for tests of batch runs.

A batch goes through OpenAI's statuses: validating, in_progress, finalizing, completed; or failed (its
input does not validate), expired (its window passed: the lines answered so far are in the output
file, the rest in the error file with code ``batch_expired``), cancelling then cancelled. Each line is
answered by the stand-in's responder, as a live call would be; an error reply becomes that line's
``response.status_code`` and error body.

A batch moves on one status each time it is retrieved (``GET /v1/batches/{id}``), so a test drives it
by polling, with no clock: ``hold_at`` keeps batches at a status until ``release``; ``lines_per_step``
answers that many lines per retrieval while in progress (else all at once); ``expire_after`` makes a
batch expire after answering that many lines; ``fail_validation`` refuses the next batches' input
with a reason.

``complete_after`` (seconds, None by default) adds a clock for benchmarks: a batch then stays in
progress until that long after it was created, and the first retrieval after that answers its lines
and takes it through to its end at once, as a provider's batch ends in its own time however often it
is looked at.

Test-only code: the product never ships a fake model.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
MAX_REQUESTS_PER_BATCH = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
NEXT_STATUS = {"validating": "in_progress", "in_progress": "finalizing", "finalizing": "completed", "cancelling": "cancelled"}
ENDED = ("completed", "failed", "expired", "cancelled")


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def as_object(self) -> dict:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None, "status_details": None}


@dataclass
class Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: Optional[dict]
    created_at: int
    lines: list = field(default_factory=list)  # the input's requests, parsed
    status: str = "validating"
    answered: list = field(default_factory=list)  # output lines, as answered
    failed_lines: list = field(default_factory=list)  # error lines
    errors: Optional[list] = None
    output_file_id: Optional[str] = None
    error_file_id: Optional[str] = None
    times: dict = field(default_factory=dict)  # status -> when it was reached
    retrievals: int = 0
    began: float = field(default_factory=time.monotonic)  # when it was created, for complete_after

    def as_object(self) -> dict:
        failed = sum(1 for line in self.answered if line["response"]["status_code"] >= 400) + len(self.failed_lines)
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window, "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id, "created_at": self.created_at,
            "in_progress_at": self.times.get("in_progress"), "expires_at": self.created_at + 86_400,
            "finalizing_at": self.times.get("finalizing"), "completed_at": self.times.get("completed"),
            "failed_at": self.times.get("failed"), "expired_at": self.times.get("expired"),
            "cancelling_at": self.times.get("cancelling"), "cancelled_at": self.times.get("cancelled"),
            "request_counts": {"total": len(self.lines), "completed": len(self.answered) - failed + len(self.failed_lines), "failed": failed},
            "metadata": self.metadata,
        }


class Batches:
    """The Files and Batches state of one stand-in; see the module's docstring."""

    def __init__(self, standin) -> None:
        self.standin = standin
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        self.hold_at: Optional[str] = None  # a status batches stay at until release()
        self.expire_after: Optional[int] = None  # lines answered before a batch expires
        self.lines_per_step: Optional[int] = None  # lines answered each time an in-progress batch is retrieved (None: all)
        self.fail_validation: Optional[str] = None  # why the next batches' input is refused
        self.complete_after: Optional[float] = None  # seconds from creation before a batch may leave in_progress (None: no clock)
        self.answered_lines = 0  # every line answered, by every batch
        self._released: set = set()
        self._lock = threading.RLock()
        self._n = 0

    def release(self, batch_id: Optional[str] = None) -> None:
        """Let one held batch (or every one) move on from ``hold_at``."""
        with self._lock:
            self._released.update([batch_id] if batch_id else self.batches)

    def reset(self) -> None:
        with self._lock:
            self.files.clear()
            self.batches.clear()
            self._released.clear()
            self.hold_at = self.expire_after = self.fail_validation = self.complete_after = None
            self.answered_lines = 0

    # -- the HTTP side: each returns (status, body) where body is a dict or bytes ----------------

    def route(self, method: str, path: str, headers, raw: bytes) -> Optional[tuple[int, Any]]:
        parts = path.rstrip("/").split("/")
        if path.rstrip("/") == "/v1/files" and method == "POST":
            return self._upload(headers, raw)
        if len(parts) == 4 and parts[2] == "files" and method == "GET":
            return self._file(parts[3])
        if len(parts) == 5 and parts[2] == "files" and parts[4] == "content" and method == "GET":
            found = self.files.get(parts[3])
            return (200, found.content) if found else _not_found("file", parts[3])
        if path.rstrip("/") == "/v1/batches" and method == "POST":
            return self._create(raw)
        if path.rstrip("/") == "/v1/batches" and method == "GET":
            with self._lock:
                return 200, {"object": "list", "data": [b.as_object() for b in reversed(self.batches.values())], "has_more": False}
        if len(parts) == 4 and parts[2] == "batches" and method == "GET":
            return self._retrieve(parts[3])
        if len(parts) == 5 and parts[2] == "batches" and parts[4] == "cancel" and method == "POST":
            return self._cancel(parts[3])
        return None

    def _upload(self, headers, raw: bytes) -> tuple[int, Any]:
        form = _multipart(headers.get("Content-Type") or "", raw)
        if "file" not in form or form.get("purpose", (None, b""))[1].decode() != "batch":
            return 400, _error("Upload a 'file' with purpose 'batch'.", "invalid_request_error")
        filename, content = form["file"]
        if len(content) > MAX_FILE_BYTES:
            return 400, _error(f"File is too large: {len(content)} bytes, at most {MAX_FILE_BYTES}.", "invalid_request_error")
        with self._lock:
            stored = StoredFile(self._id("file"), filename or "batch.jsonl", "batch", content, int(time.time()))
            self.files[stored.id] = stored
        return 200, stored.as_object()

    def _file(self, file_id: str) -> tuple[int, Any]:
        found = self.files.get(file_id)
        return (200, found.as_object()) if found else _not_found("file", file_id)

    def _create(self, raw: bytes) -> tuple[int, Any]:
        body = json.loads(raw or b"{}")
        source = self.files.get(body.get("input_file_id") or "")
        if source is None:
            return _not_found("file", body.get("input_file_id"))
        if body.get("endpoint") not in ENDPOINTS:
            return 400, _error(f"Unsupported endpoint {body.get('endpoint')!r}.", "invalid_request_error")
        with self._lock:
            batch = Batch(self._id("batch"), source.id, body["endpoint"], body.get("completion_window", "24h"), body.get("metadata"), int(time.time()))
            batch.times["validating"] = batch.created_at
            self.batches[batch.id] = batch
            batch.errors = self._validate(batch, source.content)
            if batch.errors:
                self._reach(batch, "failed")
        return 200, batch.as_object()

    def _validate(self, batch: Batch, content: bytes) -> Optional[list]:
        if self.fail_validation:
            return [{"code": "invalid_request", "message": self.fail_validation, "param": None, "line": None}]
        errors, ids = [], set()
        for number, text in enumerate(content.decode("utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                errors.append({"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.", "param": None, "line": number})
                continue
            if line.get("url") != batch.endpoint or line.get("method") != "POST" or not isinstance(line.get("body"), dict):
                errors.append({"code": "invalid_request", "message": f"The line must POST to {batch.endpoint}.", "param": None, "line": number})
            elif line.get("custom_id") in ids:
                errors.append({"code": "duplicate_custom_id", "message": "The custom_id for this request is a duplicate.", "param": None, "line": number})
            ids.add(line.get("custom_id"))
            batch.lines.append(line)
        if len(batch.lines) > MAX_REQUESTS_PER_BATCH:
            errors.append({"code": "too_many_requests", "message": f"A batch holds at most {MAX_REQUESTS_PER_BATCH} requests.", "param": None, "line": None})
        return errors or None

    def _retrieve(self, batch_id: str) -> tuple[int, Any]:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return _not_found("batch", batch_id)
            batch.retrievals += 1
            self._step(batch)
            while self._due(batch) and batch.status not in ENDED:  # its time has come: on to its end at this look
                before = (batch.status, len(batch.answered))
                self._step(batch)
                if (batch.status, len(batch.answered)) == before:
                    break  # held (hold_at)
            return 200, batch.as_object()

    def _cancel(self, batch_id: str) -> tuple[int, Any]:
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return _not_found("batch", batch_id)
            if batch.status in ENDED or batch.status == "cancelling":
                return 409, _error(f"Cannot cancel a batch with status {batch.status}.", "invalid_request_error")
            self._reach(batch, "cancelling")
            return 200, batch.as_object()

    # -- the batch's life -----------------------------------------------------------------------

    def _step(self, batch: Batch) -> None:
        if batch.status in ENDED:
            return
        if batch.status == self.hold_at and batch.id not in self._released:
            return
        if batch.status == "in_progress":
            if self.complete_after is not None and not self._due(batch):
                return  # not its time yet
            self._answer(batch)
            if len(batch.answered) < len(batch.lines):
                if self.expire_after is not None and len(batch.answered) >= self.expire_after:
                    self._finish(batch, "expired")
                return
        if batch.status == "cancelling":
            self._finish(batch, "cancelled")
            return
        following = NEXT_STATUS[batch.status]
        if following == "completed":
            self._finish(batch, "completed")
        else:
            self._reach(batch, following)

    def _due(self, batch: Batch) -> bool:
        """Whether ``complete_after`` is set and has passed since the batch was created."""
        return self.complete_after is not None and time.monotonic() - batch.began >= self.complete_after

    def _answer(self, batch: Batch) -> None:
        limit = len(batch.lines) if self.expire_after is None else min(len(batch.lines), self.expire_after)
        if self.lines_per_step is not None:
            limit = min(limit, len(batch.answered) + self.lines_per_step)
        for line in batch.lines[len(batch.answered):limit]:
            batch.answered.append(self._answer_line(line))
            self.answered_lines += 1

    def _answer_line(self, line: dict) -> dict:
        from tests.standin import Request, _error_body

        standin = self.standin
        request = Request(body=line["body"], headers={}, path=line["url"], received_at=time.monotonic())
        request_id = f"req_standin_batch_{standin._next_request_id()}"
        if line["url"].endswith("/embeddings"):
            body = standin.embeddings_body(line["body"])
            return {"id": f"batch_req_{request_id}", "custom_id": line["custom_id"], "response": {"status_code": 200, "request_id": request_id, "body": body}, "error": None}
        reply = standin._next_reply(request)
        if reply.kind == "error":
            status, body = reply.status, _error_body(reply.status, reply.message, reply.code)
        elif reply.kind == "hang":
            status, body = 500, _error_body(500, "The request timed out.", None)
        else:
            status, body = 200, standin._completion([reply], request)
        return {"id": f"batch_req_{request_id}", "custom_id": line["custom_id"], "response": {"status_code": status, "request_id": request_id, "body": body}, "error": None}

    def _finish(self, batch: Batch, status: str) -> None:
        if status == "expired":
            done = {line["custom_id"] for line in batch.answered}
            batch.failed_lines = [
                {"id": f"batch_req_expired_{n}", "custom_id": line["custom_id"], "response": None,
                 "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}}
                for n, line in enumerate(batch.lines) if line["custom_id"] not in done
            ]  # fmt: skip
        answered_ok = [line for line in batch.answered if line["response"]["status_code"] < 400]
        answered_failed = [line for line in batch.answered if line["response"]["status_code"] >= 400]
        if answered_ok:
            batch.output_file_id = self._store_lines(f"{batch.id}_output.jsonl", answered_ok)
        if answered_failed or batch.failed_lines:
            batch.error_file_id = self._store_lines(f"{batch.id}_error.jsonl", answered_failed + batch.failed_lines)
        self._reach(batch, status)

    def _store_lines(self, filename: str, lines: list) -> str:
        stored = StoredFile(self._id("file"), filename, "batch_output", "".join(json.dumps(line) + "\n" for line in lines).encode(), int(time.time()))
        self.files[stored.id] = stored
        return stored.id

    def _reach(self, batch: Batch, status: str) -> None:
        batch.status = status
        batch.times[status] = int(time.time())

    def _id(self, kind: str) -> str:
        self._n += 1
        return f"{kind}-standin-{self._n}"


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[Optional[str], bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, content)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def _error(message: str, type_: str) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


def _not_found(kind: str, given: Any) -> tuple[int, dict]:
    return 404, {"error": {"message": f"No such {kind}: {given!r}.", "type": "invalid_request_error", "param": None, "code": None}}
