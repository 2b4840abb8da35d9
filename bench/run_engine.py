"""Benchmark: the run engine over many tasks against a model that answers after a fixed latency.

    .venv/bin/python -m bench.run_engine [--tasks 2000] [--latency 0.2] [--concurrency 32]

Measures, in one process run and against one Label Studio and one stand-in model:

- engine: ``runs.execute`` of a run of ``--tasks`` tasks at ``--concurrency``, wall time around the
  call (fetching the tasks from Label Studio, the calls, storing every item, writing every
  prediction back to Label Studio);
- baseline: one call at a time, as the simplest script would do it: a plain loop over
  ``--baseline-tasks`` tasks sending the same requests with the synchronous OpenAI client, wall time
  extrapolated per task to ``--tasks`` (the loop has no fixed cost, so per task is exact);
- for information, the engine itself at concurrency 1 over another ``--baseline-tasks`` tasks, also
  extrapolated per task (this one includes the run's fixed costs, multiplied by the extrapolation);
- ideal: tasks x latency / concurrency.

Every measured call is a real call: each part has its own task texts and the store starts empty, so
nothing is answered from the engine's cache (checked: the stand-in's request count and the items'
``from_cache``). Prints a table and one JSON line; the exit code is 0 whether or not the target is met.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import (
    in_scratch_folder,
    IMPORT_CHUNK,
    LABEL_CONFIG,
    TEMPLATE,
    Measured,
    StandInProcess,
    TimedClient,
    _aware,
    cpu_seconds,
    percentile,
    scratch_setup,
    table,
    task_text,
)

TARGET_RATIO = 1.2


# -- measurements -----------------------------------------------------------------------------


def engine_run(version, task_ids: list[int], concurrency: int, client: TimedClient, standin: StandInProcess, *, profile: bool, label_studio_group: int | None = None) -> dict[str, Any]:
    """One run through the engine: wall time, phases from the items' times, and checks that it was real."""
    from core import runs

    run = runs.create(version, task_ids, kind="predict", label_config=LABEL_CONFIG, concurrency=concurrency)
    sent_before = standin.count()
    profiler = cProfile.Profile() if profile else None
    groups = {"stand-in": standin.process.pid, "Label Studio": label_studio_group}
    cpu_before, process_before, thread_before = cpu_seconds(groups), time.process_time(), time.thread_time()
    began_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    finished = runs.execute(run.id, client=client)  # its event loop runs in this thread
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - started
    ended_at = datetime.now(timezone.utc)
    cpu_after = cpu_seconds(groups)

    items = runs.items(run.id)
    sent = standin.count() - sent_before
    problems = []
    if finished.status != "completed" or finished.done != len(task_ids):
        problems.append(f"run {finished.status}: {finished.done} done, {finished.failed} failed ({finished.status_reason})")
    if sent != len(task_ids):
        problems.append(f"the stand-in received {sent} calls for {len(task_ids)} tasks")
    if any(item.from_cache for item in items):
        problems.append(f"{sum(i.from_cache for i in items)} items came from the cache")
    saved = sorted(_aware(item.created_at) for item in items)
    return {
        "run": finished,
        "began_at": began_at.timestamp(),
        "saved_at": [moment.timestamp() for moment in saved],
        "wall_s": wall,
        "sent": sent,
        "problems": problems,
        "to_first_item_s": (saved[0] - began_at).total_seconds() if saved else None,
        "calls_phase_s": (saved[-1] - saved[0]).total_seconds() if saved else None,
        "after_last_item_s": (ended_at - saved[-1]).total_seconds() if saved else None,
        "latency_ms": sorted(item.latency_ms for item in items if item.latency_ms is not None),
        "profile": profiler,
        "loop_cpu_s": time.thread_time() - thread_before,
        "process_cpu_s": time.process_time() - process_before,
        "cpu": {name: cpu_after[name] - cpu_before[name] for name in cpu_after if name in cpu_before},
    }


def sequential_loop(version, texts: list[str], key) -> float:
    """The plain one-call-at-a-time loop: the same requests, the synchronous OpenAI client."""
    from core import calls, labeling, messages, providers

    targets = labeling.read(LABEL_CONFIG)
    schema = labeling.schema(targets, version.controls)
    requests = [calls.request(version, key, messages.build(version, targets, {"text": text}), schema) for text in texts]
    client = providers.client(key, timeout=60.0, max_retries=0)
    started = time.perf_counter()
    for request in requests:
        reply = calls.ask(client, request)
        if not reply.ok:
            raise RuntimeError(f"a baseline call failed: {reply.error}")
    wall = time.perf_counter() - started
    client.close()
    return wall


# -- report -----------------------------------------------------------------------------------


def timeline(began: float, saved: list[float], spans: list[tuple[str, float, float, int]], ideal_per_s: float, step: float = 0.5) -> str:
    end = max(saved + [e for _, _, e, _ in spans])
    lines, t = [], began
    while t < end:
        count = sum(t <= moment < t + step for moment in saved)
        busy = sorted({name for name, s, e, _ in spans if s < t + step and e > t})
        bar = "#" * round(count / (ideal_per_s * step) * 40)
        lines.append(f"  {t - began:6.1f} s {count:4d} {bar:<44} {' '.join(busy)}")
        t += step
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks in the measured run (default 2000)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the stand-in takes to answer each call (default 0.2)")
    parser.add_argument("--concurrency", type=int, default=32, help="the measured run's concurrency (default 32)")
    parser.add_argument("--baseline-tasks", type=int, default=50, help="tasks the one-at-a-time baselines run, extrapolated (default 50)")
    parser.add_argument("--profile", action="store_true", help="profile the measured run with cProfile (event-loop thread) and print the top functions")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.baseline_tasks < 1 or args.latency <= 0 or not 1 <= args.concurrency <= 256:
        parser.error("--tasks and --baseline-tasks must be at least 1, --latency above 0, --concurrency 1 to 256")
    sample = min(args.baseline_tasks, args.tasks)

    return in_scratch_folder(lambda workdir: _measure(args, sample, workdir))


def _measure(args: argparse.Namespace, sample: int, workdir: Path) -> int:
    with scratch_setup(workdir, args.latency) as scratch:
        from core import prompts
        from core.labelstudio import NewTask

        ls, where, ls_group, standin, key = scratch.ls, scratch.where, scratch.ls_group, scratch.standin, scratch.key

        started = time.perf_counter()
        project = ls.create_project(f"bench run_engine {int(time.time())}", LABEL_CONFIG)
        texts = {
            "measured": [task_text("measured", n) for n in range(args.tasks)],
            "engine-c1": [task_text("engine-c1", n) for n in range(sample)],
        }
        ids: dict[str, list[int]] = {}
        for part, part_texts in texts.items():
            ids[part] = []
            for start in range(0, len(part_texts), IMPORT_CHUNK):
                ids[part] += ls.import_tasks(project.id, [NewTask({"text": t}) for t in part_texts[start : start + IMPORT_CHUNK]])
        print(f"Project {project.id}: {sum(map(len, ids.values()))} tasks imported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        # One prompt per engine run, so neither run finds the other's predictions to replace.
        version, version_c1 = (
            prompts.create(project.id, name, template=TEMPLATE, controls=["sentiment"], provider_key="bench", model="gpt-4o-mini")
            for name in ("bench", "bench-c1")
        )

        try:
            print(f"Baseline: {sample} calls one at a time ...", file=sys.stderr, flush=True)
            loop_s = sequential_loop(version, [task_text("loop", n) for n in range(sample)], key)

            print(f"Engine at concurrency 1 over {sample} tasks ...", file=sys.stderr, flush=True)
            c1 = engine_run(version_c1, ids["engine-c1"], 1, TimedClient(ls), standin, profile=False, label_studio_group=ls_group)

            print(f"Engine at concurrency {args.concurrency} over {args.tasks} tasks ...", file=sys.stderr, flush=True)
            timed = TimedClient(ls)
            main_run = engine_run(version, ids["measured"], args.concurrency, timed, standin, profile=args.profile, label_studio_group=ls_group)
            predictions = sum(p.model_version == version.model_version for p in ls.predictions(project.id))
        finally:
            with contextlib.suppress(Exception):
                ls.delete_project(project.id)

    ideal_s = args.tasks * args.latency / args.concurrency
    scale = args.tasks / sample
    wall = main_run["wall_s"]
    ratio = wall / ideal_s
    within = ratio <= TARGET_RATIO and not main_run["problems"]
    baseline = Measured("baseline: one call at a time (plain loop)", args.tasks, 1, loop_s * scale,
                        notes=[f"measured over {sample} calls in {loop_s:.2f} s, extrapolated per task x{scale:g}"])
    engine_notes = [
        f"{'WITHIN' if within else 'MISSES'} the target of {TARGET_RATIO}x ideal ({ratio:.2f}x); "
        f"{baseline.wall_s / wall:.1f}x faster than one call at a time",
    ]
    cpu = main_run["cpu"]
    if cpu:
        others = max(0.0, cpu["machine"] - main_run["process_cpu_s"] - cpu.get("stand-in", 0.0) - cpu.get("Label Studio", 0.0))
        if others > 0.25 * wall:
            engine_notes.append(f"other processes used {others / wall:.1f} of the {os.cpu_count()} CPUs meanwhile: a pessimistic figure")
    rows = [
        Measured("ideal (tasks x latency / concurrency)", args.tasks, args.concurrency, ideal_s),
        Measured("engine", args.tasks, args.concurrency, wall, notes=engine_notes),
        baseline,
        Measured("engine at concurrency 1 (for information)", args.tasks, 1, c1["wall_s"] * scale,
                 notes=[f"measured over {sample} tasks in {c1['wall_s']:.2f} s, extrapolated per task x{scale:g} (its fixed costs too)"]),
    ]

    print()
    print(f"Run engine: {args.tasks} tasks, stand-in answering after {args.latency * 1000:.0f} ms, concurrency {args.concurrency}; "
          f"Label Studio {where}; {os.cpu_count()} CPUs")
    print()
    print(table(rows, ideal_s))
    print()
    lat = main_run["latency_ms"] or [float("nan")]
    if not main_run["saved_at"]:
        main_run.update(to_first_item_s=float("nan"), calls_phase_s=float("nan"), after_last_item_s=float("nan"))
    print("Where the engine's time went:")
    print(f"  start of execute -> first item stored   {main_run['to_first_item_s']:7.2f} s")
    calls_s = main_run["calls_phase_s"]
    pace = (args.tasks - 1) / calls_s if calls_s else float("nan")
    print(f"  first item -> last item stored           {calls_s:7.2f} s  ({pace:.0f} items/s; ideal {args.concurrency / args.latency:.0f}/s)")
    print(f"  last item stored -> execute returned     {main_run['after_last_item_s']:7.2f} s")
    print(f"  call latency seen by the engine (ms)     p50 {percentile(lat, 0.5):.0f}, p90 {percentile(lat, 0.9):.0f}, p99 {percentile(lat, 0.99):.0f}, max {lat[-1]:.0f}")
    cpu = main_run["cpu"]
    print(f"  CPU of the engine's event-loop thread    {main_run['loop_cpu_s']:7.2f} s  (whole engine process {main_run['process_cpu_s']:.2f} s)")
    if cpu:
        ours = main_run["process_cpu_s"] + cpu.get("stand-in", 0.0) + cpu.get("Label Studio", 0.0)
        print(f"  CPU of the stand-in                      {cpu['stand-in']:7.2f} s")
        if "Label Studio" in cpu:
            print(f"  CPU of Label Studio                      {cpu['Label Studio']:7.2f} s")
        rest = "everything else on the machine" if "Label Studio" in cpu else "the rest, Label Studio included"
        print(f"  CPU of {rest:<34}{max(0.0, cpu['machine'] - ours):7.2f} s  "
              f"(the machine's {os.cpu_count()} CPUs were {cpu['machine'] / (wall * os.cpu_count()):.0%} busy in all)")
    last = main_run["saved_at"][-1] if main_run["saved_at"] else None
    imports = [(s, e, n) for name, s, e, n in timed.spans if name == "import_predictions"]
    if last is not None and imports:
        running = [(s, e, n) for s, e, n in imports if s <= last < e]
        later = [(s, e, n) for s, e, n in imports if s > last]
        print(f"  after the last item: {len(running)} prediction import(s) still running ({sum(e - last for _, e, _ in running):.2f} s of it left), "
              f"then {len(later)} more of {sum(n for *_, n in later)} predictions ({sum(e - s for s, e, _ in later):.2f} s)")
        sizes = sorted(n for *_, n in imports)
        print(f"  prediction imports: {len(imports)} of {sizes[0]}..{sizes[-1]} predictions, "
              f"{min(e - s for s, e, _ in imports):.2f}..{max(e - s for s, e, _ in imports):.2f} s each")
    for name in sorted(timed.seconds):
        print(f"  Label Studio {name:<24} {timed.seconds[name]:7.2f} s in {timed.calls[name]} calls (in worker threads)")
    print(f"  its predictions in Label Studio after    {predictions}")
    for problem in main_run["problems"] + [f"engine at concurrency 1: {p}" for p in c1["problems"]]:
        print(f"  PROBLEM: {problem}")

    if args.profile:
        print("\nTimeline of the measured run (items stored per 0.5 s; Label Studio calls running then):")
        print(timeline(main_run["began_at"], main_run["saved_at"], timed.spans, args.concurrency / args.latency))

    if main_run["profile"] is not None:
        text = io.StringIO()
        pstats.Stats(main_run["profile"], stream=text).sort_stats("tottime").print_stats(25)
        print("\ncProfile of the measured run (event-loop thread only), by own time:")
        print(text.getvalue())

    print()
    print(json.dumps({
        "bench": "run_engine",
        "tasks": args.tasks,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "wall_s": round(wall, 3),
        "ideal_s": round(ideal_s, 3),
        "ratio_to_ideal": round(ratio, 3),
        "baseline_s": round(baseline.wall_s, 3),
        "baseline_sampled_tasks": sample,
        "speedup_vs_baseline": round(baseline.wall_s / wall, 2),
        "engine_c1_s": round(c1["wall_s"] * scale, 3),
        "target_ratio": TARGET_RATIO,
        "within_target": within,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
