"""`python -m core`: JSON on stdout, one-sentence errors on stderr with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from core import settings
from core.labelstudio import NewTask
from core.local_labelstudio import free_port
from tests.conftest import CHOICES_CONFIG, choice


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=settings.REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )


def test_projects_list_json(use_labelstudio, make_project):
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "yay"}, [(choice("Positive"), True)])], title="cli check")
    done = _cli("projects", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {p["id"]: p for p in json.loads(done.stdout)["projects"]}
    assert listed[project.id] == {
        "id": project.id, "title": "cli check", "task_count": 1, "annotated_count": 1,
        "ground_truth_count": 1, "prediction_count": 0,
    }

    table = _cli("projects", "list")
    assert table.returncode == 0 and "cli check" in table.stdout


def test_unreachable_label_studio_is_an_error_exit(monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-token-123")
    done = _cli("projects", "list", "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: Cannot reach Label Studio") and done.stderr.count("\n") == 1
    assert "secret-token-123" not in done.stderr


def test_no_command_prints_help():
    done = _cli()
    assert done.returncode == 2 and "projects" in done.stdout
