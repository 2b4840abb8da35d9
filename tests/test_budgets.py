"""Monthly budgets on a key and on a member, against the real Label Studio and the stand-in over HTTP:
a run whose estimate would pass a budget is refused before it starts; a running run stops before the
month's spend passes it, counting what other people's runs spent; a spent budget refuses a resume.

Every call is answered with 100 input and 50 output tokens, and gpt-4o-mini is priced at $0 input
and $20 per million output tokens, so each call costs 50 * 20 / 1e6 = $0.001 exactly and the
figures below are counted by hand from the stand-in's log."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import datetime
from types import SimpleNamespace

import pytest

from core import budgets, identity, keys, pricing, predict, prompts, runs, settings, store
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import HeldCalls, wait_until
from tests.standin import Reply
from tests.team import acting, join, plain_deployment  # noqa: F401 - plain_deployment is autouse

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
LABELS = ("Positive", "Negative", "Neutral")
CALL = 0.001  # dollars per call, as above


def number_of(request) -> int:
    return int(request.user_text.split("review number ")[1].split("\n")[0])


def answer(request):
    return Reply.json({"sentiment": LABELS[number_of(request) % 3]}, usage=(100, 50))


def calls_on(standin, numbers) -> int:
    """Calls the stand-in received for tasks with these numbers."""
    return sum(1 for r in standin.requests if number_of(r) in numbers)


def paid_this_month() -> float:
    """What every call stored so far cost, read with sqlite3 (every run here is on the key 'team')."""
    with closing(sqlite3.connect(settings.load().database_path)) as db:
        return db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM run_items WHERE from_cache = 0").fetchone()[0]


def run_rows() -> int:
    with closing(sqlite3.connect(settings.load().database_path)) as db:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.fixture
def team(use_labelstudio, make_project, standin, ls_client):
    """16 tasks (review number 0..15), the key 'team' for the stand-in, the price above, Ana and Ben
    (members) and v1 of a prompt."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    pricing.save("gpt-4o-mini", 0.0, 20.0)
    standin.respond_with(answer)
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(16)])
    join("ana@x.com", "member", "Ana")
    join("ben@x.com", "member", "Ben")
    v1 = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")

    def run(who: str, task_ids, *, of=v1, **options):
        """Start a run as ``who`` and work it through in this process; the run when it stops."""
        with acting(who):
            started = runs.create(of, task_ids, kind="evaluate", label_config=CHOICES_CONFIG, concurrency=2, **options)
        return runs.execute(started.id, client=ls_client)

    return SimpleNamespace(project=project, ids=ids, v1=v1, run=run)


def admin_sets(**budget) -> None:
    with identity.acting_as(identity.local_admin()):
        if "key" in budget:
            budgets.set_key_budget("team", budget["key"])
        for email, amount in budget.get("members", {}).items():
            budgets.set_member_budget(email, amount)


def test_a_run_estimated_past_the_key_budget_is_refused_before_it_starts(team, standin, ls_client):
    first = team.run("ana@x.com", team.ids[:2])  # gives the estimate its answer length: 50 tokens
    assert (first.status, standin.request_count) == ("completed", 2)
    admin_sets(key=0.005)  # $0.002 of it spent by Ana's run
    before = run_rows()

    ten = predict.Scope(team.ids[2:12], "10 tasks")
    with acting("ben@x.com"), pytest.raises(runs.RunError) as refused:
        predict.start(team.v1, ten, ls_client)  # 10 calls of 50 output tokens: 10 * $0.001
    assert str(refused.value) == (
        "Refused: the run is estimated at $0.01, more than the $0.003 left of the monthly budget of the key 'team' "
        "($0.005; $0.002 spent this month). Run it on fewer tasks, or ask an admin to raise the budget."
    )
    assert run_rows() == before and standin.request_count == 2  # no run, no call

    with acting("ben@x.com"):
        two = predict.start(team.v1, predict.Scope(team.ids[2:4], "2 tasks"), ls_client)  # $0.002 fits in $0.003
    assert (two.status, run_rows()) == ("pending", before + 1)


def test_a_model_without_a_price_cannot_run_under_a_budget(team):
    team.run("ana@x.com", team.ids[:2])
    admin_sets(key=0.005)
    local = prompts.new_version("sentiment", team.project.id, model="my-local-llama")
    before = run_rows()
    with acting("ben@x.com"), pytest.raises(runs.RunError) as refused:
        runs.create(local, team.ids[2:4], kind="evaluate", label_config=CHOICES_CONFIG)
    assert str(refused.value) == (
        "my-local-llama has no price, so the monthly budget of the key 'team' ($0.005; $0.002 spent this month) cannot be kept; "
        "an admin sets its price on the Keys page first."
    )
    assert run_rows() == before


def test_a_run_stops_before_the_key_budget_counting_what_another_member_spent(team, standin):
    admin_sets(key=0.0105)  # room for 10 calls this month, on every run on the key
    ana = team.run("ana@x.com", team.ids[:4])
    assert (ana.status, ana.cost_usd) == ("completed", pytest.approx(4 * CALL))

    # Ben's estimate fits in what is left ($0.0065); his 12 tasks would not
    ben = team.run("ben@x.com", team.ids[4:16], estimated_cost_usd=0.005)
    assert ben.status == "stopped"
    assert calls_on(standin, range(4, 16)) == 6  # 4 of Ana's + 6 of Ben's = 10 calls, $0.010
    assert ben.status_reason == (
        "Stopped before passing the monthly budget of the key 'team' ($0.0105): this month's spend on it is $0.01, "
        "this run's part $0.006. An admin can raise the budget; then resume."
    )
    assert paid_this_month() == pytest.approx(10 * CALL) and paid_this_month() <= 0.0105
    assert (ben.done, ben.total) == (6, 12)


def test_a_running_run_counts_spend_that_another_run_makes_while_it_goes(team, standin, ls_client):
    admin_sets(key=0.0105)
    bens = set(range(4, 16))
    held = HeldCalls(answer)
    standin.respond_with(lambda request: held(request) if number_of(request) in bens else answer(request))
    with acting("ben@x.com"):
        started = runs.create(team.v1, team.ids[4:16], kind="evaluate", label_config=CHOICES_CONFIG, concurrency=2)
    worker = threading.Thread(target=runs.execute, args=(started.id,), kwargs={"client": ls_client})
    worker.start()
    try:
        held.wait_arrived(1)  # Ben's first call is out; his run saw nothing spent this month

        v2 = prompts.new_version("sentiment", team.project.id, note="Ana's")
        ana = team.run("ana@x.com", team.ids[:4], of=v2)  # meanwhile Ana spends $0.004 on the same key
        assert ana.status == "completed" and calls_on(standin, range(4)) == 4
        done = store.utcnow()
        wait_until(lambda: runs.get(started.id).heartbeat_at > done, what="a heartbeat of Ben's run after Ana's ended")
        beat = runs.get(started.id).heartbeat_at
        wait_until(lambda: runs.get(started.id).heartbeat_at > beat, what="the heartbeat after that (the budgets read again)")
    finally:
        held.open()
        worker.join(60)
    ben = runs.get(started.id)
    assert ben.status == "stopped" and "monthly budget of the key 'team'" in ben.status_reason
    assert calls_on(standin, bens) == 6  # not 10: Ana's $0.004 was counted
    assert paid_this_month() == pytest.approx(10 * CALL) and paid_this_month() <= 0.0105


def test_a_member_budget_stops_that_member_only(team, standin):
    admin_sets(members={"ben@x.com": 0.0035})
    ana = team.run("ana@x.com", team.ids[:4])  # Ana's spend is not Ben's
    assert ana.status == "completed"

    ben = team.run("ben@x.com", team.ids[4:16])
    assert (ben.status, calls_on(standin, range(4, 16))) == ("stopped", 3)
    assert ben.status_reason == (
        "Stopped before passing the monthly budget of ben@x.com ($0.0035): this month's spend on it is $0.003, "
        "this run's part $0.003. An admin can raise the budget; then resume."
    )

    again = team.run("ana@x.com", team.ids[4:16])  # Ana is not held by Ben's budget
    assert (again.status, again.done) == ("completed", 12)
    assert again.cached == 3 and calls_on(standin, range(4, 16)) == 3 + 9  # Ben's three answers reused, unpaid


def test_a_resume_is_refused_while_the_budget_is_used_up_and_goes_on_once_raised(team, standin, ls_client):
    admin_sets(members={"ben@x.com": 0.0035})
    ben = team.run("ben@x.com", team.ids[4:16])
    assert (ben.status, standin.request_count) == ("stopped", 3)

    admin_sets(members={"ben@x.com": 0.002})  # an admin lowers it below what Ben spent ($0.003)
    with acting("ben@x.com"), pytest.raises(runs.RunError) as refused:
        runs.resume_in_background(ben.id)
    assert str(refused.value) == (
        "Refused: the monthly budget of ben@x.com ($0.002; $0.003 spent this month) is used up; an admin can raise it on the Keys or Team page."
    )
    after = runs.get(ben.id)
    assert (after.status, after.heartbeat_at, after.done, standin.request_count) == ("stopped", ben.heartbeat_at, 3, 3)  # no worker went

    admin_sets(members={"ben@x.com": 0.0065})  # room for 3 more calls, counting the run's own $0.003
    resumed = runs.execute(ben.id, client=ls_client)
    assert (resumed.status, resumed.done, standin.request_count) == ("stopped", 6, 6)
    assert resumed.cost_usd == pytest.approx(6 * CALL) and paid_this_month() <= 0.0065


def test_a_budget_an_admin_sets_while_a_run_goes_stops_that_run(team, standin, ls_client):
    held = HeldCalls(answer)
    standin.respond_with(held)
    with acting("ben@x.com"):
        started = runs.create(team.v1, team.ids[4:16], kind="evaluate", label_config=CHOICES_CONFIG, concurrency=2)
    worker = threading.Thread(target=runs.execute, args=(started.id,), kwargs={"client": ls_client})
    worker.start()
    try:
        held.allow(2)
        held.wait_arrived(4)  # two calls answered ($0.002), two more out and held
        asked = store.utcnow()
        admin_sets(key=0.0055)  # the admin sees it spending: room for 5 calls this month
        wait_until(lambda: runs.get(started.id).heartbeat_at > asked, what="a heartbeat of the run after the budget was set")
        beat = runs.get(started.id).heartbeat_at
        wait_until(lambda: runs.get(started.id).heartbeat_at > beat, what="the heartbeat after that (the budgets read again)")
    finally:
        held.open()
        worker.join(60)
    ben = runs.get(started.id)
    assert ben.status == "stopped" and "monthly budget of the key 'team' ($0.0055)" in ben.status_reason
    assert standin.request_count == 5  # the 4 sent before, then 1 more: a 6th would pass $0.0055
    assert paid_this_month() == pytest.approx(5 * CALL) and paid_this_month() <= 0.0055


def paid_since(moment) -> float:
    """What calls stored after ``moment`` cost, read with sqlite3 (the store keeps UTC without its zone)."""
    with closing(sqlite3.connect(settings.load().database_path)) as db:
        rows = db.execute("SELECT created_at, cost_usd FROM run_items WHERE from_cache = 0").fetchall()
    return sum(cost for created, cost in rows if datetime.fromisoformat(created) >= moment.replace(tzinfo=None))


def test_what_a_run_paid_before_the_month_turned_is_last_months(team, standin, ls_client, monkeypatch):
    admin_sets(key=0.0065)  # room for 6 calls a month
    held = HeldCalls(answer)
    standin.respond_with(held)
    with acting("ben@x.com"):
        started = runs.create(team.v1, team.ids[:12], kind="evaluate", label_config=CHOICES_CONFIG, concurrency=2)
    worker = threading.Thread(target=runs.execute, args=(started.id,), kwargs={"client": ls_client})
    worker.start()
    try:
        held.allow(3)
        held.wait_arrived(5)  # three answered, two more out and held
        wait_until(lambda: paid_this_month() == pytest.approx(3 * CALL), what="the first three answers stored")
        turned = store.utcnow()
        monkeypatch.setattr(budgets, "month_start", lambda now=None: turned)  # a new month begins
    finally:
        held.open()
        worker.join(60)
    ben = runs.get(started.id)
    assert (ben.status, ben.done, standin.request_count) == ("stopped", 9, 9)  # 3 last month, then the new month's 6
    assert paid_since(turned) == pytest.approx(6 * CALL) and ben.cost_usd == pytest.approx(9 * CALL)
    assert ben.status_reason == (
        "Stopped before passing the monthly budget of the key 'team' ($0.0065): this month's spend on it is $0.006, "
        "this run's part $0.006. An admin can raise the budget; then resume."
    )
