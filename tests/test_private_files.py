"""What Prompter writes is its owner's alone: PROMPTER_HOME and its logs folder 0700; the database (and
its -wal and -shm), the key file, the run logs and the local Label Studio's credentials 0600, whatever
the umask; and a file or folder found looser is tightened when it is opened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core import connection, forkserver, keys, prompts, runs, store, vault
from core.labelstudio import NewTask
from core.local_labelstudio import load_or_create_credentials
from tests.conftest import CHOICES_CONFIG
from tests.helpers import wait_for_run
from tests.standin import Reply


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """The loosest umask: every file would be made readable (and writable) by everyone."""
    before = os.umask(0)
    yield
    os.umask(before)


def test_a_fresh_home_and_everything_in_it_is_the_owners_alone(prompter_home, open_umask):
    assert not prompter_home.exists()
    keys.add("team", "openai", api_key="sk-private-0000000000000001")
    connection.save("http://127.0.0.1:8080", "ls-token-private-000000000001")
    assert keys.get("team").api_key.endswith("0001")  # the engine keeps a connection: -wal and -shm are there
    assert mode(prompter_home) == 0o700
    assert {p.name: mode(p) for p in prompter_home.iterdir()} == {
        "prompter.db": 0o600, "prompter.db-wal": 0o600, "prompter.db-shm": 0o600, vault.KEY_FILE: 0o600,
    }


def test_looser_files_found_are_tightened_when_opened(prompter_home, open_umask):
    keys.add("team", "openai", api_key="sk-private-0000000000000002")
    store.forget_engines()  # as if Prompter stopped; then someone loosened everything
    for path in [prompter_home, *prompter_home.iterdir()]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)

    assert keys.get("team").api_key.endswith("0002")  # opening the database and reading the key file
    assert {p.name: mode(p) for p in [prompter_home, *prompter_home.iterdir()]} == {
        prompter_home.name: 0o700, "prompter.db": 0o600, "prompter.db-wal": 0o600, "prompter.db-shm": 0o600, vault.KEY_FILE: 0o600,
    }


def test_a_database_elsewhere_is_private_but_its_existing_folder_is_left_alone(tmp_path, monkeypatch, open_umask):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    monkeypatch.setenv("PROMPTER_DATABASE_URL", f"sqlite:///{shared / 'team.db'}")
    keys.add("local", "openai-compatible", base_url="http://127.0.0.1:9/v1")
    assert mode(shared / "team.db") == 0o600 and mode(shared) == 0o755
    monkeypatch.setenv("PROMPTER_DATABASE_URL", f"sqlite:///{tmp_path / 'new' / 'deeper' / 'team.db'}")
    keys.all_keys()
    assert mode(tmp_path / "new" / "deeper") == 0o700 and mode(tmp_path / "new" / "deeper" / "team.db") == 0o600


def test_local_label_studio_credentials_are_private_and_tightened(tmp_path, open_umask):
    data = tmp_path / "labelstudio"
    first = load_or_create_credentials(data)
    assert (mode(data), mode(data / "credentials.json")) == (0o700, 0o600)
    os.chmod(data / "credentials.json", 0o644)
    assert load_or_create_credentials(data) == first
    assert mode(data / "credentials.json") == 0o600


def test_the_test_label_studio_keeps_its_data_and_log_private(labelstudio):
    assert mode(labelstudio.data_dir) == 0o700
    assert mode(labelstudio.log_path) == 0o600 and mode(labelstudio.data_dir / "credentials.json") == 0o600


@pytest.mark.parametrize("forked", [False, True], ids=["fresh worker", "forked worker"])
def test_run_logs_are_private(forked, use_labelstudio, make_project, standin, prompter_home, monkeypatch, open_umask):
    monkeypatch.setenv(forkserver.ENABLED_VARIABLE, "1" if forked else "0")
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": "Great value"})])
    version = prompts.create(project.id, "p", template="{text} {labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    standin.script(Reply.json({"sentiment": "Positive"}))
    run = runs.create(version, ids, kind="evaluate", label_config=CHOICES_CONFIG, cache="fresh")
    if forked:
        assert forkserver.wait_until_ready(60)
    runs.launch(run.id)
    assert wait_for_run(run.id).status == "completed"
    assert ("forked by the fork server" in (prompter_home / "logs" / f"run-{run.id}.log").read_text()) == forked
    logs = prompter_home / "logs"
    assert mode(logs) == 0o700
    assert {p.name: mode(p) for p in logs.iterdir()} == {
        f"run-{run.id}.log": 0o600, **({"forkserver.log": 0o600} if forked else {}),
    }
