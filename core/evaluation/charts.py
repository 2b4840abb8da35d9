"""Altair charts of evaluation results; each chart carries its data as a DataFrame (``chart_data``).

- ``confusion_heatmap(confusion)``: a ControlReport's confusion matrix, truth down, predicted across.
- ``accuracy_over_versions(points)``: accuracy per prompt version, one line per task subset.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from core.evaluation.metrics import FAILED, NONE


def confusion_heatmap(confusion: dict[str, Any]) -> alt.LayerChart:
    labels = confusion["labels"]
    # placeholders are there as predictions; as ground truth they are usually empty rows
    rows = [(truth, row) for truth, row in zip(labels, confusion["matrix"]) if truth not in (FAILED, NONE) or any(row)]
    cells = pd.DataFrame(
        [{"truth": truth, "predicted": predicted, "count": count} for truth, row in rows for predicted, count in zip(labels, row)],
        columns=["truth", "predicted", "count"],
    )
    busiest = int(cells["count"].max()) if len(cells) else 0
    base = alt.Chart().encode(
        x=alt.X("predicted:N", sort=labels, title="Predicted"),
        y=alt.Y("truth:N", sort=[truth for truth, _ in rows], title="Ground truth"),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="Tasks"),
        tooltip=["truth:N", "predicted:N", "count:Q"],
    )
    text = base.mark_text().encode(
        text="count:Q",
        # dark cells get light text
        color=alt.condition(alt.datum.count > busiest / 2, alt.value("white"), alt.value("black")),
    )
    return alt.layer(rect, text, data=cells)


def accuracy_over_versions(points: list[dict[str, Any]]) -> alt.Chart:
    """Points are {"version", "accuracy" (0-1), "tasks", "run_id", "subset"}, in the order versions are shown."""
    data = pd.DataFrame(points, columns=["version", "accuracy", "tasks", "run_id", "subset"])
    versions = list(dict.fromkeys(data["version"]))
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("version:N", sort=versions, title="Version"),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="Accuracy"),
            color=alt.Color("subset:N", title="Tasks"),
            tooltip=[
                alt.Tooltip("version:N", title="Version"),
                alt.Tooltip("accuracy:Q", title="Accuracy", format=".1%"),
                alt.Tooltip("tasks:Q", title="Scored tasks"),
                alt.Tooltip("run_id:Q", title="Run"),
                alt.Tooltip("subset:N", title="Tasks"),
            ],
        )
    )


def chart_data(chart: alt.TopLevelMixin) -> list[dict[str, Any]]:
    """The rows a chart draws."""
    return chart.data.to_dict("records")
