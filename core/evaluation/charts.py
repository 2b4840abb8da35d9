"""Altair charts of evaluation results; each chart carries its data as a DataFrame (``chart_data``).

- ``confusion_heatmap(confusion)``: a ControlReport's confusion matrix, truth down, predicted across;
  a click selects a cell (``clicked_cell`` reads the selection).
- ``accuracy_over_versions(points)``: accuracy per prompt version with its 95% interval, one line per
  task subset.
- ``accuracy_against_cost(rows)``: a model matrix's models, accuracy (with its interval) against cost
  per 1,000 tasks, the Pareto frontier drawn as a line through the models on it.
- ``reliability(bins)``: a reliability diagram: each confidence bin's accuracy against its mean
  confidence, sized by its tasks, beside the diagonal of a perfectly calibrated model.
- ``coverage_against_accuracy(curve, target, chosen)``: at each threshold, the share of tasks at or
  above it against their accuracy with its interval; the target drawn as a rule, the chosen point marked.
"""

from __future__ import annotations

from typing import Any, Mapping

import altair as alt
import pandas as pd

from core.evaluation.metrics import FAILED, NONE


AXIS_LABEL_PX = 220
AXIS_LABEL_CHARS = 28
CELL = "cell"  # the heatmap's selection: the cell clicked
SELECTED_STROKE = "#ff4b4b"


def axis_names(labels: list[str], width: int = AXIS_LABEL_CHARS) -> dict[str, str]:
    """Class names short enough for an axis and still told apart: the words every long name starts
    with are left out ("Customer request: refund" -> "…refund"), then what is still too long is cut.
    The full names stay in the tooltips and tables."""
    long = [label for label in labels if len(label) > width]
    common = _common_words(long) if len(long) > 1 else ""
    shown = {}
    for label in labels:
        name = label
        if label in long and common:
            name = "…" + label[len(common) :].lstrip(" :-–—")
        name = name if len(name) <= width else name[: width - 1].rstrip() + "…"
        taken = set(shown.values())
        shown[label] = name if name not in taken else next(f"{name} ({n})" for n in range(2, len(labels) + 2) if f"{name} ({n})" not in taken)
    return shown


def _common_words(names: list[str]) -> str:
    """The longest run of whole words that every name starts with."""
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    cut = max(prefix.rfind(" "), prefix.rfind(":"))
    return prefix[: cut + 1] if cut > 0 else ""


def confusion_heatmap(confusion: dict[str, Any]) -> alt.LayerChart:
    labels = confusion["labels"]
    # placeholders are there as predictions; as ground truth they are usually empty rows
    rows = [(truth, row) for truth, row in zip(labels, confusion["matrix"]) if truth not in (FAILED, NONE) or any(row)]
    cells = pd.DataFrame(
        [{"truth": truth, "predicted": predicted, "count": count} for truth, row in rows for predicted, count in zip(labels, row)],
        columns=["truth", "predicted", "count"],
    )
    short = axis_names(labels)
    cells["truth axis"] = cells["truth"].map(short)
    cells["predicted axis"] = cells["predicted"].map(short)
    busiest = int(cells["count"].max()) if len(cells) else 0
    base = alt.Chart().encode(
        x=alt.X("predicted axis:N", sort=[short[label] for label in labels], title="Predicted", axis=alt.Axis(labelLimit=AXIS_LABEL_PX)),
        y=alt.Y("truth axis:N", sort=[short[truth] for truth, _ in rows], title="Ground truth", axis=alt.Axis(labelLimit=AXIS_LABEL_PX)),
    )
    # on the full names, not the axis ones: the selection gives back the classes themselves
    cell = alt.selection_point(name=CELL, fields=["truth", "predicted"], toggle=False)
    rect = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="Tasks"),
        stroke=alt.condition(cell, alt.value(SELECTED_STROKE), alt.value(None), empty=False),
        strokeWidth=alt.condition(cell, alt.value(3), alt.value(0), empty=False),
        tooltip=[alt.Tooltip("truth:N", title="Ground truth"), alt.Tooltip("predicted:N", title="Predicted"), alt.Tooltip("count:Q", title="Tasks")],
    ).add_params(cell)
    text = base.mark_text().encode(
        text="count:Q",
        # dark cells get light text
        color=alt.condition(alt.datum.count > busiest / 2, alt.value("white"), alt.value("black")),
    )
    return alt.layer(rect, text, data=cells)


def clicked_cell(selection: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (truth, predicted) classes of the heatmap cell a chart's selection holds; None when no cell is selected."""
    points = selection.get(CELL) or []
    return (points[0]["truth"], points[0]["predicted"]) if points else None


def accuracy_over_versions(points: list[dict[str, Any]]) -> alt.LayerChart:
    """Points are {"version", "accuracy" (0-1), "accuracy_interval", "tasks", "run_id", "subset"}, in the
    order versions are shown: a line per task subset, each point with its 95% interval as an error bar
    (drawn from the ``low`` and ``high`` columns of the chart's data)."""
    rows = [
        {key: point.get(key) for key in ("version", "accuracy", "tasks", "run_id", "subset")}
        | {"low": (point.get("accuracy_interval") or {}).get("low"), "high": (point.get("accuracy_interval") or {}).get("high")}
        for point in points
    ]
    data = pd.DataFrame(rows, columns=["version", "accuracy", "tasks", "run_id", "subset", "low", "high"])
    versions = list(dict.fromkeys(data["version"]))
    accuracy_scale = dict(scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="Accuracy")
    base = alt.Chart(data).encode(x=alt.X("version:N", sort=versions, title="Version"), color=alt.Color("subset:N", title="Tasks"))
    line = base.mark_line(point=True).encode(
        y=alt.Y("accuracy:Q", **accuracy_scale),
        tooltip=[
            alt.Tooltip("version:N", title="Version"),
            alt.Tooltip("accuracy:Q", title="Accuracy", format=".1%"),
            alt.Tooltip("low:Q", title="95% interval from", format=".1%"),
            alt.Tooltip("high:Q", title="95% interval to", format=".1%"),
            alt.Tooltip("tasks:Q", title="Scored tasks"),
            alt.Tooltip("run_id:Q", title="Run"),
            alt.Tooltip("subset:N", title="Tasks"),
        ],
    )
    bars = base.mark_errorbar(ticks=True).encode(y=alt.Y("low:Q", **accuracy_scale), y2="high:Q")
    return alt.layer(line, bars)


def accuracy_against_cost(rows: list[dict[str, Any]]) -> alt.LayerChart:
    """Rows are ``matrix.rows``; models without a price or an accuracy cannot be placed and are left out."""
    placed = [
        {
            "model": f"{row['key']} · {row['model']}",
            "accuracy": row["accuracy"],
            "cost_per_1000": row["cost_per_1000"],
            "low": (row.get("accuracy_interval") or {}).get("low"),
            "high": (row.get("accuracy_interval") or {}).get("high"),
            "scored": row["scored"],
            "frontier": "on the frontier" if row["on_frontier"] else "beaten by another model",
        }
        for row in rows
        if row["accuracy"] is not None and row["cost_per_1000"] is not None
    ]
    data = pd.DataFrame(placed, columns=["model", "accuracy", "cost_per_1000", "low", "high", "scored", "frontier"]).sort_values("cost_per_1000")
    accuracy_scale = dict(scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="Accuracy")
    cost = alt.X("cost_per_1000:Q", title="Cost per 1,000 tasks (US$)", axis=alt.Axis(format="$,.2f"))
    base = alt.Chart(data).encode(x=cost)
    points = base.mark_point(filled=True, size=90).encode(
        y=alt.Y("accuracy:Q", **accuracy_scale),
        color=alt.Color("frontier:N", title="Pareto frontier", scale=alt.Scale(domain=["on the frontier", "beaten by another model"], range=["#ff4b4b", "#8a8d91"])),
        tooltip=[
            alt.Tooltip("model:N", title="Model"),
            alt.Tooltip("accuracy:Q", title="Accuracy", format=".1%"),
            alt.Tooltip("low:Q", title="95% interval from", format=".1%"),
            alt.Tooltip("high:Q", title="95% interval to", format=".1%"),
            alt.Tooltip("cost_per_1000:Q", title="Cost per 1,000 tasks", format="$,.4f"),
            alt.Tooltip("scored:Q", title="Scored tasks"),
        ],
    )
    labels = base.mark_text(align="left", dx=8, dy=-8).encode(y="accuracy:Q", text="model:N")
    bars = base.mark_errorbar(ticks=True).encode(y=alt.Y("low:Q", **accuracy_scale), y2="high:Q")
    line = (
        base.transform_filter(alt.datum.frontier == "on the frontier")
        .mark_line(strokeDash=[4, 3], color="#ff4b4b")
        .encode(y=alt.Y("accuracy:Q", **accuracy_scale), order="cost_per_1000:Q")
    )
    return alt.layer(line, bars, points, labels)


def reliability(bins: list[dict[str, Any]]) -> alt.LayerChart:
    """``bins`` are a Reliability's (``to_dict()["bins"]``); the empty ones are left out."""
    rows = [
        {"bin": f"{b['low']:.1f}-{b['high']:.1f}", "confidence": b["confidence"], "accuracy": b["accuracy"], "tasks": b["tasks"], "gap": b["accuracy"] - b["confidence"]}
        for b in bins
        if b["tasks"]
    ]
    data = pd.DataFrame(rows, columns=["bin", "confidence", "accuracy", "tasks", "gap"])
    unit = dict(scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    diagonal = alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(strokeDash=[4, 3], color="#8a8d91").encode(x="x:Q", y="y:Q")
    points = alt.Chart(data).mark_circle(color="#ff4b4b", opacity=0.85).encode(
        x=alt.X("confidence:Q", title="Mean confidence of the bin", **unit),
        y=alt.Y("accuracy:Q", title="Accuracy in the bin", **unit),
        size=alt.Size("tasks:Q", scale=alt.Scale(range=[60, 600]), legend=None),  # each dot is labelled with its tasks
        tooltip=[
            alt.Tooltip("bin:N", title="Confidence"),
            alt.Tooltip("tasks:Q", title="Tasks"),
            alt.Tooltip("confidence:Q", title="Mean confidence", format=".1%"),
            alt.Tooltip("accuracy:Q", title="Accuracy", format=".1%"),
        ],
    )
    counts = alt.Chart(data).mark_text(dy=-14, fontSize=11).encode(x="confidence:Q", y="accuracy:Q", text="tasks:Q")
    return alt.layer(diagonal, points, counts, data=data)


def coverage_against_accuracy(curve: list[dict[str, Any]], target: float | None = None, chosen: float | None = None) -> alt.LayerChart:
    """``curve`` is ``calibration.curve`` as dicts (threshold, coverage, accuracy, interval, tasks)."""
    rows = [
        {
            "threshold": t["threshold"],
            "coverage": t["coverage"],
            "accuracy": t["accuracy"],
            "low": t["interval"]["low"],
            "high": t["interval"]["high"],
            "tasks": t["tasks"],
            "chosen": chosen is not None and abs(t["threshold"] - chosen) < 1e-9,
        }
        for t in curve
    ]
    data = pd.DataFrame(rows, columns=["threshold", "coverage", "accuracy", "low", "high", "tasks", "chosen"])
    coverage = alt.X("coverage:Q", title="Tasks at or above the threshold (coverage)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"))
    accuracy = dict(scale=alt.Scale(zero=False), axis=alt.Axis(format="%"), title="Accuracy above the threshold")
    base = alt.Chart(data).encode(x=coverage)
    band = base.mark_area(opacity=0.2, color="#1f77b4").encode(y=alt.Y("low:Q", **accuracy), y2="high:Q")
    line = base.mark_line(point=True, color="#1f77b4").encode(
        y=alt.Y("accuracy:Q", **accuracy),
        tooltip=[
            alt.Tooltip("threshold:Q", title="Threshold", format=".2f"),
            alt.Tooltip("coverage:Q", title="Coverage", format=".0%"),
            alt.Tooltip("accuracy:Q", title="Accuracy", format=".1%"),
            alt.Tooltip("low:Q", title="95% interval from", format=".1%"),
            alt.Tooltip("high:Q", title="95% interval to", format=".1%"),
            alt.Tooltip("tasks:Q", title="Tasks"),
        ],
    )
    layers = [band, line]
    if chosen is not None:
        layers.append(base.transform_filter(alt.datum.chosen).mark_point(size=160, filled=True, color="#ff4b4b").encode(y="accuracy:Q"))
    if target is not None:
        layers.append(alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(strokeDash=[4, 3], color="#ff4b4b").encode(y="target:Q"))
    return alt.layer(*layers, data=data)


def chart_data(chart: alt.TopLevelMixin) -> list[dict[str, Any]]:
    """The rows a chart draws."""
    return chart.data.to_dict("records")
