"""Run workers that start at once: a process that has already imported the engine forks one per run.

A new Python process spends one to two seconds importing the engine (the OpenAI and Label Studio SDKs,
SQLAlchemy, tiktoken's encoding) before its first call, which is most of the wait after a click on
Start. So the process that launches runs (the dashboard) keeps one server process that imported all
of that once, idle, and asks it for each run's worker: the server forks, the fork detaches (its own
session, its output in the run's log) and works the run exactly as
`python -m core runs work ID` would. The same technique as multiprocessing's forkserver and
gunicorn's preload.

The worker is still a process of its own, so a run outlives the page and the dashboard, and a run's
worker is still known by its pid (see runs.worker_name). Nothing here is required: until a server is
ready, or where fork is not available, ``start_worker`` returns None and the caller starts the plain
worker process instead.

The server holds no connection, thread or event loop when it forks: it only imported modules. Each
worker takes the launcher's environment as it is at the launch (PROMPTER_HOME, the database, Label
Studio, the variables keys read), not the one the server started with.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

ENABLED_VARIABLE = "PROMPTER_FORKSERVER"  # "0" turns it off: every run then starts a fresh process


def start_worker(run_id: int, log: Path) -> int | None:
    """The pid of a worker forked for the run, or None when no warm server is ready yet (one is then
    being started, for the next run)."""
    if not enabled():
        return None
    with _lock:
        server = _serving()
        if not server.ready.is_set():
            return None
        try:
            return server.fork(run_id, log)
        except (OSError, ValueError):
            _discard()
            return None


def warm() -> None:
    """Have a server ready for the next run (the dashboard calls this as it starts)."""
    if enabled():
        with _lock:
            _serving()


def wait_until_ready(timeout: float) -> bool:
    """Whether the server is ready within ``timeout`` seconds (it is started if there is none)."""
    with _lock:
        server = _serving() if enabled() else None
    return server is not None and server.ready.wait(timeout)


def server_pid() -> int | None:
    with _lock:
        return _server.process.pid if _server is not None and _server.process.poll() is None else None


def enabled() -> bool:
    return hasattr(os, "fork") and os.environ.get(ENABLED_VARIABLE, "1") != "0"


def stop() -> None:
    """Stop the server (workers it forked go on)."""
    with _lock:
        _discard()


def _serving() -> "_Server":
    """The server, started if there is none (or it is gone)."""
    global _server
    if _server is not None and _server.process.poll() is not None:
        _discard()
    if _server is None:
        _server = _Server()
    return _server


def _discard() -> None:
    global _server
    if _server is not None:
        _server.close()
        _server = None


class _Server:
    """The launcher's side: the server process, spoken to by lines on its stdin and stdout."""

    def __init__(self):
        from core import private, settings

        self.ready = threading.Event()
        log = private.in_home("logs") / "forkserver.log"
        with private.append(log) as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "core.forkserver"],
                cwd=settings.REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                start_new_session=True,  # a Ctrl-C in the dashboard's terminal is not meant for it
            )
        threading.Thread(target=self._wait_until_ready, daemon=True).start()

    def _wait_until_ready(self) -> None:
        if self.process.stdout.readline().strip() == "ready":
            self.ready.set()

    def fork(self, run_id: int, log: Path) -> int:
        self.process.stdin.write(json.dumps({"run": run_id, "log": str(log), "environment": dict(os.environ)}) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer.isdigit():
            raise ValueError(f"the fork server answered {answer!r}")
        return int(answer)

    def close(self) -> None:
        try:
            self.process.stdin.close()  # it exits when its input ends
            self.process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()


_lock = threading.Lock()
_server: _Server | None = None


# -- the server process ----------------------------------------------------------------------------


def serve() -> int:
    """Import the engine, say "ready", then fork a worker for each request read (a JSON line: the run,
    its log, the launcher's environment), answering with its pid; exit when the input ends."""
    import core.cli  # noqa: F401 - everything a worker imports

    _warm_up()
    gc.freeze()  # a worker's collections then skip the imported objects, instead of copying every page they sit on
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers leave no zombie behind
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(_fork_worker(int(request["run"]), Path(request["log"]), request["environment"]), flush=True)
    return 0


def _warm_up() -> None:
    """Go once through the first steps of a worker, so that what they load on first use (tiktoken's
    encoding, genai-prices' price data, the SDK's config parser, the OpenAI client's resources, the
    HTTP transports) is loaded here, once: a call to a closed loopback port with each client, which
    fails at once. Leaves no thread or loop behind."""
    import asyncio
    import contextlib

    import openai
    from sqlalchemy.engine import make_url

    from core import labeling, pricing, settings, tokens
    from core.labelstudio import LabelStudioClient, LabelStudioError

    closed = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback
    tokens.count("")
    labeling.read('<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="a"/></Choices></View>')  # the SDK's config parser
    pricing.list_price("gpt-4o-mini")  # about 50 ms the first time in a process: the price data loaded
    if make_url(settings.load().database_url).get_backend_name() == "postgresql":
        import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401 - psycopg and its dialect: about 75 ms otherwise
    with contextlib.suppress(LabelStudioError):
        LabelStudioClient(closed, "warm-up").check()

    async def ask() -> None:
        client = openai.AsyncOpenAI(api_key="warm-up", base_url=f"{closed}/v1", max_retries=0, timeout=2.0)
        with contextlib.suppress(openai.APIError):
            await client.chat.completions.create(model="warm-up", messages=[{"role": "user", "content": "."}])
        await client.close()

    asyncio.run(ask())


def _fork_worker(run_id: int, log: Path, environment: dict[str, str]) -> int:
    """Fork the run's worker and return its pid (the kernel reaps it: SIGCHLD is ignored here)."""
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        os.environ.clear()
        os.environ.update(environment)
        _become_worker(run_id, log)
    return pid


def _become_worker(run_id: int, log: Path) -> None:
    code = 1
    try:
        from core import private

        private.folder(log.parent)
        out = private.open_file(log, os.O_WRONLY | os.O_APPEND)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        print(f"{datetime.now(timezone.utc).isoformat()} worker {os.getpid()} forked by the fork server for run {run_id}", flush=True)
        from core.cli import main

        code = main(["runs", "work", str(run_id)])
    except SystemExit as leaving:
        code = leaving.code if isinstance(leaving.code, int) else 1
    except BaseException:  # noqa: BLE001 - a worker's crash goes to its log, like a fresh process's
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(serve())
