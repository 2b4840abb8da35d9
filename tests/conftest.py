"""Shared fixtures: a real Label Studio for the whole run, projects in it, the LLM stand-in, a
fresh PROMPTER_HOME for every test, and a real PostgreSQL server for the tests that run on both
databases (``database_backend``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from core import forkserver, settings, store
from core.labelstudio import LabelStudioClient, NewTask, Project
from core.local_labelstudio import LocalLabelStudio, free_port
from tests.backend import BackendServer
from tests.postgres import PostgresServer, PostgresUnavailable
from tests.standin import StandIn

CHOICES_CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral"/>
  </Choices>
</View>
"""


def choice(label: str, control: str = "sentiment", to: str = "text") -> list[dict]:
    """A Choices result, as Label Studio stores it."""
    return [{"from_name": control, "to_name": to, "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture(autouse=True)
def prompter_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own empty PROMPTER_HOME and no Label Studio from the outer environment."""
    home = tmp_path / "prompter-home"
    monkeypatch.setenv("PROMPTER_HOME", str(home))
    # Runs launched in this process start fresh worker processes: a warm fork server would be
    # replaced at every test (each has its own PROMPTER_HOME). The dashboard under the browser
    # tests and test_forkserver turn it on.
    monkeypatch.setenv(forkserver.ENABLED_VARIABLE, "0")
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PROMPTER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    store.forget_engines()
    yield home
    store.forget_engines()
    forkserver.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server per test process, started on first use (tests/postgres.py). Never
    skipped: a machine that cannot start it fails the tests that need it, saying why."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        server.start()
    except PostgresUnavailable as error:
        server.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request: pytest.FixtureRequest, prompter_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once on SQLite (the default: the file in PROMPTER_HOME) and once on a fresh,
    migrated PostgreSQL database, named by PROMPTER_DATABASE_URL as a team would; yields which."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.create_database()
    monkeypatch.setenv("PROMPTER_DATABASE_URL", server.url(name))
    store.forget_engines()
    try:
        yield "postgresql"
    finally:
        store.forget_engines()
        server.drop_database(name)


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLabelStudio]:
    """One real Label Studio server for the whole test run, on a free loopback port."""
    venv = settings.load().local_labelstudio_venv
    if not (venv / "bin" / "label-studio").exists():
        pytest.fail(f"Label Studio is not installed in {venv}: run the tests with `make test`.")
    server = LocalLabelStudio(tmp_path_factory.mktemp("labelstudio"), free_port(), venv)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ls_client(labelstudio: LocalLabelStudio) -> LabelStudioClient:
    return LabelStudioClient(labelstudio.url, labelstudio.credentials.token)


@pytest.fixture
def use_labelstudio(labelstudio: LocalLabelStudio, monkeypatch: pytest.MonkeyPatch) -> LocalLabelStudio:
    """Point the app at the test server through the environment, as a user would."""
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio.credentials.token)
    return labelstudio


@pytest.fixture
def make_project(ls_client: LabelStudioClient, request: pytest.FixtureRequest) -> Iterator[Callable[..., tuple[Project, list[int]]]]:
    """Create a project from a label config and tasks (some with ground truth); deleted afterwards.

    ``make_project(config, [NewTask(data, [(result, ground_truth)]), ...])`` returns the project and
    its task ids, in the order given.
    """
    created: list[int] = []

    def make(label_config: str = CHOICES_CONFIG, tasks: list[NewTask] | None = None, title: str | None = None):
        project = ls_client.create_project(title or f"test {request.node.name}"[:50], label_config)
        created.append(project.id)
        ids = ls_client.import_tasks(project.id, tasks or []) if tasks else []
        return ls_client.project(project.id), ids

    yield make
    for project_id in created:
        ls_client.delete_project(project_id)


@pytest.fixture
def standin() -> Iterator[StandIn]:
    """An OpenAI-compatible server on loopback, scripted per test."""
    with StandIn() as server:
        yield server


@pytest.fixture
def backend(tmp_path) -> Iterator[BackendServer]:
    """Prompter's ML backend server in its own process, reading this test's PROMPTER_HOME."""
    with BackendServer(tmp_path / "backend.log") as server:
        yield server


@pytest.fixture
def browser_page(use_labelstudio, tmp_path) -> Iterator:
    """A headless Chromium page and the dashboard it talks to (``page.base_url``)."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import Dashboard, chromium

    with Dashboard(tmp_path / "dashboard.log") as dashboard, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)  # a script run can take seconds on a busy machine; expect waits 5 s otherwise
        page.base_url = dashboard.url  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            browser.close()
