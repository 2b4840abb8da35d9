"""core.deployment: personal or team mode, the configurations refused before anyone can reach the
dashboard, and the Host and Origin checks that keep other web pages (DNS rebinding) out."""

from __future__ import annotations

import pytest

from core import deployment
from tests.team import plain_deployment  # noqa: F401 - autouse: no deployment variable from outside

OIDC = """
[auth]
redirect_uri = "https://prompter.example.com/oauth2callback"
cookie_secret = "a-long-random-secret"
client_id = "prompter"
client_secret = "shh"
server_metadata_url = "https://id.example.com/.well-known/openid-configuration"
"""


# -- personal or team ---------------------------------------------------------------------------------


def test_personal_by_default_on_loopback_with_nobody_signing_in(monkeypatch):
    monkeypatch.setenv("PROMPTER_PORT", "8765")
    d = deployment.load()
    assert (d.mode, d.personal, d.address, d.port, d.sign_in) == ("personal", True, "127.0.0.1", 8765, None)
    assert deployment.refusal(d) is None
    assert d.describe().startswith("Personal mode: only this computer can open the dashboard (127.0.0.1)")


@pytest.mark.parametrize("address", ["localhost", "::1", "127.0.0.1"])
def test_any_loopback_address_is_personal(monkeypatch, address):
    monkeypatch.setenv("PROMPTER_ADDRESS", address)
    assert deployment.load().mode == "personal"


def test_listening_on_every_address_is_team_mode_and_refused_without_a_sign_in(monkeypatch):
    monkeypatch.setenv("PROMPTER_ADDRESS", "0.0.0.0")
    d = deployment.load()
    assert (d.mode, d.sign_in) == ("team", None)
    said = deployment.refusal(d)
    assert said.startswith(
        "Prompter would listen on 0.0.0.0 for a team, but no sign-in method is configured, so anyone who can reach it could spend the team's keys."
    )
    assert "set PROMPTER_TRUSTED_PROXY" in said and "PROMPTER_ADDRESS=127.0.0.1 for personal use" in said


def test_a_trusted_proxy_on_loopback_makes_it_a_team_that_needs_an_admin(monkeypatch):
    monkeypatch.setenv("PROMPTER_TRUSTED_PROXY", "127.0.0.1")
    d = deployment.load()
    assert (d.mode, d.sign_in, d.proxy_header, d.trusted_proxies) == ("team", "proxy", "X-Forwarded-Email", ("127.0.0.1",))
    assert deployment.refusal(d) == (
        "Set PROMPTER_ADMINS to the email of at least one admin, who will add the rest of the team on the Team page."
    )
    monkeypatch.setenv("PROMPTER_ADMINS", "Boss@Example.com, second@example.com")
    d = deployment.load()
    assert d.admins == {"boss@example.com", "second@example.com"}
    assert deployment.refusal(d) is None


def test_a_trusted_proxy_must_be_an_ip_address(monkeypatch):
    monkeypatch.setenv("PROMPTER_TRUSTED_PROXY", "127.0.0.1,proxy.internal")
    monkeypatch.setenv("PROMPTER_ADMINS", "boss@example.com")
    assert deployment.refusal() == "PROMPTER_TRUSTED_PROXY: 'proxy.internal' is not an IP address; give the address the proxy connects from."


def test_every_address_without_a_public_url_is_refused_and_with_one_is_served(monkeypatch):
    monkeypatch.setenv("PROMPTER_ADDRESS", "0.0.0.0")
    monkeypatch.setenv("PROMPTER_TRUSTED_PROXY", "10.0.0.5")
    monkeypatch.setenv("PROMPTER_ADMINS", "boss@example.com")
    assert deployment.refusal() == (
        "Set PROMPTER_PUBLIC_URL to the address your team opens (e.g. https://prompter.example.com), so requests for other names are refused."
    )
    monkeypatch.setenv("PROMPTER_PUBLIC_URL", "https://prompter.example.com/")
    d = deployment.load()
    assert d.public_url == "https://prompter.example.com"
    assert deployment.refusal(d) is None


def test_an_oidc_secrets_file_makes_it_a_team_signing_in_through_openid_connect(plain_deployment, monkeypatch):
    plain_deployment.write_text(OIDC)
    d = deployment.load()
    assert (d.mode, d.sign_in, d.address) == ("team", "oidc", "127.0.0.1")
    assert d.public_url == "https://prompter.example.com"  # from the redirect URI
    assert deployment.refusal(d) == (
        "Set PROMPTER_ADMINS to the email of at least one admin, who will add the rest of the team on the Team page."
    )
    assert deployment.oidc_settings()["client_id"] == "prompter"
    assert deployment.oidc_provider(deployment.oidc_settings()) is None


def test_oidc_settings_name_what_the_secrets_file_lacks(plain_deployment):
    plain_deployment.write_text('[auth]\nclient_id = "prompter"\n')
    with pytest.raises(deployment.DeploymentError) as lacking:
        deployment.oidc_settings()
    assert str(lacking.value) == (
        f"The [auth] table of {plain_deployment} lacks redirect_uri, cookie_secret, client_id and server_metadata_url "
        "(in [auth] or a provider's [auth.NAME] table); add them as the README's Team section shows."
    )
    with pytest.raises(deployment.DeploymentError, match="lacks redirect_uri, cookie_secret"):
        deployment.load()  # nothing is served on a half-written configuration


def test_oidc_settings_accept_a_named_provider_table(plain_deployment):
    plain_deployment.write_text(
        '[auth]\nredirect_uri = "https://p.example.com/oauth2callback"\ncookie_secret = "s"\n'
        '[auth.google]\nclient_id = "g"\nclient_secret = "x"\nserver_metadata_url = "https://accounts.google.com/.well-known/openid-configuration"\n'
    )
    auth = deployment.oidc_settings()
    assert deployment.oidc_provider(auth) == "google"


def test_a_secrets_file_without_an_auth_table_configures_no_sign_in(plain_deployment):
    plain_deployment.write_text('[other]\nx = 1\n')
    assert deployment.oidc_settings() is None
    assert deployment.load().personal


def test_a_broken_secrets_file_is_named(plain_deployment):
    plain_deployment.write_text("[auth\n")
    with pytest.raises(deployment.DeploymentError, match=rf"^{plain_deployment} is not valid TOML .*; fix it or remove it\.$"):
        deployment.oidc_settings()


def test_asking_for_personal_mode_while_configured_as_a_team_is_refused(monkeypatch):
    monkeypatch.setenv("PROMPTER_MODE", "personal")
    assert deployment.load().personal
    monkeypatch.setenv("PROMPTER_ADDRESS", "0.0.0.0")
    with pytest.raises(deployment.DeploymentError, match=r"^PROMPTER_MODE=personal, but the dashboard would listen on 0\.0\.0\.0"):
        deployment.load()
    monkeypatch.setenv("PROMPTER_MODE", "shared")
    with pytest.raises(deployment.DeploymentError, match="^PROMPTER_MODE must be personal or team, not 'shared'.$"):
        deployment.load()


def test_team_mode_can_be_asked_for_on_loopback(monkeypatch):
    monkeypatch.setenv("PROMPTER_MODE", "team")
    d = deployment.load()
    assert d.mode == "team" and d.sign_in is None
    assert deployment.refusal(d).startswith("Prompter would listen on 127.0.0.1 for a team, but no sign-in method is configured")


# -- which Host and Origin a request may carry ----------------------------------------------------------


def test_personal_mode_answers_only_at_the_loopback_names_of_its_port(monkeypatch):
    monkeypatch.setenv("PROMPTER_PORT", "8765")
    d = deployment.load()
    assert d.allowed_hosts() == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    assert d.request_refusal("127.0.0.1:8765", None) is None
    assert d.request_refusal("LOCALHOST:8765", "http://localhost:8765") is None
    assert d.request_refusal("[::1]:8765", "http://[::1]:8765") is None


def test_a_dns_rebinding_page_is_refused_by_its_host(monkeypatch):
    # evil.example resolves to 127.0.0.1 after the page loaded: the browser sends its own name as Host
    d = deployment.load()
    assert d.request_refusal("evil.example:8501", "http://evil.example:8501") == (
        "This dashboard answers only at http://127.0.0.1:8501, not at evil.example:8501. "
        "Open it at that address (an admin sets PROMPTER_PUBLIC_URL to the address the team uses)."
    )
    assert d.request_refusal("127.0.0.1:9999", None).startswith("This dashboard answers only at http://127.0.0.1:8501, not at 127.0.0.1:9999.")
    assert "not at an unnamed host" in d.request_refusal(None, None)


def test_a_request_from_a_page_on_another_site_is_refused_by_its_origin():
    d = deployment.load()
    assert d.request_refusal("127.0.0.1:8501", "https://evil.example") == (
        "Requests from pages on https://evil.example are refused; open the dashboard at http://127.0.0.1:8501."
    )
    assert d.request_refusal("127.0.0.1:8501", "http://127.0.0.1:8502") is not None  # another local server's page


def test_a_team_answers_only_at_its_public_url(monkeypatch):
    monkeypatch.setenv("PROMPTER_ADDRESS", "0.0.0.0")
    monkeypatch.setenv("PROMPTER_TRUSTED_PROXY", "10.0.0.5")
    monkeypatch.setenv("PROMPTER_ADMINS", "boss@example.com")
    monkeypatch.setenv("PROMPTER_PUBLIC_URL", "https://prompter.example.com")
    d = deployment.load()
    assert d.allowed_hosts() == {"prompter.example.com", "prompter.example.com:443"}
    assert d.request_refusal("prompter.example.com", "https://prompter.example.com") is None
    assert d.request_refusal("prompter.example.com:443", None) is None
    assert d.request_refusal("127.0.0.1:8501", None) == (
        "This dashboard answers only at https://prompter.example.com, not at 127.0.0.1:8501. "
        "Open it at that address (an admin sets PROMPTER_PUBLIC_URL to the address the team uses)."
    )
    assert d.request_refusal("evil.example", None) is not None
    assert d.request_refusal("prompter.example.com", "https://prompter.example.com.evil.example") == (
        "Requests from pages on https://prompter.example.com.evil.example are refused; open the dashboard at https://prompter.example.com."
    )
    # a page served over plain http under the team's name is not the dashboard's own page
    assert d.request_refusal("prompter.example.com", "http://prompter.example.com") is not None


def test_a_public_url_at_an_ipv6_address_keeps_its_brackets(monkeypatch):
    monkeypatch.setenv("PROMPTER_ADDRESS", "::")
    monkeypatch.setenv("PROMPTER_TRUSTED_PROXY", "fd00::5")
    monkeypatch.setenv("PROMPTER_ADMINS", "boss@example.com")
    monkeypatch.setenv("PROMPTER_PUBLIC_URL", "https://[fd00::7]")
    d = deployment.load()
    assert d.allowed_hosts() == {"[fd00::7]", "[fd00::7]:443"}
    assert d.request_refusal("[fd00::7]", "https://[fd00::7]") is None


def test_a_team_on_a_named_address_answers_at_that_name_and_port(monkeypatch):
    monkeypatch.setenv("PROMPTER_ADDRESS", "10.0.0.7")
    monkeypatch.setenv("PROMPTER_PORT", "9000")
    d = deployment.load()
    assert d.mode == "team"
    assert d.allowed_hosts() == {"10.0.0.7:9000"}
    assert d.expected_address() == "http://10.0.0.7:9000"
