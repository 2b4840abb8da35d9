"""core.store and core.migrations: every table round-trips, old databases upgrade in place."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest
from sqlalchemy import create_engine, inspect
from sqlmodel import select

from core import migrations, settings, store


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


def test_every_table_round_trips():
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


def test_tables_match_what_the_migrations_build(tmp_path):
    """The SQLModel classes and the migrated schema must describe the same columns."""
    migrated = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with migrated.begin() as connection:
        migrations.upgrade(connection)
    declared = create_engine(f"sqlite:///{tmp_path / 'declared.db'}")
    store.SQLModel.metadata.create_all(declared)
    for table in store.SQLModel.metadata.tables:
        columns = {c["name"]: (str(c["type"]), c["nullable"]) for c in inspect(migrated).get_columns(table)}
        expected = {c["name"]: (str(c["type"]), c["nullable"]) for c in inspect(declared).get_columns(table)}
        assert columns.keys() == expected.keys(), table
        for name, (kind, nullable) in expected.items():
            assert nullable == columns[name][1], f"{table}.{name} nullability"
            assert kind.split("(")[0] == columns[name][0].split("(")[0], f"{table}.{name} type"


def test_a_database_at_the_previous_version_upgrades_without_losing_data(prompter_home):
    path = prompter_home / "prompter.db"
    path.parent.mkdir(parents=True)
    previous = create_engine(f"sqlite:///{path}")
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


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    broken = migrations.Migration(99, "broken", ("CREATE TABLE half_done (id INTEGER)", "NOT SQL AT ALL"))
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS + (broken,))
    with pytest.raises(Exception, match="NOT SQL"):
        store._open(f"sqlite:///{tmp_path / 'x.db'}")
    with sqlite3.connect(tmp_path / "x.db") as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "half_done" not in tables and "prompts" not in tables


def test_a_newer_database_is_refused_with_a_clear_message(prompter_home):
    store.engine()
    store.forget_engines()
    with sqlite3.connect(prompter_home / "prompter.db") as raw:
        raw.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', '2030-01-01')")
    with pytest.raises(RuntimeError, match="newer than this Prompter"):
        store.engine()


def test_a_page_and_a_worker_process_write_at_once(prompter_home):
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
