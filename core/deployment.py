"""How this Prompter is deployed: personal (one person, on 127.0.0.1) or shared by a team.

*Personal* is what `make run` starts: the dashboard listens on 127.0.0.1, nobody signs in, and the
person at the keyboard is the admin. *Team* is any other address, or a sign-in method configured:
everyone signs in, either through OpenID Connect (Streamlit's ``st.login``, configured in the ``[auth]``
table of ``.streamlit/secrets.toml``) or through a trusted proxy that names the user in a header.
A team deployment without a sign-in method refuses to start.

Every setting is documented in the README's "Team" section; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from sqlmodel import select

from core import settings, store

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
DEFAULT_PROXY_HEADER = "X-Forwarded-Email"
# Streamlit's web server (uvicorn) replaces a connection's address with the last X-Forwarded-For
# address when the connection comes from one in FORWARDED_ALLOW_IPS (127.0.0.1 and ::1 when unset).
# The trusted-proxy sign-in decides on the address the connection really comes from, so the
# dashboard's server trusts no forwarded address: the launcher starts it with this environment.
SERVER_ENVIRONMENT = {"FORWARDED_ALLOW_IPS": ""}


class DeploymentError(ValueError):
    """The configuration cannot be served safely; the message says what to set."""


@dataclass(frozen=True)
class Deployment:
    address: str  # where the dashboard listens
    port: int
    mode: str  # "personal" | "team"
    sign_in: str | None  # "oidc" | "proxy" | None
    public_url: str | None  # the address the team opens, e.g. https://prompter.example.com
    proxy_header: str | None
    trusted_proxies: tuple[str, ...]
    admins: frozenset[str]  # emails made admins when they first sign in
    allowed_domains: tuple[str, ...]  # anyone with an email here may sign in, as a viewer

    @property
    def personal(self) -> bool:
        return self.mode == "personal"

    def describe(self) -> str:
        """One sentence for the Home page."""
        if self.personal:
            return (
                f"Personal mode: only this computer can open the dashboard ({self.address}), nobody signs in, "
                "and you are its admin. Set PROMPTER_ADDRESS and a sign-in method to share it with a team."
            )
        how = "OpenID Connect" if self.sign_in == "oidc" else f"the proxy at {', '.join(self.trusted_proxies)} ({self.proxy_header})"
        return f"Team mode: everyone signs in through {how}; roles decide who may change what."

    def allowed_hosts(self) -> set[str]:
        """The Host header values a request may carry (anything else may be a DNS-rebinding page)."""
        hosts = self._own_hosts()
        if self.public_url:
            hosts |= set(_host_forms(urlsplit(self.public_url)))
        return hosts

    def allowed_origins(self) -> set[str]:
        """The Origin header values a request may carry: the public URL's own, and this machine's."""
        origins = {f"{scheme}://{host}" for host in self._own_hosts() for scheme in ("http", "https")}
        if self.public_url:
            parts = urlsplit(self.public_url)
            origins |= {f"{parts.scheme}://{host}" for host in _host_forms(parts)}
        return origins

    def _own_hosts(self) -> set[str]:
        """The names of this machine's listening socket a request may use."""
        hosts = set()
        if self.personal or _is_loopback(self.address):
            hosts |= {f"{_host_for_url(name)}:{self.port}" for name in LOOPBACK_NAMES}
        if not _is_any(self.address):
            hosts.add(f"{_host_for_url(self.address)}:{self.port}".lower())
        return hosts

    def request_refusal(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused (DNS rebinding, a page on another site), or None."""
        if not host or host.lower() not in self.allowed_hosts():
            return (
                f"This dashboard answers only at {self.expected_address()}, not at {host or 'an unnamed host'}. "
                "Open it at that address (an admin sets PROMPTER_PUBLIC_URL to the address the team uses)."
            )
        if origin and origin.lower() not in self.allowed_origins():
            return f"Requests from pages on {origin} are refused; open the dashboard at {self.expected_address()}."
        return None

    def expected_address(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if _is_any(self.address) or _is_loopback(self.address) else _host_for_url(self.address)
        return f"http://{host}:{self.port}"


def load(*, address: str | None = None, port: int | None = None) -> Deployment:
    """The deployment as configured now: environment variables and Streamlit's secrets file. The
    dashboard passes the address and port its server really listens on."""
    conf = settings.load()
    address = (address or os.environ.get("PROMPTER_ADDRESS") or "127.0.0.1").strip()
    auth = oidc_settings()
    proxies = _list("PROMPTER_TRUSTED_PROXY")
    sign_in = "oidc" if auth else "proxy" if proxies else None
    wanted = (os.environ.get("PROMPTER_MODE") or "").strip().lower()
    if wanted not in ("", "personal", "team"):
        raise DeploymentError(f"PROMPTER_MODE must be personal or team, not {wanted!r}.")
    team = wanted == "team" or not _is_loopback(address) or sign_in is not None
    if wanted == "personal" and team:
        raise DeploymentError(
            f"PROMPTER_MODE=personal, but the dashboard would listen on {address} or a sign-in method is configured; "
            "personal mode listens on 127.0.0.1 with no sign-in. Unset PROMPTER_MODE, or PROMPTER_ADDRESS and the sign-in settings."
        )
    public_url = (os.environ.get("PROMPTER_PUBLIC_URL") or "").strip().rstrip("/") or None
    if public_url is None and auth:
        public_url = auth["redirect_uri"].rsplit("/oauth2callback", 1)[0].rstrip("/") or None
    return Deployment(
        address=address,
        port=port or conf.dashboard_port,
        mode="team" if team else "personal",
        sign_in=sign_in,
        public_url=public_url,
        proxy_header=((os.environ.get("PROMPTER_PROXY_HEADER") or DEFAULT_PROXY_HEADER).strip()) if proxies else None,
        trusted_proxies=tuple(proxies),
        admins=frozenset(email.lower() for email in _list("PROMPTER_ADMINS")),
        allowed_domains=tuple(domain.lower().lstrip("@") for domain in _list("PROMPTER_ALLOWED_DOMAINS")),
    )


def refusal(deployment: Deployment | None = None) -> str | None:
    """Why this configuration must not be served, in a sentence saying how to fix it; None when it may."""
    d = deployment or load()
    if d.personal:
        return None
    if d.sign_in is None:
        return (
            f"Prompter would listen on {d.address} for a team, but no sign-in method is configured, so anyone who can "
            "reach it could spend the team's keys. Configure OpenID Connect in the [auth] table of "
            f"{secrets_file()} (see the README's Team section), or set PROMPTER_TRUSTED_PROXY to the address of "
            "the proxy that signs people in; or set PROMPTER_ADDRESS=127.0.0.1 for personal use."
        )
    if not d.admins and not _team_has_an_admin():
        return "Set PROMPTER_ADMINS to the email of at least one admin, who will add the rest of the team on the Team page."
    if d.sign_in == "proxy":
        for proxy in d.trusted_proxies:
            try:
                ipaddress.ip_address(proxy)
            except ValueError:
                return f"PROMPTER_TRUSTED_PROXY: {proxy!r} is not an IP address; give the address the proxy connects from."
    if _is_any(d.address) and not d.public_url:
        return "Set PROMPTER_PUBLIC_URL to the address your team opens (e.g. https://prompter.example.com), so requests for other names are refused."
    return None


def server_refusal(d: Deployment, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why the dashboard's server process, started with ``environ``, must not serve ``d``; None when
    it may. A trusted-proxy sign-in needs the connection's own address (SERVER_ENVIRONMENT)."""
    if d.sign_in != "proxy" or environ.get("FORWARDED_ALLOW_IPS") == SERVER_ENVIRONMENT["FORWARDED_ALLOW_IPS"]:
        return None
    trusted = environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1 (it is unset)")
    return (
        f"its web server takes a connection's address from X-Forwarded-For when the connection comes from {trusted} "
        "(FORWARDED_ALLOW_IPS), so a program there could pass for the sign-in proxy, and a proxy there that adds "
        "X-Forwarded-For would not be recognised. Start the dashboard with `make run` (python -m core run), which "
        "sets FORWARDED_ALLOW_IPS empty, or set it empty yourself."
    )


def secrets_file() -> Path:
    """Where Streamlit reads the sign-in settings from (``PROMPTER_SECRETS_FILE`` or .streamlit/secrets.toml)."""
    configured = (os.environ.get("PROMPTER_SECRETS_FILE") or "").strip()
    return Path(configured).expanduser() if configured else settings.REPO_ROOT / ".streamlit" / "secrets.toml"


def oidc_settings() -> dict | None:
    """The ``[auth]`` table of the secrets file when it configures OpenID Connect; None otherwise."""
    path = secrets_file()
    if not path.is_file():
        return None
    try:
        auth = tomllib.loads(path.read_text()).get("auth")
    except tomllib.TOMLDecodeError as error:
        raise DeploymentError(f"{path} is not valid TOML ({error}); fix it or remove it.") from None
    if not isinstance(auth, dict):
        return None
    missing = [name for name in ("redirect_uri", "cookie_secret") if not auth.get(name)]
    providers = [auth] + [value for value in auth.values() if isinstance(value, dict)]
    if not any(p.get("client_id") and p.get("server_metadata_url") for p in providers):
        missing.append("client_id and server_metadata_url (in [auth] or a provider's [auth.NAME] table)")
    if missing:
        raise DeploymentError(f"The [auth] table of {path} lacks {', '.join(missing)}; add them as the README's Team section shows.")
    return auth


def oidc_provider(auth: dict) -> str | None:
    """The provider name to pass to ``st.login``: None for [auth] itself, else the first [auth.NAME]."""
    if auth.get("client_id"):
        return None
    return next(name for name, value in auth.items() if isinstance(value, dict) and value.get("client_id"))


def _team_has_an_admin() -> bool:
    with store.session() as s:
        return s.exec(select(store.TeamMember.email).where(store.TeamMember.role == "admin").limit(1)).first() is not None


def _host_forms(parts) -> list[str]:
    """A URL's host as a Host header may name it: with its port, and without it when it is the default."""
    host = _host_for_url(parts.hostname or "")
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    port = parts.port or default_port
    return [f"{host}:{port}"] + ([host] if port == default_port else [])


def _list(variable: str) -> list[str]:
    return [part.strip() for part in (os.environ.get(variable) or "").split(",") if part.strip()]


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _is_any(address: str) -> bool:
    return address in ("0.0.0.0", "::", "")


def _host_for_url(address: str) -> str:
    return f"[{address}]" if ":" in address else address
