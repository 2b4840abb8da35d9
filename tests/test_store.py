"""core.store and core.migrations: every table round-trips, old databases upgrade in place, the
database keeps its constraints and ``writing`` serializes read-then-write changes. Most tests run
twice (``database_backend``): on SQLite, and on a real PostgreSQL server the tests start."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core import budgets, keys, migrations, prompts, runs, settings, store


def _empty_database(database_backend: str, request: pytest.FixtureRequest) -> str:
    """The URL of a database with nothing in it, which Prompter will be pointed at (the SQLite file in
    PROMPTER_HOME, or a new PostgreSQL database in PROMPTER_DATABASE_URL)."""
    if database_backend == "sqlite":
        settings.load().home.mkdir(parents=True, exist_ok=True)
        return settings.load().database_url
    server = request.getfixturevalue("postgres")
    name = server.create_database(migrated=False)
    url = server.url(name)
    request.getfixturevalue("monkeypatch").setenv("PROMPTER_DATABASE_URL", url)
    request.addfinalizer(lambda: (store.forget_engines(), server.drop_database(name)))
    return url


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _every_row():
    return [
        store.ProviderKey(name="work", provider="openai", api_key_encrypted="gAAAA-cipher", base_url=None),
        store.LabelStudioConnection(url="http://127.0.0.1:8080", api_key_encrypted="gAAAA-cipher"),
        store.Prompt(id=1, project_id=7, name="intent"),
        store.PromptVersion(
            id=1, prompt_id=1, number=1, template="Classify: {text}", system_message="Be terse.",
            controls=["intent"], provider_key="work", model="gpt-4o-mini", temperature=0.0,
            max_output_tokens=200, note="first try",
        ),
        store.Run(
            id=1, prompt_version_id=1, kind="evaluate", subset={"kind": "ground-truth"}, status="completed",
            total=2, done=2, failed=1, input_tokens=120, output_tokens=14, cost_usd=0.0012,
        ),
        store.RunItem(
            run_id=1, task_id=42, status="ok", call_hash="c" * 64, messages_hash="m" * 64,
            raw_output='{"intent": "Billing"}', parsed={"intent": "Billing"},
            regions=[{"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": ["Billing"]}}],
            input_tokens=60, output_tokens=7, cost_usd=0.0006, latency_ms=812.5, score=0.97,
        ),
        store.RunItem(
            run_id=1, task_id=43, status="failed", call_hash="d" * 64, messages_hash="n" * 64,
            raw_output='{"intent": "Bil', error="The answer is not valid JSON: Unterminated string",
        ),
    ]


def test_the_store_is_on_the_database_asked_for(database_backend):
    """So that a PostgreSQL variant never passes by quietly running on SQLite."""
    engine = store.engine()
    assert engine.dialect.name == database_backend
    assert store.schema_version() == migrations.LATEST_VERSION
    if database_backend == "postgresql":
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"  # the server's own zone is not
            assert connection.exec_driver_sql("SELECT current_setting('TimeZone', false)").scalar() == "UTC"
        assert "never-shown-anywhere" not in store.shown(settings.load().database_url)
        assert "never-shown-anywhere" not in repr(engine) and "***" in store.shown(settings.load().database_url)
        plain = store.engine(settings.load().database_url.replace("postgresql+psycopg://", "postgresql://"))
        assert plain.dialect.driver == "psycopg"  # not SQLAlchemy's default, psycopg2, which Prompter does not ship


def test_a_database_neither_sqlite_nor_postgresql_is_refused_without_showing_its_password():
    with pytest.raises(RuntimeError) as refused:
        store.engine("mysql+pymysql://team:s3cret-pw@db.example.com/prompter")
    assert "SQLite" in str(refused.value) and "PostgreSQL" in str(refused.value)
    assert "s3cret-pw" not in str(refused.value) and "team:***@db.example.com" in str(refused.value)


def test_every_table_round_trips(database_backend):
    rows = _every_row()
    with store.writing() as s:
        for row in rows:
            s.add(row)
    store.forget_engines()  # read back through a new connection, from the file
    with store.session() as s:
        for row in rows:
            found = s.get(type(row), row.id)
            assert found is not None
            assert found.model_dump() == row.model_dump(), type(row).__name__


def test_database_lives_in_prompter_home_in_wal_mode(prompter_home):
    store.engine()
    path = prompter_home / "prompter.db"
    assert settings.load().database_path == path and path.exists()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version() == migrations.LATEST_VERSION


def test_tables_match_what_the_migrations_build(database_backend, request, tmp_path):
    """The SQLModel classes and the migrated schema must describe the same columns."""
    if database_backend == "sqlite":
        migrated = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
        with migrated.begin() as connection:
            migrations.upgrade(connection)
        declared = create_engine(f"sqlite:///{tmp_path / 'declared.db'}")
    else:
        migrated = store.engine()  # the migrated template's copy
        declared = create_engine(_empty_database(database_backend, request))
    store.SQLModel.metadata.create_all(declared)
    for table in store.SQLModel.metadata.tables:
        columns = {c["name"]: _described(c) for c in inspect(migrated).get_columns(table)}
        expected = {c["name"]: _described(c) for c in inspect(declared).get_columns(table)}
        assert columns.keys() == expected.keys(), table
        for name, (kind, nullable, zoned) in expected.items():
            assert nullable == columns[name][1], f"{table}.{name} nullability"
            assert kind.split("(")[0] == columns[name][0].split("(")[0], f"{table}.{name} type"
            assert zoned == columns[name][2], f"{table}.{name} time zone"
    declared.dispose()


def _described(column: dict) -> tuple[str, bool, bool | None]:
    """A reflected column's type, nullability, and whether its timestamps keep their zone."""
    return str(column["type"]), column["nullable"], getattr(column["type"], "timezone", None)


def test_a_database_at_the_previous_version_upgrades_without_losing_data(database_backend, request):
    url = _empty_database(database_backend, request)
    previous = create_engine(url)
    with previous.begin() as connection:
        assert migrations.upgrade(connection, target=migrations.LATEST_VERSION - 1)
        connection.exec_driver_sql(
            "INSERT INTO prompts (id, project_id, name, created_at) VALUES (1, 3, 'intent', '2026-01-01 00:00:00')"
        )
        connection.exec_driver_sql(
            "INSERT INTO prompt_versions (id, prompt_id, number, template, controls, provider_key, model,"
            " temperature, created_at) VALUES (1, 1, 1, 'Classify {text}', '[\"intent\"]', 'work',"
            " 'gpt-4o-mini', 0.0, '2026-01-01 00:00:00')"
        )
    previous.dispose()

    assert store.schema_version() == migrations.LATEST_VERSION  # opening the store upgrades it
    with store.session() as s:
        (version,) = s.exec(select(store.PromptVersion)).all()
        assert (version.template, version.controls, version.model) == ("Classify {text}", ["intent"], "gpt-4o-mini")
        assert s.exec(select(store.Prompt)).one().name == "intent"
    with store.writing() as s:
        s.add(store.Run(prompt_version_id=1, kind="evaluate", subset={"kind": "all"}))
    with store.session() as s:
        assert s.exec(select(store.Run)).one().status == "pending"


def test_a_failing_migration_leaves_the_database_as_it_was(database_backend, request, monkeypatch):
    url = _empty_database(database_backend, request)
    broken = migrations.Migration(99, "broken", ("CREATE TABLE half_done (id INTEGER)", "NOT SQL AT ALL"))
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + (broken,))
    with pytest.raises(Exception, match="NOT SQL"):
        store._open(url)
    assert _tables(url) == set()  # not half_done, not prompts, not even schema_migrations


def test_a_newer_database_is_refused_with_a_clear_message(database_backend):
    store.engine()
    store.forget_engines()
    raw = create_engine(settings.load().database_url)
    with raw.begin() as connection:
        connection.exec_driver_sql("INSERT INTO schema_migrations VALUES (999, 'from the future', '2030-01-01')")
    raw.dispose()
    with pytest.raises(RuntimeError, match="newer than this Prompter"):
        store.engine()


def test_two_processes_opening_a_new_database_at_once_migrate_it_once(database_backend, request):
    url = _empty_database(database_backend, request)
    opened, errors = [], []

    def open_it():
        try:
            opened.append(store._open(url))
        except Exception as error:  # noqa: BLE001 - the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with opened[0].connect() as connection:
        versions = connection.exec_driver_sql("SELECT version FROM schema_migrations ORDER BY version").scalars().all()
    assert versions == [m.version for m in migrations.MIGRATIONS]
    for engine in opened:
        engine.dispose()


def test_a_page_and_a_worker_process_write_at_once(database_backend):
    """A worker in another process writes run items while this process writes and reads."""
    with store.writing() as s:
        s.add(store.Prompt(id=1, project_id=1, name="p"))
        s.add(store.PromptVersion(id=1, prompt_id=1, number=1, template="t", controls=[], provider_key="k", model="m"))
        s.add(store.Run(id=1, prompt_version_id=1, kind="predict", subset={}, total=400))
    worker = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            from core import store
            for task in range(200):
                with store.writing() as s:
                    run = s.get(store.Run, 1)
                    run.done += 1
                    s.add(store.RunItem(run_id=1, task_id=task, status="ok", call_hash="h", messages_hash="m"))
        """)],
        cwd=settings.REPO_ROOT,
    )
    errors = []

    def page():
        try:
            for task in range(200, 400):
                with store.writing() as s:
                    run = s.get(store.Run, 1)
                    run.done += 1
                    s.add(store.RunItem(run_id=1, task_id=task, status="ok", call_hash="h", messages_hash="m"))
                with store.session() as s:
                    s.exec(select(store.RunItem)).all()
        except Exception as error:  # noqa: BLE001 - the assertion below reports it
            errors.append(error)

    thread = threading.Thread(target=page)
    thread.start()
    thread.join()
    assert worker.wait(60) == 0
    assert errors == []
    with store.session() as s:
        assert s.get(store.Run, 1).done == 400
        assert len(s.exec(select(store.RunItem)).all()) == 400


# -- what the database guarantees, on both ----------------------------------------------------------


def _a_version() -> prompts.Version:
    keys.add("team", "openai-compatible", base_url="http://127.0.0.1:9")  # never called here
    return prompts.create(7, "sentiment", template="Sentiment of: {text}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")


def test_two_runs_of_a_version_created_at_once_make_one(database_backend, monkeypatch):
    """runs.create checks that no run of the version is going, then inserts one; two at once must not
    both pass the check. The first create is held between its check and its insert until the second
    has asked for the write lock (BEGIN IMMEDIATE on SQLite, the advisory lock on PostgreSQL): were
    ``writing`` not to take it, the second would never ask, and the first would wait in vain."""
    version = _a_version()
    checked = runs._live_runs_of
    asked, second_asks = [], threading.Event()

    def on_statement(_connection, _cursor, statement, *_args):
        if statement.startswith("BEGIN IMMEDIATE") or "pg_advisory_xact_lock" in statement:
            asked.append(threading.get_ident())
            if len(set(asked)) >= 2:
                second_asks.set()

    event.listen(store.engine(), "before_cursor_execute", on_statement)

    def slow_check(*args, **kwargs):
        found = checked(*args, **kwargs)
        assert second_asks.wait(30), "the second create never asked for the write lock"
        return found

    monkeypatch.setattr(runs, "_live_runs_of", slow_check)
    made, refused = [], []

    def create():
        try:
            made.append(runs.create(version, [1, 2, 3], kind="evaluate", label_config="<View/>").id)
        except runs.RunError as error:
            refused.append(str(error))

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and len(refused) == 1, (made, refused)
    assert f"already has a run going: run {made[0]}" in refused[0]
    with store.session() as s:
        assert [r.id for r in s.exec(select(store.Run)).all()] == made
    event.remove(store.engine(), "before_cursor_execute", on_statement)


@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
def test_items_are_stored_while_another_change_holds_the_write_lock_on_postgresql(database_backend):
    """On PostgreSQL a run's items are written beside ``writing`` transactions (the counters' row lock
    keeps them right); on SQLite the database's one write lock makes them wait their turn."""
    assert store.engine().dialect.name == "postgresql"
    version = _a_version()
    run = runs.create(version, [1, 2], kind="evaluate", label_config="<View/>")
    other = runs.create(prompts.new_version("sentiment", 7, note="v2"), [3], kind="evaluate", label_config="<View/>")
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with store.writing() as s:
            s.get(store.Run, other.id).status_reason = "held"
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(30)
        db = runs.item_writer()
        started = time.monotonic()
        runs.add_item(db, run.id, 1, None, runs.failed("no call", "unexpected"), cost=None)
        db.close()
        assert time.monotonic() - started < 5
    finally:
        release.set()
        holder.join()
    assert (runs.get(run.id).failed, len(runs.items(run.id))) == (1, 1)


def test_the_database_keeps_its_constraints(database_backend):
    version = _a_version()
    with pytest.raises(IntegrityError, match="cannot change"):  # a saved version is immutable
        with store.writing() as s:
            s.get(store.PromptVersion, prompts.row_id(version)).template = "changed"
    with pytest.raises(IntegrityError):  # one prompt of a name per project
        with store.writing() as s:
            s.add(store.Prompt(project_id=7, name="sentiment"))
    with pytest.raises(IntegrityError):  # a run of a version that does not exist
        with store.writing() as s:
            s.add(store.Run(prompt_version_id=999, kind="evaluate", subset={}))
    runs.create(version, [1], kind="evaluate", label_config="<View/>")
    with store.session() as s:
        events = s.exec(select(store.AuditEvent)).all()
    assert events, "prompt saved, run started"
    for change in ("UPDATE audit_events SET actor = 'someone-else'", "DELETE FROM audit_events"):
        with pytest.raises(IntegrityError, match="append-only"):
            with store.writing() as s:
                s.execute(text(change))
    if database_backend == "postgresql":
        with pytest.raises(IntegrityError, match="append-only"):
            with store.writing() as s:
                s.execute(text("TRUNCATE audit_events"))
    with store.writing() as s:  # deleting a prompt deletes its versions and their runs
        s.delete(s.exec(select(store.Prompt)).one())
    with store.session() as s:
        assert s.exec(select(store.PromptVersion)).all() == [] and s.exec(select(store.Run)).all() == []
        assert len(s.exec(select(store.AuditEvent)).all()) == len(events)


def test_times_come_back_as_stored_and_compare_in_utc(database_backend):
    version = _a_version()
    run = runs.create(version, [1], kind="evaluate", label_config="<View/>")
    moment = datetime(2026, 3, 31, 23, 59, 59, 123456, tzinfo=timezone.utc)  # 12:44 on April 1st in Chatham
    with store.writing() as s:
        s.get(store.Run, run.id).heartbeat_at = moment
        for task, at in ((1, moment), (2, moment + timedelta(seconds=1))):
            s.add(store.RunItem(run_id=run.id, task_id=task, status="ok", call_hash="h", messages_hash="m", cost_usd=1.0, created_at=at))
    store.forget_engines()
    with store.session() as s:
        stored = s.get(store.Run, run.id).heartbeat_at
        assert stored == moment and stored.utcoffset() == timedelta(0)  # aware, in UTC, to the microsecond
        in_april = s.exec(select(store.RunItem.task_id).where(store.RunItem.created_at >= budgets.month_start(moment + timedelta(seconds=1)))).all()
    assert in_april == [2]  # an aware bound compares in UTC, whatever the server's zone
    assert budgets.key_spend("team") == 0.0  # both are in months gone by


def test_runs_are_found_by_the_group_their_subset_names(database_backend):
    version = _a_version()
    with store.writing() as s:
        for group in ("matrix:3", "matrix:4", None):
            subset = {"task_ids": [1]} | ({"group": group} if group else {})
            s.add(store.Run(prompt_version_id=prompts.row_id(version), kind="evaluate", subset=subset, status="completed", variant={"model": "gpt-4o"}))
    assert [r.subset["group"] for r in runs.in_group("matrix:3")] == ["matrix:3"]
    assert runs.runs(prompt="sentiment") == []  # variants only when asked: a JSON null is no variant
    assert len(runs.runs(prompt="sentiment", variants=True)) == 3
