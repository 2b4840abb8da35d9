"""`python -m core prompts ...` against the real Label Studio and the stand-in model: what scripts
and users at a terminal rely on."""

from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace

import pytest

from core import keys, messages
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.standin import Reply
from tests.test_cli_keys import cli

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
SYSTEM = "You label product reviews."


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    """A sentiment project (its second task has ground truth) and the key 'team' for the stand-in."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(
        CHOICES_CONFIG,
        [NewTask({"text": "No opinion"}), NewTask({"text": "I love it"}, [(choice("Positive"), True)])],
    )
    return SimpleNamespace(id=project.id, plain_task=ids[0], truth_task=ids[1])


@pytest.fixture
def files(tmp_path):
    (tmp_path / "template.txt").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "system.txt").write_text(SYSTEM, encoding="utf-8")
    return tmp_path


def create(project, files, *extra: str, key: str = "team"):
    return cli(
        "prompts", "create", "--project", str(project.id), "--name", "intent", "--key", key, "--model", "gpt-4o-mini",
        "--template-file", str(files / "template.txt"), *extra,
    )


def ok_json(done) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_create_then_version_list_and_show(project, files):
    created = ok_json(create(project, files, "--system-file", str(files / "system.txt"), "--temperature", "0.2", "--note", "first", "--json"))
    v1 = {
        "prompt": "intent", "version": 1, "project_id": project.id, "template": TEMPLATE, "system_message": SYSTEM,
        "controls": ["sentiment"], "provider_key": "team", "model": "gpt-4o-mini", "temperature": 0.2,
        "max_output_tokens": None, "examples": None, "samples": None, "note": "first", "model_version": "intent@v1", "created_at": created["created_at"],
    }
    assert created == v1
    assert datetime.fromisoformat(created["created_at"]).tzinfo is not None

    changed = cli("prompts", "version", "--prompt", "intent", "--model", "gpt-4o")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout == f"Saved intent v2 (intent@v2) for project {project.id}.\n"

    (latest,) = ok_json(cli("prompts", "list", "--json"))["prompts"]
    # Only the model changed: the template, system message and settings are v1's; the note is not carried over.
    assert latest == {**v1, "version": 2, "model": "gpt-4o", "note": None, "model_version": "intent@v2", "created_at": latest["created_at"]}
    assert ok_json(cli("prompts", "list", "--project", str(project.id + 1000), "--json")) == {"prompts": []}

    assert ok_json(cli("prompts", "show", "intent", "--version", "1", "--json")) == v1

    shown = cli("prompts", "show", "intent")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"intent v2 (intent@v2), project {project.id}")
    assert "model: gpt-4o with key 'team'" in shown.stdout
    assert f"--- system message ---\n{SYSTEM}\n" in shown.stdout
    assert shown.stdout.endswith(f"--- template ---\n{TEMPLATE}\n")


@pytest.mark.parametrize(
    "template, key, extra, message",
    [
        ("Classify {review}", "team", [], "error: template: {review} is not a field of this project's tasks; the fields are: text.\n"),
        (TEMPLATE, "team", ["--controls", "sentiment,mood"], "error: controls: The labeling config has no output 'mood' that Prompter can fill (it can fill: sentiment).\n"),
        (TEMPLATE, "nobody", [], "error: provider_key: no key is named 'nobody'"),
    ],
)
def test_a_draft_the_project_cannot_use_is_refused_and_nothing_is_saved(project, files, template, key, extra, message):
    (files / "template.txt").write_text(template, encoding="utf-8")
    done = create(project, files, *extra, key=key)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(message), done.stderr
    assert ok_json(cli("prompts", "list", "--json")) == {"prompts": []}


def test_unreadable_template_files_say_which_file_and_what_to_do(tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"Sch\xf6n: {text}")
    common = ["prompts", "create", "--project", "1", "--name", "n", "--key", "k", "--model", "m", "--template-file"]

    broken = cli(*common, str(tmp_path / "latin1.txt"))
    assert broken.returncode == 1
    assert broken.stderr == f"error: --template-file {tmp_path / 'latin1.txt'} is not UTF-8 text (byte 0xf6 at position 3); save it as UTF-8.\n"

    missing = cli(*common, str(tmp_path / "nowhere.txt"))
    assert missing.returncode == 1
    assert missing.stderr == f"error: --template-file {tmp_path / 'nowhere.txt'} does not exist; give the path of a UTF-8 text file.\n"


def test_a_version_without_changes_is_refused():
    done = cli("prompts", "version", "--prompt", "intent", "--note", "same again")
    assert done.returncode == 1 and done.stderr.startswith("error: version: give at least one change")


def test_try_prints_the_messages_sent_the_answer_verdict_tokens_and_cost(project, files, standin):
    assert create(project, files, "--system-file", str(files / "system.txt")).returncode == 0
    standin.script(Reply.json({"sentiment": "Positive"}, usage=(100, 5), confidence={"sentiment": 0.93}))

    tried = ok_json(cli("prompts", "try", "intent", "--task", str(project.truth_task), "--json"))
    expected_messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Sentiment of: I love it\nAnswer with sentiment: one of: Positive, Negative, Neutral"},
    ]
    assert tried == {
        "prompt": "intent", "version": 1, "project_id": project.id, "task_id": project.truth_task, "messages": expected_messages,
        "raw": '{"sentiment": "Positive"}', "parsed": {"sentiment": "Positive"}, "regions": choice("Positive"),
        "error": None, "ground_truth": choice("Positive"), "matches": {"sentiment": True}, "correct": True,
        "input_tokens": 100, "output_tokens": 5, "cost_usd": pytest.approx((100 * 0.15 + 5 * 0.60) / 1e6),
        "latency_ms": tried["latency_ms"], "confidence": pytest.approx(0.93),
    }
    assert tried["latency_ms"] > 0
    assert standin.requests[-1].messages == expected_messages

    standin.script(Reply.json({"sentiment": "Negative"}, usage=(100, 5)))
    human = cli("prompts", "try", "intent", "--next-ground-truth")
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith(f"intent@v1 on task {project.truth_task}\n")
    assert messages.text_parts(expected_messages) in human.stdout
    assert '{"sentiment": "Negative"}' in human.stdout
    assert "verdict: wrong (not as the ground truth: sentiment)" in human.stdout
    assert "tokens: 100 in, 5 out; cost: $0.000018;" in human.stdout


def test_a_failed_try_exits_non_zero_and_still_shows_the_raw_answer(project, files, standin):
    assert create(project, files).returncode == 0
    standin.script(Reply.text('{"sentiment": "Posi'))
    done = cli("prompts", "try", "intent", "--task", str(project.plain_task), "--json")
    assert done.returncode == 1
    assert done.stderr.startswith("error: The answer is not valid JSON") and done.stderr.count("\n") == 1
    tried = json.loads(done.stdout)
    assert tried["raw"] == '{"sentiment": "Posi' and tried["parsed"] is None and tried["regions"] == []
    assert tried["error"] in done.stderr and tried["correct"] is None  # the task has no ground truth
