"""core.providers against the stand-in server over real HTTP: clients and connection tests."""

from __future__ import annotations

import pytest

from core import keys, providers
from core.local_labelstudio import free_port
from tests.standin import Reply, StandIn

KEY = "sk-standin-key-000000000000000001"


@pytest.fixture
def guarded():
    with StandIn(models=("gpt-4o-mini", "gpt-4o", "o3-mini"), api_key=KEY, deployments={"gpt4o"}) as server:
        yield server


def _openai(server: StandIn, api_key: str = KEY, **extra) -> keys.Key:
    return keys.validate(keys.Key(name="k", provider="openai", api_key=api_key, base_url=server.base_url, **extra))


def _azure(server: StandIn, deployment: str = "gpt4o") -> keys.Key:
    return keys.validate(keys.Key(name="az", provider="azure", api_key=KEY, endpoint=server.root_url, deployment=deployment))


def test_ok_says_how_many_models_it_saw(guarded):
    check = providers.test(_openai(guarded))
    assert check.outcome == "ok" and "lists 3 models" in check.message
    assert check.models == ("gpt-4o", "gpt-4o-mini", "o3-mini")


def test_compatible_server_without_a_key_and_with_extra_headers(standin):
    key = keys.validate(keys.Key(name="local", provider="openai-compatible", base_url=standin.base_url, extra_headers={"X-Team": "labels"}))
    assert providers.test(key).ok
    client = providers.client(key)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert standin.requests[-1].headers["x-team"] == "labels"


def test_rejected_key(guarded):
    check = providers.test(_openai(guarded, api_key="sk-wrong-key-0000000000000000"))
    assert check.outcome == "rejected" and "401" in check.message
    assert "sk-wrong-key" not in check.message


def test_forbidden_key(guarded):
    guarded.script_models(Reply.error(403))
    check = providers.test(_openai(guarded))
    assert check.outcome == "rejected" and "403" in check.message


def test_wrong_base_url_is_not_found():
    with StandIn(list_models=False) as server:
        check = providers.test(keys.validate(keys.Key(name="k", provider="openai", api_key=KEY, base_url=server.root_url + "/wrong")))
    assert check.outcome == "not_found" and "check the base URL" in check.message


def test_unreachable_closed_port():
    port = free_port()
    key = keys.validate(keys.Key(name="k", provider="openai", api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1"))
    check = providers.test(key)
    assert check.outcome == "unreachable" and "connection refused" in check.message


def test_unreachable_when_it_does_not_answer_in_time(guarded, monkeypatch):
    monkeypatch.setattr(providers, "TEST_TIMEOUT", 0.5)
    guarded.script_models(Reply.hang(5))
    check = providers.test(_openai(guarded))
    assert check.outcome == "unreachable" and "did not answer" in check.message


def test_rate_limited_says_when_to_retry(guarded):
    guarded.script_models(Reply.error(429, retry_after=7))
    check = providers.test(_openai(guarded))
    assert check.outcome == "rate_limited" and "retry after 7 s" in check.message
    assert guarded.counts["/v1/models"] == 1  # a test is one call: no retries


def test_azure_deployment_found_and_not_found(guarded):
    assert providers.test(_azure(guarded)).ok
    sent = guarded.requests[-1]
    assert sent.path == "/openai/deployments/gpt4o/chat/completions" and sent.headers["api-key"] == KEY
    check = providers.test(_azure(guarded, deployment="missing"))
    assert check.outcome == "not_found" and "no deployment 'missing'" in check.message


def test_azure_rate_limited_and_rejected(guarded):
    guarded.script(Reply.error(429))
    assert providers.test(_azure(guarded)).outcome == "rate_limited"
    guarded.script(Reply.error(401))
    assert providers.test(_azure(guarded)).outcome == "rejected"


def test_unreadable_key_is_reported_not_sent(guarded):
    broken = keys.Key(name="old", provider="openai", problem="saved keys cannot be read; add them again")
    check = providers.test(broken)
    assert check.outcome == "unreadable" and "add them again" in check.message
    with pytest.raises(providers.KeyUnusable):
        providers.client(broken)
    assert guarded.counts == {}


def test_sync_and_async_clients_reach_the_server(guarded):
    import asyncio

    key = _openai(guarded)
    assert providers.models(key) == ["gpt-4o", "gpt-4o-mini", "o3-mini"]

    async def ask():
        async with providers.async_client(key) as client:
            return await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    assert asyncio.run(ask()).choices[0].message.content == "{}"
    assert providers.models(_azure(guarded)) == ["gpt4o"]


def test_model_choices_fall_back_to_a_typed_name(guarded):
    assert providers.model_choices(_openai(guarded)) == (["gpt-4o", "gpt-4o-mini", "o3-mini"], None)
    with StandIn(list_models=False) as bare:
        key = keys.validate(keys.Key(name="llama", provider="openai-compatible", base_url=bare.base_url))
        names, note = providers.model_choices(key)
        assert names == [] and note == f"{bare.base_url} has no model list; type the model name."
    rejected, note = providers.model_choices(_openai(guarded, api_key="sk-wrong-000000000000000"))
    assert rejected == [] and "AuthenticationError" in note
