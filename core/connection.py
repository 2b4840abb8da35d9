"""Which Label Studio the app talks to, and how it is doing.

The environment (``LABEL_STUDIO_URL`` + ``LABEL_STUDIO_API_KEY``) wins; without it, the local Label
Studio that ``make run`` starts, whose token is kept beside its data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import settings
from core.labelstudio import LabelStudioClient, LabelStudioError, Project
from core.local_labelstudio import load_or_create_credentials


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str = field(repr=False)
    source: str  # "environment" | "local"

    def client(self) -> LabelStudioClient:
        return LabelStudioClient(self.url, self.api_key)


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
