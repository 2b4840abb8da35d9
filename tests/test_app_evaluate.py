"""The Evaluate page through AppTest, on the real Label Studio and the stand-in model: a finished run's
figures, tables and chart data are the stored ones; a run started (or resumed) on the page is worked
by a real background worker and its results show when it ends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import connection, keys, prompts, runs, store
from core.evaluation import charts, evaluate, split, subsets
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import chart_rows, open_page, picker, run_picker, table, wait_for_run, wait_until, wilson_by_hand
from tests.standin import Reply

V1 = "Sentiment of: {text}\nAnswer with {labels}"
V2 = "Sentiment of this review: {text}\nAnswer with {labels}"
TRUTH = {"good": "Positive", "bad": "Negative", "meh": "Neutral", "great": "Positive", "awful": "Negative", "fine": "Neutral"}
TASK_COLUMNS = ("task", "text", "ground truth", "answer", "correct", "failed", "error", "link")
HISTORY_COLUMNS = ("run", "version", "status", "subset", "done", "failed", "accuracy", "accuracy 95%", "cost", "started", "started by")
PER_CLASS_COLUMNS = ("label", "precision", "precision 95%", "recall", "recall 95%", "f1", "f1 95%", "support")


def shown(k: int, n: int, percent: bool = False) -> str:
    """A Wilson interval as the page writes it, computed from the formula."""
    low, high = wilson_by_hand(k, n)
    return f"{low * 100:.1f}–{high * 100:.1f}%" if percent else f"{low:.3f}–{high:.3f}"


def answer(request):
    """v1 says Positive unless the text is good, bad or great (3 of 6 right); v2 gets all right but
    'fine' (wrong) and 'awful' (broken JSON, a failed task): 4 of 6."""
    text = request.user_text.split(": ", 1)[1].split("\n")[0]
    if request.user_text.startswith("Sentiment of this review"):
        if text == "awful":
            return Reply.text('{"sentiment": "Nega', usage=(100, 5))
        return Reply.json({"sentiment": "Negative" if text == "fine" else TRUTH[text]}, usage=(100, 5))
    return Reply.json({"sentiment": TRUTH[text] if text in ("good", "bad", "great") else "Positive"}, usage=(100, 5))


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    """A project of six ground-truth tasks and the prompt 'sentiment' with v1 and v2."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(answer)
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": t}, [(choice(label), True)]) for t, label in TRUTH.items()], title="Evaluate page check")
    v1 = prompts.create(project.id, "sentiment", template=V1, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    v2 = prompts.new_version("sentiment", project.id, template=V2)
    return project, dict(zip(TRUTH, ids)), v1, v2


def _evaluate(version) -> runs.RunView:
    client = connection.client()
    subset = subsets.choose(client, version.project_id, "ground-truth")
    return runs.execute(evaluate.start(version, subset, client.label_config(version.project_id)).id)






def test_a_finished_runs_figures_and_chart_data_are_the_stored_ones(project):
    proj, ids, v1, v2 = project
    first, second = _evaluate(v1), _evaluate(v2)
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    assert app.selectbox(key="ev_prompt").value == "sentiment"
    assert run_picker(app).value == second.id  # the newest run

    stored = evaluate.summary(second.id)
    assert (stored["accuracy"], evaluate.summary(first.id)["accuracy"]) == (4 / 6, 3 / 6)
    metrics = {m.label: m for m in app.metric}
    assert metrics["Accuracy"].value == f"{stored['accuracy'] * 100:.1f}%" == "66.7%"
    assert metrics["Accuracy"].delta == "+16.7 points vs v1"
    assert metrics["Completion rate"].value == "83.3%"
    assert metrics["Cost"].value == "$0.000108" and stored["cost_usd"] == pytest.approx(0.000108)  # 6 calls of 100 in, 5 out
    assert metrics["Tokens in / out"].value == "600 / 30"

    # 4 of 6 right: the 95% Wilson interval, from its formula, is 30.0-90.3%
    assert shown(4, 6, percent=True) == "30.0–90.3%"
    assert "Accuracy 66.7% (95% interval 30.0–90.3%) on 6 ground-truth tasks." in [c.value for c in app.caption]
    assert "95% interval 30.0–90.3%" in metrics["Accuracy"].help

    # v2 said Positive for good and great (both Positive), Negative for bad and fine (one right),
    # Neutral for meh (right), and failed on awful (Negative)
    per_class = table(app, *PER_CLASS_COLUMNS).set_index("label")
    assert list(per_class["precision 95%"]) == [shown(2, 2), shown(1, 2), shown(1, 1)]
    assert list(per_class["recall 95%"]) == [shown(2, 2), shown(1, 2), shown(1, 2)]
    figures = [{k: v for k, v in row.items() if not k.endswith("_interval")} for row in stored["metrics"]["sentiment"]["per_class"]]
    assert per_class.reset_index()[["label", "precision", "recall", "f1", "support"]].to_dict("records") == figures
    # F1's interval is the bootstrap's: the page shows the core's
    assert list(per_class["f1 95%"]) == [
        f"{row['f1_interval']['low']:.3f}–{row['f1_interval']['high']:.3f}" for row in stored["metrics"]["sentiment"]["per_class"]
    ]
    scores = table(app, "tasks", "accuracy", "accuracy 95%", "macro_f1", "macro_f1 95%", "micro_f1", "micro_f1 95%")
    assert scores.loc[0, "accuracy 95%"] == shown(4, 6)
    macro = stored["metrics"]["sentiment"]["scores"]["macro_f1_interval"]
    assert macro["low"] < stored["metrics"]["sentiment"]["scores"]["macro_f1"] < macro["high"]
    assert scores.loc[0, "macro_f1 95%"] == f"{macro['low']:.3f}–{macro['high']:.3f}"
    (heatmap,) = chart_rows(app, "rect")
    assert heatmap == charts.chart_data(charts.confusion_heatmap(stored["metrics"]["sentiment"]["confusion"]))
    assert {"truth": "Negative", "predicted": "(failed)", "count": 1, "truth axis": "Negative", "predicted axis": "(failed)"} in heatmap

    (line,) = chart_rows(app, "line", "errorbar")
    (low_1, high_1), (low_2, high_2) = wilson_by_hand(3, 6), wilson_by_hand(4, 6)
    assert line == [  # each version's accuracy with its interval, drawn as an error bar
        {"version": "v1", "accuracy": 0.5, "tasks": 6, "run_id": first.id, "subset": "6 ground-truth tasks", "low": pytest.approx(low_1), "high": pytest.approx(high_1)},
        {"version": "v2", "accuracy": 4 / 6, "tasks": 6, "run_id": second.id, "subset": "6 ground-truth tasks", "low": pytest.approx(low_2), "high": pytest.approx(high_2)},
    ]

    tasks = table(app, *TASK_COLUMNS)
    assert list(tasks["task"]) == sorted(ids.values())
    assert tasks.set_index("task").loc[ids["awful"], "error"].startswith("The answer is not valid JSON")
    assert tasks.set_index("task").loc[ids["good"], "link"] == connection.client().task_url(proj.id, ids["good"])
    app.checkbox(key="ev_wrong_only").check().run()
    assert list(table(app, *TASK_COLUMNS)["task"]) == sorted([ids["fine"], ids["awful"]])
    app.checkbox(key="ev_failed_only").check().run()
    assert list(table(app, *TASK_COLUMNS)["task"]) == [ids["awful"]]
    app.checkbox(key="ev_wrong_only").uncheck()
    app.checkbox(key="ev_failed_only").uncheck()
    app.selectbox(key="ev_class").set_value("Neutral").run()
    assert list(table(app, *TASK_COLUMNS)["task"]) == sorted([ids["meh"], ids["fine"]])

    comparison = evaluate.compare_runs(first.id, second.id)
    assert (picker(app, "Compare").value, picker(app, "with").value) == (first.id, second.id)
    assert comparison.verdict() in [i.value for i in app.info]
    assert comparison.wrong_to_right == [ids["meh"]] and comparison.right_to_wrong == []
    difference = {m.label: m for m in app.metric}["Accuracy difference"]
    assert difference.value == "+16.7 points" and comparison.interval_text() in difference.help
    assert "95% interval" in comparison.verdict() and "p = 1" in comparison.verdict()  # one task flipped: could be noise
    assert any(f"[{ids['meh']}](" in m.value for m in app.markdown if m.value.startswith("**Wrong → right**"))

    history = table(app, *HISTORY_COLUMNS)
    assert list(history["run"]) == [second.id, first.id]
    assert list(history["version"]) == ["v2", "v1"] and list(history["status"]) == ["completed", "completed"]
    assert list(history["accuracy"]) == ["66.7%", "50.0%"] and list(history["accuracy 95%"]) == [shown(4, 6, True), shown(3, 6, True)]
    assert list(history["done"]) == [5, 6] and list(history["failed"]) == [1, 0]
    assert list(history["started by"]) == ["local", "local"]  # personal mode: the local admin started both

    # the older run, picked: its figures, no delta (v1 has no version before it)
    run_picker(app).set_value(first.id).run()
    accuracy = {m.label: m for m in app.metric}["Accuracy"]
    assert (accuracy.value, accuracy.delta) == ("50.0%", "")


def test_run_an_evaluation_on_the_page_and_see_its_results(project):
    proj, ids, v1, v2 = project
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    assert app.selectbox(key="ev_version").value == 2  # the latest
    assert [c.value for c in app.caption if "ground-truth tasks" in c.value] == ["sentiment@v2 (gpt-4o-mini) on 6 ground-truth tasks."]
    assert [i.value for i in app.info] == ["No evaluation of sentiment yet: run one above."]
    app.number_input(key="ev_concurrency").set_value(2)
    app.button(key="ev_start").click().run()
    assert not app.exception, app.exception
    (run,) = runs.runs(prompt="sentiment", project_id=proj.id)
    assert f"Started run {run.id}: sentiment@v2 on 6 ground-truth tasks." in [s.value for s in app.success]
    assert run_picker(app).value == run.id
    assert run.concurrency == 2
    wait_until(lambda: runs.get(run.id).worker_pid is not None)  # a background worker claims it
    assert app.get("progress") and app.button(key="ev_cancel")  # followed live

    finished = wait_for_run(run.id)
    assert (finished.status, finished.done, finished.failed) == ("completed", 5, 1)
    app.run()
    assert not app.exception, app.exception
    assert not app.get("progress")
    assert {m.label: m.value for m in app.metric}["Accuracy"] == "66.7%"
    assert list(table(app, *HISTORY_COLUMNS)["status"]) == ["completed"]


def test_a_run_no_worker_picked_up_is_resumed_from_the_page(project):
    proj, ids, v1, v2 = project
    client = connection.client()
    run = evaluate.start(v1, subsets.choose(client, proj.id, "sample", size=2, seed=3), client.label_config(proj.id))
    with store.writing() as s:  # created a while ago and never launched
        row = s.get(store.Run, run.id)
        row.created_at = store.utcnow() - timedelta(minutes=5)
        s.add(row)
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    assert app.warning[0].value == f"Run {run.id} is pending. No worker has picked it up; resume to start it."
    app.button(key="ev_resume").click().run()
    assert f"Resumed run {run.id}: only tasks without a result are sent." in [s.value for s in app.success]
    assert wait_for_run(run.id).status == "completed"
    app.run()
    assert list(table(app, *HISTORY_COLUMNS)["subset"]) == ["a sample of 2 tasks (seed 3)"]


def test_a_project_without_prompts_points_to_the_prompts_page(use_labelstudio, make_project):
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "hello"})])
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=project.id)
    assert [i.value for i in app.info] == ["This project has no prompts yet: write one on the Prompts page, then evaluate it here."]
    assert not app.button  # nothing to start


def test_the_ground_truth_is_split_on_the_page_and_its_test_part_evaluated(project):
    proj, ids, v1, v2 = project
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    assert app.expander[0].label == "Ground-truth split: none yet"
    app.radio(key="ev_subset").set_value("test").run()
    assert any("no ground-truth split yet" in w.value for w in app.warning)
    assert app.button(key="ev_start").disabled

    app.number_input(key="ev_split_examples").set_value(1)
    app.number_input(key="ev_split_test").set_value(35)  # 35% of 6: 2 tasks
    app.number_input(key="ev_split_seed").set_value(4)
    app.button(key="ev_split").click().run()
    assert not app.exception, app.exception
    made = split.get(proj.id)
    assert {part: len(found) for part, found in made.parts.items()} == {"examples": 1, "development": 3, "test": 2}
    assert made.describe() in [s.value for s in app.success][0]
    assert app.expander[0].label == f"Ground-truth split: {made.describe()}"
    assert not any("no ground-truth split yet" in w.value for w in app.warning)
    assert "sentiment@v2 (gpt-4o-mini) on the test part: 2 ground-truth tasks." in [c.value for c in app.caption]

    # a run on the test part names it wherever the run is listed
    client = connection.client()
    done = runs.execute(evaluate.start(v2, subsets.choose(client, proj.id, "test"), client.label_config(proj.id)).id)
    assert sorted(item.task_id for item in runs.items(done.id)) == made.parts["test"]
    app.run()
    assert list(table(app, *HISTORY_COLUMNS)["subset"]) == ["the test part: 2 ground-truth tasks"]
    assert [o for o in run_picker(app).options if o.startswith(f"run {done.id} ")][0].endswith("the test part: 2 ground-truth tasks")


def test_a_large_evaluation_is_offered_the_batch_api_and_scored_the_same(project, standin, monkeypatch):
    monkeypatch.setenv("PROMPTER_BATCH_OFFER_FROM", "6")
    monkeypatch.setenv("PROMPTER_BATCH_POLL_SECONDS", "0.05")
    proj, ids, v1, v2 = project
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    offered = [c.value for c in app.caption if c.value.startswith("Batch API:")]
    assert len(offered) == 1 and "(saves about" in offered[0] and "50%)" in offered[0]
    app.radio(key="ev_mode").set_value("batch").run()
    app.button(key="ev_start").click().run()
    assert not app.exception, app.exception
    (run,) = runs.runs(prompt="sentiment", project_id=proj.id)
    assert run.mode == "batch"

    finished = wait_for_run(run.id)
    assert (finished.status, finished.done, finished.failed) == ("completed", 5, 1)  # as a live run of v2 scores
    assert standin.request_count == 0 and len(standin.batches.batches) == 1
    app.run()
    assert not app.exception, app.exception
    assert {m.label: m.value for m in app.metric}["Accuracy"] == "66.7%"
    assert run_picker(app).options[0].startswith(f"run {run.id} · v2 · completed · batch · ")


def test_a_small_evaluation_is_not_offered_the_batch_api(project):
    proj, ids, v1, v2 = project
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    assert not [c for c in app.caption if c.value.startswith("Batch API:")]
    assert "ev_mode" not in [r.key for r in app.radio]  # six tasks are below the default 1,000
