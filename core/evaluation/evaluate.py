"""Evaluations: a version run on a subset of tasks, scored against their ground truth.

``start`` records the run (the run engine executes it); ``report`` scores a run's items; ``summary`` is
the document ``python -m core evaluate`` prints; ``history`` is each version's latest accuracy, the
line that shows a prompt getting better; ``compare_runs`` sets two runs side by side.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from core import budgets, identity, labeling, prompts, recent, rendering, runs
from core.evaluation import answers, compare, metrics
from core.evaluation.subsets import Subset, SubsetError
from core.labelstudio import LabelStudioClient
from core.prompts import Version
from core.runs import RunView

TEXT_WIDTH = 120  # characters of a task's text shown beside its answer


def start(
    version: Version,
    subset: Subset,
    label_config: str,
    *,
    concurrency: int = runs.DEFAULT_CONCURRENCY,
    cache: str = "auto",
    client: LabelStudioClient | None = None,
    mode: str = "live",
) -> RunView:
    """Record an evaluation run. Under a monthly budget it is estimated first (with ``client``, or the
    current connection), so that one that would pass the budget is refused before it starts."""
    estimated = estimate_under_budget(version, subset, cache, client, mode)
    run = runs.create(
        version,
        subset.task_ids,
        kind="evaluate",
        subset=subset.as_dict(),
        label_config=label_config,
        concurrency=concurrency,
        cache=cache,
        estimated_cost_usd=estimated,
        mode=mode,
    )
    recent.remember(project_id=version.project_id, prompt=version.prompt)
    return run


def estimate_under_budget(version: Version, subset: Subset, cache: str, client: LabelStudioClient | None, mode: str = "live") -> float | None:
    """What the run would cost, when a monthly budget applies to it (else None: no need to know)."""
    if not budgets.applying(version, identity.current().email):
        return None
    from core import connection, predict  # predict's estimate samples the tasks the way a run sends them

    chosen = predict.Scope(subset.task_ids, subset.description)
    return predict.estimate(version, chosen, client or connection.client(), cache=cache).cost_for(mode)


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
    from core.evaluation import calibration  # it reads evaluations through this module
    run = runs.get(run_id)
    found = report(run_id)
    latencies = [i.latency_ms for i in runs.items(run_id) if i.latency_ms is not None and not i.from_cache]
    return run.document() | {
        "scored": found.tasks,
        "accuracy": found.accuracy,
        "accuracy_interval": found.accuracy_interval,
        "completion_rate": run.done / run.total if run.total else 0.0,
        "metrics": {name: control.to_dict() for name, control in found.controls.items()},
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "calibration": calibration.of_run(run_id).to_dict() if found.tasks else None,
    }


def history(prompt: str, project_id: int) -> list[dict[str, Any]]:
    """Each version's latest completed evaluation that scored tasks against ground truth: version,
    accuracy, on how many tasks, run id, subset; oldest version first. A later run of a version on
    tasks without ground truth does not hide its scored one. The accuracy's 95% Wilson interval
    rides along (``accuracy_interval``). A version shown few-shot examples is measured only on the
    test part of the split: elsewhere its score could count tasks akin to what it was shown."""
    latest: dict[int, tuple[RunView, metrics.Report]] = {}
    held_out = {v.number for v in prompts.versions(prompt, project_id) if test_part_only(v)}
    for run in runs.runs(prompt=prompt, project_id=project_id, kind="evaluate"):
        if run.status != "completed" or run.version in latest:
            continue
        if run.version in held_out and run.subset.get("kind") != "test":
            continue
        found = report(run.id)
        if found.accuracy is not None:
            latest[run.version] = (run, found)
    return [
        {
            "version": f"v{number}",
            "accuracy": found.accuracy,
            "accuracy_interval": found.accuracy_interval,
            "tasks": found.tasks,
            "run_id": run.id,
            "subset": run.subset.get("description", ""),
        }
        for number, (run, found) in sorted(latest.items())
    ]


def test_part_only(version: Version) -> bool:
    """Whether the version's accuracy is measured only on the test part (it shows few-shot examples)."""
    return bool(version.examples)


def best(prompt: str, project_id: int) -> dict[str, Any] | None:
    """The version with the best accuracy on ground truth (its latest scored evaluation); the later
    version wins a tie. None when no version was scored."""
    points = history(prompt, project_id)
    return max(reversed(points), key=lambda p: p["accuracy"]) if points else None


def previous(run: RunView) -> RunView | None:
    """The latest completed evaluation of the version before this one, on the same subset kind."""
    for other in runs.runs(prompt=run.prompt, project_id=run.project_id, kind="evaluate"):
        if other.version < run.version and other.status == "completed" and other.subset.get("kind") == run.subset.get("kind"):
            return other
    return None


def compare_runs(run_a: int, run_b: int, *, label_a: str | None = None, label_b: str | None = None) -> compare.Comparison:
    """The two runs scored against the ground truth of the tasks they share."""
    a, b = runs.get(run_a), runs.get(run_b)
    default_a, default_b = _labels(a, b)
    return compare.compare(_correct_by_task(run_a), _correct_by_task(run_b), label_a=label_a or default_a, label_b=label_b or default_b)


def compare_answers(run_a: int, run_b: int, client: LabelStudioClient | None = None) -> compare.Changes:
    """The two runs' answers on the tasks they share, with or without ground truth: which changed.
    With a client, each changed task carries its text (shortened) and its link in Label Studio."""
    a, b = runs.get(run_a), runs.get(run_b)
    if a.project_id != b.project_id:
        raise SubsetError(f"Runs {a.id} and {b.id} are on different projects; compare runs of one project.")
    chosen = outputs(run_b)
    items_a = {i.task_id: i for i in runs.items(run_a)}
    items_b = {i.task_id: i for i in runs.items(run_b)}
    common = sorted(items_a.keys() & items_b.keys())
    changed = [t for t in common if _shown(chosen, items_a[t]) != _shown(chosen, items_b[t])]
    texts = _task_texts(client, a.project_id, changed, run_b) if client else {}
    label_a, label_b = _labels(a, b)
    return compare.Changes(
        label_a=label_a,
        label_b=label_b,
        tasks=len(common),
        changed=[
            compare.Change(
                task_id=t,
                answer_a=_shown(chosen, items_a[t]),
                answer_b=_shown(chosen, items_b[t]),
                text=texts.get(t, ""),
                link=client.task_url(a.project_id, t) if client else "",
            )
            for t in changed
        ],
    )


def comparison(run_a: int, run_b: int, client: LabelStudioClient | None = None) -> dict[str, Any]:
    """Everything `runs compare --json` prints: the answers that changed, and the scores where the
    shared tasks have ground truth."""
    scored = compare_runs(run_a, run_b)
    changes = compare_answers(run_a, run_b, client)
    verdict = scored.verdict() if scored.tasks else changes.verdict()
    return {
        "run_a": run_a,
        "run_b": run_b,
        "verdict": verdict,
        "tasks_in_common": changes.tasks,
        "answers_changed": len(changes.changed),
        "changed": [change.to_dict() for change in changes.changed],
        "ground_truth": scored.to_dict() if scored.tasks else None,
    }


def _labels(a: RunView, b: RunView) -> tuple[str, str]:
    """How the two runs are named in sentences: by version, or by run when the versions are the same."""
    if (a.prompt, a.version) == (b.prompt, b.version):
        return f"run {a.id} (v{a.version})", f"run {b.id} (v{b.version})"
    if a.prompt != b.prompt:
        return f"{a.prompt} v{a.version}", f"{b.prompt} v{b.version}"
    return f"v{a.version}", f"v{b.version}"


def _shown(chosen: list[labeling.Output], item) -> str:
    if item.status != "ok":
        return "failed"
    return "; ".join(answers.shown(o, item.regions or []) for o in chosen)


def _task_texts(client: LabelStudioClient, project_id: int, task_ids: list[int], run_id: int, width: int = 160) -> dict[int, str]:
    """Each task's first text input, shortened, to show beside its answers."""
    if not task_ids:
        return {}
    targets = labeling.read(runs.label_config(run_id))
    texts = {}
    for task in client.tasks(project_id, ids=task_ids):
        for source in targets.inputs:
            try:
                text = rendering.field_text(source, task.data.get(source.field))
            except rendering.RenderError:
                continue
            texts[task.id] = text if len(text) <= width else text[: width - 1].rstrip() + "…"
            break
    return texts


def task_rows(run_id: int, client: LabelStudioClient | None = None) -> list[dict[str, Any]]:
    """One row per task: the answer next to the ground truth, right or wrong, and the error; and
    ``cells``, per single-label output, the confusion-heatmap cell the task counts in, (truth, predicted)."""
    run = runs.get(run_id)
    chosen = outputs(run_id)
    found = runs.items(run_id)
    texts = _task_texts(client, run.project_id, [item.task_id for item in found], run_id, width=TEXT_WIDTH) if client else {}
    rows = []
    for item in found:
        predicted = item.regions or []
        truth = item.ground_truth
        matches = answers.matches(chosen, predicted, truth) if truth is not None else None
        rows.append(
            {
                "task": item.task_id,
                "text": texts.get(item.task_id, ""),
                "ground truth": "; ".join(answers.shown(o, truth) for o in chosen) if truth is not None else "—",
                "answer": "; ".join(answers.shown(o, predicted) for o in chosen) if item.status == "ok" else "—",
                "correct": None if matches is None else item.status == "ok" and all(matches.values()),
                "failed": item.status != "ok",
                "error": item.error or "",
                "link": client.task_url(run.project_id, item.task_id) if client else "",
                "cells": _cells(chosen, item),
            }
        )
    return rows


def _cells(chosen: list[labeling.Output], item) -> dict[str, tuple[str, str]]:
    """Per single-label output the task is scored on, the confusion-heatmap cell it counts in."""
    scored = metrics.Scored(item.task_id, item.regions if item.status == "ok" else None, item.ground_truth or [])
    found = {o.name: metrics.cell_of(o, scored) for o in chosen if metrics.single_label(o)}
    return {name: cell for name, cell in found.items() if cell is not None}


def _correct_by_task(run_id: int) -> dict[int, bool]:
    found = report(run_id)
    correct = set(found.correct_task_ids)
    return {item.task_id: item.task_id in correct for item in runs.items(run_id) if item.ground_truth is not None}


def percentile(values: list[float], percent: int) -> float | None:
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


@dataclass(frozen=True)
class Cell:
    """A cell of a control's confusion heatmap: its tasks have this ground truth and this prediction."""

    control: str
    truth: str
    predicted: str


def filter_rows(
    rows: list[dict[str, Any]],
    *,
    wrong_only: bool = False,
    failed_only: bool = False,
    truth: str | None = None,
    cells: Iterable[Cell] = (),
) -> list[dict[str, Any]]:
    """``task_rows`` narrowed to the wrong ones (failed included), the failed ones, one ground-truth
    value, and the tasks in every given heatmap cell."""
    cells = list(cells)
    return [
        row
        for row in rows
        if (not wrong_only or row["correct"] is False)
        and (not failed_only or row["failed"])
        and (truth is None or row["ground truth"] == truth)
        and all(row["cells"].get(cell.control) == (cell.truth, cell.predicted) for cell in cells)
    ]


def describe_shown(
    shown: int,
    total: int,
    *,
    wrong_only: bool = False,
    failed_only: bool = False,
    truth: str | None = None,
    cells: Iterable[Cell] = (),
) -> str:
    """What the task table lists, in the words of the page: "3 of 9 tasks", and with a heatmap cell
    selected, which cell and the filters that narrow it further."""
    cells = list(cells)
    if not cells:
        return f"{shown} of {total} tasks."
    picked = " and ".join(f"ground truth {c.truth} predicted as {c.predicted} (the cell selected on the {c.control} heatmap)" for c in cells)
    filters = [name for name, on in (("Wrong only", wrong_only), ("Failed only", failed_only), (f"Ground truth {truth}", truth is not None)) if on]
    further = f", narrowed further by {', '.join(filters)}" if filters else ""
    return f"{shown} of {total} tasks: {picked}{further}."


def run_rows(prompt: str, project_id: int) -> list[dict[str, Any]]:
    """The prompt's evaluation runs, newest first, one row each (accuracy over the tasks finished so
    far, with its 95% interval)."""
    rows = []
    for run in runs.runs(prompt=prompt, project_id=project_id, kind="evaluate"):
        found = report(run.id)
        rows.append(
            {
                "run": run.id,
                "version": f"v{run.version}",
                "status": runs.status_of(run),
                "subset": run.subset.get("description", ""),
                "done": run.done,
                "failed": run.failed,
                "accuracy": found.accuracy,
                "accuracy_interval": found.accuracy_interval,
                "cost": run.cost_usd,
                "started": run.started_at or run.created_at,
                "started by": run.started_by or "",
            }
        )
    return rows


def overview(project_id: int | None = None) -> list[dict[str, Any]]:
    """Every prompt with its latest version and its best evaluated one: accuracy, and on how many
    ground-truth tasks."""
    rows = []
    for version in prompts.latest_versions(project_id):
        top = best(version.prompt, version.project_id)
        rows.append(
            {
                "project": version.project_id,
                "prompt": version.prompt,
                "latest": f"v{version.number}",
                "model": version.model,
                "best": top["version"] if top else "—",
                "accuracy": top["accuracy"] if top else None,
                "accuracy_interval": top["accuracy_interval"] if top else None,
                "on": f"{top['tasks']} ground-truth tasks" if top else "not evaluated yet",
            }
        )
    return rows
