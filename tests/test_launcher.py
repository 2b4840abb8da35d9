"""`make run`'s entry point, end to end: both servers up, the demo project, Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from core import settings
from core.local_labelstudio import free_port, port_is_free
from tests.helpers import streamlit_healthy, wait_until


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


def _ctrl_c(process: subprocess.Popen) -> str:
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output


def test_run_starts_both_servers_reuses_the_demo_and_stops_on_ctrl_c(tmp_path):
    ls_port, dashboard_port = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY")
    } | {
        "PROMPTER_HOME": str(tmp_path / "home"),
        "PROMPTER_LABEL_STUDIO_PORT": str(ls_port),
        "PROMPTER_PORT": str(dashboard_port),
    }

    first = _start(env)
    _wait_for_dashboard(first, dashboard_port)
    assert httpx.get(f"http://127.0.0.1:{ls_port}/health").status_code == 200
    output = _ctrl_c(first)
    assert "Demo project created" in output, output
    assert port_is_free(ls_port) and port_is_free(dashboard_port), output
    assert (tmp_path / "home" / "prompter.db").exists()

    second = _start(env)
    _wait_for_dashboard(second, dashboard_port)
    output = _ctrl_c(second)
    assert "Demo project found" in output, output
    assert port_is_free(ls_port) and port_is_free(dashboard_port), output
    credentials = (tmp_path / "home" / "labelstudio" / "credentials.json").read_text()
    token = __import__("json").loads(credentials)["token"]
    assert token not in output  # the token is never printed


def test_a_second_setup_installs_nothing():
    """`make run`/`make test` reinstall only when a requirements file changed."""
    done = subprocess.run(["make", "-q", "setup"], cwd=settings.REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, "make would reinstall: run `make setup` once, then this holds"
