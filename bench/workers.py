"""Benchmark: one run of many tasks spread over 1, 2 and 4 workers (a PostgreSQL store, Procrastinate
jobs): the wall time and the speed-up against one worker.

    .venv/bin/python -m bench.workers [--tasks 20000] [--latency 0.1] [--concurrency 16] [--workers 1,2,4] [--chunk-tasks 250]

Sets up, once: a PostgreSQL server of its own (``tests/postgres.py``: the machine's binaries, on
loopback, in a temporary folder) holding Prompter's store, a team key (PROMPTER_SECRET_KEY), a Label
Studio of its own (or the one in LABEL_STUDIO_URL), the stand-in model in a child process answering
every call after ``--latency`` seconds.

Then, for each count N of ``--workers``: a project of its own with ``--tasks`` different short texts
(not the last one's emptied: Label Studio's deleting of its predictions would still hold the tasks
while the next run writes), a new prompt version and a predict run over every task at
``--concurrency`` (each worker works one chunk at a time with the run's own concurrency of calls, so N
workers have N x concurrency calls out), ``cache="fresh"``; N ``python -m core worker`` processes
started and seen alive (``workers.alive()``); the run launched (``runs.launch``, which cuts it into
chunks of ``--chunk-tasks`` and defers one Procrastinate job each); the wall time from the launch to
the run's ``finished_at``; the workers stopped. The baseline is measured in the same run: the speed-up
is wall(fewest workers) / wall(N), against the ideal N / fewest. Also the CPU of the workers, Label
Studio, PostgreSQL and the stand-in (from /proc), and where the workers' time went: each worker
process is ``python -m bench.workers --as-worker FILE``, which installs pass-through timers around the
chunk's steps and the Label Studio calls, then runs ``python -m core worker`` unchanged.

Checked for each run (a PROBLEM line otherwise): completed, one item per task, every item ok, not
from the cache and written to Label Studio, one call per task at the stand-in, one prediction of the
version per task in Label Studio, every chunk done, no worker started by ``runs.launch`` itself, no
worker died, no traceback in the workers' logs nor in the log of the Label Studio started for the
benchmark. Prints a table and one JSON line; the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.common import grid, number, say_other_suites

MODEL = "gpt-4o-mini"
REPO = Path(__file__).resolve().parent.parent
AS_WORKER = "--as-worker"
WARM_UP_TASKS = 500


# -- inside each worker process: pass-through timers ----------------------------------------------


class WorkerTimings:
    """Installed in a worker process before it serves: wraps the chunk's steps (``chunks.work``,
    ``_claim``, ``finish``, the chunk engine's set-up, reads and writes) and the Label Studio client's
    calls; each wrapper calls the original unchanged and notes when it ran and the CPU of the thread
    that ran it (``chunks.work``: of the whole process). The spans are appended to a JSON-lines file
    as each chunk ends; steps called once a task are only tallied. A step the code no longer has is
    listed as missing, so the benchmark says so instead of failing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.pending: list[dict[str, Any]] = []
        self.tallies: dict[str, list[float]] = {}
        self.missing: list[str] = []

    def install(self) -> None:
        from core import chunks, runs
        from core.labelstudio import LabelStudioClient

        self._span(chunks, "work", "chunk", lambda a, k, out: {"chunk": a[0] if a else k.get("chunk_id")}, whole_process=True, flush=True)
        self._span(chunks, "_claim", "chunk claimed (locked transaction)")
        self._span(chunks, "finish", "chunk finished (locked transaction)")
        self._span(chunks.ChunkEngine, "__init__", "engine set up")
        self._span(runs._Engine, "_finished_task_ids", "the run's finished tasks read")
        self._span(chunks.ChunkEngine, "_unwritten", "the chunk's unwritten answers read")
        self._span(runs._Engine, "_write_pending", "answers written to Label Studio", lambda a, k, out: {"n": out})
        self._span(runs._Engine, "_existing", "the version's predictions read")
        self._span(LabelStudioClient, "tasks", "LS tasks (export)", lambda a, k, out: {"n": len(out)}, listing=True)
        self._span(LabelStudioClient, "import_predictions", "LS import_predictions", lambda a, k, out: {"n": out})
        self._span(LabelStudioClient, "predictions", "LS predictions (the project's, listed)", lambda a, k, out: {"n": len(out)})
        self._span(LabelStudioClient, "model_versions", "LS model_versions")
        self._span(LabelStudioClient, "predictions_of_tasks", "LS predictions (of the tasks written)", lambda a, k, out: {"n": len(out)})
        self._tally(chunks.ChunkEngine, "_save", "answers stored as items")

    def _original(self, owner: Any, name: str) -> Callable | None:
        original = getattr(owner, name, None)
        if not callable(original):
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return None
        return original

    def _span(self, owner, name: str, label: str, detail=None, *, whole_process: bool = False, listing: bool = False, flush: bool = False) -> None:
        original = self._original(owner, name)
        if original is None:
            return

        @functools.wraps(original)
        def timed(*args, **kwargs):
            clock = time.process_time if whole_process else time.thread_time
            start, cpu = time.time(), clock()
            out = None
            try:
                out = original(*args, **kwargs)
                if listing:
                    out = list(out)  # the export happens when the iterator is read
                return out
            finally:
                record = {"name": label, "start": start, "end": time.time(), "cpu": clock() - cpu}
                if detail is not None:
                    with contextlib.suppress(Exception):
                        record.update(detail(args[1:] if isinstance(owner, type) else args, kwargs, out))
                with self.lock:
                    self.pending.append(record)
                if flush:
                    self.flush()

        setattr(owner, name, timed)

    def _tally(self, owner, name: str, label: str) -> None:
        original = self._original(owner, name)
        if original is None:
            return

        @functools.wraps(original)
        def tallied(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                seconds, used = time.perf_counter() - start, time.thread_time() - cpu
                with self.lock:
                    tally = self.tallies.setdefault(label, [0, 0.0, 0.0])
                    tally[0] += 1
                    tally[1] += seconds
                    tally[2] += used

        setattr(owner, name, tallied)

    def flush(self) -> None:
        with self.lock:
            lines = [json.dumps(record) for record in self.pending]
            lines.append(json.dumps({"tallies": self.tallies, "missing": self.missing}))
            self.pending = []
            with open(self.path, "a") as out:
                out.write("\n".join(lines) + "\n")


def as_worker(path: str) -> int:
    """``python -m core worker``, with the timers installed."""
    timings = WorkerTimings(Path(path))
    timings.install()
    from core import cli

    try:
        return cli.main(["worker"])
    finally:
        timings.flush()


# -- the benchmark's side: processes, CPU ---------------------------------------------------------


def processes() -> dict[int, tuple[int, float, float, str]]:
    """Every process: its parent, the CPU seconds it used so far (utime + stime), the same with its
    reaped children's (+ cutime + cstime), and its command line (shortened), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[int, float, float, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            fields = text.rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            command = command or f"[{text.split('(', 1)[1].rsplit(')', 1)[0]}]"  # a kernel thread
            own = (float(fields[11]) + float(fields[12])) / tick
            found[int(stat.parent.name)] = (int(fields[1]), own, own + (float(fields[13]) + float(fields[14])) / tick, command[:100])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def tree_cpu(roots: dict[str, int | None], found: dict[int, tuple[int, float, float, str]]) -> tuple[dict[str, float | None], dict[int, tuple[float, str]]]:
    """CPU seconds used so far by each named process and its descendants: utime + stime of every live
    process of the tree, plus what its reaped children used (a PostgreSQL backend that ended is counted
    in its postmaster's); None where the root is gone. And every process outside those trees, with its
    own CPU (without its children's), to tell who else used the CPUs."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (parent, *_) in found.items():
        children[parent].append(pid)
    named: dict[str, float | None] = {}
    inside: set[int] = {os.getpid()}
    for name, root in roots.items():
        if not root or root not in found:
            named[name] = None
            continue
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            inside.add(pid)
            total += found[pid][2]
            todo.extend(children.get(pid, []))
        named[name] = total
    return named, {pid: (own, command) for pid, (_, own, _, command) in found.items() if pid not in inside}


class Pool:
    """N worker processes (``python -m bench.workers --as-worker``, i.e. ``python -m core worker``
    with timers), each in a session of its own, with this process's environment."""

    def __init__(self, count: int, workdir: Path, tag: str) -> None:
        self.count = count
        self.processes: list[subprocess.Popen] = []
        self.timing_files = [workdir / f"worker-{tag}-{n + 1}.jsonl" for n in range(count)]
        self.logs = [workdir / f"worker-{tag}-{n + 1}.log" for n in range(count)]

    def start(self, timeout: float = 120.0) -> float:
        """Start them and wait until the store sees them all alive; return how long that took."""
        from core import workers

        started = time.perf_counter()
        for timings, log in zip(self.timing_files, self.logs):
            with open(log, "wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.workers", AS_WORKER, str(timings)],
                        cwd=REPO, env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    )
                )  # fmt: skip
        while workers.alive() < self.count:
            dead = [n for n, p in enumerate(self.processes) if p.poll() is not None]
            if dead:
                raise RuntimeError(f"worker {dead[0] + 1} exited at its start ({self.processes[dead[0]].returncode}):\n{self.log_tail(dead[0])}")
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{workers.alive()} of {self.count} workers alive after {timeout:.0f} s")
            time.sleep(0.1)
        return time.perf_counter() - started

    def stop(self) -> list[int | None]:
        """SIGTERM (Procrastinate's graceful stop), SIGKILL after 30 s; return their exit codes."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return [process.returncode for process in self.processes]

    def log_tail(self, n: int, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.logs[n].read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def log_troubles(self) -> list[str]:
        """Tracebacks and errors in the workers' output, with the exceptions they ended in."""
        found = []
        for n, log in enumerate(self.logs):
            with contextlib.suppress(OSError):
                text = log.read_text(errors="replace")
                bad = [line for line in text.splitlines() if "Traceback" in line or "ERROR" in line or "Error:" in line]
                if bad:
                    raised = exceptions_in(text)
                    found.append(f"worker {n + 1}'s log has {len(bad)} error line(s)"
                                 + (f"; exceptions: {' | '.join(raised)}" if raised else f", the first: {_short(bad[0])}"))
        return found

    def read(self) -> tuple[list[dict[str, Any]], dict[str, list[float]], list[str]]:
        """Every worker's spans (each with its worker's number), their tallies added up, and what could not be timed."""
        spans: list[dict[str, Any]] = []
        tallies: dict[str, list[float]] = {}
        missing: set[str] = set()
        for n, path in enumerate(self.timing_files, start=1):
            last: dict[str, Any] = {}
            with contextlib.suppress(OSError):
                for line in path.read_text().splitlines():
                    record = json.loads(line)
                    if "tallies" in record:
                        last = record
                    else:
                        spans.append({**record, "worker": n})
            for label, (calls, seconds, cpu) in last.get("tallies", {}).items():
                total = tallies.setdefault(label, [0, 0.0, 0.0])
                total[0] += calls
                total[1] += seconds
                total[2] += cpu
            missing.update(last.get("missing", []))
            if not last:
                missing.add(f"worker {n}'s timings (no file {path.name})")
        return spans, tallies, sorted(missing)


def exceptions_in(text: str, at_most: int = 3) -> list[str]:
    """The different exceptions a log's tracebacks ended in (the first line after each traceback's
    indented frames), shortened."""
    found: list[str] = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            end = next((l for l in lines[n + 1 :] if l and not l[0].isspace()), None)
            if end is not None and _short(end) not in found:
                found.append(_short(end))
    return found[:at_most]


def _short(line: str, length: int = 200) -> str:
    words = " ".join(line.split())
    return words if len(words) <= length else words[: length - 3] + "..."


def wait_for_no_worker(timeout: float = 30.0) -> int:
    """Until the stopped workers are gone from Procrastinate's table (a graceful stop removes its row)."""
    from core import workers

    deadline = time.perf_counter() + timeout
    while (alive := workers.alive()) and time.perf_counter() < deadline:
        time.sleep(0.2)
    return alive


# -- one configuration ----------------------------------------------------------------------------


@dataclass
class Setup:
    args: argparse.Namespace
    workdir: Path
    ls: Any  # LabelStudioClient
    projects: list[int]  # made for the configurations, deleted at the end
    standin: Any  # StandInProcess
    roots: dict[str, int | None]  # Label Studio, PostgreSQL, the stand-in
    ls_log: Path | None  # the server log of the Label Studio started for the benchmark


@dataclass
class Result:
    workers: int
    wall_s: float
    polled_s: float
    start_workers_s: float
    dispatch_s: float
    chunk_count: int
    items_at: list[float]  # when each item was stored (time.time()), sorted
    stored_at: dict[int, float]  # the same by task id
    launched_at: float
    finished_at: float
    cpu: dict[str, float | None]  # used during the run, by name
    spans: list[dict[str, Any]]
    tallies: dict[str, list[float]]
    chunk_rows: list[dict[str, Any]]
    others: list[tuple[float, str]]  # the processes outside the benchmark that used the most CPU meanwhile
    completed: bool
    problems: list[str] = field(default_factory=list)


def snapshot(pool: Pool, roots: dict[str, int | None]) -> dict[str, float | None]:
    from bench.common import cpu_seconds

    named, others = tree_cpu({**{f"worker {n}": p.pid for n, p in enumerate(pool.processes, start=1)}, **roots}, processes())
    named["machine"] = cpu_seconds({}).get("machine")
    named["this process"] = time.process_time()
    return {"named": named, "others": others}


def others_during(before: dict[int, tuple[float, str]], after: dict[int, tuple[float, str]], top: int = 3) -> list[tuple[float, str]]:
    """The processes outside the benchmark that used the most CPU between two snapshots (those that
    started and ended in between are not seen, only the machine's total)."""
    used = [(cpu - before.get(pid, (0.0, ""))[0], command) for pid, (cpu, command) in after.items()]
    return sorted((u for u in used if u[0] >= 0.5), reverse=True)[:top]


def project_of_its_own(setup: Setup, tasks: int, tag: str) -> tuple[int, list[int]]:
    """A new project for each configuration, rather than one project emptied of the last one's
    predictions: Label Studio deletes 20,000 predictions in one transaction of about two minutes that
    holds the tasks' rows, and a run started meanwhile has its writes stalled behind it."""
    from bench.common import LABEL_CONFIG, import_texts, task_text

    started = time.perf_counter()
    project = setup.ls.create_project(f"bench workers {tag} {int(time.time())}", LABEL_CONFIG)
    setup.projects.append(project.id)
    task_ids = import_texts(setup.ls, project.id, [task_text("workers", n) for n in range(tasks)])
    print(f"  project {project.id}: {len(task_ids)} tasks imported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return project.id, task_ids


def configuration(setup: Setup, count: int, *, tag: str, tasks: int) -> Result:
    from sqlmodel import select

    from bench.common import LABEL_CONFIG, TEMPLATE, _aware
    from core import prompts, runs, store

    args = setup.args
    project_id, task_ids = project_of_its_own(setup, tasks, tag)
    version = prompts.create(project_id, f"bench workers {tag}", template=TEMPLATE, controls=["sentiment"], provider_key="bench", model=MODEL)
    run = runs.create(version, task_ids, kind="predict", label_config=LABEL_CONFIG, concurrency=args.concurrency, cache="fresh")
    timeout = args.timeout
    problems: list[str] = []

    left = wait_for_no_worker()
    if left:
        problems.append(f"{left} worker(s) of the previous configuration still counted alive when this one started")
    pool = Pool(count, setup.workdir, tag)
    ls_log_at = setup.ls_log.stat().st_size if setup.ls_log is not None and setup.ls_log.exists() else 0
    local = None
    try:
        start_workers_s = pool.start()
        print(f"  {count} worker(s) alive after {start_workers_s:.1f} s; running {tasks} tasks ...", file=sys.stderr, flush=True)
        sent_before = setup.standin.count()
        before = snapshot(pool, setup.roots)
        launched_at, t0 = time.time(), time.perf_counter()
        local = runs.launch(run.id)
        dispatch_s = time.perf_counter() - t0
        if local is not None:
            problems.append(f"runs.launch started a worker of its own (pid {local}): it saw no worker alive")
        while (view := runs.get(run.id)).status in runs.ACTIVE:
            if time.perf_counter() - t0 > timeout:
                problems.append(f"the run had not ended after {timeout:.0f} s ({view.done} done): cancelled")
                runs.cancel(run.id)
                break
            time.sleep(0.25)
        polled_s = time.perf_counter() - t0
        after = snapshot(pool, setup.roots)
        sent = setup.standin.count() - sent_before
        died = [n for n, p in enumerate(pool.processes, start=1) if p.poll() is not None]
    finally:
        codes = pool.stop()
        if local is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(local, 0)
    if died:
        problems.append(f"worker(s) {', '.join(map(str, died))} ended during the run (exit codes {[codes[n - 1] for n in died]})")
    problems += pool.log_troubles()
    spans, tallies, missing = pool.read()
    if missing:
        problems.append(f"not timed (the code changed?): {', '.join(missing)}")

    view = runs.get(run.id)
    finished_at = _aware(view.finished_at).timestamp() if view.finished_at else launched_at + polled_s
    items = runs.items(run.id)
    with store.session() as s:
        rows = s.exec(select(store.RunChunk).where(store.RunChunk.run_id == run.id).order_by(store.RunChunk.number)).all()
        chunk_rows = [
            {"id": r.id, "number": r.number, "tasks": list(r.task_ids), "status": r.status, "worker": r.worker, "outcome": r.outcome}
            for r in rows
        ]
    predictions = {v.name: v.prediction_count for v in setup.ls.model_versions(project_id)}.get(version.model_version, 0)

    completed = (view.status, view.done, view.failed) == ("completed", tasks, 0)
    if not completed:
        problems.append(f"run {view.status}: {view.done} done, {view.failed} failed of {tasks} ({view.status_reason})")
    if len(items) != tasks or {i.task_id for i in items} != set(task_ids):
        problems.append(f"{len(items)} items for {tasks} tasks ({len({i.task_id for i in items})} different tasks)")
    for what, bad in (
        ("not ok", sum(i.status != "ok" for i in items)),
        ("from the cache", sum(bool(i.from_cache) for i in items)),
        ("not written to Label Studio", sum(not i.written_to_labelstudio for i in items)),
    ):
        if bad:
            problems.append(f"{bad} items {what}")
    if sent != tasks:
        problems.append(f"the stand-in received {sent} calls for {tasks} tasks")
    if predictions != tasks:
        problems.append(f"Label Studio holds {predictions} predictions of {version.model_version} for {tasks} tasks")
    expected_chunks = math.ceil(tasks / args.chunk_tasks)
    if len(chunk_rows) != expected_chunks or any(c["status"] != "done" for c in chunk_rows):
        problems.append(f"{len(chunk_rows)} chunks ({sum(c['status'] == 'done' for c in chunk_rows)} done), expected {expected_chunks}")
    stopped_early = [c for c in chunk_rows if c["outcome"]]
    if stopped_early:
        problems.append(f"{len(stopped_early)} chunk(s) stopped early, the first: {_short(stopped_early[0]['outcome'])}")
    if setup.ls_log is not None:
        with contextlib.suppress(OSError), open(setup.ls_log, errors="replace") as log:
            log.seek(ls_log_at)
            text = log.read()
            raised = exceptions_in(text)
            failed = [_short(line.split("Internal Server Error:", 1)[1], 80) for line in text.splitlines() if "Internal Server Error:" in line]
            if raised or failed:
                problems.append(f"Label Studio's log during the run: {len(failed)} request(s) answered 500 ({', '.join(list(dict.fromkeys(failed))[:3])}); "
                                f"exceptions: {' | '.join(raised) or 'none logged'}")

    return Result(
        workers=count,
        wall_s=finished_at - launched_at,
        polled_s=polled_s,
        start_workers_s=start_workers_s,
        dispatch_s=dispatch_s,
        chunk_count=len(chunk_rows),
        items_at=sorted(_aware(i.created_at).timestamp() for i in items),
        stored_at={i.task_id: _aware(i.created_at).timestamp() for i in items},
        launched_at=launched_at,
        finished_at=finished_at,
        cpu={name: (a - b) if a is not None and (b := before["named"].get(name)) is not None else None for name, a in after["named"].items()},
        others=others_during(before["others"], after["others"]),
        completed=completed,
        spans=spans,
        tallies=tallies,
        chunk_rows=chunk_rows,
        problems=problems,
    )


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [AS_WORKER]:
        return as_worker(argv[1])
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20000, help="tasks in each run (default 20000)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the stand-in takes to answer each call (default 0.1)")
    parser.add_argument("--concurrency", type=int, default=16, help="the run's concurrency: calls out at once per worker (default 16)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, one run each, the fewest first (default 1,2,4)")
    parser.add_argument("--chunk-tasks", type=int, default=None, help="tasks per chunk (PROMPTER_CHUNK_TASKS; default: Prompter's, 250)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a run may take before it is cancelled and reported (default 1800)")
    parser.add_argument(
        "--label-studio-db", choices=("postgresql", "sqlite"), default="postgresql",
        help="the database of the Label Studio started for the benchmark: a database of the benchmark's PostgreSQL server, as a team runs it (default), or SQLite",
    )
    parser.add_argument("--warm-up-tasks", type=int, default=WARM_UP_TASKS, help=f"an unmeasured first run with one worker (default {WARM_UP_TASKS}; 0: none)")
    args = parser.parse_args(argv)
    try:
        args.counts = sorted({int(n) for n in args.workers.split(",") if n.strip()})
    except ValueError:
        parser.error("--workers: worker counts separated by commas, e.g. 1,2,4")
    if not args.counts or args.counts[0] < 1 or args.counts[-1] > 32:
        parser.error("--workers: counts from 1 to 32")
    if args.tasks < 1 or args.latency <= 0 or not 1 <= args.concurrency <= 256 or (args.chunk_tasks is not None and args.chunk_tasks < 1) or args.warm_up_tasks < 0:
        parser.error("--tasks and --chunk-tasks at least 1, --latency above 0, --concurrency 1 to 256, --warm-up-tasks 0 or more")

    from bench.common import in_scratch_folder

    return in_scratch_folder(lambda workdir: _measure(args, workdir))


def _measure(args: argparse.Namespace, workdir: Path) -> int:
    from bench.common import StandInProcess, label_studio, other_suites
    from tests import postgres as pg
    from tests.postgres import PostgresServer

    os.environ["PROMPTER_HOME"] = str(workdir / "home")
    if args.chunk_tasks is not None:
        os.environ["PROMPTER_CHUNK_TASKS"] = str(args.chunk_tasks)
    from core import keys, settings, store, vault, workers
    from core.labelstudio import LabelStudioClient

    args.chunk_tasks = settings.load().chunk_tasks
    suites_at_start = other_suites()
    print("Starting a PostgreSQL server of the benchmark's own ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    postgres = PostgresServer().start()
    try:
        print(f"  ready after {time.perf_counter() - started:.1f} s (port {postgres.port})", file=sys.stderr, flush=True)
        os.environ["PROMPTER_DATABASE_URL"] = postgres.url(postgres.create_database())
        os.environ["PROMPTER_SECRET_KEY"] = vault.new_key()
        store.forget_engines()
        workers.ensure_schema()
        ls_settings, ls_database = {}, "SQLite"
        if args.label_studio_db == "postgresql":
            ls_database = "a database of the same PostgreSQL server"
            ls_settings = {
                "DJANGO_DB": "postgresql", "POSTGRE_NAME": postgres.create_database(migrated=False), "POSTGRE_USER": pg.USER,
                "POSTGRE_PASSWORD": pg.PASSWORD, "POSTGRE_HOST": "127.0.0.1", "POSTGRE_PORT": str(postgres.port),
            }
        with label_studio(workdir, ls_settings, ls_database) as (url, token, where, ls_pid), StandInProcess(args.latency) as standin:
            os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = url, token
            ls = LabelStudioClient(url, token)
            keys.add("bench", "openai-compatible", base_url=standin.base_url)
            ls_log = workdir / "labelstudio" / "server.log" if ls_pid else None
            setup = Setup(args, workdir, ls, [], standin, {"Label Studio": ls_pid, "PostgreSQL": postgres.process.pid, "stand-in": standin.process.pid}, ls_log)
            try:
                warm_up = None
                if args.warm_up_tasks:
                    print(f"Warm-up (unmeasured): {min(args.warm_up_tasks, args.tasks)} tasks, 1 worker ...", file=sys.stderr, flush=True)
                    warm_up = configuration(setup, 1, tag="warm-up", tasks=min(args.warm_up_tasks, args.tasks))
                results = []
                for count in args.counts:
                    print(f"{count} worker(s) ...", file=sys.stderr, flush=True)
                    results.append(configuration(setup, count, tag=f"x{count}", tasks=args.tasks))
                    print(f"  {results[-1].wall_s:.1f} s", file=sys.stderr, flush=True)
                suites_during = other_suites()
            finally:
                for project_id in setup.projects:  # a Label Studio given by LABEL_STUDIO_URL keeps none of them
                    with contextlib.suppress(Exception):
                        ls.delete_project(project_id)
        postgres_version = postgres.bin.parent.name
    finally:
        store.forget_engines()  # every connection closed, so the server's smart shutdown is quick
        postgres.stop()

    report(args, where, postgres_version, results, warm_up, suites_at_start, suites_during)
    return 0


# -- report ---------------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def pace(items_at: list[float]) -> float | None:
    """Items stored per second between the 10th and the 90th percent of them: the steady pace."""
    if len(items_at) < 10:
        return None
    low, high = int(len(items_at) * 0.1), int(len(items_at) * 0.9) - 1
    span = items_at[high] - items_at[low]
    return (high - low) / span if span > 0 else None


def analyse(result: Result, args: argparse.Namespace) -> dict[str, Any]:
    """The run's phases, its chunks and the workers' steps, from the items' times and the spans."""
    chunk_spans = {s["chunk"]: s for s in result.spans if s["name"] == "chunk" and "chunk" in s}
    by_worker: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for span in chunk_spans.values():
        by_worker[span["worker"]].append(span)
    gaps, first_waits, idle_at_end = [], [], []
    for spans in by_worker.values():
        spans.sort(key=lambda s: s["start"])
        first_waits.append(spans[0]["start"] - result.launched_at)
        gaps += [b["start"] - a["end"] for a, b in zip(spans, spans[1:])]
        idle_at_end.append(result.finished_at - spans[-1]["end"])
    durations = [s["end"] - s["start"] for s in chunk_spans.values()]
    startup, calling, winddown = [], [], []  # each chunk: its start -> its first item, -> its last item, -> its end
    for row in result.chunk_rows:
        span, times = chunk_spans.get(row["id"]), [result.stored_at[t] for t in row["tasks"] if t in result.stored_at]
        if span and times:
            startup.append(min(times) - span["start"])
            calling.append(max(times) - min(times))
            winddown.append(span["end"] - max(times))
    steps: dict[str, list[float]] = {}
    for span in result.spans:
        step = steps.setdefault(span["name"], [0, 0.0, 0.0, 0])
        step[0] += 1
        step[1] += span["end"] - span["start"]
        step[2] += span["cpu"]
        step[3] += span.get("n") or 0
    items = result.items_at
    chunk_tasks = [len(c["tasks"]) for c in result.chunk_rows]
    calls_floor = [math.ceil(n / args.concurrency) * args.latency for n in chunk_tasks]
    return {
        "to_first_item_s": items[0] - result.launched_at if items else None,
        "calls_phase_s": items[-1] - items[0] if items else None,
        "after_last_item_s": result.finished_at - items[-1] if items else None,
        "pace": pace(items),
        "chunk_median_s": _median(durations),
        "chunk_min_s": min(durations, default=None),
        "chunk_max_s": max(durations, default=None),
        "chunk_floor_s": _median(calls_floor),
        "chunk_phases_s": [_median(startup), _median(calling), _median(winddown)],
        "chunk_phase_sums_s": [sum(startup), sum(calling), sum(winddown)],
        "chunks_per_worker": sorted(len(v) for v in by_worker.values()),
        "busy_s": {w: sum(s["end"] - s["start"] for s in v) for w, v in by_worker.items()},
        "gap_median_s": _median(gaps),
        "gaps_s": sum(gaps),
        "first_wait_max_s": max(first_waits, default=None),
        "idle_at_end_s": sorted(idle_at_end),
        "steps": steps,
    }


LISTING = "LS predictions (the project's, listed)"
STEP_ORDER = (
    "chunk",
    "chunk claimed (locked transaction)",
    "engine set up",
    "the run's finished tasks read",
    "LS tasks (export)",
    "answers written to Label Studio",
    "the chunk's unwritten answers read",
    "the version's predictions read",
    "LS model_versions",
    "LS predictions (of the tasks written)",
    LISTING,
    "LS import_predictions",
    "chunk finished (locked transaction)",
)


def other_cpu(r: Result) -> float | None:
    """The machine's CPU seconds during the run not used by the benchmark's processes."""
    if r.cpu.get("machine") is None:
        return None
    return max(0.0, r.cpu["machine"] - sum(v or 0.0 for k, v in r.cpu.items() if k != "machine"))


def report(args, where: str, postgres_version: str, results: list[Result], warm_up: Result | None, suites_at_start, suites_during) -> None:
    cpus = os.cpu_count() or 1
    tasks, latency, concurrency = args.tasks, args.latency, args.concurrency
    base = results[0]
    chunk_count = math.ceil(tasks / args.chunk_tasks)
    analysed = [analyse(r, args) for r in results]
    problems = [f"{r.workers} worker(s): {p}" for r in results for p in r.problems]
    if warm_up is not None:
        problems += [f"warm-up: {p}" for p in warm_up.problems]

    print()
    print(f"Workers: one predict run of {tasks} tasks per configuration, the stand-in answering after {latency * 1000:.0f} ms, "
          f"concurrency {concurrency} per worker, chunks of {args.chunk_tasks} tasks ({chunk_count} chunks); Label Studio {where}; "
          f"PostgreSQL {postgres_version} of the benchmark's own; {cpus} CPUs")
    say_other_suites({"at the start": suites_at_start, "at the end": suites_during})
    print()
    rows, notes = [], {}
    for n, (r, a) in enumerate(zip(results, analysed)):
        ideal = tasks * latency / (concurrency * r.workers)
        measured = r.completed and base.completed
        speedup = base.wall_s / r.wall_s
        ideal_speedup = r.workers / base.workers
        busy = r.cpu.get("machine")
        rows.append((
            r.workers, r.workers * concurrency, number(r.wall_s) if r.completed else f">{r.polled_s:.0f} (not done)", number(ideal),
            number(r.wall_s / ideal) if r.completed else "", number(speedup) if measured else "", number(ideal_speedup), f"{speedup / ideal_speedup:.0%}" if measured else "",
            number(a["pace"], 0), number(r.workers * concurrency / latency, 0), f"{busy / (r.polled_s * cpus):.0%}" if busy is not None else "",
        ))  # fmt: skip
        other = other_cpu(r)
        if other is not None and other / r.polled_s >= 0.25:
            notes[n] = [f"other processes used {other:.0f} CPU s meanwhile ({other / r.polled_s:.2f} of the {cpus} CPUs): the figures are pessimistic"
                        + ("; the most: " + "; ".join(f"{command} ({cpu:.0f} s)" for cpu, command in r.others) if r.others else "")]
    head = ("workers", "calls out", "wall s", "ideal s", "ratio to ideal", f"speed-up vs {base.workers}", "ideal speed-up", "efficiency",
            "pace items/s", "ideal pace", "machine busy")  # fmt: skip
    print(grid(head, rows, notes))
    print(f"  wall: runs.launch -> the run's finished_at; ideal: tasks x latency / (concurrency x workers); pace: items stored per second "
          f"between the 10th and 90th percent of them; machine busy: all {cpus} CPUs' time used (of wall x {cpus})")

    print()
    print("CPU seconds used during each run (from /proc; a process tree each):")
    cpu_rows = []
    for r in results:
        worker_cpu = [v for k, v in r.cpu.items() if k.startswith("worker ") and v is not None]
        other = other_cpu(r)
        ls_cpu = r.cpu.get("Label Studio")
        cpu_rows.append((
            r.workers, number(sum(worker_cpu)), number(sum(worker_cpu) / tasks * 1000, 3), " ".join(number(v, 1) for v in worker_cpu),
            number(ls_cpu), number(ls_cpu / r.polled_s) if ls_cpu is not None else "", number(r.cpu.get("PostgreSQL")), number(r.cpu.get("stand-in")),
            number(r.cpu.get("this process")), number(other), number(r.cpu.get("machine")),
        ))  # fmt: skip
    print(grid(("workers", "workers", "per task ms", "each worker", "Label Studio", "its cores", "PostgreSQL", "stand-in", "this process", "other", "machine"), cpu_rows))
    print("  its cores: Label Studio's CPU seconds per second of the run (one process; near 1.0 it is saturated)")

    print()
    print("Where the time went:")
    for r, a in zip(results, analysed):
        print(f"  {r.workers} worker(s): {r.workers} started and alive in {r.start_workers_s:.1f} s (before the launch, not counted); "
              f"runs.launch (chunks cut, {r.chunk_count} jobs deferred) {r.dispatch_s:.2f} s")
        print(f"    launch -> first item stored {number(a['to_first_item_s'])} s; first -> last item {number(a['calls_phase_s'])} s; "
              f"last item -> run completed {number(a['after_last_item_s'])} s")
        print(f"    chunks per worker {a['chunks_per_worker']}; a chunk {number(a['chunk_median_s'])} s (median; {number(a['chunk_min_s'])}-{number(a['chunk_max_s'])}) "
              f"against {number(a['chunk_floor_s'])} s for its calls alone (ceil(chunk / concurrency) x latency)")
        up, calls, down = a["chunk_phases_s"]
        up_sum, calls_sum, down_sum = a["chunk_phase_sums_s"]
        print(f"    in a chunk (median; summed over the chunks): its start -> its first item stored {number(up)} s ({number(up_sum, 1)} s); "
              f"-> its last item {number(calls)} s ({number(calls_sum, 1)} s); -> its end (last writes, finish) {number(down)} s ({number(down_sum, 1)} s)")
        print(f"    between a worker's chunks: {number(a['gap_median_s'], 3)} s (median), {number(a['gaps_s'])} s in all; the last worker to start its first chunk "
              f"{number(a['first_wait_max_s'])} s after the launch; workers idle at the end (their last chunk ended -> run completed): "
              + ", ".join(number(v) for v in a["idle_at_end_s"]) + " s")
        busy = a["busy_s"]
        print("    workers busy in chunks: " + ", ".join(f"{number(busy[w], 1)} s" for w in sorted(busy)) + f" of {number(r.wall_s, 1)} s")
        print(f"    {'step (all workers)':<44} {'calls':>6} {'wall s':>8} {'s a call':>8} {'CPU s':>7} {'items':>8}")
        for name in STEP_ORDER:
            if name in a["steps"]:
                calls, seconds, cpu, n = a["steps"][name]
                print(f"    {name:<44} {int(calls):>6} {seconds:>8.2f} {seconds / calls:>8.3f} {cpu:>7.2f} {int(n) if n else '':>8}")
        for name, (calls, seconds, cpu) in sorted(r.tallies.items()):
            print(f"    {name:<44} {int(calls):>6} {seconds:>8.2f} {seconds / calls:>8.4f} {cpu:>7.2f}")
        listings = [sp for sp in r.spans if sp["name"] == LISTING]
        if listings:
            big = max(listings, key=lambda sp: sp.get("n") or 0)
            listed = sum(sp.get("n") or 0 for sp in listings)
            print(f"    the project's predictions listed {len(listings)} times, {listed} in all ({listed / tasks:.1f} per task of the run); "
                  f"the largest listing: {big.get('n')} predictions in {big['end'] - big['start']:.2f} s")
    print("  (wall s of a step: summed over the workers, which run at once; CPU: of the thread that ran it, for 'chunk' of the whole worker process)")

    print()
    if warm_up is not None:
        print(f"Warm-up, unmeasured: {len(warm_up.items_at)} tasks, 1 worker, {warm_up.wall_s:.2f} s")
    print("Checks: " + ("each run completed, one item per task, ok, not from the cache, written to Label Studio; one call per task; "
                        "one prediction per task in Label Studio; every chunk done; no worker started by the launch, none died"
                        if not problems else f"{len(problems)} problem(s)"))
    for problem in problems:
        print(f"  PROBLEM: {problem}")

    print()
    print(json.dumps({
        "bench": "workers",
        "tasks": tasks,
        "latency_s": latency,
        "concurrency": concurrency,
        "chunk_tasks": args.chunk_tasks,
        "chunks": chunk_count,
        "cpus": cpus,
        "baseline_workers": base.workers,
        "configurations": [
            {
                "workers": r.workers,
                "completed": r.completed,
                "wall_s": round(r.wall_s, 3),
                "ideal_s": round(tasks * latency / (concurrency * r.workers), 3),
                "speedup": round(base.wall_s / r.wall_s, 3) if r.completed and base.completed else None,
                "ideal_speedup": r.workers / base.workers,
                "pace_per_s": round(a["pace"], 1) if a["pace"] else None,
                "chunk_median_s": round(a["chunk_median_s"], 3) if a["chunk_median_s"] is not None else None,
                "chunk_phases_median_s": [round(v, 3) if v is not None else None for v in a["chunk_phases_s"]],
                "predictions_listed": int(a["steps"].get(LISTING, [0, 0.0, 0.0, 0])[3]),
                "predictions_listing_s": round(a["steps"].get(LISTING, [0, 0.0, 0.0, 0])[1], 2),
                "other_cpu_s": round(other, 2) if (other := other_cpu(r)) is not None else None,
                "cpu_s": {k: round(v, 2) for k, v in r.cpu.items() if v is not None and k != "this process"} | {"bench": round(r.cpu.get("this process") or 0.0, 2)},
                "machine_busy": round(r.cpu["machine"] / (r.polled_s * cpus), 3) if r.cpu.get("machine") is not None else None,
            }
            for r, a in zip(results, analysed)
        ],
        "speedup": {str(r.workers): round(base.wall_s / r.wall_s, 3) if r.completed and base.completed else None for r in results},
        "problems": problems,
    }))


if __name__ == "__main__":
    sys.exit(main())
