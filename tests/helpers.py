"""Helpers the page and run tests share: opening a page in AppTest, finding a table, waiting."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import pyarrow as pa
from streamlit.testing.v1 import AppTest

from core import runs, settings

APP = str(settings.REPO_ROOT / "app.py")
Z = 1.959963984540054  # the normal quantile of 97.5%


def open_page(page: str, *, project_key: str | None = None, project_id: int | None = None, timeout: float = 90) -> AppTest:
    """The app switched to ``page`` (e.g. "views/3_Evaluate.py"), with a project picked when given."""
    app = AppTest.from_file(APP, default_timeout=timeout)
    app.run()
    app.switch_page(page).run()
    if project_key is not None:
        app.selectbox(key=project_key).set_value(project_id).run()
    assert not app.exception, app.exception
    return app


def picker(app: AppTest, label: str):
    """The page's selectbox with this label (a picker's key changes when the page points it at a
    run it started or a version it saved: widgets.select)."""
    (found,) = [box for box in app.selectbox if box.label == label]
    return found


def run_picker(app: AppTest):
    return picker(app, "Run")


def table(app: AppTest, *columns: str):
    """The table with these columns (AppTest does not expose a dataframe's key)."""
    for frame in app.dataframe:
        if tuple(frame.value.columns) == columns:
            return frame.value
    raise AssertionError(f"no table with columns {columns}; tables: {[tuple(f.value.columns) for f in app.dataframe]}")


def chart_rows(app: AppTest, *marks: str) -> list[list[dict]]:
    """The rows of each of the page's charts that draw every one of ``marks`` (in its layers), from
    the dataset the chart itself names, as the page sent them to the browser."""
    found = []
    for chart in app.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        drawn = {layer["mark"]["type"] if isinstance(layer.get("mark"), dict) else layer.get("mark") for layer in spec.get("layer", [spec])}
        if not set(marks) <= drawn:
            continue
        named = {d.name: d for d in chart.proto.datasets}
        dataset = named.get((spec.get("data") or {}).get("name")) or chart.proto.datasets[0]
        found.append(pa.ipc.open_stream(dataset.data.data).read_pandas().to_dict("records"))
    return found


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of k successes in n trials, from its closed form."""
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    return centre - half, centre + half


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, poll: float = 0.05, *, what: str = "the condition") -> None:
    """Look at ``condition`` every ``poll`` seconds until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def streamlit_healthy(url: str) -> bool:
    """Whether the Streamlit server at ``url`` answers its health check."""
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=2).text == "ok"
    except httpx.HTTPError:
        return False


def wait_for_run(run_id: int, timeout: float = 60.0) -> runs.RunView:
    """The run once no worker is on it any more (a real worker process may be)."""
    wait_until(lambda: (r := runs.get(run_id)).status not in runs.ACTIVE and not r.interrupted, timeout, poll=0.3)
    return runs.get(run_id)


class HeldCalls:
    """A stand-in responder that holds each call until the test lets it through, so a run is driven
    by events: ``allow(n)`` lets the next n calls answer, ``open()`` lets every call answer."""

    def __init__(self, answer: Callable):
        self.answer = answer
        self.arrived = 0
        self.allowed = 0
        self.opened = False
        self._changed = threading.Condition()

    def __call__(self, request):
        with self._changed:
            self.arrived += 1
            place = self.arrived
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.opened or self.allowed >= place, timeout=120)
        return self.answer(request)

    def allow(self, n: int) -> None:
        with self._changed:
            self.allowed += n
            self._changed.notify_all()

    def open(self) -> None:
        with self._changed:
            self.opened = True
            self._changed.notify_all()

    def wait_arrived(self, n: int, timeout: float = 60.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.arrived >= n, timeout=timeout):
                raise AssertionError(f"only {self.arrived} of {n} calls arrived")

    @property
    def held(self) -> int:
        """Calls that arrived and have not been let through."""
        with self._changed:
            return 0 if self.opened else max(0, self.arrived - self.allowed)


class ServerProcess:
    """A server of the repository (``python -m ...``) in its own process on a free loopback port, its
    output in ``log``; entered once it answers (``up``), terminated on exit. The port, and so ``url``,
    is known before it starts."""

    what = "the server"

    def __init__(self, log: Path, env: dict[str, str] | None = None):
        from core.local_labelstudio import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = dict(env or {})
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def up(self) -> bool:
        raise NotImplementedError

    def __enter__(self):
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, *self.command()], cwd=settings.REPO_ROOT, env=self.environment(), stdout=out, stderr=out)
        wait_until(self._ready, 60, 0.1, what=f"{self.what} to start (see {self.log})")
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.what} exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
        return self.up()

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
