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
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import bindparam, func, update
from sqlmodel import select

from core.formatting import usd
from core import calls, connection, keys, labeling, messages, pricing, prompts, providers, settings, store
from core.labelstudio import LabelStudioClient, LabelStudioError, NewPrediction, Task
from core.prompts import Version
from core.rendering import RenderError

DEFAULT_CONCURRENCY = 16
CALL_TIMEOUT = 60.0  # seconds per attempt
CALL_RETRIES = 4  # the SDK's retries: 429 (honouring Retry-After), 5xx, timeouts, lost connections
TASK_BATCH = 200  # tasks fetched from Label Studio per request
WRITE_CHUNK = 500  # predictions per import (Label Studio's import has a large fixed cost per request)
WRITE_EVERY = 2.0  # at most this many seconds between writes to Label Studio while running
HEARTBEAT_EVERY = 1.0
STALE_AFTER = timedelta(seconds=30)  # a running run whose worker is this quiet has stopped
LABEL_STUDIO_GRACE = 120.0  # how long the end of a run waits for Label Studio to come back

ACTIVE = ("pending", "running")


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
    worker_pid: int | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def model_version(self) -> str:
        return f"{self.prompt}@v{self.version}"

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def interrupted(self) -> bool:
        """Marked running, but its worker has gone quiet (killed, crashed, machine restarted)."""
        if self.status != "running":
            return False
        beat = self.heartbeat_at or self.started_at
        return beat is None or store.utcnow() - _aware(beat) > STALE_AFTER

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
            "subset": {k: v for k, v in self.subset.items() if k != "task_ids"},
            "tasks": self.total,
            "completed": self.done,
            "failed": self.failed,
            "cost_usd": self.cost_usd,
            "tokens": {"input": self.input_tokens, "output": self.output_tokens},
            "created_at": _aware(self.created_at).isoformat(),
            "finished_at": _aware(self.finished_at).isoformat() if self.finished_at else None,
        }

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the pace so far; None before there is a pace."""
        elapsed = self.elapsed_seconds
        if self.status != "running" or not elapsed or not self.finished:
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
) -> RunView:
    if kind not in ("evaluate", "predict"):
        raise RunError(f"kind: {kind!r} is not a run kind (evaluate or predict).")
    ids = list(dict.fromkeys(int(t) for t in task_ids))
    if not ids:
        raise RunError("The run has no tasks; pick a subset with tasks in it.")
    if not 1 <= int(concurrency) <= 256:
        raise RunError(f"concurrency: {concurrency} is outside 1 to 256.")
    if max_cost_usd is not None and max_cost_usd <= 0:
        raise RunError("max cost: give a positive number of US dollars, or none for no limit.")
    row = store.Run(
        prompt_version_id=prompts.row_id(version),
        kind=kind,
        subset={**(subset or {}), "task_ids": ids},
        total=len(ids),
        concurrency=int(concurrency),
        max_cost_usd=max_cost_usd,
        label_config=label_config,
    )
    with store.writing() as s:
        s.add(row)
        s.flush()
        run_id = row.id
    return get(run_id)


def get(run_id: int) -> RunView:
    with store.session() as s:
        row = s.get(store.Run, run_id)
        if row is None:
            raise RunError(f"There is no run {run_id}; `python -m core runs list` shows them.")
        return _view(row, prompts.by_row_id(row.prompt_version_id))


def runs(*, prompt: str | None = None, project_id: int | None = None, kind: str | None = None, limit: int = 200) -> list[RunView]:
    """Runs, newest first."""
    with store.session() as s:
        query = select(store.Run).order_by(store.Run.id.desc()).limit(limit)
        if kind:
            query = query.where(store.Run.kind == kind)
        rows = s.exec(query).all()
    found = []
    versions: dict[int, Version] = {}
    for row in rows:
        version = versions.get(row.prompt_version_id) or versions.setdefault(row.prompt_version_id, prompts.by_row_id(row.prompt_version_id))
        if (prompt is None or version.prompt == prompt) and (project_id is None or version.project_id == project_id):
            found.append(_view(row, version))
    return found


def version_of(run_id: int) -> Version:
    with store.session() as s:
        row = s.get(store.Run, run_id)
    if row is None:
        raise RunError(f"There is no run {run_id}.")
    return prompts.by_row_id(row.prompt_version_id)


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


def cancel(run_id: int) -> RunView:
    """Ask the run to stop sending calls. A run whose worker is gone is marked cancelled at once."""
    run = get(run_id)
    if run.status not in ACTIVE:
        raise RunError(f"Run {run_id} is {run.status}; only a pending or running run can be cancelled.")
    with store.writing() as s:
        row = s.get(store.Run, run_id)
        row.cancel_requested = True
        if row.status == "pending" or run.interrupted:
            _finish(row, "cancelled", "Cancelled before it finished; what finished is kept.")
        s.add(row)
    return get(run_id)


def launch(run_id: int) -> int:
    """Start a worker process for the run (it outlives the page that started it); return its pid."""
    get(run_id)
    log = settings.load().home / "logs" / f"run-{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "core", "runs", "work", str(run_id)],
            cwd=settings.REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # not killed with the dashboard's process group
        )
    with store.writing() as s:
        row = s.get(store.Run, run_id)
        if row.status == "pending":
            row.worker_pid = worker.pid
            s.add(row)
    return worker.pid


def status_of(run: RunView) -> str:
    """The run's status as shown: a running run whose worker went quiet is "interrupted"."""
    return "interrupted" if run.interrupted else run.status


def resumable(run: RunView) -> bool:
    """The run stopped before its end and can go on: interrupted, failed, stopped, cancelled, or never picked up."""
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
    before = get(run_id)
    if not resumable(before):
        raise RunError(f"Run {run_id} is {status_of(before)}; there is nothing to resume.")
    pid = launch(run_id)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        run = get(run_id)
        if run.status != before.status or run.heartbeat_at != before.heartbeat_at or _exited(pid):
            return get(run_id)
        time.sleep(0.2)
    return get(run_id)


def _exited(pid: int) -> bool:
    """Whether a worker this process started has already ended (and reap it)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # already reaped, or not our child
        return True


# -- executing -----------------------------------------------------------------------------------


def execute(run_id: int, *, progress: Callable[[RunView], None] | None = None, client: LabelStudioClient | None = None) -> RunView:
    """Work through the run's unfinished tasks in this process; return the run when it stops.

    Resuming is calling this again: tasks with an item are not sent again.
    """
    _claim(run_id)
    try:
        engine = _Engine(run_id, client or connection.client(), progress)
        asyncio.run(engine.go())
    except BaseException as error:  # noqa: BLE001 - record why, then let it propagate
        reason = "Stopped by the user (interrupt); resume to continue." if isinstance(error, KeyboardInterrupt) else f"The run stopped: {error}"
        _set_status(run_id, "failed", reason)
        raise
    return get(run_id)


def _claim(run_id: int) -> None:
    run = get(run_id)
    if run.status == "completed":
        # A completed run may still owe Label Studio some predictions, which a resume writes.
        if not _unwritten_ids(run_id):
            raise RunError(f"Run {run_id} is already completed.")
    elif run.status == "running" and not run.interrupted and run.worker_pid != os.getpid() and _alive(run.worker_pid):
        raise RunError(f"Run {run_id} is already running (process {run.worker_pid}).")
    with store.writing() as s:
        row = s.get(store.Run, run_id)
        row.status, row.status_reason, row.cancel_requested = "running", None, False
        row.worker_pid, row.heartbeat_at = os.getpid(), store.utcnow()
        row.started_at = row.started_at or store.utcnow()
        row.finished_at = None
        s.add(row)


@dataclass
class _Job:
    task: Task
    request: calls.Request | None
    render_error: str | None = None
    cached: store.RunItem | None = None


class _Engine:
    def __init__(self, run_id: int, client: LabelStudioClient, progress: Callable[[RunView], None] | None):
        self.run = get(run_id)
        self.run_id = run_id
        self.client = client
        self.progress = progress
        self.version = version_of(run_id)
        self.targets = labeling.read(label_config(run_id) or client.label_config(self.version.project_id))
        self.schema = labeling.schema(self.targets, self.version.controls)
        self.key = keys.get(self.version.provider_key)
        self.images = messages.ImageLinks(client.url, client.file)
        self.prices = pricing.table()
        self.stopping: str | None = None  # why no new calls go out: cancelled, or the budget
        self.spent = self.run.cost_usd or 0.0
        self.paid_calls = 0
        self.in_flight = 0
        self.old_predictions: dict[int, list[int]] | None = None
        self.writes_started = False
        self.writing = threading.Lock()  # one writer at a time, so no item is imported twice
        self.unwritten = 0  # answers stored but not yet in Label Studio (an estimate, for pacing writes)
        self.db = store.engine().execution_options(sqlite_begin="IMMEDIATE").connect()

    async def go(self) -> None:
        client = providers.async_client(self.key, timeout=CALL_TIMEOUT, max_retries=CALL_RETRIES)
        jobs: asyncio.Queue = asyncio.Queue(maxsize=self.run.concurrency * 4)
        workers = [asyncio.create_task(self._worker(jobs, client)) for _ in range(self.run.concurrency)]
        watcher = asyncio.create_task(self._watch())
        writer = asyncio.create_task(self._write_while_running())
        try:
            await asyncio.gather(self._produce(jobs), *workers)
        finally:
            for task in (watcher, writer):
                task.cancel()
            await asyncio.gather(watcher, writer, return_exceptions=True)
            await client.close()
            self.db.close()
        await self._write_rest()
        self._conclude()

    # producing jobs: tasks fetched in batches, rendered, answered from the cache where possible

    async def _produce(self, jobs: asyncio.Queue) -> None:
        finished = self._finished_task_ids()
        todo = [t for t in self.run.subset["task_ids"] if t not in finished]
        for start in range(0, len(todo), TASK_BATCH):
            if self.stopping:
                break
            batch = todo[start : start + TASK_BATCH]
            tasks = await self._fetch(batch)
            missing = set(batch) - {t.id for t in tasks}
            for task_id in sorted(missing):
                self._save(task_id, None, None, error=f"Task {task_id} is no longer in the Label Studio project.")
            prepared = [self._prepare(task) for task in tasks]
            cached = self._cached({job.request.hash for job in prepared if job.request})
            for job in prepared:
                job.cached = cached.get(job.request.hash) if job.request else None
                await jobs.put(job)
        for _ in range(self.run.concurrency):
            await jobs.put(None)

    async def _fetch(self, ids: list[int]) -> list[Task]:
        return await _patiently(lambda: list(self.client.tasks(self.version.project_id, ids=ids)), self)

    def _prepare(self, task: Task) -> _Job:
        try:
            sent = messages.build(self.version, self.targets, task.data, self.images)
        except (RenderError, LabelStudioError) as error:
            return _Job(task, None, render_error=str(error))
        return _Job(task, calls.request(self.version, self.key, sent, self.schema))

    def _cached(self, hashes: set[str]) -> dict[str, store.RunItem]:
        if not hashes:
            return {}
        with store.session() as s:
            found = s.exec(select(store.RunItem).where(store.RunItem.call_hash.in_(hashes), store.RunItem.status == "ok")).all()
        return {item.call_hash: item for item in found}

    # working: one job at a time per worker, so at most `concurrency` calls are out at once

    async def _worker(self, jobs: asyncio.Queue, client) -> None:
        while (job := await jobs.get()) is not None:
            if self.stopping:
                continue  # drain the queue without sending
            try:
                await self._work(job, client)
            except Exception as error:  # noqa: BLE001 - one task's surprise must not stop the others
                self._save(job.task.id, job, None, error=f"Unexpected error on this task: {type(error).__name__}: {error}")

    async def _work(self, job: _Job, client) -> None:
        if job.render_error:
            self._save(job.task.id, job, None, error=job.render_error)
        elif job.cached is not None:
            self._save(job.task.id, job, _reply_from(job.cached), from_cache=True)
        elif not self._over_budget():
            self.in_flight += 1
            try:
                reply = await calls.ask_async(client, job.request)
            finally:
                self.in_flight -= 1
            self._save(job.task.id, job, reply)

    def _over_budget(self) -> bool:
        """Stop before a call could take the cost past the limit (at the average cost of a call so far)."""
        limit = self.run.max_cost_usd
        if limit is None or self.stopping:
            return bool(self.stopping)
        average = self.spent / self.paid_calls if self.paid_calls else 0.0
        if self.spent + average * (self.in_flight + 1) > limit:
            self.stopping = f"Stopped before passing the spending limit of {usd(limit)} (spent {usd(self.spent)})."
        return bool(self.stopping)

    def _save(self, task_id: int, job: _Job | None, reply: calls.Reply | None, *, error: str | None = None, from_cache: bool = False) -> None:
        task = job.task if job else None
        reference = task.reference(self.run.subset.get("truth", "ground-truth")) if task is not None else None
        truth = reference.result if reference else None
        answer = None
        if reply is not None and reply.ok:
            answer = labeling.to_regions(self.targets, self.version.controls, reply.raw, task.data)
        error = error or (reply.error if reply else None) or (answer.error if answer else None)
        cost = pricing.cost(self.version.model, reply.input_tokens, reply.output_tokens, self.prices) if reply else None
        row = {
            "run_id": self.run_id,
            "task_id": task_id,
            "status": "failed" if error else "ok",
            "call_hash": job.request.hash if job and job.request else "",
            "messages_hash": job.request.messages_hash if job and job.request else "",
            "raw_output": reply.raw if reply else None,
            "parsed": answer.parsed if answer else None,
            "regions": answer.regions if answer and answer.ok else None,
            "input_tokens": reply.input_tokens if reply else None,
            "output_tokens": reply.output_tokens if reply else None,
            "cost_usd": cost,
            "latency_ms": reply.latency_ms if reply else None,
            "score": reply.confidence if reply else None,
            "error": error,
            "from_cache": from_cache,
            "written_to_labelstudio": False,
            "ground_truth": truth,
            "created_at": store.utcnow(),
        }
        paid = reply is not None and not from_cache
        if paid:
            self.paid_calls += 1
            self.spent += cost or 0.0
        counts = {
            "run": self.run_id,
            "add_done": 0 if error else 1,
            "add_failed": 1 if error else 0,
            "add_input": reply.input_tokens if paid else 0,
            "add_output": reply.output_tokens if paid else 0,
            "add_cost": cost if paid else None,
        }
        # One short transaction per item, with statements compiled once: a crash loses no finished
        # task, and the event loop is not held up between answers.
        with self.db.begin():
            self.db.execute(_INSERT_ITEM, row)
            self.db.execute(_COUNT_ITEM, counts)
        if not error:
            self.unwritten += 1

    # watching: heartbeat, cancel requests, progress

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            with store.writing() as s:
                row = s.get(store.Run, self.run_id)
                row.heartbeat_at = store.utcnow()
                s.add(row)
                if row.cancel_requested and not self.stopping:
                    self.stopping = "Cancelled; what finished is kept."
            if self.progress:
                self.progress(get(self.run_id))

    # writing predictions to Label Studio

    async def _write_while_running(self) -> None:
        """Write a chunk as soon as one is ready, and whatever is waiting every WRITE_EVERY seconds,
        so little is left to write when the last answer arrives."""
        last = time.monotonic()
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
            written = self._write_chunks(_unwritten_ids(self.run_id))
            self.unwritten = max(0, self.unwritten - written)
            return written

    def _write_chunks(self, pending: list[int]) -> int:
        written = 0
        for start in range(0, len(pending), WRITE_CHUNK):
            chunk = _items_by_id(pending[start : start + WRITE_CHUNK])
            self._replace_old([item.task_id for item in chunk])
            self.client.import_predictions(
                self.version.project_id,
                [NewPrediction(item.task_id, item.regions, self.version.model_version, item.score) for item in chunk],
                chunk_size=WRITE_CHUNK,
            )
            with store.writing() as s:
                s.execute(update(store.RunItem).where(store.RunItem.id.in_([i.id for i in chunk])).values(written_to_labelstudio=True))
            written += len(chunk)
        return written

    def _replace_old(self, task_ids: list[int]) -> None:
        """Delete this version's earlier predictions on these tasks (and only those)."""
        if self.old_predictions is None:
            self.old_predictions = self._earlier_predictions()
            covered = set(self.run.subset["task_ids"])
            if self.old_predictions and set(self.old_predictions) <= covered and not self.writes_started:
                # Every earlier prediction of this version is on this run's tasks: one call removes them.
                self.client.delete_model_version(self.version.project_id, self.version.model_version)
                self.old_predictions = {}
        self.writes_started = True
        for task_id in task_ids:
            for prediction_id in self.old_predictions.pop(task_id, []):
                self.client.delete_prediction(prediction_id)

    def _earlier_predictions(self) -> dict[int, list[int]]:
        names = {v.name for v in self.client.model_versions(self.version.project_id)}
        if self.version.model_version not in names:
            return {}
        found: dict[int, list[int]] = {}
        for p in self.client.predictions(self.version.project_id):
            if p.model_version == self.version.model_version:
                found.setdefault(p.task_id, []).append(p.id)
        # Items of this run already written are this run's own predictions, not earlier ones.
        mine = set(_written_task_ids(self.run_id))
        return {t: ids for t, ids in found.items() if t not in mine}

    # the end

    def _conclude(self) -> None:
        run = get(self.run_id)
        unwritten = len(_unwritten_ids(self.run_id))
        if unwritten:
            status, reason = "failed", (
                f"Label Studio could not be reached to write {unwritten} results; they are kept, and "
                f"`python -m core runs resume {self.run_id}` writes them."
            )
        elif self.stopping and run.finished < run.total:
            status, reason = ("cancelled" if run.cancel_requested else "stopped"), self.stopping
        elif run.finished < run.total:
            status, reason = "failed", f"{run.total - run.finished} tasks were not run; resume to run them."
        else:
            status, reason = "completed", None
        _set_status(self.run_id, status, reason)
        if self.progress:
            self.progress(get(self.run_id))

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


def _unwritten_ids(run_id: int) -> list[int]:
    with store.session() as s:
        return list(
            s.exec(
                select(store.RunItem.id).where(
                    store.RunItem.run_id == run_id, store.RunItem.status == "ok", store.RunItem.written_to_labelstudio == False  # noqa: E712
                ).order_by(store.RunItem.id)
            ).all()
        )


def _written_task_ids(run_id: int) -> list[int]:
    with store.session() as s:
        return list(s.exec(select(store.RunItem.task_id).where(store.RunItem.run_id == run_id, store.RunItem.written_to_labelstudio == True)).all())  # noqa: E712


def _items_by_id(ids: Iterable[int]) -> list[store.RunItem]:
    with store.session() as s:
        return list(s.exec(select(store.RunItem).where(store.RunItem.id.in_(list(ids))).order_by(store.RunItem.id)).all())


def _reply_from(item: store.RunItem) -> calls.Reply:
    return calls.Reply(item.raw_output, item.input_tokens or 0, item.output_tokens or 0, item.latency_ms or 0.0, confidence=item.score)


def _set_status(run_id: int, status: str, reason: str | None) -> None:
    with store.writing() as s:
        row = s.get(store.Run, run_id)
        _finish(row, status, reason)
        s.add(row)


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
        worker_pid=row.worker_pid,
        heartbeat_at=row.heartbeat_at,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


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

