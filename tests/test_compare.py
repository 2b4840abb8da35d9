"""core.evaluation.compare: flips between two runs and McNemar's exact test, checked by hand."""

from __future__ import annotations

import pytest

from core.evaluation.compare import compare


def test_eight_flips_all_one_way_are_more_than_noise():
    a = {task: task > 8 for task in range(1, 11)}  # right on 9 and 10 only
    b = {task: True for task in range(1, 11)}
    result = compare(a, b, label_a="v1", label_b="v2")
    assert result.tasks == 10
    assert (result.accuracy_a, result.accuracy_b, result.difference) == (pytest.approx(0.2), pytest.approx(1.0), pytest.approx(0.8))
    assert result.wrong_to_right == [1, 2, 3, 4, 5, 6, 7, 8] and result.right_to_wrong == []
    assert result.p_value == pytest.approx(2 * 0.5**8)  # 0.0078125
    assert result.verdict() == "v2 is 80.0 points better than v1 on 10 tasks (95% interval +50.0 to +100.0 points; p = 0.0078): more than noise."


def test_a_few_flips_either_way_could_be_noise():
    a = {1: False, 2: False, 3: False, 4: True, 5: True}
    b = {1: True, 2: True, 3: True, 4: False, 5: True}
    result = compare(a, b, "v1", "v2")
    assert result.wrong_to_right == [1, 2, 3] and result.right_to_wrong == [4]
    # two-sided binomial, 3 of 4: P(X <= 1) + P(X >= 3) = (1 + 4 + 4 + 1) / 16
    assert result.p_value == pytest.approx(10 / 16)
    assert result.difference == pytest.approx(2 / 5)
    assert result.verdict() == "v2 is 40.0 points better than v1 on 5 tasks (95% interval -40.0 to +100.0 points; p = 0.62): could be noise."


def test_worse_is_said_so():
    result = compare({1: True, 2: True}, {1: False, 2: True}, "v1", "v2")
    assert result.right_to_wrong == [1] and result.p_value == pytest.approx(1.0)
    assert result.verdict() == "v2 is 50.0 points worse than v1 on 2 tasks (95% interval -100.0 to 0.0 points; p = 1): could be noise."


def test_no_difference():
    same = {1: True, 2: False, 3: True}
    result = compare(same, dict(same))
    assert (result.difference, result.p_value, result.wrong_to_right, result.right_to_wrong) == (0.0, 1.0, [], [])
    assert result.verdict() == "No difference on 3 tasks."
    balanced = compare({1: True, 2: False}, {1: False, 2: True})
    assert balanced.difference == 0.0 and balanced.p_value == pytest.approx(1.0)
    assert balanced.verdict() == "No difference on 2 tasks."


def test_only_tasks_in_both_runs_count():
    a = {1: False, 2: True, 3: False, 99: False}
    b = {1: True, 2: True, 3: False, 100: True}
    result = compare(a, b)
    assert result.tasks == 3 and result.wrong_to_right == [1]
    assert (result.accuracy_a, result.accuracy_b) == (pytest.approx(1 / 3), pytest.approx(2 / 3))


def test_no_common_tasks():
    result = compare({1: True}, {2: True}, "v1", "v2")
    assert (result.tasks, result.difference, result.p_value) == (0, 0.0, 1.0)
    assert result.verdict() == "v1 and v2 have no task in common."
