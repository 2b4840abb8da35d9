"""A project's ground truth divided into three parts with different jobs, so that nothing is measured
on what it was tuned on.

- *examples*: the only tasks few-shot examples are drawn from;
- *development*: the tasks whose errors Enhance and Optimize read;
- *test*: held out; the accuracy of a version built with examples or tuning is measured here.

``divide(classes, examples=, test_share=, seed=)`` is the pure division: seeded (the same seed and
tasks give the same parts), and stratified when each task has one class (the project has one
single-label output): the test part takes each class in proportion, and the examples part takes one
task of each class first (so "one example per class" can be honoured), then the rest in proportion.
``make`` divides the project's current ground truth and stores the split (one per project); ``get``
reads it back.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from core import audit, identity, labeling, store
from core.evaluation import metrics
from core.evaluation.answers import answer
from core.labelstudio import LabelStudioClient

PARTS = ("examples", "development", "test")
DEFAULT_EXAMPLES = 5
DEFAULT_TEST_SHARE = 0.4
DEFAULT_SEED = 0


class SplitError(ValueError):
    """The split cannot be made as asked; the message says why and what to ask instead."""


@dataclass(frozen=True)
class Split:
    project_id: int
    seed: int
    test_share: float
    stratified_by: str | None  # the output whose classes were kept in proportion, if any
    parts: dict[str, list[int]]  # part name -> task ids, sorted
    created_by: str | None = None
    created_at: datetime | None = None

    def part_of(self, task_id: int) -> str | None:
        return next((part for part, ids in self.parts.items() if task_id in ids), None)

    def describe(self) -> str:
        examples, development, test = (len(self.parts[part]) for part in PARTS)
        how = f", stratified by {self.stratified_by}" if self.stratified_by else ""
        return f"{examples} example{'s' if examples != 1 else ''}, {development} development and {test} test task{'s' if test != 1 else ''} (seed {self.seed}{how})"

    def to_dict(self) -> dict:
        return {
            "project_id": self.project_id,
            "seed": self.seed,
            "test_share": self.test_share,
            "stratified_by": self.stratified_by,
            "parts": self.parts,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def divide(classes: dict[int, str | None], *, examples: int, test_share: float, seed: int) -> dict[str, list[int]]:
    """Task ids (each with its class, or None when unstratified) into the three parts."""
    total = len(classes)
    if not 0 < test_share < 1:
        raise SplitError(f"test share: {test_share} is not between 0 and 1; give e.g. 0.4 for 40% of the ground truth.")
    if examples < 0:
        raise SplitError(f"examples: {examples} is negative; give the number of tasks to keep for few-shot examples, or 0.")
    test = max(1, round(total * test_share))
    if examples + test >= total:
        raise SplitError(
            f"The project has {total} ground-truth tasks: {examples} examples and a test part of {test} leave none for "
            "development. Ask for fewer examples or a smaller test share, or mark more annotations ground truth."
        )
    rng = random.Random(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for task_id in sorted(classes):
        groups[classes[task_id] or ""].append(task_id)
    for name in sorted(groups):
        rng.shuffle(groups[name])

    parts: dict[str, list[int]] = {part: [] for part in PARTS}
    for name, count in _in_proportion({n: len(ids) for n, ids in groups.items()}, test).items():
        parts["test"] += groups[name][:count]
        del groups[name][:count]
    # examples: one of each class first, the largest classes first, then the rest in proportion
    firsts = sorted((n for n, ids in groups.items() if ids), key=lambda n: (-len(groups[n]), n))[:examples]
    for name in firsts:
        parts["examples"].append(groups[name].pop(0))
    for name, count in _in_proportion({n: len(ids) for n, ids in groups.items()}, examples - len(firsts)).items():
        parts["examples"] += groups[name][:count]
        del groups[name][:count]
    parts["development"] = [task_id for ids in groups.values() for task_id in ids]
    return {part: sorted(ids) for part, ids in parts.items()}


def make(
    client: LabelStudioClient,
    project_id: int,
    *,
    examples: int = DEFAULT_EXAMPLES,
    test_share: float = DEFAULT_TEST_SHARE,
    seed: int = DEFAULT_SEED,
    replace: bool = False,
) -> Split:
    """Divide the project's ground-truth tasks and keep the split, as the acting user (a member or an
    admin). A project's split is not replaced unless asked: evaluations on its test part are only
    comparable while it stands."""
    user = identity.require_role("member", "split a project's ground truth")
    return _make(client, project_id, user, examples=examples, test_share=test_share, seed=seed, replace=replace)


def make_for_demo(client: LabelStudioClient, project_id: int, examples: int) -> Split:
    """The demo project's split, made by whoever runs ``make run`` on this machine as it creates the project."""
    return _make(client, project_id, identity.local_admin(), examples=examples, test_share=DEFAULT_TEST_SHARE, seed=DEFAULT_SEED, replace=False)


def _make(client: LabelStudioClient, project_id: int, user: identity.User, *, examples: int, test_share: float, seed: int, replace: bool) -> Split:
    existing = get(project_id)
    if existing is not None and not replace:
        raise SplitError(
            f"Project {project_id} already has a split ({existing.describe()}). Replacing it makes earlier test "
            "figures incomparable with new ones; replace it only on purpose (--replace, or the Replace button)."
        )
    tasks = [t for t in client.tasks(project_id) if t.ground_truth is not None]
    if not tasks:
        raise SplitError(f"Project {project_id} has no ground-truth tasks to split; mark reviewed annotations as ground truth in Label Studio first.")
    by = _class_output(client.label_config(project_id))
    classes = {t.id: (_class_of(by, t.ground_truth.result) if by else None) for t in tasks}
    parts = divide(classes, examples=examples, test_share=test_share, seed=seed)
    with store.writing() as s:
        row = s.exec(select(store.GroundTruthSplit).where(store.GroundTruthSplit.project_id == project_id)).first()
        if row is None:
            row = store.GroundTruthSplit(project_id=project_id, seed=seed, test_share=test_share, parts=parts)
        row.seed, row.test_share, row.stratified_by, row.parts = seed, test_share, by.name if by else None, parts
        row.created_by, row.created_at = user.email, store.utcnow()
        s.add(row)
    made = get(project_id)
    audit.record("ground truth split", target=f"project {project_id}", by=user, detail={"split": made.describe(), "replaced": existing is not None})
    return made


def get(project_id: int) -> Split | None:
    with store.session() as s:
        row = s.exec(select(store.GroundTruthSplit).where(store.GroundTruthSplit.project_id == project_id)).first()
    if row is None:
        return None
    parts = {part: sorted(int(i) for i in row.parts.get(part, [])) for part in PARTS}
    return Split(row.project_id, row.seed, row.test_share, row.stratified_by, parts, row.created_by, row.created_at)


def _in_proportion(sizes: dict[str, int], count: int) -> dict[str, int]:
    """``count`` shared among groups in proportion to their sizes (largest remainders; a tie goes to the
    larger group, then by name)."""
    total = sum(sizes.values())
    if count <= 0 or not total:
        return {name: 0 for name in sizes}
    quotas = {name: size * count / total for name, size in sizes.items()}
    shares = {name: int(quota) for name, quota in quotas.items()}
    left = count - sum(shares.values())
    for name in sorted(quotas, key=lambda n: (-(quotas[n] - shares[n]), -sizes[n], n))[:left]:
        shares[name] += 1
    return shares


def _class_output(config: str) -> labeling.Output | None:
    """The output to stratify by: the project's only output, when it gives one class per task."""
    outputs = labeling.read(config).outputs
    return outputs[0] if len(outputs) == 1 and metrics.single_label(outputs[0]) else None


def _class_of(output: labeling.Output, regions: list[dict]) -> str | None:
    found = answer(output, regions)
    if found is None:
        return None
    return found if isinstance(found, str) else ", ".join(sorted(found)) or None
