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


LOADED_BY_A_COMMAND = """
import runpy, sys
sys.argv = ["core", *sys.argv[1:]]
try:
    runpy.run_module("core", run_name="__main__")
except SystemExit:
    pass
print("loaded:", *(m for m in ("openai", "pandas", "label_studio_sdk.label_interface") if m in sys.modules), file=sys.stderr)
"""


def _loaded(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED_BY_A_COMMAND, *args], cwd=settings.REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120
    )
    return set(done.stderr.strip().splitlines()[-1].split()[1:])


def test_a_command_that_calls_no_model_and_reads_no_config_starts_without_loading_them():
    # OpenAI's client, the SDK's config parser and pandas are over half of a start's second and more
    assert _loaded("--help") == set()
    assert _loaded("keys", "list") == set()


def test_a_command_that_calls_a_model_loads_openai_and_nothing_else_it_does_not_use(standin):
    done = _cli("keys", "add", "local", "--provider", "openai-compatible", "--base-url", standin.base_url)
    assert done.returncode == 0, done.stderr
    assert _loaded("keys", "test", "local") == {"openai"}


def test_prices_set_with_a_batch_price_and_list_them():
    done = _cli("prices", "set", "my-azure-gpt4o", "--input", "2.5", "--output", "10", "--batch-input", "1.25", "--batch-output", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Saved the price of my-azure-gpt4o: $2.5 per million input tokens, $10 per million output tokens; Batch API calls $1.25 and $5.\n"
    listed = {row["model"]: row for row in json.loads(_cli("prices", "list", "--json").stdout)["prices"]}
    assert listed["my-azure-gpt4o"] == {
        "model": "my-azure-gpt4o", "input_per_million": 2.5, "cached_input_per_million": None, "output_per_million": 10.0,
        "batch_input_per_million": 1.25, "batch_output_per_million": 5.0, "source": "yours",
    }  # fmt: skip

    half = _cli("prices", "set", "my-azure-gpt4o", "--input", "3", "--output", "12", "--batch-input", "1.5")
    assert half.returncode == 1 and half.stdout == ""
    assert half.stderr.startswith("error: batch price: give both the input and the output price") and half.stderr.count("\n") == 1
    kept = {row["model"]: row for row in json.loads(_cli("prices", "list", "--json").stdout)["prices"]}["my-azure-gpt4o"]
    assert (kept["input_per_million"], kept["batch_input_per_million"]) == (2.5, 1.25)  # nothing of the refused one saved
