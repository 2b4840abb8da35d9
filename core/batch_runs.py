"""Batch runs: a run's calls sent through the provider's Batch API (``core.batch_api``) instead of
one at a time, at the Batch API's price, answered within the provider's window (24 hours).

Everything ``core.runs`` promises holds for a batch run too (the cache, the spending limit and the
monthly budgets, one run per version, items stored as they come, predictions written to Label
Studio, cancel, resume). What differs:

- The calls are written as JSONL lines and submitted in parts within the API's limits. Each part is
  a row of ``run_batches``, written before anything is sent and given the provider's file id and
  batch id as soon as each exists, so a worker that dies at any point leaves the next one what it
  needs to follow the part rather than send it again. A part whose batch was created but whose id
  was never stored is found again by its input file.
- The worker looks at its open batches, more and more rarely (up to PROMPTER_BATCH_POLL_SECONDS);
  when a batch ends, its answers are stored as items (a provider's error as a failed item with its
  reason) and written to Label Studio at once.
- The limits hold each part's estimated cost (its prompts counted with tiktoken, a typical answer,
  at the batch price) from its submission until its answers are in and paid for.
- Cancel cancels the open batches; what they answered before stopping is kept, and the tasks they
  did not answer stay unfinished (a resume sends them in a new part).
- An expired batch keeps its answers; the tasks it did not answer fail as "batch expired", and
  retrying the run's failed tasks sends them again.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import select

from core import batch_api, providers, settings, store
from core.formatting import duration, usd
from core.labelstudio import LabelStudioError
from core.runs import CALL_RETRIES, CALL_TIMEOUT, TASK_BATCH, RunView, _Engine, _Job, reply_from

FIRST_LOOK = 1.0  # seconds before the first look at a new batch; each wait doubles up to the setting


def custom_id(task_id: int) -> str:
    return f"task-{task_id}"


@dataclass(frozen=True)
class Part:
    """One part of a batch run as the pages show it."""

    number: int
    status: str
    requests: int
    answered: int
    batch_id: str | None
    error: str | None

    @property
    def describe(self) -> str:
        if self.status == "preparing":
            return f"part {self.number}: not submitted" + (f" ({self.error})" if self.error else "")
        return f"part {self.number}: {self.status.replace('_', ' ')}, {self.answered:,} of {self.requests:,} answered"


def parts(run_id: int) -> list[Part]:
    """The run's parts, in the order they were submitted."""
    with store.session() as s:
        rows = s.exec(select(store.RunBatch).where(store.RunBatch.run_id == run_id).order_by(store.RunBatch.id)).all()
    return [Part(n, row.status, row.requests, row.answered, row.batch_id, row.error) for n, row in enumerate(rows, start=1)]


def ended(run_id: int) -> tuple[int, int]:
    """How many of the run's batches have ended, of how many."""
    found = parts(run_id)
    return sum(p.status in batch_api.ENDED for p in found), len(found)


def summary(run: RunView) -> str | None:
    """Where a batch run's parts are, in a sentence; None for a live run."""
    if run.mode != "batch":
        return None
    found = parts(run.id)
    if not found:
        return "Batch API: no part submitted yet."
    open_parts = [p for p in found if p.status not in batch_api.ENDED]
    said = "; ".join(p.describe for p in (open_parts or found)[:3]) + ("; ..." if len(open_parts or found) > 3 else "")
    waiting = " The provider answers within 24 hours." if open_parts and run.status == "running" else ""
    return f"Batch API, {len(found)} part{'s' if len(found) != 1 else ''}: {said}.{waiting}"


@dataclass(frozen=True)
class Offer:
    """What the Batch API would change for a run: its price and its wait, said before the start."""

    tasks: int
    live_cost_usd: float | None  # estimates, at the live and the batch prices
    batch_cost_usd: float | None
    typical_wait_seconds: float | None  # the median wait of the batches this key has finished
    batches_measured: int

    def sentence(self) -> str:
        if self.live_cost_usd is not None and self.batch_cost_usd is not None:
            saved = self.live_cost_usd - self.batch_cost_usd
            share = f", {saved / self.live_cost_usd:.0%}" if self.live_cost_usd else ""
            price = f"Batch API: an estimated {usd(self.batch_cost_usd)} instead of {usd(self.live_cost_usd)} live (saves about {usd(saved)}{share})."
        else:
            price = "Batch API: the model has no price here, so the saving cannot be estimated (OpenAI's Batch API costs half the live price)."
        if self.typical_wait_seconds is not None:
            measured = "batch" if self.batches_measured == 1 else f"{self.batches_measured} batches"
            wait = f" The provider answers within 24 hours; this key's last finished {measured} took {duration(self.typical_wait_seconds)} at the median."
        else:
            wait = " The provider answers within 24 hours (no batch of this key has finished yet, so there is no typical wait to go by)."
        return price + wait + " Answers are written to Label Studio as each batch ends; the run can be closed, followed or cancelled from any page."


def offer(tasks: int, live_cost_usd: float | None, batch_cost_usd: float | None, provider_key: str) -> Offer | None:
    """The Batch API's offer for a run of ``tasks`` on this key; None below the size it is offered
    from (PROMPTER_BATCH_OFFER_FROM), where waiting is not worth the saving."""
    if tasks < settings.load().batch_offer_from:
        return None
    waits = typical_waits(provider_key)
    return Offer(tasks, live_cost_usd, batch_cost_usd, statistics.median(waits) if waits else None, len(waits))


def offer_for(version, task_ids: list[int], client, cache: str = "auto") -> Offer | None:
    """The offer for a run of ``version`` over these tasks, its costs estimated as a prediction run's
    are (``core.predict.estimate``); None below the size it is offered from, without reading a task."""
    if len(task_ids) < settings.load().batch_offer_from:
        return None
    from core import predict  # its estimate reads tasks from Label Studio

    guess = predict.estimate(version, predict.Scope(list(task_ids), ""), client, cache=cache)
    return offer(guess.tasks, guess.cost_usd, guess.batch_cost_usd, version.provider_key)


def typical_waits(provider_key: str, last: int = 20) -> list[float]:
    """Seconds from submission to the end of this key's last finished batches."""
    with store.session() as s:
        found = s.exec(
            select(store.RunBatch.created_at, store.RunBatch.ended_at)
            .join(store.Run, store.Run.id == store.RunBatch.run_id)
            .join(store.PromptVersion, store.PromptVersion.id == store.Run.prompt_version_id)
            .where(store.PromptVersion.provider_key == provider_key, store.RunBatch.status == "completed", store.RunBatch.ended_at.is_not(None))
            .order_by(store.RunBatch.id.desc())
            .limit(last)
        ).all()
    return [(ended - created).total_seconds() for created, ended in found]


def cancel_batches(run_id: int) -> None:
    """Cancel the run's open batches at the provider (for a run whose worker is gone: no one else
    would). What they answered stays readable: resuming the run collects it."""
    from core import keys, runs

    open_rows = [row for row in _open_rows(run_id) if row.batch_id]
    if not open_rows:
        return
    with providers.client(keys.get(runs.version_of(run_id).provider_key), timeout=CALL_TIMEOUT, max_retries=CALL_RETRIES) as api:
        for row in open_rows:
            try:
                state = batch_api.cancel(api, row.batch_id)
            except batch_api.BatchError as error:
                _update(row.id, error=str(error))
                continue
            _update(row.id, status=state.status, answered=state.completed + state.failed)


class BatchEngine(_Engine):
    """The run engine, with the calls submitted as batches and followed until they end."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch = True
        self.endpoint = batch_api.endpoint_for(self.key.provider)
        configured = settings.load()
        self.longest_wait = configured.batch_poll_seconds
        self.max_requests = min(configured.batch_max_requests, batch_api.MAX_REQUESTS_PER_BATCH)
        self.api = None
        self.refused = False  # the provider refused a part: the others are kept for a resume, not sent

    async def go(self) -> None:
        self.api = providers.client(self.key, timeout=CALL_TIMEOUT, max_retries=CALL_RETRIES)
        watcher = asyncio.create_task(self._watch())  # beating until the last answer is written
        try:
            try:
                self.reserved = sum(row.reserved_usd for row in _open_rows(self.run_id))  # held by parts a previous worker sent
                await self._send_unsent()
                await self._submit_the_rest()
                await self._follow()
            finally:
                self.api.close()
                self.db.close()
            if not self.lost:
                await self._write_rest()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if not self.lost:
            self._conclude()

    # submitting

    async def _send_unsent(self) -> None:
        """Parts recorded but without a batch id: a worker stopped (or the provider refused) between
        writing the part and storing its id. Adopt the batch the provider made, or send the part."""
        for row in _open_rows(self.run_id):
            if row.batch_id or self.stopping:
                continue
            if row.input_file_id:
                try:
                    found = await asyncio.to_thread(batch_api.find, self.api, row.input_file_id)
                except batch_api.BatchError as error:
                    self._refused(row, error)
                    return
                if found:
                    _update(row.id, batch_id=found, status="validating", error=None)
                    continue
            finished = self._finished_task_ids()
            jobs = await self._jobs([t for t in row.task_ids if t not in finished], from_store=False)
            lines = [self._line(job) for job in jobs if job.call.request]
            for job in jobs:
                if job.call.error:
                    self._save(job.task.id, job, None, error=job.call.error, kind=job.call.kind)
            if lines:
                await self._send(row, lines)
            else:
                _update(row.id, collected=True, status="cancelled", ended_at=store.utcnow())

    async def _submit_the_rest(self) -> None:
        """Every task with neither an item nor a part: answered from the store where the cache
        allows, failed where its call cannot be made, the rest submitted in parts as they fill."""
        finished = self._finished_task_ids()
        in_parts = {task_id for row in _open_rows(self.run_id) for task_id in row.task_ids}
        todo = [t for t in self.run.subset["task_ids"] if t not in finished and t not in in_parts]
        waiting: list[tuple[int, bytes, float]] = []  # task, its line, its cost held against the limits
        size = 0
        for start in range(0, len(todo), TASK_BATCH):
            if self.stopping:
                break
            for job in await self._jobs(todo[start : start + TASK_BATCH]):
                if job.call.error:
                    self._save(job.task.id, job, None, error=job.call.error, kind=job.call.kind)
                elif job.cached is not None:
                    self._save(job.task.id, job, reply_from(job.cached), from_cache=True)
                else:
                    held = self._hold(job)
                    if held is None:
                        break
                    line = self._line(job)
                    waiting.append((job.task.id, line, held))
                    size += len(line)
                if len(waiting) >= self.max_requests or size >= batch_api.MAX_FILE_BYTES:
                    await self._submit(waiting)
                    waiting, size = [], 0
        if waiting:
            await self._submit(waiting)

    def _line(self, job: _Job) -> bytes:
        return batch_api.line(custom_id(job.task.id), job.call.request, self.endpoint)

    def _hold(self, job: _Job) -> float | None:
        """Hold the call's cost against the limits until its batch is paid; None when it does not fit
        (the run then stops submitting, saying why)."""
        if self.stopping:
            return None
        if self.run.max_cost_usd is None and not self.budgets:
            return 0.0
        per_call = self.spent / self.paid_calls if self.paid_calls else self._estimated_cost(job)
        if not self._fits(per_call):
            return None
        self.reserved += per_call
        return per_call

    async def _submit(self, waiting: list[tuple[int, bytes, float]]) -> None:
        for part in batch_api.parts((line for _, line, _ in waiting), max_requests=self.max_requests):
            taken, waiting = waiting[: len(part)], waiting[len(part) :]
            row = store.RunBatch(
                run_id=self.run_id, task_ids=[task_id for task_id, _, _ in taken], status="preparing", requests=len(part), reserved_usd=sum(h for _, _, h in taken)
            )
            with store.writing() as s:
                s.add(row)
            if not (self.refused or self.cancelled or self.lost):
                await self._send(row, part)

    async def _send(self, row: store.RunBatch, lines: list[bytes]) -> None:
        """Upload the part and create its batch, storing each id as soon as the provider gives it."""
        try:
            file_id = await asyncio.to_thread(batch_api.upload, self.api, lines)
            _update(row.id, input_file_id=file_id, requests=len(lines))
            metadata = {"prompter_run": str(self.run_id), "prompter_part": str(row.id)}
            batch_id = await asyncio.to_thread(lambda: batch_api.create(self.api, file_id, endpoint=self.endpoint, metadata=metadata))
        except batch_api.BatchError as error:
            self._refused(row, error)
            return
        _update(row.id, batch_id=batch_id, status="validating", error=None)

    def _refused(self, row: store.RunBatch, error: batch_api.BatchError) -> None:
        _update(row.id, error=str(error))
        self.refused = True
        self.stopping = f"{error} Its tasks are kept: resume the run to submit them again, or start a live run."

    # following

    async def _follow(self) -> None:
        """Look at the open batches until every one has ended and its answers are in; on cancel,
        cancel them first."""
        wait, cancel_sent = min(FIRST_LOOK, self.longest_wait), False
        while not self.lost:
            following = [row for row in _open_rows(self.run_id) if row.batch_id]
            if not following:
                return
            if self.cancelled and not cancel_sent:
                cancel_sent = True
                for row in following:
                    try:
                        await asyncio.to_thread(batch_api.cancel, self.api, row.batch_id)
                    except batch_api.BatchError as error:
                        _update(row.id, error=str(error))
            for row in following:
                try:
                    state = await asyncio.to_thread(batch_api.state, self.api, row.batch_id)
                except batch_api.BatchError as error:
                    _update(row.id, error=str(error))
                    if cancel_sent:
                        return  # cancelled, and the provider cannot be asked now: a resume looks again
                    continue  # the batch lives on at the provider: looked at again next time
                _update(row.id, status=state.status, answered=state.completed + state.failed, error=None)
                if state.ended:
                    await self._collect(row, state)
            if not any(row.batch_id for row in _open_rows(self.run_id)):
                return  # the last one just ended: no wait for a look that would find nothing
            await self._pause(wait, cancel_sent)
            wait = min(wait * 2, self.longest_wait)

    async def _pause(self, seconds: float, cancel_sent: bool) -> None:
        """Wait before the next look; a cancel request cuts the wait short."""
        until = time.monotonic() + seconds
        while time.monotonic() < until and not self.lost and (cancel_sent or not self.cancelled):
            await asyncio.sleep(min(0.25, seconds))

    async def _collect(self, row: store.RunBatch, state: batch_api.State) -> None:
        """Store an ended batch's answers as items and write them to Label Studio. Tasks it did not
        answer fail with why (refused, expired), except after a cancel: those stay unfinished."""
        try:
            replies = await asyncio.to_thread(batch_api.replies, self.api, state)
        except batch_api.BatchError as error:
            _update(row.id, error=str(error))
            return  # read again at the next look
        finished = self._finished_task_ids()
        todo = [t for t in row.task_ids if t not in finished]
        for start in range(0, len(todo), TASK_BATCH):
            for job in await self._jobs(todo[start : start + TASK_BATCH], from_store=False):
                reply = replies.get(custom_id(job.task.id))
                if reply is not None:
                    self._save(job.task.id, job, reply)
                elif state.status != "cancelled":
                    error, kind = _unanswered(state)
                    self._save(job.task.id, job, None, error=error, kind=kind)
        _update(row.id, collected=True, ended_at=store.utcnow())
        self.reserved = max(0.0, self.reserved - row.reserved_usd)
        try:
            await asyncio.to_thread(self._write_pending)
        except LabelStudioError:
            pass  # kept in the store; the end of the run writes them


def _unanswered(state: batch_api.State) -> tuple[str, str]:
    """Why a task an ended batch holds no answer for failed."""
    if state.status == "failed":
        return f"The provider refused the batch: {'; '.join(state.errors) or 'no reason given'}.", "provider_error"
    if state.status == "expired":
        return "The batch expired before this task was answered; retry the run's failed tasks to send it again.", "batch_expired"
    return "The batch ended without an answer for this task.", "provider_error"


def _open_rows(run_id: int) -> list[store.RunBatch]:
    with store.session() as s:
        return list(
            s.exec(select(store.RunBatch).where(store.RunBatch.run_id == run_id, store.RunBatch.collected == False).order_by(store.RunBatch.id)).all()  # noqa: E712
        )


def _update(row_id: int, **values) -> None:
    with store.writing() as s:
        s.execute(update(store.RunBatch).where(store.RunBatch.id == row_id).values(**values))
