"""One model call: a version's settings, a task's messages and the answer schema -> the raw answer,
its token usage and latency, or the reason it failed.

The request asks for strict structured output (``response_format`` json_schema). The OpenAI SDK
sends it and retries what it retries (429 honouring Retry-After, 5xx, timeouts, lost connections);
what still fails becomes one sentence in ``Reply.error``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.keys import Key
from core.later import Later
from core.prompts import Version

if TYPE_CHECKING:
    import openai
else:
    openai = Later("openai")  # half a second to import: only once a model is called

SCHEMA_NAME = "answer"


@dataclass(frozen=True)
class Request:
    body: dict[str, Any]
    provider: str  # which server answers: part of the cache key, never a secret

    @functools.cached_property  # read for the cache lookup and again when the item is stored
    def hash(self) -> str:
        """Identical calls have identical hashes: the cache key for answers already paid for.
        Asking for log-probabilities does not change the answer, so it is left out."""
        body = {k: v for k, v in self.body.items() if k != "logprobs"}
        canonical = json.dumps({"provider": self.provider, "body": body}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()

    @functools.cached_property
    def messages_hash(self) -> str:
        canonical = json.dumps(self.body["messages"], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Reply:
    raw: str | None
    input_tokens: int = 0  # every input token, the cached ones included
    output_tokens: int = 0
    latency_ms: float | None = 0.0  # None: not measured (an answer from a batch)
    error: str | None = None
    finish_reason: str | None = None
    confidence: float | None = None  # the answer's, once measured (core.confidence): its lowest output's
    error_kind: str | None = None  # a key of core.failures.KINDS
    confidences: dict[str, float] | None = None  # per output, once measured
    tokens: tuple[tuple[bytes, float], ...] | None = None  # the answer's tokens and their log-probabilities
    samples: tuple[str | None, ...] | None = None  # a version measuring agreement: every answer (None: one that failed)
    cached_input_tokens: int = 0  # input tokens the provider read from its prompt cache, at their lower price

    @property
    def ok(self) -> bool:
        return self.error is None


def request(version: Version, key: Key, messages: list[dict[str, Any]], schema: dict[str, Any]) -> Request:
    body: dict[str, Any] = {
        "model": version.model,
        "messages": messages,
        "temperature": version.temperature,
        "response_format": {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema}},
    }
    if version.samples:
        body["n"] = version.samples  # confidence by agreement; part of the cache key, so n answers stay n
    else:
        body["logprobs"] = True  # for the answer's confidence; dropped for a server that refuses it
    if version.max_output_tokens:
        # OpenAI's reasoning models refuse max_tokens; most other servers know only max_tokens.
        limit = "max_tokens" if key.provider == "openai-compatible" else "max_completion_tokens"
        body[limit] = version.max_output_tokens
    return Request(body=body, provider=server_identity(key))


def server_identity(key: Key) -> str:
    """Everything about the server that can change an answer: the provider, its address (an Azure
    deployment and API version included), the organization and the extra headers. Part of the cache
    key; the headers enter only as a digest, since they may hold secrets."""
    identity = f"{key.provider} {key.address}"
    if key.organization:
        identity += f" · organization {key.organization}"
    if key.extra_headers:
        headers = json.dumps(sorted((k.lower(), v) for k, v in key.extra_headers.items()))
        identity += f" · headers {hashlib.sha256(headers.encode('utf-8')).hexdigest()[:16]}"
    return identity


def ask(client: openai.OpenAI, call: Request) -> Reply:
    started = time.perf_counter()
    try:
        try:
            completions = [client.chat.completions.create(**call.body)]
        except openai.BadRequestError as error:
            if not _refuses_logprobs(call, error):
                raise
            completions = [client.chat.completions.create(**_without_logprobs(call))]
        while (missing := _missing_samples(call, completions)) > 0:
            completions.append(client.chat.completions.create(**(call.body | {"n": missing})))
    except openai.APIError as error:
        return Reply(None, latency_ms=_since(started), error=explain(error), error_kind=kind_of(error))
    return _reply(completions, _since(started))


async def ask_async(client: openai.AsyncOpenAI, call: Request) -> Reply:
    started = time.perf_counter()
    try:
        try:
            completions = [await client.chat.completions.create(**call.body)]
        except openai.BadRequestError as error:
            if not _refuses_logprobs(call, error):
                raise
            completions = [await client.chat.completions.create(**_without_logprobs(call))]
        while (missing := _missing_samples(call, completions)) > 0:
            completions.append(await client.chat.completions.create(**(call.body | {"n": missing})))
    except openai.APIError as error:
        return Reply(None, latency_ms=_since(started), error=explain(error), error_kind=kind_of(error))
    return _reply(completions, _since(started))


def _missing_samples(call: Request, completions: list[Any]) -> int:
    """How many of the n answers asked for have not come: servers that ignore ``n`` (Ollama, some
    proxies) send one, and are asked again for the rest. None are asked again once a reply brings
    no answer at all."""
    if not completions[-1].choices:
        return 0
    return int(call.body.get("n") or 1) - sum(len(c.choices) for c in completions)


def _refuses_logprobs(call: Request, error: openai.BadRequestError) -> bool:
    # Reasoning models and some servers refuse logprobs; the answer matters more than its confidence.
    return "logprobs" in call.body and "logprob" in str(error).lower()


def _without_logprobs(call: Request) -> dict[str, Any]:
    return {k: v for k, v in call.body.items() if k != "logprobs"}


def explain(error: openai.APIError) -> str:
    """A failed call in one sentence: what happened and, where there is one, what to do."""
    if isinstance(error, openai.APITimeoutError):
        return "The model did not answer in time (timed out, after retries)."
    if isinstance(error, openai.APIConnectionError):
        return f"Could not connect to {_address(error)} ({_cause(error)}, after retries); check that the model's server is running."
    if isinstance(error, openai.AuthenticationError):
        return "The provider rejected the API key (401); test the key on the Keys page."
    if isinstance(error, openai.PermissionDeniedError):
        return "The key may not use this model (403)."
    if isinstance(error, openai.NotFoundError):
        return f"The provider has no such model or deployment (404): {_detail(error)}."
    if isinstance(error, openai.RateLimitError):
        return f"Rate limited (429) after retries: {_detail(error)}; lower the concurrency or try later."
    if isinstance(error, openai.APIStatusError):
        return f"The provider answered HTTP {error.status_code}: {_detail(error)}."
    return f"The call failed: {error}."


def kind_of(error: openai.APIError) -> str:
    """The failure's kind (core.failures.KINDS)."""
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "unreachable"
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return "key_rejected"
    if isinstance(error, openai.NotFoundError):
        return "unknown_model"
    if isinstance(error, openai.RateLimitError):
        return "rate_limit"
    return "provider_error"


# -- details ----------------------------------------------------------------------------------------


def _address(error: openai.APIConnectionError) -> str:
    request = getattr(error, "request", None)
    url = getattr(request, "url", None)
    if url is None:
        return "the model's server"
    return f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}"


def _cause(error: BaseException) -> str:
    """The innermost reason a connection failed, in a few words."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    text = " ".join(chain).lower()
    if "refused" in text or "connect call failed" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "unknown host name"
    if "reset" in text:
        return "connection reset"
    return "no connection"


def read_completions(completions: list[Any], latency_ms: float | None) -> Reply:
    """A reply from the completions a call brought (live, or read from a batch's output file)."""
    return _reply(completions, latency_ms)


def _reply(completions: list[Any], latency_ms: float | None) -> Reply:
    usages = [c.usage for c in completions]
    tokens = dict(
        input_tokens=sum(int(getattr(u, "prompt_tokens", 0) or 0) for u in usages),
        output_tokens=sum(int(getattr(u, "completion_tokens", 0) or 0) for u in usages),
        cached_input_tokens=sum(int(getattr(getattr(u, "prompt_tokens_details", None), "cached_tokens", 0) or 0) for u in usages),
    )
    choices = [choice for c in completions for choice in c.choices]
    if not choices:
        return Reply(None, latency_ms=latency_ms, error="The provider sent no answer (no choices).", error_kind="invalid_answer", **tokens)
    if len(choices) > 1:
        return _sampled(choices, latency_ms, tokens)
    return _answer(choices[0], latency_ms, tokens)


def _answer(choice: Any, latency_ms: float, tokens: dict[str, int]) -> Reply:
    message = choice.message
    raw = message.content
    if getattr(message, "refusal", None):
        return Reply(raw, latency_ms=latency_ms, error=f"The model refused: {message.refusal}", finish_reason=choice.finish_reason, error_kind="invalid_answer", **tokens)
    if choice.finish_reason == "length":
        return Reply(
            raw,
            latency_ms=latency_ms,
            error="The answer was cut off at the output token limit; raise max output tokens.",
            finish_reason="length",
            error_kind="invalid_answer",
            **tokens,
        )
    if choice.finish_reason == "content_filter":
        return Reply(raw, latency_ms=latency_ms, error="The provider's content filter withheld the answer.", finish_reason="content_filter", error_kind="invalid_answer", **tokens)
    return Reply(raw, latency_ms=latency_ms, finish_reason=choice.finish_reason, tokens=_tokens(choice), **tokens)


def _sampled(choices: list[Any], latency_ms: float, tokens: dict[str, int]) -> Reply:
    """n answers to one request: each kept (None for one refused, cut off or withheld), for
    core.confidence to vote on. It fails only when every answer did, with the first one's reason."""
    answers = [_answer(c, latency_ms, tokens) for c in choices]
    if not any(a.ok for a in answers):
        return answers[0]
    samples = tuple(a.raw if a.ok else None for a in answers)
    return Reply(next(s for s in samples if s is not None), latency_ms=latency_ms, finish_reason="stop", samples=samples, **tokens)


def _tokens(choice: Any) -> tuple[tuple[bytes, float], ...] | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return tuple((bytes(t.bytes) if t.bytes is not None else t.token.encode("utf-8"), float(t.logprob)) for t in content)


def _detail(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            body = body.get("message") or body
    text = str(body or error.message or "no detail").strip().rstrip(".")
    return text[:300]


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
