"""Tests for the OpenAI-compatible stand-in server, through the real openai client."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time

import openai
import pytest

from tests.helpers import wait_until
from tests.standin import Reply, Request, StandIn, sample_from_schema

SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["Positive", "Negative", "Neutral"]},
        "reason": {"type": "string"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "detail": {
            "type": "object",
            "properties": {"count": {"type": "integer"}, "ok": {"type": "boolean"}},
            "required": ["count", "ok"],
            "additionalProperties": False,
        },
    },
    "required": ["sentiment", "reason", "score", "tags", "detail"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": SCHEMA}}
MESSAGES = [
    {"role": "system", "content": "Classify the sentiment."},
    {"role": "user", "content": "I love this product."},
]


@pytest.fixture
def server():
    with StandIn() as s:
        yield s


def client(s: StandIn, **kw) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=s.base_url, api_key="sk-test", **kw)


def aclient(s: StandIn, **kw) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=s.base_url, api_key="sk-test", **kw)


def ask(c, **kw):
    kw.setdefault("model", "gpt-4o-mini")
    kw.setdefault("messages", MESSAGES)
    return c.chat.completions.create(**kw)


# --------------------------------------------------------------------------- #


def test_json_schema_request_gets_parsed_content_and_usage(server):
    server.script(Reply.json({"sentiment": "Positive"}))
    with client(server) as c:
        resp = ask(c, response_format=RESPONSE_FORMAT)
    assert json.loads(resp.choices[0].message.content) == {"sentiment": "Positive"}
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.refusal is None
    assert resp.id == "chatcmpl-standin-1"
    assert resp.model == "gpt-4o-mini"
    assert resp.usage.prompt_tokens > 1 and resp.usage.completion_tokens > 1
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens

    (req,) = server.requests
    assert isinstance(req, Request)
    assert req.schema == SCHEMA
    assert req.model == "gpt-4o-mini"
    assert req.path == "/v1/chat/completions"
    assert req.user_text == "I love this product."
    assert req.messages == MESSAGES
    assert req.headers["authorization"] == "Bearer sk-test"
    assert server.request_count == 1
    assert server.counts == {"/v1/chat/completions": 1}


def test_usage_override_and_list_of_parts_user_text(server):
    server.script(Reply.json({"a": 1}, usage=(11, 7)))
    with client(server) as c:
        resp = ask(c, messages=[{"role": "user", "content": [
            {"type": "text", "text": "part one "}, {"type": "text", "text": "part two"}]}])
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (11, 7, 18)
    assert server.requests[0].user_text == "part one part two"
    assert server.requests[0].schema is None


def test_default_responder_builds_schema_valid_answer(server):
    with client(server) as c:
        resp = ask(c, response_format=RESPONSE_FORMAT)
    assert json.loads(resp.choices[0].message.content) == {
        "sentiment": "Positive", "reason": "", "score": 0, "tags": [],
        "detail": {"count": 0, "ok": False},
    }


def test_sample_from_schema_handles_refs_and_nullable():
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"name": {"type": "string"}},
                           "required": ["name"]}},
        "type": "object",
        "properties": {
            "item": {"$ref": "#/$defs/Item"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            "label": {"type": ["string", "null"], "enum": ["a", "b"]},
        },
        "required": ["item", "maybe", "label"],
    }
    assert sample_from_schema(schema) == {"item": {"name": ""}, "maybe": 0, "label": "a"}


def test_respond_with_function_of_request(server):
    server.respond_with(lambda req: Reply.json({"echo": req.user_text, "model": req.model}))
    with client(server) as c:
        first = ask(c, model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
        server.script(Reply.text("scripted wins"))
        second = ask(c)
        third = ask(c, messages=[{"role": "user", "content": "again"}])
    assert json.loads(first.choices[0].message.content) == {"echo": "hello", "model": "gpt-4o"}
    assert second.choices[0].message.content == "scripted wins"
    assert json.loads(third.choices[0].message.content)["echo"] == "again"

    server.reset()
    assert server.request_count == 0 and server.requests == [] and server.counts == {}
    with client(server) as c:
        assert json.loads(ask(c).choices[0].message.content) == {}  # built-in default again


def test_models_list(server):
    with client(server) as c:
        models = c.models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini", "gpt-4o"]
    assert all(m.owned_by == "standin" and m.object == "model" for m in models.data)
    assert server.counts == {"/v1/models": 1}
    assert server.request_count == 0  # only chat completions are recorded


def test_models_list_disabled_raises_not_found():
    with StandIn(list_models=False) as s, client(s) as c:
        with pytest.raises(openai.NotFoundError):
            c.models.list()


def test_rate_limit_without_retries_exposes_retry_after(server):
    server.script(Reply.error(429, retry_after=1))
    with client(server) as c:
        with pytest.raises(openai.RateLimitError) as ei:
            ask(c)
    assert ei.value.response.headers["retry-after"] == "1"
    assert ei.value.code == "rate_limit_exceeded"
    assert server.request_count == 1


def test_rate_limit_retry_honours_retry_after(server):
    server.script(Reply.error(429, retry_after=1), Reply.json({"ok": True}))
    with client(server, max_retries=2) as c:
        resp = ask(c)
    assert json.loads(resp.choices[0].message.content) == {"ok": True}
    assert server.request_count == 2
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.95
    assert second.headers.get("x-stainless-retry-count") == "1"


def test_server_error_raises_then_retries_to_success(server):
    server.script(Reply.error(500))
    with client(server) as c:
        with pytest.raises(openai.InternalServerError) as ei:
            ask(c)
    assert ei.value.status_code == 500
    assert ei.value.body["type"] == "server_error"

    server.reset()
    server.script(Reply.error(500), Reply.error(503), Reply.json({"ok": True}))
    with client(server, max_retries=2) as c:
        resp = ask(c)
    assert json.loads(resp.choices[0].message.content) == {"ok": True}
    assert server.request_count == 3


def test_hang_triggers_client_timeout(server):
    server.script(Reply.hang(5))
    with client(server, timeout=0.5) as c:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            ask(c)
    assert time.monotonic() - started < 2


def test_stop_wakes_hanging_requests_and_joins_threads():
    s = StandIn().start()
    s.script(Reply.hang(30))
    errors = []

    def call():
        try:
            with client(s, timeout=20) as c:
                ask(c)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    wait_until(lambda: s.request_count > 0, 5, 0.01, what="the call to reach the stand-in")
    assert s.request_count == 1
    before = time.monotonic()
    s.stop()
    assert time.monotonic() - before < 1.5
    t.join(5)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)
    assert not [th for th in threading.enumerate() if th.name.startswith("standin")]


def test_broken_json_returned_as_is(server):
    server.script(Reply.text('{"sentiment": "Posi'))
    with client(server) as c:
        content = ask(c, response_format=RESPONSE_FORMAT).choices[0].message.content
    assert content == '{"sentiment": "Posi'
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)


def test_refusal_and_truncated(server):
    server.script(Reply.refusal("I can't help with that."), Reply.truncated('{"sentiment": "Pos'))
    with client(server) as c:
        refused = ask(c).choices[0]
        cut = ask(c).choices[0]
    assert refused.message.refusal == "I can't help with that." and refused.message.content is None
    assert cut.finish_reason == "length" and cut.message.content == '{"sentiment": "Pos'


def test_wrong_api_key_raises_authentication_error():
    with StandIn(api_key="sk-right") as s:
        with client(s) as c:
            with pytest.raises(openai.AuthenticationError):
                ask(c)
            with pytest.raises(openai.AuthenticationError):
                c.models.list()
        with openai.OpenAI(base_url=s.base_url, api_key="sk-right", max_retries=0) as good:
            assert ask(good).choices[0].message.content == "{}"
        assert s.request_count == 2  # the rejected request is recorded too


def test_permission_denied_and_unknown_model(server):
    server.script(Reply.error(403))
    with client(server) as c:
        with pytest.raises(openai.PermissionDeniedError):
            ask(c)
        with pytest.raises(openai.NotFoundError) as ei:
            ask(c, model="gpt-does-not-exist")
        assert ei.value.code == "model_not_found"
        server.script(Reply.error(400, "bad thing", code="bad_code"))
        with pytest.raises(openai.BadRequestError) as ei:
            ask(c)
        assert ei.value.code == "bad_code" and "bad thing" in str(ei.value)
    assert server.request_count == 3


def test_azure_deployment_and_unknown_deployment():
    with StandIn(deployments={"gpt4o"}, api_key="az-key") as s:
        kw = dict(azure_endpoint=s.root_url, api_key="az-key", api_version="2024-10-21", max_retries=0)
        with openai.AzureOpenAI(azure_deployment="gpt4o", **kw) as az:
            s.script(Reply.json({"sentiment": "Negative"}))
            resp = ask(az, model="gpt4o")
            assert json.loads(resp.choices[0].message.content) == {"sentiment": "Negative"}
            req = s.requests[0]
            assert req.path == "/openai/deployments/gpt4o/chat/completions"
            assert req.query == {"api-version": "2024-10-21"}
            assert req.headers["api-key"] == "az-key"
        with openai.AzureOpenAI(azure_deployment="nope", **kw) as az:
            with pytest.raises(openai.NotFoundError) as ei:
                ask(az, model="nope")
            assert ei.value.code == "DeploymentNotFound"


def test_logprobs(server):
    server.script(Reply.json({"sentiment": "Positive"}, logprobs=-0.5), Reply.json({"a": 1}))
    with client(server) as c:
        resp = ask(c, logprobs=True, top_logprobs=2)
        plain = ask(c)
    entries = resp.choices[0].logprobs.content
    assert entries and all(e.logprob == -0.5 and e.top_logprobs == [] for e in entries)
    assert "".join(e.token for e in entries) == '{"sentiment": "Positive"}'
    assert entries[0].bytes == list(entries[0].token.encode())
    assert plain.choices[0].logprobs is None


def test_concurrent_requests_are_not_serialised(server):
    server.respond_with(lambda req: Reply.json({"n": req.user_text}, delay=0.2))

    async def run():
        async with aclient(server) as c:
            started = time.monotonic()
            results = await asyncio.gather(*[
                c.chat.completions.create(model="gpt-4o-mini",
                                          messages=[{"role": "user", "content": str(i)}])
                for i in range(32)])
            return time.monotonic() - started, results

    elapsed, results = asyncio.run(run())
    assert elapsed < 1.5
    assert sorted(json.loads(r.choices[0].message.content)["n"] for r in results) == sorted(
        str(i) for i in range(32))
    assert server.request_count == 32


def test_delay_does_not_block_other_requests(server):
    server.respond_with(lambda req: Reply.json({"who": req.user_text},
                                               delay=2 if req.user_text == "slow" else 0))
    order = []

    async def one(c, who):
        await c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": who}])
        order.append((who, time.monotonic()))

    async def run():
        async with aclient(server) as c:
            started = time.monotonic()
            await asyncio.gather(one(c, "slow"), one(c, "fast"))
            return started

    started = asyncio.run(run())
    assert [who for who, _ in order] == ["fast", "slow"]
    assert order[0][1] - started < 1.0


def test_http_keep_alive_and_unknown_paths(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("POST", "/v1/chat/completions",
                         body=json.dumps({"model": "gpt-4o", "messages": MESSAGES}),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200
            assert int(resp.getheader("Content-Length")) == len(body)
            assert json.loads(body)["object"] == "chat.completion"
        conn.request("GET", "/v1/embeddings")
        resp = conn.getresponse()
        assert resp.status == 404 and "error" in json.loads(resp.read())
        conn.request("POST", "/v1/chat/completions", body=b"{not json",
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 400 and json.loads(resp.read())["error"]["type"] == "invalid_request_error"
    finally:
        conn.close()
    assert server.counts["/v1/chat/completions"] == 4
    assert server.counts["/v1/embeddings"] == 1
