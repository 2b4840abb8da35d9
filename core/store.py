"""Prompter's database: the SQLModel tables and the engine that opens them.

By default a SQLite file in ``PROMPTER_HOME`` (``./data/prompter.db``), readable by its owner only
(mode 0600, as its -wal and -shm files; see ``core.private``). SQLite runs in WAL mode with
a busy timeout, so the dashboard can read while a run's worker writes, from another thread or
process. A team may keep it in PostgreSQL instead (``PROMPTER_DATABASE_URL=postgresql+psycopg://...``):
the same tables, built by the same numbered migrations in ``core.migrations``, which run on first
connect to either.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from sqlalchemy import JSON, Column, Engine, Text, UniqueConstraint, event, text
from sqlalchemy.engine import URL, make_url
from sqlmodel import Field, Session, SQLModel, create_engine

from core import migrations, private, settings


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ProviderKey(SQLModel, table=True):
    """A model provider the user saved under a name of their choosing. Secrets are encrypted."""

    __tablename__ = "provider_keys"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    provider: str  # "openai" | "azure" | "openai-compatible"
    base_url: Optional[str] = None
    organization: Optional[str] = None
    endpoint: Optional[str] = None
    deployment: Optional[str] = None
    api_version: Optional[str] = None
    api_key_encrypted: Optional[str] = None
    extra_headers_encrypted: Optional[str] = None
    api_key_env: Optional[str] = None  # read the secret from this variable; never saved
    monthly_budget_usd: Optional[float] = None  # what runs on this key may spend in a calendar month (UTC)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class LabelStudioConnection(SQLModel, table=True):
    """The saved Label Studio URL and token (the environment's, when set, wins over this)."""

    __tablename__ = "labelstudio_connections"
    id: Optional[int] = Field(default=None, primary_key=True)
    url: str
    api_key_encrypted: str
    updated_at: datetime = Field(default_factory=utcnow)


class Prompt(SQLModel, table=True):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int
    name: str
    created_at: datetime = Field(default_factory=utcnow)
    archived_at: Optional[datetime] = None  # hidden from the pickers; its versions and runs are kept


class PromptVersion(SQLModel, table=True):
    """One immutable, numbered version of a prompt."""

    __tablename__ = "prompt_versions"
    __table_args__ = (UniqueConstraint("prompt_id", "number"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompts.id", ondelete="CASCADE")
    number: int
    template: str = Field(sa_type=Text)
    system_message: Optional[str] = Field(default=None, sa_type=Text)
    controls: list[str] = Field(sa_column=Column(JSON, nullable=False))
    provider_key: str
    model: str
    temperature: float = 0.0
    max_output_tokens: Optional[int] = None
    note: Optional[str] = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow)
    examples: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON))  # few-shot examples (core.fewshot)
    samples: Optional[int] = None  # confidence by the agreement of this many samples; None: from log-probabilities


class Run(SQLModel, table=True):
    """One prompt version over a set of tasks: an evaluation or a prediction run."""

    __tablename__ = "runs"
    id: Optional[int] = Field(default=None, primary_key=True)
    prompt_version_id: int = Field(foreign_key="prompt_versions.id", ondelete="CASCADE", index=True)
    kind: str  # "evaluate" | "predict" | "backend" (answers the ML backend gave Label Studio)
    subset: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = "pending"  # pending | running | completed | failed | cancelled | stopped (spending limit)
    status_reason: Optional[str] = Field(default=None, sa_type=Text)
    total: int = 0
    done: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Optional[float] = None
    concurrency: int = 16
    max_cost_usd: Optional[float] = None
    worker_pid: Optional[int] = None
    worker: Optional[str] = None  # "host:pid:process start", so a gone worker is told from a live one
    heartbeat_at: Optional[datetime] = None
    label_config: Optional[str] = Field(default=None, sa_type=Text)  # as scored, even if the project changes later
    cancel_requested: bool = False
    cache: str = "auto"  # auto (reuse answers at temperature 0) | reuse (always) | fresh (never)
    cached: int = 0  # answers taken from earlier identical calls
    started_by: Optional[str] = None  # the email of who started it ("local" in personal mode)
    # A variant run tries the version with some settings changed (another model, a candidate prompt):
    # scored like any evaluation, never written to Label Studio, never "the version's" figure.
    variant: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    mode: str = "live"  # live (calls as it goes) | batch (the provider's Batch API; see core.batch_runs)
    reserved_usd: float = 0.0  # what calls in flight hold against the limits, when workers share the run (core.chunks)


class RunChunk(SQLModel, table=True):
    """A few hundred of a run's tasks, worked by one worker at a time (core.chunks), when a
    PostgreSQL store spreads runs over workers."""

    __tablename__ = "run_chunks"
    __table_args__ = (UniqueConstraint("run_id", "number"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE", index=True)
    number: int
    task_ids: list[int] = Field(sa_column=Column(JSON, nullable=False))
    status: str = "waiting"  # waiting (for a worker) | working | done
    job_id: Optional[int] = None  # the Procrastinate job that works it
    worker: Optional[str] = None
    heartbeat_at: Optional[datetime] = None
    reserved_usd: float = 0.0  # this chunk's share of the run's reserved_usd
    outcome: Optional[str] = Field(default=None, sa_type=Text)  # why it stopped before its last task
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


class RunBatch(SQLModel, table=True):
    """One part of a batch run: its tasks, the file and batch the provider holds them in, and how far
    it got. The row is written before anything is sent, and each id as soon as the provider gives it,
    so a worker that dies at any point leaves what the next one needs to follow, not resend."""

    __tablename__ = "run_batches"
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE", index=True)
    task_ids: list[int] = Field(sa_column=Column(JSON, nullable=False))
    status: str  # "preparing" until submitted, then the provider's: validating ... completed | failed | expired | cancelled
    input_file_id: Optional[str] = None
    batch_id: Optional[str] = Field(default=None, unique=True)
    requests: int = 0
    answered: int = 0  # requests the provider reports done (completed or failed)
    reserved_usd: float = 0.0  # its calls' estimated cost, held against the limits until its answers are in
    collected: bool = False  # its answers (or reasons) are stored as items
    error: Optional[str] = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow)
    ended_at: Optional[datetime] = None


class Optimization(SQLModel, table=True):
    """An Optimize search (on gepa) from one version: its budget, what it spent, what it kept."""

    __tablename__ = "optimizations"
    id: Optional[int] = Field(default=None, primary_key=True)
    prompt_version_id: int = Field(foreign_key="prompt_versions.id", ondelete="CASCADE", index=True)  # the seed
    status: str = "pending"  # pending | running | completed | failed | cancelled | stopped
    status_reason: Optional[str] = Field(default=None, sa_type=Text)
    reflection_key: str
    reflection_model: str
    max_calls: int
    max_cost_usd: Optional[float] = None
    concurrency: int = 16
    seed: int = 0
    label_config: Optional[str] = Field(default=None, sa_type=Text)
    reflection_calls: int = 0
    reflection_cost_usd: Optional[float] = None
    candidates: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # kept, with lineage
    best_version_id: Optional[int] = None
    seed_test_run_id: Optional[int] = None
    best_test_run_id: Optional[int] = None
    cancel_requested: bool = False
    worker: Optional[str] = None
    heartbeat_at: Optional[datetime] = None
    started_by: Optional[str] = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None


class Embedding(SQLModel, table=True):
    """A text's embedding by one model, kept so the same text is never embedded (nor paid) twice and
    a re-run ranks few-shot examples exactly as before."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("provider_key", "model", "text_hash"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    provider_key: str
    model: str
    text_hash: str  # sha256 of the text
    vector: list[float] = Field(sa_column=Column(JSON, nullable=False))
    tokens: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class RunItem(SQLModel, table=True):
    """One task's call within a run: what was sent (by hash), what came back, and what it cost."""

    __tablename__ = "run_items"
    __table_args__ = (UniqueConstraint("run_id", "task_id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE")
    task_id: int
    status: str  # "ok" | "failed"
    call_hash: str = Field(index=True)  # provider, model, parameters, messages and schema
    messages_hash: str
    raw_output: Optional[str] = Field(default=None, sa_type=Text)
    parsed: Optional[Any] = Field(default=None, sa_column=Column(JSON))
    regions: Optional[Any] = Field(default=None, sa_column=Column(JSON))
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    cached_input_tokens: Optional[int] = None  # of input_tokens, those the provider's prompt cache served
    cost_usd: Optional[float] = None
    latency_ms: Optional[float] = None
    score: Optional[float] = None  # the answer's confidence (the lowest of its outputs'), None when unmeasured
    confidences: Optional[dict[str, float]] = Field(default=None, sa_column=Column(JSON))  # per output
    samples: Optional[list[str]] = Field(default=None, sa_column=Column(JSON))  # the raw answers voted on (agreement)
    error: Optional[str] = Field(default=None, sa_type=Text)
    error_kind: Optional[str] = None  # a key of core.failures.KINDS
    from_cache: bool = False
    written_to_labelstudio: bool = False
    ground_truth: Optional[Any] = Field(default=None, sa_column=Column(JSON))  # the task's, when it ran
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Publication(SQLModel, table=True):
    """The version a Label Studio project is served by through Prompter's ML backend, and the
    basic-auth credentials Label Studio was given for it (the password only as its SHA-256: it is a
    long random token, so its hash cannot be guessed back)."""

    __tablename__ = "publications"
    project_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    prompt_version_id: int = Field(foreign_key="prompt_versions.id", ondelete="CASCADE")
    url: str  # where Label Studio reaches the backend
    interactive: bool = False
    instruction: str = "prompt"  # the TextArea an annotator types an instruction into
    concurrency: int = 16
    max_cost_usd: Optional[float] = None  # the spending limit of everything served for this project
    username: str
    password_hash: str
    ml_backend_id: Optional[int] = None  # Label Studio's id of the connection
    published_by: Optional[str] = None
    published_at: datetime = Field(default_factory=utcnow)


class Instruction(SQLModel, table=True):
    """An instruction an annotator typed into a task and saved with the annotation."""

    __tablename__ = "instructions"
    __table_args__ = (UniqueConstraint("annotation_id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(index=True)
    task_id: int
    annotation_id: int
    text: str = Field(sa_type=Text)
    annotator: Optional[str] = None  # the annotator's email, as Label Studio names them
    prompt_version_id: Optional[int] = Field(default=None, foreign_key="prompt_versions.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)


class RecentChoice(SQLModel, table=True):
    """What was last worked on (a project, a prompt, a key), so a page starts there and not at the
    first item of a list."""

    __tablename__ = "recent_choices"
    name: str = Field(primary_key=True)
    value: Optional[Any] = Field(default=None, sa_column=Column(JSON))
    updated_at: datetime = Field(default_factory=utcnow)


class ModelPrice(SQLModel, table=True):
    """A price the team set for a model, in USD per million tokens (over the built-in list prices)."""

    __tablename__ = "model_prices"
    model: str = Field(primary_key=True)
    input_per_million: float
    output_per_million: float
    batch_input_per_million: Optional[float] = None  # for Batch API calls; none: the price above
    batch_output_per_million: Optional[float] = None
    updated_at: datetime = Field(default_factory=utcnow)


class TeamMember(SQLModel, table=True):
    """Someone who may use the dashboard, and what they may do."""

    __tablename__ = "team_members"
    email: str = Field(primary_key=True)  # lower case
    name: Optional[str] = None
    role: str  # "viewer" | "member" | "admin"
    monthly_budget_usd: Optional[float] = None  # what their runs may spend in a calendar month (UTC)
    labelstudio_token_encrypted: Optional[str] = None  # their own Label Studio token, when they gave one
    added_by: Optional[str] = None
    added_at: datetime = Field(default_factory=utcnow)
    last_seen_at: Optional[datetime] = None


class GroundTruthSplit(SQLModel, table=True):
    """A project's ground-truth tasks in three parts: examples, development and test (see
    core.evaluation.split)."""

    __tablename__ = "ground_truth_splits"
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(unique=True)
    seed: int
    test_share: float
    stratified_by: Optional[str] = None
    parts: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # part -> task ids
    created_by: Optional[str] = None
    created_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Who did what, and when. Rows are only ever added (triggers refuse updates and deletes)."""

    __tablename__ = "audit_events"
    id: Optional[int] = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    action: str
    target: Optional[str] = None
    detail: Optional[Any] = Field(default=None, sa_column=Column(JSON))


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: the configured database), created and migrated once."""
    url = url or settings.load().database_url
    with _engines_lock:
        if url not in _engines:
            _engines[url] = _open(url)
        return _engines[url]


def _open(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in migrations.DIALECTS:
        raise RuntimeError(
            f"PROMPTER_DATABASE_URL names a {backend} database ({shown(parsed)}); Prompter keeps its data in SQLite "
            "(the default) or PostgreSQL (postgresql+psycopg://user:password@host/database)."
        )
    is_sqlite = backend == "sqlite"
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        _private_database_file(Path(parsed.database))
    if is_sqlite:
        new = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        _use_sqlite_pragmas(new)
    else:
        if parsed.drivername == "postgresql":  # SQLAlchemy's default driver for it is psycopg2; Prompter ships psycopg 3
            parsed = parsed.set(drivername="postgresql+psycopg")
        # READ COMMITTED (whatever the server's default): `writing` reads after its lock what was committed before it
        new = create_engine(parsed, pool_pre_ping=True, isolation_level="READ COMMITTED")  # pre-ping: a server may restart under a dashboard
        _use_postgresql_settings(new)
    with new.begin() as connection:
        migrations.upgrade(connection)
    return new


def shown(url: str | URL) -> str:
    """The database URL as it may be shown or logged: its password masked."""
    return make_url(url).render_as_string(hide_password=True)


def _private_database_file(path: Path) -> None:
    """Make the database file 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
    database file's mode), and tighten any of the three found looser. A folder Prompter makes for it is
    0700; an existing folder is tightened only when it is PROMPTER_HOME."""
    home = settings.load().home
    if path.resolve().parent == home:
        private.in_home()
    else:
        private.folder(path.parent, tighten_existing=False)
    private.file(path)
    for companion in ("-wal", "-shm", "-journal"):
        private.tighten(path.with_name(path.name + companion))


def _use_sqlite_pragmas(new: Engine) -> None:
    # pysqlite's own transaction handling skips BEGIN before DDL, which would make a failed
    # migration half-applied; take over BEGIN ourselves (SQLAlchemy's documented recipe).
    @event.listens_for(new, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(new, "begin")
    def _on_begin(connection):
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


# The advisory lock ``writing`` takes on PostgreSQL (core.migrations.MIGRATION_LOCK is 1).
WRITE_LOCK = 0x70726F6D02  # "prom", 2
LOCK_TIMEOUT = "30s"  # as SQLite's busy timeout: a lock awaited longer fails rather than hangs


def _use_postgresql_settings(new: Engine) -> None:
    # The columns hold moments (TIMESTAMP WITH TIME ZONE), written and read as aware datetimes in UTC
    # whatever the session's zone; a session in UTC also reads a bare literal ('2026-01-01 00:00') as
    # UTC, as SQLite does, and shows UTC to whoever looks with psql.
    @event.listens_for(new, "connect")
    def _on_connect(dbapi_connection, _record):
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET TIME ZONE 'UTC'; SET lock_timeout = '{LOCK_TIMEOUT}'")
        dbapi_connection.autocommit = autocommit


@contextmanager
def session(url: str | None = None) -> Iterator[Session]:
    """A session for reading, or for writes that do not read first."""
    with Session(engine(url), expire_on_commit=False) as s:
        yield s


@contextmanager
def writing(url: str | None = None) -> Iterator[Session]:
    """A session that takes the write lock up front and commits at the end.

    Use it for read-then-write changes: a deferred transaction that reads and then writes can fail
    at once when another process wrote in between, where this one waits its turn instead. On SQLite
    the lock is the database's (BEGIN IMMEDIATE); on PostgreSQL, whose transactions would both read
    and then both write, it is an advisory lock every ``writing`` takes, held until the commit: what
    one read is still true when it writes, as on SQLite.
    """
    bind = engine(url).execution_options(sqlite_begin="IMMEDIATE")
    with Session(bind, expire_on_commit=False) as s:
        with s.begin():
            if bind.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
            yield s


def schema_version(url: str | None = None) -> int:
    with engine(url).begin() as connection:
        return migrations.current_version(connection)


def forget_engines() -> None:
    """Dispose every open engine (tests point PROMPTER_HOME somewhere new between cases)."""
    with _engines_lock:
        for open_engine in _engines.values():
            open_engine.dispose()
        _engines.clear()
