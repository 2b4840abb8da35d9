"""What the Evaluate and Predict pages say about a run's outcome (AppTest, real Label Studio, stand-in):
answers from earlier calls and what they saved, failures grouped by why with a retry of only those,
the cache choice, and two runs compared without ground truth."""

from __future__ import annotations

import pytest

from core import keys, prompts, runs
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import open_page, run_picker, table, wait_for_run
from tests.standin import Reply

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
LABELS = ("Positive", "Negative", "Neutral")
CALL_COST = (100 * 0.15 + 5 * 0.60) / 1e6


def number_of(request) -> int:
    return int(request.user_text.split("review number ")[1].split("\n")[0])


def right(request):
    return Reply.json({"sentiment": LABELS[number_of(request) % 3]}, usage=(100, 5))


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(4)]
    project, ids = make_project(CHOICES_CONFIG, tasks, title="Outcomes page check")
    version = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return project, ids, version


def evaluate_run(version, ids, **options) -> runs.RunView:
    return runs.execute(runs.create(version, ids, kind="evaluate", label_config=CHOICES_CONFIG, **options).id)


def test_a_run_answered_from_earlier_calls_says_so_and_what_it_saved(project, standin):
    proj, ids, version = project
    standin.respond_with(right)
    evaluate_run(version, ids)
    again = evaluate_run(version, ids)
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    assert run_picker(app).value == again.id
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Cost"] == "$0.00" and metrics["Accuracy"] == "100.0%"
    assert "Tokens in / out" not in metrics and "Latency p50" not in metrics  # nothing was called
    assert f"4 of 4 answers from earlier calls: $0.00 (saved ${4 * CALL_COST:.6f})." in [c.value for c in app.caption]


def test_failures_are_grouped_on_the_page_and_only_they_are_retried(project, standin):
    proj, ids, version = project
    standin.respond_with(lambda r: Reply.json({"sentiment": "Ecstatic"}) if number_of(r) < 2 else right(r))
    ended = evaluate_run(version, ids)
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    assert "2 of 4 tasks failed: 2 label not in the config." in [w.value for w in app.warning]
    groups = table(app, "why", "tasks", "example task", "example").to_dict("records")
    assert [(g["why"], g["tasks"], g["example task"]) for g in groups] == [("label not in the config", 2, ids[0])]
    assert groups[0]["example"].startswith("The answer breaks the schema at sentiment: 'Ecstatic' is not one of")

    standin.respond_with(right)
    app.button(key="ev_retry").click().run()
    assert not app.exception, app.exception
    done = wait_for_run(ended.id)
    assert (done.status, done.done, done.failed) == ("completed", 4, 0)
    assert sorted(number_of(r) for r in standin.requests[4:]) == [0, 1]  # only the failed tasks went again


def test_the_cache_choice_on_the_page_reaches_the_run(project, standin):
    proj, ids, version = project
    standin.respond_with(right)
    evaluate_run(version, ids)
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    app.selectbox(key="ev_cache").set_value("fresh").run()
    app.button(key="ev_start").click().run()
    assert not app.exception, app.exception
    started = runs.runs(prompt="sentiment")[0]
    done = wait_for_run(started.id)
    assert (done.cache, done.cached, standin.request_count) == ("fresh", 0, 8)


def test_two_runs_without_ground_truth_show_the_answers_that_changed(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    proj, ids = make_project(CHOICES_CONFIG, [NewTask({"text": f"review number {n}"}) for n in range(3)], title="No truth")
    v1 = prompts.create(proj.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    standin.respond_with(lambda r: Reply.json({"sentiment": "Positive"}))
    a = evaluate_run(v1, ids)
    v2 = prompts.new_version("sentiment", proj.id, template=TEMPLATE + "\nThink twice.")
    standin.respond_with(lambda r: Reply.json({"sentiment": "Negative" if number_of(r) == 1 else "Positive"}))
    b = evaluate_run(v2, ids)
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=proj.id)
    assert "v2 changed 1 of 3 answers from v1 (no ground truth on these tasks to say which is right)." in [i.value for i in app.info]
    changed = table(app, "task", "text", f"run {a.id}", f"run {b.id}", "link").to_dict("records")
    assert [(c["task"], c["text"], c[f"run {a.id}"], c[f"run {b.id}"]) for c in changed] == [(ids[1], "review number 1", "Positive", "Negative")]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Accuracy"] == "—"
    assert "No accuracy: no ground truth on these tasks." in [c.value for c in app.caption]


def test_predict_preselects_the_best_evaluated_version_and_asks_before_an_unevaluated_one(project, standin):
    proj, ids, version = project
    standin.respond_with(right)
    evaluate_run(version, ids)  # v1: 4 of 4 right
    prompts.new_version("sentiment", proj.id, template=TEMPLATE + "\nBe brief.")
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=proj.id)
    picker = app.selectbox(key="pr_version")
    assert picker.value == 1  # the best on ground truth, not the latest
    assert picker.options == ["v2 · not evaluated yet", "v1 · accuracy 100.0% on 4 tasks"]
    assert "v1 was never evaluated" not in " ".join(w.value for w in app.warning) and not app.button(key="pr_start").disabled

    picker.set_value(2).run()
    assert "v2 was never evaluated on ground truth; v1 scored 100% on 4 tasks." in [w.value for w in app.warning]
    assert app.button(key="pr_start").disabled
    app.checkbox(key="pr_confirm_unevaluated_2").check().run()
    assert not app.button(key="pr_start").disabled
