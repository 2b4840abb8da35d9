"""The run engine: one prompt version over a set of tasks, for an evaluation or a prediction run.

A run's state lives in the database, so any process can follow it, cancel it or resume it:

- ``create`` records the run and its tasks; ``execute`` works through them in this process (the
  command line, or the worker ``launch`` starts for the dashboard) and returns when it ends.
- Calls go out concurrently through the OpenAI SDK's async client, bounded by the run's concurrency,
  with the SDK's retries. Each finished task is stored at once as an item, so a crash loses nothing
  finished; ``execute`` on an unfinished run (resume) sends only the tasks without an item.
- An identical call that already succeeded, in any run, is answered from the store (cache). Failed
  answers are never reused.
- Answers are written to Label Studio as predictions of ``<prompt>@v<N>`` in chunks while the run goes,
  replacing that version's earlier predictions on the run's tasks only. If Label Studio is away, the
  items wait in the store and are written when it answers again.
- ``cancel`` stops sending new calls at once; what finished is kept. A spending limit stops the run
  before its cost would pass it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import bindparam, func, update
from sqlmodel import select

from core.formatting import usd
from core import audit, background, budgets, calls, confidence, connection, failures, fewshot, forkserver, identity, keys, labeling, messages, pricing, prompts, providers, store, tokens
from core.labelstudio import LabelStudioClient, LabelStudioError, NewPrediction, Prediction, Task
from core.prompts import Version
from core.rendering import MissingField, RenderError

DEFAULT_CONCURRENCY = 16
CALL_TIMEOUT = 60.0  # seconds per attempt
CALL_RETRIES = 4  # the SDK's retries: 429 (honouring Retry-After), 5xx, timeouts, lost connections
TASK_BATCH = 200  # tasks fetched from Label Studio per request
WRITE_CHUNK = 500  # predictions per import (Label Studio's import has a large fixed cost per request)
WRITE_EVERY = 2.0  # at most this many seconds between writes to Label Studio while running
HEARTBEAT_EVERY = 1.0
STALE_AFTER = timedelta(seconds=30)  # a running run whose worker is this quiet has stopped
WORKERS = "workers"  # a run's worker while its chunks are spread over workers (``core.chunks``)
LABEL_STUDIO_GRACE = 120.0  # how long the end of a run waits for Label Studio to come back
REPLACE_AT_ONCE = 4  # predictions updated in place at once (Label Studio has no bulk update)

ACTIVE = ("pending", "running")
KINDS = ("evaluate", "predict")  # what a worker runs; the ML backend records its calls as runs of kind "backend"
OVER_BUDGET = "the spending limit"
OVER_MONTHLY_BUDGET = "a monthly budget"  # why a run stops sending calls; the end of the run says how much was spent
MODES = ("live", "batch")
CACHE_POLICIES = {
    "auto": "reuse earlier answers when the version's temperature is 0",
    "reuse": "reuse earlier answers, even at a temperature above 0",
    "fresh": "call the model for every task",
}


_ITEMS, _RUNS = store.RunItem.__table__, store.Run.__table__
_INSERT_ITEM = _ITEMS.insert()
_COUNT_ITEM = (
    _RUNS.update()
    .where(_RUNS.c.id == bindparam("run"))
    .values(
        done=_RUNS.c.done + bindparam("add_done"),
        failed=_RUNS.c.failed + bindparam("add_failed"),
        input_tokens=_RUNS.c.input_tokens + bindparam("add_input"),
        output_tokens=_RUNS.c.output_tokens + bindparam("add_output"),
        cached=_RUNS.c.cached + bindparam("add_cached"),
        # a call without a price leaves the cost as it was; the first priced one starts it
        cost_usd=func.coalesce(_RUNS.c.cost_usd + bindparam("add_cost"), _RUNS.c.cost_usd, bindparam("add_cost")),
    )
)


class RunError(ValueError):
    """A run cannot be started, resumed or changed; the message says why."""


@dataclass(frozen=True)
class RunView:
    """A run as the pages and commands show it."""

    id: int
    kind: str
    prompt: str
    version: int
    project_id: int
    subset: dict[str, Any]
    status: str
    status_reason: str | None
    total: int
    done: int
    failed: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    concurrency: int
    max_cost_usd: float | None
    cancel_requested: bool
    cache: str
    cached: int
    worker_pid: int | None
    worker: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    started_by: str | None = None  # an email, or "local" in personal mode
    variant: dict[str, Any] | None = None  # settings this run changed on its version (see ``create``)
    mode: str = "live"  # live, or batch: sent through the provider's Batch API (``core.batch_runs``)
    interrupted: bool = False  # marked running, but its worker is gone (``_worker_gone``)

    @property
    def model_version(self) -> str:
        return f"{self.prompt}@v{self.version}"

    @property
    def label(self) -> str:
        """``sentiment@v2``; for a variant run, what it tried: ``sentiment@v2 with team · gpt-4o``."""
        return self.model_version + (f" with {describe_variant(self.variant)}" if self.variant else "")

    @property
    def started_by_label(self) -> str:
        """For a run picker: ' · by ana@example.com'; nothing in personal mode (the local admin started
        every run) or for runs from before anyone was recorded."""
        return f" · by {self.started_by}" if self.started_by and self.started_by != identity.LOCAL_EMAIL else ""

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def elapsed_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = _aware(self.finished_at) if self.finished_at else store.utcnow()
        return max(0.0, (end - _aware(self.started_at)).total_seconds())

    def document(self) -> dict[str, Any]:
        """The run as the commands print it with --json."""
        return {
            "run_id": self.id,
            "kind": self.kind,
            "status": status_of(self),
            "status_reason": self.status_reason,
            "prompt": self.prompt,
            "version": self.version,
            "model_version": self.model_version,
            "started_by": self.started_by,
            "variant": self.variant,
            "mode": self.mode,
            "subset": {k: v for k, v in self.subset.items() if k != "task_ids"},
            "tasks": self.total,
            "completed": self.done,
            "failed": self.failed,
            "cost_usd": self.cost_usd,
            "tokens": {"input": self.input_tokens, "output": self.output_tokens},
            "cache": self.cache,
            "from_cache": self.cached,
            "saved_usd": saved_by_cache(self.id) if self.cached else None,
            "failures": [group.to_dict() for group in failures_of(self.id)] if self.failed else [],
            "created_at": _aware(self.created_at).isoformat(),
            "finished_at": _aware(self.finished_at).isoformat() if self.finished_at else None,
        }

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the pace so far; None before there is a pace."""
        elapsed = self.elapsed_seconds
        if self.status != "running" or not elapsed or not self.finished or self.mode == "batch":  # a batch's answers come in lumps
            return None
        return elapsed / self.finished * (self.total - self.finished)


# -- creating, reading, cancelling ----------------------------------------------------------------


def create(
    version: Version,
    task_ids: Sequence[int],
    *,
    kind: str,
    subset: dict[str, Any] | None = None,
    label_config: str,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_cost_usd: float | None = None,
    cache: str = "auto",
    estimated_cost_usd: float | None = None,
    variant: dict[str, Any] | None = None,
    mode: str = "live",
) -> RunView:
    """Record a run of ``version`` over ``task_ids``, started by the acting user (a member or an
    admin); refused while another run of the version is going, or when its estimate would pass a
    monthly budget.

    A ``variant`` evaluation tries the version with some settings changed (``VARIANT_FIELDS``: another
    key and model for a model matrix, another prompt for an Optimize candidate). It is scored like any
    evaluation and paid under the same limits, but never written to Label Studio (its answers are not
    the version's) and never counted as the version's figure; it may run beside other variants.

    A ``mode="batch"`` run sends its calls through the provider's Batch API (``core.batch_runs``): at
    the batch price, answered within the provider's window instead of at once."""
    user = identity.require_role("member", "start runs")
    if kind not in KINDS:
        raise RunError(f"kind: {kind!r} is not a run kind (evaluate or predict).")
    saved = version
    if variant:
        version = _with_variant(version, variant, kind, label_config)
    ids = list(dict.fromkeys(int(t) for t in task_ids))
    if not ids:
        raise RunError("The run has no tasks; pick a subset with tasks in it.")
    if not 1 <= int(concurrency) <= 256:
        raise RunError(f"concurrency: {concurrency} is outside 1 to 256.")
    if cache not in CACHE_POLICIES:
        raise RunError(f"cache: {cache!r} is not one of {', '.join(CACHE_POLICIES)}.")
    if mode not in MODES:
        raise RunError(f"mode: {mode!r} is not one of {', '.join(MODES)}.")
    if mode == "batch" and variant:
        raise RunError("A run trying other settings (a model matrix, Optimize) runs live; only a version's own evaluation or prediction may use the Batch API.")
    check_spending_limit(version, max_cost_usd)
    unusable = prompts.why_unusable(version)
    if unusable:
        raise RunError(unusable)
    try:
        budgets.check_start(version, user.email, estimated_cost_usd)
    except budgets.OverBudget as error:
        raise RunError(str(error)) from None
    row = store.Run(
        prompt_version_id=prompts.row_id(saved),
        kind=kind,
        subset={**(subset or {}), "task_ids": ids},
        total=len(ids),
        concurrency=int(concurrency),
        max_cost_usd=max_cost_usd,
        label_config=label_config,
        cache=cache,
        started_by=user.email,
        variant=dict(variant) if variant else None,
        mode=mode,
    )
    with store.writing() as s:  # the check and the insert in one transaction: two clicks make one run
        going = _live_runs_of(s, row.prompt_version_id, row.variant)
        if going:
            raise RunError(_already_going(going[0]))
        s.add(row)
        s.flush()
        run_id = row.id
    audit.record(
        "run started",
        target=f"run {run_id}",
        by=user,
        detail={"kind": kind, "mode": mode, "prompt": version.prompt, "version": version.number, "tasks": len(ids), "estimated_cost_usd": estimated_cost_usd}
        | ({"variant": _audited(variant)} if variant else {}),
    )
    return get(run_id)


VARIANT_FIELDS = ("provider_key", "model", "system_message", "template")


def _with_variant(version: Version, variant: dict[str, Any], kind: str, label_config: str) -> Version:
    """The version as the variant run sends it; refused when the change is not one a variant may make."""
    if kind != "evaluate":
        raise RunError("Only an evaluation may try other settings; a prediction run sends the version as saved.")
    unknown = sorted(set(variant) - set(VARIANT_FIELDS))
    if unknown:
        raise RunError(f"variant: {', '.join(unknown)} cannot be changed in a run; only {', '.join(VARIANT_FIELDS)}.")
    changed = dataclasses.replace(version, **variant)
    if {"template", "system_message"} & set(variant):
        fields = [name for name, _ in prompts.variables(version.template)]  # the saved template's fields exist
        try:
            prompts.check_template(changed.template, labeling.read(label_config), changed.controls, fields, changed.system_message)
        except prompts.PromptError as error:
            raise RunError(str(error)) from None
    return changed


def describe_variant(variant: dict[str, Any]) -> str:
    """What a variant run tried, in a few words: "team · gpt-4o", "another prompt"."""
    said = [f"{variant.get('provider_key', '')} · {variant['model']}".lstrip(" ·")] if "model" in variant else []
    said += ["another prompt"] if {"template", "system_message"} & set(variant) else []
    return ", ".join(said) or "the saved settings"


def _audited(variant: dict[str, Any]) -> dict[str, Any]:
    """What the audit trail keeps of a variant: the model it tried, and whether the prompt changed."""
    kept = {k: variant[k] for k in ("provider_key", "model") if k in variant}
    return kept | ({"prompt_changed": True} if {"template", "system_message"} & set(variant) else {})


def reuses_answers(version: Version, cache: str) -> bool:
    """Whether a run with this cache policy answers a task from an earlier identical call. A sampled
    answer (temperature above 0) is one draw among many: reused only when asked."""
    return cache == "reuse" or (cache == "auto" and not version.temperature)


def check_spending_limit(version: Version, max_cost_usd: float | None) -> None:
    """Refuse a limit that cannot be kept: not a positive number, or on a model with no price."""
    if max_cost_usd is None:
        return
    if not isinstance(max_cost_usd, (int, float)) or not math.isfinite(max_cost_usd) or max_cost_usd <= 0:
        raise RunError(f"spending limit: {max_cost_usd} is not a positive amount of US dollars; give one, or none for no limit.")
    if pricing.price(version.model) is None:
        raise RunError(
            f"spending limit: {version.model} has no price, so a limit cannot be kept. Set its price first "
            f"(Keys page, Model prices, or `python -m core prices set {version.model} --input USD --output USD`), or start without a limit."
        )


def get(run_id: int) -> RunView:
    with store.session() as s:
        row = s.get(store.Run, run_id)
        if row is None:
            raise RunError(f"There is no run {run_id}; `python -m core runs list` shows them.")
        return _view(row, prompts.by_row_id(row.prompt_version_id))


def runs(
    *, prompt: str | None = None, project_id: int | None = None, kind: str | None = None, limit: int = 200, variants: bool = False, group: str | None = None
) -> list[RunView]:
    """Runs, newest first: the ``limit`` newest of those that match. Variant runs only with
    ``variants`` (they belong to a matrix or an Optimize, not to the version); with ``group``, only
    the runs whose subset names that group (``"matrix:3"``, ``"optimize:2"``)."""
    query = (
        select(store.Run)
        .join(store.PromptVersion, store.PromptVersion.id == store.Run.prompt_version_id)
        .join(store.Prompt, store.Prompt.id == store.PromptVersion.prompt_id)
        .order_by(store.Run.id.desc())
        .limit(limit)
    )
    if kind:
        query = query.where(store.Run.kind == kind)
    if not variants:
        query = query.where(store.Run.variant.is_(None))
    if prompt is not None:
        query = query.where(store.Prompt.name == prompt)
    if project_id is not None:
        query = query.where(store.Prompt.project_id == project_id)
    if group is not None:
        query = query.where(store.Run.subset["group"].as_string() == group)
    with store.session() as s:
        rows = s.exec(query).all()
    versions: dict[int, Version] = {}
    for row in rows:
        if row.prompt_version_id not in versions:
            versions[row.prompt_version_id] = prompts.by_row_id(row.prompt_version_id)
    return [_view(row, versions[row.prompt_version_id]) for row in rows]


def in_group(group: str) -> list[RunView]:
    """The variant runs a model matrix, an Optimize or an Enhance check made (``"matrix:3"``), oldest first."""
    return sorted(runs(kind="evaluate", variants=True, group=group, limit=100_000), key=lambda r: r.id)


def version_of(run_id: int) -> Version:
    """The version as the run sends it: a variant run's changes applied."""
    with store.session() as s:
        row = s.get(store.Run, run_id)
    if row is None:
        raise RunError(f"There is no run {run_id}.")
    version = prompts.by_row_id(row.prompt_version_id)
    return dataclasses.replace(version, **row.variant) if row.variant else version


def label_config(run_id: int) -> str:
    """The labeling config the run was made against."""
    with store.session() as s:
        row = s.get(store.Run, run_id)
    if row is None:
        raise RunError(f"There is no run {run_id}.")
    return row.label_config or ""


def items(run_id: int) -> list[store.RunItem]:
    with store.session() as s:
        return list(s.exec(select(store.RunItem).where(store.RunItem.run_id == run_id).order_by(store.RunItem.task_id)).all())


def failures_of(run_id: int) -> list[failures.Group]:
    """The run's failed tasks grouped by why they failed, the largest group first."""
    with store.session() as s:
        found = s.exec(
            select(store.RunItem.task_id, store.RunItem.error_kind, store.RunItem.error)
            .where(store.RunItem.run_id == run_id, store.RunItem.status == "failed")
            .order_by(store.RunItem.task_id)
        ).all()
    return failures.groups(found)


def cache_note(run: RunView) -> str | None:
    """How many answers came from earlier identical calls, and what they cost now and before."""
    if not run.cached:
        return None
    saved = saved_by_cache(run.id)
    paid = f": {usd(0.0)} (saved {usd(saved)})" if saved is not None and run.cached == run.finished else ""
    if run.cached < run.finished:
        paid = f", not paid again (saved {usd(saved)})" if saved is not None else ", not paid again"
    return f"{run.cached} of {run.finished} answers from earlier calls{paid}."


def saved_by_cache(run_id: int) -> float | None:
    """What the run's answers from earlier calls cost when they were paid for; None when unpriced."""
    with store.session() as s:
        found = s.exec(select(func.sum(store.RunItem.cost_usd)).where(store.RunItem.run_id == run_id, store.RunItem.from_cache == True)).one()  # noqa: E712
    return float(found) if found is not None else None


def retry_failed(run_id: int) -> RunView:
    """Make the run's failed tasks unfinished again, so that resuming it (a worker, or ``execute``)
    sends only those. The run's tokens and cost keep what the failed calls cost."""
    identity.require_role("member", "retry runs")  # resuming it is what the audit trail records
    with store.writing() as s:
        row = s.exec(select(store.Run).where(store.Run.id == run_id).with_for_update()).first()
        if row is None:
            raise RunError(f"There is no run {run_id}; `python -m core runs list` shows them.")
        if row.kind not in KINDS:
            raise RunError(_refusal(s, row))
        if live(_view(row, prompts.by_row_id(row.prompt_version_id))):
            raise RunError(f"Run {run_id} is still going; retry its failed tasks once it has ended.")
        going = [other for other in _live_runs_of(s, row.prompt_version_id, row.variant) if other.id != run_id]
        if going:
            raise RunError(_already_going(going[0]))
        failed = s.exec(select(store.RunItem).where(store.RunItem.run_id == run_id, store.RunItem.status == "failed")).all()
        if not failed:
            raise RunError(f"Run {run_id} has no failed tasks to retry.")
        for item in failed:
            s.delete(item)
        row.failed -= len(failed)
        row.subset = {**row.subset, "retried": row.subset.get("retried", 0) + len(failed)}
        row.status, row.status_reason = "stopped", f"{len(failed)} failed tasks to retry; resume to send them."
        row.cancel_requested = False
        s.add(row)
    return get(run_id)


def cancel(run_id: int) -> RunView:
    """Ask the run to stop sending calls. A run whose worker is gone is marked cancelled at once."""
    user = identity.require_role("member", "cancel runs")
    run = get(run_id)
    if run.status not in ACTIVE:
        raise RunError(f"Run {run_id} is {run.status}; only a pending or running run can be cancelled.")
    with store.writing() as s:
        row = s.get(store.Run, run_id)
        row.cancel_requested = True
        if row.status == "pending" or run.interrupted:
            _finish(row, "cancelled", "Cancelled before it finished; what finished is kept.")
        s.add(row)
    if run.mode == "batch" and (run.status == "pending" or run.interrupted):
        from core import batch_runs  # no worker will: cancel its batches at the provider now

        batch_runs.cancel_batches(run_id)
    audit.record("run cancelled", target=f"run {run_id}", by=user, detail={"cost_usd": run.cost_usd, "finished": run.finished, "tasks": run.total})
    return get(run_id)


def launch(run_id: int) -> int | None:
    """Start a worker process for the run (it outlives the page that started it); return its pid.
    With a PostgreSQL store, a live run goes to the workers instead (``core.workers``): None, unless
    none was alive and this machine started one for the run."""
    get(run_id)
    from core import workers  # it builds on this module

    if workers.spread(run_id):
        return workers.dispatch(run_id).pid
    log = background.log_path(f"run-{run_id}.log")
    forked = forkserver.start_worker(run_id, log)  # at once, where a warm server is ready
    if forked is not None:
        return forked
    return background.start(["runs", "work", str(run_id)], log)  # the worker names itself on the run when it claims it


def status_of(run: RunView) -> str:
    """The run's status as shown: a running run whose worker went quiet is "interrupted"."""
    return "interrupted" if run.interrupted else run.status


def resumable(run: RunView) -> bool:
    """The run stopped before its end and can go on: interrupted, failed, stopped, cancelled, or never picked up.
    The ML backend's answers to Label Studio are never run again: Label Studio asks again when it needs them."""
    if run.kind not in KINDS:
        return False
    if run.interrupted or run.status in ("failed", "stopped", "cancelled"):
        return True
    return run.status == "pending" and store.utcnow() - _aware(run.created_at) > STALE_AFTER


def live(run: RunView) -> bool:
    """A worker is on the run, or about to start on it: worth following."""
    return run.status in ACTIVE and not resumable(run)


def why_stopped(run: RunView) -> str | None:
    """Why a resumable run is not going, in a sentence."""
    if run.interrupted:
        return "Its worker stopped answering (killed, crashed, or the machine restarted); resume to continue."
    if run.status == "pending":
        return "No worker has picked it up; resume to start it."
    return run.status_reason


def resume_in_background(run_id: int, *, wait: float = 15.0) -> RunView:
    """Start a worker on an unfinished run, and wait (up to ``wait`` seconds) until it has taken the
    run, so whoever asked sees it going rather than still stopped."""
    user = identity.require_role("member", "resume runs")
    before = get(run_id)
    if not resumable(before):
        raise RunError(f"Run {run_id} is {status_of(before)}; there is nothing to resume.")
    with store.session() as s:  # say now why a worker would refuse it, rather than start one in vain
        refusal = _refusal(s, s.get(store.Run, run_id))
    if refusal:
        raise RunError(refusal)
    try:
        budgets.check_start(version_of(run_id), before.started_by, None)
    except budgets.OverBudget as error:
        raise RunError(str(error)) from None
    pid = launch(run_id)
    audit.record("run resumed", target=f"run {run_id}", by=user, detail={"cost_usd": before.cost_usd, "finished": before.finished, "tasks": before.total})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        run = get(run_id)
        if run.status != before.status or run.heartbeat_at != before.heartbeat_at or (pid is not None and _exited(pid)):
            return get(run_id)
        time.sleep(0.2)
    return get(run_id)


def _exited(pid: int) -> bool:
    """Whether a worker this process started has already ended (and reap it)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # already reaped, or forked by the fork server (not our child)
        return not _alive(pid)


# -- executing -----------------------------------------------------------------------------------


def execute(run_id: int, *, progress: Callable[[RunView], None] | None = None, client: LabelStudioClient | None = None) -> RunView:
    """Work through the run's unfinished tasks in this process; return the run when it stops.

    Resuming is calling this again: tasks with an item are not sent again.
    """
    me = _claim(run_id)
    try:
        engine = _engine_for(get(run_id).mode)(run_id, me, client or connection.client(), progress)
        asyncio.run(engine.go())
    except BaseException as error:  # noqa: BLE001 - record why, then let it propagate
        reason = "Stopped by the user (interrupt); resume to continue." if isinstance(error, KeyboardInterrupt) else f"The run stopped: {error}"
        _set_status(run_id, "failed", reason, only_if_worker=me)
        raise
    return get(run_id)


def _engine_for(mode: str) -> type["_Engine"]:
    if mode == "batch":
        from core.batch_runs import BatchEngine  # it builds on the live engine below

        return BatchEngine
    return _Engine


def _claim(run_id: int) -> str:
    """Make this process the run's one worker, or refuse saying why; return this worker's name.

    The check and the write are one transaction (BEGIN IMMEDIATE on SQLite, a row lock where the
    database has one), so of two workers started at once exactly one gets the run.
    """
    me = worker_name()
    with store.writing() as s:
        take(s, run_id, me, os.getpid())
    return me


def take(s, run_id: int, me: str, pid: int | None) -> store.Run:
    """Within ``s`` (a ``store.writing`` session): the run's row, locked and marked running by ``me``,
    or a RunError saying why ``me`` may not work it."""
    row = s.exec(select(store.Run).where(store.Run.id == run_id).with_for_update()).first()
    if row is None:
        raise RunError(f"There is no run {run_id}; `python -m core runs list` shows them.")
    refusal = _refusal(s, row, me)
    if refusal:
        raise RunError(refusal)
    row.status, row.status_reason, row.cancel_requested = "running", None, False
    row.worker, row.worker_pid, row.heartbeat_at = me, pid, store.utcnow()
    row.started_at = row.started_at or store.utcnow()
    row.finished_at = None
    s.add(row)
    return row


def _refusal(s, row: store.Run, me: str | None = None) -> str | None:
    """Why a worker may not take this run now, or None."""
    if row.kind not in KINDS:
        return f"Run {row.id} holds what the ML backend answered Label Studio; it is not run again (Label Studio asks again when it needs an answer)."
    if row.status == "completed" and not _unwritten_ids(row.id):
        return f"Run {row.id} is already completed."
    if row.status == "running" and row.worker != me and not worker_gone(row.worker, row.heartbeat_at or row.started_at):
        return (
            f"Run {row.id} is already running ({_describe_worker(row.worker)}); follow it with "
            f"`python -m core runs show {row.id}` or stop it with `python -m core runs cancel {row.id}`."
        )
    going = [other for other in _live_runs_of(s, row.prompt_version_id, row.variant) if other.id != row.id]
    if going:
        return _already_going(going[0])
    return None


def _live_runs_of(s, prompt_version_id: int, variant: dict[str, Any] | None = None) -> list[store.Run]:
    """The version's runs with the same variant that a worker is on, or that one is about to take:
    one run per version at a time, and one per variant of it."""
    rows = s.exec(select(store.Run).where(store.Run.prompt_version_id == prompt_version_id, store.Run.status.in_(ACTIVE))).all()
    version = prompts.by_row_id(prompt_version_id)
    return [row for row in rows if (row.variant or None) == (variant or None) and live(_view(row, version))]


def _already_going(row: store.Run) -> str:
    version = prompts.by_row_id(row.prompt_version_id)
    tried = f" with {describe_variant(row.variant)}" if row.variant else ""
    return (
        f"{version.prompt} v{version.number}{tried} already has a run going: run {row.id} ({row.kind}, "
        f"{row.done + row.failed} of {row.total} tasks). One run per version at a time: follow it on the "
        f"{row.kind.capitalize()} page or with `python -m core runs show {row.id}`, or cancel it with "
        f"`python -m core runs cancel {row.id}`."
    )


# -- which worker, and whether it is still there ----------------------------------------------------


def worker_name(pid: int | None = None) -> str:
    """``host:pid:start``: the start time tells a live worker from a new process that reuses its pid."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid) or ''}"


def worker_gone(worker: str | None, beat: datetime | None) -> bool:
    """A worker on this machine is gone when its process is; elsewhere, when its heartbeat stopped."""
    host, pid, started = _parse_worker(worker)
    if host == socket.gethostname() and pid:
        start_now = _process_start(pid)
        return start_now is None or (bool(started) and start_now != started)
    return beat is None or store.utcnow() - _aware(beat) > STALE_AFTER


def _parse_worker(worker: str | None) -> tuple[str | None, int | None, str]:
    parts = (worker or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None, None, ""
    return parts[0], int(parts[1]), parts[2]


def _describe_worker(worker: str | None) -> str:
    host, pid, _ = _parse_worker(worker)
    if pid is None:
        return "its worker is still answering"
    return f"process {pid}" + ("" if host == socket.gethostname() else f" on {host}")


def _process_start(pid: int) -> str | None:
    """When the process started (clock ticks since boot), or None when there is no such live process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    except OSError:  # no /proc: fall back to whether the pid exists
        return "" if _alive(pid) else None
    if fields[0] in (b"Z", b"X"):  # a zombie has ended; only its exit status is left
        return None
    return fields[19].decode()


@dataclass
class _Job:
    task: Task
    call: Prepared
    cached: store.RunItem | None = None
    reserved: float = 0.0  # what the call holds against the spending limit while it is out


class _Engine:
    def __init__(self, run_id: int, me: str, client: LabelStudioClient, progress: Callable[[RunView], None] | None):
        self.run = get(run_id)
        self.run_id = run_id
        self.me = me
        self.client = client
        self.progress = progress
        self.version = version_of(run_id)
        self.targets = labeling.read(label_config(run_id) or client.label_config(self.version.project_id))
        self.schema = labeling.schema(self.targets, self.version.controls)
        self.outputs = [self.targets.output(name) for name in self.version.controls]
        self.key = keys.get(self.version.provider_key)
        self.images = messages.ImageLinks(client.url, client.file)
        self.prices = pricing.own_prices()
        self.reuse = reuses_answers(self.version, self.run.cache)
        self.stopping: str | None = None  # why no new calls go out: cancelled, the budget, another worker
        self.cancelled = False  # someone asked the run to stop
        self.batch = False  # calls paid at the Batch API's price (core.batch_runs)
        self.lost = False  # another worker took the run over: leave its state to that worker
        self.spent, self.paid_calls = _spent_so_far(run_id)  # a resumed run counts what it paid before
        self.reserved = 0.0
        # Monthly budgets count every run on the key (or by the member): the budgets, and what the
        # others spent, are read again at each heartbeat (an admin may set one while the run goes);
        # what this run spends is counted here as it goes.
        self.budgets = budgets.applying(self.version, self.run.started_by, excluding_run=run_id)
        self.month = None
        self._count_this_months_spend()
        self.over_budget: budgets.Budget | None = None
        self.cost_known = asyncio.Event()  # set as each call ends, for the calls waiting on a first real cost
        # what a call's answers are assumed to cost until one is paid: n of them for a version measuring agreement
        self.answer_tokens = tokens.typical_answer_tokens(self.targets, self.version.controls, self.version.model) * (self.version.samples or 1)
        self.predicted: dict[int, bool] = {}  # whether a task had any prediction when fetched, for the tasks not yet written
        self.writing = threading.Lock()  # one writer at a time, so no item is imported twice
        self.unwritten = 0  # answers stored but not yet in Label Studio (an estimate, for pacing writes)
        self.db = item_writer()

    async def go(self) -> None:
        client = providers.async_client(self.key, timeout=CALL_TIMEOUT, max_retries=CALL_RETRIES)
        jobs: asyncio.Queue = asyncio.Queue(maxsize=self.run.concurrency * 4)
        workers = [asyncio.create_task(self._worker(jobs, client)) for _ in range(self.run.concurrency)]
        watcher = asyncio.create_task(self._watch())  # beating until the last answer is written
        writer = asyncio.create_task(self._write_while_running())
        try:
            try:
                await asyncio.gather(self._produce(jobs), *workers)
            finally:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
                await client.close()
                self.db.close()
            if not self.lost:
                await self._write_rest()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if not self.lost:
            self._conclude()

    # producing jobs: tasks fetched in batches, rendered, answered from the cache where allowed

    async def _produce(self, jobs: asyncio.Queue) -> None:
        finished = self._finished_task_ids()
        todo = [t for t in self._task_ids() if t not in finished]
        # A first batch just big enough to fill every slot, so the first calls go out at once
        first = min(TASK_BATCH, self.run.concurrency)
        for batch in [todo[:first]] + [todo[start : start + TASK_BATCH] for start in range(first, len(todo), TASK_BATCH)]:
            if self.stopping or not batch:
                break
            for job in await self._jobs(batch):
                await jobs.put(job)
            await asyncio.sleep(0)  # let the workers send these before the next batch is fetched
        for _ in range(self.run.concurrency):
            await jobs.put(None)

    async def _jobs(self, ids: list[int], *, from_store: bool = True) -> list[_Job]:
        """The tasks' jobs: fetched from Label Studio, their calls prepared, and (``from_store``)
        matched with an earlier identical answer where the cache policy allows. A task no longer in
        the project fails here."""
        tasks = await self._fetch(ids)
        missing = set(ids) - {t.id for t in tasks}
        for task_id in sorted(missing):
            self._save(task_id, None, None, error=f"Task {task_id} is no longer in the Label Studio project.", kind="task_gone")
        prepared = await self._prepared(tasks)
        if from_store and self.reuse:
            cached = cached_answers({job.call.request.hash for job in prepared if job.call.request})
            for job in prepared:
                job.cached = cached.get(job.call.request.hash) if job.call.request else None
        return prepared

    async def _fetch(self, ids: list[int]) -> list[Task]:
        tasks = await _patiently(lambda: list(self.client.tasks(self.version.project_id, ids=ids)), self)
        self._learn(tasks)
        return tasks

    def _learn(self, tasks: list[Task]) -> None:
        """Keep whether the tasks just fetched have predictions: a task with none (a new version's
        usual case) is written with no other read of Label Studio."""
        for task in tasks:
            self.predicted[task.id] = bool(task.prediction_ids)

    async def _prepared(self, tasks: list[Task]) -> list[_Job]:
        """The batch's jobs; where the version ranks its examples by an embeddings model, the batch
        is embedded first in one request (a failure fails these tasks, each saying why)."""
        if (self.version.examples or {}).get("embeddings"):
            try:
                spent = await asyncio.to_thread(fewshot.prefetch, self.version.examples, self.targets, [t.data for t in tasks])
            except fewshot.FewShotError as error:
                return [_Job(task, Prepared(None, str(error), "examples")) for task in tasks]
            if spent.new_tokens:
                self._count_embeddings(spent)
        return [_Job(task, prepare_call(self.version, self.key, self.targets, self.schema, task.id, task.data, self.images)) for task in tasks]

    def _count_embeddings(self, spent) -> None:
        """What embedding the batch cost is the run's: its tokens and its cost."""
        with self.db.begin():
            self.db.execute(
                _COUNT_ITEM,
                {"run": self.run_id, "add_done": 0, "add_failed": 0, "add_cached": 0, "add_input": spent.new_tokens, "add_output": 0, "add_cost": spent.cost_usd},
            )
        self.spent += spent.cost_usd or 0.0

    # working: one job at a time per worker, so at most `concurrency` calls are out at once

    async def _worker(self, jobs: asyncio.Queue, client) -> None:
        while (job := await jobs.get()) is not None:
            if self.stopping:
                continue  # drain the queue without sending
            try:
                await self._work(job, client)
            except Exception as error:  # noqa: BLE001 - one task's surprise must not stop the others
                self._release(job)
                self._save(job.task.id, job, None, error=f"Unexpected error on this task: {type(error).__name__}: {error}", kind="unexpected")

    async def _work(self, job: _Job, client) -> None:
        if job.call.error:
            self._save(job.task.id, job, None, error=job.call.error, kind=job.call.kind)
        elif job.cached is not None:
            self._save(job.task.id, job, reply_from(job.cached), from_cache=True)
        elif await self._reserve(job):
            try:
                reply = await calls.ask_async(client, job.call.request)
                self._save(job.task.id, job, reply)
            finally:
                self._release(job)  # after its cost is counted: the limit never sees neither

    async def _reserve(self, job: _Job) -> bool:
        """Hold a call's cost against the spending limit before sending it, so the calls out at once
        cannot take the run past the limit together.

        Until a real cost is known, one call goes out alone holding its estimate (its prompt counted
        with tiktoken, a typical answer); after it, each call holds the average real cost so far.
        """
        limit = self.run.max_cost_usd
        if limit is None and not self.budgets:
            return not self.stopping
        while not self.paid_calls and self.reserved and not self.stopping:
            await self.cost_known.wait()
            self.cost_known.clear()
        if self.stopping:
            return False
        per_call = self.spent / self.paid_calls if self.paid_calls else self._estimated_cost(job)
        if not self._fits(per_call):
            return False
        job.reserved = per_call
        self.reserved += per_call
        return True

    def _estimated_cost(self, job: _Job) -> float:
        """A call's cost before it is paid: its prompt counted with tiktoken, a typical answer."""
        sent = tokens.prompt_tokens(job.call.request.body["messages"], self.version.model)
        return pricing.cost(self.version.model, sent, self.answer_tokens, self.prices, batch=self.batch) or 0.0

    def _fits(self, per_call: float) -> bool:
        """Whether one more call of this cost keeps the run under its spending limit and every monthly
        budget, counting what is already held; if not, the run stops sending, saying why."""
        limit = self.run.max_cost_usd
        if limit is not None and self.spent + self.reserved + per_call > limit:
            self.stopping = OVER_BUDGET
            return False
        self._count_this_months_spend()
        this_month = self.spent - self.paid_before_this_month + self.reserved + per_call
        for budget in self.budgets:
            if budget.spent_usd + this_month > budget.amount_usd:
                self.stopping, self.over_budget = OVER_MONTHLY_BUDGET, budget
                return False
        return True

    def _count_this_months_spend(self) -> None:
        """What the run paid in earlier months, which no budget counts this month (a resumed run, or
        one going when the month turns): read again only when the month has turned."""
        if budgets.month_start() != self.month:
            self.month = budgets.month_start()
            self.paid_before_this_month = budgets.run_spend_before_this_month(self.run_id)

    def _release(self, job: _Job) -> None:
        self.reserved -= job.reserved
        job.reserved = 0.0
        self.cost_known.set()

    def _save(
        self, task_id: int, job: _Job | None, reply: calls.Reply | None, *, error: str | None = None, kind: str | None = None, from_cache: bool = False
    ) -> None:
        task = job.task if job else None
        reference = task.reference(self.run.subset.get("truth", "ground-truth")) if task is not None else None
        if error:
            outcome = Outcome(reply, None, error, kind)
        else:
            outcome = read_reply(reply, self.version, self.targets, self.outputs, task.data)
        cost = (
            pricing.cost(self.version.model, reply.input_tokens, reply.output_tokens, self.prices, cached_input_tokens=reply.cached_input_tokens, batch=self.batch)
            if reply
            else None
        )
        if reply is not None and not from_cache and (reply.input_tokens or reply.output_tokens):  # a call that used tokens tells what calls cost
            self.paid_calls += 1
            self.spent += cost or 0.0
        add_item(
            self.db, self.run_id, task_id, job.call.request if job else None, outcome, cost=cost, from_cache=from_cache, truth=reference.result if reference else None
        )
        if not outcome.error and not self.run.variant:
            self.unwritten += 1

    # watching: heartbeat, cancel requests, another worker, progress

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            with store.writing() as s:
                row = s.get(store.Run, self.run_id)
                if row.worker != self.me:
                    # Another worker took the run (this one was thought gone): stop at once, touch nothing.
                    self.lost = True
                    self.stopping = "Another worker took this run over."
                    return
                row.heartbeat_at = store.utcnow()
                s.add(row)
                if row.cancel_requested and not self.stopping:
                    self.stopping, self.cancelled = "Cancelled; what finished is kept.", True
            # other runs on the same key spend too, and a budget may have been set since the last beat
            self.budgets = budgets.applying(self.version, self.run.started_by, excluding_run=self.run_id)
            if self.progress:
                self.progress(get(self.run_id))

    # writing predictions to Label Studio

    async def _write_while_running(self) -> None:
        """Write the first answers as soon as they are in (a user opening Label Studio sees the run
        going), then a chunk as soon as one is ready and whatever is waiting every WRITE_EVERY seconds,
        so little is left to write when the last answer arrives."""
        last = -math.inf
        while True:
            await asyncio.sleep(0.25)
            if self.unwritten >= WRITE_CHUNK or (self.unwritten and time.monotonic() - last >= WRITE_EVERY):
                last = time.monotonic()
                try:
                    await asyncio.to_thread(self._write_pending)
                except LabelStudioError:
                    pass  # kept in the store; the next round or the end of the run writes them

    async def _write_rest(self) -> None:
        await _patiently(self._write_pending, self, deadline=LABEL_STUDIO_GRACE, quiet=True)

    def _write_pending(self) -> int:
        with self.writing:
            written = self._write_chunks(self._unwritten())
            self.unwritten = max(0, self.unwritten - written)
            return written

    def _write_chunks(self, pending: list[int]) -> int:
        """Write answers so that a task loses its earlier prediction of this version only to its new
        one, and never holds two: a task with one gets it updated in place (or left alone when it
        already says the same), a task without one gets it by bulk import."""
        written = 0
        for start in range(0, len(pending), WRITE_CHUNK):
            chunk = _items_by_id(pending[start : start + WRITE_CHUNK])
            existing = self._existing([item.task_id for item in chunk])
            fresh = [item for item in chunk if not existing[item.task_id]]
            replacing = [item for item in chunk if existing[item.task_id]]
            done = self._replace(replacing, existing)
            if fresh:
                self._import(fresh)
                done += fresh
            with store.writing() as s:
                s.execute(update(store.RunItem).where(store.RunItem.id.in_([i.id for i in done])).values(written_to_labelstudio=True))
            for item in done:
                self.predicted.pop(item.task_id, None)  # written once per run: were it written again, it is read first
            written += len(done)
        return written

    def _existing(self, task_ids: list[int]) -> dict[int, list[Prediction]]:
        """This version's predictions in Label Studio of these tasks, read for these tasks only (a
        write costs the same in a project of 100 tasks or of 100,000). Tasks not fetched here (answers
        left by an earlier worker) or whose last write's outcome is unknown are fetched first; then
        only those with predictions have them read."""
        unseen = [task_id for task_id in task_ids if task_id not in self.predicted]
        if unseen:
            self._learn(list(self.client.tasks(self.version.project_id, ids=unseen)))
        existing: dict[int, list[Prediction]] = {task_id: [] for task_id in task_ids}
        # Only tasks the export just showed with predictions: in a project set to have its ML backend
        # predict automatically, the task list this reads asks the backend for the tasks that have none.
        to_read = [task_id for task_id in task_ids if self.predicted.get(task_id)]
        if to_read:
            for task_id, found in self.client.predictions_of_tasks(self.version.project_id, to_read).items():
                existing[task_id] = [p for p in found if p.model_version == self.version.model_version]
        return existing

    def _replace(self, items: list[store.RunItem], existing: dict[int, list[Prediction]]) -> list[store.RunItem]:
        """Update each task's prediction in place (Label Studio has no bulk update), a few at once;
        extra copies left by older versions of Prompter are deleted. Return the items now written."""
        if not items:
            return []

        def replace(item: store.RunItem) -> store.RunItem:
            keep, *extra = existing[item.task_id]
            if keep.result != item.regions or not _same_score(keep.score, item.score):
                self.client.update_prediction(keep.id, item.regions, item.score)
            for duplicate in extra:
                self.client.delete_prediction(duplicate.id)
            return item

        with ThreadPoolExecutor(REPLACE_AT_ONCE) as pool:
            futures = [pool.submit(replace, item) for item in items]
        done = [f.result() for f in futures if f.exception() is None]
        failed = next((f.exception() for f in futures if f.exception() is not None), None)
        if failed is not None:
            self._mark_written(done)
            raise failed
        return done

    def _import(self, items: list[store.RunItem]) -> None:
        """One bulk import, sent once: if its answer is lost, what Label Studio holds is read again
        before the next write, so a committed import is never sent twice."""
        try:
            self.client.import_predictions(
                self.version.project_id,
                [NewPrediction(item.task_id, item.regions, self.version.model_version, item.score) for item in items],
                chunk_size=WRITE_CHUNK,
                retries=0,
            )
        except LabelStudioError:
            for item in items:
                self.predicted.pop(item.task_id, None)  # the import may have landed: read them before the next write
            raise

    def _mark_written(self, items: list[store.RunItem]) -> None:
        if items:
            with store.writing() as s:
                s.execute(update(store.RunItem).where(store.RunItem.id.in_([i.id for i in items])).values(written_to_labelstudio=True))

    # the end

    def _conclude(self) -> None:
        status, reason = conclusion(self.run_id, self.stopping, self.over_budget)
        _set_status(self.run_id, status, reason, only_if_worker=self.me)
        if self.progress:
            self.progress(get(self.run_id))

    def _task_ids(self) -> list[int]:
        """The tasks this engine works: the run's (a chunk's, in ``core.chunks``)."""
        return self.run.subset["task_ids"]

    def _unwritten(self) -> list[int]:
        """Its answers still to write to Label Studio."""
        return _unwritten_ids(self.run_id)

    def _finished_task_ids(self) -> set[int]:
        with store.session() as s:
            return set(s.exec(select(store.RunItem.task_id).where(store.RunItem.run_id == self.run_id)).all())


async def _patiently(action: Callable[[], Any], engine: _Engine, *, deadline: float = LABEL_STUDIO_GRACE, quiet: bool = False) -> Any:
    """Run a blocking Label Studio action in a thread, retrying while Label Studio cannot be reached.

    Gives up after ``deadline`` seconds (or at once when the run is stopping and the action is not
    ``quiet``), raising, or returning None when ``quiet``.
    """
    started, wait = time.monotonic(), 1.0
    while True:
        try:
            return await asyncio.to_thread(action)
        except LabelStudioError:
            out_of_time = time.monotonic() - started > deadline
            if out_of_time or (engine.stopping and not quiet):
                if quiet:
                    return None
                raise
            await asyncio.sleep(wait)
            wait = min(wait * 2, 10.0)


# -- details --------------------------------------------------------------------------------------


def _tightest_budget(run: RunView) -> budgets.Budget | None:
    found = budgets.applying(version_of(run.id), run.started_by, excluding_run=run.id)
    return min(found, key=lambda budget: budget.amount_usd - budget.spent_usd, default=None)


def conclusion(run_id: int, stopping: str | None, over_budget: budgets.Budget | None = None) -> tuple[str, str | None]:
    """The status a run ends with, and why, from its counts and why its calls stopped (if they did)."""
    run = get(run_id)
    unwritten = len(_unwritten_ids(run_id))
    if unwritten:
        return "failed", (
            f"Label Studio could not be reached to write {unwritten} results; they are kept, and `python -m core runs resume {run_id}` writes them."
        )
    if stopping == OVER_BUDGET and run.finished < run.total:
        return "stopped", f"Stopped before passing the spending limit of {usd(run.max_cost_usd)} (spent {usd(run.cost_usd or 0.0)})."
    if stopping == OVER_MONTHLY_BUDGET and run.finished < run.total:
        over_budget = over_budget or _tightest_budget(run)  # found by another worker: read its figures again
        if over_budget is None:  # removed since
            return "stopped", f"Stopped before passing a monthly budget (this run spent {usd(run.cost_usd or 0.0)}). An admin can raise the budget; then resume."
        this_run = budgets.run_spend_this_month(run_id)
        return "stopped", (
            f"Stopped before passing the monthly budget of {over_budget.what} ({usd(over_budget.amount_usd)}): this month's spend "
            f"on it is {usd(over_budget.spent_usd + this_run)}, this run's part {usd(this_run)}. An admin can raise the budget; then resume."
        )
    if stopping and run.finished < run.total:
        return ("cancelled" if run.cancel_requested else "stopped"), stopping
    if run.finished < run.total:
        return "failed", f"{run.total - run.finished} tasks were not run; resume to run them."
    if run.failed and not run.done:
        return "failed", f"All {run.failed} tasks failed: {failures.sentence(failures_of(run_id))}"
    return "completed", None


def _unwritten_ids(run_id: int) -> list[int]:
    """The run's answers still to write to Label Studio; none for a variant run, which is never written."""
    with store.session() as s:
        return list(
            s.exec(
                select(store.RunItem.id)
                .join(store.Run, store.Run.id == store.RunItem.run_id)
                .where(
                    store.RunItem.run_id == run_id,
                    store.Run.variant.is_(None),
                    store.RunItem.status == "ok",
                    store.RunItem.written_to_labelstudio == False,  # noqa: E712
                )
                .order_by(store.RunItem.id)
            ).all()
        )


def _items_by_id(ids: Iterable[int]) -> list[store.RunItem]:
    with store.session() as s:
        return list(s.exec(select(store.RunItem).where(store.RunItem.id.in_(list(ids))).order_by(store.RunItem.id)).all())


def reply_from(item: store.RunItem) -> calls.Reply:
    samples = tuple(item.samples) if item.samples else None  # n answers stay n: voted on again as when they came
    return calls.Reply(
        item.raw_output,
        item.input_tokens or 0,
        item.output_tokens or 0,
        item.latency_ms or 0.0,
        confidence=item.score,
        confidences=item.confidences,
        samples=samples,
        cached_input_tokens=item.cached_input_tokens or 0,
    )


def cached_answers(hashes: set[str]) -> dict[str, store.RunItem]:
    """The answers already paid for, in any run, to the calls with these hashes (failed ones never)."""
    if not hashes:
        return {}
    with store.session() as s:
        found = s.exec(select(store.RunItem).where(store.RunItem.call_hash.in_(hashes), store.RunItem.status == "ok")).all()
    return {item.call_hash: item for item in found}


# -- one task's call, as the store keeps it: a run's, or one the ML backend made ---------------------


@dataclass(frozen=True)
class Prepared:
    """A task's call, ready to send, or why it cannot be made (the task's data, the version's examples)."""

    request: calls.Request | None
    error: str | None = None
    kind: str | None = None


def prepare_call(version: Version, key: keys.Key, targets: labeling.Targets, schema: dict[str, Any], task_id: int, data: dict[str, Any], images: messages.ImageLinks) -> Prepared:
    try:
        sent = messages.build(version, targets, data, images, task_id)
    except (RenderError, LabelStudioError) as error:
        return Prepared(None, str(error), "missing_field" if isinstance(error, MissingField) else "task_data")
    except fewshot.FewShotError as error:
        return Prepared(None, str(error), "examples")
    return Prepared(calls.request(version, key, sent, schema))


@dataclass(frozen=True)
class Outcome:
    """What one task's call came to: the reply (its confidence measured) and its answer as regions,
    or why the task failed."""

    reply: calls.Reply | None
    answer: labeling.Answer | None = None
    error: str | None = None
    kind: str | None = None


def failed(error: str, kind: str) -> Outcome:
    return Outcome(None, None, error, kind)


def read_reply(reply: calls.Reply, version: Version, targets: labeling.Targets, outputs: list, data: dict[str, Any]) -> Outcome:
    """The reply measured and read against the labeling config: a provider's error, or an answer
    that does not fit the config, fails the task with its reason."""
    answer = None
    if reply.ok:
        reply = confidence.measure(reply, outputs)
        answer = labeling.to_regions(targets, version.controls, reply.raw, data)
    if reply.error:
        return Outcome(reply, answer, reply.error, reply.error_kind or "provider_error")
    if answer is not None and answer.error:
        return Outcome(reply, answer, answer.error, answer.error_kind or "invalid_answer")
    return Outcome(reply, answer)


def item_writer():
    """A connection that stores items (``add_item``), taking the write lock at the start of each."""
    return store.engine().execution_options(sqlite_begin="IMMEDIATE").connect()


def add_item(
    db, run_id: int, task_id: int, request: calls.Request | None, outcome: Outcome, *, cost: float | None, from_cache: bool = False, truth: Any = None, written: bool = False
) -> None:
    """Store one task's item and add it to its run's tokens, cost and counts, in one short
    transaction (statements compiled once): a crash loses no finished task. ``cost`` is what the
    call costs at its price; an answer from the store adds nothing to the run's cost."""
    reply, answer, error = outcome.reply, outcome.answer, outcome.error
    paid = reply is not None and not from_cache
    row = {
        "run_id": run_id,
        "task_id": task_id,
        "status": "failed" if error else "ok",
        "call_hash": request.hash if request else "",
        "messages_hash": request.messages_hash if request else "",
        "raw_output": reply.raw if reply else None,
        "parsed": answer.parsed if answer else None,
        "regions": answer.regions if answer and answer.ok else None,
        "input_tokens": reply.input_tokens if reply else None,
        "output_tokens": reply.output_tokens if reply else None,
        "cached_input_tokens": reply.cached_input_tokens if reply else None,
        "cost_usd": cost,
        "latency_ms": reply.latency_ms if reply else None,
        "score": reply.confidence if reply else None,
        "confidences": reply.confidences if reply else None,
        "samples": list(reply.samples) if reply and reply.samples else None,
        "error": error,
        "error_kind": outcome.kind if error else None,
        "from_cache": from_cache,
        "written_to_labelstudio": written,
        "ground_truth": truth,
        "created_at": store.utcnow(),
    }
    counts = {
        "run": run_id,
        "add_done": 0 if error else 1,
        "add_failed": 1 if error else 0,
        "add_cached": 1 if from_cache else 0,
        "add_input": reply.input_tokens if paid else 0,
        "add_output": reply.output_tokens if paid else 0,
        # an answer from the store costs nothing now (when it had a price at all)
        "add_cost": (0.0 if cost is not None else None) if from_cache else (cost if paid else None),
    }
    with db.begin():
        db.execute(_INSERT_ITEM, row)
        db.execute(_COUNT_ITEM, counts)


def _set_status(run_id: int, status: str, reason: str | None, *, only_if_worker: str | None = None) -> None:
    """Set the run's status; with ``only_if_worker``, only while that worker still has the run."""
    with store.writing() as s:
        row = s.get(store.Run, run_id)
        if only_if_worker is not None and row.worker != only_if_worker:
            return
        _finish(row, status, reason)
        s.add(row)


def _spent_so_far(run_id: int) -> tuple[float, int]:
    """What the run paid before (resumed runs count it) and for how many calls, read in one statement:
    with workers storing answers meanwhile, two reads could pair one call's cost with another's count
    and make calls look cheaper than they are."""
    paid = (
        select(func.count(store.RunItem.id))
        .where(
            store.RunItem.run_id == run_id,
            store.RunItem.from_cache == False,  # noqa: E712
            (store.RunItem.input_tokens > 0) | (store.RunItem.output_tokens > 0),
        )
        .scalar_subquery()
    )
    with store.session() as s:
        cost, count = s.exec(select(store.Run.cost_usd, paid).where(store.Run.id == run_id)).one()
    return (cost or 0.0), int(count)


def _same_score(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and abs(a - b) < 1e-9)


def _finish(row: store.Run, status: str, reason: str | None) -> None:
    row.status, row.status_reason = status, reason
    if status != "running":
        row.finished_at = store.utcnow()


def _view(row: store.Run, version: Version) -> RunView:
    return RunView(
        id=row.id,
        kind=row.kind,
        prompt=version.prompt,
        version=version.number,
        project_id=version.project_id,
        subset={k: v for k, v in row.subset.items() if k != "task_ids"} | {"task_ids": list(row.subset.get("task_ids", []))},
        status=row.status,
        status_reason=row.status_reason,
        total=row.total,
        done=row.done,
        failed=row.failed,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost_usd=row.cost_usd,
        concurrency=row.concurrency,
        max_cost_usd=row.max_cost_usd,
        cancel_requested=row.cancel_requested,
        cache=row.cache,
        cached=row.cached,
        worker_pid=row.worker_pid,
        worker=row.worker,
        heartbeat_at=row.heartbeat_at,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        started_by=row.started_by,
        variant=row.variant or None,
        mode=row.mode,
        interrupted=row.status == "running" and _worker_gone(row),
    )


def _worker_gone(row: store.Run) -> bool:
    """Whether the run's worker is gone (killed, crashed, machine restarted). A run spread over
    workers has none of its own: its chunks beat while they are worked, and while they wait in the
    queue behind other runs' it is only gone when no worker is alive to take them."""
    if not worker_gone(row.worker, row.heartbeat_at or row.started_at):
        return False
    if row.worker == WORKERS:
        from core import workers  # which builds on this module

        return not workers.alive()
    return True


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=store.utcnow().tzinfo)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

