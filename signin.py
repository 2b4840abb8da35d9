"""The dashboard's door: which requests it answers, and who is signed in. Streamlit only: the rules
(who is on the team, with which role) are in core.identity and core.deployment.

(It lives beside app.py, not in views/, because every file there is one of the app's pages.)
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone

import streamlit as st

from core import deployment, identity
from core.deployment import Deployment
from core.identity import User

SESSION_USER = "prompter_user"


def serving() -> Deployment:
    """The deployment as this server runs it; stops the page when it must not be served."""
    try:
        found = deployment.load(address=st.get_option("server.address"), port=st.get_option("server.port"))
        refusal = deployment.refusal(found) or deployment.server_refusal(found)
    except ValueError as error:  # a malformed setting (DeploymentError is one): its message names it
        found, refusal = None, str(error)
    if refusal:
        st.error(f"Prompter is not serving: {refusal}", icon=":material/lock:")
        st.stop()
    return found


def refuse_foreign_requests(d: Deployment) -> None:
    """Stop a request whose Host or Origin is not this dashboard's (a DNS-rebinding page)."""
    headers = st.context.headers
    if not headers:  # no HTTP request behind this session (the test harness): nothing to check
        return
    refusal = d.request_refusal(headers.get("Host"), headers.get("Origin"))
    if refusal:
        st.error(refusal, icon=":material/gpp_bad:")
        st.stop()


def signed_in(d: Deployment) -> User:
    """The user of this session; shows the way to sign in and stops the page when nobody is."""
    if d.personal:
        user = identity.local_admin()
    elif d.sign_in == "oidc":
        user = _through_oidc(d)
    else:
        user = _through_proxy(d)
    st.session_state[SESSION_USER] = user
    return user


def session_user() -> User | None:
    """For core.identity: the user of the session whose script (or callback) is running."""
    try:
        return st.session_state.get(SESSION_USER)
    except Exception:  # noqa: BLE001 - called outside a Streamlit script: nobody
        return None


def show_user(user: User, d: Deployment) -> None:
    """The signed-in user's name and role in the sidebar, with Sign out (team mode)."""
    with st.sidebar:
        if d.personal:
            st.caption(f"Personal mode: {user.label}", help=d.describe())
            return
        st.caption(f"Signed in as **{user.name or user.email}** ({user.role})", help=f"{user.email}: {identity.ROLE_DUTIES[user.role]}.")
        if d.sign_in == "oidc":
            st.button("Sign out", key="sign_out", icon=":material/logout:", on_click=st.logout)


def _through_oidc(d: Deployment) -> User:
    if not st.user.is_logged_in:
        _door("Sign in to use this team's Prompter.")
        provider = deployment.oidc_provider(deployment.oidc_settings())
        st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login, args=(provider,) if provider else ())
        st.stop()
    email = st.user.get("email")
    if not email or st.user.get("email_verified") is False:
        _door("Your sign-in gave no verified email address, which this dashboard needs to know who you are.")
        st.button("Sign out", on_click=st.logout)
        st.stop()
    return _member(email, st.user.get("name"), "OpenID Connect", marker=_sign_in_moment(st.user.get("iat")))


def _through_proxy(d: Deployment) -> User:
    headers = st.context.headers
    remote = st.context.ip_address or "127.0.0.1"  # Streamlit gives None for a loopback peer
    trusted = any(_same_address(remote, proxy) for proxy in d.trusted_proxies)
    email = headers.get(d.proxy_header) if trusted else None
    if not email:
        _door(
            f"Open this dashboard through your team's sign-in proxy ({d.public_url or 'the address your admin gave'}); "
            "requests that do not come through it are not signed in."
        )
        st.stop()
    return _member(email, None, "trusted proxy", marker=None)


def _member(email: str, name: str | None, method: str, marker: str | None) -> User:
    """The team member behind a verified email; a sign-in is recorded once per sign-in (OIDC) or
    browser session (proxy)."""
    recorded = st.session_state.get("prompter_signed_in")
    try:
        if recorded != (email, marker):
            user = identity.sign_in(email, name, method, marker=marker)
            st.session_state["prompter_signed_in"] = (email, marker)
        else:
            user = identity.member(email)
            if user is None:
                raise identity.NotAllowed(f"{email} is no longer on this dashboard's team; ask an admin to add you again.")
    except identity.NotAllowed as error:
        st.session_state.pop("prompter_signed_in", None)
        _door(str(error))
        if method == "OpenID Connect":
            st.button("Sign out", on_click=st.logout)
        st.stop()
    return user


def _sign_in_moment(issued_at) -> str | None:
    """Names one OpenID Connect sign-in (its ID token's issue time), so that more tabs of it are not
    recorded as more sign-ins."""
    if not isinstance(issued_at, (int, float)):
        return None
    return f"sign-in of {datetime.fromtimestamp(issued_at, timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _door(text: str) -> None:
    st.title("Prompter")
    st.info(text, icon=":material/lock:")


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False
