"""The rules every run obeys, enforced in core/ whoever starts the run (page, command, script): one
run per version at a time, a spending limit that holds (also across a resume and in the first wave
of calls), and a cache that never answers what it should not. Real Label Studio, stand-in over HTTP;
each test on SQLite and on PostgreSQL (``database_backend``)."""

from __future__ import annotations

import math
import threading

import pytest

from core import keys, predict, prompts, runs, store
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import HeldCalls, wait_until
from tests.standin import Reply

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
LABELS = ("Positive", "Negative", "Neutral")
CALL_COST = (100 * 0.15 + 5 * 0.60) / 1e6  # gpt-4o-mini list price of a call using (100, 5) tokens


def number_of(request) -> int:
    return int(request.user_text.split("review number ")[1].split("\n")[0])


def right_answers(request):
    return Reply.json({"sentiment": LABELS[number_of(request) % 3]}, usage=(100, 5))


@pytest.fixture
def setup(database_backend, use_labelstudio, make_project, standin, ls_client):
    """A project of 40 tasks (review number 0..39) with ground truth, and v1 of a prompt."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(40)]
    project, ids = make_project(CHOICES_CONFIG, tasks)
    version = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")

    def new_run(task_ids=None, *, of=version, kind="evaluate", **options):
        return runs.create(of, task_ids or ids, kind=kind, label_config=CHOICES_CONFIG, **options)

    return project, ids, version, new_run


# -- one run per version ---------------------------------------------------------------------------


def test_a_second_run_of_a_version_is_refused_while_one_is_going_and_says_which(setup, standin):
    project, ids, version, new_run = setup
    first = new_run(ids[:5])
    for kind in ("evaluate", "predict"):
        with pytest.raises(runs.RunError) as refused:
            new_run(ids[:5], kind=kind)
        assert str(refused.value) == (
            f"sentiment v1 already has a run going: run {first.id} (evaluate, 0 of 5 tasks). One run per version at a time: "
            f"follow it on the Evaluate page or with `python -m core runs show {first.id}`, or cancel it with "
            f"`python -m core runs cancel {first.id}`."
        )
    other = prompts.new_version("sentiment", project.id, note="another version")
    assert new_run(ids[:5], of=other).status == "pending"  # another version may run meanwhile

    standin.respond_with(right_answers)
    assert runs.execute(first.id).status == "completed"
    assert new_run(ids[:5]).status == "pending"  # once it ended, the version may run again
    assert len(runs.runs(prompt="sentiment")) == 3


def test_a_run_whose_worker_is_gone_does_not_block_a_new_one_and_is_not_resumed_beside_it(setup, standin):
    project, ids, version, new_run = setup
    stale = new_run(ids[:5])
    with store.writing() as s:  # as a worker on this machine that was killed leaves it
        row = s.get(store.Run, stale.id)
        row.status, row.worker = "running", runs.worker_name(pid=2**22 + 7)  # no such process
        s.add(row)
    assert runs.get(stale.id).interrupted and runs.resumable(runs.get(stale.id))

    fresh = new_run(ids[:5])
    with pytest.raises(runs.RunError, match=f"already has a run going: run {fresh.id}"):
        runs.execute(stale.id)  # resuming the old one beside the new one would pay twice
    standin.respond_with(right_answers)
    assert runs.execute(fresh.id).status == "completed"
    assert runs.execute(stale.id).status == "completed"  # now it may go on
    assert standin.request_count == 5  # the second one was answered from the first one's calls


def test_a_run_cannot_be_claimed_while_its_worker_process_lives_even_if_silent(setup, standin):
    project, ids, version, new_run = setup
    run = new_run(ids[:3])
    with store.writing() as s:  # a live process (this test's parent) with an old heartbeat
        row = s.get(store.Run, run.id)
        row.status, row.worker, row.heartbeat_at = "running", runs.worker_name(pid=__import__("os").getppid()), None
        s.add(row)
    assert not runs.get(run.id).interrupted
    with pytest.raises(runs.RunError, match=rf"Run {run.id} is already running \(process \d+\)"):
        runs.execute(run.id)
    with pytest.raises(runs.RunError, match="is running; there is nothing to resume"):
        runs.resume_in_background(run.id)
    assert standin.request_count == 0


def test_runs_of_a_prompt_are_found_past_two_hundred_runs_of_other_prompts(setup):
    project, ids, version, new_run = setup
    mine = new_run(ids[:2])
    other = prompts.create(project.id, "other", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    with store.writing() as s:
        for _ in range(210):
            s.add(store.Run(prompt_version_id=prompts.row_id(other), kind="evaluate", subset={"task_ids": ids[:2]}, total=2, status="completed"))
    assert [r.id for r in runs.runs(prompt="sentiment", project_id=project.id)] == [mine.id]
    assert [r.id for r in runs.runs(prompt="sentiment", kind="evaluate")] == [mine.id]


# -- the spending limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1.0, math.nan, math.inf])
def test_a_limit_that_is_not_a_positive_amount_is_refused(setup, limit):
    project, ids, version, new_run = setup
    with pytest.raises(runs.RunError, match=r"spending limit: .* is not a positive amount of US dollars"):
        new_run(max_cost_usd=limit)
    assert runs.runs(prompt="sentiment") == []


def test_a_limit_on_a_model_with_no_price_is_refused_until_it_has_one(setup):
    project, ids, version, new_run = setup
    local = prompts.new_version("sentiment", project.id, model="my-local-llama")
    with pytest.raises(runs.RunError) as refused:
        new_run(of=local, max_cost_usd=1.0)
    assert str(refused.value) == (
        "spending limit: my-local-llama has no price, so a limit cannot be kept. Set its price first (Keys page, "
        "Model prices, or `python -m core prices set my-local-llama --input USD --output USD`), or start without a limit."
    )
    from core import pricing

    pricing.save("my-local-llama", 0.1, 0.1)
    assert new_run(of=local, max_cost_usd=1.0).max_cost_usd == 1.0


def test_the_first_wave_at_concurrency_32_cannot_pass_the_limit(setup, standin):
    project, ids, version, new_run = setup
    standin.respond_with(right_answers)
    run = runs.execute(new_run(concurrency=32, max_cost_usd=2.5 * CALL_COST).id)
    assert (run.status, standin.request_count) == ("stopped", 2)
    assert run.cost_usd == pytest.approx(2 * CALL_COST) and run.cost_usd <= 2.5 * CALL_COST
    assert run.status_reason == "Stopped before passing the spending limit of $0.000045 (spent $0.000036)."


def test_a_resumed_run_counts_what_it_spent_and_stops_before_the_limit_at_concurrency_16(setup, standin):
    project, ids, version, new_run = setup
    held = HeldCalls(right_answers)
    standin.respond_with(held)
    limit = 20.5 * CALL_COST  # room for 20 calls
    run = new_run(concurrency=16, max_cost_usd=limit)
    worker = threading.Thread(target=runs.execute, args=(run.id,))
    worker.start()
    held.allow(1)  # the first call goes alone: until it is answered no real cost is known
    held.wait_arrived(1 + 16)  # then a full wave of 16, each holding the first call's cost
    asked = store.utcnow()
    runs.cancel(run.id)
    wait_until(lambda: runs.get(run.id).heartbeat_at > asked)  # the worker has seen the cancel
    held.open()  # the calls already out finish and are paid for
    worker.join(60)
    cancelled = runs.get(run.id)
    assert (cancelled.status, cancelled.done, standin.request_count) == ("cancelled", 17, 17)

    resumed = runs.execute(run.id)
    assert resumed.status == "stopped" and "spending limit" in resumed.status_reason
    assert standin.request_count == 20  # as many calls as the limit pays for, over both parts
    assert resumed.cost_usd == pytest.approx(20 * CALL_COST) and resumed.cost_usd <= limit


# -- the cache -------------------------------------------------------------------------------------


def test_answers_are_reused_at_temperature_0_unless_the_run_is_fresh(setup, standin):
    project, ids, version, new_run = setup
    standin.respond_with(right_answers)
    runs.execute(new_run(ids[:4]).id)
    again = runs.execute(new_run(ids[:4]).id)
    assert standin.request_count == 4 and again.cached == 4 and again.document()["from_cache"] == 4
    fresh = runs.execute(new_run(ids[:4], cache="fresh").id)
    assert standin.request_count == 8 and fresh.cached == 0 and fresh.cost_usd == pytest.approx(4 * CALL_COST)


def test_answers_at_a_temperature_above_0_are_reused_only_when_asked(setup, standin):
    project, ids, version, new_run = setup
    warm = prompts.new_version("sentiment", project.id, temperature=0.7)
    standin.respond_with(right_answers)
    runs.execute(new_run(ids[:4], of=warm).id)
    runs.execute(new_run(ids[:4], of=warm).id)
    assert standin.request_count == 8  # sampled answers differ from call to call: not served from the store
    reused = runs.execute(new_run(ids[:4], of=warm, cache="reuse").id)
    assert standin.request_count == 8 and reused.cached == 4


def test_an_unknown_cache_policy_is_refused(setup):
    project, ids, version, new_run = setup
    with pytest.raises(runs.RunError, match="cache: 'sometimes' is not one of auto, reuse, fresh"):
        new_run(cache="sometimes")


def test_a_predict_run_keeps_its_cache_policy(setup, standin, ls_client):
    project, ids, version, new_run = setup
    chosen = predict.scope(version, ls_client)
    run = predict.start(version, chosen, ls_client, cache="fresh")
    assert runs.get(run.id).cache == "fresh"


def test_a_version_whose_key_is_gone_is_refused_before_the_run_starts(setup):
    project, ids, version, new_run = setup
    keys.remove("team")
    with pytest.raises(runs.RunError, match="sentiment@v1 uses the key 'team', which no longer exists; add it again on the Keys page"):
        new_run()
    assert runs.runs(prompt="sentiment") == []
