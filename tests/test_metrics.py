"""core.evaluation.metrics and charts: every control type scored against hand-computed figures."""

from __future__ import annotations

import json
import math

import altair as alt
import pytest

from core.evaluation import charts
from core.evaluation.metrics import Scored, cell_of, score, single_label
from core.labeling import Output

SENTIMENT = Output("sentiment", "Choices", ("text",), labels=("Positive", "Negative", "Neutral"))
TOPICS = Output("topics", "Choices", ("text",), labels=("Price", "Service", "Speed"), multiple=True)
CATEGORY = Output("category", "Taxonomy", ("text",), labels=("Food", "Fruit", "Bread", "Drink"))
ENTITIES = Output("entities", "Labels", ("text",), labels=("Person", "Place"))
SUMMARY = Output("summary", "TextArea", ("text",))
STARS = Output("stars", "Number", ("text",), minimum=0, maximum=10)
QUALITY = Output("quality", "Rating", ("text",), minimum=1, maximum=5)
BETTER = Output("better", "Pairwise", ("text", "other"), labels=("left", "right"))


def region(control: str, kind: str, value: dict) -> dict:
    return {"from_name": control, "to_name": "text", "type": kind, "value": value}


def choices(*labels: str, control: str = "sentiment") -> list[dict]:
    return [region(control, "choices", {"choices": list(labels)})]


def taxonomy(*paths: tuple[str, ...]) -> list[dict]:
    return [region("category", "taxonomy", {"taxonomy": [list(p) for p in paths]})]


def spans(*found: tuple[int, int, str]) -> list[dict]:
    return [region("entities", "labels", {"start": s, "end": e, "labels": [label]}) for s, e, label in found]


def text(value: str) -> list[dict]:
    return [region("summary", "textarea", {"text": [value]})]


def number(value: float, control: str = "stars") -> list[dict]:
    return [region(control, "number", {"number": value})]


def rating(value: int) -> list[dict]:
    return [region("quality", "rating", {"rating": value})]


def pairwise(side: str) -> list[dict]:
    return [region("better", "pairwise", {"selected": side})]


def run(*pairs: tuple[list[dict] | None, list[dict]]) -> list[Scored]:
    """Items numbered from 1: (predicted regions or None when failed, truth regions)."""
    return [Scored(task_id, predicted, truth) for task_id, (predicted, truth) in enumerate(pairs, start=1)]


def figures(scores: dict) -> dict:
    """The figures without their intervals (tested on their own in test_intervals.py)."""
    return {name: value for name, value in scores.items() if not name.endswith("_interval")}


def row(label, precision, recall, f1, support) -> dict:
    return {"label": label, "precision": pytest.approx(precision), "recall": pytest.approx(recall), "f1": pytest.approx(f1), "support": support}


def test_single_choice_with_a_failure():
    report = score([SENTIMENT], run(
        (choices("Positive"), choices("Positive")),
        (choices("Negative"), choices("Positive")),
        (choices("Negative"), choices("Negative")),
        (None, choices("Negative")),
        (choices("Neutral"), choices("Neutral")),
        (choices("Positive"), choices("Neutral")),
    ))
    assert (report.tasks, report.completed, report.failed) == (6, 5, 1)
    assert report.completion_rate == pytest.approx(5 / 6)
    assert report.accuracy == pytest.approx(3 / 6)
    assert report.correct_task_ids == [1, 3, 5]
    control = report.controls["sentiment"]
    assert control.tag == "Choices"
    # the failed item predicts "(failed)": it lowers Negative's recall, and no class's precision
    assert [figures(r) for r in control.per_class] == [
        row("Positive", 1 / 2, 1 / 2, 1 / 2, 2),
        row("Negative", 1 / 2, 1 / 2, 1 / 2, 2),
        row("Neutral", 1, 1 / 2, 2 / 3, 2),
    ]
    # micro: 3 right of 5 predictions within the labels, of 6 truths -> P 3/5, R 1/2
    assert figures(control.scores) == {"tasks": 6, "accuracy": pytest.approx(1 / 2), "macro_f1": pytest.approx(5 / 9), "micro_f1": pytest.approx(6 / 11)}
    assert control.confusion == {
        "labels": ["Positive", "Negative", "Neutral", "(failed)"],
        "matrix": [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]],
    }


@pytest.mark.filterwarnings("error")
def test_one_class_seen_makes_a_one_cell_matrix_without_a_warning():
    report = score([SENTIMENT], run((choices("Positive"), choices("Positive")), (choices("Positive"), choices("Positive"))))
    assert report.controls["sentiment"].confusion == {"labels": ["Positive"], "matrix": [[2]]}


def test_multiple_choices_exact_sets_and_per_label():
    report = score([TOPICS], run(
        (choices("Price", "Speed", control="topics"), choices("Price", "Speed", control="topics")),
        (choices("Price", "Service", control="topics"), choices("Price", control="topics")),
        (None, choices("Service", control="topics")),
        (choices("Speed", control="topics"), choices("Speed", control="topics")),
    ))
    control = report.controls["topics"]
    assert figures(control.scores) == {"tasks": 4, "accuracy": pytest.approx(1 / 2), "macro_f1": pytest.approx(2 / 3), "micro_f1": pytest.approx(4 / 5)}
    assert [figures(r) for r in control.per_class] == [row("Price", 1, 1, 1, 2), row("Service", 0, 0, 0, 1), row("Speed", 1, 1, 1, 2)]
    assert control.confusion is None


def test_taxonomy_paths_are_labels():
    report = score([CATEGORY], run(
        (taxonomy(("Food", "Fruit")), taxonomy(("Food", "Fruit"))),
        (taxonomy(("Food", "Fruit")), taxonomy(("Food", "Bread"))),
        (taxonomy(("Drink",), ("Food", "Bread")), taxonomy(("Drink",))),
    ))
    control = report.controls["category"]
    assert [figures(r) for r in control.per_class] == [
        row("Drink", 1, 1, 1, 1),
        row("Food / Bread", 0, 0, 0, 1),
        row("Food / Fruit", 1 / 2, 1, 2 / 3, 1),
    ]
    # micro: 2 right of 4 predicted paths, of 3 true ones -> P 1/2, R 2/3
    assert figures(control.scores) == {"tasks": 3, "accuracy": pytest.approx(1 / 3), "macro_f1": pytest.approx(5 / 9), "micro_f1": pytest.approx(4 / 7)}


def test_spans_match_exactly_and_failures_miss_their_spans():
    report = score([ENTITIES], run(
        # Person twice, both right; Place overlaps its truth but ends early: wrong
        (spans((0, 4, "Person"), (13, 17, "Place"), (25, 29, "Person")), spans((0, 4, "Person"), (13, 18, "Place"), (25, 29, "Person"))),
        (None, spans((0, 5, "Person"))),
        (spans((3, 8, "Person")), spans((3, 8, "Place"))),  # right span, wrong label
    ))
    control = report.controls["entities"]
    # 2 hits of 4 predicted spans and 5 true ones
    assert figures(control.scores) == {"tasks": 3, "accuracy": 0.0, "precision": pytest.approx(1 / 2), "recall": pytest.approx(2 / 5), "f1": pytest.approx(4 / 9)}
    assert [figures(r) for r in control.per_class] == [row("Person", 2 / 3, 2 / 3, 2 / 3, 3), row("Place", 0, 0, 0, 2)]


def test_text_exact_normalized_and_similar():
    report = score([SUMMARY], run(
        (text("A trip."), text("A trip.")),
        (text("a  TRIP"), text("A trip.")),
        (text("Pari"), text("Paris")),
        (None, text("Home")),
    ))
    # "pari" against "paris": 2 * 4 matching characters / 9 characters = 8/9; a failure is 0
    assert figures(report.controls["summary"].scores) == {
        "tasks": 4,
        "accuracy": pytest.approx(2 / 4),
        "exact_match": pytest.approx(1 / 4),
        "normalized_match": pytest.approx(2 / 4),
        "similarity": pytest.approx((1 + 1 + 8 / 9 + 0) / 4),
    }


def test_number_and_rating_exact_match_and_mean_absolute_error():
    report = score([STARS, QUALITY], run(
        (number(7) + rating(4), number(7) + rating(4)),
        (number(4) + rating(2), number(7) + rating(4)),
        (None, number(2) + rating(1)),
        ([], number(5)),  # completed, but said nothing: no error to measure
    ))
    assert figures(report.controls["stars"].scores) == {"tasks": 4, "accuracy": 1 / 4, "exact_match": 1 / 4, "mae": pytest.approx(3 / 2), "mae_tasks": 2}
    assert figures(report.controls["quality"].scores) == {"tasks": 3, "accuracy": 1 / 3, "exact_match": 1 / 3, "mae": pytest.approx(1), "mae_tasks": 2}


def test_mean_absolute_error_is_none_without_a_value_to_compare():
    report = score([QUALITY], run((None, rating(3)), ([], rating(2))))
    assert figures(report.controls["quality"].scores) == {"tasks": 2, "accuracy": 0.0, "exact_match": 0.0, "mae": None, "mae_tasks": 0}


def test_pairwise_accuracy_and_confusion():
    report = score([BETTER], run(
        (pairwise("left"), pairwise("left")),
        (pairwise("right"), pairwise("left")),
        (pairwise("right"), pairwise("right")),
        (None, pairwise("right")),
    ))
    control = report.controls["better"]
    assert control.scores["accuracy"] == pytest.approx(1 / 2) and control.scores["tasks"] == 4
    assert control.confusion == {"labels": ["left", "right", "(failed)"], "matrix": [[1, 1, 0], [0, 1, 1], [0, 0, 0]]}


def test_overall_accuracy_needs_every_output_right_and_skips_controls_absent_from_truth():
    report = score([SENTIMENT, STARS], run(
        (choices("Positive") + number(7), choices("Positive") + number(7)),
        (choices("Positive") + number(6), choices("Positive") + number(7)),
        (choices("Negative"), choices("Negative")),  # no stars on either side: right
        (choices("Negative") + number(3), choices("Negative")),  # stars the truth does not have: wrong
        ([], choices("Positive") + number(5)),  # an empty answer: "(none)"
    ))
    assert report.accuracy == pytest.approx(2 / 5) and report.correct_task_ids == [1, 3]
    assert report.correct_by_task() == {1: True, 2: False, 3: True, 4: False, 5: False}
    stars = figures(report.controls["stars"].scores)
    assert stars == {"tasks": 3, "accuracy": pytest.approx(1 / 3), "exact_match": pytest.approx(1 / 3), "mae": pytest.approx(1 / 2), "mae_tasks": 2}
    sentiment = report.controls["sentiment"]
    assert sentiment.scores["tasks"] == 5 and sentiment.scores["accuracy"] == pytest.approx(4 / 5)
    assert [figures(r) for r in sentiment.per_class] == [row("Positive", 1, 2 / 3, 4 / 5, 3), row("Negative", 1, 1, 1, 2)]
    assert sentiment.confusion == {"labels": ["Positive", "Negative", "(none)"], "matrix": [[2, 0, 1], [0, 2, 0], [0, 0, 0]]}


def test_each_task_is_in_the_confusion_cell_of_its_truth_and_prediction():
    items = run(
        (choices("Negative"), choices("Positive")),
        (None, choices("Negative")),  # failed
        ([], choices("Neutral")),  # an answer naming no choice
        (choices("Positive", "Neutral"), choices("Positive")),  # two choices where one was expected
        (choices("Positive"), []),  # the truth says nothing for the control: not scored
    )
    assert [cell_of(SENTIMENT, item) for item in items] == [
        ("Positive", "Negative"),
        ("Negative", "(failed)"),
        ("Neutral", "(none)"),
        ("Positive", "Neutral, Positive"),
        None,
    ]
    # the cells counted are the confusion matrix
    confusion = score([SENTIMENT], items).controls["sentiment"].confusion
    assert confusion["labels"] == ["Positive", "Negative", "Neutral", "Neutral, Positive", "(none)", "(failed)"]
    counted = {(t, p): n for t, row in zip(confusion["labels"], confusion["matrix"]) for p, n in zip(confusion["labels"], row) if n}
    assert counted == {("Positive", "Negative"): 1, ("Negative", "(failed)"): 1, ("Neutral", "(none)"): 1, ("Positive", "Neutral, Positive"): 1}
    assert [single_label(o) for o in (SENTIMENT, BETTER, TOPICS, CATEGORY, STARS)] == [True, True, False, False, False]


def test_truth_labels_outside_the_config_keep_their_support():
    report = score([SENTIMENT], run((choices("Positive"), choices("Mixed")), (choices("Positive"), choices("Positive"))))
    assert [r["label"] for r in report.controls["sentiment"].per_class] == ["Positive", "Mixed"]
    assert report.controls["sentiment"].per_class[1]["support"] == 1


def test_no_items_scores_without_dividing_by_zero():
    everything = [SENTIMENT, TOPICS, CATEGORY, ENTITIES, SUMMARY, STARS, QUALITY, BETTER]
    report = score(everything, [])
    assert (report.tasks, report.completion_rate, report.accuracy) == (0, None, None)
    assert all(c.scores["tasks"] == 0 and c.scores["accuracy"] is None for c in report.controls.values())
    assert report.controls["sentiment"].confusion is None


def test_the_report_is_json():
    report = score([SENTIMENT, ENTITIES], run((choices("Positive") + spans((0, 4, "Person")), choices("Negative") + spans((0, 4, "Person")))))
    loaded = json.loads(json.dumps(report.to_dict()))
    assert loaded["controls"]["sentiment"]["confusion"]["labels"] == ["Positive", "Negative"]
    assert loaded["controls"]["entities"]["scores"]["f1"] == 1.0
    assert report.controls["entities"].to_dict() == report.to_dict()["controls"]["entities"]


def test_confusion_heatmap_draws_every_cell_but_the_empty_placeholder_rows():
    confusion = {"labels": ["left", "right", "(failed)"], "matrix": [[1, 1, 0], [0, 1, 1], [0, 0, 0]]}
    chart = charts.confusion_heatmap(confusion)
    assert isinstance(chart, alt.LayerChart)
    cells = charts.chart_data(chart)
    assert len(cells) == 6 and {c["truth"] for c in cells} == {"left", "right"}
    assert {"truth": "right", "predicted": "(failed)", "count": 1, "truth axis": "right", "predicted axis": "(failed)"} in cells
    assert chart.to_dict()["layer"][0]["mark"]["type"] == "rect"


def test_long_class_names_stay_apart_on_the_heatmap_axes_and_whole_in_its_tooltips():
    names = [f"Customer request about {topic} for the account of a company in the European Union" for topic in ("a refund", "an invoice", "a refund of")]
    shown = charts.axis_names([*names, "Other"])
    assert shown[names[0]].startswith("…a refund") and shown[names[1]].startswith("…an invoice") and shown["Other"] == "Other"
    assert len(set(shown.values())) == 4 and all(len(s) <= charts.AXIS_LABEL_CHARS + 4 for s in shown.values())
    confusion = {"labels": names, "matrix": [[1, 0, 0], [0, 2, 0], [0, 0, 3]]}
    spec = charts.confusion_heatmap(confusion).to_dict()
    assert spec["layer"][0]["encoding"]["tooltip"][0]["field"] == "truth"  # the whole name on hover


def test_a_click_on_a_heatmap_cell_selects_its_whole_class_names():
    names = [f"Customer request about {topic} for the account of a company in the European Union" for topic in ("a refund", "an invoice")]
    spec = charts.confusion_heatmap({"labels": names, "matrix": [[1, 1], [0, 2]]}).to_dict()
    (param,) = spec["params"]
    # the rect layer holds the selection, on the full names (the axes show shortened ones)
    assert param["name"] == charts.CELL and param["select"] == {"type": "point", "fields": ["truth", "predicted"], "toggle": False}
    assert param["views"] == [spec["layer"][0]["name"]] and spec["layer"][0]["mark"]["type"] == "rect"
    assert spec["layer"][0]["encoding"]["stroke"]["condition"] == {"param": charts.CELL, "value": charts.SELECTED_STROKE, "empty": False}
    # what Streamlit gives back after a click, and before one
    assert charts.clicked_cell({charts.CELL: [{"truth": names[0], "predicted": names[1]}]}) == (names[0], names[1])
    assert charts.clicked_cell({charts.CELL: {}}) is None and charts.clicked_cell({}) is None


def test_accuracy_over_versions_keeps_version_order():
    points = [
        {"version": "v2", "accuracy": 0.8, "tasks": 50, "run_id": 4, "subset": "ground truth"},
        {"version": "v10", "accuracy": 0.9, "tasks": 50, "run_id": 7, "subset": "ground truth"},
    ]
    points[0]["accuracy_interval"] = {"low": 0.67, "high": 0.89, "method": "wilson", "level": 0.95}
    chart = charts.accuracy_over_versions(points)
    first, second = charts.chart_data(chart)
    assert first == {k: v for k, v in points[0].items() if k != "accuracy_interval"} | {"low": 0.67, "high": 0.89}
    assert math.isnan(second.pop("low")) and math.isnan(second.pop("high"))  # no interval: no error bar
    assert second == points[1]
    line, bars = chart.to_dict()["layer"]
    assert line["encoding"]["x"]["sort"] == ["v2", "v10"] and line["mark"]["type"] == "line"
    assert line["encoding"]["y"]["scale"]["domain"] == [0, 1] and line["encoding"]["y"]["axis"]["format"] == "%"
    assert bars["mark"]["type"] == "errorbar" and (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == ("low", "high")
