"""A run cut into chunks that workers on several machines work at once, with a PostgreSQL store
(``core.workers`` hands each chunk to Procrastinate as a job).

- ``plan``: chunks of a few hundred of the run's tasks, for those neither finished nor in a chunk
  still to be worked; the run is then worked by "workers" (one place shows them all: ``progress``).
- ``work``: one chunk by one worker, the run engine over its tasks (``ChunkEngine``). The spending
  limit and the monthly budgets hold for the run as a whole, in the database: a call's reservation is
  added to the run's ``reserved_usd`` only while the run's cost and reservations stay within them, so
  workers on different machines cannot pass a limit together.
- A chunk whose worker died is worked again by the next (Procrastinate retries the stalled job): its
  finished tasks are not sent again, and what the dead worker held against the limit is given back;
  only the calls it had in flight are paid twice.
- ``finish``: the chunk marked done, and the run concluded by the chunk that ends last, exactly once
  (the check and the change in one locked transaction).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import func, text
from sqlmodel import select

from core import connection, settings, store
from core.runs import OVER_BUDGET, OVER_MONTHLY_BUDGET, WORKERS, _Engine, _unwritten_ids, conclusion, take, worker_name

_LOCK_RUN = text("SELECT cost_usd, reserved_usd, max_cost_usd FROM runs WHERE id = :run FOR UPDATE")
_PAID_CALLS = text("SELECT count(*) FROM run_items WHERE run_id = :run AND NOT from_cache AND (input_tokens > 0 OR output_tokens > 0)")
_HOLD = text("UPDATE runs SET reserved_usd = reserved_usd + :cost WHERE id = :run")
_HOLD_IN_CHUNK = text("UPDATE run_chunks SET reserved_usd = reserved_usd + :cost WHERE id = :chunk")
_GIVE_BACK = text("UPDATE runs SET reserved_usd = GREATEST(0, reserved_usd - :cost) WHERE id = :run")


@dataclass(frozen=True)
class ChunkView:
    number: int
    tasks: int
    finished: int
    status: str
    worker: str | None


def plan(run_id: int) -> tuple[list[store.RunChunk], list[store.RunChunk]]:
    """Cut the run's remaining tasks into new chunks, and mark the run worked by workers; refused
    (saying why) where ``runs`` would refuse a worker. Return the new chunks and those still waiting
    from before (a resume)."""
    size = settings.load().chunk_tasks
    with store.writing() as s:
        row = take(s, run_id, WORKERS, None)
        existing = s.exec(select(store.RunChunk).where(store.RunChunk.run_id == run_id)).all()
        waiting = [chunk for chunk in existing if chunk.status != "done"]
        busy = {task_id for chunk in waiting for task_id in chunk.task_ids}
        finished = set(s.exec(select(store.RunItem.task_id).where(store.RunItem.run_id == run_id)).all())
        unwritten = set(
            s.exec(select(store.RunItem.task_id).where(store.RunItem.id.in_(_unwritten_ids(run_id)))).all()
        )  # finished, but not in Label Studio yet: a chunk writes them
        todo = [t for t in row.subset["task_ids"] if (t not in finished or t in unwritten) and t not in busy]
        first = max((chunk.number for chunk in existing), default=0) + 1
        new = [store.RunChunk(run_id=run_id, number=first + n, task_ids=todo[start : start + size]) for n, start in enumerate(range(0, len(todo), size))]
        s.add_all(new)
        if not new and not waiting:  # nothing left to work: the run ends as it stands
            row.status, row.status_reason = conclusion(run_id, None)
            row.finished_at = store.utcnow()
            s.add(row)
            return [], []
    return new, waiting


def record_job(chunk_id: int, job_id: int) -> None:
    with store.writing() as s:
        chunk = s.get(store.RunChunk, chunk_id)
        chunk.job_id = job_id
        s.add(chunk)


def mark_local_worker(run_id: int, pid: int) -> None:
    """Note on the run that no worker was alive, so this machine's process ``pid`` works it."""
    with store.writing() as s:
        run = s.get(store.Run, run_id)
        run.worker_pid = pid
        s.add(run)


def worked_here(run) -> bool:
    """Whether the run's chunks are worked by the machine that started it, for want of a worker."""
    return run.worker == WORKERS and run.worker_pid is not None


def progress(run_id: int) -> list[ChunkView]:
    """Each chunk of the run: its tasks, how many are finished, and who works it."""
    with store.session() as s:
        rows = s.exec(select(store.RunChunk).where(store.RunChunk.run_id == run_id).order_by(store.RunChunk.number)).all()
        done = dict(
            s.exec(select(store.RunItem.task_id, store.RunItem.id).where(store.RunItem.run_id == run_id)).all()
        )
    return [ChunkView(row.number, len(row.task_ids), sum(t in done for t in row.task_ids), row.status, row.worker) for row in rows]


def waiting_chunks(run_id: int) -> int:
    with store.session() as s:
        return int(s.exec(select(func.count(store.RunChunk.id)).where(store.RunChunk.run_id == run_id, store.RunChunk.status != "done")).one())


def work(chunk_id: int) -> None:
    """Work one chunk in this process (a worker's job), then finish it."""
    me = worker_name()
    chunk = _claim(chunk_id, me)
    if chunk is None:
        return
    engine = ChunkEngine(chunk.run_id, me, connection.client(), None, chunk)
    try:
        asyncio.run(engine.go())  # which finishes the chunk
    except BaseException as error:  # noqa: BLE001 - the chunk ends, saying why; the run goes on elsewhere
        finish(chunk_id, me, f"A worker stopped on this chunk: {error}")
        raise


def _claim(chunk_id: int, me: str) -> store.RunChunk | None:
    """Take the chunk, unless it is done or its run no longer wants it (cancelled, ended, taken by a
    single worker). A chunk taken from a worker that died gives back what that worker held."""
    with store.writing() as s:
        chunk = s.exec(select(store.RunChunk).where(store.RunChunk.id == chunk_id).with_for_update()).first()
        if chunk is None or chunk.status == "done":
            return None
        run = s.exec(select(store.Run).where(store.Run.id == chunk.run_id).with_for_update()).first()
        _give_back(s, run, chunk)
        if run.worker != WORKERS or run.status != "running" or run.cancel_requested:
            chunk.status, chunk.finished_at = "done", store.utcnow()
            chunk.outcome = "Cancelled; what finished is kept." if run.cancel_requested else "The run was no longer spread over workers."
            s.add(chunk)
            last = _only_open(s, chunk)
            if last and run.worker == WORKERS and run.status == "running":
                _conclude(s, run, chunk.outcome)
            return None
        chunk.status, chunk.worker, chunk.heartbeat_at = "working", me, store.utcnow()
        chunk.started_at = chunk.started_at or store.utcnow()
        s.add(chunk)
        return chunk


def finish(chunk_id: int, me: str, outcome: str | None, *, unless_answers_are_left: bool = False) -> bool:
    """Mark the chunk done; the chunk that ends last concludes the run.

    With ``unless_answers_are_left``, the last chunk is left open instead when some of the run's
    answers are not in Label Studio yet (another chunk gave up on a write): it returns True, and its
    worker writes them, then finishes it. Which chunk is last is decided with the run's row locked,
    so exactly one chunk is."""
    with store.writing() as s:
        chunk = s.exec(select(store.RunChunk).where(store.RunChunk.id == chunk_id).with_for_update()).first()
        if chunk is None or chunk.worker != me or chunk.status == "done":
            return False  # another worker took it over
        run = s.exec(select(store.Run).where(store.Run.id == chunk.run_id).with_for_update()).first()
        concludes = run.worker == WORKERS and run.status == "running" and _only_open(s, chunk)
        if concludes and unless_answers_are_left and _unwritten_ids(run.id):
            return True
        _give_back(s, run, chunk)
        chunk.status, chunk.outcome, chunk.finished_at = "done", outcome, store.utcnow()
        s.add(chunk)
        if concludes:
            _conclude(s, run, outcome)
        return False


def _only_open(s, chunk: store.RunChunk) -> bool:
    """Whether every other chunk of the run is done."""
    others = s.exec(
        select(func.count(store.RunChunk.id)).where(store.RunChunk.run_id == chunk.run_id, store.RunChunk.status != "done", store.RunChunk.id != chunk.id)
    ).one()
    return not others


def _conclude(s, run: store.Run, outcome: str | None) -> None:
    """End the run as one worker would, with why its calls stopped: this chunk's reason, else the
    first chunk's that stopped early."""
    reasons = s.exec(
        select(store.RunChunk.outcome).where(store.RunChunk.run_id == run.id, store.RunChunk.outcome.is_not(None)).order_by(store.RunChunk.finished_at)
    ).all()
    stopping = outcome or next(iter(reasons), None)
    run.status, run.status_reason = conclusion(run.id, stopping)
    run.finished_at = store.utcnow()
    s.add(run)


def _give_back(s, run: store.Run, chunk: store.RunChunk) -> None:
    """What the chunk holds against the limits (left by a worker that died) is the run's again."""
    if chunk.reserved_usd:
        run.reserved_usd = max(0.0, run.reserved_usd - chunk.reserved_usd)
        chunk.reserved_usd = 0.0
        s.add(run)
        s.add(chunk)


class ChunkEngine(_Engine):
    """The run engine over one chunk's tasks, one of several engines on the run at once."""

    def __init__(self, run_id, me, client, progress, chunk: store.RunChunk):
        super().__init__(run_id, me, client, progress)
        self.chunk_id = chunk.id
        self.chunk_tasks = list(chunk.task_ids)
        self.whole_run = False  # the run's last chunk, left open to write every chunk's answers

    def _task_ids(self) -> list[int]:
        return self.chunk_tasks

    def _unwritten(self) -> list[int]:
        ids = _unwritten_ids(self.run_id)
        if self.whole_run:
            return ids
        with store.session() as s:
            mine = set(self.chunk_tasks)
            return [item_id for item_id, task_id in s.exec(select(store.RunItem.id, store.RunItem.task_id).where(store.RunItem.id.in_(ids))).all() if task_id in mine]

    async def _write_rest(self) -> None:
        """Write this chunk's answers; then, as the run's last chunk, those another chunk left (its
        last write given up on a Label Studio that stalled), so the run does not end failed for want
        of a write that can now succeed."""
        await super()._write_rest()
        if await asyncio.to_thread(finish, self.chunk_id, self.me, self.stopping, unless_answers_are_left=True):
            self.whole_run = True
            await super()._write_rest()

    def _conclude(self) -> None:
        """Each chunk is finished once its writes are done (``_write_rest``), except the run's last
        one, left open to write what the others left: it is finished now, concluding the run."""
        if self.whole_run:
            finish(self.chunk_id, self.me, self.stopping)

    async def _watch(self) -> None:
        """Heartbeat the chunk and the run; stop on cancel, or when another worker took the chunk."""
        from core import budgets

        while True:
            await asyncio.sleep(1.0)
            with store.writing() as s:
                chunk = s.get(store.RunChunk, self.chunk_id)
                if chunk.worker != self.me:
                    self.lost = True
                    self.stopping = "Another worker took this chunk over."
                    return
                run = s.get(store.Run, self.run_id)
                chunk.heartbeat_at = run.heartbeat_at = store.utcnow()
                s.add(chunk)
                s.add(run)
                if run.cancel_requested and not self.stopping:
                    self.stopping, self.cancelled = "Cancelled; what finished is kept.", True
            self.budgets = budgets.applying(self.version, self.run.started_by, excluding_run=self.run_id)

    async def _reserve(self, job) -> bool:
        """Hold the call's cost in the database, for the whole run: only while the run's cost and
        every worker's holds stay within its limit and the monthly budgets. Until one of the run's
        calls is paid, its first goes out alone on its estimate, as with one worker; then each call
        holds the average cost of the paid calls so far, whichever worker paid them."""
        if self.run.max_cost_usd is None and not self.budgets:
            return not self.stopping
        while not self.stopping:
            room = min((budget.amount_usd - budget.spent_usd for budget in self.budgets), default=None)
            held = self._hold(job, room)  # on the engine's connection, which only the event loop uses
            if held is None:
                await asyncio.sleep(0.05)  # the run's first call is out: its cost will tell what calls cost
            elif held:
                return True
        return False

    def _hold(self, job, room: float | None) -> bool | None:
        """One try at holding the call's cost, with the run's row locked: what is read after the lock
        is what every worker has paid and holds (an answer is stored with its cost in one transaction
        that updates this row, so none is half seen). None: the run's first call is still out."""
        with self.db.begin():
            cost, reserved, limit = self.db.execute(_LOCK_RUN, {"run": self.run_id}).one()
            cost = cost or 0.0
            if self.paid_calls:  # what this worker paid, with what the run had paid before it started
                per_call = self.spent / self.paid_calls
            else:
                paid = self.db.execute(_PAID_CALLS, {"run": self.run_id}).scalar_one()
                if not paid and reserved > 0:
                    return None
                per_call = cost / paid if paid else self._estimated_cost(job)
            if limit is not None and cost + reserved + per_call > limit:
                self.stopping = OVER_BUDGET
                return False
            self._count_this_months_spend()  # the run's cost is every month's
            if room is not None and cost - self.paid_before_this_month + reserved + per_call > room:
                self.stopping = OVER_MONTHLY_BUDGET
                self.over_budget = min(self.budgets, key=lambda budget: budget.amount_usd - budget.spent_usd, default=None)
                return False
            self.db.execute(_HOLD, {"cost": per_call, "run": self.run_id})
            self.db.execute(_HOLD_IN_CHUNK, {"cost": per_call, "chunk": self.chunk_id})
        job.reserved = per_call
        self.reserved += per_call
        return True

    def _save(self, *args, **kwargs) -> None:
        if not self.lost:  # taken over by another worker (this one was thought dead): its answers are that one's to store
            super()._save(*args, **kwargs)

    def _release(self, job) -> None:
        held = job.reserved
        super()._release(job)
        if held:
            with self.db.begin():
                self.db.execute(_GIVE_BACK, {"cost": held, "run": self.run_id})
                self.db.execute(_HOLD_IN_CHUNK, {"cost": -held, "chunk": self.chunk_id})
