"""Bulk prediction on the real Label Studio with the stand-in: exactly one prediction per task and
version, only-missing, delete and to-annotations, Label Studio going away mid-run, and the estimate."""

from __future__ import annotations

import collections
import threading

import pytest

from core import keys, predict, prompts, runs
from core.labelstudio import NewPrediction, NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import wait_until
from tests.standin import Reply

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"


def number_of(request) -> int:
    return int(request.user_text.split("customer review ")[1].split(":")[0])


@pytest.fixture
def project(use_labelstudio, make_project, standin, ls_client):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"customer review {n}: the parcel came {'late' if n % 2 else 'early'} and {'broken' if n % 3 else 'fine'}"}) for n in range(10)]
    project, ids = make_project(CHOICES_CONFIG, tasks)
    version = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return project, ids, version, ls_client


def predictions_of(ls_client, project_id, model_version):
    return collections.Counter(p.task_id for p in ls_client.predictions(project_id) if p.model_version == model_version)


def run_prediction(version, ls_client, **options):
    chosen = predict.scope(version, ls_client, only_missing=options.pop("only_missing", False))
    return runs.execute(predict.start(version, chosen, ls_client, **options).id, client=ls_client)


def test_every_task_gets_exactly_one_prediction_with_the_answers_confidence(project, standin):
    project, ids, version, ls_client = project
    standin.respond_with(lambda r: Reply.json({"sentiment": "Negative"}, confidence={"sentiment": 0.82}))
    run = run_prediction(version, ls_client, concurrency=4)
    assert (run.status, run.done, predict.written(run.id)) == ("completed", 10, 10)
    stored = [p for p in ls_client.predictions(project.id)]
    assert collections.Counter(p.task_id for p in stored) == {t: 1 for t in ids}
    assert {(p.model_version, round(p.score, 4)) for p in stored} == {("sentiment@v1", 0.82)}
    assert all(p.result == choice("Negative") for p in stored)

    again = run_prediction(version, ls_client)  # a second run of the version still leaves exactly one
    assert again.status == "completed" and standin.request_count == 10  # answered from the store
    assert predictions_of(ls_client, project.id, "sentiment@v1") == {t: 1 for t in ids}


def test_only_missing_sends_calls_only_for_tasks_without_one(project, standin):
    project, ids, version, ls_client = project
    standin.respond_with(lambda r: Reply.json({"sentiment": "Positive"}))
    runs.execute(runs.create(version, ids[:6], kind="predict", label_config=CHOICES_CONFIG).id, client=ls_client)
    assert standin.request_count == 6

    chosen = predict.scope(version, ls_client, only_missing=True)
    assert chosen.task_ids == ids[6:] and chosen.already_predicted == 6
    run = runs.execute(predict.start(version, chosen, ls_client).id, client=ls_client)
    assert run.done == 4 and sorted(number_of(r) for r in standin.requests[6:]) == [6, 7, 8, 9]
    assert predictions_of(ls_client, project.id, "sentiment@v1") == {t: 1 for t in ids}
    assert predict.scope(version, ls_client, only_missing=True).task_ids == []


def test_delete_and_to_annotations_touch_only_their_version(project, standin):
    project, ids, version, ls_client = project
    ls_client.import_predictions(project.id, [NewPrediction(ids[0], choice("Neutral"), "other@v1")])
    standin.respond_with(lambda r: Reply.json({"sentiment": "Positive"}))
    run_prediction(version, ls_client)
    assert {v.name: v.prediction_count for v in predict.model_versions(ls_client, project.id)} == {"sentiment@v1": 10, "other@v1": 1}

    assert predict.to_annotations(version, ls_client) == 10
    tasks = {t.id: t for t in ls_client.tasks(project.id)}
    assert all([a.result for a in tasks[t].annotations] == [choice("Positive")] for t in ids)

    assert predict.delete(version, ls_client) == 10
    assert {v.name: v.prediction_count for v in predict.model_versions(ls_client, project.id)} == {"other@v1": 1}
    assert [a.result for a in next(iter(ls_client.tasks(project.id, ids=[ids[0]]))).annotations] == [choice("Positive")]


def test_label_studio_going_away_mid_run_loses_and_doubles_nothing(project, standin, labelstudio):
    project, ids, version, ls_client = project
    standin.respond_with(lambda r: Reply.json({"sentiment": "Negative"}, delay=0.3))
    run = predict.start(version, predict.scope(version, ls_client), ls_client, concurrency=2)
    worker = threading.Thread(target=runs.execute, args=(run.id,), kwargs={"client": ls_client})
    worker.start()
    try:
        wait_until(lambda: predict.written(run.id) >= 2, timeout=60)  # some predictions are in before it goes
        labelstudio.stop()
        wait_until(lambda: runs.get(run.id).done >= 8, timeout=60)  # answers keep coming while it is away
    finally:
        labelstudio.start()
    worker.join(timeout=180)
    finished = runs.get(run.id)
    assert (finished.status, finished.done, predict.written(run.id)) == ("completed", 10, 10)
    assert predictions_of(ls_client, project.id, "sentiment@v1") == {t: 1 for t in ids}
    assert standin.request_count == 10


def test_the_estimate_is_within_a_quarter_of_the_real_cost(project, standin):
    project, ids, version, ls_client = project
    standin.respond_with(lambda r: Reply.json({"sentiment": ("Positive", "Negative", "Neutral")[number_of(r) % 3]}))
    chosen = predict.scope(version, ls_client)
    guess = predict.estimate(version, chosen, ls_client, sample=4)
    assert (guess.tasks, guess.sampled, guess.cached, guess.answer_basis) == (10, 4, 0, "the length of a typical answer")
    run = runs.execute(predict.start(version, chosen, ls_client).id, client=ls_client)
    assert guess.cost_usd == pytest.approx(run.cost_usd, rel=0.25)
    assert guess.input_tokens == pytest.approx(run.input_tokens, rel=0.25)

    prompts.new_version("sentiment", project.id, template=TEMPLATE + "\nBe brief.")
    later = predict.estimate(prompts.version("sentiment", None, project.id), chosen, ls_client)
    assert later.answer_basis == "past runs of this prompt" and later.output_tokens == pytest.approx(run.output_tokens, rel=0.25)


def test_an_estimate_counts_what_the_cache_will_answer_as_free(project, standin):
    project, ids, version, ls_client = project
    run_prediction(version, ls_client)
    guess = predict.estimate(version, predict.scope(version, ls_client), ls_client)
    assert (guess.cached, guess.input_tokens, guess.cost_usd) == (10, 0, 0.0)



def test_the_estimate_says_what_will_be_sent_scaled_from_its_sample_and_that_it_is_an_estimate():
    sampled = predict.Estimate(tasks=100, input_tokens=7000, output_tokens=700, cost_usd=0.01, sampled=50, unrenderable=5, cached=10, answer_basis="past runs of this version")
    assert (sampled.answered_before, sampled.failing, sampled.calls) == (20, 10, 70)
    assert sampled.describe() == (
        "About 70 of the 100 tasks will be sent to the model; about 20 will be answered from earlier identical calls at no cost; "
        "about 10 cannot be put into the prompt and will fail unpaid. "
        "Estimated from 50 sampled tasks: prompts counted with tiktoken, answer length from past runs of this version."
    )
    all_cached = predict.Estimate(tasks=50, input_tokens=0, output_tokens=0, cost_usd=0.0, sampled=50, unrenderable=0, cached=50, answer_basis="past runs of this version")
    assert all_cached.describe() == "0 of the 50 tasks will be sent to the model; 50 will be answered from earlier identical calls at no cost. Nothing will be paid."
