"""A saved provider key is only ever sent where it was saved for: an edit that changes its address
(base URL, endpoint, organization, extra headers) must give the secret again, and is refused before
any request otherwise. A real listener stands at the new address and says what it received."""

from __future__ import annotations

import pytest

from core import keys
from tests.listener import Listener
from tests.standin import StandIn

OLD = "sk-old-secret-saved-for-the-first-address-1111"
NEW = "sk-new-secret-typed-for-the-new-address-2222"
AGAIN = "type the key again to send it to the new address"


@pytest.fixture
def listener():
    with Listener() as heard:
        yield heard


@pytest.fixture
def first():
    """Where the key was saved for: a stand-in that accepts OLD."""
    with StandIn(models=("gpt-4o-mini",), api_key=OLD) as server:
        yield server


def test_changing_the_base_url_without_the_key_is_refused_and_sends_nothing(first, listener):
    keys.add("team", "openai", api_key=OLD, base_url=first.base_url)
    for edit in (keys.test_and_update, keys.update, keys.edited):
        with pytest.raises(keys.InvalidKey) as refused:
            edit("team", base_url=listener.base_url)
        assert refused.value.field == "api_key" and AGAIN in str(refused.value)
        assert OLD not in str(refused.value)
    with pytest.raises(keys.InvalidKey, match=AGAIN):
        keys.test_and_update("team", base_url=listener.base_url, anyway=True)  # "Save anyway" too
    assert listener.requests() == []
    assert (keys.get("team").base_url, keys.get("team").api_key) == (first.base_url, OLD)


def test_with_the_key_typed_again_the_new_address_gets_the_new_key_only(first, listener):
    keys.add("team", "openai", api_key=OLD, base_url=first.base_url)
    updated, check = keys.test_and_update("team", base_url=listener.base_url, api_key=NEW)
    assert check.ok and (updated.base_url, updated.api_key) == (listener.base_url, NEW)
    heard = listener.requests()
    assert heard and {h.headers.get("authorization") for h in heard} == {f"Bearer {NEW}"}
    assert not any(OLD in value for value in listener.header_values())


@pytest.mark.parametrize(
    "provider, saved, change",
    [
        ("openai", {}, {"organization": "org-elsewhere"}),
        ("openai-compatible", {}, {"extra_headers": {"X-Route": "elsewhere"}}),
        ("azure", {"deployment": "gpt4o"}, {"endpoint": "LISTENER"}),
    ],
)
def test_every_field_that_says_where_the_key_goes_needs_it_again(provider, saved, change, first, listener):
    start = {"endpoint": first.root_url} if provider == "azure" else {"base_url": first.base_url}
    keys.add("team", provider, api_key=OLD, **start, **saved)
    change = {name: listener.url if value == "LISTENER" else value for name, value in change.items()}
    with pytest.raises(keys.InvalidKey, match=AGAIN) as refused:
        keys.test_and_update("team", **change)
    assert refused.value.field == "api_key"
    assert listener.requests() == [] and first.counts == {}
    keys.update("team", api_key=NEW, **change)  # given the key, the same change is taken
    assert keys.get("team").api_key == NEW


def test_a_change_to_the_same_address_written_differently_is_no_change(first):
    keys.add("team", "openai", api_key=OLD, base_url=first.base_url, organization="org-1")
    keys.update("team", base_url=f"  {first.base_url}/ ", organization=" org-1 ")
    assert keys.get("team").api_key == OLD


def test_changes_that_do_not_move_the_key_keep_the_saved_secret():
    keys.add("az", "azure", api_key=OLD, endpoint="https://res.openai.azure.com", deployment="gpt4o")
    moved = keys.update("az", name="az-renamed", deployment="gpt4o-mini", api_version="2025-01-01")
    assert (moved.name, moved.deployment, moved.api_version, moved.api_key) == ("az-renamed", "gpt4o-mini", "2025-01-01", OLD)


def test_a_key_read_from_a_variable_moves_only_when_the_variable_is_named_again(monkeypatch, first, listener):
    monkeypatch.setenv("TEAM_KEY", OLD)
    keys.add("team", "openai", api_key_env="TEAM_KEY", base_url=first.base_url)
    with pytest.raises(keys.InvalidKey, match=r"would send the key from \$TEAM_KEY somewhere it was not saved for; type the key \(or the variable's name\) again"):
        keys.test_and_update("team", base_url=listener.base_url)
    assert listener.requests() == []

    monkeypatch.setenv("OTHER_KEY", NEW)
    updated, check = keys.test_and_update("team", base_url=listener.base_url, api_key_env="OTHER_KEY")
    assert check.ok and (updated.api_key_env, keys.get("team").base_url) == ("OTHER_KEY", listener.base_url)
    assert {h.headers.get("authorization") for h in listener.requests()} == {f"Bearer {NEW}"}
    monkeypatch.setenv("OTHER_KEY", OLD)
    keys.update("team", organization="org-2", api_key_env="OTHER_KEY")  # the same variable, named again, is enough
    assert keys.get("team").organization == "org-2"


def test_saved_headers_are_secrets_too(listener):
    keys.add("gateway", "openai-compatible", base_url="http://127.0.0.1:9/v1", extra_headers={"Authorization": "Bearer header-secret-3333"})
    with pytest.raises(keys.InvalidKey, match="type the headers again to send them to the new address") as refused:
        keys.test_and_update("gateway", base_url=listener.base_url)
    assert refused.value.field == "extra_headers" and listener.requests() == []

    keys.test_and_update("gateway", base_url=listener.base_url, extra_headers={"Authorization": "Bearer header-new-4444"})
    assert {h.headers.get("authorization") for h in listener.requests()} == {"Bearer header-new-4444"}
    assert not any("header-secret-3333" in value for value in listener.header_values())


def test_a_key_without_any_secret_moves_freely(listener):
    keys.add("local", "openai-compatible", base_url="http://127.0.0.1:9/v1")
    moved, check = keys.test_and_update("local", base_url=listener.base_url)
    assert check.ok and moved.base_url == listener.base_url
