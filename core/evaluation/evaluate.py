"""Evaluations: a version run on a subset of tasks, scored against their ground truth.

``start`` records the run (the run engine executes it); ``report`` scores a run's items; ``summary`` is
the document ``python -m core evaluate`` prints; ``history`` is each version's latest accuracy, the
line that shows a prompt getting better; ``compare_runs`` sets two runs side by side.
"""

from __future__ import annotations

import statistics
from typing import Any

from core import labeling, prompts, runs
from core.evaluation import answers, compare, metrics
from core.evaluation.subsets import Subset, SubsetError
from core.labelstudio import LabelStudioClient
from core.prompts import Version
from core.runs import RunView


def start(version: Version, subset: Subset, label_config: str, *, concurrency: int = runs.DEFAULT_CONCURRENCY, cache: str = "auto") -> RunView:
    return runs.create(
        version, subset.task_ids, kind="evaluate", subset=subset.as_dict(), label_config=label_config, concurrency=concurrency, cache=cache
    )


def outputs(run_id: int) -> list[labeling.Output]:
    """The outputs the run's version fills, as the project's config had them when it ran."""
    targets = labeling.read(runs.label_config(run_id))
    return [targets.output(name) for name in runs.version_of(run_id).controls]


def report(run_id: int) -> metrics.Report:
    """The run's scores, over its items that have a ground truth."""
    scored = [
        metrics.Scored(item.task_id, item.regions if item.status == "ok" else None, item.ground_truth)
        for item in runs.items(run_id)
        if item.ground_truth is not None
    ]
    return metrics.score(outputs(run_id), scored)


def summary(run_id: int) -> dict[str, Any]:
    """Everything `evaluate --json` prints for a run."""
    run = runs.get(run_id)
    found = report(run_id)
    latencies = [i.latency_ms for i in runs.items(run_id) if i.latency_ms is not None and not i.from_cache]
    return run.document() | {
        "scored": found.tasks,
        "accuracy": found.accuracy,
        "completion_rate": run.done / run.total if run.total else 0.0,
        "metrics": {name: control.to_dict() for name, control in found.controls.items()},
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
    }


def history(prompt: str, project_id: int) -> list[dict[str, Any]]:
    """Each version's latest completed evaluation: version, accuracy, run id, subset; oldest first."""
    latest: dict[int, RunView] = {}
    for run in runs.runs(prompt=prompt, project_id=project_id, kind="evaluate"):
        if run.status == "completed" and run.version not in latest:
            latest[run.version] = run
    return [
        {"version": f"v{number}", "accuracy": report(run.id).accuracy, "run_id": run.id, "subset": run.subset.get("description", "")}
        for number, run in sorted(latest.items())
    ]


def previous(run: RunView) -> RunView | None:
    """The latest completed evaluation of the version before this one, on the same subset kind."""
    for other in runs.runs(prompt=run.prompt, project_id=run.project_id, kind="evaluate"):
        if other.version < run.version and other.status == "completed" and other.subset.get("kind") == run.subset.get("kind"):
            return other
    return None


def compare_runs(run_a: int, run_b: int) -> compare.Comparison:
    a, b = runs.get(run_a), runs.get(run_b)
    return compare.compare(_correct_by_task(run_a), _correct_by_task(run_b), label_a=f"v{a.version}", label_b=f"v{b.version}")


def task_rows(run_id: int, client: LabelStudioClient | None = None) -> list[dict[str, Any]]:
    """One row per task: the answer next to the ground truth, right or wrong, and the error."""
    run = runs.get(run_id)
    chosen = outputs(run_id)
    rows = []
    for item in runs.items(run_id):
        predicted = item.regions or []
        truth = item.ground_truth
        matches = answers.matches(chosen, predicted, truth) if truth is not None else None
        rows.append(
            {
                "task": item.task_id,
                "ground truth": "; ".join(answers.shown(o, truth) for o in chosen) if truth is not None else "—",
                "answer": "; ".join(answers.shown(o, predicted) for o in chosen) if item.status == "ok" else "—",
                "correct": None if matches is None else item.status == "ok" and all(matches.values()),
                "failed": item.status != "ok",
                "error": item.error or "",
                "link": client.task_url(run.project_id, item.task_id) if client else "",
            }
        )
    return rows


def _correct_by_task(run_id: int) -> dict[int, bool]:
    found = report(run_id)
    correct = set(found.correct_task_ids)
    return {item.task_id: item.task_id in correct for item in runs.items(run_id) if item.ground_truth is not None}


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[percent - 1], 1)


# -- for the dashboard's Evaluate page ----------------------------------------------------------------


def parse_task_ids(text: str) -> list[int]:
    """Task ids typed as "1,2,3" (spaces allowed)."""
    try:
        return [int(part) for part in text.replace(" ", ",").split(",") if part.strip()]
    except ValueError:
        raise SubsetError(f"tasks: {text.strip()!r} is not a list of task ids; type them like 1,2,3.") from None


def filter_rows(rows: list[dict[str, Any]], *, wrong_only: bool = False, failed_only: bool = False, truth: str | None = None) -> list[dict[str, Any]]:
    """``task_rows`` narrowed to the wrong ones (failed included), the failed ones, or one ground-truth value."""
    return [
        row
        for row in rows
        if (not wrong_only or row["correct"] is False) and (not failed_only or row["failed"]) and (truth is None or row["ground truth"] == truth)
    ]


def run_rows(prompt: str, project_id: int) -> list[dict[str, Any]]:
    """The prompt's evaluation runs, newest first, one row each (accuracy over the tasks finished so far)."""
    return [
        {
            "run": run.id,
            "version": f"v{run.version}",
            "status": runs.status_of(run),
            "subset": run.subset.get("description", ""),
            "done": run.done,
            "failed": run.failed,
            "accuracy": report(run.id).accuracy,
            "cost": run.cost_usd,
            "started": run.started_at or run.created_at,
        }
        for run in runs.runs(prompt=prompt, project_id=project_id, kind="evaluate")
    ]


def overview(project_id: int | None = None) -> list[dict[str, Any]]:
    """Every prompt with its latest version and its best-known score: the latest completed evaluation."""
    rows = []
    for version in prompts.latest_versions(project_id):
        scored = next(
            (r for r in runs.runs(prompt=version.prompt, project_id=version.project_id, kind="evaluate") if r.status == "completed"), None
        )
        rows.append(
            {
                "project": version.project_id,
                "prompt": version.prompt,
                "latest": f"v{version.number}",
                "model": version.model,
                "evaluated": f"v{scored.version}" if scored else "—",
                "accuracy": report(scored.id).accuracy if scored else None,
                "on": scored.subset.get("description", "") if scored else "",
            }
        )
    return rows
