"""What a run says when it ends: a run with no answer failed (and has no accuracy), failures grouped
by why with an example each, a retry of only the failed tasks, a run answered from earlier calls,
and two runs compared with or without ground truth. Real Label Studio, stand-in over HTTP, and the
command line in a child process where the exit code matters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core import keys, prompts, runs, settings
from core.evaluation import evaluate
from core.labelstudio import NewTask
from core.local_labelstudio import free_port
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import wilson_by_hand
from tests.standin import Reply

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
LABELS = ("Positive", "Negative", "Neutral")
CALL_COST = (100 * 0.15 + 5 * 0.60) / 1e6


def number_of(request) -> int:
    return int(request.user_text.split("review number ")[1].split("\n")[0])


def right_answers(request):
    return Reply.json({"sentiment": LABELS[number_of(request) % 3]}, usage=(100, 5))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=settings.REPO_ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(6)]
    project, ids = make_project(CHOICES_CONFIG, tasks)
    return project, ids


def version(project, **settings_):
    return prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini", **settings_)


def run(v, ids, **options) -> runs.RunView:
    return runs.execute(runs.create(v, ids, kind="evaluate", label_config=CHOICES_CONFIG, **options).id)


def test_a_run_whose_every_call_failed_is_failed_with_its_cause_and_no_accuracy(project):
    proj, ids = project
    closed = free_port()
    keys.add("away", "openai-compatible", base_url=f"http://127.0.0.1:{closed}/v1")
    v = prompts.create(proj.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="away", model="gpt-4o-mini")
    ended = run(v, ids[:3])
    assert (ended.status, ended.done, ended.failed) == ("failed", 0, 3)
    example = f"Could not connect to http://127.0.0.1:{closed} (connection refused, after retries); check that the model's server is running."
    assert ended.status_reason == f"All 3 tasks failed: 3 provider unreachable (e.g. task {ids[0]}: {example})"
    summary = evaluate.summary(ended.id)
    assert summary["status"] == "failed" and summary["accuracy"] is None
    assert summary["failures"] == [{"kind": "unreachable", "label": "provider unreachable", "count": 3, "example": example, "example_task": ids[0]}]
    assert evaluate.history("sentiment", proj.id) == []  # a failed run puts no point on the chart


def test_the_evaluate_command_exits_non_zero_and_says_failed_when_nothing_was_answered(project, standin):
    proj, ids = project
    prompts.create(proj.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-unknown")
    done = cli("evaluate", "--prompt", "sentiment", "--json")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "failed" and document["accuracy"] is None and document["completed"] == 0
    assert document["accuracy_interval"] is None  # no answer, no interval either
    assert document["failures"][0]["kind"] == "unknown_model" and document["failures"][0]["count"] == 6
    assert "error: run" in done.stderr and "All 6 tasks failed: 6 unknown model" in done.stderr


def test_failures_are_grouped_by_kind_with_an_example_and_only_they_are_retried(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"review number {n}", "channel": "web"}, [(choice(LABELS[n % 3]), True)]) for n in range(8)]
    tasks[6] = NewTask({"text": "review number 6"}, [(choice(LABELS[0]), True)])  # no channel
    tasks[7] = NewTask({"text": "review number 7"}, [(choice(LABELS[1]), True)])
    proj, ids = make_project(CHOICES_CONFIG, tasks)
    v = prompts.create(proj.id, "sentiment", template=TEMPLATE + "\nvia {channel}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")

    def first_time(request):
        n = number_of(request)
        if n == 0:
            return Reply.json({"sentiment": "Ecstatic"}, usage=(100, 5))
        if n == 1:
            return Reply.text('{"sentiment": "Posi', usage=(100, 5))
        if n == 2:
            return Reply.error(429, "slow down", retry_after=0.05)
        return right_answers(request)

    standin.respond_with(first_time)
    ended = run(v, ids)
    assert (ended.status, ended.done, ended.failed) == ("completed", 3, 5)
    found = {g.kind: (g.count, g.example_task) for g in runs.failures_of(ended.id)}
    assert found == {"missing_field": (2, ids[6]), "unknown_label": (1, ids[0]), "invalid_answer": (1, ids[1]), "rate_limit": (1, ids[2])}
    (missing,) = [g for g in runs.failures_of(ended.id) if g.kind == "missing_field"]
    assert (missing.label, missing.example) == ("data field missing from the task", "The task has no field 'channel'; its fields are: text.")

    shown = cli("runs", "show", str(ended.id))
    assert shown.returncode == 0, shown.stderr
    assert "failed: 5 of 8 tasks; `python -m core runs retry" in shown.stdout
    assert f"  2 data field missing from the task, e.g. task {ids[6]}: The task has no field 'channel'; its fields are: text." in shown.stdout
    assert f"  1 label not in the config, e.g. task {ids[0]}: The answer breaks the schema at sentiment: 'Ecstatic' is not one of" in shown.stdout

    standin.respond_with(right_answers)
    sent_before = standin.request_count
    retried = cli("runs", "retry", str(ended.id), "--json")
    assert retried.returncode == 0, retried.stderr
    again = runs.get(ended.id)
    assert (again.status, again.done, again.failed) == ("completed", 6, 2)  # the two without a channel still fail
    assert sorted(number_of(r) for r in standin.requests[sent_before:]) == [0, 1, 2]  # only the failed calls went again
    assert json.loads(retried.stdout)["accuracy"] == pytest.approx(6 / 8)


def test_a_run_answered_from_earlier_calls_costs_nothing_and_says_what_it_saved(project, standin):
    proj, ids = project
    v = version(proj)
    standin.respond_with(right_answers)
    first = run(v, ids)
    again = run(v, ids)
    assert standin.request_count == 6
    document = again.document()
    assert (document["from_cache"], document["cost_usd"], document["saved_usd"]) == (6, 0.0, pytest.approx(first.cost_usd))
    assert first.cost_usd == pytest.approx(6 * CALL_COST)
    shown = cli("runs", "show", str(again.id))
    assert "6 of 6 answers from earlier identical calls, not paid again (saved $0.000108)" in shown.stdout
    assert "cost $0.00" in shown.stdout


def test_two_runs_without_ground_truth_are_compared_answer_by_answer(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    proj, ids = make_project(CHOICES_CONFIG, [NewTask({"text": f"review number {n}"}) for n in range(4)])
    v1 = version(proj)
    standin.respond_with(lambda r: Reply.json({"sentiment": "Positive"}))
    a = run(v1, ids)
    v2 = prompts.new_version("sentiment", proj.id, template=TEMPLATE + "\nBe careful.")
    standin.respond_with(lambda r: Reply.json({"sentiment": "Negative" if number_of(r) < 2 else "Positive"}))
    b = run(v2, ids)

    changes = evaluate.compare_answers(a.id, b.id)
    assert changes.verdict() == "v2 changed 2 of 4 answers from v1 (no ground truth on these tasks to say which is right)."
    assert [(c.task_id, c.answer_a, c.answer_b) for c in changes.changed] == [(ids[0], "Positive", "Negative"), (ids[1], "Positive", "Negative")]

    same = evaluate.compare_answers(b.id, run(v2, ids, cache="fresh").id)
    assert same.verdict().startswith(f"run ") and same.tasks == 4

    compared = cli("runs", "compare", str(a.id), str(b.id), "--json")
    assert compared.returncode == 0, compared.stderr
    document = json.loads(compared.stdout)
    assert (document["tasks_in_common"], document["answers_changed"], document["ground_truth"]) == (4, 2, None)
    assert document["changed"][0]["text"] == "review number 0" and document["changed"][0]["link"].endswith(f"/data?task={ids[0]}")


def test_a_later_run_without_ground_truth_does_not_hide_a_versions_scored_point(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)] if n < 2 else []) for n in range(4)]
    proj, ids = make_project(CHOICES_CONFIG, tasks)
    v1 = version(proj)
    standin.respond_with(right_answers)
    scored = run(v1, ids[:2])
    run(v1, ids[2:])  # later, on tasks without ground truth: no accuracy
    low, high = wilson_by_hand(2, 2)
    interval = {"low": pytest.approx(low), "high": pytest.approx(high), "method": "wilson", "level": 0.95}
    assert evaluate.history("sentiment", proj.id) == [
        {"version": "v1", "accuracy": 1.0, "accuracy_interval": interval, "tasks": 2, "run_id": scored.id, "subset": ""}
    ]
    assert evaluate.overview(proj.id)[0] == {
        "project": proj.id, "prompt": "sentiment", "latest": "v1", "model": "gpt-4o-mini", "best": "v1", "accuracy": 1.0,
        "accuracy_interval": interval, "on": "2 ground-truth tasks"
    }
