"""core.calls over real HTTP to the stand-in: the request sent, the answer's confidence, and
servers that refuse log-probabilities."""

from __future__ import annotations


import pytest

from core import calls, confidence, keys, providers
from core.labeling import Output
from core.prompts import Version
from tests.standin import Reply

VERSION = Version("p", 1, 1, "{text}", None, ("sentiment",), "k", "gpt-4o-mini", 0.0, 50)
SCHEMA = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["Positive", "Negative"]}}, "required": ["sentiment"], "additionalProperties": False}
MESSAGES = [{"role": "user", "content": "great"}]
OUTPUT = Output("sentiment", "Choices", ("text",), ("Positive", "Negative"))


@pytest.fixture
def key(standin):
    return keys.validate(keys.Key(name="k", provider="openai-compatible", base_url=standin.base_url))


def test_the_request_asks_for_strict_structured_output_and_the_confidence(key, standin):
    standin.script(Reply.json({"sentiment": "Positive"}, confidence={"sentiment": 0.8}))
    reply = calls.ask(providers.client(key), calls.request(VERSION, key, MESSAGES, SCHEMA))
    assert reply.ok and reply.raw == '{"sentiment": "Positive"}'
    assert b"".join(token for token, _ in reply.tokens) == reply.raw.encode()
    measured = confidence.measure(reply, [OUTPUT])
    assert measured.confidence == pytest.approx(0.8, abs=1e-4) and measured.confidences == {"sentiment": pytest.approx(0.8, abs=1e-4)}
    body = standin.requests[-1].body
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}}
    assert body["logprobs"] is True and body["max_tokens"] == 50 and body["temperature"] == 0


def test_a_server_that_refuses_logprobs_still_answers(key, standin):
    standin.script(Reply.error(400, "logprobs is not supported with this model"), Reply.json({"sentiment": "Negative"}))
    reply = calls.ask(providers.client(key), calls.request(VERSION, key, MESSAGES, SCHEMA))
    assert reply.ok and reply.raw == '{"sentiment": "Negative"}' and confidence.measure(reply, [OUTPUT]).confidence is None
    assert [("logprobs" in r.body) for r in standin.requests] == [True, False]


def test_the_cache_key_ignores_logprobs_but_not_the_messages(key):
    a = calls.request(VERSION, key, MESSAGES, SCHEMA)
    b = calls.Request({k: v for k, v in a.body.items() if k != "logprobs"}, a.provider)
    c = calls.request(VERSION, key, [{"role": "user", "content": "awful"}], SCHEMA)
    assert a.hash == b.hash and a.hash != c.hash


def test_the_cache_key_changes_with_everything_that_can_change_the_answer():
    import dataclasses

    base_key = keys.Key(name="k", provider="openai-compatible", base_url="http://127.0.0.1:9/v1")
    azure = keys.Key(name="a", provider="azure", endpoint="https://x.example", deployment="d1", api_version="2024-10-21")

    def key_of(version=VERSION, key=base_key, messages=MESSAGES, schema=SCHEMA):
        return calls.request(version, key, messages, schema).hash

    same = key_of()
    assert key_of() == same and key_of(key=dataclasses.replace(base_key, name="renamed", api_key="sk-other")) == same
    different = [
        key_of(key=dataclasses.replace(base_key, base_url="http://127.0.0.1:10/v1")),
        key_of(key=dataclasses.replace(base_key, organization="org-1")),
        key_of(key=dataclasses.replace(base_key, extra_headers={"X-Route": "eu"})),
        key_of(key=dataclasses.replace(base_key, extra_headers={"X-Route": "us"})),
        key_of(key=azure),
        key_of(key=dataclasses.replace(azure, deployment="d2")),
        key_of(key=dataclasses.replace(azure, api_version="2025-01-01")),
        key_of(version=dataclasses.replace(VERSION, model="gpt-4o")),
        key_of(version=dataclasses.replace(VERSION, temperature=0.5)),
        key_of(version=dataclasses.replace(VERSION, max_output_tokens=51)),
        key_of(messages=[{"role": "user", "content": "great!"}]),
        key_of(schema={**SCHEMA, "required": []}),
    ]
    assert len({same, *different}) == len(different) + 1
    # the headers may hold secrets: only a digest of them takes part
    assert "eu" not in calls.request(VERSION, dataclasses.replace(base_key, extra_headers={"X-Route": "eu"}), MESSAGES, SCHEMA).provider
