"""`make run`'s entry point, end to end: Label Studio, the ML backend and the dashboard up, the demo
projects (the interactive one published once there is a key), Ctrl-C stops all three."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from core import demo, settings
from core.labelstudio import LabelStudioClient
from core.local_labelstudio import free_port, port_is_free
from tests.helpers import streamlit_healthy, wait_until
from tests.standin import Reply


def _start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "core", "run"],
        cwd=settings.REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )


def _wait_for_dashboard(process: subprocess.Popen, port: int, timeout: float = 240) -> None:
    def up() -> bool:
        assert process.poll() is None, process.stdout.read()
        return streamlit_healthy(f"http://127.0.0.1:{port}")

    wait_until(up, timeout, 0.5, what="the dashboard to come up")


@pytest.fixture
def started() -> list[subprocess.Popen]:
    """The `core run` processes a test starts: stopped as Ctrl-C stops them even when the test fails
    half-way, so no Label Studio, backend or dashboard outlives it."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            _ctrl_c(process)


def _ctrl_c(process: subprocess.Popen) -> str:
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output


def test_run_starts_the_servers_reuses_the_demo_publishes_its_interactive_project_and_stops_on_ctrl_c(tmp_path, standin, started):
    ls_port, dashboard_port, backend_port = free_port(), free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")
    } | {
        "PROMPTER_HOME": str(tmp_path / "home"),
        "PROMPTER_LABEL_STUDIO_PORT": str(ls_port),
        "PROMPTER_PORT": str(dashboard_port),
        "PROMPTER_BACKEND_PORT": str(backend_port),
    }
    ports = (ls_port, dashboard_port, backend_port)

    first = _start(env)
    started.append(first)
    _wait_for_dashboard(first, dashboard_port)
    assert httpx.get(f"http://127.0.0.1:{ls_port}/health").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{backend_port}/health").status_code == 401  # up, and answering only Label Studio
    output = _ctrl_c(first)
    assert "Demo project created" in output, output
    assert "Add a model key (Keys page), then publish a version to demo project" in output, output  # nothing can answer yet
    assert all(port_is_free(p) for p in ports), output
    assert (tmp_path / "home" / "prompter.db").exists()

    added = subprocess.run(
        [sys.executable, "-m", "core", "keys", "add", "team", "--provider", "openai-compatible", "--base-url", standin.base_url, "--no-test"],
        cwd=settings.REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert added.returncode == 0, added.stderr
    standin.respond_with(lambda request: Reply.json({"response": "The customer asks about a bill.", "intent": "Billing"}))
    second = _start(env)
    started.append(second)
    _wait_for_dashboard(second, dashboard_port)
    credentials = json.loads((tmp_path / "home" / "labelstudio" / "credentials.json").read_text())
    client = LabelStudioClient(f"http://127.0.0.1:{ls_port}", credentials["token"])
    (interactive,) = [p for p in client.projects() if p.title == demo.INTERACTIVE_TITLE]
    (connected,) = client.ml_backends(interactive.id)
    assert (connected["state"], connected["is_interactive"], connected["model_version"]) == ("CO", True, "assistant@v1")
    task_id = client.task_ids(interactive.id)[0]
    assert client._http("GET", f"api/tasks/{task_id}/").status_code == 200  # an annotator opens a task: its pre-label
    (prediction,) = client.predictions(interactive.id, task_id=task_id)
    assert {r["from_name"] for r in prediction.result} == {"response", "intent"} and standin.request_count == 1
    output = _ctrl_c(second)
    assert "Demo project found" in output and "is served by assistant@v1, interactive" in output, output
    assert all(port_is_free(p) for p in ports), output
    assert credentials["token"] not in output  # the token is never printed


def test_a_second_setup_installs_nothing():
    """`make run`/`make test` reinstall only when a requirements file changed."""
    done = subprocess.run(["make", "-q", "setup"], cwd=settings.REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, "make would reinstall: run `make setup` once, then this holds"
