"""A control's answer read out of Label Studio result regions, in a form that compares as a user
would: a set of choices, a set of taxonomy paths, a set of (start, end, label) spans, normalized
text, a number, or the side a pairwise comparison chose.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable

from core.labeling import Output

VALUE_KEY = {
    "Choices": "choices",
    "Taxonomy": "taxonomy",
    "Labels": "labels",
    "TextArea": "text",
    "Number": "number",
    "Rating": "rating",
    "Pairwise": "selected",
}


def answer(output: Output, regions: Iterable[dict[str, Any]]) -> Hashable:
    """What ``regions`` say for ``output``; None when they say nothing for it."""
    mine = [r.get("value") or {} for r in regions if r.get("from_name") == output.name]
    if not mine:
        return None
    key = VALUE_KEY[output.tag]
    if output.tag == "Choices":
        return frozenset(c for v in mine for c in v.get(key) or [])
    if output.tag == "Taxonomy":
        return frozenset(tuple(path) for v in mine for path in v.get(key) or [])
    if output.tag == "Labels":
        return frozenset((int(v["start"]), int(v["end"]), label) for v in mine for label in v.get(key) or [])
    if output.tag == "TextArea":
        return normalized(" ".join(t for v in mine for t in v.get(key) or []))
    value = mine[0].get(key)
    if output.tag in ("Number", "Rating") and value is not None:
        return float(value)
    return value


def written(output: Output, regions: Iterable[dict[str, Any]]) -> str | None:
    """A TextArea's text exactly as written (its lines joined by a space); None when the regions say nothing for it."""
    mine = [r.get("value") or {} for r in regions if r.get("from_name") == output.name]
    if not mine:
        return None
    return " ".join(t for v in mine for t in v.get(VALUE_KEY["TextArea"]) or [])


def normalized(text: str) -> str:
    """Text compared without regard to case, spacing or a final full stop."""
    return " ".join(text.casefold().split()).rstrip(".")


def matches(outputs: Iterable[Output], predicted: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str, bool]:
    """For each output, whether the prediction says what the ground truth says."""
    return {o.name: answer(o, predicted) == answer(o, truth) for o in outputs}


def shown(output: Output, regions: Iterable[dict[str, Any]]) -> str:
    """The answer as a short readable string, for tables."""
    found = answer(output, regions)
    if found is None:
        return "—"
    if output.tag == "Taxonomy":
        return "; ".join(" / ".join(path) for path in sorted(found))
    if output.tag == "Labels":
        return "; ".join(f"{label} [{start}:{end}]" for start, end, label in sorted(found))
    if isinstance(found, frozenset):
        return ", ".join(sorted(found))
    if isinstance(found, float):
        return f"{found:g}"
    return str(found)
