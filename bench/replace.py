"""Benchmark: a prediction re-run that replaces every task's prediction, against the first run that
wrote them and against replacing them one task at a time.

    .venv/bin/python -m bench.replace [--tasks 5000] [--latency 0.25] [--concurrency 32] [--baseline-tasks 40] [--sweep 2,4,8,16]

Measures, in one process run, against one Label Studio and the stand-in model in a child process, one
project of ``--tasks`` tasks and one prompt version:

- first run: ``predict.scope`` + ``predict.start(cache="fresh")`` + ``runs.execute``; no task holds a
  prediction of the version yet, so every answer goes in by bulk import;
- re-run, changed answers: the same version over the same tasks, the stand-in now answering another
  label for every task, so every prediction is updated in place (``PATCH /api/predictions/{id}/``,
  ``REPLACE_AT_ONCE`` at a time);
- re-run, same answers: once more with the same labels: every answer equals the prediction it would
  replace, so nothing is written;
- baseline, one task at a time: per task one call to the model (render, ask, parse), then one PATCH of
  that task's prediction (``label_studio_sdk``'s ``predictions.update``), the next task after that;
  over ``--baseline-tasks`` tasks of the same project and extrapolated per task to ``--tasks``;
- with ``--sweep 2,4,8,16``: more changed-answer re-runs, one per value of ``REPLACE_AT_ONCE``.

After each run Label Studio must hold exactly one prediction of the version per task, with the label
the stand-in answered, the stand-in must have had one call per task (the cache is off), and the
re-runs must have sent the expected PATCHes (every task, or none). Prints a table and one JSON line;
the exit code is 0 whether or not the target (the changed-answer re-run at least 10x faster than one
task at a time) is met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
    percentile,
    table,
    task_text,
)
from bench.predict import other_suites

TARGET_SPEEDUP = 10.0
MODEL = "gpt-4o-mini"
LABELS = ("Positive", "Negative", "Neutral")  # the config's choices in order: the stand-in's ``choice N`` picks LABELS[N % 3]


class ReplaceClient(TimedClient):
    """The pass-through timer, also timing the task id listing and the in-place updates. Calls made
    from several threads at once are read from ``spans`` (appended atomically), not the running sums."""

    MEASURED = TimedClient.MEASURED + ("task_ids", "update_prediction")


# -- the baseline: one task at a time ------------------------------------------------------------


def one_at_a_time(version, tasks, prediction_ids: dict[int, int], key, url: str, token: str) -> dict[str, float]:
    """Per task: render, one call, parse into regions, then one PATCH of its prediction."""
    from label_studio_sdk import LabelStudio

    from core import calls, labeling, messages, providers

    targets = labeling.read(LABEL_CONFIG)
    schema = labeling.schema(targets, version.controls)
    model = providers.client(key, timeout=60.0, max_retries=0)
    sdk = LabelStudio(base_url=url, api_key=token)
    call_s = patch_s = 0.0
    started = time.perf_counter()
    for task in tasks:
        began = time.perf_counter()
        reply = calls.ask(model, calls.request(version, key, messages.build(version, targets, task.data), schema))
        if not reply.ok:
            raise RuntimeError(f"a baseline call failed: {reply.error}")
        answer = labeling.to_regions(targets, version.controls, reply.raw, task.data)
        answered = time.perf_counter()
        sdk.predictions.update(id=prediction_ids[task.id], result=answer.regions, score=reply.confidence)
        call_s, patch_s = call_s + answered - began, patch_s + time.perf_counter() - answered
    wall = time.perf_counter() - started
    model.close()
    return {"wall_s": wall, "call_s": call_s, "patch_s": patch_s}


# -- an engine run ------------------------------------------------------------------------------


def engine_run(name: str, version, ls, standin: StandInProcess, choice: int, *, concurrency: int, label_studio_group: int | None) -> dict[str, Any]:
    """scope + start (cache off) + execute, as the Predict button does, with the stand-in answering
    LABELS[choice]; wall time, phases, Label Studio calls, CPU."""
    from core import predict, runs

    standin.choose(choice)
    client = ReplaceClient(ls)
    sent_before = standin.count()
    groups = {"stand-in": standin.process.pid, "Label Studio": label_studio_group}
    cpu_before, process_before = cpu_seconds(groups), time.process_time()
    began_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    chosen = predict.scope(version, client)
    run = predict.start(version, chosen, client, concurrency=concurrency, cache="fresh")
    executing = time.perf_counter()
    finished = runs.execute(run.id, client=client)
    ended = time.perf_counter()
    ended_at = datetime.now(timezone.utc)
    process_cpu, cpu_after = time.process_time() - process_before, cpu_seconds(groups)

    items = runs.items(run.id)
    sent = standin.count() - sent_before
    problems = []
    if finished.status != "completed" or finished.done != len(chosen.task_ids):
        problems.append(f"{name}: run {finished.status}: {finished.done} done, {finished.failed} failed ({finished.status_reason})")
    if sent != len(chosen.task_ids):
        problems.append(f"{name}: the stand-in received {sent} calls for {len(chosen.task_ids)} tasks")
    if any(item.from_cache for item in items):
        problems.append(f"{name}: {sum(i.from_cache for i in items)} items came from the cache")
    saved = sorted(_aware(item.created_at).timestamp() for item in items)
    last_saved = saved[-1] if saved else ended_at.timestamp()
    patches = sorted((b, e) for n, b, e, _ in client.spans if n == "update_prediction")
    imports = [(b, e, k) for n, b, e, k in client.spans if n == "import_predictions"]
    return {
        "name": name,
        "choice": choice,
        "label": LABELS[choice % len(LABELS)],
        "replace_at_once": runs.REPLACE_AT_ONCE,
        "run_id": run.id,
        "tasks": len(chosen.task_ids),
        "wall_s": ended - started,
        "setup_s": executing - started,
        "execute_s": ended - executing,
        "sent": sent,
        "problems": problems,
        "to_first_item_s": (saved[0] - began_at.timestamp()) if saved else float("nan"),
        "calls_phase_s": (saved[-1] - saved[0]) if saved else float("nan"),
        "after_last_item_s": ended_at.timestamp() - last_saved,
        "latency_ms": sorted(item.latency_ms for item in items if item.latency_ms is not None) or [float("nan")],
        "patches": len(patches),
        "patch_ms": sorted((e - b) * 1000 for b, e in patches) or [float("nan")],
        "patch_span_s": (max(e for _, e in patches) - patches[0][0]) if patches else 0.0,
        "patches_after_last_item": sum(1 for b, e in patches if e > last_saved),
        "imports": len(imports),
        "imported": sum(k for _, _, k in imports),
        "import_s": sum(e - b for b, e, _ in imports),
        "calls": {n: (sum(e - b for m, b, e, _ in client.spans if m == n), sum(1 for m, *_ in client.spans if m == n))
                  for n in sorted({m for m, *_ in client.spans})},
        "process_cpu_s": process_cpu,
        "cpu": {k: cpu_after[k] - cpu_before[k] for k in cpu_after if k in cpu_before},
    }


def check_predictions(ls, project_id: int, model_version: str, task_ids: list[int], labels: dict[int, str], what: str) -> tuple[list[str], dict[int, int]]:
    """Exactly one prediction of ``model_version`` per task, saying ``labels[task]``: the problems
    found, and each task's prediction id."""
    by_task: dict[int, list] = {}
    for p in ls.predictions(project_id):
        if p.model_version == model_version:
            by_task.setdefault(p.task_id, []).append(p)
    problems = []
    none = [t for t in task_ids if t not in by_task]
    doubled = [t for t in task_ids if len(by_task.get(t, [])) > 1]
    stray = sorted(set(by_task) - set(task_ids))
    wrong = [t for t in task_ids if len(by_task.get(t, [])) == 1 and _label(by_task[t][0].result) != labels[t]]
    total = sum(len(v) for v in by_task.values())
    if none or doubled or stray or wrong or total != len(task_ids):
        problems.append(
            f"after {what}: Label Studio holds {total} predictions of {model_version} for {len(task_ids)} tasks: "
            f"{len(none)} tasks without one, {len(doubled)} with more than one, {len(stray)} on other tasks, "
            f"{len(wrong)} not saying the label answered"
            + (f" (task {wrong[0]}: {by_task[wrong[0]][0].result!r}, expected {labels[wrong[0]]})" if wrong else "")
        )
    counted = next((v.prediction_count for v in ls.model_versions(project_id) if v.name == model_version), 0)
    if counted != len(task_ids):
        problems.append(f"after {what}: Label Studio's model-version count says {counted} predictions of {model_version} for {len(task_ids)} tasks")
    return problems, {t: v[0].id for t, v in by_task.items()}


def _label(result: list[dict[str, Any]]) -> str | None:
    choices = [c for region in result or [] for c in (region.get("value") or {}).get("choices", [])]
    return choices[0] if len(choices) == 1 else None


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replace", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks in the project, predicted by every run (default 5000)")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the stand-in takes to answer each call (default 0.25)")
    parser.add_argument("--concurrency", type=int, default=32, help="the runs' concurrency (default 32)")
    parser.add_argument("--baseline-tasks", type=int, default=40, help="tasks the one-at-a-time baseline replaces, extrapolated (default 40)")
    parser.add_argument("--sweep", default="", help="comma-separated REPLACE_AT_ONCE values, one more changed-answer re-run each (default none)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.baseline_tasks < 1 or args.latency <= 0:
        parser.error("--tasks and --baseline-tasks must be at least 1, --latency above 0")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be 1 to 256")
    try:
        args.sweep = [int(v) for v in args.sweep.split(",") if v.strip()]
    except ValueError:
        parser.error("--sweep takes whole numbers separated by commas, e.g. 2,4,8,16")
    if any(v < 1 for v in args.sweep):
        parser.error("--sweep values must be at least 1")

    return in_scratch_folder(lambda workdir: _measure(args, workdir))


def _measure(args: argparse.Namespace, workdir: Path) -> int:
    os.environ["PROMPTER_HOME"] = str(workdir / "home")
    os.environ.pop("PROMPTER_DATABASE_URL", None)

    from core import keys, prompts, runs, store
    from core.labelstudio import LabelStudioClient

    sample = min(args.baseline_tasks, args.tasks)
    suites_at_start = other_suites()
    engine_default = runs.REPLACE_AT_ONCE
    store.forget_engines()
    with label_studio(workdir) as (url, token, where, ls_group), StandInProcess(args.latency) as standin:
        os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"] = url, token
        ls = LabelStudioClient(url, token)
        key = keys.add("bench", "openai-compatible", base_url=standin.base_url)
        started = time.perf_counter()
        project_id = ls.create_project(f"bench replace {int(time.time())}", LABEL_CONFIG).id
        try:
            task_ids = import_texts(ls, project_id, [task_text("replace", n) for n in range(args.tasks)])
            print(f"Project {project_id}: {args.tasks} tasks imported in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            version = prompts.create(project_id, "bench-replace", template=TEMPLATE, controls=["sentiment"], provider_key="bench", model=MODEL)
            problems: list[str] = []

            def measured(name: str, choice: int) -> dict[str, Any]:
                print(f"{name}: {args.tasks} tasks at concurrency {args.concurrency}, the stand-in answering "
                      f"{LABELS[choice % 3]} (REPLACE_AT_ONCE {runs.REPLACE_AT_ONCE}) ...", file=sys.stderr, flush=True)
                found = engine_run(name, version, ls, standin, choice, concurrency=args.concurrency, label_studio_group=ls_group)
                checked, _ids = check_predictions(ls, project_id, version.model_version, task_ids, dict.fromkeys(task_ids, found["label"]), name)
                found["problems"] += checked
                problems.extend(found["problems"])
                return found

            first = measured("first run", 0)
            changed = measured("re-run, changed answers", 1)
            same = measured("re-run, same answers", 1)
            if first["imported"] != args.tasks or first["patches"]:
                problems.append(f"first run: {first['imported']} predictions imported and {first['patches']} PATCHes for {args.tasks} new ones")
            if changed["patches"] != args.tasks or changed["imports"]:
                problems.append(f"re-run, changed answers: {changed['patches']} PATCHes and {changed['imports']} imports for {args.tasks} replaced predictions")
            if same["patches"] or same["imports"]:
                problems.append(f"re-run, same answers: {same['patches']} PATCHes and {same['imports']} imports where nothing changed")

            sweep, choice = [], 1
            for at_once in args.sweep:
                runs.REPLACE_AT_ONCE, choice = at_once, choice + 1
                try:
                    found = measured(f"sweep, REPLACE_AT_ONCE {at_once}", choice)
                finally:
                    runs.REPLACE_AT_ONCE = engine_default
                if found["patches"] != args.tasks:
                    problems.append(f"{found['name']}: {found['patches']} PATCHes for {args.tasks} replaced predictions")
                sweep.append(found)

            print(f"Baseline: {sample} tasks replaced one at a time ...", file=sys.stderr, flush=True)
            choice += 1
            standin.choose(choice)
            picked = task_ids[:sample]
            baseline_tasks = list(ls.tasks(project_id, ids=picked))
            _, prediction_ids = check_predictions(ls, project_id, version.model_version, task_ids, dict.fromkeys(task_ids, LABELS[(choice - 1) % 3]), "the last run")
            sent_before = standin.count()
            loop = one_at_a_time(version, baseline_tasks, prediction_ids, key, url, token)
            loop["sent"] = standin.count() - sent_before
            picked_set = set(picked)
            expected = {t: (LABELS[choice % 3] if t in picked_set else LABELS[(choice - 1) % 3]) for t in task_ids}
            checked, _ = check_predictions(ls, project_id, version.model_version, task_ids, expected, "the baseline")
            problems.extend(checked)
            if loop["sent"] != sample:
                problems.append(f"baseline: the stand-in received {loop['sent']} calls for {sample} tasks")
            suites_during = other_suites()
        finally:
            with contextlib.suppress(Exception):
                ls.delete_project(project_id)

    _report(args, where, sample, engine_default, first, changed, same, sweep, loop, problems, suites_at_start, suites_during)
    return 0


# -- report -----------------------------------------------------------------------------------


def _report(args, where, sample, at_once, first, changed, same, sweep, loop, problems, suites_at_start, suites_during) -> None:
    tasks = args.tasks
    ideal_s = tasks * args.latency / args.concurrency
    scale = tasks / sample
    baseline_s = loop["wall_s"] * scale
    speedup = baseline_s / changed["wall_s"]
    within = speedup >= TARGET_SPEEDUP and not problems
    patch_rate = changed["patches"] / changed["patch_span_s"] if changed["patch_span_s"] else float("nan")
    write_ms = changed["patch_span_s"] / changed["patches"] * 1000 if changed["patches"] else float("nan")
    ls_patch_ms = _ls_cpu_per_patch(changed, same)
    per_task_alone = loop["wall_s"] / sample
    # Label Studio's CPU per PATCH bounds the re-run from below (one Label Studio process, its Python
    # code under one lock), so it bounds the speed-up from above: one task at a time / (tasks x that CPU).
    bound = per_task_alone / (ls_patch_ms / 1000) if ls_patch_ms and ls_patch_ms == ls_patch_ms else float("nan")

    def busy(run) -> list[str]:
        others = _others(run)
        return [f"other processes used {others / run['wall_s']:.1f} of the {os.cpu_count()} CPUs meanwhile: a pessimistic figure"] if others > 0.25 * run["wall_s"] else []

    rows = [
        Measured("ideal (tasks x latency / concurrency)", tasks, args.concurrency, ideal_s),
        Measured("first run: every prediction new (bulk import)", tasks, args.concurrency, first["wall_s"],
                 notes=[f"{first['imported']} predictions imported in {first['imports']} requests ({first['import_s']:.2f} s)"] + busy(first)),
        Measured("re-run, changed answers: every one replaced", tasks, args.concurrency, changed["wall_s"], notes=[
            f"{'WITHIN' if within else 'MISSES'} the target: {speedup:.1f}x faster than one task at a time (target {TARGET_SPEEDUP:g}x); "
            f"{changed['wall_s'] / first['wall_s']:.2f}x the first run",
            f"{changed['patches']} PATCHes, {at_once} at once: {patch_rate:.0f}/s, {write_ms:.1f} ms a prediction; "
            f"each {percentile(changed['patch_ms'], 0.5):.0f} ms (p50), {percentile(changed['patch_ms'], 0.9):.0f} ms (p90)",
            f"Label Studio's CPU per PATCH {ls_patch_ms:.1f} ms (its CPU in this run minus in the same-answer re-run, per PATCH): "
            f"at best {bound:.1f}x faster than one task at a time with Label Studio's whole CPU going to PATCHes",
        ] + busy(changed)),
        Measured("re-run, same answers: nothing written", tasks, args.concurrency, same["wall_s"],
                 notes=[f"{same['patches']} PATCHes, {same['imports']} imports"] + busy(same)),
        Measured("baseline: one task at a time (call + PATCH)", tasks, 1, baseline_s, notes=[
            f"measured over {sample} tasks in {loop['wall_s']:.2f} s, extrapolated per task x{scale:.4g}: per task "
            f"{loop['call_s'] / sample * 1000:.0f} ms the call (render, ask, parse), {loop['patch_s'] / sample * 1000:.0f} ms its PATCH"]),
    ]

    print()
    print(f"Replace: {tasks} tasks, stand-in answering after {args.latency * 1000:.0f} ms, concurrency {args.concurrency}, "
          f"REPLACE_AT_ONCE {at_once}; Label Studio {where}; {os.cpu_count()} CPUs")
    for label, found in (("at the start", suites_at_start), ("at the end", suites_during)):
        if found:
            print(f"  other test suites running {label}: {', '.join(found)}")
    print()
    print(table(rows, ideal_s))

    if sweep:
        print()
        print("Changed-answer re-runs by REPLACE_AT_ONCE (PATCHes at once):")
        print("  at once   wall s   PATCH/s   ms a prediction   PATCH p50 ms   p90 ms   after the last answer s   Label Studio CPU a PATCH ms   others' CPU s")
        for run in sorted([changed, *sweep], key=lambda r: r["replace_at_once"]):
            rate = run["patches"] / run["patch_span_s"] if run["patch_span_s"] else float("nan")
            print(f"  {run['replace_at_once']:7d}  {run['wall_s']:7.2f}  {rate:8.1f}  {1000 / rate if rate else float('nan'):16.1f}  "
                  f"{percentile(run['patch_ms'], 0.5):13.0f}  {percentile(run['patch_ms'], 0.9):7.0f}  {run['after_last_item_s']:24.2f}  "
                  f"{_ls_cpu_per_patch(run, same):27.1f}  {_others(run):13.2f}")

    for run in (first, changed, same):
        lat = run["latency_ms"]
        pace = (tasks - 1) / run["calls_phase_s"] if run["calls_phase_s"] else float("nan")
        cpu = run["cpu"]
        print()
        print(f"Where the time went, {run['name']} ({run['wall_s']:.2f} s):")
        print(f"  start -> first item stored               {run['to_first_item_s']:7.2f} s  (scope + start {run['setup_s']:.2f} s)")
        print(f"  first item -> last item stored           {run['calls_phase_s']:7.2f} s  ({pace:.0f} items/s; ideal {args.concurrency / args.latency:.0f}/s)")
        print(f"  last item stored -> execute returned     {run['after_last_item_s']:7.2f} s"
              + (f"  ({run['patches_after_last_item']} of the {run['patches']} PATCHes ended in it)" if run["patches"] else ""))
        print(f"  call latency seen by the engine (ms)     p50 {percentile(lat, 0.5):.0f}, p90 {percentile(lat, 0.9):.0f}, p99 {percentile(lat, 0.99):.0f}, max {lat[-1]:.0f}")
        for name, (seconds, count) in run["calls"].items():
            extra = f", {count / run['patch_span_s']:.0f}/s over {run['patch_span_s']:.1f} s" if name == "update_prediction" and run["patch_span_s"] else ""
            print(f"  Label Studio {name:<24} {seconds:7.2f} s in {count} calls (summed over threads{extra})")
        if cpu:
            others = _others(run)
            print(f"  CPU: Prompter's process {run['process_cpu_s']:.2f} s, Label Studio {cpu.get('Label Studio', float('nan')):.2f} s, "
                  f"the stand-in {cpu.get('stand-in', 0.0):.2f} s, everything else {others:.2f} s; "
                  f"the machine's {os.cpu_count()} CPUs were {cpu['machine'] / (run['wall_s'] * os.cpu_count()):.0%} busy")
        print(f"  stand-in calls {run['sent']}; predictions of the version in Label Studio after: "
              + ("PROBLEM" if any(p.startswith(f"after {run['name']}") for p in problems) else f"{tasks}, one per task, each saying {run['label']}"))
    for problem in problems:
        print(f"  PROBLEM: {problem}")

    print()
    print(json.dumps({
        "bench": "replace",
        "tasks": tasks,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "replace_at_once": at_once,
        "ideal_s": round(ideal_s, 2),
        "first_run_s": round(first["wall_s"], 3),
        "first_ratio_to_ideal": round(first["wall_s"] / ideal_s, 3),
        "rerun_changed_s": round(changed["wall_s"], 3),
        "rerun_same_s": round(same["wall_s"], 3),
        "one_at_a_time_s": round(baseline_s, 3),
        "baseline_sampled_tasks": sample,
        "speedup_vs_one_at_a_time": round(speedup, 2),
        "target_speedup": TARGET_SPEEDUP,
        "within_target": within,
        "patches": changed["patches"],
        "patches_per_s": round(patch_rate, 1),
        "write_ms_per_prediction": round(write_ms, 2),
        "patch_ms_p50": round(percentile(changed["patch_ms"], 0.5), 1),
        "labelstudio_cpu_ms_per_patch": round(ls_patch_ms, 1),
        "speedup_bound_by_labelstudio_cpu": round(bound, 1),
        "sweep": [{"replace_at_once": r["replace_at_once"], "wall_s": round(r["wall_s"], 3),
                   "patches_per_s": round(r["patches"] / r["patch_span_s"], 1) if r["patch_span_s"] else None} for r in sweep],
        "problems": problems,
    }))


def _ls_cpu_per_patch(run: dict[str, Any], same: dict[str, Any]) -> float:
    """Label Studio's CPU in a replacing run beyond what the same-answer run (same calls, same
    reads, no writes) cost it, per PATCH."""
    if not run["patches"] or "Label Studio" not in run["cpu"] or "Label Studio" not in same["cpu"]:
        return float("nan")
    return (run["cpu"]["Label Studio"] - same["cpu"]["Label Studio"]) / run["patches"] * 1000


def _others(run: dict[str, Any]) -> float:
    cpu = run["cpu"]
    if not cpu:
        return float("nan")
    return max(0.0, cpu["machine"] - run["process_cpu_s"] - cpu.get("stand-in", 0.0) - cpu.get("Label Studio", 0.0))


if __name__ == "__main__":
    sys.exit(main())
