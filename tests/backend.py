"""Prompter's ML backend as the tests use it: the real server (`python -m core backend serve`) in
its own process on a free loopback port, reading the test's PROMPTER_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from core import settings
from core.local_labelstudio import free_port
from tests.helpers import wait_until


class BackendServer:
    def __init__(self, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "BackendServer":
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "core", "backend", "serve", "--port", str(self.port)],
                cwd=settings.REPO_ROOT,
                env=dict(os.environ),
                stdout=out,
                stderr=out,
            )
        wait_until(self._up, 60, 0.1, what=f"the backend to start (see {self.log})")
        return self

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the backend exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 401  # up, and asking for credentials
        except httpx.HTTPError:
            return False

    def logged(self) -> str:
        return self.log.read_text()

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
