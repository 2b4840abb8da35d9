"""Prompter's own commands started in the background: a run's or a search's worker outlives the page
(or command) that started it, in a session of its own, its output appended to a private log (logs
hold task text and model answers: 0700/0600)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core import private, settings


def log_path(name: str) -> Path:
    return private.in_home("logs") / name


def start(command: list[str], log: Path) -> int:
    """Start ``python -m core <command>``; return its pid."""
    with private.append(log) as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "core", *command],
            cwd=settings.REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # not stopped with the dashboard's process group
        )
    return process.pid
