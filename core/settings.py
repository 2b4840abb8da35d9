"""Settings read from the environment, with the defaults a fresh clone runs on.

Every setting is documented in the README's "Settings" table; keep the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    home: Path
    labelstudio_url: str | None
    labelstudio_api_key: str | None
    local_labelstudio_port: int
    local_labelstudio_venv: Path
    dashboard_port: int
    backend_port: int = 9090
    backend_host: str = "127.0.0.1"
    backend_public_url: str | None = None  # where Label Studio reaches the backend, when not on this machine's loopback
    batch_poll_seconds: float = 30.0  # the longest wait between two looks at a batch run's batches
    batch_max_requests: int = 50_000  # requests per batch (the provider's limit; smaller parts come back sooner)
    batch_offer_from: int = 1000  # the pages offer the Batch API for runs of at least this many tasks
    chunk_tasks: int = 250  # tasks per chunk when workers share a run (PostgreSQL store)
    worker_heartbeat_seconds: float = 5.0  # how often a worker says it is alive; silent for 4 beats, its jobs are retried

    @property
    def backend_url(self) -> str:
        return self.backend_public_url or f"http://127.0.0.1:{self.backend_port}"

    @property
    def database_path(self) -> Path:
        return self.home / "prompter.db"

    @property
    def database_url(self) -> str:
        return os.environ.get("PROMPTER_DATABASE_URL") or f"sqlite:///{self.database_path}"

    @property
    def local_labelstudio_dir(self) -> Path:
        return self.home / "labelstudio"

    @property
    def uses_external_labelstudio(self) -> bool:
        return bool(self.labelstudio_url)


def load() -> Settings:
    """Read the settings now (not at import time, so tests can change the environment)."""
    home = Path(os.environ.get("PROMPTER_HOME") or REPO_ROOT / "data").expanduser().resolve()
    return Settings(
        home=home,
        labelstudio_url=(os.environ.get("LABEL_STUDIO_URL") or "").strip().rstrip("/") or None,
        labelstudio_api_key=(os.environ.get("LABEL_STUDIO_API_KEY") or "").strip() or None,
        local_labelstudio_port=_port("PROMPTER_LABEL_STUDIO_PORT", 8080),
        local_labelstudio_venv=Path(
            os.environ.get("PROMPTER_LABEL_STUDIO_VENV") or REPO_ROOT / ".venv-labelstudio"
        ),
        dashboard_port=_port("PROMPTER_PORT", 8501),
        backend_port=_port("PROMPTER_BACKEND_PORT", 9090),
        backend_host=(os.environ.get("PROMPTER_BACKEND_HOST") or "").strip() or "127.0.0.1",
        backend_public_url=(os.environ.get("PROMPTER_BACKEND_URL") or "").strip().rstrip("/") or None,
        batch_poll_seconds=_positive("PROMPTER_BATCH_POLL_SECONDS", 30.0, float),
        batch_max_requests=_positive("PROMPTER_BATCH_MAX_REQUESTS", 50_000, int),
        batch_offer_from=_positive("PROMPTER_BATCH_OFFER_FROM", 1000, int),
        chunk_tasks=_positive("PROMPTER_CHUNK_TASKS", 250, int),
        worker_heartbeat_seconds=_positive("PROMPTER_WORKER_HEARTBEAT_SECONDS", 5.0, float),
    )


def _positive(name: str, default, kind):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name} must be a positive {'number' if kind is float else 'whole number'}, not {raw!r}.")
    return value


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{name} must be a port number between 1 and 65535, not {raw!r}.")
    return int(raw)
