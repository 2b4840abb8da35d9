"""The model matrix: one version evaluated on several models (saved keys x models) in one action.

- ``start(version, subset, label_config, models)`` records one variant evaluation per model, all in
  one group (``matrix:<id>``): the version's prompt unchanged, only the key and model differ. They run
  under the same cache, spending limits and budgets as any run, side by side, and are never written
  to Label Studio (their answers are not the version's).
- ``rows(group)`` is the table: accuracy with its 95% interval, cost per 1,000 tasks, tokens per
  task, latency p50/p95, and whether the model is on the Pareto frontier of accuracy against cost.
- ``save_as_version(run_id)`` makes a model of the matrix the prompt's next version.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Sequence

from core import identity, keys, prompts, recent, runs
from core.evaluation import evaluate
from core.evaluation.subsets import Subset
from core.labelstudio import LabelStudioClient
from core.prompts import Version
from core.runs import RunView

GROUP = "matrix"


class MatrixError(ValueError):
    """The matrix cannot be made as asked; the message says why."""


def parse_models(text: str) -> list[tuple[str, str]]:
    """``"team:gpt-4o-mini, team:gpt-4o"`` as [(key, model), ...], each once."""
    found = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        key, colon, model = part.partition(":")
        if not colon or not key.strip() or not model.strip():
            raise MatrixError(f"models: {part!r} is not KEY:MODEL; give a saved key's name and a model, as team:gpt-4o-mini.")
        found.append((key.strip(), model.strip()))
    if not found:
        raise MatrixError("models: give at least one KEY:MODEL, as team:gpt-4o-mini,team:gpt-4o.")
    return list(dict.fromkeys(found))


def start(
    version: Version,
    subset: Subset,
    label_config: str,
    models: Sequence[tuple[str, str]],
    *,
    concurrency: int = runs.DEFAULT_CONCURRENCY,
    cache: str = "auto",
    client: LabelStudioClient | None = None,
) -> list[RunView]:
    """Record one evaluation of ``version`` per (key, model), all on ``subset``; every model is checked
    before any run is recorded, so a typo starts nothing."""
    identity.require_role("member", "start runs")
    models = list(dict.fromkeys((k, m) for k, m in models))
    if len(models) < 2:
        raise MatrixError("A model matrix compares two models or more; pick at least two.")
    saved = {key.name for key in keys.all_keys()}
    for key, model in models:
        if key not in saved:
            raise MatrixError(f"models: there is no saved key {key!r}; add it on the Keys page, or pick one of {', '.join(sorted(saved)) or 'none yet'}.")
    group = f"{GROUP}:{secrets.token_hex(4)}"
    started = []
    for key, model in models:
        variant = {"provider_key": key, "model": model}
        estimated = evaluate.estimate_under_budget(dataclasses.replace(version, **variant), subset, cache, client)
        started.append(
            runs.create(
                version,
                subset.task_ids,
                kind="evaluate",
                subset=subset.as_dict() | {"group": group},
                label_config=label_config,
                concurrency=concurrency,
                cache=cache,
                estimated_cost_usd=estimated,
                variant=variant,
            )
        )
    recent.remember(project_id=version.project_id, prompt=version.prompt)
    return started


def groups(prompt: str, project_id: int) -> list[dict[str, Any]]:
    """The prompt's matrices, newest first: group, version, models, when."""
    found: dict[str, dict[str, Any]] = {}
    for run in runs.runs(prompt=prompt, project_id=project_id, kind="evaluate", variants=True):
        group = run.subset.get("group", "")
        if not group.startswith(GROUP + ":"):
            continue
        entry = found.setdefault(group, {"group": group, "version": run.version, "models": [], "subset": run.subset.get("description", ""), "created_at": run.created_at})
        entry["models"].insert(0, run.variant["model"])
    return list(found.values())


def runs_of(group: str) -> list[RunView]:
    """The matrix's runs, in the order its models were given."""
    return runs.in_group(group)


def rows(group: str) -> list[dict[str, Any]]:
    """One row per model: accuracy and its interval over the tasks scored so far, cost per 1,000
    tasks, tokens per task and latency from the calls' own measurements, and the Pareto frontier."""
    table = [_row(run) for run in runs_of(group)]
    on_frontier = frontier([(row["accuracy"], row["cost_per_1000"]) for row in table])
    for index, row in enumerate(table):
        row["on_frontier"] = index in on_frontier
    return table


def _row(run: RunView) -> dict[str, Any]:
    found = evaluate.report(run.id)
    answered = [item for item in runs.items(run.id) if item.input_tokens or item.output_tokens]
    costs = [item.cost_usd for item in answered]
    # An answer from the cache carries what its call cost and how long it took when it was made:
    # those are this model's figures too, so they count here (the run's own cost says what was paid).
    latencies = [item.latency_ms for item in answered if item.latency_ms is not None]
    return {
        "run": run.id,
        "key": run.variant.get("provider_key"),
        "model": run.variant["model"],
        "status": runs.status_of(run),
        "done": run.done,
        "failed": run.failed,
        "total": run.total,
        "scored": found.tasks,
        "accuracy": found.accuracy,
        "accuracy_interval": found.accuracy_interval,
        "cost_per_1000": (sum(costs) / len(costs) * 1000) if costs and None not in costs else None,
        "paid_usd": run.cost_usd,
        "tokens_per_task": (sum((i.input_tokens or 0) + (i.output_tokens or 0) for i in answered) / len(answered)) if answered else None,
        "latency_p50_ms": evaluate.percentile(latencies, 50),
        "latency_p95_ms": evaluate.percentile(latencies, 95),
    }


def frontier(points: Sequence[tuple[float | None, float | None]]) -> set[int]:
    """The indexes of the (accuracy, cost) points no other point beats: none as accurate or more for
    as little or less, better in one. A point without an accuracy or a price is not on it."""
    known = [(i, a, c) for i, (a, c) in enumerate(points) if a is not None and c is not None]
    return {
        i
        for i, a, c in known
        if not any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for j, a2, c2 in known if j != i)
    }


def save_as_version(run_id: int) -> Version:
    """The matrix model of ``run_id`` as the prompt's next version (its prompt as the run sent it)."""
    run = runs.get(run_id)
    if not run.variant or not run.subset.get("group", "").startswith(GROUP + ":"):
        raise MatrixError(f"Run {run_id} is not part of a model matrix.")
    tried = runs.version_of(run_id)
    note = f"v{run.version} on {tried.provider_key} · {tried.model}, from the model matrix (run {run_id})"
    # every setting as the run sent it: the prompt's latest version may be another one
    kept = {name: getattr(tried, name) for name in prompts.EDITABLE if name != "note"}
    return prompts.new_version(run.prompt, run.project_id, **kept, note=note)
