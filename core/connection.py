"""Which Label Studio the app talks to, and how it is doing.

In order: the environment (``LABEL_STUDIO_URL`` + ``LABEL_STUDIO_API_KEY``), then the connection
saved on the Keys page or with ``labelstudio set`` (its token encrypted), then the local Label
Studio that ``make run`` starts, whose token is kept beside its data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import select

from core import audit, identity, settings, store, vault
from core.checks import Check, missing_scheme
from core.labelstudio import LabelStudioClient, LabelStudioError, NotLabelStudio, Project, TokenRejected, Unreachable
from core.local_labelstudio import load_or_create_credentials


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str = field(repr=False)
    source: str  # "environment" | "saved" | "local"
    problem: str | None = None  # why it cannot be used now, if it cannot

    @property
    def masked_token(self) -> str:
        """The token's last four characters, all a page may show; nothing of a short token."""
        return f"…{self.api_key[-4:]}" if len(self.api_key) >= 12 else "(hidden)"

    def client(self) -> LabelStudioClient:
        if self.problem:
            raise LabelStudioError(f"The saved Label Studio token cannot be used: {self.problem}.")
        return LabelStudioClient(self.url, self.api_key)


class ConnectionTestFailed(ValueError):
    """A connection was tested before saving and the test failed, so nothing was saved; the message
    is the test's one sentence."""

    def __init__(self, check: Check):
        super().__init__(check.message)
        self.check = check


@dataclass(frozen=True)
class Status:
    """What the home page shows: where Label Studio is, whether it answers, and its projects."""

    url: str | None
    source: str | None
    version: str | None = None
    error: str | None = None
    projects: tuple[Project, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


NOT_CONFIGURED = (
    "No Label Studio is configured: run `make run` to start a local one, or set LABEL_STUDIO_URL "
    "and LABEL_STUDIO_API_KEY to use one you already have."
)


def current() -> Connection | None:
    conf = settings.load()
    if conf.labelstudio_url:
        return Connection(conf.labelstudio_url, conf.labelstudio_api_key or "", "environment")
    stored = saved()
    if stored is not None:
        return stored
    if (conf.local_labelstudio_dir / "credentials.json").exists():
        credentials = load_or_create_credentials(conf.local_labelstudio_dir)
        return Connection(f"http://127.0.0.1:{conf.local_labelstudio_port}", credentials.token, "local")
    return None


def client() -> LabelStudioClient:
    """A client for the current connection, or a LabelStudioError saying how to configure one."""
    connection = current()
    if connection is None:
        raise LabelStudioError(NOT_CONFIGURED)
    return connection.client()


def status() -> Status:
    connection = current()
    if connection is None:
        return Status(url=None, source=None, error=NOT_CONFIGURED)
    try:
        ls = connection.client()
        version = ls.check()
        projects = tuple(ls.projects())
    except LabelStudioError as error:
        return Status(url=connection.url, source=connection.source, error=str(error))
    return Status(url=connection.url, source=connection.source, version=version, projects=projects)


def saved() -> Connection | None:
    with store.session() as s:
        row = s.exec(select(store.LabelStudioConnection)).first()
    if row is None:
        return None
    try:
        return Connection(row.url, vault.decrypt(row.api_key_encrypted), "saved")
    except vault.SecretUnreadable as error:
        return Connection(row.url, "", "saved", problem=str(error))


def draft(url: str, api_key: str) -> Connection:
    """A connection checked for form but not saved (to test it first); ValueError names the field."""
    url = (url or "").strip().rstrip("/")
    problem = missing_scheme(url, "http://127.0.0.1:8080")
    if problem:
        raise ValueError(f"url: {problem}")
    api_key = (api_key or "").strip()
    if not api_key or any(c.isspace() for c in api_key):
        raise ValueError("api_key: is empty or has spaces; paste the token from Label Studio's Account & Settings page")
    return Connection(url, api_key, "saved")


def save(url: str, api_key: str) -> Connection:
    """Save the Label Studio URL and token (encrypted), replacing any saved before; admins only."""
    user = identity.require_role("admin", "change the Label Studio connection")
    new = draft(url, api_key)
    with store.writing() as s:
        row = s.exec(select(store.LabelStudioConnection)).first() or store.LabelStudioConnection(url=new.url, api_key_encrypted="")
        row.url = new.url
        row.api_key_encrypted = vault.encrypt(new.api_key)
        row.updated_at = store.utcnow()
        s.add(row)
    audit.record("Label Studio connection saved", target=new.url, by=user)
    return new


def test_and_save(url: str, api_key: str, *, anyway: bool = False) -> tuple[Connection, Check | None]:
    """Save the connection once it passes a test: the rule the Keys page follows. A failed test raises
    ConnectionTestFailed and saves nothing; ``anyway`` ("Save anyway") saves untested, with no check."""
    identity.require_role("admin", "change the Label Studio connection")  # before the token goes anywhere
    check = None if anyway else test(draft(url, api_key))
    if check is not None and not check.ok:
        raise ConnectionTestFailed(check)
    return save(url, api_key), check


def forget() -> None:
    user = identity.require_role("admin", "remove the Label Studio connection")
    with store.writing() as s:
        rows = s.exec(select(store.LabelStudioConnection)).all()
        for row in rows:
            s.delete(row)
    if rows:
        audit.record("Label Studio connection removed", by=user)


# -- a member's own Label Studio token ---------------------------------------------------------------


def save_own_token(api_key: str) -> Check:
    """Keep the acting member's own Label Studio token (encrypted), once Label Studio accepts it at the
    shared connection's address, so that what they do in Label Studio carries their name."""
    user = identity.require_role("member", "use their own Label Studio token")
    if user.email == identity.LOCAL_EMAIL:
        raise ValueError("In personal mode the connection is yours already; an own token is for team members.")
    shared = current()
    if shared is None:
        raise LabelStudioError(NOT_CONFIGURED)
    mine = draft(shared.url, api_key)
    check = test(mine)
    if not check.ok:
        return check
    with store.writing() as s:
        row = s.get(store.TeamMember, user.email)
        row.labelstudio_token_encrypted = vault.encrypt(mine.api_key)
        s.add(row)
    audit.record("own Label Studio token saved", by=user)
    return check


def forget_own_token() -> None:
    user = identity.require_role("member", "use their own Label Studio token")
    with store.writing() as s:
        row = s.get(store.TeamMember, user.email)
        if row is None or not row.labelstudio_token_encrypted:
            return
        row.labelstudio_token_encrypted = None
        s.add(row)
    audit.record("own Label Studio token removed", by=user)


def own_token(email: str) -> str | None:
    with store.session() as s:
        row = s.get(store.TeamMember, email)
    if row is None or not row.labelstudio_token_encrypted:
        return None
    try:
        return vault.decrypt(row.labelstudio_token_encrypted)
    except vault.SecretUnreadable:
        return None


def acting_client(shared: LabelStudioClient, user: identity.User | None = None) -> LabelStudioClient:
    """A client acting in Label Studio as the user, when they gave their own token; else ``shared``."""
    token = own_token((user or identity.current()).email)
    return LabelStudioClient(shared.url, token) if token else shared


def environment_overrides_saved() -> bool:
    return bool(settings.load().labelstudio_url) and saved() is not None


def test(connection: Connection | None = None) -> Check:
    """Check a connection (default: the current one) in one sentence."""
    connection = connection or current()
    if connection is None:
        return Check("error", NOT_CONFIGURED)
    if connection.problem:
        return Check("unreadable", f"The saved Label Studio token cannot be used: {connection.problem}.")
    try:
        ls = connection.client()
        version = ls.check()
        count = len(ls.projects())
    except TokenRejected as error:
        return Check("rejected", str(error))
    except Unreachable as error:
        return Check("unreachable", str(error))
    except NotLabelStudio as error:
        return Check("not_found", str(error))
    except LabelStudioError as error:
        return Check("error", str(error))
    return Check("ok", f"OK: Label Studio {version} at {connection.url} answered; the token sees {count} project{'s' if count != 1 else ''}.")
