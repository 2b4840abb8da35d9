"""Append-only, numbered schema migrations for Prompter's database.

Each migration is a list of SQL statements applied in one transaction, and its number is recorded in
``schema_migrations``. Never edit a migration that has shipped: add the next number instead. The
SQLModel tables in ``core.store`` describe the schema after the last migration, and a test checks
that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "keys, Label Studio connection, prompts and their versions",
        (
            """
            CREATE TABLE provider_keys (
                id INTEGER NOT NULL PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                provider VARCHAR NOT NULL,
                base_url VARCHAR,
                organization VARCHAR,
                endpoint VARCHAR,
                deployment VARCHAR,
                api_version VARCHAR,
                api_key_encrypted VARCHAR,
                extra_headers_encrypted VARCHAR,
                created_at DATETIME NOT NULL,
                updated_at DATETIME NOT NULL
            )
            """,
            """
            CREATE TABLE labelstudio_connections (
                id INTEGER NOT NULL PRIMARY KEY,
                url VARCHAR NOT NULL,
                api_key_encrypted VARCHAR NOT NULL,
                updated_at DATETIME NOT NULL
            )
            """,
            """
            CREATE TABLE prompts (
                id INTEGER NOT NULL PRIMARY KEY,
                project_id INTEGER NOT NULL,
                name VARCHAR NOT NULL,
                created_at DATETIME NOT NULL,
                UNIQUE (project_id, name)
            )
            """,
            """
            CREATE TABLE prompt_versions (
                id INTEGER NOT NULL PRIMARY KEY,
                prompt_id INTEGER NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
                number INTEGER NOT NULL,
                template TEXT NOT NULL,
                system_message TEXT,
                controls JSON NOT NULL,
                provider_key VARCHAR NOT NULL,
                model VARCHAR NOT NULL,
                temperature FLOAT NOT NULL,
                max_output_tokens INTEGER,
                note TEXT,
                created_at DATETIME NOT NULL,
                UNIQUE (prompt_id, number)
            )
            """,
        ),
    ),
    Migration(
        2,
        "runs and their items",
        (
            """
            CREATE TABLE runs (
                id INTEGER NOT NULL PRIMARY KEY,
                prompt_version_id INTEGER NOT NULL REFERENCES prompt_versions (id) ON DELETE CASCADE,
                kind VARCHAR NOT NULL,
                subset JSON NOT NULL,
                status VARCHAR NOT NULL,
                status_reason TEXT,
                total INTEGER NOT NULL,
                done INTEGER NOT NULL,
                failed INTEGER NOT NULL,
                input_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL,
                cost_usd FLOAT,
                concurrency INTEGER NOT NULL,
                max_cost_usd FLOAT,
                worker_pid INTEGER,
                heartbeat_at DATETIME,
                created_at DATETIME NOT NULL,
                started_at DATETIME,
                finished_at DATETIME
            )
            """,
            "CREATE INDEX ix_runs_prompt_version_id ON runs (prompt_version_id)",
            """
            CREATE TABLE run_items (
                id INTEGER NOT NULL PRIMARY KEY,
                run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                task_id INTEGER NOT NULL,
                status VARCHAR NOT NULL,
                call_hash VARCHAR NOT NULL,
                messages_hash VARCHAR NOT NULL,
                raw_output TEXT,
                parsed JSON,
                regions JSON,
                input_tokens INTEGER,
                output_tokens INTEGER,
                cost_usd FLOAT,
                latency_ms FLOAT,
                score FLOAT,
                error TEXT,
                from_cache BOOLEAN NOT NULL,
                written_to_labelstudio BOOLEAN NOT NULL,
                created_at DATETIME NOT NULL,
                UNIQUE (run_id, task_id)
            )
            """,
            "CREATE INDEX ix_run_items_call_hash ON run_items (call_hash)",
        ),
    ),
    Migration(
        3,
        "a saved key may read its secret from an environment variable",
        ("ALTER TABLE provider_keys ADD COLUMN api_key_env VARCHAR",),
    ),
    Migration(
        4,
        "a saved prompt version cannot change",
        (
            """
            CREATE TRIGGER prompt_versions_are_immutable BEFORE UPDATE ON prompt_versions
            BEGIN
                SELECT RAISE(ABORT, 'a saved prompt version cannot change; save a new version instead');
            END
            """,
        ),
    ),
    Migration(
        5,
        "runs keep the label config they scored against and a cancel request; items keep their ground truth",
        (
            "ALTER TABLE runs ADD COLUMN label_config TEXT",
            "ALTER TABLE runs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT 0",
            "ALTER TABLE run_items ADD COLUMN ground_truth JSON",
        ),
    ),
    Migration(
        6,
        "model prices the team sets, over the built-in list prices",
        (
            """
            CREATE TABLE model_prices (
                model VARCHAR NOT NULL PRIMARY KEY,
                input_per_million FLOAT NOT NULL,
                output_per_million FLOAT NOT NULL,
                updated_at DATETIME NOT NULL
            )
            """,
        ),
    ),
    Migration(
        7,
        "runs name their worker (host, process and its start), keep their cache policy and count cached answers",
        (
            "ALTER TABLE runs ADD COLUMN worker VARCHAR",
            "ALTER TABLE runs ADD COLUMN cache VARCHAR NOT NULL DEFAULT 'auto'",
            "ALTER TABLE runs ADD COLUMN cached INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        8,
        "a failed item keeps the kind of its failure",
        ("ALTER TABLE run_items ADD COLUMN error_kind VARCHAR",),
    ),
    Migration(
        9,
        "the project, prompt and key last worked on, for the pages to start from",
        (
            """
            CREATE TABLE recent_choices (
                name VARCHAR NOT NULL PRIMARY KEY,
                value JSON,
                updated_at DATETIME NOT NULL
            )
            """,
        ),
    ),
    Migration(
        10,
        "a prompt can be archived: hidden from the pickers, kept for the record",
        ("ALTER TABLE prompts ADD COLUMN archived_at DATETIME",),
    ),
    Migration(
        11,
        "a team: members with roles, an append-only audit trail, monthly budgets, who started each run",
        (
            """
            CREATE TABLE team_members (
                email VARCHAR NOT NULL PRIMARY KEY,
                name VARCHAR,
                role VARCHAR NOT NULL,
                monthly_budget_usd FLOAT,
                labelstudio_token_encrypted VARCHAR,
                added_by VARCHAR,
                added_at DATETIME NOT NULL,
                last_seen_at DATETIME
            )
            """,
            """
            CREATE TABLE audit_events (
                id INTEGER NOT NULL PRIMARY KEY,
                at DATETIME NOT NULL,
                actor VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                target VARCHAR,
                detail JSON
            )
            """,
            "CREATE INDEX ix_audit_events_at ON audit_events (at)",
            # Append-only in the database itself, not only by the code's good manners
            """
            CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
            """,
            """
            CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
            """,
            "ALTER TABLE provider_keys ADD COLUMN monthly_budget_usd FLOAT",
            "ALTER TABLE runs ADD COLUMN started_by VARCHAR",
            "CREATE INDEX ix_run_items_created_at ON run_items (created_at)",
        ),
    ),
    Migration(
        12,
        "a project's ground truth split into examples, development and test parts",
        (
            """
            CREATE TABLE ground_truth_splits (
                id INTEGER NOT NULL PRIMARY KEY,
                project_id INTEGER NOT NULL UNIQUE,
                seed INTEGER NOT NULL,
                test_share FLOAT NOT NULL,
                stratified_by VARCHAR,
                parts JSON NOT NULL,
                created_by VARCHAR,
                created_at DATETIME NOT NULL
            )
            """,
        ),
    ),
    Migration(
        13,
        "a version may show few-shot examples from the ground truth",
        ("ALTER TABLE prompt_versions ADD COLUMN examples JSON",),
    ),
    Migration(
        14,
        "a run may try a version with some settings changed (a model matrix, an Optimize candidate)",
        ("ALTER TABLE runs ADD COLUMN variant JSON",),
    ),
    Migration(
        15,
        "Optimize: a search over prompts from a version, with its budget and the candidates it kept",
        (
            """
            CREATE TABLE optimizations (
                id INTEGER NOT NULL PRIMARY KEY,
                prompt_version_id INTEGER NOT NULL REFERENCES prompt_versions (id) ON DELETE CASCADE,
                status VARCHAR NOT NULL,
                status_reason TEXT,
                reflection_key VARCHAR NOT NULL,
                reflection_model VARCHAR NOT NULL,
                max_calls INTEGER NOT NULL,
                max_cost_usd FLOAT,
                concurrency INTEGER NOT NULL,
                seed INTEGER NOT NULL,
                label_config TEXT,
                reflection_calls INTEGER NOT NULL,
                reflection_cost_usd FLOAT,
                candidates JSON NOT NULL,
                best_version_id INTEGER,
                seed_test_run_id INTEGER,
                best_test_run_id INTEGER,
                cancel_requested BOOLEAN NOT NULL,
                worker VARCHAR,
                heartbeat_at DATETIME,
                started_by VARCHAR,
                created_at DATETIME NOT NULL,
                started_at DATETIME,
                finished_at DATETIME
            )
            """,
            "CREATE INDEX ix_optimizations_prompt_version_id ON optimizations (prompt_version_id)",
        ),
    ),
    Migration(
        16,
        "embeddings of task texts, for few-shot examples chosen by an embeddings model",
        (
            """
            CREATE TABLE embeddings (
                id INTEGER NOT NULL PRIMARY KEY,
                provider_key VARCHAR NOT NULL,
                model VARCHAR NOT NULL,
                text_hash VARCHAR NOT NULL,
                vector JSON NOT NULL,
                tokens INTEGER NOT NULL,
                created_at DATETIME NOT NULL,
                UNIQUE (provider_key, model, text_hash)
            )
            """,
        ),
    ),
    Migration(
        17,
        "confidence: a version may measure it by the agreement of n samples; each answer keeps its confidence per output",
        (
            "ALTER TABLE prompt_versions ADD COLUMN samples INTEGER",
            "ALTER TABLE run_items ADD COLUMN confidences JSON",
            "ALTER TABLE run_items ADD COLUMN samples JSON",
        ),
    ),
    Migration(
        18,
        "the ML backend: the version each Label Studio project is served by, and the instructions annotators typed",
        (
            """
            CREATE TABLE publications (
                project_id INTEGER NOT NULL PRIMARY KEY,
                prompt_version_id INTEGER NOT NULL REFERENCES prompt_versions (id) ON DELETE CASCADE,
                url VARCHAR NOT NULL,
                interactive BOOLEAN NOT NULL,
                instruction VARCHAR NOT NULL,
                concurrency INTEGER NOT NULL,
                max_cost_usd FLOAT,
                username VARCHAR NOT NULL,
                password_hash VARCHAR NOT NULL,
                ml_backend_id INTEGER,
                published_by VARCHAR,
                published_at DATETIME NOT NULL
            )
            """,
            """
            CREATE TABLE instructions (
                id INTEGER NOT NULL PRIMARY KEY,
                project_id INTEGER NOT NULL,
                task_id INTEGER NOT NULL,
                annotation_id INTEGER NOT NULL,
                text TEXT NOT NULL,
                annotator VARCHAR,
                prompt_version_id INTEGER REFERENCES prompt_versions (id) ON DELETE SET NULL,
                created_at DATETIME NOT NULL,
                UNIQUE (annotation_id)
            )
            """,
            "CREATE INDEX ix_instructions_project_id ON instructions (project_id)",
        ),
    ),
    Migration(
        19,
        "input tokens served from the provider's prompt cache, priced as such",
        ("ALTER TABLE run_items ADD COLUMN cached_input_tokens INTEGER",),
    ),
    Migration(
        20,
        "batch runs: a run sent through the provider's Batch API, and each of its parts' batch",
        (
            "ALTER TABLE runs ADD COLUMN mode VARCHAR NOT NULL DEFAULT 'live'",
            """
            CREATE TABLE run_batches (
                id INTEGER NOT NULL PRIMARY KEY,
                run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                task_ids JSON NOT NULL,
                status VARCHAR NOT NULL,
                input_file_id VARCHAR,
                batch_id VARCHAR UNIQUE,
                requests INTEGER NOT NULL,
                answered INTEGER NOT NULL,
                reserved_usd FLOAT NOT NULL,
                collected BOOLEAN NOT NULL,
                error TEXT,
                created_at DATETIME NOT NULL,
                ended_at DATETIME
            )
            """,
            "CREATE INDEX ix_run_batches_run_id ON run_batches (run_id)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(connection: Connection) -> int:
    connection.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at DATETIME NOT NULL)"
    )
    found = connection.exec_driver_sql("SELECT MAX(version) FROM schema_migrations").scalar()
    return int(found or 0)


def upgrade(connection: Connection, target: int | None = None) -> list[int]:
    """Apply every migration above the database's version up to ``target`` (default: the last);
    return the versions applied.

    The caller owns the transaction, so a failing migration leaves the database as it was.
    """
    latest = MIGRATIONS[-1].version
    target = latest if target is None else target
    start = current_version(connection)
    if start > latest:
        raise RuntimeError(
            f"The database is at schema version {start}, newer than this Prompter ({latest}). "
            "Update Prompter, or point PROMPTER_HOME at another folder."
        )
    applied = []
    for migration in MIGRATIONS:
        if start < migration.version <= target:
            for statement in migration.statements:
                connection.exec_driver_sql(statement)
            connection.execute(
                text(
                    "INSERT INTO schema_migrations (version, name, applied_at)"
                    " VALUES (:v, :n, datetime('now'))"
                ),
                {"v": migration.version, "n": migration.name},
            )
            applied.append(migration.version)
    return applied
