"""Prompter's ML backend as the tests use it: the real server (`python -m core backend serve`) in
its own process on a free loopback port, reading the test's PROMPTER_HOME."""

from __future__ import annotations

import httpx

from tests.helpers import ServerProcess


class BackendServer(ServerProcess):
    what = "the backend"

    def command(self) -> list[str]:
        return ["-m", "core", "backend", "serve", "--port", str(self.port)]

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 401  # up, and asking for credentials
        except httpx.HTTPError:
            return False

    def logged(self) -> str:
        return self.log.read_text()
