"""Two runs compared task by task: which tasks flipped, and whether the difference could be noise.

- ``compare(a_correct, b_correct)``: per task id, whether each run got it right (a failed item is
  wrong); only tasks in both runs count. The p-value is McNemar's exact test: under "no difference",
  each discordant task is as likely to favour either run. The gain carries its 95% interval, from
  the bootstrap over the common tasks (each resample keeps a task's pair of answers together).
- ``Changes``: without ground truth, what can still be said: the tasks in common and the answers that
  changed, side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.evaluation import intervals

NOISE = 0.05  # p-values below this are called "more than noise"


@dataclass(frozen=True)
class Comparison:
    tasks: int  # tasks in both runs
    accuracy_a: float  # on the common tasks; 0.0 when there are none
    accuracy_b: float
    difference: float  # b - a, on the common tasks
    wrong_to_right: list[int]  # task ids A got wrong and B right
    right_to_wrong: list[int]
    p_value: float  # two-sided; 1.0 when no task flipped
    label_a: str = "A"
    label_b: str = "B"
    difference_interval: dict | None = None  # of b - a; None when there are no common tasks

    def verdict(self) -> str:
        """One sentence a user can act on."""
        if not self.tasks:
            return f"{self.label_a} and {self.label_b} have no task in common."
        on = f"on {self.tasks} task{'s' if self.tasks != 1 else ''}"
        if not self.difference:
            return f"No difference {on}."
        direction = "better" if self.difference > 0 else "worse"
        meaning = "more than noise" if self.p_value < NOISE else "could be noise"
        return (
            f"{self.label_b} is {abs(self.difference) * 100:.1f} points {direction} than {self.label_a} {on} "
            f"({self.interval_text()}; {_p(self.p_value)}): {meaning}."
        )

    def interval_text(self) -> str:
        """The gain's interval in points, e.g. "95% interval +2.0 to +22.0 points"."""
        if not self.difference_interval:
            return "no interval"
        low, high = (_signed(self.difference_interval[end] * 100) for end in ("low", "high"))
        return f"95% interval {low} to {high} points"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Change:
    task_id: int
    answer_a: str
    answer_b: str
    text: str = ""  # the task's text, shortened, when known
    link: str = ""  # the task in Label Studio, when known

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Changes:
    """Two runs' answers on the tasks they share, ground truth or not."""

    label_a: str
    label_b: str
    tasks: int  # tasks both runs answered or failed
    changed: list[Change]

    def verdict(self) -> str:
        if not self.tasks:
            return f"{self.label_a} and {self.label_b} have no task in common."
        count = len(self.changed)
        if not count:
            return f"{self.label_b} gives the same answers as {self.label_a} on all {self.tasks} tasks in common."
        return f"{self.label_b} changed {count} of {self.tasks} answers from {self.label_a} (no ground truth on these tasks to say which is right)."


def compare(a_correct: dict[int, bool], b_correct: dict[int, bool], label_a: str = "A", label_b: str = "B") -> Comparison:
    common = sorted(a_correct.keys() & b_correct.keys())
    wrong_to_right = [t for t in common if b_correct[t] and not a_correct[t]]
    right_to_wrong = [t for t in common if a_correct[t] and not b_correct[t]]
    return Comparison(
        tasks=len(common),
        accuracy_a=_accuracy(a_correct, common),
        accuracy_b=_accuracy(b_correct, common),
        # from the flips rather than the accuracies, so equal runs give exactly 0
        difference=(len(wrong_to_right) - len(right_to_wrong)) / len(common) if common else 0.0,
        wrong_to_right=wrong_to_right,
        right_to_wrong=right_to_wrong,
        p_value=_mcnemar(len(wrong_to_right), len(right_to_wrong)),
        label_a=label_a,
        label_b=label_b,
        difference_interval=_gain_interval([int(b_correct[t]) - int(a_correct[t]) for t in common]),
    )


def _gain_interval(gains: list[int]) -> dict | None:
    found = intervals.bootstrap([[gain, 1] for gain in gains], intervals.ratio)
    return found.to_dict() if found else None


def _accuracy(correct: dict[int, bool], tasks: list[int]) -> float:
    return sum(bool(correct[t]) for t in tasks) / len(tasks) if tasks else 0.0


def _mcnemar(better: int, worse: int) -> float:
    discordant = better + worse
    if not discordant:
        return 1.0
    from scipy.stats import binomtest  # scipy.stats takes a second to import: only when comparing

    return float(binomtest(better, discordant, 0.5).pvalue)


def _signed(points: float) -> str:
    return "0.0" if round(points, 1) == 0 else f"{points:+.1f}"


def _p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"
