"""Benchmark: one predict run over 100,000 tasks (the stand-in at a low latency): wall time, Prompter's
own CPU per task, the peak memory of each process, and Label Studio's time per write at the start of
the run and at its end, when the project holds nearly every prediction.

    .venv/bin/python -m bench.large_run [--tasks 100000] [--latency 0.01] [--concurrency 32]

Sets up, once, unmeasured: a SQLite store in a scratch folder, a Label Studio of its own (or the one
in LABEL_STUDIO_URL), the stand-in model in a child process answering every call after ``--latency``
seconds, one project of ``--tasks`` different short reviews, and a warm-up run of a few tasks in
another project. Then the run, as the Predict page starts it (``predict.scope``, ``predict.start``)
and as its worker works it (``runs.execute`` in this process), timed.

Measured: the wall time; this process's CPU (every thread) per task; the peak RSS of this process
during the run (the kernel's high-water mark, reset at the start), of Label Studio's processes and of
the stand-in's; each Label Studio call the engine makes (export of a page of tasks, import of a chunk
of predictions, the read of the predictions of tasks written), timed by a pass-through wrapper; and
the import time per chunk over the first and the last tenth of the run, whose ratio says whether a
write gets slower as the project grows. Checked (a PROBLEM line otherwise): completed, one ok item per
task, every item written, one call per task at the stand-in, one prediction of the version per task
in Label Studio. Prints a table and one JSON line; the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
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
    number,
    reset_peak_rss,
    scratch_setup,
    status_mb,
    task_text,
)

MODEL = "gpt-4o-mini"
WARM_UP_TASKS = 50
LIMIT_MB = 600  # what the issue asks of each process


class RunClient(TimedClient):
    """The pass-through timer, also timing the task id listing and the reads of written tasks'
    predictions; it carries the run's concurrency."""

    MEASURED = TimedClient.MEASURED + ("task_ids", "predictions_of_tasks")

    def __init__(self, client, concurrency: int):
        super().__init__(client)
        self.concurrency = concurrency


def group_peak_mb(pgid: int | None) -> float | None:
    """The largest peak RSS (VmHWM) among the processes of a process group, in MB."""
    if not pgid:
        return None
    peaks = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid or int(stat.parent.name) == pgid:
                line = next(line for line in (stat.parent / "status").read_text().splitlines() if line.startswith("VmHWM:"))
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=None)


def reset_group_peaks(pgid: int | None) -> None:
    """Start the peak-RSS count of a process group's processes afresh (ours: the same user)."""
    if not pgid:
        return
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError, StopIteration):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid or int(stat.parent.name) == pgid:
                (stat.parent / "clear_refs").write_text("5")


def run_measured(version, client: RunClient, standin: StandInProcess, groups: dict[str, int | None]) -> dict[str, Any]:
    """``predict.scope`` and ``predict.start`` (timed apart), then ``runs.execute`` timed: its wall
    time, this process's CPU, the others' CPU, the calls made, the peak RSS of each process."""
    from core import predict, runs

    started = time.perf_counter()
    chosen = predict.scope(version, client)
    run = predict.start(version, chosen, client, concurrency=client.concurrency, mode="live")
    scoped_s = time.perf_counter() - started
    sent_before = standin.count()
    own_peak_reset = reset_peak_rss()
    for pgid in groups.values():
        reset_group_peaks(pgid)
    others_before, cpu_before = cpu_seconds(groups), time.process_time()
    started_at, started = time.time(), time.perf_counter()
    finished = runs.execute(run.id, client=client)
    wall = time.perf_counter() - started
    cpu, others_after = time.process_time() - cpu_before, cpu_seconds(groups)
    return {
        "run": finished,
        "task_ids": chosen.task_ids,
        "scoped_s": scoped_s,
        "wall_s": wall,
        "started_at": started_at,
        "cpu_s": cpu,
        "others_cpu_s": {name: others_after[name] - others_before[name] for name in others_after if name in others_before},
        "calls": standin.count() - sent_before,
        "peak_mb": {
            "Prompter (this process)": status_mb("VmHWM") if own_peak_reset else None,
            **{name: group_peak_mb(pgid) for name, pgid in groups.items()},
        },
    }


def check(measured: dict[str, Any], ls, project_id: int, version) -> list[str]:
    from core import runs

    run, tasks = measured["run"], len(measured["task_ids"])
    problems = []
    if run.status != "completed":
        problems.append(f"the run ended {run.status}: {run.status_reason}")
    items = runs.items(run.id)
    if len(items) != tasks or len({i.task_id for i in items}) != tasks:
        problems.append(f"{len(items)} items for {tasks} tasks")
    if any(i.status != "ok" for i in items):
        problems.append(f"{sum(i.status != 'ok' for i in items)} items not ok")
    if any(not i.written_to_labelstudio for i in items):
        problems.append(f"{sum(not i.written_to_labelstudio for i in items)} items not written to Label Studio")
    if measured["calls"] != tasks:
        problems.append(f"{measured['calls']} calls at the stand-in for {tasks} tasks")
    held = next((v.prediction_count for v in ls.model_versions(project_id) if v.name == version.model_version), 0)
    if held != tasks:
        problems.append(f"Label Studio holds {held} predictions of {version.model_version} for {tasks} tasks")
    return problems


def writes(client: RunClient, started_at: float) -> dict[str, Any]:
    """The imports of predictions in the order they were sent. Their sizes differ (the run writes its
    first answers at once, then full chunks), so a write's time is compared per prediction: the median
    over the first and the last tenth of the imports, and their ratio; and the full chunks' seconds."""
    imports = sorted((began, end - began, sent) for name, began, end, sent in client.spans if name == "import_predictions" and began >= started_at and sent)
    tenth = max(1, len(imports) // 10)
    per_prediction = [seconds / sent * 1000 for _, seconds, sent in imports]
    first, last = per_prediction[:tenth], per_prediction[-tenth:]
    full = max((sent for _, _, sent in imports), default=0)
    full_seconds = [seconds for _, seconds, sent in imports if sent == full]
    full_tenth = max(1, len(full_seconds) // 10)
    return {
        "imports": len(imports),
        "predictions_sent": sum(sent for _, _, sent in imports),
        "ms_per_prediction_first_tenth": statistics.median(first) if first else None,
        "ms_per_prediction_last_tenth": statistics.median(last) if last else None,
        "last_over_first": statistics.median(last) / statistics.median(first) if first and statistics.median(first) else None,
        "full_chunk": full,
        "full_chunk_s_first_tenth": statistics.median(full_seconds[:full_tenth]) if full_seconds else None,
        "full_chunk_s_last_tenth": statistics.median(full_seconds[-full_tenth:]) if full_seconds else None,
        "import_seconds_and_size": [(round(seconds, 3), sent) for _, seconds, sent in imports],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks of the run (default 100000)")
    parser.add_argument("--latency", type=float, default=0.01, help="seconds the stand-in takes to answer a call (default 0.01)")
    parser.add_argument("--concurrency", type=int, default=32, help="the run's concurrency (default 32)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.latency < 0 or not 1 <= args.concurrency <= 256:
        parser.error("--tasks must be at least 1, --latency 0 or more, --concurrency 1 to 256")
    return in_scratch_folder(lambda workdir: _measure(args, workdir))


def _measure(args: argparse.Namespace, workdir: Path) -> int:
    with scratch_setup(workdir, args.latency) as scratch:
        from core import pricing, prompts

        ls, where, standin = scratch.ls, scratch.where, scratch.standin
        groups = {"Label Studio": scratch.ls_group, "stand-in": standin.process.pid}
        projects: list[int] = []

        def project(name: str, count: int) -> int:
            started = time.perf_counter()
            made = ls.create_project(f"bench large run {name} {int(time.time())}", LABEL_CONFIG)
            projects.append(made.id)
            import_texts(ls, made.id, [task_text(name, n) for n in range(count)])
            print(f"Project {made.id} ({name}): {count} tasks imported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            return made.id

        try:
            large = project("large", args.tasks)
            warm = project("warm-up", WARM_UP_TASKS)
            pricing.list_price(MODEL)
            print(f"Warm-up: {WARM_UP_TASKS} tasks ...", file=sys.stderr, flush=True)
            run_measured(prompts.create(warm, "bench-warm-up", template=TEMPLATE, controls=["sentiment"], provider_key="bench", model=MODEL), RunClient(ls, args.concurrency), standin, groups)
            version = prompts.create(large, "bench-large", template=TEMPLATE, controls=["sentiment"], provider_key="bench", model=MODEL)
            print(f"The run: {args.tasks} tasks at concurrency {args.concurrency}, the stand-in answering after {args.latency * 1000:.0f} ms ...", file=sys.stderr, flush=True)
            client = RunClient(ls, args.concurrency)
            measured = run_measured(version, client, standin, groups)
            measured["problems"] = check(measured, ls, large, version)
            measured["writes"] = writes(client, measured["started_at"])
        finally:
            for project_id in projects:
                with contextlib.suppress(Exception):
                    ls.delete_project(project_id)
    _report(args, where, measured, client)
    return 0


def _report(args, where: str, measured: dict[str, Any], client: RunClient) -> None:
    run, tasks, w = measured["run"], len(measured["task_ids"]), measured["writes"]
    print(f"\nA predict run over {tasks} tasks, concurrency {args.concurrency}, the stand-in at {args.latency * 1000:.0f} ms; Label Studio {where}.")
    print(f"Run {run.id} ended {run.status} ({run.done} done, {run.failed} failed). Listing the task ids and starting it took {measured['scoped_s']:.1f} s.\n")
    print(grid(
        ("", "wall s", "tasks/s", "own CPU s", "own CPU ms/task", "LS CPU s", "stand-in CPU s"),
        [(
            "the run", number(measured["wall_s"], 1), number(tasks / measured["wall_s"], 1), number(measured["cpu_s"], 1),
            number(measured["cpu_s"] / tasks * 1000, 2), number(measured["others_cpu_s"].get("Label Studio"), 1), number(measured["others_cpu_s"].get("stand-in"), 1),
        )],
    ))
    print()
    peaks = measured["peak_mb"]
    print(grid(("process", "peak RSS MB", f"under {LIMIT_MB} MB"), [(name, number(mb, 0), "" if mb is None else ("yes" if mb < LIMIT_MB else "NO")) for name, mb in peaks.items()]))
    print()
    print(grid(
        ("Label Studio call", "calls", "seconds", "ms per call"),
        [(name, client.calls[name], number(client.seconds[name], 1), number(client.seconds[name] / client.calls[name] * 1000, 1)) for name in sorted(client.calls)],
    ))
    print(f"\nImports of predictions: {w['imports']} ({w['predictions_sent']} predictions). Per prediction (median): "
          f"{number(w['ms_per_prediction_first_tenth'], 2)} ms over the first tenth of the imports, {number(w['ms_per_prediction_last_tenth'], 2)} ms "
          f"over the last tenth: last / first = {number(w['last_over_first'], 2)}. An import of a full chunk of {w['full_chunk']}: "
          f"{number(w['full_chunk_s_first_tenth'], 3)} s at the start, {number(w['full_chunk_s_last_tenth'], 3)} s at the end (medians of a tenth).")
    for problem in measured["problems"]:
        print(f"PROBLEM: {problem}")
    print(json.dumps({
        "benchmark": "large_run",
        "tasks": tasks,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "status": run.status,
        "wall_s": round(measured["wall_s"], 2),
        "own_cpu_ms_per_task": round(measured["cpu_s"] / tasks * 1000, 3),
        "others_cpu_s": {k: round(v, 1) for k, v in measured["others_cpu_s"].items()},
        "peak_rss_mb": {k: None if v is None else round(v, 1) for k, v in peaks.items()},
        "label_studio_calls": {name: {"calls": client.calls[name], "seconds": round(client.seconds[name], 2)} for name in client.calls},
        "writes": {k: v for k, v in w.items() if k != "import_seconds_and_size"},
        "import_seconds_and_size": w["import_seconds_and_size"],
        "problems": measured["problems"],
    }))


if __name__ == "__main__":
    sys.exit(main())
