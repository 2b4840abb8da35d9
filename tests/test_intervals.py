"""core.evaluation.intervals and the intervals the metrics and comparisons carry, against values
worked out by hand: Wilson's formula written out, and bootstrap intervals against the exact
bootstrap distribution (every resample enumerated, or its binomial law)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.metrics import f1_score

from core.evaluation import intervals
from core.evaluation.compare import compare
from core.evaluation.metrics import Scored, score
from core.labeling import Output
from tests.helpers import wilson_by_hand

SENTIMENT = Output("sentiment", "Choices", ("text",), labels=("Positive", "Negative", "Neutral"))


def choices(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


@pytest.mark.parametrize("k, n", [(40, 50), (0, 10), (10, 10), (1, 3), (214, 220)])
def test_wilson_matches_the_formula(k, n):
    found = intervals.wilson(k, n)
    assert (found.low, found.high) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)
    assert found.method == "wilson" and found.level == 0.95


def test_eighty_percent_of_fifty_is_really_67_to_89():
    found = intervals.wilson(40, 50)
    assert (round(found.low * 100), round(found.high * 100)) == (67, 89)


def test_no_trial_has_no_interval():
    assert intervals.wilson(0, 0) is None
    assert intervals.bootstrap([], intervals.ratio) is None


def test_the_bootstrap_of_a_proportion_matches_its_binomial_law():
    # 8 right of 10: a resample's accuracy is Binomial(10, 0.8) / 10. P(k <= 4) = 0.6%,
    # P(k <= 5) = 3.3%, so the 2.5% point is 0.5; P(k <= 9) = 89% < 97.5%, so the top is 1.0.
    assert binom.cdf(4, 10, 0.8) < 0.025 < binom.cdf(5, 10, 0.8) and binom.cdf(9, 10, 0.8) < 0.975
    right = [1] * 8 + [0] * 2
    found = intervals.bootstrap([[r, 1] for r in right], intervals.ratio)
    assert (found.low, found.high, found.method) == (0.5, 1.0, "bootstrap")


def test_the_bootstrap_is_the_same_every_time():
    right = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0]
    first = intervals.bootstrap([[r, 1] for r in right], intervals.ratio)
    assert intervals.bootstrap([[r, 1] for r in right], intervals.ratio) == first


def test_one_task_or_every_task_alike_gives_a_point():
    assert intervals.bootstrap([[1, 1]], intervals.ratio) == intervals.Interval(1.0, 1.0, "bootstrap")
    assert intervals.bootstrap([[0, 1]] * 7, intervals.ratio) == intervals.Interval(0.0, 0.0, "bootstrap")


def test_macro_f1_interval_lies_where_the_exact_bootstrap_distribution_puts_it():
    """Five tasks: every one of the 5^5 resamples scored by scikit-learn gives the exact bootstrap
    distribution of macro F1; the 2,000-resample interval must sit between its 1.5% and 3.5% points
    (low) and its 96.5% and 98.5% points (high)."""
    truth = ["Positive", "Positive", "Negative", "Neutral", "Negative"]
    said = ["Positive", "Negative", "Negative", "Neutral", "Positive"]
    labels = ["Positive", "Negative", "Neutral"]
    exact = [
        f1_score([truth[i] for i in pick], [said[i] for i in pick], labels=labels, average="macro", zero_division=0)
        for pick in itertools.product(range(5), repeat=5)
    ]
    report = score([SENTIMENT], [Scored(i, choices(p), choices(t)) for i, (p, t) in enumerate(zip(said, truth))])
    found = report.controls["sentiment"].scores["macro_f1_interval"]
    assert report.controls["sentiment"].scores["macro_f1"] == pytest.approx(f1_score(truth, said, labels=labels, average="macro"))
    assert np.quantile(exact, 0.015) <= found["low"] <= np.quantile(exact, 0.035)
    assert np.quantile(exact, 0.965) <= found["high"] <= np.quantile(exact, 0.985)
    assert found["method"] == "bootstrap"


def test_every_classification_figure_carries_its_interval():
    # 4 tasks: Positive right twice, a Negative called Positive, a Neutral failed
    items = [
        Scored(1, choices("Positive"), choices("Positive")),
        Scored(2, choices("Positive"), choices("Positive")),
        Scored(3, choices("Positive"), choices("Negative")),
        Scored(4, None, choices("Neutral")),
    ]
    report = score([SENTIMENT], items)
    assert (report.accuracy_interval["low"], report.accuracy_interval["high"]) == pytest.approx(wilson_by_hand(2, 4))
    control = report.controls["sentiment"]
    assert (control.scores["accuracy_interval"]["low"], control.scores["accuracy_interval"]["high"]) == pytest.approx(wilson_by_hand(2, 4))
    positive, negative, neutral = control.per_class
    # Positive: precision 2 of the 3 answered Positive, recall 2 of its 2
    assert (positive["precision_interval"]["low"], positive["precision_interval"]["high"]) == pytest.approx(wilson_by_hand(2, 3))
    assert (positive["recall_interval"]["low"], positive["recall_interval"]["high"]) == pytest.approx(wilson_by_hand(2, 2))
    # Negative was never answered: no precision to bound; recall 0 of 1
    assert negative["precision_interval"] is None
    assert (negative["recall_interval"]["low"], negative["recall_interval"]["high"]) == pytest.approx(wilson_by_hand(0, 1))
    assert neutral["f1_interval"]["low"] == 0.0 and neutral["f1_interval"]["high"] == 0.0  # never right in any resample
    assert control.scores["micro_f1_interval"]["low"] <= control.scores["micro_f1"] <= control.scores["micro_f1_interval"]["high"]


def test_a_run_that_answered_nothing_has_no_interval():
    report = score([SENTIMENT], [Scored(1, None, choices("Positive")), Scored(2, None, choices("Negative"))])
    assert report.accuracy is None and report.accuracy_interval is None


def test_the_gain_of_one_run_over_another_has_its_paired_bootstrap_interval():
    # 8 of 20 tasks flip wrong -> right, none the other way: a resample's gain is Binomial(20, 0.4) / 20.
    # P(k <= 3) = 1.6% and P(k <= 4) = 5.1%: the 2.5% point is 0.2; P(k <= 11) = 94.4%, P(k <= 12) = 97.9%: the top is 0.6.
    assert binom.cdf(3, 20, 0.4) < 0.025 < binom.cdf(4, 20, 0.4) and binom.cdf(11, 20, 0.4) < 0.975 < binom.cdf(12, 20, 0.4)
    a = {task: task > 8 and task % 2 == 0 for task in range(1, 21)}
    b = {task: task <= 8 or a[task] for task in range(1, 21)}
    result = compare(a, b, "v1", "v2")
    assert result.wrong_to_right == list(range(1, 9)) and result.right_to_wrong == []
    assert (result.difference_interval["low"], result.difference_interval["high"]) == (0.2, 0.6)
    assert "(95% interval +20.0 to +60.0 points; p = 0.0078)" in result.verdict()
