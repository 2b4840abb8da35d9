"""The model matrix against the real Label Studio and the stand-in: models that err at different rates
and cost different prices; the table's figures, the frontier and the saved version are checked
against values computed here by hand."""

from __future__ import annotations

import json

import pytest

from core import connection, keys, prompts, runs
from core.evaluation import charts, evaluate, matrix, subsets
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import open_page, table, wilson_by_hand
from tests.standin import Reply
from tests.test_cli import _cli

LABELS = ("Positive", "Negative", "Neutral")
TASKS = 20
USAGE = (200, 10)  # tokens in and out of every call
# which task numbers each model answers wrongly: 6 of 20, 2 of 20, 5 of 20
WRONG = {"gpt-4o-mini": {0, 3, 6, 9, 12, 15}, "gpt-4o": {4, 14}, "gpt-4o-2024-08-06": {1, 5, 8, 11, 17}}
PRICE = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4o-2024-08-06": (2.50, 10.00)}  # list prices per million


def number_of(request) -> int:
    return int(request.user_text.split("review number ")[1].split("\n")[0])


def by_model(request):
    n = number_of(request)
    label = LABELS[(n + (n in WRONG[request.model])) % 3]
    return Reply.json({"sentiment": label}, usage=USAGE)


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.models = tuple(WRONG)
    standin.respond_with(by_model)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(TASKS)]
    found, ids = make_project(CHOICES_CONFIG, tasks, title="matrix check")
    v1 = prompts.create(found.id, "sentiment", template="Sentiment of: {text}\nAnswer with {labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return found, ids, v1


def run_matrix(found, v1, models=tuple(WRONG)):
    client = connection.client()
    started = matrix.start(v1, subsets.choose(client, found.id, "ground-truth"), client.label_config(found.id), [("team", m) for m in models])
    for run in started:
        runs.execute(run.id)
    return started[0].subset["group"]


def test_the_table_and_the_frontier_match_hand_counts(project, standin, ls_client):
    found, ids, v1 = project
    group = run_matrix(found, v1)
    table = {row["model"]: row for row in matrix.rows(group)}
    assert list(table) == list(WRONG)
    for model, wrong in WRONG.items():
        row = table[model]
        right = TASKS - len(wrong)
        assert (row["status"], row["scored"], row["accuracy"]) == ("completed", TASKS, pytest.approx(right / TASKS))
        low, high = wilson_by_hand(right, TASKS)
        assert (row["accuracy_interval"]["low"], row["accuracy_interval"]["high"]) == (pytest.approx(low), pytest.approx(high))
        per_call = (USAGE[0] * PRICE[model][0] + USAGE[1] * PRICE[model][1]) / 1e6
        assert row["cost_per_1000"] == pytest.approx(per_call * 1000)
        assert row["paid_usd"] == pytest.approx(per_call * TASKS)
        assert row["tokens_per_task"] == sum(USAGE)
        assert row["latency_p50_ms"] is not None and row["latency_p95_ms"] >= row["latency_p50_ms"]
    # the cheap model and the accurate one are each unbeaten; the snapshot costs as much as gpt-4o and errs more
    assert {m for m, row in table.items() if row["on_frontier"]} == {"gpt-4o-mini", "gpt-4o"}

    sent = collections_by_model(standin.requests)
    assert sent == {model: TASKS for model in WRONG}  # one call per task per model, every one on its own model
    # the matrix's answers are not the version's: nothing is written to Label Studio, no figure of v1 moves
    assert ls_client.predictions(found.id) == []
    assert evaluate.history("sentiment", found.id) == []

    chart = charts.chart_data(charts.accuracy_against_cost(matrix.rows(group)))
    assert {(r["model"], r["frontier"]) for r in chart} == {
        ("team · gpt-4o-mini", "on the frontier"), ("team · gpt-4o", "on the frontier"), ("team · gpt-4o-2024-08-06", "beaten by another model")
    }


def collections_by_model(requests) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in requests:
        counts[request.model] = counts.get(request.model, 0) + 1
    return counts


def test_a_model_is_saved_as_the_next_version_with_the_prompt_unchanged(project, standin):
    found, ids, v1 = project
    group = run_matrix(found, v1, models=("gpt-4o-mini", "gpt-4o"))
    best = max(matrix.rows(group), key=lambda r: r["accuracy"])
    prompts.new_version("sentiment", found.id, template="Something else: {text}")  # v2: the latest differs from v1
    v3 = matrix.save_as_version(best["run"])
    assert (v3.number, v3.provider_key, v3.model, v3.template) == (3, "team", "gpt-4o", v1.template)
    assert v3.note.startswith("v1 on team · gpt-4o, from the model matrix")


def test_the_matrix_refuses_an_unknown_key_before_starting_anything(project):
    found, ids, v1 = project
    client = connection.client()
    subset = subsets.choose(client, found.id, "ground-truth")
    with pytest.raises(matrix.MatrixError, match="no saved key 'nobody'"):
        matrix.start(v1, subset, client.label_config(found.id), [("team", "gpt-4o"), ("nobody", "gpt-4o")])
    assert runs.runs(variants=True) == []
    with pytest.raises(matrix.MatrixError, match="not KEY:MODEL"):
        matrix.parse_models("team:gpt-4o,gpt-4o-mini")


def test_variants_run_beside_the_version_and_each_once(project):
    found, ids, v1 = project
    client = connection.client()
    config = client.label_config(found.id)
    runs.create(v1, ids, kind="evaluate", label_config=config)  # the version's own run, pending
    first = runs.create(v1, ids, kind="evaluate", label_config=config, variant={"model": "gpt-4o"})
    with pytest.raises(runs.RunError, match="with gpt-4o already has a run going"):
        runs.create(v1, ids, kind="evaluate", label_config=config, variant={"model": "gpt-4o"})
    with pytest.raises(runs.RunError, match="Only an evaluation"):
        runs.create(v1, ids, kind="predict", label_config=config, variant={"model": "gpt-4o"})
    with pytest.raises(runs.RunError, match="temperature cannot be changed"):
        runs.create(v1, ids, kind="evaluate", label_config=config, variant={"temperature": 1.0})
    assert first.variant == {"model": "gpt-4o"} and runs.version_of(first.id).model == "gpt-4o"


def test_the_command_prints_the_matrix_and_saves_a_model(project, standin):
    found, ids, v1 = project
    shown = _cli("evaluate", "--prompt", "sentiment", "--models", "team:gpt-4o-mini,team:gpt-4o", "--json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert [(m["model"], m["accuracy"], m["on_frontier"]) for m in document["models"]] == [("gpt-4o-mini", 0.7, True), ("gpt-4o", 0.9, True)]
    text = _cli("evaluate", "--prompt", "sentiment", "--models", "team:gpt-4o-mini,team:gpt-4o")
    assert text.returncode == 0, text.stderr
    assert "70.0%" in text.stdout and "90.0%" in text.stdout and "* frontier" in text.stdout
    assert len(standin.requests) == 2 * TASKS  # the second matrix came from the cache
    saved = _cli("runs", "save-as-version", str(document["models"][1]["run"]), "--json")
    assert saved.returncode == 0, saved.stderr
    assert json.loads(saved.stdout) == {"prompt": "sentiment", "version": 2, "provider_key": "team", "model": "gpt-4o"}


def test_the_evaluate_page_shows_the_matrix_and_saves_a_model(project, standin):
    found, ids, v1 = project
    run_matrix(found, v1)
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=found.id)
    shown = table(app, "model", "status", "accuracy", "accuracy 95%", "scored", "per 1,000 tasks", "tokens / task", "latency p50", "latency p95", "frontier")
    assert list(shown["model"]) == [f"team · {m}" for m in WRONG]
    assert list(shown["accuracy"]) == ["70.0%", "90.0%", "75.0%"]
    low, high = wilson_by_hand(18, TASKS)
    assert shown["accuracy 95%"][1] == f"{low * 100:.1f}–{high * 100:.1f}%"
    assert list(shown["per 1,000 tasks"]) == ["$0.036", "$0.6", "$0.6"]  # (200 x price in + 10 x price out) / 1e6 x 1,000
    assert list(shown["frontier"]) == ["★", "★", ""]
    group = matrix.groups("sentiment", found.id)[0]["group"]
    on_gpt_4o = next(r.id for r in matrix.runs_of(group) if r.variant["model"] == "gpt-4o")
    app.selectbox(key=f"ev_matrix_keep_{group}").set_value(on_gpt_4o).run()
    app.button(key=f"ev_matrix_save_{group}").click().run()
    assert not app.exception, app.exception
    v2 = prompts.version("sentiment", 2, found.id)
    assert (v2.model, v2.template) == ("gpt-4o", v1.template)
    assert any("Saved sentiment@v2 on team · gpt-4o" in s.value for s in app.success)
