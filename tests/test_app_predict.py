"""The Predict page through AppTest, on the real Label Studio and the stand-in model: the estimate is
the one ``predict.estimate`` makes; a run started on the page is worked by a real background worker,
followed live, and its finished state and predictions show when it ends; model versions' predictions
are turned into annotations or deleted, after a confirmation, one version at a time."""

from __future__ import annotations


import pytest
from streamlit.testing.v1 import AppTest

from core import connection, keys, predict, prompts, runs
from core.formatting import usd
from core.labelstudio import NewPrediction, NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import open_page, run_picker, table, wait_for_run, wait_until
from tests.standin import Reply

TEXTS = ["good", "bad", "meh", "great", "awful", "fine", "lovely", "dull"]
HISTORY_COLUMNS = ("run", "version", "status", "scope", "done", "failed", "written", "cost", "started", "started by")
MODEL_VERSION_COLUMNS = ("model version", "predictions")


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    """A project of eight tasks (no annotations) and the prompt 'sentiment' v1, which the stand-in
    answers 'Positive' for every task, a little slowly."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(lambda request: Reply.json({"sentiment": "Positive"}, usage=(100, 5), delay=0.2))
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": t}) for t in TEXTS], title="Predict page check")
    version = prompts.create(project.id, "sentiment", template="Sentiment of: {text}\nAnswer with {labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return project, ids, version






def _metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}





def _annotations(ls_client, project_id: int) -> int:
    return sum(len(t.annotations) for t in ls_client.tasks(project_id))


def test_estimate_start_follow_and_finish_a_prediction_run(project):
    proj, ids, v1 = project
    client = connection.client()
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=proj.id)
    assert app.selectbox(key="pr_prompt").value == "sentiment"
    assert app.selectbox(key="pr_version").value == 1
    assert [i.value for i in app.info] == ["No prediction run of sentiment yet: start one above.", "This project has no predictions yet."]

    # the estimate is predict.estimate's for the same scope
    guess = predict.estimate(v1, predict.scope(v1, client), client)
    assert (guess.tasks, guess.sampled) == (8, 8) and guess.input_tokens > 0 and guess.cost_usd
    metrics = _metrics(app)
    assert metrics["Tasks"] == "8"
    assert metrics["Tokens to pay for (in / out)"] == f"{guess.input_tokens:,} / {guess.output_tokens:,}"
    assert metrics["Estimated cost"] == usd(guess.cost_usd)
    assert (
        "sentiment@v1 (gpt-4o-mini) on all 8 tasks. 8 of the 8 tasks will be sent to the model. "
        "Prompts counted with tiktoken on every task; answer length from the length of a typical answer."
    ) in [c.value for c in app.caption]

    # v1 was never evaluated: the page says so and asks before it spends
    assert [w.value for w in app.warning] == ["v1 was never evaluated on ground truth."]
    assert app.button(key="pr_start").disabled
    app.checkbox(key="pr_confirm_unevaluated_1").check().run()

    # start: a worker takes the run, and the page follows it
    app.number_input(key="pr_concurrency").set_value(1)
    assert not app.button(key="pr_start").disabled
    app.button(key="pr_start").click().run()
    assert not app.exception, app.exception
    (run,) = runs.runs(prompt="sentiment", project_id=proj.id, kind="predict")
    assert f"Started run {run.id}: sentiment@v1 on all 8 tasks." in [s.value for s in app.success]
    assert run.concurrency == 1 and run.max_cost_usd is None
    wait_until(lambda: runs.get(run.id).worker_pid is not None)  # a background worker claims it
    assert run_picker(app).value == run.id
    assert app.get("progress") and app.button(key="pr_cancel")  # followed live
    assert app.button(key="pr_start").disabled  # one run of a version at a time

    finished = wait_for_run(run.id)
    assert (finished.status, finished.done, finished.failed) == ("completed", 8, 0)
    app.run()
    assert not app.exception, app.exception
    assert not app.get("progress")
    metrics = _metrics(app)
    assert (metrics["Done"], metrics["Failed"], metrics["Written to Label Studio"]) == ("8 of 8", "0", "8")
    assert metrics["Cost"] == usd(finished.cost_usd)
    assert f"Run {run.id} finished: 8 predictions of sentiment@v1 written to Label Studio, 0 tasks failed." in [s.value for s in app.success]
    history = table(app, *HISTORY_COLUMNS)
    assert history.drop(columns=["cost", "started"]).to_dict("records") == [
        {"run": run.id, "version": "v1", "status": "completed", "scope": "all 8 tasks", "done": 8, "failed": 0, "written": 8, "started by": "local"}
    ]
    assert table(app, *MODEL_VERSION_COLUMNS).to_dict("records") == [{"model version": "sentiment@v1", "predictions": 8}]

    # only missing: nothing left to do
    app.checkbox(key="pr_only_missing").check().run()
    assert not app.exception, app.exception
    assert _metrics(app)["Tasks"] == "0"
    assert "Nothing to do: every task already has a prediction of sentiment@v1." in [i.value for i in app.info]
    assert any("8 tasks already have a prediction of this version." in c.value for c in app.caption)
    assert app.button(key="pr_start").disabled


def test_a_run_stopped_by_the_spending_limit_says_why(project):
    proj, ids, v1 = project
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=proj.id)
    app.number_input(key="pr_concurrency").set_value(1)
    # one call costs $0.000018 (100 in, 5 out at gpt-4o-mini's price): a second would pass $0.00003
    app.number_input(key="pr_max_cost").set_value(0.00003)
    app.checkbox(key="pr_confirm_unevaluated_1").check().run()
    app.button(key="pr_start").click().run()
    assert not app.exception, app.exception
    (run,) = runs.runs(prompt="sentiment", project_id=proj.id, kind="predict")
    assert run.max_cost_usd == 0.00003

    stopped = wait_for_run(run.id)
    assert (stopped.status, stopped.done) == ("stopped", 1)
    app.run()
    assert f"Run {run.id} is stopped. {stopped.status_reason}" in [w.value for w in app.warning]
    assert stopped.status_reason.startswith("Stopped before passing the spending limit of $0.00003")
    assert _metrics(app)["Done"] == "1 of 8" and _metrics(app)["Written to Label Studio"] == "1"
    assert app.button(key="pr_resume")


def test_predictions_to_annotations_and_delete_one_model_version(project, ls_client):
    proj, ids, v1 = project
    client = connection.client()
    assert runs.execute(predict.start(v1, predict.scope(v1, client), client).id).status == "completed"
    ls_client.import_predictions(proj.id, [NewPrediction(ids[0], choice("Neutral"), "other@v1")])
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=proj.id)
    assert table(app, *MODEL_VERSION_COLUMNS).to_dict("records") == [
        {"model version": "sentiment@v1", "predictions": 8},
        {"model version": "other@v1", "predictions": 1},
    ]
    assert app.selectbox(key="pr_model_version").value == "sentiment@v1"

    # to annotations: asks first, then creates them
    app.button(key="pr_convert").click().run()
    assert questions(app) == ["Create 8 annotations from the predictions of sentiment@v1?"]
    assert _annotations(ls_client, proj.id) == 0
    app.button(key="pr_convert_confirm").click().run()
    assert not app.exception, app.exception
    assert "Created 8 annotations from the predictions of sentiment@v1." in [s.value for s in app.success]
    assert not questions(app)
    tasks = list(ls_client.tasks(proj.id))
    assert [len(t.annotations) for t in tasks] == [1] * 8
    assert all(t.annotations[0].result[0]["value"] == {"choices": ["Positive"]} for t in tasks)

    # delete: asks first, then removes only this version's predictions
    app.button(key="pr_delete").click().run()
    assert questions(app) == ["Delete the 8 predictions of sentiment@v1? Other model versions' predictions stay."]
    app.button(key="pr_delete_confirm").click().run()
    assert not app.exception, app.exception
    assert "Deleted 8 predictions of sentiment@v1." in [s.value for s in app.success]
    assert table(app, *MODEL_VERSION_COLUMNS).to_dict("records") == [{"model version": "other@v1", "predictions": 1}]
    assert [p.model_version for p in ls_client.predictions(proj.id)] == ["other@v1"]
    assert _annotations(ls_client, proj.id) == 8  # the annotations made from them stay

    # a model version that is no saved prompt version: by its name
    assert app.selectbox(key="pr_model_version").value == "other@v1"
    app.button(key="pr_convert").click().run()
    assert questions(app) == ["Create 1 annotations from the predictions of other@v1?"]
    app.button(key="pr_convert_confirm").click().run()
    assert "Created 1 annotations from the predictions of other@v1." in [s.value for s in app.success]
    assert _annotations(ls_client, proj.id) == 9
    app.button(key="pr_delete").click().run()
    app.button(key="pr_delete_confirm").click().run()
    assert "Deleted 1 predictions of other@v1." in [s.value for s in app.success]
    assert ls_client.predictions(proj.id) == []
    assert "This project has no predictions yet." in [i.value for i in app.info]


def test_a_project_without_prompts_points_to_the_prompts_page(use_labelstudio, make_project):
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "hello"})])
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=project.id)
    assert [i.value for i in app.info] == [
        "This project has no prompts yet: write one on the Prompts page, then predict with it here.",
        "This project has no predictions yet.",
    ]
    assert not app.button  # nothing to start


def questions(app) -> list[str]:
    """The page's warnings other than the standing one that v1 was never evaluated."""
    return [w.value for w in app.warning if not w.value.startswith("v1 was never evaluated")]


def test_the_model_version_picker_starts_on_the_version_just_predicted(project):
    proj, ids, v1 = project
    client = connection.client()
    assert runs.execute(predict.start(v1, predict.scope(v1, client), client).id).status == "completed"
    v2 = prompts.new_version("sentiment", proj.id, template="Sentiment, carefully: {text}\nAnswer with {labels}")
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=proj.id)
    app.selectbox(key="pr_version").set_value(2).run()
    assert app.selectbox(key="pr_model_version").value == "sentiment@v1"  # the only one in Label Studio yet
    app.checkbox(key="pr_confirm_unevaluated_2").check().run()
    app.button(key="pr_start").click().run()
    (run,) = [r for r in runs.runs(prompt="sentiment", kind="predict") if r.version == 2]
    wait_for_run(run.id)
    app.run()
    assert not app.exception, app.exception
    assert table(app, *MODEL_VERSION_COLUMNS).to_dict("records") == [
        {"model version": "sentiment@v1", "predictions": 8},
        {"model version": "sentiment@v2", "predictions": 8},
    ]
    assert app.selectbox(key="pr_model_version").value == v2.model_version
    # a version picked by hand stays picked
    app.selectbox(key="pr_model_version").set_value("sentiment@v1").run()
    app.run()
    assert app.selectbox(key="pr_model_version").value == "sentiment@v1"


def test_a_large_run_is_offered_the_batch_api_with_its_saving_and_wait_and_runs_through_it(project, standin, monkeypatch):
    monkeypatch.setenv("PROMPTER_BATCH_OFFER_FROM", "8")  # the eight tasks are "large" here
    monkeypatch.setenv("PROMPTER_BATCH_POLL_SECONDS", "0.05")
    proj, ids, v1 = project
    client = connection.client()
    guess = predict.estimate(v1, predict.scope(v1, client), client)
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=proj.id)
    assert app.radio(key="pr_mode").value == "live"  # offered, not chosen for the user
    # gpt-4o-mini's Batch API list price is half its live price, input and output alike
    offered = next(c.value for c in app.caption if c.value.startswith("Batch API:"))
    assert f"an estimated {usd(guess.cost_usd / 2)} instead of {usd(guess.cost_usd)} live (saves about {usd(guess.cost_usd / 2)}, 50%)" in offered
    assert "within 24 hours (no batch of this key has finished yet" in offered

    app.radio(key="pr_mode").set_value("batch").run()
    assert _metrics(app)["Estimated cost (Batch API)"] == usd(guess.cost_usd / 2)
    app.checkbox(key="pr_confirm_unevaluated_1").check().run()
    app.button(key="pr_start").click().run()
    assert not app.exception, app.exception
    (run,) = runs.runs(prompt="sentiment", project_id=proj.id, kind="predict")
    assert run.mode == "batch"

    finished = wait_for_run(run.id)
    assert (finished.status, finished.done) == ("completed", 8)
    assert standin.request_count == 0 and [len(b.lines) for b in standin.batches.batches.values()] == [8]
    assert finished.cost_usd == pytest.approx(8 * (100 * 0.075 + 5 * 0.30) / 1e6)
    app.run()
    assert not app.exception, app.exception
    assert run_picker(app).options[0].startswith(f"run {run.id} · v1 · completed · batch · ")
    assert _metrics(app)["Cost"] == usd(finished.cost_usd) and _metrics(app)["Written to Label Studio"] == "8"
    # the next offer says how long this key's batch took
    assert any("this key's last finished batch took" in c.value for c in app.caption)
