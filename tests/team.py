"""What the team tests share: a deployment configured only by what each test sets, and people to act as."""

from __future__ import annotations

import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from core import identity, settings, store

DEPLOYMENT_VARIABLES = (
    "PROMPTER_ADDRESS",
    "PROMPTER_PORT",
    "PROMPTER_MODE",
    "PROMPTER_PUBLIC_URL",
    "PROMPTER_TRUSTED_PROXY",
    "PROMPTER_PROXY_HEADER",
    "PROMPTER_ADMINS",
    "PROMPTER_ALLOWED_DOMAINS",
    "PROMPTER_AS",
)


@pytest.fixture(autouse=True)
def plain_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Personal mode, whatever the outer environment says: none of the deployment variables, and a
    secrets file that does not exist (a test writes it to configure OpenID Connect)."""
    for name in DEPLOYMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    secrets = tmp_path / "secrets.toml"
    monkeypatch.setenv("PROMPTER_SECRETS_FILE", str(secrets))
    return secrets


def team_mode(monkeypatch: pytest.MonkeyPatch, admins: str = "boss@x.com") -> None:
    """A team deployment signed in by a proxy on this machine (the simplest valid team configuration)."""
    monkeypatch.setenv("PROMPTER_TRUSTED_PROXY", "127.0.0.1")
    monkeypatch.setenv("PROMPTER_ADMINS", admins)


def join(email: str, role: str, name: str | None = None) -> identity.User:
    """Put someone on the team, as the local admin of personal mode."""
    with identity.acting_as(identity.local_admin()):
        return identity.add(email, role, name)


@contextmanager
def acting(email: str) -> Iterator[identity.User]:
    """Act as a team member, with the role the team table gives them."""
    user = identity.member(email)
    assert user is not None, f"{email} is not on the team"
    with identity.acting_as(user):
        yield user


def database() -> dict[str, list[tuple]]:
    """Every row of every table, read with sqlite3 (not through core): what "changes nothing" compares."""
    store.engine()  # created and migrated, as core would have it
    with closing(sqlite3.connect(settings.load().database_path)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {table: db.execute(f'SELECT * FROM "{table}"').fetchall() for table in tables}
