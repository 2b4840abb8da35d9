"""How sure a figure is: 95% intervals for what an evaluation measures.

- ``wilson(successes, trials)``: a proportion (accuracy, precision, recall, exact match), by the
  Wilson score interval, which stays inside 0-1 and is honest for small counts: 40 right of 50 is
  80%, but the interval is 67-89%.
- ``bootstrap(per_task, statistic)``: anything else (F1, a mean similarity or error, the gain of one
  run over another), by resampling the tasks with replacement and taking the middle 95% of the
  statistic. Each task brings a row of counts (for F1: its true and false positives and false
  negatives per class); the statistic is computed from a resample's column sums. The resampling is
  seeded, so the same run always shows the same interval.

An interval is None when there is nothing to measure (no trial, no task).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 20261203


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # "wilson" or "bootstrap"
    level: float = LEVEL

    def to_dict(self) -> dict:
        return asdict(self)


def wilson(successes: int, trials: int, level: float = LEVEL) -> Interval | None:
    if trials <= 0:
        return None
    from scipy.stats import binomtest  # scipy.stats takes a second to import: only when measuring

    found = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="wilson")
    return Interval(float(found.low), float(found.high), "wilson", level)


def bootstrap(per_task, statistic: Callable[[np.ndarray], np.ndarray], level: float = LEVEL) -> Interval | None:
    """The percentile bootstrap over tasks. ``per_task`` has one row per task (or is one value per
    task); ``statistic`` maps column sums of shape (..., columns) to values of shape (...)."""
    return bootstrap_each(per_task, {"only": statistic}, level)["only"]


def bootstrap_each(per_task, statistics: dict[str, Callable[[np.ndarray], np.ndarray]], level: float = LEVEL) -> dict[str, Interval | None]:
    """``bootstrap`` for several statistics of the same rows, on the same resamples (one pass)."""
    rows = np.asarray(per_task, dtype=float)
    tasks = len(rows)
    if tasks == 0 or not statistics:
        return {name: None for name in statistics}
    rows = rows.reshape(tasks, -1)
    names = list(statistics)

    def each(sums: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(statistics[name](sums), dtype=float) for name in names])

    if tasks == 1:  # every resample is the sample itself
        values = each(rows.sum(axis=0))
        return {name: Interval(float(value), float(value), "bootstrap", level) for name, value in zip(names, values)}

    def resampled(sample: np.ndarray, axis: int) -> np.ndarray:
        chosen = np.moveaxis(sample, axis, -1).astype(int).reshape(-1, tasks)  # one resample a row
        # how often each task was drawn, then the sums of what it brings that many times
        offsets = np.arange(len(chosen))[:, np.newaxis] * tasks
        draws = np.bincount((chosen + offsets).ravel(), minlength=chosen.size).reshape(chosen.shape)
        return each(draws @ rows)

    from scipy.stats import bootstrap as scipy_bootstrap

    found = scipy_bootstrap(
        (np.arange(tasks),),
        resampled,
        n_resamples=RESAMPLES,
        batch=max(1, 2_000_000 // tasks),  # bounds the memory of a large evaluation's resamples
        confidence_level=level,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(SEED),
    ).confidence_interval
    lows, highs = np.atleast_1d(found.low), np.atleast_1d(found.high)
    return {name: Interval(float(low), float(high), "bootstrap", level) for name, low, high in zip(names, lows, highs)}


def f1(sums: np.ndarray) -> np.ndarray:
    """F1 from summed (true positives, false positives, false negatives) in the last axis; 0 where
    there is nothing to count (scikit-learn's zero_division=0)."""
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator, dtype=float), where=denominator > 0)


def ratio(sums: np.ndarray) -> np.ndarray:
    """The first column's sum over the second's (a mean over the tasks that have a value); 0 where
    the second is 0."""
    top, bottom = sums[..., 0], sums[..., 1]
    return np.divide(top, bottom, out=np.zeros_like(bottom, dtype=float), where=bottom > 0)
