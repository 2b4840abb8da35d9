"""The providers' Batch API (OpenAI, Azure OpenAI, and any OpenAI-compatible server with ``/v1/files``
and ``/v1/batches``): calls sent as a file of JSONL lines and answered within a day, at the Batch
API's price.

- ``lines`` and ``parts``: each call as one line, its ``custom_id`` naming the task, split into parts
  within the API's limits (requests per batch, bytes per file);
- ``submit``: one part uploaded and its batch created; the batch id is what to keep;
- ``state``: where a batch is (validating, in_progress, finalizing, completed, failed, expired,
  cancelling, cancelled) and how many of its requests are done;
- ``replies``: a batch's output and error files read back as one reply per ``custom_id``, in the
  same form as a live call's (``core.calls.Reply``), failures with their reason and kind;
- ``cancel``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from core import calls
from core.later import Later

if TYPE_CHECKING:
    import openai
else:
    openai = Later("openai")  # half a second to import: only once a model is called

MAX_REQUESTS_PER_BATCH = 50_000  # OpenAI's limit per batch
MAX_FILE_BYTES = 190 * 1024 * 1024  # under the 200 MB a batch's input file may hold
ENDED = ("completed", "failed", "expired", "cancelled")
OPENAI_ENDPOINT = "/v1/chat/completions"
AZURE_ENDPOINT = "/chat/completions"  # Azure OpenAI's batches name the path without the version


class BatchError(RuntimeError):
    """The provider refused a batch or its files; the message says why."""


def endpoint_for(provider: str) -> str:
    return AZURE_ENDPOINT if provider == "azure" else OPENAI_ENDPOINT


def line(custom_id: str, request: calls.Request, endpoint: str = OPENAI_ENDPOINT) -> bytes:
    """One call as a line of a batch's input file."""
    return (json.dumps({"custom_id": custom_id, "method": "POST", "url": endpoint, "body": request.body}, ensure_ascii=False) + "\n").encode("utf-8")


def parts(lines: Iterable[bytes], *, max_requests: int = MAX_REQUESTS_PER_BATCH, max_bytes: int = MAX_FILE_BYTES) -> Iterator[list[bytes]]:
    """The lines in order, cut into parts of at most ``max_requests`` lines and ``max_bytes`` bytes."""
    part: list[bytes] = []
    size = 0
    for one in lines:
        if len(one) > max_bytes:
            raise BatchError(f"One request is {len(one):,} bytes, more than a batch file may hold ({max_bytes:,}).")
        if part and (len(part) == max_requests or size + len(one) > max_bytes):
            yield part
            part, size = [], 0
        part.append(one)
        size += len(one)
    if part:
        yield part


@dataclass(frozen=True)
class Submitted:
    batch_id: str
    input_file_id: str
    requests: int


def submit(client: openai.OpenAI, part: list[bytes], *, endpoint: str = OPENAI_ENDPOINT, metadata: dict[str, str] | None = None) -> Submitted:
    """Upload one part and create its batch."""
    input_file_id = upload(client, part)
    return Submitted(create(client, input_file_id, endpoint=endpoint, metadata=metadata), input_file_id, len(part))


def upload(client: openai.OpenAI, part: list[bytes]) -> str:
    """Upload a part's lines as a batch input file; return the file's id."""
    try:
        return client.files.create(file=("requests.jsonl", b"".join(part)), purpose="batch").id
    except openai.APIError as error:
        raise BatchError(f"The provider refused the batch's file: {calls.explain(error)}") from error


def create(client: openai.OpenAI, input_file_id: str, *, endpoint: str = OPENAI_ENDPOINT, metadata: dict[str, str] | None = None) -> str:
    """Create the batch of an uploaded file, sent once: when the answer is lost, ``find`` tells whether
    the provider made it (a retry could make a second batch, paid twice). Return its id."""
    try:
        return client.with_options(max_retries=0).batches.create(
            input_file_id=input_file_id, endpoint=endpoint, completion_window="24h", metadata=metadata
        ).id
    except openai.APIConnectionError:
        found = find(client, input_file_id)
        if found is None:
            raise BatchError("The provider could not be reached to create the batch; nothing was created.") from None
        return found
    except openai.APIError as error:
        raise BatchError(f"The provider refused the batch: {calls.explain(error)}") from error


def find(client: openai.OpenAI, input_file_id: str) -> str | None:
    """The id of the batch made of this input file, when the provider made one."""
    try:
        for batch in client.batches.list(limit=100):
            if batch.input_file_id == input_file_id:
                return batch.id
    except openai.APIError as error:
        raise BatchError(f"Could not list the provider's batches: {calls.explain(error)}") from error
    return None


@dataclass(frozen=True)
class State:
    batch_id: str
    status: str
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    errors: tuple[str, ...] = ()  # why a batch failed validation

    @property
    def ended(self) -> bool:
        return self.status in ENDED


def state(client: openai.OpenAI, batch_id: str) -> State:
    try:
        batch = client.batches.retrieve(batch_id)
    except openai.APIError as error:
        raise BatchError(f"Could not read batch {batch_id}: {calls.explain(error)}") from error
    counts = batch.request_counts
    errors = tuple(_validation_error(e) for e in (batch.errors.data or [])) if batch.errors else ()
    return State(
        batch.id, batch.status, counts.total if counts else 0, counts.completed if counts else 0, counts.failed if counts else 0,
        batch.output_file_id, batch.error_file_id, errors,
    )  # fmt: skip


def cancel(client: openai.OpenAI, batch_id: str) -> State:
    """Ask the provider to stop the batch; what it answered before stopping stays readable."""
    try:
        client.batches.cancel(batch_id)
    except openai.ConflictError:
        pass  # it had ended, or was being cancelled already
    except openai.APIError as error:
        raise BatchError(f"Could not cancel batch {batch_id}: {calls.explain(error)}") from error
    return state(client, batch_id)


def replies(client: openai.OpenAI, ended: State) -> dict[str, calls.Reply]:
    """Each answered or failed request's reply, by ``custom_id``, from the batch's output and error
    files. A request in neither (a batch that failed validation) has no reply."""
    found: dict[str, calls.Reply] = {}
    for file_id in (ended.output_file_id, ended.error_file_id):
        if file_id:
            for text in _read(client, file_id).splitlines():
                if text.strip():
                    result = json.loads(text)
                    found[result["custom_id"]] = _reply(result)
    return found


def _read(client: openai.OpenAI, file_id: str) -> str:
    try:
        return client.files.content(file_id).text
    except openai.APIError as error:
        raise BatchError(f"Could not read the batch's file {file_id}: {calls.explain(error)}") from error


def _reply(result: dict[str, Any]) -> calls.Reply:
    """One line of an output or error file as a call's reply. A batch measures no latency per call."""
    response, error = result.get("response"), result.get("error")
    if error and not response:
        if error.get("code") == "batch_expired":
            return calls.Reply(None, latency_ms=None, error="The batch expired before this task was answered; retry the run's failed tasks to send it again.", error_kind="batch_expired")
        return calls.Reply(None, latency_ms=None, error=f"The batch could not send this request: {error.get('message') or error.get('code')}.", error_kind="provider_error")
    status, body = response["status_code"], response.get("body") or {}
    if status >= 400:
        detail = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        return calls.Reply(None, latency_ms=None, error=f"The provider answered HTTP {status}: {detail or 'no detail'}.", error_kind=_kind(status))
    return calls.read_completions([openai.types.chat.ChatCompletion.model_validate(body)], latency_ms=None)


def _kind(status: int) -> str:
    return {401: "key_rejected", 403: "key_rejected", 404: "unknown_model", 429: "rate_limit"}.get(status, "provider_error")


def _validation_error(error: Any) -> str:
    where = f" (line {error.line})" if getattr(error, "line", None) else ""
    return f"{error.message}{where}"
