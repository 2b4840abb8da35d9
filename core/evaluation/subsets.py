"""Which tasks an evaluation runs on: the ground-truth tasks, a part of the project's ground-truth split
(its development or test part, see core.evaluation.split), a seeded random sample, all tasks, or
given task ids.

The ground truth of a task is its annotation marked ground truth (the most recent if several). A
project with no such annotation is evaluated on its annotated tasks instead, against their most
recent annotation, and the subset says so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from core.evaluation import split
from core.labelstudio import LabelStudioClient, Task

KINDS = ("ground-truth", "test", "development", "sample", "all", "tasks")
PARTS = ("test", "development")  # the split's parts an evaluation may run on


class SubsetError(ValueError):
    """The subset cannot be made; the message says why and what to choose instead."""


@dataclass(frozen=True)
class Subset:
    kind: str
    task_ids: list[int]
    description: str
    truth: str = "ground-truth"  # or "annotations": the fallback for projects without ground truth
    note: str | None = None
    options: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "description": self.description, "truth": self.truth, "note": self.note, **self.options}


def choose(
    client: LabelStudioClient,
    project_id: int,
    kind: str = "ground-truth",
    *,
    size: int | None = None,
    seed: int = 0,
    ids: Sequence[int] | None = None,
) -> Subset:
    if kind not in KINDS:
        raise SubsetError(f"subset: {kind!r} is not one of {', '.join(KINDS)}.")
    tasks = list(client.tasks(project_id))
    if not tasks:
        raise SubsetError(f"Project {project_id} has no tasks; import some in Label Studio first.")
    truth, note = _truth(tasks)
    if kind == "ground-truth":
        chosen = [t.id for t in tasks if t.reference(truth) is not None]
        if not chosen:
            raise SubsetError(
                f"Project {project_id} has no annotated tasks to evaluate against; annotate some tasks (and mark "
                "them ground truth) in Label Studio, or choose the subset 'all' to run without scores."
            )
        what = "ground-truth" if truth == "ground-truth" else "annotated"
        return Subset(kind, sorted(chosen), f"{len(chosen)} {what} tasks", truth, note)
    if kind in PARTS:
        return _part(project_id, kind, {t.id for t in tasks if t.ground_truth is not None})
    if kind == "sample":
        if not size or size < 1:
            raise SubsetError("sample size: give the number of tasks to sample, e.g. 50.")
        picked = sorted(random.Random(seed).sample([t.id for t in tasks], min(size, len(tasks))))
        return Subset(kind, picked, f"a sample of {len(picked)} tasks (seed {seed})", truth, note, {"size": size, "seed": seed})
    if kind == "all":
        return Subset(kind, sorted(t.id for t in tasks), f"all {len(tasks)} tasks", truth, note)
    wanted = list(dict.fromkeys(int(i) for i in ids or ()))
    if not wanted:
        raise SubsetError("tasks: give the task ids to run, e.g. 1,2,3.")
    known = {t.id for t in tasks}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise SubsetError(f"tasks: project {project_id} has no task {', '.join(map(str, unknown[:10]))}.")
    return Subset(kind, wanted, f"{len(wanted)} chosen tasks", truth, note)


def _part(project_id: int, part: str, ground_truth: set[int]) -> Subset:
    found = split.get(project_id)
    if found is None:
        raise SubsetError(
            f"Project {project_id} has no ground-truth split yet, so it has no {part} part: split it on the Evaluate page "
            f"or with `python -m core ground-truth split --project {project_id}`."
        )
    # a task whose ground truth was removed since the split is left out, not scored against nothing
    chosen = [t for t in found.parts[part] if t in ground_truth]
    if not chosen:
        raise SubsetError(f"The {part} part of project {project_id}'s split has no task with ground truth left; split it again (--replace).")
    gone = len(found.parts[part]) - len(chosen)
    note = f"{gone} task(s) of the {part} part no longer have ground truth and are left out." if gone else None
    return Subset(part, chosen, f"the {part} part: {len(chosen)} ground-truth tasks", "ground-truth", note, {"split_seed": found.seed})


def _truth(tasks: list[Task]) -> tuple[str, str | None]:
    if any(t.ground_truth is not None for t in tasks):
        return "ground-truth", None
    return "annotations", (
        "No annotation in this project is marked ground truth, so tasks are scored against their most recent "
        "annotation; mark reviewed annotations as ground truth in Label Studio for a trustworthy score."
    )
