"""core.connection: which Label Studio is used, saved encrypted, tested in one sentence."""

from __future__ import annotations

import logging

from core import connection, keys, providers
from core.local_labelstudio import free_port
from tests.standin import StandIn


def test_environment_wins_over_saved_which_wins_over_local(labelstudio, monkeypatch):
    connection.save(labelstudio.url, labelstudio.credentials.token)
    assert connection.current().source == "saved"
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "x")
    assert connection.current().source == "environment" and connection.environment_overrides_saved()
    monkeypatch.delenv("LABEL_STUDIO_URL")
    connection.forget()
    assert connection.current() is None


def test_good_token_and_bad_token_against_the_real_server(labelstudio):
    ok = connection.test(connection.draft(labelstudio.url, labelstudio.credentials.token))
    assert ok.outcome == "ok" and ok.message.startswith("OK: Label Studio 1.")
    bad = connection.test(connection.draft(labelstudio.url, "wrong-token-1234"))
    assert bad.outcome == "rejected" and "wrong-token-1234" not in bad.message
    gone = connection.test(connection.draft(f"http://127.0.0.1:{free_port()}", "t"))
    assert gone.outcome == "unreachable"


def test_no_log_line_holds_a_secret(labelstudio, caplog):
    """With every logger at DEBUG, a connection test and a model call log nothing secret."""
    secret = "sk-logging-secret-000000000000AAAA"
    caplog.set_level(logging.DEBUG)
    with StandIn(api_key=secret) as server:
        key = keys.add("team", "openai", api_key=secret, base_url=server.base_url)
        assert providers.test(key).ok
        providers.client(key).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        keys.add("wrong", "openai", api_key=secret[::-1], base_url=server.base_url)
        assert not providers.test(keys.get("wrong")).ok
    connection.test(connection.draft(labelstudio.url, labelstudio.credentials.token))
    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    assert logged  # the libraries did log at DEBUG
    for value in (secret, secret[::-1], labelstudio.credentials.token):
        assert value not in logged


def test_a_personal_access_token_works_as_well_as_a_legacy_token(labelstudio):
    from label_studio_sdk import LabelStudio

    admin = LabelStudio(base_url=labelstudio.url, api_key=labelstudio.credentials.token)
    admin.jwt_settings.update(api_tokens_enabled=True, legacy_api_tokens_enabled=True, api_token_ttl_days=30)
    personal = admin.tokens.create().token
    assert personal.count(".") == 2  # a JWT refresh token, not a legacy one

    check = connection.test(connection.draft(labelstudio.url, personal))
    assert check.outcome == "ok", check.message
    assert personal not in check.message
