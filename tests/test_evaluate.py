"""Evaluation end to end, on the real Label Studio with the stand-in scripted to known right and
wrong answers: subsets, the reported figures, the predictions written, and version comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core import keys, prompts, runs, settings
from core.evaluation import evaluate, subsets
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import wilson_by_hand
from tests.standin import Reply

P, N, U = "Positive", "Negative", "Neutral"
TRUTH = [P, P, P, N, N, N, U, U, U]
ANSWERS = [P, P, N, N, N, None, U, P, U]  # None: a broken answer
TEMPLATE = "Review {text}\nAnswer with {labels}"


def number_of(request) -> int:
    return int(request.user_text.split("Review r")[1].split("\n")[0])


def scripted(answers):
    def reply(request):
        said = answers[number_of(request)]
        return Reply.text('{"sentiment": ', usage=(100, 5)) if said is None else Reply.json({"sentiment": said}, usage=(100, 5))

    return reply


@pytest.fixture
def project(use_labelstudio, make_project, standin, ls_client):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"r{n}"}, [(choice(label), True)]) for n, label in enumerate(TRUTH)]
    tasks.append(NewTask({"text": "r9"}))  # no ground truth: not in the ground-truth subset
    project, ids = make_project(CHOICES_CONFIG, tasks)
    prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return project, ids, ls_client


def run_version(project, ls_client, number=None, kind="ground-truth", **options):
    version = prompts.version("sentiment", number, project.id)
    subset = subsets.choose(ls_client, project.id, kind, **options)
    return runs.execute(evaluate.start(version, subset, ls_client.label_config(project.id)).id)


def test_reported_figures_and_predictions_are_exactly_the_scripted_ones(project, standin):
    project, ids, ls_client = project
    standin.respond_with(scripted(ANSWERS))
    run = run_version(project, ls_client)
    summary = evaluate.summary(run.id)

    assert (summary["tasks"], summary["completed"], summary["failed"], summary["scored"]) == (9, 8, 1, 9)
    assert summary["subset"]["description"] == "9 ground-truth tasks"
    assert summary["accuracy"] == pytest.approx(6 / 9)
    assert summary["completion_rate"] == pytest.approx(8 / 9)
    assert summary["tokens"] == {"input": 900, "output": 45}
    assert summary["cost_usd"] == pytest.approx(9 * (100 * 0.15 + 5 * 0.60) / 1e6)
    assert summary["latency_ms"]["p50"] > 0 and summary["latency_ms"]["p95"] >= summary["latency_ms"]["p50"]

    sentiment = summary["metrics"]["sentiment"]
    per_class = {row["label"]: {k: v for k, v in row.items() if not k.endswith("_interval")} for row in sentiment["per_class"]}
    assert per_class[P] == pytest.approx({"label": P, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert per_class[N] == pytest.approx({"label": N, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert per_class[U] == pytest.approx({"label": U, "precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    confusion = sentiment["confusion"]
    rows = dict(zip(confusion["labels"], confusion["matrix"]))
    columns = confusion["labels"]
    assert {label: dict(zip(columns, rows[label])) for label in (P, N, U)} == {
        P: {P: 2, N: 1, U: 0, "(failed)": 0},
        N: {P: 0, N: 2, U: 0, "(failed)": 1},
        U: {P: 1, N: 0, U: 2, "(failed)": 0},
    }

    written = {p.task_id: p for p in ls_client.predictions(project.id)}
    expected = {ids[n]: answer for n, answer in enumerate(ANSWERS) if answer is not None}
    assert {t: p.result for t, p in written.items()} == {t: choice(a) for t, a in expected.items()}
    assert {p.model_version for p in written.values()} == {"sentiment@v1"}

    rows = evaluate.task_rows(run.id, ls_client)
    wrong = [r["task"] for r in rows if r["correct"] is False]
    assert wrong == [ids[2], ids[5], ids[7]]
    failed = next(r for r in rows if r["failed"])
    assert failed["error"].startswith("The answer is not valid JSON") and failed["link"].endswith(f"task={ids[5]}")


def test_the_tasks_of_a_heatmap_cell_are_those_with_its_truth_and_prediction(project, standin):
    project, ids, ls_client = project
    standin.respond_with(scripted(ANSWERS))
    rows = evaluate.task_rows(run_version(project, ls_client).id)

    def tasks(cell_truth, cell_predicted, **filters):
        return [r["task"] for r in evaluate.filter_rows(rows, cells=[evaluate.Cell("sentiment", cell_truth, cell_predicted)], **filters)]

    # TRUTH  P P P N N N      U U U
    # ANSWERS P P N N N broken U P U
    assert tasks(P, P) == [ids[0], ids[1]]
    assert tasks(P, N) == [ids[2]]
    assert tasks(N, N) == [ids[3], ids[4]]
    assert tasks(N, "(failed)") == [ids[5]]
    assert tasks(U, P) == [ids[7]]
    assert tasks(U, U) == [ids[6], ids[8]]
    assert tasks(P, U) == [] and tasks(U, "(failed)") == []
    # the filters narrow a cell further
    assert tasks(P, P, wrong_only=True) == [] and tasks(U, P, wrong_only=True) == [ids[7]]
    assert tasks(N, N, failed_only=True) == [] and tasks(N, "(failed)", failed_only=True) == [ids[5]]
    assert tasks(P, N, truth=P) == [ids[2]] and tasks(P, N, truth=N) == []
    assert len(evaluate.filter_rows(rows)) == 9  # no cell, no filter: every task


def test_a_heatmap_cell_per_control_narrows_the_tasks_to_those_in_every_cell():
    """Rows as ``task_rows`` makes them for two single-choice controls, sentiment and spam."""
    rows = [
        {"task": 1, "ground truth": "Positive; Yes", "correct": True, "failed": False, "cells": {"sentiment": ("Positive", "Positive"), "spam": ("Yes", "Yes")}},
        {"task": 2, "ground truth": "Positive; No", "correct": False, "failed": False, "cells": {"sentiment": ("Positive", "Negative"), "spam": ("No", "No")}},
        {"task": 3, "ground truth": "Positive; No", "correct": False, "failed": True, "cells": {"sentiment": ("Positive", "(failed)"), "spam": ("No", "(failed)")}},
        {"task": 4, "ground truth": "Positive; Yes", "correct": False, "failed": False, "cells": {"sentiment": ("Positive", "Negative"), "spam": ("Yes", "No")}},
        {"task": 5, "ground truth": "—", "correct": None, "failed": False, "cells": {}},  # no ground truth: in no cell
    ]
    sentiment_wrong = evaluate.Cell("sentiment", "Positive", "Negative")
    spam_missed = evaluate.Cell("spam", "Yes", "No")

    def tasks(*cells, **filters):
        return [r["task"] for r in evaluate.filter_rows(rows, cells=cells, **filters)]

    assert tasks() == [1, 2, 3, 4, 5]
    assert tasks(sentiment_wrong) == [2, 4]
    assert tasks(spam_missed) == [4]
    assert tasks(sentiment_wrong, spam_missed) == [4]
    assert tasks(sentiment_wrong, truth="Positive; No") == [2]
    assert tasks(evaluate.Cell("spam", "No", "(failed)"), failed_only=True, wrong_only=True) == [3]
    assert tasks(evaluate.Cell("sentiment", "Positive", "Positive"), wrong_only=True) == []


def test_the_task_table_says_which_cell_and_filters_it_shows():
    cell = evaluate.Cell("sentiment", "Positive", "Negative")
    assert evaluate.describe_shown(7, 7) == "7 of 7 tasks."
    assert evaluate.describe_shown(3, 7, wrong_only=True) == "3 of 7 tasks."  # the filters are in view above the table
    assert evaluate.describe_shown(2, 7, cells=[cell]) == "2 of 7 tasks: ground truth Positive predicted as Negative (the cell selected on the sentiment heatmap)."
    assert evaluate.describe_shown(1, 7, cells=[cell], wrong_only=True, truth="Positive") == (
        "1 of 7 tasks: ground truth Positive predicted as Negative (the cell selected on the sentiment heatmap), "
        "narrowed further by Wrong only, Ground truth Positive."
    )
    two = [cell, evaluate.Cell("spam", "Yes", "No")]
    assert evaluate.describe_shown(0, 7, cells=two) == (
        "0 of 7 tasks: ground truth Positive predicted as Negative (the cell selected on the sentiment heatmap)"
        " and ground truth Yes predicted as No (the cell selected on the spam heatmap)."
    )


def test_a_better_version_shows_its_gain_and_the_tasks_that_changed(project, standin):
    project, ids, ls_client = project
    standin.respond_with(scripted(ANSWERS))
    first = run_version(project, ls_client)
    prompts.new_version("sentiment", project.id, template=TEMPLATE + "\nThink about the tone.")
    standin.respond_with(scripted(TRUTH))  # v2 gets every task right
    second = run_version(project, ls_client)

    comparison = evaluate.compare_runs(first.id, second.id)
    assert comparison.tasks == 9 and comparison.difference == pytest.approx(3 / 9)
    assert comparison.wrong_to_right == [ids[2], ids[5], ids[7]] and comparison.right_to_wrong == []
    assert comparison.p_value == pytest.approx(0.25)  # 3 discordant pairs, all one way: 2 * 0.5**3
    assert "v2 is 33.3 points better than v1 on 9 tasks" in comparison.verdict()
    assert [(p["version"], round(p["accuracy"], 3)) for p in evaluate.history("sentiment", project.id)] == [("v1", 0.667), ("v2", 1.0)]
    assert evaluate.previous(runs.get(second.id)).id == first.id


def test_subsets_sample_all_and_given_tasks(project, standin):
    project, ids, ls_client = project
    sample = subsets.choose(ls_client, project.id, "sample", size=4, seed=7)
    assert sample.task_ids == subsets.choose(ls_client, project.id, "sample", size=4, seed=7).task_ids  # seeded
    assert len(sample.task_ids) == 4 and set(sample.task_ids) <= set(ids)
    assert subsets.choose(ls_client, project.id, "all").task_ids == sorted(ids)
    assert subsets.choose(ls_client, project.id, "tasks", ids=[ids[9], ids[0]]).task_ids == [ids[9], ids[0]]
    with pytest.raises(subsets.SubsetError, match=f"project {project.id} has no task 999999"):
        subsets.choose(ls_client, project.id, "tasks", ids=[999999])
    with pytest.raises(subsets.SubsetError, match="sample size"):
        subsets.choose(ls_client, project.id, "sample")

    standin.respond_with(lambda r: Reply.json({"sentiment": P}))
    run = run_version(project, ls_client, kind="all")
    summary = evaluate.summary(run.id)
    assert (summary["tasks"], summary["scored"]) == (10, 9)  # the task without ground truth is run, not scored


def test_a_project_without_ground_truth_is_scored_against_its_annotations_and_says_so(use_labelstudio, make_project, ls_client):
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": "a"}, [(choice(P), False)]), NewTask({"text": "b"})])
    subset = subsets.choose(ls_client, project.id)
    assert subset.task_ids == [ids[0]] and subset.truth == "annotations"
    assert subset.description == "1 annotated tasks" and "No annotation in this project is marked ground truth" in subset.note
    bare, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "c"})])
    with pytest.raises(subsets.SubsetError, match="has no annotated tasks to evaluate against"):
        subsets.choose(ls_client, bare.id)


def test_the_evaluate_command_prints_one_json_document_and_runs_can_be_listed(project, standin):
    project, ids, ls_client = project
    standin.respond_with(scripted(ANSWERS))
    done = _cli("evaluate", "--prompt", "sentiment", "--concurrency", "4", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert {k: document[k] for k in ("prompt", "version", "model_version", "tasks", "completed", "failed")} == {
        "prompt": "sentiment", "version": 1, "model_version": "sentiment@v1", "tasks": 9, "completed": 8, "failed": 1,
    }
    assert document["accuracy"] == pytest.approx(6 / 9) and document["completion_rate"] == pytest.approx(8 / 9)
    low, high = wilson_by_hand(6, 9)  # 6 of 9: 35.4-87.9%
    assert document["accuracy_interval"] == {"low": pytest.approx(low), "high": pytest.approx(high), "method": "wilson", "level": 0.95}
    assert document["tokens"] == {"input": 900, "output": 45} and set(document["latency_ms"]) == {"p50", "p95"}
    assert [row["label"] for row in document["metrics"]["sentiment"]["per_class"]] == [P, N, U]
    assert "9/9 (1 failed)" in done.stderr  # the progress bar

    listed = json.loads(_cli("runs", "list", "--json").stdout)["runs"]
    assert [(r["run_id"], r["status"], r["kind"]) for r in listed] == [(document["run_id"], "completed", "evaluate")]
    shown = _cli("runs", "show", str(document["run_id"]))
    assert shown.returncode == 0 and f"accuracy: 66.7% (95% interval {low * 100:.1f}–{high * 100:.1f}%) on 9 scored tasks" in shown.stdout
    again = _cli("runs", "resume", str(document["run_id"]))
    assert again.returncode == 1 and "is already completed" in again.stderr

    cached = json.loads(_cli("evaluate", "--prompt", "sentiment", "--json").stdout)
    # the cache answered the 8 good answers; the broken one is never cached, so it alone is sent again
    assert standin.request_count == 10 and cached["cost_usd"] == pytest.approx((100 * 0.15 + 5 * 0.60) / 1e6)


def test_a_failing_subset_is_one_clear_error(project):
    project, ids, ls_client = project
    done = _cli("evaluate", "--prompt", "sentiment", "--subset", "sample")
    assert done.returncode == 1 and done.stderr.strip() == "error: sample size: give the number of tasks to sample, e.g. 50."


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=settings.REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=180)
