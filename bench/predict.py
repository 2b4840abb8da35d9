"""Benchmark: Predict over many tasks, written into a real Label Studio, against the ML-backend way.

    .venv/bin/python -m bench.predict [--tasks 5000] [--latency 0.25] [--concurrency 32] [--memory-tasks 20000]

Measures, in one process run, against one Label Studio and the stand-in model in a child process:

- predict run: what the Predict button and ``python -m core predict`` run, ``predict.scope`` +
  ``predict.start`` + ``runs.execute`` over a project of ``--tasks`` tasks at ``--concurrency``; wall
  time around the three (listing the task ids, fetching the tasks, every call, every item stored,
  every prediction written to Label Studio), against the ideal tasks x latency / concurrency;
- baseline, the way the Label Studio ML backend example works: one task at a time, one call to the
  model, then one ``POST /api/predictions/`` (``predictions.create``: task, result, model_version)
  per task, over ``--baseline-tasks`` tasks of a project of their own, extrapolated per task;
- CPU: the run's process CPU time (every thread) per task, and Prompter's own part of it: the total
  minus the CPU the bare OpenAI client needs for the same calls at the same concurrency, measured
  separately over ``--bare-calls`` calls with no engine around it and scaled per call;
- memory: ``python -m core predict`` over a project of ``--memory-tasks`` tasks in a child process
  (stand-in latency ``--memory-latency``, concurrency ``--memory-concurrency``), its peak RSS
  (``ru_maxrss`` from ``wait4``), and its RSS sampled while it runs.

Every measured call is real (the store starts empty and the texts differ; checked: the stand-in's call
count and the items' ``from_cache``), and Label Studio must hold exactly one prediction of the version
per task afterwards. Prints a table and one JSON line; the exit code is 0 whether or not a target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import (
    in_scratch_folder,
    LABEL_CONFIG,
    TEMPLATE,
    Measured,
    StandInProcess,
    TimedClient,
    _aware,
    cpu_seconds,
    import_texts,
    label_studio,
    other_suites,
    percentile,
    say_other_suites,
    table,
    task_text,
)

TARGET_RATIO = 1.15
CPU_TARGET_MS = 2.0
MEMORY_TARGET_MB = 500
MODEL = "gpt-4o-mini"
# Label Studio 1.23's prediction import, with this feature flag off (the default), recounts every task of
# the project on each request, so an import's cost grows with the project (see bench/README.md).


class PredictClient(TimedClient):
    """The pass-through timer, also timing the task id listing ``predict.scope`` does."""

    MEASURED = TimedClient.MEASURED + ("task_ids",)


# -- the baseline: the ML backend's way --------------------------------------------------------


def ml_backend_loop(version, tasks, key, url: str, token: str) -> dict[str, float]:
    """One task at a time: render, one call, parse into regions, one POST /api/predictions/."""
    from label_studio_sdk import LabelStudio

    from core import calls, labeling, messages, providers

    targets = labeling.read(LABEL_CONFIG)
    schema = labeling.schema(targets, version.controls)
    model = providers.client(key, timeout=60.0, max_retries=0)
    sdk = LabelStudio(base_url=url, api_key=token)
    call_s = post_s = 0.0
    started = time.perf_counter()
    for task in tasks:
        began = time.perf_counter()
        reply = calls.ask(model, calls.request(version, key, messages.build(version, targets, task.data), schema))
        if not reply.ok:
            raise RuntimeError(f"a baseline call failed: {reply.error}")
        answer = labeling.to_regions(targets, version.controls, reply.raw, task.data)
        answered = time.perf_counter()
        sdk.predictions.create(task=task.id, result=answer.regions, model_version=version.model_version, score=reply.confidence)
        call_s, post_s = call_s + answered - began, post_s + time.perf_counter() - answered
    wall = time.perf_counter() - started
    model.close()
    return {"wall_s": wall, "call_s": call_s, "post_s": post_s}


# -- the bare OpenAI client, for the CPU it needs per call --------------------------------------


def bare_client_cpu(version, key, texts: list[str], concurrency: int) -> dict[str, float]:
    """The same requests through the bare async OpenAI client (the engine's client, built the same
    way), ``concurrency`` at a time, with nothing else: process CPU and wall time."""
    from core import calls, labeling, messages, providers, runs

    targets = labeling.read(LABEL_CONFIG)
    schema = labeling.schema(targets, version.controls)
    requests = [calls.request(version, key, messages.build(version, targets, {"text": t}), schema) for t in texts]

    async def go() -> None:
        client = providers.async_client(key, timeout=runs.CALL_TIMEOUT, max_retries=runs.CALL_RETRIES)
        todo = iter(requests)

        async def worker() -> None:
            for request in todo:
                await client.chat.completions.create(**request.body)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await client.close()

    cpu, started = time.process_time(), time.perf_counter()
    asyncio.run(go())
    return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - started, "calls": len(requests)}


# -- the measured run -----------------------------------------------------------------------------


def predict_run(version, concurrency: int, client: PredictClient, standin: StandInProcess, *, profile: bool, label_studio_group: int | None) -> dict[str, Any]:
    """scope + start + execute, as the Predict button does; wall and CPU time, phases, checks."""
    from core import predict, runs

    sent_before = standin.count()
    profiler = cProfile.Profile(time.thread_time) if profile else None  # CPU time: waiting in epoll is not counted
    groups = {"stand-in": standin.process.pid, "Label Studio": label_studio_group}
    cpu_before, process_before, thread_before = cpu_seconds(groups), time.process_time(), time.thread_time()
    began_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    chosen = predict.scope(version, client)
    run = predict.start(version, chosen, client, concurrency=concurrency)
    executing = time.perf_counter()
    finished = runs.execute(run.id, client=client)  # its event loop runs in this thread
    if profiler:
        profiler.disable()
    ended = time.perf_counter()
    ended_at = datetime.now(timezone.utc)
    process_cpu, loop_cpu, cpu_after = time.process_time() - process_before, time.thread_time() - thread_before, cpu_seconds(groups)

    items = runs.items(run.id)
    sent = standin.count() - sent_before
    problems = []
    if finished.status != "completed" or finished.done != len(chosen.task_ids):
        problems.append(f"run {finished.status}: {finished.done} done, {finished.failed} failed ({finished.status_reason})")
    if sent != len(chosen.task_ids):
        problems.append(f"the stand-in received {sent} calls for {len(chosen.task_ids)} tasks")
    if any(item.from_cache for item in items):
        problems.append(f"{sum(i.from_cache for i in items)} items came from the cache")
    saved = sorted(_aware(item.created_at) for item in items)
    return {
        "tasks": len(chosen.task_ids),
        "wall_s": ended - started,
        "setup_s": executing - started,
        "execute_s": ended - executing,
        "problems": problems,
        "to_first_item_s": (saved[0] - began_at).total_seconds() if saved else float("nan"),
        "calls_phase_s": (saved[-1] - saved[0]).total_seconds() if saved else float("nan"),
        "after_last_item_s": (ended_at - saved[-1]).total_seconds() if saved else float("nan"),
        "latency_ms": sorted(item.latency_ms for item in items if item.latency_ms is not None) or [float("nan")],
        "profile": profiler,
        "process_cpu_s": process_cpu,
        "loop_cpu_s": loop_cpu,
        "cpu": {name: cpu_after[name] - cpu_before[name] for name in cpu_after if name in cpu_before},
    }


# -- memory: python -m core predict in a child process --------------------------------------------


def memory_run(prompt: str, project_id: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """``python -m core predict`` in a child process; its peak RSS from wait4, its RSS every 0.25 s."""
    repo = Path(__file__).resolve().parent.parent
    log = workdir / "memory-run.log"
    with open(log, "wb") as errors:
        child = subprocess.Popen(
            [sys.executable, "-m", "core", "predict", "--prompt", prompt, "--project", str(project_id), "--concurrency", str(concurrency), "--json"],
            cwd=repo,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        started, began_at = time.perf_counter(), time.time()
        samples: list[tuple[float, float]] = []  # (time.time(), RSS in MB)
        status_file = Path(f"/proc/{child.pid}/status")
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # not poll(): wait4 gives its rusage
            if pid == child.pid:
                break
            with contextlib.suppress(OSError, ValueError, IndexError):
                rss = next(line for line in status_file.read_text().splitlines() if line.startswith("VmRSS:"))
                samples.append((time.time(), int(rss.split()[1]) / 1024))
            time.sleep(0.25)
        wall, ended_at = time.perf_counter() - started, time.time()
        child.returncode = os.waitstatus_to_exitcode(status)
        output = child.stdout.read().decode()
        child.stdout.close()
    document: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        document = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
    return {
        "wall_s": wall,
        "began_at": began_at,
        "ended_at": ended_at,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "returncode": child.returncode,
        "document": document,
        "samples": samples,
        "log_tail": log.read_text(errors="replace")[-600:],
    }


def rss_by_progress(samples: list[tuple[float, float]], stored: list[float], total: int) -> list[tuple[str, float]]:
    """The child's RSS when the first item was stored and at each quarter of the items."""
    if not samples or not stored:
        return []
    marks = [("first item", stored[0])] + [(f"{q}%", stored[min(len(stored) - 1, total * q // 100 - 1)]) for q in (25, 50, 75, 100)]
    found = []
    for name, moment in marks:
        before = [rss for t, rss in samples if t <= moment + 0.3]
        if before:
            found.append((name, before[-1]))
    return found


def stored_times(run_id: int) -> list[float]:
    from sqlmodel import select

    from core import store

    with store.session() as s:
        moments = s.exec(select(store.RunItem.created_at).where(store.RunItem.run_id == run_id)).all()
    return sorted(_aware(m).timestamp() for m in moments)


# -- profile: own time by package -------------------------------------------------------------------


def by_package(profiler: cProfile.Profile) -> list[tuple[str, float]]:
    """Own (tottime) seconds by package; a C function's time goes to the package of its caller."""
    stats = pstats.Stats(profiler).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}

    repo = str(Path(__file__).resolve().parent.parent) + "/"

    def package(filename: str) -> str:
        path = filename.replace("\\", "/")
        if path.startswith(("~", "<")):
            return ""  # a C function (or frozen code): counted with its caller
        if "/site-packages/" in path:
            return path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
        if path.startswith(repo):
            return "prompter " + path[len(repo):].split("/", 1)[0].removesuffix(".py")
        return "stdlib asyncio" if "/asyncio/" in path else "stdlib " + path.rsplit("/", 1)[-1].removesuffix(".py")

    totals: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, callers) in stats.items():
        owner = package(filename)
        if owner:
            totals[owner] = totals.get(owner, 0.0) + tottime
            continue
        spread = sum(c[2] for c in callers.values()) or 0.0
        for (caller_file, _l, _n), contribution in callers.items():
            share = contribution[2] if spread else tottime / max(1, len(callers))
            name = package(caller_file) or "built-in"
            totals[name] = totals.get(name, 0.0) + share
        if not callers:
            totals["built-in"] = totals.get("built-in", 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


# -- the load ------------------------------------------------------------------------------------


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks in the measured predict run (default 5000)")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the stand-in takes to answer each call (default 0.25)")
    parser.add_argument("--concurrency", type=int, default=32, help="the measured run's concurrency (default 32)")
    parser.add_argument("--baseline-tasks", type=int, default=40, help="tasks the ML-backend-style baseline runs, extrapolated (default 40)")
    parser.add_argument("--bare-calls", type=int, default=1000, help="calls of the bare OpenAI client, for its CPU per call (default 1000; at most --tasks)")
    parser.add_argument("--memory-tasks", type=int, default=20000, help="tasks of the memory run; 0 skips it (default 20000)")
    parser.add_argument("--memory-latency", type=float, default=0.01, help="the stand-in's latency in the memory run (default 0.01)")
    parser.add_argument("--memory-concurrency", type=int, default=64, help="the memory run's concurrency (default 64)")
    parser.add_argument("--profile", action="store_true", help="profile the measured run with cProfile (event-loop thread; slows it, so the wall time is not comparable)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.baseline_tasks < 1 or args.bare_calls < 1 or args.memory_tasks < 0 or args.latency <= 0 or args.memory_latency <= 0:
        parser.error("--tasks, --baseline-tasks and --bare-calls must be at least 1, --memory-tasks 0 or more, the latencies above 0")
    if not (1 <= args.concurrency <= 256 and 1 <= args.memory_concurrency <= 256):
        parser.error("--concurrency and --memory-concurrency must be 1 to 256")

    return in_scratch_folder(lambda workdir: _measure(args, workdir))


def _measure(args: argparse.Namespace, workdir: Path) -> int:
    os.environ["PROMPTER_HOME"] = str(workdir / "home")
    os.environ.pop("PROMPTER_DATABASE_URL", None)

    from core import keys, prompts, store
    from core.labelstudio import LabelStudioClient

    sample = min(args.baseline_tasks, args.tasks)
    bare_calls = min(args.bare_calls, args.tasks)
    suites_at_start = other_suites()
    store.forget_engines()
    with label_studio(workdir) as (url, token, where, ls_group), StandInProcess(args.latency) as standin:
        os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = url, token
        ls = LabelStudioClient(url, token)
        key = keys.add("bench", "openai-compatible", base_url=standin.base_url)
        projects: list[int] = []

        def project(name: str, texts: list[str]) -> int:
            started = time.perf_counter()
            made = ls.create_project(f"bench predict {name} {int(time.time())}", LABEL_CONFIG)
            projects.append(made.id)
            import_texts(ls, made.id, texts)
            print(f"Project {made.id} ({name}): {len(texts)} tasks imported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            return made.id

        def version_in(project_id: int, name: str, key_name: str):
            return prompts.create(project_id, name, template=TEMPLATE, controls=["sentiment"], provider_key=key_name, model=MODEL)

        try:
            main_project = project("measured", [task_text("measured", n) for n in range(args.tasks)])
            baseline_project = project("ml-backend", [task_text("ml-backend", n) for n in range(sample)])
            version = version_in(main_project, "bench", "bench")
            baseline_version = version_in(baseline_project, "bench-ml-backend", "bench")

            print(f"Baseline, the ML backend's way: {sample} tasks one at a time ...", file=sys.stderr, flush=True)
            baseline_tasks = list(ls.tasks(baseline_project))
            loop = ml_backend_loop(baseline_version, baseline_tasks, key, url, token)
            baseline_written = _count(ls, baseline_project, baseline_version.model_version)

            print(f"The bare OpenAI client: {bare_calls} calls at concurrency {args.concurrency} ...", file=sys.stderr, flush=True)
            sent_before = standin.count()
            bare = bare_client_cpu(version, key, [task_text("bare", n) for n in range(bare_calls)], args.concurrency)
            bare_sent = standin.count() - sent_before

            print(f"Predict run: {args.tasks} tasks at concurrency {args.concurrency} ...", file=sys.stderr, flush=True)
            timed = PredictClient(ls)
            main_run = predict_run(version, args.concurrency, timed, standin, profile=args.profile, label_studio_group=ls_group)
            suites_during = other_suites()
            written = _count(ls, main_project, version.model_version)
            if written != args.tasks:
                main_run["problems"].append(f"Label Studio holds {written} predictions of {version.model_version} for {args.tasks} tasks")
            if baseline_written != sample:
                main_run["problems"].append(f"the baseline left {baseline_written} predictions for {sample} tasks")
            if bare_sent != bare_calls:
                main_run["problems"].append(f"the bare client sent {bare_sent} calls instead of {bare_calls}")

            memory = None
            if args.memory_tasks:
                with StandInProcess(args.memory_latency) as quick:
                    keys.add("bench-memory", "openai-compatible", base_url=quick.base_url)
                    memory_project = project("memory", [task_text("memory", n) for n in range(args.memory_tasks)])
                    version_in(memory_project, "bench-memory", "bench-memory")
                    print(f"Memory: python -m core predict over {args.memory_tasks} tasks at concurrency {args.memory_concurrency} "
                          f"({args.memory_latency * 1000:.0f} ms) in a child process ...", file=sys.stderr, flush=True)
                    sent_before, groups = quick.count(), {"stand-in": quick.process.pid, "Label Studio": ls_group}
                    cpu_before = cpu_seconds(groups)
                    memory = memory_run("bench-memory", memory_project, args.memory_concurrency, workdir)
                    cpu_after = cpu_seconds(groups)
                    memory["cpu"] = {name: cpu_after[name] - cpu_before[name] for name in cpu_after if name in cpu_before}
                    memory["sent"] = quick.count() - sent_before
                memory["written"] = _count(ls, memory_project, "bench-memory@v1")
                run_id = memory["document"].get("run_id")
                memory["stored"] = stored_times(run_id) if run_id else []
                memory["problems"] = _memory_problems(memory, args.memory_tasks)
        finally:
            for project_id in projects:
                with contextlib.suppress(Exception):
                    ls.delete_project(project_id)

    _report(args, where, sample, bare, loop, main_run, timed, memory, suites_at_start, suites_during)
    return 0


def _count(ls, project_id: int, model_version: str) -> int:
    return next((v.prediction_count for v in ls.model_versions(project_id) if v.name == model_version), 0)


def _memory_problems(memory: dict[str, Any], tasks: int) -> list[str]:
    problems = []
    document = memory["document"]
    if memory["returncode"] != 0 or document.get("completed") != tasks:
        problems.append(f"python -m core predict exited {memory['returncode']}: {document.get('completed')} of {tasks} completed "
                        f"({document.get('status_reason') or memory['log_tail'][-300:]!r})")
    if memory["sent"] != tasks:
        problems.append(f"the stand-in received {memory['sent']} calls for {tasks} tasks")
    if memory["written"] != tasks:
        problems.append(f"Label Studio holds {memory['written']} predictions of bench-memory@v1 for {tasks} tasks")
    return problems


# -- report -----------------------------------------------------------------------------------


def _report(args, where, sample, bare, loop, main_run, timed, memory, suites_at_start, suites_during) -> None:
    tasks = args.tasks
    ideal_s = tasks * args.latency / args.concurrency
    scale = tasks / sample
    wall = main_run["wall_s"]
    ratio = wall / ideal_s
    within = ratio <= TARGET_RATIO and not main_run["problems"]
    baseline = Measured(
        "baseline: the ML backend's way, one task at a time", tasks, 1, loop["wall_s"] * scale,
        notes=[
            f"measured over {sample} tasks in {loop['wall_s']:.2f} s, extrapolated per task x{scale:.4g}: per task "
            f"{loop['call_s'] / sample * 1000:.0f} ms the call (render, ask, parse), {loop['post_s'] / sample * 1000:.0f} ms "
            f"its POST /api/predictions/",
        ],
    )
    cpu = main_run["cpu"]
    others = None
    notes = [
        f"{'WITHIN' if within else 'MISSES'} the target of {TARGET_RATIO}x ideal ({ratio:.3f}x); "
        f"{baseline.wall_s / wall:.1f}x faster than the ML backend's way",
        f"of which scope + start {main_run['setup_s']:.2f} s, execute {main_run['execute_s']:.2f} s",
    ]
    if cpu:
        others = max(0.0, cpu["machine"] - main_run["process_cpu_s"] - cpu.get("stand-in", 0.0) - cpu.get("Label Studio", 0.0))
        if others > 0.25 * wall:
            notes.append(f"other processes used {others / wall:.1f} of the {os.cpu_count()} CPUs meanwhile: a pessimistic figure")
    if args.profile:
        notes.append("profiled with cProfile: the wall time is slowed by the profiler, not comparable to the target")
    rows = [
        Measured("ideal (tasks x latency / concurrency)", tasks, args.concurrency, ideal_s),
        Measured("predict run (scope + start + execute)", tasks, args.concurrency, wall, notes=notes),
        baseline,
    ]

    bare_per_call = bare["cpu_s"] / bare["calls"]
    cpu_per_task = main_run["process_cpu_s"] / tasks * 1000
    own_per_task = (main_run["process_cpu_s"] - bare_per_call * tasks) / tasks * 1000
    ls_cpu = sum(timed.cpu_seconds.values())
    cpu_within = own_per_task <= CPU_TARGET_MS

    print()
    print(f"Predict: {tasks} tasks, stand-in answering after {args.latency * 1000:.0f} ms, concurrency {args.concurrency}; "
          f"Label Studio {where}; {os.cpu_count()} CPUs")
    say_other_suites({"at the start": suites_at_start, "after the measured run": suites_during})
    print()
    print(table(rows, ideal_s))
    print()
    print("CPU time of the predict run's process (every thread)          s   per task ms"
          + ("   (profiled: inflated by cProfile)" if args.profile else ""))
    print(f"  whole process                                        {main_run['process_cpu_s']:7.2f}   {cpu_per_task:6.2f}")
    print(f"  the bare OpenAI client's share (measured apart)       {bare_per_call * tasks:7.2f}   {bare_per_call * 1000:6.2f}"
          f"   ({bare['calls']} calls at concurrency {args.concurrency}, nothing else: {bare['cpu_s']:.2f} s CPU in {bare['wall_s']:.1f} s)")
    print(f"  Prompter's own (the difference)                      {main_run['process_cpu_s'] - bare_per_call * tasks:7.2f}   {own_per_task:6.2f}"
          f"   {'WITHIN' if cpu_within else 'MISSES'} the target of {CPU_TARGET_MS:g} ms")
    print(f"    of which in Label Studio calls (worker threads)      {ls_cpu:7.2f}   {ls_cpu / tasks * 1000:6.2f}"
          f"   (fetching the tasks, writing the predictions: label-studio-sdk, httpx, JSON)")
    print(f"  the event-loop thread alone                          {main_run['loop_cpu_s']:7.2f}   {main_run['loop_cpu_s'] / tasks * 1000:6.2f}")
    if cpu:
        parts = [f"the stand-in {cpu.get('stand-in', 0.0):.2f} s"]
        if "Label Studio" in cpu:
            parts.append(f"Label Studio {cpu['Label Studio']:.2f} s")
        parts.append(f"{'everything else' if 'Label Studio' in cpu else 'the rest, Label Studio included'} {others:.2f} s")
        print(f"  meanwhile: {', '.join(parts)}; the machine's {os.cpu_count()} CPUs were {cpu['machine'] / (wall * os.cpu_count()):.0%} busy")
    print()

    lat = main_run["latency_ms"]
    pace = (tasks - 1) / main_run["calls_phase_s"] if main_run["calls_phase_s"] else float("nan")
    print("Where the predict run's time went:")
    print(f"  start -> first item stored               {main_run['to_first_item_s']:7.2f} s  (scope + start {main_run['setup_s']:.2f} s)")
    print(f"  first item -> last item stored           {main_run['calls_phase_s']:7.2f} s  ({pace:.0f} items/s; ideal {args.concurrency / args.latency:.0f}/s)")
    print(f"  last item stored -> execute returned     {main_run['after_last_item_s']:7.2f} s")
    print(f"  call latency seen by the engine (ms)     p50 {percentile(lat, 0.5):.0f}, p90 {percentile(lat, 0.9):.0f}, p99 {percentile(lat, 0.99):.0f}, max {lat[-1]:.0f}")
    for name in sorted(timed.seconds):
        print(f"  Label Studio {name:<24} {timed.seconds[name]:7.2f} s in {timed.calls[name]} calls (CPU {timed.cpu_seconds[name]:.2f} s)")
    print(f"  predictions of the version in Label Studio after: {_count_line(main_run, tasks)}")
    for problem in main_run["problems"]:
        print(f"  PROBLEM: {problem}")

    peak = memory["peak_rss_mb"] if memory else None
    memory_within = bool(memory) and peak <= MEMORY_TARGET_MB and not memory["problems"]
    if memory:
        print()
        print(f"Memory: `python -m core predict` over {args.memory_tasks} tasks in a child process "
              f"(stand-in {args.memory_latency * 1000:.0f} ms, concurrency {args.memory_concurrency})")
        print(f"  peak RSS                                 {peak:7.1f} MB  "
              f"{'WITHIN' if memory_within else 'MISSES'} the target of {MEMORY_TARGET_MB} MB")
        marks = rss_by_progress(memory["samples"], memory["stored"], args.memory_tasks)
        if marks:
            print("  RSS as the items were stored             " + ", ".join(f"{name} {rss:.0f} MB" for name, rss in marks))
        stored = memory["stored"]
        if len(stored) > 1:
            print(f"  wall {memory['wall_s']:.1f} s, items stored at {(len(stored) - 1) / (stored[-1] - stored[0]):.0f}/s, "
                  f"CPU {memory['cpu_s']:.1f} s ({memory['cpu_s'] / args.memory_tasks * 1000:.2f} ms per task, the estimate and start-up included)")
        if stored:
            print(f"  child start -> first item stored {stored[0] - memory['began_at']:.1f} s (start-up, scope, estimate, start), "
                  f"first -> last item stored {stored[-1] - stored[0]:.1f} s, last item stored -> exit {memory['ended_at'] - stored[-1]:.1f} s")
        mcpu = memory.get("cpu") or {}
        if mcpu:
            rest = max(0.0, mcpu["machine"] - memory["cpu_s"] - mcpu.get("stand-in", 0.0) - mcpu.get("Label Studio", 0.0))
            print(f"  CPU meanwhile: the child {memory['cpu_s']:.1f} s, Label Studio {mcpu.get('Label Studio', float('nan')):.1f} s, "
                  f"the stand-in {mcpu.get('stand-in', 0.0):.1f} s, everything else {rest:.1f} s")
        print(f"  completed {memory['document'].get('completed')}, stand-in calls {memory['sent']}, "
              f"predictions of bench-memory@v1 in Label Studio {memory['written']}")
        for problem in memory["problems"]:
            print(f"  PROBLEM: {problem}")

    if main_run["profile"] is not None:
        print("\nOwn CPU time by package in the measured run (cProfile with a CPU clock, event-loop thread only; a C function's")
        print("time goes to its caller's package; the profiler's overhead inflates every figure, so read the shares):")
        profiled = by_package(main_run["profile"])
        total = sum(s for _, s in profiled) or 1.0
        for name, seconds in profiled[:15]:
            print(f"  {name:<28} {seconds:7.2f} s  {seconds / total:5.1%}  {seconds / tasks * 1000:6.2f} ms per task")
        text = io.StringIO()
        pstats.Stats(main_run["profile"], stream=text).sort_stats("tottime").print_stats(20)
        print("\ncProfile of the measured run (event-loop thread only, CPU clock), by own time:")
        print(text.getvalue())

    print()
    print(json.dumps({
        "bench": "predict",
        "tasks": tasks,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "wall_s": round(wall, 3),
        "execute_s": round(main_run["execute_s"], 3),
        "ideal_s": round(ideal_s, 2),
        "ratio_to_ideal": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "within_target": within,
        "baseline_s": round(baseline.wall_s, 3),
        "baseline_sampled_tasks": sample,
        "speedup_vs_baseline": round(baseline.wall_s / wall, 2),
        "cpu_ms_per_task": round(cpu_per_task, 3),
        "own_cpu_ms_per_task": round(own_per_task, 3),
        "bare_client_cpu_ms_per_call": round(bare_per_call * 1000, 3),
        "loop_cpu_ms_per_task": round(main_run["loop_cpu_s"] / tasks * 1000, 3),
        "cpu_target_ms": CPU_TARGET_MS,
        "cpu_within_target": cpu_within,
        "memory_tasks": args.memory_tasks,
        "peak_rss_mb": round(peak, 1) if peak is not None else None,
        "memory_target_mb": MEMORY_TARGET_MB,
        "memory_within_target": memory_within if memory else None,
        "other_cpu_s": round(others, 2) if others is not None else None,
        "problems": main_run["problems"] + (memory["problems"] if memory else []),
    }))


def _count_line(main_run: dict[str, Any], tasks: int) -> str:
    bad = [p for p in main_run["problems"] if p.startswith("Label Studio holds")]
    return bad[0].removeprefix("Label Studio holds ") if bad else f"{tasks} (one per task)"


if __name__ == "__main__":
    sys.exit(main())
