"""`make run`: Label Studio (ours, unless one is configured), the demo project, then the dashboard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from core import connection, demo, deployment, settings, store
from core.local_labelstudio import LocalLabelStudio


def run() -> int:
    conf = settings.load()
    try:
        serving = deployment.load()
        refusal = deployment.refusal(serving)
    except deployment.DeploymentError as error:
        refusal = str(error)
    if refusal:
        print(f"[prompter] Not starting: {refusal}", file=sys.stderr, flush=True)
        return 2
    store.engine()  # create or upgrade the database before anything reads it
    server = backend = None
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        backend = _start_backend(conf)
        if conf.uses_external_labelstudio:
            _report_external()
            _say(f"Prompter's ML backend listens on {conf.backend_host}:{conf.backend_port}; Label Studio must reach it at {conf.backend_url} (set PROMPTER_BACKEND_URL).")
        else:
            server = LocalLabelStudio(
                conf.local_labelstudio_dir, conf.local_labelstudio_port, conf.local_labelstudio_venv
            )
            _say(f"Starting Label Studio on {server.url} (the first start takes about 30 s) ...")
            server.start()
            project, created = demo.ensure_project(connection.client())
            _say(
                f"Label Studio is up at {server.url}: log in as {server.credentials.username} "
                f"(password in {conf.local_labelstudio_dir / 'credentials.json'})."
            )
            _say(
                f"Demo project {'created' if created else 'found'}: #{project.id} {project.title!r}, "
                f"{project.task_count} tasks, {project.ground_truth_count} ground truth."
            )
            interactive, _ = demo.ensure_interactive_project(connection.client())
            _wait_for_backend(backend, conf)
            _say(demo.publish_interactive(connection.client(), interactive.id, conf.backend_url))
        _say(serving.describe())
        _say(f"Prompter dashboard: {serving.expected_address()}  (Ctrl-C stops everything)")
        return _serve_dashboard(serving)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(backend)
        if server is not None and server.started_here:
            _say("Stopping Label Studio ...")
            server.stop()


def _start_backend(conf: settings.Settings) -> subprocess.Popen:
    """Prompter's ML backend beside Label Studio: Label Studio asks it for a published version's answers."""
    _say(f"Starting Prompter's ML backend on {conf.backend_host}:{conf.backend_port} ...")
    return subprocess.Popen(
        [sys.executable, "-m", "core", "backend", "serve", "--host", conf.backend_host, "--port", str(conf.backend_port)],
        cwd=settings.REPO_ROOT,
        env=dict(os.environ),
    )


def _wait_for_backend(backend: subprocess.Popen, conf: settings.Settings, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and backend.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{conf.backend_port}/health", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    _say(f"Warning: Prompter's ML backend did not start on port {conf.backend_port} (taken? set PROMPTER_BACKEND_PORT); Label Studio cannot ask it.")


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def _serve_dashboard(serving: deployment.Deployment) -> int:
    dashboard = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", str(settings.REPO_ROOT / "app.py"),
            "--server.address", serving.address,
            "--server.port", str(serving.port),
            "--server.headless", "true",
            "--secrets.files", str(deployment.secrets_file()),
        ],
        cwd=settings.REPO_ROOT,
        env={**os.environ, **deployment.SERVER_ENVIRONMENT},
    )
    try:
        return dashboard.wait()
    finally:
        _stop(dashboard)


def _report_external() -> None:
    status = connection.status()
    if status.ok:
        _say(f"Using Label Studio {status.version} at {status.url} ({len(status.projects)} projects).")
    else:
        _say(f"Warning: {status.error}")


def _stop_on_sigterm(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _say(message: str) -> None:
    print(f"[prompter] {message}", flush=True)
