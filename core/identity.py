"""Who is acting: the signed-in user of a page, the ``--as`` user of the CLI, or the local admin.

Every rule in ``core`` is checked against ``current()``. The dashboard registers a resolver that
reads the session's signed-in user; the CLI and tests set the user with ``acting_as``. In personal
mode, with neither, the person at the keyboard is the local admin; in team mode nobody is, and
acting without a user is refused.
"""

from __future__ import annotations

import getpass
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

from sqlmodel import select

from core import audit, deployment, store

ROLES = ("viewer", "member", "admin")  # each may do what the ones before it may
ROLE_DUTIES = {
    "viewer": "reads every figure and chart; changes nothing",
    "member": "writes prompts, runs evaluations and predictions within the budgets",
    "admin": "also manages keys, prices, the Label Studio connection, the team and budgets",
}
LOCAL_EMAIL = "local"


class NotSignedIn(ValueError):
    """Nobody is signed in where somebody must be."""


class NotAllowed(ValueError):
    """The acting user's role does not allow the action; the message says who may."""


@dataclass(frozen=True)
class User:
    email: str
    name: str | None
    role: str

    @property
    def label(self) -> str:
        if self.email == LOCAL_EMAIL:
            return f"{self.name} (local admin)" if self.name else "the local admin"
        return f"{self.name} <{self.email}>" if self.name and self.name != self.email else self.email

    def may(self, role: str) -> bool:
        """Whether this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


_acting: ContextVar[User | None] = ContextVar("prompter_acting_user", default=None)
_resolver: Callable[[], User | None] | None = None


def local_admin() -> User:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = None
    return User(LOCAL_EMAIL, name, "admin")


def current() -> User:
    """The user acting now; NotSignedIn when nobody is and team mode requires somebody."""
    user = _acting.get()
    if user is not None:
        return user
    if _resolver is not None:
        user = _resolver()
        if user is not None:
            return user
    if deployment.load().personal:
        return local_admin()
    raise NotSignedIn("Nobody is signed in: this Prompter is shared by a team, so sign in first (from the CLI: --as EMAIL, or PROMPTER_AS).")


@contextmanager
def acting_as(user: User) -> Iterator[User]:
    token = _acting.set(user)
    try:
        yield user
    finally:
        _acting.reset(token)


def use_resolver(resolver: Callable[[], User | None] | None) -> None:
    """Where ``current()`` finds the user when none is set here: the dashboard's session."""
    global _resolver
    _resolver = resolver


# -- the team ---------------------------------------------------------------------------------------


def sign_in(email: str, name: str | None, method: str, *, marker: str | None = None) -> User:
    """The team member behind a verified email, recorded as signed in; NotAllowed when they are not
    on the team. PROMPTER_ADMINS are made admins the first time; PROMPTER_ALLOWED_DOMAINS let anyone
    with an email there in, as a viewer. ``marker`` names one sign-in (e.g. the identity token's
    time), so that opening another tab of the same sign-in records nothing new."""
    email = _email(email)
    conf = deployment.load()
    with store.writing() as s:
        row = s.get(store.TeamMember, email)
        if row is None:
            role = "admin" if email in conf.admins else "viewer" if email.rsplit("@", 1)[-1] in conf.allowed_domains else None
            if role is None:
                raise NotAllowed(f"{email} is not on this dashboard's team; ask an admin to add you on the Team page.")
            row = store.TeamMember(email=email, name=name, role=role, added_by="sign-in")
        row.name = name or row.name
        row.last_seen_at = store.utcnow()
        s.add(row)
        user = User(row.email, row.name, row.role)
    if marker is None or not audit.events(actor=user.email, action="signed in", target=marker, limit=1):
        audit.record("signed in", target=marker, by=user, detail={"method": method})
    return user


def member(email: str) -> User | None:
    with store.session() as s:
        row = s.get(store.TeamMember, _email(email))
    return User(row.email, row.name, row.role) if row else None


def for_cli(email: str) -> User:
    """The team member the CLI acts as (``--as EMAIL``); without --as, ``current()`` is the local admin
    in personal mode and nobody in team mode."""
    found = member(email)
    if found is None:
        raise NotAllowed(f"{email} is not on the team; an admin adds them with `team add {email} --role member`.")
    return found


@dataclass(frozen=True)
class Member:
    email: str
    name: str | None
    role: str
    monthly_budget_usd: float | None
    has_labelstudio_token: bool
    added_by: str | None
    added_at: datetime
    last_seen_at: datetime | None


def team() -> list[Member]:
    with store.session() as s:
        rows = s.exec(select(store.TeamMember).order_by(store.TeamMember.email)).all()
    return [
        Member(r.email, r.name, r.role, r.monthly_budget_usd, bool(r.labelstudio_token_encrypted), r.added_by, r.added_at, r.last_seen_at)
        for r in rows
    ]


def add(email: str, role: str, name: str | None = None) -> User:
    """Put someone on the team (admins only)."""
    by = require_role("admin", "add people to the team")
    email, role = _email(email), _role(role)
    with store.writing() as s:
        if s.get(store.TeamMember, email) is not None:
            raise ValueError(f"{email} is already on the team; change their role instead.")
        s.add(store.TeamMember(email=email, name=name, role=role, added_by=by.email))
    audit.record("member added", target=email, by=by, detail={"role": role})
    return User(email, name, role)


def set_role(email: str, role: str) -> User:
    """Change a member's role (admins only); the last admin cannot step down."""
    by = require_role("admin", "change roles")
    email, role = _email(email), _role(role)
    with store.writing() as s:
        row = _row(s, email)
        before = row.role
        if before == role:
            return User(row.email, row.name, row.role)
        if before == "admin" and _admins(s) == 1:
            raise ValueError(f"{email} is the last admin; make someone else an admin first.")
        row.role = role
        s.add(row)
        user = User(row.email, row.name, row.role)
    audit.record("role changed", target=email, by=by, detail={"from": before, "to": role})
    return user


def remove(email: str) -> None:
    """Take someone off the team (admins only); their runs and audit rows are kept."""
    by = require_role("admin", "remove people from the team")
    email = _email(email)
    with store.writing() as s:
        row = _row(s, email)
        if row.role == "admin" and _admins(s) == 1:
            raise ValueError(f"{email} is the last admin; make someone else an admin first.")
        s.delete(row)
    audit.record("member removed", target=email, by=by)


def require_role(role: str, action: str) -> User:
    """The acting user, when their role allows ``action``; NotAllowed otherwise."""
    user = current()
    if not user.may(role):
        raise NotAllowed(
            f"{user.label} is a {user.role}, and only {'an admin' if role == 'admin' else 'a member or an admin'} may {action}; "
            "ask an admin (Team page) to change your role."
        )
    return user


def _row(s, email: str) -> store.TeamMember:
    row = s.get(store.TeamMember, email)
    if row is None:
        raise ValueError(f"{email} is not on the team; the Team page lists who is.")
    return row


def _admins(s) -> int:
    return len(s.exec(select(store.TeamMember).where(store.TeamMember.role == "admin")).all())


def _email(email: str) -> str:
    email = (email or "").strip().lower()
    if email == LOCAL_EMAIL or "@" not in email or email.startswith("@") or email.endswith("@"):
        raise ValueError(f"{email!r} is not an email address; give one like ana@example.com.")
    return email


def _role(role: str) -> str:
    role = (role or "").strip().lower()
    if role not in ROLES:
        raise ValueError(f"{role!r} is not a role; give one of {', '.join(ROLES)}.")
    return role
