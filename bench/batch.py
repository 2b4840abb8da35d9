"""Benchmark: a batch run of many tasks through the stand-in's Batch API, with a simulated completion
delay: Prompter's own wall time and CPU outside the wait, and the cost against a live run.

    .venv/bin/python -m bench.batch [--tasks 20000] [--part-size 5000] [--delay 20] [--live-tasks 1000]

Measures, in one process run, against one Label Studio and the stand-in model in a child process
whose batches stay in progress until ``--delay`` seconds after their creation:

- the batch run: ``predict.start(..., mode="batch")`` over a project of ``--tasks`` tasks, then
  ``runs.execute``, timed: its wall time, split into preparation (execute start -> the last part's
  batch created), waiting (-> the last batch seen ended) and collection (-> execute returned), and
  the time the engine spent paused between two looks at its batches (idle: nothing to do but wait);
- Prompter's CPU: this process's CPU time (every thread) during ``runs.execute``, in total, per task,
  during the pauses and outside them; Label Studio's and the stand-in's CPU apart (from /proc); the
  process's peak RSS during the run;
- the baseline, measured in the same process: a live predict run (the live engine) over
  ``--live-tasks`` tasks of another project, its CPU per task and its wall time;
- the cost: the batch run's cost against the same calls' stored token counts at the live price, and
  the live run's cost against its own token counts at the batch price.

The engine's steps are timed by pass-through wrappers (``Instruments``) installed for the batch run
only; nothing the engine does is changed. Checked: one item per task, all ok and written to Label
Studio, one prediction per task in Label Studio, no live call during the batch run, and
ceil(tasks / part size) batches holding every task once; any difference is printed as a PROBLEM.
Prints a table and one JSON line; the exit code is 0 whether or not the run is within its limits.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    LABEL_CONFIG,
    TEMPLATE,
    StandInProcess,
    TimedClient,
    cpu_seconds,
    grid,
    import_texts,
    in_scratch_folder,
    label_studio,
    number,
    other_suites,
    reset_peak_rss,
    say_other_suites,
    status_mb,
    task_text,
)

MODEL = "gpt-4o-mini"
WARM_UP_TASKS = 20  # a first live run, unmeasured: imports, price data, the first connections


# -- pass-through timers around the batch engine's steps ------------------------------------------


@dataclass
class Span:
    name: str
    start: float  # time.time()
    end: float
    cpu_start: float  # time.process_time(): this process, every thread
    cpu_end: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def cpu(self) -> float:
        return self.cpu_end - self.cpu_start


class Instruments:
    """Times the batch engine's steps by wrapping them (the Batch API calls in ``core.batch_api``, and
    ``BatchEngine``'s pause between looks, collection of an ended batch, preparation of jobs and
    writing to Label Studio). Each wrapper calls the original unchanged and records a ``Span``; they are
    removed when the ``with`` block ends. A step the engine no longer has is listed in ``missing``."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.tallies: dict[str, list[float]] = {}  # name -> [calls, seconds, CPU seconds], for steps called once a task
        self.missing: list[str] = []
        self._undo: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> "Instruments":
        from core import batch_api, batch_runs

        engine = batch_runs.BatchEngine
        self._wrap(batch_api, "upload", lambda args, kwargs, out: {"lines": len(args[1]) if len(args) > 1 else None})
        self._wrap(batch_api, "create", lambda args, kwargs, out: {"batch": out})
        self._wrap(batch_api, "state", lambda args, kwargs, out: {"batch": out.batch_id, "status": out.status, "ended": out.ended})
        self._wrap(batch_api, "replies", lambda args, kwargs, out: {"batch": args[1].batch_id if len(args) > 1 else None, "lines": len(out)})
        self._wrap(engine, "_pause", lambda args, kwargs, out: {"asked_s": args[1] if len(args) > 1 else None})
        self._wrap(engine, "_collect", lambda args, kwargs, out: {"part": args[1].id, "batch": args[1].batch_id, "requests": args[1].requests, "rss_mb": status_mb("VmRSS")})
        self._wrap(engine, "_jobs", lambda args, kwargs, out: {"tasks": len(args[1]), "from_store": kwargs.get("from_store", True)})
        self._wrap(engine, "_write_pending", lambda args, kwargs, out: {"written": out})
        self._wrap(engine, "_save", None)  # each answer read and stored as an item: tallied, not one span each
        return self

    def __exit__(self, *_exc) -> None:
        for owner, name, original, own in reversed(self._undo):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # inherited: the class's parent's is seen again
        self._undo.clear()

    def _wrap(self, owner: Any, name: str, describe) -> None:
        original = getattr(owner, name, None)
        own = not isinstance(owner, type) or name in owner.__dict__
        if original is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return
        spans, tally = self.spans, self.tallies.setdefault(name, [0, 0.0, 0.0]) if describe is None else None

        def record(started: float, cpu: float, args, kwargs, out) -> None:
            if tally is not None:
                tally[0] += 1
                tally[1] += time.time() - started
                tally[2] += time.process_time() - cpu
                return
            try:
                detail = describe(args, kwargs, out)
            except Exception:  # noqa: BLE001 - a detail the engine's objects no longer give
                detail = {}
            spans.append(Span(name, started, time.time(), cpu, time.process_time(), detail))

        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def timed_async(*args, **kwargs):
                started, cpu = time.time(), time.process_time()
                out = await original(*args, **kwargs)
                record(started, cpu, args, kwargs, out)
                return out

            wrapper = timed_async
        else:

            @functools.wraps(original)
            def timed(*args, **kwargs):
                started, cpu = time.time(), time.process_time()
                out = original(*args, **kwargs)
                record(started, cpu, args, kwargs, out)
                return out

            wrapper = timed
        setattr(owner, name, wrapper)
        self._undo.append((owner, name, original, own))

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


# -- the runs -------------------------------------------------------------------------------------


def execute_measured(version, client: TimedClient, standin: StandInProcess, groups: dict[str, int | None], *, mode: str) -> dict[str, Any]:
    """``predict.scope`` + ``predict.start`` (untimed), then ``runs.execute`` timed: wall, this
    process's CPU, the others' CPU, the stand-in's calls and batches, the peak RSS."""
    from core import predict, runs

    chosen = predict.scope(version, client)
    run = predict.start(version, chosen, client, concurrency=client.concurrency, mode=mode)
    sent_before, batches_before = standin.count(), standin.batches()
    peak_reset = reset_peak_rss()
    rss_before = status_mb("VmRSS")
    others_before, cpu_before = cpu_seconds(groups), time.process_time()
    started_at, started = time.time(), time.perf_counter()
    finished = runs.execute(run.id, client=client)
    wall = time.perf_counter() - started
    ended_at = time.time()
    cpu, others_after = time.process_time() - cpu_before, cpu_seconds(groups)
    peak = status_mb("VmHWM") if peak_reset else None
    batches_after = standin.batches()
    return {
        "run": finished,
        "task_ids": chosen.task_ids,
        "wall_s": wall,
        "started_at": started_at,
        "ended_at": ended_at,
        "cpu_s": cpu,
        "cpu_mark": cpu_before,  # time.process_time() when execute started, to place the spans' CPU marks
        "others": {name: others_after[name] - others_before[name] for name in others_after if name in others_before},
        "live_calls": standin.count() - sent_before,
        "batches_made": batches_after["batches"] - batches_before["batches"],
        "batch_lines": batches_after["lines"] - batches_before["lines"],
        "rss_before_mb": rss_before,
        "rss_after_mb": status_mb("VmRSS"),
        "peak_rss_mb": peak,
        "peak_is_whole_process": not peak_reset,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def costs(run_id: int) -> dict[str, float]:
    """The run's items' stored token counts priced at the live and at the batch price, and what the
    items say they cost."""
    from core import pricing, runs

    items = runs.items(run_id)
    live = batch = paid = 0.0
    for item in items:
        tokens = (MODEL, item.input_tokens or 0, item.output_tokens or 0)
        live += pricing.cost(*tokens, cached_input_tokens=item.cached_input_tokens or 0, batch=False) or 0.0
        batch += pricing.cost(*tokens, cached_input_tokens=item.cached_input_tokens or 0, batch=True) or 0.0
        paid += item.cost_usd or 0.0
    return {"live_price": live, "batch_price": batch, "items_paid": paid, "input_tokens": sum(i.input_tokens or 0 for i in items)}


def check(measured: dict[str, Any], ls, project_id: int, version, *, batch: bool, part_size: int) -> list[str]:
    """What must hold after the run; each difference as a sentence."""
    from core import batch_runs, runs

    run, task_ids = measured["run"], measured["task_ids"]
    tasks = len(task_ids)
    problems = []
    if run.status != "completed" or run.done != tasks or run.failed:
        problems.append(f"run {run.id} {run.status}: {run.done} done, {run.failed} failed of {tasks} ({run.status_reason})")
    items = runs.items(run.id)
    by_task: dict[int, int] = {}
    for item in items:
        by_task[item.task_id] = by_task.get(item.task_id, 0) + 1
    if set(by_task) != set(task_ids) or any(n != 1 for n in by_task.values()):
        problems.append(f"{len(items)} items for {tasks} tasks: {len(set(task_ids) - set(by_task))} tasks without one, "
                        f"{sum(1 for n in by_task.values() if n > 1)} with more than one")
    if any(item.status != "ok" for item in items):
        problems.append(f"{sum(item.status != 'ok' for item in items)} items not ok (first: {next(i.error for i in items if i.status != 'ok')})")
    if any(not item.written_to_labelstudio for item in items):
        problems.append(f"{sum(not item.written_to_labelstudio for item in items)} items not written to Label Studio")
    if any(item.from_cache for item in items):
        problems.append(f"{sum(item.from_cache for item in items)} items came from the cache")
    written = _count(ls, project_id, version.model_version)
    if written != tasks:
        problems.append(f"Label Studio holds {written} predictions of {version.model_version} for {tasks} tasks")
    paid = sum(item.cost_usd or 0.0 for item in items)
    if run.cost_usd is None or abs(paid - run.cost_usd) > 1e-9 + 1e-6 * paid:
        problems.append(f"the run says it cost {run.cost_usd}, its items add up to {paid:.8f}")
    if batch:
        expected = math.ceil(tasks / _effective(part_size))
        found = batch_runs.parts(run.id)
        if measured["live_calls"]:
            problems.append(f"the stand-in received {measured['live_calls']} live calls during the batch run")
        if measured["batches_made"] != expected or len(found) != expected:
            problems.append(f"{measured['batches_made']} batches created at the stand-in, {len(found)} parts stored; expected {expected}")
        if measured["batch_lines"] != tasks:
            problems.append(f"the batches held {measured['batch_lines']} lines for {tasks} tasks")
        if any(p.status != "completed" for p in found):
            problems.append("parts not completed: " + ", ".join(p.describe for p in found if p.status != "completed"))
    elif measured["live_calls"] != tasks:
        problems.append(f"the stand-in received {measured['live_calls']} calls for {tasks} tasks")
    return problems


def _effective(part_size: int) -> int:
    """Requests per batch as the engine cuts them: the setting, within the API's limit."""
    from core import batch_api

    return min(part_size, batch_api.MAX_REQUESTS_PER_BATCH)


def _count(ls, project_id: int, model_version: str) -> int:
    return next((v.prediction_count for v in ls.model_versions(project_id) if v.name == model_version), 0)


class BenchClient(TimedClient):
    """The pass-through timer, also timing the task id listing ``predict.scope`` does; it carries
    the run's concurrency for ``execute_measured``."""

    MEASURED = TimedClient.MEASURED + ("task_ids",)

    def __init__(self, client, concurrency: int):
        super().__init__(client)
        self.concurrency = concurrency


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20000, help="tasks of the batch run (default 20000)")
    parser.add_argument("--part-size", type=int, default=5000, help="requests per batch, PROMPTER_BATCH_MAX_REQUESTS (default 5000)")
    parser.add_argument("--delay", type=float, default=20.0, help="seconds from a batch's creation to its completion at the stand-in (default 20)")
    parser.add_argument("--live-tasks", type=int, default=1000, help="tasks of the live run, the baseline (default 1000)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the stand-in takes to answer a live call (default 0.2)")
    parser.add_argument("--concurrency", type=int, default=32, help="the live run's concurrency (default 32)")
    parser.add_argument("--poll", type=float, default=None, help="PROMPTER_BATCH_POLL_SECONDS, the longest wait between two looks (default: the setting's, 30)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.part_size < 1 or args.live_tasks < 1 or args.delay < 0 or args.latency <= 0:
        parser.error("--tasks, --part-size and --live-tasks must be at least 1, --delay 0 or more, --latency above 0")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be 1 to 256")
    if args.poll is not None and args.poll <= 0:
        parser.error("--poll must be above 0")
    return in_scratch_folder(lambda workdir: _measure(args, workdir))


def _measure(args: argparse.Namespace, workdir: Path) -> int:
    os.environ["PROMPTER_HOME"] = str(workdir / "home")
    os.environ.pop("PROMPTER_DATABASE_URL", None)
    os.environ["PROMPTER_BATCH_MAX_REQUESTS"] = str(args.part_size)
    if args.poll is not None:
        os.environ["PROMPTER_BATCH_POLL_SECONDS"] = str(args.poll)
    else:
        os.environ.pop("PROMPTER_BATCH_POLL_SECONDS", None)

    from core import batch_runs, keys, pricing, prompts, settings, store
    from core.labelstudio import LabelStudioClient

    suites_at_start = other_suites()
    store.forget_engines()
    with label_studio(workdir) as (url, token, where, ls_group), StandInProcess(args.latency, complete_after=args.delay) as standin:
        os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = url, token
        ls = LabelStudioClient(url, token)
        keys.add("bench", "openai-compatible", base_url=standin.base_url)
        groups = {"stand-in": standin.process.pid, "Label Studio": ls_group}
        projects: list[int] = []

        def project(name: str, texts: list[str]) -> int:
            started = time.perf_counter()
            made = ls.create_project(f"bench batch {name} {int(time.time())}", LABEL_CONFIG)
            projects.append(made.id)
            import_texts(ls, made.id, texts)
            print(f"Project {made.id} ({name}): {len(texts)} tasks imported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            return made.id

        def version_in(project_id: int, name: str):
            return prompts.create(project_id, name, template=TEMPLATE, controls=["sentiment"], provider_key="bench", model=MODEL)

        try:
            batch_project = project("batch", [task_text("batch", n) for n in range(args.tasks)])
            live_project = project("live", [task_text("live", n) for n in range(args.live_tasks)])
            warm_project = project("warm-up", [task_text("warm-up", n) for n in range(WARM_UP_TASKS)])
            batch_version = version_in(batch_project, "bench-batch")
            live_version = version_in(live_project, "bench-live")
            warm_version = version_in(warm_project, "bench-warm-up")

            # Unmeasured: the imports, the price data (live and batch), the first connections.
            for batch in (False, True):
                pricing.list_price(MODEL, batch=batch)
            print(f"Warm-up: a live run of {WARM_UP_TASKS} tasks ...", file=sys.stderr, flush=True)
            execute_measured(warm_version, BenchClient(ls, args.concurrency), standin, groups, mode="live")

            print(f"Live run (the baseline): {args.live_tasks} tasks at concurrency {args.concurrency}, "
                  f"the stand-in answering after {args.latency * 1000:.0f} ms ...", file=sys.stderr, flush=True)
            live_client = BenchClient(ls, args.concurrency)
            live = execute_measured(live_version, live_client, standin, groups, mode="live")
            live["problems"] = check(live, ls, live_project, live_version, batch=False, part_size=args.part_size)
            live["costs"] = costs(live["run"].id)

            parts = math.ceil(args.tasks / _effective(args.part_size))
            print(f"Batch run: {args.tasks} tasks in {parts} part(s) of up to {_effective(args.part_size)}, each batch completing "
                  f"{args.delay:g} s after its creation ...", file=sys.stderr, flush=True)
            batch_client = BenchClient(ls, args.concurrency)
            with Instruments() as instruments:
                measured = execute_measured(batch_version, batch_client, standin, groups, mode="batch")
            measured["problems"] = check(measured, ls, batch_project, batch_version, batch=True, part_size=args.part_size)
            measured["costs"] = costs(measured["run"].id)
            measured["parts"] = batch_runs.parts(measured["run"].id)
            suites_during = other_suites()
        finally:
            for project_id in projects:
                with contextlib.suppress(Exception):
                    ls.delete_project(project_id)

    poll = settings.load().batch_poll_seconds
    _report(args, where, poll, measured, batch_client, instruments, live, live_client, suites_at_start, suites_during)
    return 0


# -- report -----------------------------------------------------------------------------------


def phases(measured: dict[str, Any], instruments: Instruments, delay: float) -> dict[str, Any]:
    """The batch run's timeline from the spans: when each part's batch was created, seen ended,
    collected; the three phases; the pauses."""
    t0, t_end = measured["started_at"], measured["ended_at"]
    created = {s.detail.get("batch"): s for s in instruments.named("create")}
    seen: dict[str, Span] = {}
    for s in instruments.named("state"):
        if s.detail.get("ended") and s.detail.get("batch") not in seen:
            seen[s.detail["batch"]] = s
    collected = {s.detail.get("batch"): s for s in instruments.named("_collect")}
    pauses = instruments.named("_pause")
    last_created = max((s.end for s in created.values()), default=t0)
    last_seen = max((s.end for s in seen.values()), default=last_created)
    cpu_mark = lambda spans, moment: next((s.cpu_end for s in spans if s.end == moment), None)  # noqa: E731
    cpu_at_created = cpu_mark(list(created.values()), last_created)
    cpu_at_seen = cpu_mark(list(seen.values()), last_seen)
    parts = []
    for part_number, (batch_id, made) in enumerate(sorted(created.items(), key=lambda kv: kv[1].end), start=1):
        ended, took = seen.get(batch_id), collected.get(batch_id)
        parts.append({
            "part": part_number,
            "batch": batch_id,
            "requests": took.detail.get("requests") if took else None,
            "created_s": made.end - t0,
            "due_s": made.end - t0 + delay,
            "seen_ended_s": ended.end - t0 if ended else None,
            "look_s": ended.seconds if ended else None,
            "late_s": ended.end - made.end - delay if ended else None,
            "collect_from_s": took.start - t0 if took else None,
            "collect_to_s": took.end - t0 if took else None,
            "collect_s": took.seconds if took else None,
            "collect_cpu_s": took.cpu if took else None,
            "rss_mb": took.detail.get("rss_mb") if took else None,
        })  # fmt: skip
    return {
        "preparation_s": last_created - t0,
        "waiting_s": last_seen - last_created,
        "collection_s": t_end - last_seen,
        "preparation_cpu_s": (cpu_at_created - measured["cpu_mark"]) if cpu_at_created is not None else None,
        "waiting_cpu_s": (cpu_at_seen - cpu_at_created) if cpu_at_seen is not None and cpu_at_created is not None else None,
        "paused_s": sum(s.seconds for s in pauses),
        "paused_cpu_s": sum(s.cpu for s in pauses),
        "pauses": len(pauses),
        "paused_after_last_collect_s": sum(s.seconds for s in pauses if collected and s.start >= max(c.end for c in collected.values()) - 1e-6),
        "collecting_while_waiting_s": sum(s.seconds for s in collected.values() if s.end <= last_seen + 1e-6 and s.start >= last_created - 1e-6),
        "parts": parts,
        "last_created": last_created,
        "last_seen": last_seen,
    }


def _report(args, where, poll, measured, batch_client, instruments, live, live_client, suites_at_start, suites_during) -> None:
    tasks, live_tasks = args.tasks, args.live_tasks
    run = measured["run"]
    wall, cpu = measured["wall_s"], measured["cpu_s"]
    t = phases(measured, instruments, args.delay)
    prep_cpu = t["preparation_cpu_s"]
    wait_cpu = t["waiting_cpu_s"]
    coll_cpu = cpu - prep_cpu - wait_cpu if prep_cpu is not None and wait_cpu is not None else None
    own_wall = wall - t["paused_s"]
    outside_cpu = cpu - t["paused_cpu_s"]
    per_task_ms = cpu / tasks * 1000
    live_per_task_ms = live["cpu_s"] / live_tasks * 1000
    cpu_ratio = per_task_ms / live_per_task_ms if live_per_task_ms else float("nan")
    problems = measured["problems"] + [f"live run: {p}" for p in live["problems"]]
    if instruments.missing:
        problems.append(f"not instrumented (the engine changed?): {', '.join(instruments.missing)}")
    within = not problems and cpu_ratio <= 1.0
    others = measured["others"]
    rest = max(0.0, others["machine"] - cpu - others.get("stand-in", 0.0) - others.get("Label Studio", 0.0)) if others else None

    print()
    made = math.ceil(tasks / _effective(args.part_size))
    print(f"Batch run: {tasks} tasks in parts of {_effective(args.part_size)} ({made} batch{'es' if made != 1 else ''}), each batch completing "
          f"{args.delay:g} s after its creation at the stand-in; looks at the batches after 1 s, doubling up to {poll:g} s; "
          f"Label Studio {where}; {os.cpu_count()} CPUs")
    say_other_suites({"at the start": suites_at_start, "after the batch run": suites_during})
    print()
    head = ("", "wall s", "CPU s", "CPU per task ms")
    rows = [
        ("batch run: runs.execute", number(wall), number(cpu), number(per_task_ms, 3)),
        ("  preparation: start -> last batch created", number(t["preparation_s"]), number(prep_cpu), ""),
        ("  waiting: -> last batch seen ended", number(t["waiting_s"]), number(wait_cpu), ""),
        ("  collection: -> execute returned", number(t["collection_s"]), number(coll_cpu), ""),
        ("  paused between looks (idle)", number(t["paused_s"]), number(t["paused_cpu_s"], 3), ""),
        ("  Prompter's own: outside the pauses", number(own_wall), number(outside_cpu), number(outside_cpu / tasks * 1000, 3)),
        (f"live run over {live_tasks} tasks (baseline)", number(live["wall_s"]), number(live["cpu_s"]), number(live_per_task_ms, 3)),
        (f"  extrapolated to {tasks} tasks", number(live["wall_s"] / live_tasks * tasks), number(live["cpu_s"] / live_tasks * tasks), ""),
    ]
    notes = {
        0: [f"the stand-in's simulated delay {args.delay:g} s; the run took {wall - args.delay:.2f} s more than the delay"],
        2: [f"of which collecting the parts that ended first {t['collecting_while_waiting_s']:.2f} s"],
        3: [f"of which paused after the last part was collected, before the engine saw nothing was left open: {t['paused_after_last_collect_s']:.2f} s"],
        4: [f"{t['pauses']} pause(s); the last batch was seen ended {max((p['late_s'] or 0.0) for p in t['parts']) if t['parts'] else float('nan'):.2f} s "
            "after it could have been (the engine looks once every part is submitted, then at doubling intervals, "
            "and collects one ended part before looking at the next)"],
        5: [f"{own_wall / args.delay:.2f}x the simulated delay" if args.delay else "no simulated delay",
            f"CPU per task {cpu_ratio:.2f}x the live engine's: {'WITHIN' if cpu_ratio <= 1.0 else 'ABOVE'} the live engine's CPU per task"],
        6: [f"concurrency {args.concurrency}, the stand-in answering after {args.latency * 1000:.0f} ms; same process, measured just before"],
    }
    print(grid(head, rows, notes))

    print()
    print("The parts (seconds from the start of runs.execute):")
    part_rows = [
        (p["part"], p["requests"], number(p["created_s"]), number(p["due_s"]), number(p["seen_ended_s"]), number(p["late_s"]), number(p["look_s"]),
         f"{number(p['collect_from_s'])}-{number(p['collect_to_s'])}", number(p["collect_s"]), number(p["collect_cpu_s"]), _imported_during(batch_client, p, measured["started_at"]),
         number(p["rss_mb"], 0))
        for p in t["parts"]
    ]  # fmt: skip
    print(grid(("part", "requests", "created", "may end", "seen ended", "late", "that look s", "collected", "collect s", "CPU s", "written to LS", "RSS MB"), part_rows))
    print("  created: its batch id came back; may end: created + the delay; seen ended: the look that found it ended came back (that look s:")
    print("  its duration, the stand-in answering the part's lines); collected: its answers stored and written to Label Studio (written to LS:")
    print("  the predictions imported during its collection)")

    print()
    print("Where Prompter's own time went (wall s, this process's CPU s, calls):")

    def steps(name: str, label: str, where=lambda s: True) -> None:
        found = [s for s in instruments.named(name) if where(s)]
        if found:
            print(f"  {label:<56} {sum(s.seconds for s in found):8.2f} s  CPU {sum(s.cpu for s in found):6.2f} s  in {len(found)}")

    steps("_jobs", "tasks fetched and prompts rendered, to submit", lambda s: s.detail.get("from_store", True))
    steps("_jobs", "tasks fetched again and prepared, to collect", lambda s: not s.detail.get("from_store", True))
    steps("upload", "batch input files uploaded")
    steps("create", "batches created")
    steps("state", "looks at the batches (GET /v1/batches/{id})")
    steps("replies", "output files read and parsed")
    steps("_collect", "collections (answers stored, written to Label Studio)")
    steps("_jobs", "  of which fetching the tasks again, preparing", lambda s: not s.detail.get("from_store", True))
    steps("replies", "  of which reading the output files")
    calls, seconds, cpu_saving = instruments.tallies.get("_save", [0, 0.0, 0.0])
    if calls:
        print(f"  {'  of which answers read and stored as items':<56} {seconds:8.2f} s  CPU {cpu_saving:6.2f} s  in {int(calls)}")
    steps("_write_pending", "  of which writing to Label Studio")
    for name in sorted(batch_client.seconds):
        print(f"  Label Studio {name:<43} {batch_client.seconds[name]:8.2f} s  CPU {batch_client.cpu_seconds[name]:6.2f} s  in {batch_client.calls[name]}"
              + (" (predict.scope, before execute)" if name == "task_ids" else ""))
    lines = sum(s.detail.get("lines") or 0 for s in instruments.named("upload"))
    print(f"  lines uploaded {lines}; lines read back {sum(s.detail.get('lines') or 0 for s in instruments.named('replies'))}; "
          f"Label Studio tasks fetched {batch_client.calls.get('tasks', 0)} times for {tasks} tasks")
    fetched = sum(s.detail.get("tasks") or 0 for s in instruments.named("_jobs"))
    if fetched and batch_client.calls.get("tasks") and live_client.calls.get("tasks"):
        print(f"  Label Studio's task export: {batch_client.seconds['tasks'] / fetched * 1000:.2f} ms a task ({fetched} fetched from the {tasks}-task project, "
              f"{_per_call(batch_client, 'tasks')} a call); in the live run {live_client.seconds['tasks'] / live_tasks * 1000:.2f} ms a task "
              f"(from the {live_tasks}-task project, {_per_call(live_client, 'tasks')} a call)")
    print(f"  Label Studio import_predictions: {_per_call(batch_client, 'import_predictions')} a call "
          f"(the live run's: {_per_call(live_client, 'import_predictions')})")
    if others:
        print(f"  meanwhile: Label Studio {others.get('Label Studio', float('nan')):.2f} s CPU, the stand-in {others.get('stand-in', 0.0):.2f} s, "
              f"everything else {rest:.2f} s; the machine's {os.cpu_count()} CPUs were {others['machine'] / (wall * os.cpu_count()):.0%} busy")
        print(f"  during the live run: Label Studio {live['others'].get('Label Studio', float('nan')):.2f} s CPU, "
              f"the stand-in {live['others'].get('stand-in', 0.0):.2f} s")

    print()
    peak = measured["peak_rss_mb"]
    print(f"Memory of this process: RSS {number(measured['rss_before_mb'], 0)} MB before runs.execute, {number(measured['rss_after_mb'], 0)} MB after; "
          + (f"peak during the batch run {number(peak, 0)} MB" if peak is not None else f"peak of the whole process {measured['maxrss_mb']:.0f} MB (ru_maxrss)")
          + f" (the live run's peak: {number(live['peak_rss_mb'], 0)} MB)")

    print()
    bc, lc = measured["costs"], live["costs"]
    cost_rows = [
        (f"batch run, {tasks} tasks", _usd(run.cost_usd), _usd(bc["live_price"]), _per_task(run.cost_usd, tasks), _per_task(bc["live_price"], tasks),
         _ratio(run.cost_usd, bc["live_price"])),
        (f"live run, {live_tasks} tasks", _usd(lc["batch_price"]), _usd(live["run"].cost_usd), _per_task(lc["batch_price"], live_tasks),
         _per_task(live["run"].cost_usd, live_tasks), _ratio(lc["batch_price"], live["run"].cost_usd)),
    ]  # fmt: skip
    print(f"Cost ({MODEL}; the run's own figure, and the same calls' stored token counts at the other price):")
    print(grid(("", "batch price $", "live price $", "batch $/task", "live $/task", "batch / live"), cost_rows))
    print(f"  batch run: {run.input_tokens} input and {run.output_tokens} output tokens; its items add up to ${bc['items_paid']:.6f}")
    saved = (bc["live_price"] - (run.cost_usd or 0.0))
    print(f"  the Batch API saved ${saved:.4f} on this run; a live run of the same tasks would have cost ${bc['live_price']:.4f}")

    print()
    print("Checks: " + ("every task has one item, ok and written to Label Studio; Label Studio holds one prediction per task; "
                        f"no live call during the batch run; {measured['batches_made']} batches holding {measured['batch_lines']} lines"
                        if not measured["problems"] else f"{len(measured['problems'])} problem(s)"))
    for problem in problems:
        print(f"  PROBLEM: {problem}")

    print()
    print(json.dumps({
        "bench": "batch",
        "tasks": tasks,
        "part_size": args.part_size,
        "parts": len(measured["parts"]),
        "delay_s": args.delay,
        "poll_s": poll,
        "wall_s": round(wall, 3),
        "preparation_s": round(t["preparation_s"], 3),
        "waiting_s": round(t["waiting_s"], 3),
        "collection_s": round(t["collection_s"], 3),
        "paused_s": round(t["paused_s"], 3),
        "paused_after_last_collect_s": round(t["paused_after_last_collect_s"], 3),
        "own_wall_s": round(own_wall, 3),
        "last_seen_late_s": round(max((p["late_s"] or 0.0) for p in t["parts"]), 3) if t["parts"] else None,
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_task": round(per_task_ms, 4),
        "cpu_in_pauses_s": round(t["paused_cpu_s"], 3),
        "cpu_outside_wait_s": round(outside_cpu, 3),
        "live_tasks": live_tasks,
        "live_wall_s": round(live["wall_s"], 3),
        "live_cpu_ms_per_task": round(live_per_task_ms, 4),
        "cpu_ratio_to_live": round(cpu_ratio, 3),
        "collect_s_per_part": [round(p["collect_s"], 2) for p in t["parts"] if p["collect_s"] is not None],
        "labelstudio_tasks_s_per_call": round(batch_client.seconds["tasks"] / batch_client.calls["tasks"], 3) if batch_client.calls.get("tasks") else None,
        "labelstudio_cpu_s": round(others.get("Label Studio", 0.0), 2) if others else None,
        "standin_cpu_s": round(others.get("stand-in", 0.0), 2) if others else None,
        "other_cpu_s": round(rest, 2) if rest is not None else None,
        "peak_rss_mb": round(peak, 1) if peak is not None else None,
        "batch_cost_usd": round(run.cost_usd or 0.0, 6),
        "same_tokens_live_cost_usd": round(bc["live_price"], 6),
        "cost_ratio": round((run.cost_usd or 0.0) / bc["live_price"], 4) if bc["live_price"] else None,
        "live_run_cost_usd": round(live["run"].cost_usd or 0.0, 6),
        "live_run_at_batch_price_usd": round(lc["batch_price"], 6),
        "within_target": within,
        "problems": problems,
    }))


def _per_call(client: TimedClient, name: str) -> str:
    calls = client.calls.get(name, 0)
    return f"{client.seconds[name] / calls:.3f} s" if calls else "none"


def _imported_during(client: TimedClient, part: dict[str, Any], t0: float) -> str:
    """Predictions sent to Label Studio's import while the part was being collected."""
    if part["collect_from_s"] is None:
        return ""
    start, end = t0 + part["collect_from_s"], t0 + part["collect_to_s"]
    return str(sum(sent for name, began, _ended, sent in client.spans if name == "import_predictions" and start <= began <= end))


def _usd(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _per_task(value: float | None, tasks: int) -> str:
    return "" if value is None or not tasks else f"{value / tasks:.8f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{a / b:.3f}"


if __name__ == "__main__":
    sys.exit(main())
