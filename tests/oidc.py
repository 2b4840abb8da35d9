"""Real OpenID Connect sign-in for the tests: Streamlit's own st.login / st.user (Authlib underneath)
against a real provider on loopback, oidc-provider-mock, driven in Chromium as a person signs in.

    port = free_port(); app_url = f"http://127.0.0.1:{port}"
    with oidc_provider(f"{app_url}/oauth2callback", tmp_path / "oidc.log") as provider:
        write_secrets(tmp_path / "secrets.toml", app_url, provider)
        # start Streamlit on that port with `--secrets.files <that file>` (or with
        # STREAMLIT_SECRETS_FILES=<that file> in its environment: tests.browser.Dashboard passes its
        # own on and has its url before it starts), then in a browser context:
        stay_on_loopback(context)
        sign_in(page, "ada@example.com", "Ada Lovelace")

The provider only knows the client registered for that one redirect URI (a mismatch fails as at
a real provider), checks the client secret and demands a nonce. Its sign-in form asks for the
subject alone: the claims (email, name) are set through its users API just before the form is sent.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from core.local_labelstudio import free_port
from tests.helpers import wait_until

AUTHORIZE_PATH = "/oauth2/authorize"
END_SESSION_PATH = "/oauth2/end_session"
CALLBACK_PATH = "/oauth2callback"


@dataclass(frozen=True)
class Provider:
    """A running provider and the one client registered with it."""

    issuer: str  # http://127.0.0.1:PORT
    client_id: str
    client_secret: str
    redirect_uri: str  # the only one the provider accepts for this client

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


@contextmanager
def oidc_provider(redirect_uri: str, log: Path) -> Iterator[Provider]:
    """Start oidc-provider-mock on a free 127.0.0.1 port (a uvicorn subprocess), register a client
    for ``redirect_uri`` and yield it; the server stops when the block ends."""
    issuer = f"http://127.0.0.1:{free_port()}"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "oidc_provider_mock",
                "--host", "127.0.0.1", "--port", issuer.rsplit(":", 1)[1],
                "--require-registration", "true",  # else any client id, secret and redirect URI pass
                "--require-nonce", "true",
            ],
            stdout=out,
            stderr=out,
        )
    try:
        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the OIDC provider exited; see {log}")
            try:
                return httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30, 0.1, what=f"the OIDC provider to start (see {log})")
        response = httpx.post(f"{issuer}/oauth2/clients", json={"redirect_uris": [redirect_uri]}, timeout=10)
        response.raise_for_status()
        client = response.json()
        yield Provider(issuer, client["client_id"], client["client_secret"], redirect_uri)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def write_secrets(path: Path, app_url: str, provider: Provider, *, name: str | None = None) -> Path:
    """Write the secrets.toml Streamlit's auth needs for an app served at ``app_url`` (scheme, host
    and port exactly as the browser opens it). With ``name`` the provider's keys go in
    [auth.NAME], for st.login(NAME); else in [auth] itself, for st.login()."""
    shared = {
        "redirect_uri": f"{app_url.rstrip('/')}{CALLBACK_PATH}",
        "cookie_secret": secrets.token_urlsafe(32),
    }
    client = {
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "server_metadata_url": provider.metadata_url,
    }
    if name:
        text = _toml_table("auth", shared) + "\n" + _toml_table(f"auth.{name}", client)
    else:
        text = _toml_table("auth", {**shared, **client})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _toml_table(header: str, values: dict[str, str]) -> str:
    # A JSON string is a valid TOML basic string.
    return f"[{header}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


_OFF_LOOPBACK = re.compile(r"^(?!https?://(127\.0\.0\.1|localhost|\[::1\])[:/])[a-z]+://")


def stay_on_loopback(context) -> None:
    """Abort every request of a browser context that leaves loopback: the provider's pages link a
    stylesheet on a CDN, and this machine's network is loopback only."""
    context.route(_OFF_LOOPBACK, lambda route: route.abort())


def _at(path: str):
    return lambda url: urlsplit(url).path == path


def _back_on(app: str):
    """Whether a URL is the app's own page again (not the provider, not the callback on the way)."""
    return lambda url: urlsplit(url).netloc == app and urlsplit(url).path != CALLBACK_PATH


def sign_in(page, email: str, name: str, *, sub: str | None = None, button: str = "Sign in", timeout: float = 30_000) -> None:
    """From a Streamlit page showing the button that calls st.login(), sign in as ``email`` /
    ``name`` (subject ``sub``, the email unless given) and wait until the browser is back on the app.

    The provider's form asks for the subject only; the claims the ID token carries for it (and so
    st.user.email and st.user.name) are set through the provider's users API first."""
    app = urlsplit(page.url).netloc
    page.get_by_role("button", name=button, exact=True).click()
    # st.login sends the browser to /auth/login, which redirects to the provider's authorize page.
    page.wait_for_url(_at(AUTHORIZE_PATH), timeout=timeout, wait_until="domcontentloaded")
    authorize = urlsplit(page.url)
    redirect_uri = parse_qs(authorize.query).get("redirect_uri", [""])[0]
    if urlsplit(redirect_uri).netloc != app:
        # The state Streamlit keeps for the sign-in is a cookie of the host the page is open on:
        # the provider would send the browser back to another host, where it is unknown.
        raise AssertionError(f"the app is open at {app} but its redirect_uri is {redirect_uri}: open it at the redirect_uri's host and port")
    issuer = f"{authorize.scheme}://{authorize.netloc}"
    subject = sub or email
    httpx.put(f"{issuer}/users/{quote(subject, safe='')}", json={"email": email, "name": name}, timeout=10).raise_for_status()
    page.get_by_placeholder("sub").fill(subject)
    page.get_by_role("button", name="Authorize", exact=True).click()
    # The provider redirects to /oauth2callback, which sets the identity cookie and redirects to the app's root.
    page.wait_for_url(_back_on(app), timeout=timeout)


def sign_out(page, *, button: str = "Sign out", timeout: float = 30_000) -> None:
    """Click the button that calls st.logout() and confirm the end of the session at the provider
    (Streamlit sends the browser to its end_session_endpoint); wait until back on the app."""
    app = urlsplit(page.url).netloc
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_url(_at(END_SESSION_PATH), timeout=timeout, wait_until="domcontentloaded")
    page.get_by_role("button", name="End session", exact=True).click()
    page.wait_for_url(_back_on(app), timeout=timeout)
