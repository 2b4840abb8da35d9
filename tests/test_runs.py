"""core.runs against the real Label Studio and the stand-in model: items stored as they finish,
predictions written and replaced per version, cache, retries, cancel, resume after a killed worker.
Each test runs on SQLite and on PostgreSQL (``database_backend``), the worker processes included."""

from __future__ import annotations

import collections
import os
import signal
import threading

import pytest

from core import keys, prompts, runs, workers
from core.labelstudio import NewPrediction, NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import wait_until
from tests.standin import Reply

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
LABELS = ("Positive", "Negative", "Neutral")


def task_text(n: int) -> str:
    return f"review number {n}"


def number_of(request) -> int:
    return int(request.user_text.split("review number ")[1].split("\n")[0])


@pytest.fixture
def setup(database_backend, use_labelstudio, make_project, standin, ls_client):
    """A project of 12 tasks (review number 0..11), each with ground truth LABELS[n % 3], and a v1."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": task_text(n)}, [(choice(LABELS[n % 3]), True)]) for n in range(12)]
    project, ids = make_project(CHOICES_CONFIG, tasks)
    version = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    config = ls_client.label_config(project.id)

    def new_run(task_ids=None, **options):
        return runs.create(version, task_ids or ids, kind="evaluate", label_config=config, **options)

    return project, ids, version, new_run


def right_answers(request):
    return Reply.json({"sentiment": LABELS[number_of(request) % 3]}, usage=(100, 5))


def test_a_run_stores_every_item_and_writes_one_prediction_per_task(setup, standin, ls_client):
    project, ids, version, new_run = setup

    def answers(request):
        n = number_of(request)
        if n == 4:
            return Reply.text('{"sentiment": "Posi', usage=(100, 5))  # broken JSON
        if n == 7:
            return Reply.json({"sentiment": "Ecstatic"}, usage=(100, 5))  # a label the config does not have
        return Reply.json({"sentiment": LABELS[(n + (n == 2)) % 3]}, usage=(100, 5))  # task 2 answered wrongly

    standin.respond_with(answers)
    run = runs.execute(new_run().id)
    assert (run.status, run.total, run.done, run.failed) == ("completed", 12, 10, 2)
    assert (run.input_tokens, run.output_tokens) == (1200, 60)  # failed answers were paid for too
    assert run.cost_usd == pytest.approx(12 * (100 * 0.15 + 5 * 0.60) / 1e6)

    items = {ids.index(i.task_id): i for i in runs.items(run.id)}
    assert items[4].status == "failed" and items[4].error.startswith("The answer is not valid JSON") and items[4].raw_output == '{"sentiment": "Posi'
    assert "'Ecstatic' is not one of" in items[7].error
    assert items[2].regions == choice("Positive") and items[2].ground_truth == choice("Neutral")
    assert items[0].regions == choice("Positive") and items[0].ground_truth == choice("Positive")

    predictions = ls_client.predictions(project.id)
    assert sorted(p.task_id for p in predictions) == sorted(ids[n] for n in range(12) if n not in (4, 7))
    assert {p.model_version for p in predictions} == {"sentiment@v1"}
    assert standin.request_count == 12


def test_a_second_run_is_answered_from_the_cache_and_replaces_only_its_own_predictions(setup, standin, ls_client):
    project, ids, version, new_run = setup
    ls_client.import_predictions(project.id, [NewPrediction(ids[0], choice("Neutral"), "someone-else@v3")])
    standin.respond_with(right_answers)
    runs.execute(new_run().id)
    assert standin.request_count == 12

    again = runs.execute(new_run().id)
    assert standin.request_count == 12  # nothing sent twice
    assert again.status == "completed" and again.done == 12 and again.cost_usd == 0.0  # answered from the store: nothing paid
    assert all(i.from_cache for i in runs.items(again.id))

    subset = runs.execute(new_run(ids[:3]).id)  # replaces this version's predictions on 3 tasks only
    assert subset.done == 3
    mine = collections.Counter(p.task_id for p in ls_client.predictions(project.id) if p.model_version == "sentiment@v1")
    assert mine == {task_id: 1 for task_id in ids}
    others = [p for p in ls_client.predictions(project.id) if p.model_version == "someone-else@v3"]
    assert [(p.task_id, p.result) for p in others] == [(ids[0], choice("Neutral"))]


def test_input_the_provider_served_from_its_prompt_cache_is_paid_at_the_cached_price(setup, standin):
    project, ids, version, new_run = setup
    standin.respond_with(lambda request: Reply.json({"sentiment": LABELS[number_of(request) % 3]}, usage=(1000, 10, 600)))
    run = runs.execute(new_run(ids[:4]).id)
    # gpt-4o-mini: 400 input tokens at $0.15 per million, 600 cached at $0.075, 10 output at $0.60
    per_call = (400 * 0.15 + 600 * 0.075 + 10 * 0.60) / 1e6
    assert run.cost_usd == pytest.approx(4 * per_call) and run.input_tokens == 4000
    assert [(i.cached_input_tokens, i.cost_usd) for i in runs.items(run.id)] == [(600, pytest.approx(per_call))] * 4

    again = runs.execute(new_run(ids[:4]).id)  # answered from the store: nothing paid, the first price is what was saved
    assert again.cost_usd == 0.0 and runs.saved_by_cache(again.id) == pytest.approx(4 * per_call)


def test_rate_limits_and_server_errors_are_retried(setup, standin):
    project, ids, version, new_run = setup
    seen = collections.Counter()

    def flaky(request):
        n = number_of(request)
        seen[n] += 1
        if n == 1 and seen[n] == 1:
            return Reply.error(429, "slow down", retry_after=0.2)
        if n == 2 and seen[n] <= 2:
            return Reply.error(500)
        return right_answers(request)

    standin.respond_with(flaky)
    run = runs.execute(new_run().id)
    assert (run.status, run.done, run.failed) == ("completed", 12, 0)
    assert (seen[1], seen[2], seen[3]) == (2, 3, 1)


def test_a_call_that_keeps_failing_fails_alone_with_its_reason(setup, standin):
    project, ids, version, new_run = setup
    standin.respond_with(lambda r: Reply.error(400, "context length exceeded") if number_of(r) == 5 else right_answers(r))
    run = runs.execute(new_run().id)
    assert (run.status, run.done, run.failed) == ("completed", 11, 1)
    (failed,) = [i for i in runs.items(run.id) if i.status == "failed"]
    assert failed.task_id == ids[5] and failed.error == "The provider answered HTTP 400: context length exceeded."


def test_cancel_stops_sending_and_keeps_what_finished(setup, standin):
    project, ids, version, new_run = setup
    standin.respond_with(lambda r: Reply.json({"sentiment": LABELS[number_of(r) % 3]}, delay=0.3))
    run = new_run(concurrency=2)
    worker = threading.Thread(target=runs.execute, args=(run.id,))
    worker.start()
    wait_until(lambda: runs.get(run.id).done >= 2)
    runs.cancel(run.id)
    worker.join(timeout=30)
    stopped = runs.get(run.id)
    assert stopped.status == "cancelled" and stopped.cancel_requested
    assert 2 <= stopped.done < 12
    sent = standin.request_count
    assert sent <= stopped.done + 2  # at most the calls already out when it was cancelled
    assert len(runs.items(run.id)) == stopped.done

    resumed = runs.execute(run.id)  # a cancelled run can be resumed: it sends only what did not finish
    assert (resumed.status, resumed.done, resumed.cancel_requested) == ("completed", 12, False)
    assert sorted(number_of(r) for r in standin.requests) == list(range(12))  # every task sent exactly once


def test_a_killed_worker_is_resumed_without_sending_a_finished_task_again(setup, standin, ls_client, monkeypatch):
    """On SQLite the run's one worker is killed; on PostgreSQL the worker process that took its chunk
    (none other was alive), and the resume works the chunk again once the dead worker is found silent."""
    monkeypatch.setenv("PROMPTER_WORKER_HEARTBEAT_SECONDS", "0.5")
    project, ids, version, new_run = setup
    standin.respond_with(lambda r: Reply.json({"sentiment": LABELS[number_of(r) % 3]}, delay=0.4))
    run = new_run(concurrency=2)
    pid = runs.launch(run.id)
    wait_until(lambda: runs.get(run.id).done >= 4, timeout=60)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    before = {i.task_id for i in runs.items(run.id)}
    assert runs.get(run.id).status == "running"  # as the dead worker left it

    resumed = workers.execute(run.id)  # as `python -m core runs resume` does
    assert (resumed.status, resumed.done) == ("completed", 12)
    # a request the kill cut short reaches the stand-in without its body: not a call that was sent
    sent = collections.Counter(number_of(r) for r in standin.requests if r.messages)
    assert all(sent[ids.index(t)] == 1 for t in before)  # finished before the kill: never sent again
    assert max(sent.values()) <= 2  # only calls in flight at the kill went twice
    mine = collections.Counter(p.task_id for p in ls_client.predictions(project.id))
    assert mine == {task_id: 1 for task_id in ids}


def test_a_task_that_cannot_be_rendered_fails_alone(database_backend, use_labelstudio, make_project, standin, ls_client):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": "a", "channel": "web"}), NewTask({"text": "b"}), NewTask({"text": "c", "channel": "app"})])
    version = prompts.create(project.id, "p", template="{text} via {channel}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    run = runs.execute(runs.create(version, ids, kind="predict", label_config=CHOICES_CONFIG).id)
    assert (run.status, run.done, run.failed) == ("completed", 2, 1)
    failed = [i for i in runs.items(run.id) if i.status == "failed"]
    assert [(i.task_id, i.error) for i in failed] == [(ids[1], "The task has no field 'channel'; its fields are: text.")]
    assert standin.request_count == 2




def test_a_spending_limit_stops_the_run_before_it_is_passed(setup, standin):
    project, ids, version, new_run = setup
    standin.respond_with(right_answers)  # each call costs (100 * 0.15 + 5 * 0.60) / 1e6 = $0.000018
    run = runs.execute(new_run(concurrency=1, max_cost_usd=0.00005).id)
    assert run.status == "stopped" and run.status_reason == "Stopped before passing the spending limit of $0.00005 (spent $0.000036)."
    assert run.done == 2 and run.cost_usd == pytest.approx(0.000036) and run.cost_usd <= 0.00005
    assert standin.request_count == 2
