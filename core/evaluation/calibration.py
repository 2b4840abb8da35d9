"""What a version's confidence means, measured on ground truth: is an answer said to be 0.9 sure
right nine times in ten, and which threshold gives the accuracy a team asks for.

- ``of_run(run_id)``: the reliability bins (confidence against accuracy, with counts), the expected
  calibration error and the AUROC of confidence for right against wrong answers, for the whole
  answer and for each output.
- ``threshold_for(points, target)``: the lowest threshold whose tasks at or above it reach
  ``target`` accuracy with the lower bound of their 95% Wilson interval, not only with their point
  value; ``curve(points)`` is coverage against accuracy at every threshold, to pick another one.

Only answered tasks have a confidence; a failed task is never "covered" by a threshold, but still
counts in the coverage's denominator, since nothing would be accepted for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from core import runs
from core.evaluation import evaluate, intervals, metrics

BINS = 10


@dataclass(frozen=True)
class Point:
    """One scored task: its confidence (None when unmeasured or failed) and whether it was right."""

    task_id: int
    confidence: float | None
    right: bool


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    tasks: int
    confidence: float | None  # the mean confidence of its tasks
    accuracy: float | None


@dataclass(frozen=True)
class Reliability:
    tasks: int  # scored tasks with a confidence
    without_confidence: int  # scored tasks without one (failed, or nothing to measure it by)
    bins: list[Bin]
    ece: float | None  # expected calibration error: the bins' |accuracy - confidence|, weighted by tasks
    auroc: float | None  # None when every answer was right, or every one wrong

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Threshold:
    threshold: float
    tasks: int  # ground-truth tasks at or above it
    of: int  # every scored ground-truth task
    right: int
    accuracy: float
    interval: dict

    @property
    def coverage(self) -> float:
        return self.tasks / self.of

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"coverage": self.coverage}

    def sentence(self) -> str:
        low, high = self.interval["low"], self.interval["high"]
        return (
            f"at or above {self.threshold:.2f}: {self.coverage:.0%} of tasks, accuracy {self.accuracy:.1%} "
            f"(95% interval {low:.1%}-{high:.1%}) on {self.tasks} of {self.of} ground-truth tasks"
        )


@dataclass(frozen=True)
class Calibration:
    run_id: int
    measure: str | None  # how the version measures confidence; None when its answers carry none
    overall: Reliability
    outputs: dict[str, Reliability] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)  # the whole answer's, for thresholds and curves

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "measure": self.measure,
            "overall": self.overall.to_dict(),
            "outputs": {name: r.to_dict() for name, r in self.outputs.items()},
        }


class NoConfidence(ValueError):
    """The run's answers carry no confidence; the message says how to get one."""


def run_of(version) -> int | None:
    """The evaluation a version's calibration is read from: the one that gives its accuracy (its
    latest completed evaluation that scored tasks against ground truth); None before there is one."""
    for point in evaluate.history(version.prompt, version.project_id):
        if point["version"] == f"v{version.number}":
            return point["run_id"]
    return None


def of_version(version) -> Calibration:
    run_id = run_of(version)
    if run_id is None:
        raise NoConfidence(f"{version.model_version} has no completed evaluation on ground truth yet; evaluate it first (its confidence is measured there).")
    return of_run(run_id)


def document(found: Calibration, target: float | None = None) -> dict[str, Any]:
    """Everything `calibration --json` prints: the reliability of the whole answer and of each
    output and, for a target accuracy, the threshold that reaches it (or the best there is)."""
    shown = found.to_dict()
    if target is not None:
        reached = threshold_for(found.points, target)
        best = best_reachable(found.points)
        shown["target_accuracy"] = target
        shown["threshold"] = reached.to_dict() if reached else None
        shown["best_reachable"] = best.to_dict() if best and not reached else None
    shown["curve"] = [t.to_dict() for t in curve(found.points)]
    return shown


def of_run(run_id: int) -> Calibration:
    """The calibration of an evaluation run's answers against their ground truth."""
    version = runs.version_of(run_id)
    chosen = evaluate.outputs(run_id)
    scored = [i for i in runs.items(run_id) if i.ground_truth is not None]
    as_scored = [metrics.Scored(i.task_id, i.regions if i.status == "ok" else None, i.ground_truth) for i in scored]
    overall = [
        Point(i.task_id, i.score if i.status == "ok" else None, all(metrics.right(o, s) for o in chosen)) for i, s in zip(scored, as_scored)
    ]
    per_output = {}
    for output in chosen:
        judged = [(i, s) for i, s in zip(scored, as_scored) if metrics.judged(output, s)]
        per_output[output.name] = reliability([Point(i.task_id, _output_confidence(i, output.name), metrics.right(output, s)) for i, s in judged])
    measured = any(p.confidence is not None for p in overall)
    return Calibration(
        run_id=run_id,
        measure=_measure(version.samples) if measured else None,
        overall=reliability(overall),
        outputs=per_output if len(chosen) > 1 else {},
        points=overall,
    )


def reliability(points: Sequence[Point], bins: int = BINS) -> Reliability:
    measured = [p for p in points if p.confidence is not None]
    found = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [p for p in measured if low <= p.confidence < high or (b == bins - 1 and p.confidence == high)]
        found.append(
            Bin(low, high, len(inside), _mean([p.confidence for p in inside]), _mean([float(p.right) for p in inside]))
        )
    ece = sum(b.tasks * abs(b.accuracy - b.confidence) for b in found if b.tasks) / len(measured) if measured else None
    return Reliability(len(measured), len(points) - len(measured), found, ece, _auroc(measured))


def threshold_for(points: Sequence[Point], target: float) -> Threshold | None:
    """The lowest threshold whose tasks reach ``target`` with their interval's lower bound; None when
    no threshold does."""
    for candidate in curve(points):
        if candidate.interval["low"] >= target:
            return candidate
    return None


def at(points: Sequence[Point], threshold: float) -> Threshold | None:
    """What a chosen threshold gives on ground truth; None when no task reaches it."""
    covered = [p for p in points if p.confidence is not None and p.confidence >= threshold]
    if not covered:
        return None
    right = sum(p.right for p in covered)
    interval = intervals.wilson(right, len(covered))
    return Threshold(threshold, len(covered), len(points), right, right / len(covered), interval.to_dict())


def curve(points: Sequence[Point]) -> list[Threshold]:
    """Coverage and accuracy at each confidence a task has, lowest threshold first."""
    return [at(points, t) for t in sorted({p.confidence for p in points if p.confidence is not None})]


def verdict(points: Sequence[Point], target: float) -> str:
    """The threshold for ``target`` in one sentence, or why there is none and the best there is."""
    reached = threshold_for(points, target)
    if reached:
        return f"For {target:.1%}: {reached.sentence()}."
    best = best_reachable(points)
    said = f" The best there is: {best.sentence()}." if best else ""
    measured = sum(p.confidence is not None for p in points)
    return f"No threshold reaches {target:.1%} with its 95% interval's lower bound on these {measured} tasks.{said} More ground truth narrows the interval."


def best_reachable(points: Sequence[Point]) -> Threshold | None:
    """The threshold with the highest lower bound: what to say when a target is out of reach."""
    return max(curve(points), key=lambda t: (t.interval["low"], t.tasks), default=None)


def _output_confidence(item, name: str) -> float | None:
    if item.status != "ok":
        return None
    if item.confidences and name in item.confidences:
        return item.confidences[name]
    return None


def _measure(samples: int | None) -> str:
    return f"agreement of {samples} answers" if samples else "log-probabilities"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _auroc(points: list[Point]) -> float | None:
    labels = [p.right for p in points]
    if len(set(labels)) < 2:
        return None
    from sklearn.metrics import roc_auc_score  # a second of imports: only when measuring

    return float(roc_auc_score(labels, [p.confidence for p in points]))
