"""Batch runs (core.batch_runs) against the real Label Studio and the stand-in's Batches endpoints:
parts submitted within the limit, answers stored and written as each part ends, the batch price, a
worker killed while its batches wait (the next one follows them, sending nothing twice), a lost
create answer, cancel, expiry with resubmit, the spending limit, the cache, a refusing provider."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from core import batch_runs, keys, pricing, prompts, runs
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import wait_until
from tests.proxy import FaultProxy
from tests.standin import Reply

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
LABELS = ("Positive", "Negative", "Neutral")
TASKS = 10
PART = 4  # requests per batch in these tests: 10 tasks make parts of 4, 4 and 2

# gpt-4o-mini at the Batch API's list price (genai-prices): $0.075 input, $0.30 output per million
# tokens, cached input at the input price. Each answer here: 1000 input tokens (600 cached), 10 output.
BATCH_COST_PER_CALL = (1000 * 0.075 + 10 * 0.30) / 1e6
LIVE_COST_PER_CALL = (400 * 0.15 + 600 * 0.075 + 10 * 0.60) / 1e6


def number_of(text: str) -> int:
    return int(text.split("review number ")[1].split("\n")[0])


def right_answers(request):
    return Reply.json({"sentiment": LABELS[number_of(request.user_text) % 3]}, usage=(1000, 10, 600))


@pytest.fixture
def setup(use_labelstudio, make_project, standin, ls_client, monkeypatch):
    """A project of 10 tasks (review number 0..9), ground truth LABELS[n % 3], and its v1 on the stand-in."""
    monkeypatch.setenv("PROMPTER_BATCH_POLL_SECONDS", "0.02")
    monkeypatch.setenv("PROMPTER_BATCH_MAX_REQUESTS", str(PART))
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(TASKS)]
    project, ids = make_project(CHOICES_CONFIG, tasks)
    version = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    config = ls_client.label_config(project.id)
    standin.respond_with(right_answers)

    def new_run(kind="predict", task_ids=None, **options):
        return runs.create(version, task_ids or ids, kind=kind, label_config=config, mode="batch", **options)

    return project, ids, version, new_run


def sent_lines(standin) -> list[int]:
    """The task numbers of every request submitted in any batch, in order."""
    return [number_of(line["body"]["messages"][-1]["content"]) for batch in standin.batches.batches.values() for line in batch.lines]


def in_background(run_id: int) -> threading.Thread:
    worker = threading.Thread(target=runs.execute, args=(run_id,), daemon=True)
    worker.start()
    return worker


def test_a_batch_run_submits_parts_and_writes_every_answer_at_the_batch_price(setup, standin, ls_client):
    project, ids, version, new_run = setup
    run = runs.execute(new_run().id)

    assert (run.status, run.mode, run.done, run.failed) == ("completed", "batch", TASKS, 0)
    assert standin.request_count == 0  # not one live call
    assert [len(b.lines) for b in standin.batches.batches.values()] == [4, 4, 2]
    assert sorted(sent_lines(standin)) == list(range(TASKS))  # each task in one batch, once
    assert [p.status for p in batch_runs.parts(run.id)] == ["completed"] * 3
    assert {b.metadata["prompter_run"] for b in standin.batches.batches.values()} == {str(run.id)}
    assert (run.input_tokens, run.output_tokens) == (TASKS * 1000, TASKS * 10)
    assert run.cost_usd == pytest.approx(TASKS * BATCH_COST_PER_CALL)
    assert run.cost_usd < TASKS * LIVE_COST_PER_CALL

    predictions = {p.task_id: p for p in ls_client.predictions(project.id)}
    assert {task_id: p.result for task_id, p in predictions.items()} == {task_id: choice(LABELS[n % 3]) for n, task_id in enumerate(ids)}
    assert {p.model_version for p in predictions.values()} == {"sentiment@v1"}
    items = runs.items(run.id)
    assert all(item.latency_ms is None for item in items)  # a batch measures no latency per call
    assert [item.cost_usd for item in items] == pytest.approx([BATCH_COST_PER_CALL] * TASKS)


def test_a_batch_run_costs_the_teams_batch_price_where_it_set_one(setup):
    _, _, _, new_run = setup
    pricing.save("gpt-4o-mini", 1.0, 4.0, batch_input_per_million=0.5, batch_output_per_million=2.0)
    run = runs.execute(new_run().id)
    assert run.status == "completed"
    # 1000 input tokens a call (a team's price has no cached rate of its own) and 10 output
    assert run.cost_usd == pytest.approx(TASKS * (1000 * 0.5 + 10 * 2.0) / 1e6)


def test_each_part_is_written_to_label_studio_as_soon_as_it_ends(setup, standin, ls_client):
    project, ids, version, new_run = setup
    standin.batches.hold_at = "in_progress"
    run = new_run()
    worker = in_background(run.id)
    wait_until(lambda: len([p for p in batch_runs.parts(run.id) if p.status == "in_progress"]) == 3, what="three parts in progress")
    first = next(iter(standin.batches.batches))
    standin.batches.release(first)
    first_tasks = {ids[n] for n in range(PART)}
    wait_until(lambda: {p.task_id for p in ls_client.predictions(project.id)} == first_tasks, what="the first part's predictions")
    assert runs.get(run.id).status == "running" and runs.get(run.id).done == PART
    assert "part 2: in progress, 0 of 4 answered" in batch_runs.summary(runs.get(run.id))

    standin.batches.release()
    worker.join(60)
    assert runs.get(run.id).status == "completed" and len(ls_client.predictions(project.id)) == TASKS


def test_a_worker_killed_while_its_batches_wait_is_followed_by_the_next_without_sending_again(setup, standin, ls_client):
    project, ids, version, new_run = setup
    standin.batches.hold_at = "in_progress"
    run = new_run()
    pid = runs.launch(run.id)
    wait_until(lambda: len([p for p in batch_runs.parts(run.id) if p.status == "in_progress"]) == 3, timeout=60, what="three parts in progress")
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert runs.status_of(runs.get(run.id)) == "interrupted" and runs.get(run.id).done == 0

    standin.batches.release()
    resumed = runs.execute(run.id)
    assert (resumed.status, resumed.done) == ("completed", TASKS)
    assert len(standin.batches.batches) == 3 and sorted(sent_lines(standin)) == list(range(TASKS))  # nothing submitted twice
    assert resumed.cost_usd == pytest.approx(TASKS * BATCH_COST_PER_CALL)
    assert sorted(p.task_id for p in ls_client.predictions(project.id)) == sorted(ids)


def test_a_batch_created_but_never_recorded_is_found_again_not_submitted_twice(setup, standin, ls_client):
    """The worker dies while the provider creates its batch: the next worker finds the batch by the
    input file the part recorded, and follows it."""
    project, ids, version, new_run = setup
    with FaultProxy(standin.base_url.removesuffix("/v1")) as proxy:
        keys.update("team", base_url=proxy.url + "/v1")
        creating = proxy.add_rule(method="POST", path=r"/v1/batches", action="hold", times=1)
        run = new_run(task_ids=ids[:3])
        pid = runs.launch(run.id)
        assert creating.arrived.wait(60)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        creating.release()
        assert creating.forwarded.wait(10)  # the provider made the batch; its id reached no one
        assert len(standin.batches.batches) == 1
        (part,) = batch_runs.parts(run.id)
        assert part.batch_id is None and part.status == "preparing"

        resumed = runs.execute(run.id)
    assert (resumed.status, resumed.done) == ("completed", 3)
    assert len(standin.batches.batches) == 1 and sorted(sent_lines(standin)) == [0, 1, 2]
    assert batch_runs.parts(run.id)[0].batch_id == next(iter(standin.batches.batches))


def test_a_lost_answer_to_creating_a_batch_is_not_a_second_batch(setup, standin, ls_client):
    project, ids, version, new_run = setup
    with FaultProxy(standin.base_url.removesuffix("/v1")) as proxy:
        keys.update("team", base_url=proxy.url + "/v1")
        lost = proxy.add_rule(method="POST", path=r"/v1/batches", action="drop_response", times=1)
        run = runs.execute(new_run(task_ids=ids[:3]).id)
    assert lost.matched == 1
    assert (run.status, run.done) == ("completed", 3)
    assert len(standin.batches.batches) == 1


def test_cancel_cancels_the_batches_keeps_their_answers_and_a_resume_sends_only_the_rest(setup, standin, monkeypatch):
    project, ids, version, new_run = setup
    monkeypatch.setenv("PROMPTER_BATCH_POLL_SECONDS", "3600")  # looks at 1 s, then 2 s, ...: the cancel comes between
    monkeypatch.setenv("PROMPTER_BATCH_MAX_REQUESTS", str(TASKS))
    standin.batches.lines_per_step = 1
    run = new_run()
    worker = in_background(run.id)
    wait_until(lambda: standin.batches.answered_lines >= 1, what="a first answer")
    runs.cancel(run.id)
    worker.join(60)

    cancelled = runs.get(run.id)
    (batch,) = standin.batches.batches.values()
    assert batch.status == "cancelled"
    assert cancelled.status == "cancelled" and 1 <= cancelled.done == len(batch.answered) < TASKS
    assert cancelled.failed == 0  # what the batch did not answer is unfinished, not failed
    answered = {number_of(line["body"]["messages"][-1]["content"]) for line in batch.lines[: len(batch.answered)]}

    monkeypatch.setenv("PROMPTER_BATCH_POLL_SECONDS", "0.02")
    standin.batches.lines_per_step = None
    resumed = runs.execute(run.id)
    assert (resumed.status, resumed.done) == ("completed", TASKS)
    second = list(standin.batches.batches.values())[1]
    assert sorted(number_of(line["body"]["messages"][-1]["content"]) for line in second.lines) == sorted(set(range(TASKS)) - answered)


def test_an_expired_batch_keeps_its_answers_and_its_other_tasks_are_sent_again_on_retry(setup, standin):
    project, ids, version, new_run = setup
    standin.batches.expire_after = 2
    run = runs.execute(new_run(task_ids=ids[:PART]).id)
    assert (run.done, run.failed) == (2, 2)
    assert [(g.kind, g.count) for g in runs.failures_of(run.id)] == [("batch_expired", 2)]
    assert "retry the run's failed tasks" in runs.failures_of(run.id)[0].example
    assert batch_runs.parts(run.id)[0].status == "expired"

    standin.batches.expire_after = None
    runs.retry_failed(run.id)
    retried = runs.execute(run.id)
    assert (retried.status, retried.done, retried.failed) == ("completed", PART, 0)
    assert [len(b.lines) for b in standin.batches.batches.values()] == [PART, 2]
    assert retried.cost_usd == pytest.approx(PART * BATCH_COST_PER_CALL)  # the expired requests were not paid


def test_the_spending_limit_holds_each_parts_estimate_until_it_is_paid(setup, standin):
    """A batch run cannot learn a call's cost before submitting: the limit holds each call's estimate
    (its prompt counted with tiktoken, a typical answer, at the batch price) until its part is paid.
    Here the stand-in counts tokens as about four characters each, close to what tiktoken counts."""
    project, ids, version, new_run = setup
    standin.respond_with(lambda r: Reply.json({"sentiment": LABELS[number_of(r.user_text) % 3]}))
    measured = runs.execute(new_run(task_ids=ids[:2], cache="fresh").id)
    per_call = measured.cost_usd / 2
    limit = 5.5 * per_call
    run = runs.execute(new_run(max_cost_usd=limit, cache="fresh").id)
    assert run.status == "stopped" and "spending limit" in run.status_reason
    submitted = len(sent_lines(standin)) - 2
    assert 3 <= submitted <= 5 and run.done == submitted
    assert run.cost_usd == pytest.approx(submitted * per_call) and run.cost_usd <= limit


def test_answers_already_paid_for_are_taken_from_the_store_not_sent_in_a_batch(setup, standin):
    project, ids, version, new_run = setup
    first = runs.execute(new_run(kind="evaluate").id)
    again = runs.execute(new_run(kind="evaluate").id)
    assert (again.status, again.done, again.cached, again.cost_usd) == ("completed", TASKS, TASKS, 0.0)
    assert len(standin.batches.batches) == 3  # the first run's only
    assert runs.saved_by_cache(again.id) == pytest.approx(first.cost_usd)


def test_a_refused_batch_fails_its_tasks_with_the_providers_reason(setup, standin):
    project, ids, version, new_run = setup
    standin.batches.fail_validation = "Enqueued token limit reached for gpt-4o-mini."
    run = runs.execute(new_run(task_ids=ids[:3]).id)
    assert (run.status, run.failed) == ("failed", 3)
    assert "Enqueued token limit reached" in run.status_reason


def test_a_provider_that_refuses_the_upload_stops_the_run_and_a_resume_sends_it(setup, standin):
    project, ids, version, new_run = setup
    standin.api_key = "sk-right"  # the key saved has none: the upload is refused
    run = runs.execute(new_run(task_ids=ids[:3]).id)
    assert (run.status, run.finished) == ("stopped", 0)
    assert "refused the batch's file" in run.status_reason and "resume" in run.status_reason
    assert batch_runs.parts(run.id)[0].error

    keys.update("team", api_key="sk-right")
    resumed = runs.execute(run.id)
    assert (resumed.status, resumed.done) == ("completed", 3)
    assert len(standin.batches.batches) == 1


def test_cancelling_a_batch_run_whose_worker_is_gone_cancels_its_batches(setup, standin):
    project, ids, version, new_run = setup
    standin.batches.hold_at = "in_progress"
    run = new_run(task_ids=ids[:3])
    pid = runs.launch(run.id)
    wait_until(lambda: [p.status for p in batch_runs.parts(run.id)] == ["in_progress"], timeout=60, what="the part in progress")
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert runs.cancel(run.id).status == "cancelled"
    (batch,) = standin.batches.batches.values()
    assert batch.status in ("cancelling", "cancelled")


def test_a_batch_line_is_the_live_call(setup, standin):
    """What a batch sends for a task is exactly the body a live run would send."""
    project, ids, version, new_run = setup
    runs.execute(new_run(task_ids=ids[:1]).id)
    (batch,) = standin.batches.batches.values()
    live = runs.execute(runs.create(version, ids[:1], kind="evaluate", label_config=CHOICES_CONFIG, cache="fresh").id)
    assert live.done == 1
    assert json.dumps(batch.lines[0]["body"], sort_keys=True) == json.dumps(standin.requests[0].body, sort_keys=True)


def test_only_a_versions_own_runs_may_use_the_batch_api(setup):
    project, ids, version, new_run = setup
    with pytest.raises(runs.RunError, match="runs live"):
        runs.create(version, ids, kind="evaluate", label_config=CHOICES_CONFIG, mode="batch", variant={"model": "gpt-4o"})
    with pytest.raises(runs.RunError, match="mode"):
        runs.create(version, ids, kind="evaluate", label_config=CHOICES_CONFIG, mode="overnight")


def test_the_command_line_predicts_through_the_batch_api(setup, standin):
    import subprocess
    import sys

    from core import settings

    project, ids, version, new_run = setup
    done = subprocess.run(
        [sys.executable, "-m", "core", "predict", "--prompt", "sentiment", "--project", str(project.id), "--batch", "--json"],
        cwd=settings.REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["mode"], document["status"], document["completed"], document["written"]) == ("batch", "completed", TASKS, TASKS)
    assert document["cost_usd"] == pytest.approx(TASKS * BATCH_COST_PER_CALL)
    assert "at the Batch API's price" in done.stderr and "3 of 3 batches ended" in done.stderr
    assert len(standin.batches.batches) == 3 and standin.request_count == 0

    shown = subprocess.run(
        [sys.executable, "-m", "core", "runs", "show", str(document["run_id"])], cwd=settings.REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert "Batch API, 3 parts: part 1: completed, 4 of 4 answered; part 2: completed, 4 of 4 answered; part 3: completed, 2 of 2 answered." in shown.stdout
