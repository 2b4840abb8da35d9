"""What a team deployment refuses before it serves anyone: a launcher with no sign-in method, a
dashboard server that would take client addresses from X-Forwarded-For under a trusted proxy."""

from __future__ import annotations

import pytest

from core import deployment


@pytest.fixture
def proxy_team(monkeypatch: pytest.MonkeyPatch) -> deployment.Deployment:
    monkeypatch.setenv("PROMPTER_TRUSTED_PROXY", "127.0.0.1")
    monkeypatch.setenv("PROMPTER_ADMINS", "lead@example.com")
    monkeypatch.setenv("PROMPTER_SECRETS_FILE", "/nonexistent/secrets.toml")
    found = deployment.load()
    assert found.sign_in == "proxy" and deployment.refusal(found) is None
    return found


@pytest.mark.parametrize("environ", [{}, {"FORWARDED_ALLOW_IPS": "127.0.0.1"}, {"FORWARDED_ALLOW_IPS": "*"}])
def test_a_proxy_sign_in_is_not_served_by_a_server_that_trusts_forwarded_addresses(proxy_team, environ):
    refusal = deployment.server_refusal(proxy_team, environ)
    assert refusal is not None and "X-Forwarded-For" in refusal and "make run" in refusal


def test_the_launchers_server_environment_serves_a_proxy_sign_in(proxy_team):
    assert deployment.server_refusal(proxy_team, deployment.SERVER_ENVIRONMENT) is None


def test_a_personal_dashboard_needs_no_server_environment(monkeypatch):
    monkeypatch.setenv("PROMPTER_SECRETS_FILE", "/nonexistent/secrets.toml")
    for name in ("PROMPTER_TRUSTED_PROXY", "PROMPTER_ADDRESS", "PROMPTER_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert deployment.server_refusal(deployment.load(), {}) is None
