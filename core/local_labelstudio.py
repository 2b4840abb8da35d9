"""A Label Studio server of our own on loopback, for `make run` and for the tests.

Label Studio's pins clash with the app's, so it runs from its own virtual environment
(``.venv-labelstudio``, made by ``make``). Its admin user and API token are generated once and kept
in ``credentials.json`` (mode 0600) inside its data folder (mode 0700, as its ``server.log`` is 0600),
so every start finds the same login.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from core import private

ADMIN_USERNAME = "admin@prompter.local"


class LocalLabelStudioError(RuntimeError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', token='***')"


def load_or_create_credentials(data_dir: Path) -> Credentials:
    path = data_dir / "credentials.json"
    if path.exists():
        private.tighten(path)  # one left readable by others is made the owner's alone
        saved = json.loads(path.read_text())
        return Credentials(saved["username"], saved["password"], saved["token"])
    private.folder(data_dir)
    # Label Studio's legacy tokens are at most 40 characters.
    created = Credentials(ADMIN_USERNAME, secrets.token_urlsafe(18), secrets.token_hex(20))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, private.FILE_MODE)
    os.fchmod(descriptor, private.FILE_MODE)  # whatever the umask
    with os.fdopen(descriptor, "w") as handle:
        json.dump(created.__dict__, handle)
    return created


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((host, port)) != 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalLabelStudio:
    """Start, reuse and stop a Label Studio server bound to 127.0.0.1.

    >>> server = LocalLabelStudio(Path("data/labelstudio"), 8080, Path(".venv-labelstudio"))  # doctest: +SKIP
    >>> with server: print(server.url)  # doctest: +SKIP
    """

    def __init__(self, data_dir: Path, port: int, venv: Path, environment: dict[str, str] | None = None):
        self.data_dir = Path(data_dir)
        self.port = port
        self.venv = Path(venv)
        self.environment = dict(environment or {})  # more of Label Studio's settings (its database, for one)
        self.url = f"http://127.0.0.1:{port}"
        self.credentials = load_or_create_credentials(self.data_dir)
        self.log_path = self.data_dir / "server.log"
        self._process: subprocess.Popen | None = None

    @property
    def started_here(self) -> bool:
        return self._process is not None

    def start(self, timeout: float = 240.0) -> "LocalLabelStudio":
        """Start the server, or reuse one already answering on the port with our token."""
        if not port_is_free(self.port):
            if self._accepts_our_token():
                return self
            raise LocalLabelStudioError(
                f"Port {self.port} is taken by something that is not our Label Studio; stop it, "
                "or set PROMPTER_LABEL_STUDIO_PORT to a free port."
            )
        executable = self.venv / "bin" / "label-studio"
        if not executable.exists():
            raise LocalLabelStudioError(
                f"Label Studio is not installed in {self.venv}; run `make setup` (or `make run`) first."
            )
        private.folder(self.data_dir)
        log = private.append(self.log_path)
        self._process = subprocess.Popen(
            [
                str(executable), "start",
                "--data-dir", str(self.data_dir),
                "--port", str(self.port),
                "--internal-host", "127.0.0.1",
                "--no-browser",
            ],
            env=self._environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us; we stop it in order
        )
        log.close()
        self._wait_until_healthy(timeout)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sent, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sent)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def is_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def __enter__(self) -> "LocalLabelStudio":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "VIRTUAL_ENV"))}
        env.update(
            LABEL_STUDIO_USERNAME=self.credentials.username,
            LABEL_STUDIO_PASSWORD=self.credentials.password,
            LABEL_STUDIO_USER_TOKEN=self.credentials.token,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
            LATEST_VERSION_CHECK="false",
            COLLECT_ANALYTICS="false",
            # Label Studio 1.23 recounts every task of the project on each prediction import unless
            # this flag is on: 5.35 s instead of 0.30 s per 500 predictions in a 20,000-task project.
            fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short="true",
            # Prompter's ML backend listens on loopback beside it; Label Studio 1.23 refuses to call
            # an ML backend (or a webhook) on a local address unless both are off.
            ML_BLOCK_LOCAL_IP="false",
            SSRF_PROTECTION_ENABLED="false",
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        )
        env.update(self.environment)
        return env

    def _wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise LocalLabelStudioError(
                    f"Label Studio exited during start-up (code {self._process.returncode}); "
                    f"see {self.log_path}:\n{self._log_tail()}"
                )
            if self.is_healthy():
                return
            time.sleep(0.5)
        self.stop()
        raise LocalLabelStudioError(
            f"Label Studio did not become healthy within {timeout:.0f} s; see {self.log_path}:\n"
            f"{self._log_tail()}"
        )

    def _accepts_our_token(self) -> bool:
        try:
            response = httpx.get(
                f"{self.url}/api/current-user/whoami",
                headers={"Authorization": f"Token {self.credentials.token}"},
                timeout=5.0,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
