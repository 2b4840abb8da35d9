"""The calls the ML backend makes when Label Studio asks: a published version's answers to tasks.

Each request from Label Studio (a task opened, Retrieve Predictions on a selection, one interactive
instruction) is recorded as a run of kind "backend", its calls as the run's items. So they count
against the team's monthly budgets like any run, an identical call already paid for is answered
from the store (0 model calls), and every failure is kept with its reason. Label Studio saves
what the backend returns itself; nothing here writes to it.

Before each call its cost is held against the publication's spending limit and the monthly
budgets; a call that would pass one is refused, and its task gets no answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import func
from sqlmodel import select

from core import budgets, calls, connection, deployment, failures, identity, keys, labeling, messages, pricing, prompts, providers, runs, store, tokens
from core.backend.publications import Publication
from core.formatting import usd
from core.labelstudio import LabelStudioError
from core.prompts import PromptError, Version

log = logging.getLogger("prompter.backend")

CALL_TIMEOUT = 30.0  # seconds per attempt: Label Studio gives a whole /predict 100 s by default
CALL_RETRIES = 2


@dataclass(frozen=True)
class Answer:
    task_id: int
    regions: list[dict[str, Any]] | None
    score: float | None = None
    error: str | None = None
    from_cache: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class NotServing(ValueError):
    """The publication cannot answer at all now (its key, its publisher's role); the message says why."""


async def predict(publication: Publication, tasks: Sequence[dict[str, Any]], label_config: str, *, why: str) -> list[Answer]:
    """The published version's answer to each task, in order."""
    version = publication.version
    return await _answer(publication, version, tasks, label_config, {"description": why})


async def interactive(publication: Publication, task: dict[str, Any], instruction: str, label_config: str) -> Answer:
    """The answer to an instruction an annotator typed in the task: the instruction is the template of
    this one call; the version's key, model, system message and outputs stay as published."""
    targets = labeling.read(label_config)
    try:
        version = instructed(publication.version, instruction, targets)
    except PromptError as error:
        return Answer(int(task["id"]), None, error=str(error))
    (answer,) = await _answer(publication, version, [task], label_config, {"description": "interactive instruction", "instruction": instruction})
    return answer


def instructed(version: Version, instruction: str, targets: labeling.Targets) -> Version:
    """``version`` with the typed instruction as its template. An instruction that names no data
    field gets the task's inputs appended under it, so the model always sees the task."""
    text = instruction.strip()
    if not text:
        raise PromptError("The instruction is empty: type what the model should do, then press Shift+Enter.")
    named = {name for name, _ in prompts.variables(text)}
    if not named & set(targets.fields):
        shown = prompts.inputs_shown(targets)
        text = f"{text}\n\n{shown}" if shown else text
    prompts.check_template(text, targets, version.controls, list(targets.fields), version.system_message)
    return dataclasses.replace(version, template=text, examples=None)


# -- one request from Label Studio ---------------------------------------------------------------


async def _answer(publication: Publication, version: Version, tasks: Sequence[dict[str, Any]], label_config: str, subset: dict[str, Any]) -> list[Answer]:
    ids = [int(t["id"]) for t in tasks]
    run_id = _open_run(publication, ids, label_config, subset)
    try:
        answers = await _calls(publication, version, tasks, labeling.read(label_config), run_id)
    except NotServing as error:
        answers = [_store(run_id, task_id, None, runs.failed(str(error), "not_serving")) for task_id in ids]
    _close_run(run_id)
    for answer in answers:
        if not answer.ok:
            log.warning("project %s task %s: no answer from %s: %s", publication.project_id, answer.task_id, version.model_version, answer.error)
    return answers


async def _calls(publication: Publication, version: Version, tasks: Sequence[dict[str, Any]], targets: labeling.Targets, run_id: int) -> list[Answer]:
    user = _publisher(publication)
    unusable = prompts.why_unusable(version)
    if unusable:
        raise NotServing(unusable)
    key = keys.get(version.provider_key)
    schema = labeling.schema(targets, version.controls)
    outputs = [targets.output(name) for name in version.controls]
    images = _images(user)
    prepared = [runs.prepare_call(version, key, targets, schema, int(task["id"]), task.get("data") or {}, images) for task in tasks]
    cached = runs.cached_answers({p.request.hash for p in prepared if p.request is not None}) if runs.reuses_answers(version, "auto") else {}
    slots = asyncio.Semaphore(publication.concurrency)
    answer_tokens = tokens.typical_answer_tokens(targets, version.controls, version.model) * (version.samples or 1)

    async def one(task: dict[str, Any], call: runs.Prepared, client) -> Answer:
        try:
            return await answer(task, call, client)
        except Exception as error:  # noqa: BLE001 - one task's surprise must not fail the others
            return _store(run_id, int(task["id"]), call.request, runs.failed(f"Unexpected error on this task: {type(error).__name__}: {error}", "unexpected"))

    async def answer(task: dict[str, Any], call: runs.Prepared, client) -> Answer:
        task_id, request = int(task["id"]), call.request
        if call.error:
            return _store(run_id, task_id, request, runs.failed(call.error, call.kind))
        if request.hash in cached:
            return _stored_reply(run_id, task, request, runs.reply_from(cached[request.hash]), version, targets, outputs, from_cache=True)
        async with slots:
            estimate = pricing.cost(version.model, tokens.prompt_tokens(request.body["messages"], version.model), answer_tokens)
            refusal, held = await _SPENDING.reserve(publication, version, user.email, estimate)
            if refusal:
                return _store(run_id, task_id, request, runs.failed(refusal, "over_budget"))
            try:
                reply = await calls.ask_async(client, request)
                return _stored_reply(run_id, task, request, reply, version, targets, outputs)  # stored before the next call reads what was spent
            finally:
                await _SPENDING.release(held)

    async with providers.async_client(key, timeout=CALL_TIMEOUT, max_retries=CALL_RETRIES) as client:
        return list(await asyncio.gather(*(one(task, call, client) for task, call in zip(tasks, prepared))))


def _stored_reply(run_id, task, request, reply: calls.Reply, version, targets, outputs, *, from_cache: bool = False) -> Answer:
    outcome = runs.read_reply(reply, version, targets, outputs, task.get("data") or {})
    cost = pricing.cost(version.model, reply.input_tokens, reply.output_tokens, cached_input_tokens=reply.cached_input_tokens)
    return _store(run_id, int(task["id"]), request, outcome, cost=cost, from_cache=from_cache)


# -- who pays, and how much may be spent ---------------------------------------------------------


def _publisher(publication: Publication) -> identity.User:
    """The member who published the version: the backend's calls are theirs, under their role and budget."""
    if deployment.load().personal:
        return identity.local_admin()
    user = identity.member(publication.published_by or "")
    if user is None or user.role not in ("member", "admin"):
        raise NotServing(
            f"{publication.version.model_version} was published by {publication.published_by}, who may no longer spend the team's keys; "
            "a member publishes it again (Backend page, or `python -m core backend connect`)."
        )
    return user


def _images(user: identity.User) -> messages.ImageLinks:
    try:
        with identity.acting_as(user):
            client = connection.client()
    except LabelStudioError:
        return messages.ImageLinks()  # text tasks need nothing from Label Studio
    return messages.ImageLinks(client.url, client.file)


class _Spending:
    """What the calls out now hold against the limits, so calls sent together cannot pass one together.

    A call holds the average real cost of the publication's calls so far; until one is known, one
    call goes out alone holding its estimate (its prompt's tokens and a typical answer), as in a run.
    """

    def __init__(self) -> None:
        self.held = 0.0
        self.out = 0  # calls holding a cost now
        self._changed: asyncio.Condition | None = None

    def changed(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def reserve(self, publication: Publication, version: Version, email: str, estimate: float | None) -> tuple[str | None, float]:
        """(why the call may not go, or None; what it holds)."""
        limit = publication.max_cost_usd
        applying = budgets.applying(version, email)
        if limit is None and not applying:
            return None, 0.0
        if estimate is None:
            return f"{version.model} has no price, so the spending limit or budget cannot be kept; set its price (Keys page, Model prices).", 0.0
        async with self.changed():
            spent, paid = served(publication)
            while not paid and self.out:
                await self.changed().wait()
                spent, paid = served(publication)
            per_call = spent / paid if paid else estimate
            if limit is not None and spent + self.held + per_call > limit:
                return f"The spending limit of {usd(limit)} for what project {publication.project_id} is served is reached (spent {usd(spent)}); publish again with a higher limit to go on.", 0.0
            for budget in budgets.applying(version, email):
                if budget.spent_usd + self.held + per_call > budget.amount_usd:
                    return f"The monthly budget of {budget.what} ({usd(budget.amount_usd)}) would be passed (spent {usd(budget.spent_usd)}); an admin can raise it.", 0.0
            self.held += per_call
            self.out += 1
            return None, per_call

    async def release(self, held: float) -> None:
        if not held:
            return
        async with self.changed():
            self.held -= held
            self.out -= 1
            self.changed().notify_all()


_SPENDING = _Spending()


def served(publication: Publication) -> tuple[float, int]:
    """What the backend paid serving the project since this version was published to it, and in how many calls."""
    query = (
        select(func.coalesce(func.sum(store.RunItem.cost_usd), 0.0), func.count(store.RunItem.id))
        .join(store.Run, store.Run.id == store.RunItem.run_id)
        .where(
            store.Run.kind == "backend",
            store.Run.prompt_version_id == prompts.row_id(publication.version),
            store.Run.created_at >= publication.published_at,
            store.RunItem.from_cache == False,  # noqa: E712
            store.RunItem.cost_usd.is_not(None),
        )
    )
    with store.session() as s:
        spent, calls_paid = s.exec(query).one()
    return float(spent), int(calls_paid)


# -- the record ------------------------------------------------------------------------------------


def _open_run(publication: Publication, task_ids: list[int], label_config: str, subset: dict[str, Any]) -> int:
    now = store.utcnow()
    row = store.Run(
        prompt_version_id=prompts.row_id(publication.version),
        kind="backend",
        subset={**subset, "project": publication.project_id, "task_ids": task_ids},
        status="serving",
        total=len(task_ids),
        concurrency=publication.concurrency,
        max_cost_usd=publication.max_cost_usd,
        label_config=label_config,
        started_by=publication.published_by,
        started_at=now,
        created_at=now,
    )
    with store.writing() as s:
        s.add(row)
        s.flush()
        return int(row.id)


def _store(run_id: int, task_id: int, request: calls.Request | None, outcome: runs.Outcome, *, cost: float | None = None, from_cache: bool = False) -> Answer:
    """Keep one call as an item of the backend's run, and say what Label Studio gets for its task."""
    with runs.item_writer() as db:
        runs.add_item(db, run_id, task_id, request, outcome, cost=cost, from_cache=from_cache, written=not outcome.error)  # Label Studio saves what the backend returns
    if outcome.error:
        return Answer(task_id, None, error=outcome.error)
    return Answer(task_id, outcome.answer.regions, outcome.reply.confidence, from_cache=from_cache)


def _close_run(run_id: int) -> None:
    with store.writing() as s:
        run = s.get(store.Run, run_id)
        if run.done:
            run.status, run.status_reason = "completed", None
        else:
            failed = s.exec(select(store.RunItem.task_id, store.RunItem.error_kind, store.RunItem.error).where(store.RunItem.run_id == run_id, store.RunItem.status == "failed")).all()
            groups = failures.groups(failed)
            run.status, run.status_reason = "failed", f"All {run.failed} tasks failed: {failures.sentence(groups)}"
        run.finished_at = store.utcnow()
        s.add(run)
