"""The confidence on the pages, through AppTest, on the real Label Studio and the stand-in: the
Evaluate page's reliability chart and threshold picker against hand counts, the Predict page's
accept (asked first) landing in Label Studio, and the Prompts page saving a version that measures
agreement."""

from __future__ import annotations

import pytest

from core import acceptance, prompts
from tests.helpers import chart_rows, open_page
from tests.test_acceptance import OPEN_TASKS, TRUTH_TASKS, confidence_of, hand_threshold, predicted, wrong  # noqa: F401 - the fixture

BINS = 10


def test_the_evaluate_page_shows_the_reliability_and_the_threshold_for_a_target(predicted):
    found, task_of, v1 = predicted
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=found.id)
    assert any(h.value == "Confidence" for h in app.subheader)

    by_bin: dict[int, list[int]] = {}
    for n in range(TRUTH_TASKS):
        by_bin.setdefault(min(int(confidence_of(n) * BINS), BINS - 1), []).append(n)
    (reliability,) = chart_rows(app, "circle")
    rows = {row["bin"]: row for row in reliability}
    assert set(rows) == {f"{b / BINS:.1f}-{(b + 1) / BINS:.1f}" for b in by_bin}
    for b, members in by_bin.items():
        row = rows[f"{b / BINS:.1f}-{(b + 1) / BINS:.1f}"]
        assert row["tasks"] == len(members)
        assert row["accuracy"] == pytest.approx(sum(not wrong(n) for n in members) / len(members))
        assert row["confidence"] == pytest.approx(sum(confidence_of(n) for n in members) / len(members), abs=1e-4)
    ece = sum(abs(sum(not wrong(n) for n in m) / len(m) - sum(confidence_of(n) for n in m) / len(m)) * len(m) for m in by_bin.values()) / TRUTH_TASKS
    assert {m.label: m.value for m in app.metric}["Expected calibration error"] == f"{ece:.3f}"

    app.number_input(key="ev_target").set_value(80.0).run()
    t = hand_threshold(0.8)
    assert any(f"For 80.0%: at or above {t:.2f}" in s.value for s in app.success)
    assert app.select_slider(key="ev_threshold").value == pytest.approx(t)
    (coverage,) = chart_rows(app, "area")
    assert [round(r["threshold"], 2) for r in coverage] == sorted({confidence_of(n) for n in range(TRUTH_TASKS)})
    assert [r["coverage"] for r in coverage if r["chosen"]] == [pytest.approx(sum(confidence_of(n) >= t for n in range(TRUTH_TASKS)) / TRUTH_TASKS)]


def test_the_predict_page_accepts_after_asking_and_says_what_to_expect(predicted, ls_client):
    found, task_of, v1 = predicted
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=found.id)
    app.number_input(key="pr_accept_target").set_value(80.0).run()
    t = hand_threshold(0.8)
    sure = {task_of[n] for n in range(TRUTH_TASKS, TRUTH_TASKS + OPEN_TASKS) if confidence_of(n) >= t}
    assert any(f"{len(sure)} predictions of sentiment@v1 are at or above {t:.2f}" in i.value for i in app.info)

    app.button(key="pr_accept").click().run()
    assert any(f"Create {len(sure)} annotations" in w.value for w in app.warning)
    assert all(task.annotations == () for task in ls_client.tasks(found.id) if task.ground_truth is None)  # nothing before the yes

    app.button(key="pr_accept_confirm").click().run()
    assert not app.exception, app.exception
    marker = ls_client.user_id(acceptance.ACCEPTED_BY)
    made = {task.id for task in ls_client.tasks(found.id) if any(a.completed_by == marker for a in task.annotations)}
    assert made == sure
    said = " ".join(s.value for s in app.success)
    assert f"Accepted {len(sure)} predictions as annotations; {OPEN_TASKS - len(sure)} tasks below the threshold are left for review" in said
    assert "Expect about" in said

    app.button(key="pr_review_tab").click().run()
    assert any(f"Review first: sentiment@v1 below {t:.2f}" in s.value and f"{OPEN_TASKS - len(sure)} tasks" in s.value for s in app.success)


def test_the_prompts_page_saves_a_version_that_measures_agreement(predicted):
    found, task_of, v1 = predicted
    app = open_page("views/2_Prompts.py", project_key="project", project_id=found.id)
    app.radio(key="ed_confidence").set_value("agreement of several answers").run()
    assert any("At temperature 0" in w.value for w in app.warning)
    app.number_input(key="ed_temperature").set_value(0.7).run()
    app.number_input(key="ed_samples").set_value(7).run()
    app.button(key="save").click().run()
    assert not app.exception, app.exception
    saved = prompts.version("sentiment", project_id=found.id)
    assert (saved.number, saved.samples, saved.temperature) == (2, 7, 0.7)
