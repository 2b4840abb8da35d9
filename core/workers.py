"""Runs spread over workers on any machine, on Procrastinate: a PostgreSQL job queue in Prompter's
own database, not a queue of its own.

With a PostgreSQL store, starting a run (the pages, ``runs.launch``, the command line) cuts it into
chunks (``core.chunks``) and defers one Procrastinate job per chunk on the run's own queue;
``python -m core worker`` processes, on any number of machines, take the jobs of every queue. The
dashboard only creates runs and follows them. With SQLite, a run keeps its one local worker process
(``runs.launch``): one way to start a run, two implementations, chosen by the store.

- Each worker says it is alive every PROMPTER_WORKER_HEARTBEAT_SECONDS; one silent for four beats is
  taken for dead, and the live ones retry its jobs, so a chunk whose worker was killed is worked again
  by another (``core.chunks`` sends none of its finished tasks again).
- A run never waits forever for a worker: where none is alive, the process that started it works the
  run's chunks itself (the command line in its own process, the dashboard in a worker process of
  that run's own), and says so.
- A worker reads the provider keys with the team's PROMPTER_SECRET_KEY from its environment.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import procrastinate
from procrastinate.schema import SchemaManager
from sqlalchemy import text
from sqlalchemy.engine import make_url

from core import background, chunks, runs, settings, store

TASK = "prompter.work_chunk"
SCHEMA_LOCK = 0x70726F6D03  # "prom", 3: the queue's tables made once (core.store's locks are 1 and 2)
DEAD_AFTER_BEATS = 4
NO_WORKER = (
    "No Prompter worker is running (`python -m core worker`), so this machine works the run's chunks itself; "
    "workers started on other machines share the rest."
)


class WorkerError(RuntimeError):
    """A worker cannot start; the message says why."""


def distributed() -> bool:
    """Whether runs are spread over workers: the store is PostgreSQL."""
    return store.engine().dialect.name == "postgresql"


def spread(run_id: int) -> bool:
    """Whether this run goes to the workers: a live evaluation or prediction on a PostgreSQL store (a
    batch run waits on its provider, not on calls: one process follows it)."""
    run = runs.get(run_id)
    return distributed() and run.kind in runs.KINDS and run.mode == "live"


def queue_of(run_id: int) -> str:
    return f"prompter-run-{run_id}"


@dataclass(frozen=True)
class Dispatched:
    chunks: int  # new chunks deferred
    note: str | None = None  # said to whoever started the run
    pid: int | None = None  # the local worker started where no worker was alive


def dispatch(run_id: int, *, local_worker: bool = True) -> Dispatched:
    """Cut the run into chunks and defer a job for each (and for any chunk left without one); where no
    worker is alive, start a worker process for this run (``local_worker``) or leave it to the caller."""
    ensure_schema()
    new, waiting = chunks.plan(run_id)
    if not new and not waiting:
        return Dispatched(0)  # nothing was left to work: the run has ended
    app = make_app()
    with app.open():
        for chunk in new + [c for c in waiting if not _pending(app, c.job_id)]:
            job_id = app.tasks[TASK].configure(queue=queue_of(run_id)).defer(chunk_id=chunk.id)
            chunks.record_job(chunk.id, job_id)
    if alive():
        return Dispatched(len(new))
    pid = _start_local_worker(run_id) if local_worker else None
    if pid is not None:
        chunks.mark_local_worker(run_id, pid)
    return Dispatched(len(new), NO_WORKER, pid)


def execute(run_id: int, *, progress: Callable[[runs.RunView], None] | None = None, say: Callable[[str], None] | None = None) -> runs.RunView:
    """Run it to its end from this process, as the command line does: on SQLite (or a batch run) by
    working it here; on PostgreSQL by handing its chunks to the workers and following them, working
    them here too when no worker is alive."""
    if not spread(run_id):
        return runs.execute(run_id, progress=progress)
    dispatch(run_id, local_worker=False)
    here = None
    while True:
        run = runs.get(run_id)
        if progress:
            progress(run)
        if run.status not in runs.ACTIVE or (here is not None and not here.is_alive()):
            break
        if here is None and not alive():  # none at the start, or the last one went silent since
            if say:
                say(NO_WORKER)
            here = threading.Thread(target=serve, args=(run_id,), kwargs={"signals": False}, daemon=True)
            here.start()
        time.sleep(0.5)
    if here is not None:
        here.join()
    return runs.get(run_id)


def alive() -> int:
    """How many workers said they were alive lately."""
    ensure_schema()
    silent = DEAD_AFTER_BEATS * settings.load().worker_heartbeat_seconds
    with store.engine().connect() as c:
        return int(
            c.execute(
                text("SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => :silent)"), {"silent": silent}
            ).scalar()
        )


def serve(run_id: int | None = None, *, concurrency: int = 1, signals: bool = True) -> None:
    """Be a worker: take chunk jobs (of every run, or of one run until none is left) and retry the
    jobs of workers that went silent. A worker for every run may be on any machine, so it must have
    the team's key in its environment; one run's worker is started on the machine that started the
    run, which has it already."""
    if run_id is None and distributed() and not os.environ.get("PROMPTER_SECRET_KEY", "").strip():
        raise WorkerError(
            "A worker reads the team's provider keys with PROMPTER_SECRET_KEY: set it (the same key as the dashboard's) in this machine's environment."
        )
    if not distributed():
        raise WorkerError("Workers share runs through a PostgreSQL store: set PROMPTER_DATABASE_URL (postgresql+psycopg://...) on the dashboard and on each worker.")
    ensure_schema()
    asyncio.run(_serve(run_id, concurrency, signals))


async def _serve(run_id: int | None, concurrency: int, signals: bool) -> None:
    app = make_app()
    beat = settings.load().worker_heartbeat_seconds
    options = dict(
        concurrency=concurrency,
        name=runs.worker_name(),
        update_heartbeat_interval=beat,
        stalled_worker_timeout=DEAD_AFTER_BEATS * beat,
        install_signal_handlers=signals,
        delete_jobs="successful",
    )
    async with app.open_async():
        retrying = asyncio.create_task(_retry_stalled(app, beat))
        try:
            if run_id is None:
                await app.run_worker_async(**options)
            else:
                while await asyncio.to_thread(chunks.waiting_chunks, run_id):
                    await app.run_worker_async(queues=[queue_of(run_id)], wait=False, **options)
                    await asyncio.sleep(beat)  # a dead worker's job comes back to the queue once it is found
        finally:
            retrying.cancel()
            await asyncio.gather(retrying, return_exceptions=True)


async def _retry_stalled(app: procrastinate.App, beat: float) -> None:
    while True:
        await asyncio.sleep(beat)
        try:
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=DEAD_AFTER_BEATS * beat):
                await app.job_manager.retry_job(job)
        except Exception:  # noqa: BLE001 - another worker retried it first, or the database blinked: look again next beat
            continue


def make_app() -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=_conninfo()))

    @app.task(name=TASK)
    def work_chunk(chunk_id: int) -> None:
        chunks.work(chunk_id)

    return app


def ensure_schema() -> None:
    """Procrastinate's tables in Prompter's database, made by the first process that needs them."""
    with store.engine().begin() as c:
        if c.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None:
            return
        c.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        if c.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
            with c.connection.dbapi_connection.cursor() as cursor:
                cursor.execute(SchemaManager.get_schema())  # no parameters: its '%' are SQL, not placeholders


def _pending(app: procrastinate.App, job_id: int | None) -> bool:
    """Whether the chunk's job is still to be taken or being worked."""
    if job_id is None:
        return False
    try:
        return app.job_manager.get_job_status(job_id).value in ("todo", "doing")
    except Exception:  # noqa: BLE001 - a job deleted once it succeeded has no status
        return False


def _conninfo() -> str:
    return make_url(settings.load().database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _start_local_worker(run_id: int) -> int:
    return background.start(["worker", "--run", str(run_id)], background.log_path(f"run-{run_id}-worker.log"))
