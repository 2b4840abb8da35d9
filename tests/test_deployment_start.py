"""What a team deployment refuses before it serves anyone: a launcher with no sign-in method, a
dashboard server that would take client addresses from X-Forwarded-For under a trusted proxy, a
pages/ folder Streamlit would serve around the door."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from core import deployment, settings
from core.local_labelstudio import free_port, port_is_free


def test_team_mode_without_a_sign_in_method_does_not_start(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTER_", "LABEL_STUDIO_", "STREAMLIT_"))} | {
        "PROMPTER_HOME": str(tmp_path / "home"),
        "PROMPTER_ADDRESS": "0.0.0.0",
        "PROMPTER_PORT": str(port),
        "PROMPTER_SECRETS_FILE": str(tmp_path / "no-secrets.toml"),
    }
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "core", "run"], cwd=settings.REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - began
    assert done.returncode != 0, done
    assert "Not starting" in done.stderr and "[auth]" in done.stderr and "PROMPTER_TRUSTED_PROXY" in done.stderr, done.stderr
    assert str(tmp_path / "no-secrets.toml") in done.stderr  # the file to put [auth] in
    assert "Starting Label Studio" not in done.stdout and "Prompter dashboard" not in done.stdout, done.stdout
    assert not (tmp_path / "home").exists() and port_is_free(port)  # nothing started, nothing written
    assert took < 30, f"took {took:.1f} s to refuse"


def test_no_pages_folder_beside_app_py():
    # Streamlit serves the scripts of a pages/ folder beside the main script directly (each at its
    # own URL) until a session's run reaches st.navigation: around app.py's Host check and sign-in.
    assert not (settings.REPO_ROOT / "pages").exists(), "the dashboard's pages belong in views/ (see app.py)"


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
