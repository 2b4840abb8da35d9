"""A run scored against ground truth: overall accuracy and each control's own figures.

- ``score(outputs, items)``: a ``Report`` for one run; each item is a task's predicted regions
  (None when the item failed) and its ground-truth regions.

Every proportion carries its 95% Wilson interval and every F1, mean similarity and mean error its
bootstrap interval over tasks (core.evaluation.intervals), each beside its figure as ``<name>_interval``:
``{"low", "high", "method", "level"}``, or None when there is nothing to measure.

A failed item counts as wrong everywhere. A task whose ground truth says nothing for a control is
left out of that control's figures (each control's ``scores["tasks"]`` says how many it used), but
still counts in overall accuracy, where a task is right when every output's answer equals the truth's.
"""

from __future__ import annotations

import difflib
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from core.evaluation import intervals
from core.evaluation.answers import answer, normalized, written
from core.labeling import Output

FAILED = "(failed)"  # what a failed item predicts, in per-class figures and confusion matrices
NONE = "(none)"  # an answer that names no choice


@dataclass(frozen=True)
class Scored:
    """One task of a run."""

    task_id: int
    predicted: list[dict] | None  # None: the item failed
    truth: list[dict]

    @property
    def failed(self) -> bool:
        return self.predicted is None


@dataclass(frozen=True)
class ControlReport:
    name: str
    tag: str
    scores: dict[str, Any]
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confusion: dict[str, Any] | None = None  # {"labels", "matrix"}: rows truth, columns predicted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    tasks: int
    completed: int
    failed: int
    completion_rate: float | None  # None when there are no tasks
    accuracy: float | None
    accuracy_interval: dict | None  # Wilson, over every task scored
    correct_task_ids: list[int]
    task_ids: list[int]
    controls: dict[str, ControlReport]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def correct_by_task(self) -> dict[int, bool]:
        """Per task id, whether the run got it right: the input of ``compare``."""
        right = set(self.correct_task_ids)
        return {task_id: task_id in right for task_id in self.task_ids}


def score(outputs: Sequence[Output], items: Iterable[Scored]) -> Report:
    items = list(items)
    completed = sum(not i.failed for i in items)
    correct = sorted(i.task_id for i in items if all(right(o, i) for o in outputs))
    return Report(
        tasks=len(items),
        completed=completed,
        failed=len(items) - completed,
        completion_rate=_share(completed, len(items)),
        accuracy=_share(len(correct), len(items)) if completed else None,  # no answer, no score (not 0%)
        accuracy_interval=_wilson(len(correct), len(items)) if completed else None,
        correct_task_ids=correct,
        task_ids=sorted(i.task_id for i in items),
        controls={o.name: _control(o, items) for o in outputs},
    )


# -- per control type -------------------------------------------------------------------------------


def single_label(output: Output) -> bool:
    """Whether the output is scored as one class per task, with a confusion matrix."""
    return output.tag == "Pairwise" or (output.tag == "Choices" and not output.multiple)


def cell_of(output: Output, item: Scored) -> tuple[str, str] | None:
    """The confusion-matrix cell a task counts in for a single-label output, (truth, predicted):
    a failed item predicts FAILED, an answer naming no choice NONE. None when the truth says nothing
    for the output (the task is not scored on it)."""
    if answer(output, item.truth) is None:
        return None
    predicted = FAILED if item.failed else _label(answer(output, item.predicted))
    return _label(answer(output, item.truth)), predicted


def _control(output: Output, items: list[Scored]) -> ControlReport:
    scored = [i for i in items if judged(output, i)]
    scorer = _SCORERS[output.tag]
    if output.tag == "Choices" and output.multiple:
        scorer = _label_sets
    scores, per_class, confusion = scorer(output, scored)
    answered = any(not i.failed for i in scored)
    accuracy = _accuracy(output, scored) if answered else None
    interval = _wilson(sum(right(output, i) for i in scored), len(scored)) if answered else None
    return ControlReport(
        output.name, output.tag, {"tasks": len(scored), "accuracy": accuracy, "accuracy_interval": interval, **scores}, per_class, confusion
    )


def _single_label(output: Output, items: list[Scored]):
    """Single-choice Choices and Pairwise: classification figures and the confusion matrix."""
    cells = [cell_of(output, i) for i in items]
    truth = [t for t, _ in cells]
    predicted = [p for _, p in cells]
    labels = _present(output.labels, truth + predicted)
    scores, per_class = _classification(truth, predicted, labels)
    true, said = np.array(truth, dtype=object)[:, None], np.array(predicted, dtype=object)[:, None]
    names = np.array(labels, dtype=object)[None, :]
    counts = _counts(true == names, said == names)
    return _with_intervals(scores, per_class, counts), per_class, _confusion(truth, predicted, labels)


def _label_sets(output: Output, items: list[Scored]):
    """Multiple-choice Choices and Taxonomy: per-label figures over the sets of labels."""
    truth = [_names(output, answer(output, i.truth)) for i in items]
    predicted = [frozenset() if i.failed else _names(output, answer(output, i.predicted)) for i in items]
    seen = [label for labels in truth + predicted for label in labels]
    labels = _present(output.labels if output.tag == "Choices" else (), seen)
    if not labels:
        return {"macro_f1": None, "micro_f1": None}, [], None
    from sklearn.preprocessing import MultiLabelBinarizer  # scikit-learn takes seconds to import: only when scoring

    binarizer = MultiLabelBinarizer(classes=labels)
    columns = list(range(len(labels)))  # indicator matrices name labels by column
    true, said = binarizer.fit_transform(truth), binarizer.transform(predicted)
    scores, per_class = _classification(true, said, labels, columns)
    return _with_intervals(scores, per_class, _counts(true.astype(bool), said.astype(bool))), per_class, None


def _spans(output: Output, items: list[Scored]):
    """Labels: spans match only when start, end and label are all equal."""
    truth, predicted, hits = Counter(), Counter(), Counter()
    by_task = []  # per task, (hits, predicted, truth) per label: what the intervals resample
    for item in items:
        true_spans = answer(output, item.truth)
        found = frozenset() if item.failed else answer(output, item.predicted) or frozenset()
        task = [Counter(label for _, _, label in spans) for spans in (true_spans & found, found, true_spans)]
        hits.update(task[0])
        predicted.update(task[1])
        truth.update(task[2])
        by_task.append(task)
    labels = _present(output.labels, list(truth | predicted))
    per_class = [{"label": label, **_prf(hits[label], predicted[label], truth[label]), "support": truth[label]} for label in labels]
    overall = _prf(hits.total(), predicted.total(), truth.total())
    # spans of one task are not independent trials: every figure's interval resamples tasks
    counts = np.array([[[h[label], p[label] - h[label], t[label] - h[label]] for label in labels] for h, p, t in by_task], dtype=float)
    counts = counts.reshape(len(items), len(labels) * 3)
    statistics = {}
    for column, label in enumerate(labels):
        for figure, statistic in _SPAN_FIGURES.items():
            statistics[f"{label}\0{figure}"] = lambda sums, c=column, f=statistic: f(_by_label(sums)[..., c, :])
    for figure, statistic in _SPAN_FIGURES.items():
        statistics[figure] = lambda sums, f=statistic: f(_by_label(sums).sum(axis=-2))
    found = _bootstrap_each(counts, statistics)
    for row in per_class:
        row |= {f"{figure}_interval": found[f"{row['label']}\0{figure}"] for figure in _SPAN_FIGURES}
    overall |= {f"{figure}_interval": found[figure] for figure in _SPAN_FIGURES}
    return overall, per_class, None


def _text(output: Output, items: list[Scored]):
    """TextArea: exact, normalized and approximate agreement."""
    exact, similarity = [], []
    for item in items:
        true_text = written(output, item.truth)
        said = None if item.failed else written(output, item.predicted)
        exact.append(said == true_text)
        similarity.append(0.0 if said is None else _similarity(said, true_text))
    normalized_right = [right(output, i) for i in items]
    return {
        "exact_match": _mean(exact),
        "exact_match_interval": _wilson(sum(exact), len(exact)),
        # normalized match is answer equality, the same rule as "accuracy"
        "normalized_match": _accuracy(output, items),
        "normalized_match_interval": _wilson(sum(normalized_right), len(items)),
        "similarity": _mean(similarity),
        "similarity_interval": _bootstrap([[value, 1.0] for value in similarity], intervals.ratio),
    }, [], None


def _numbers(output: Output, items: list[Scored]):
    """Number and Rating: exact matches and the mean absolute error where both sides have a value."""
    errors = [
        abs(said - answer(output, item.truth))
        for item in items
        if not item.failed and (said := answer(output, item.predicted)) is not None
    ]
    return {
        "exact_match": _accuracy(output, items),
        "exact_match_interval": _wilson(sum(right(output, i) for i in items), len(items)),
        "mae": _mean(errors),
        "mae_interval": _bootstrap([[error, 1.0] for error in errors], intervals.ratio),
        "mae_tasks": len(errors),
    }, [], None


_SCORERS: dict[str, Callable] = {
    "Choices": _single_label,
    "Pairwise": _single_label,
    "Taxonomy": _label_sets,
    "Labels": _spans,
    "TextArea": _text,
    "Number": _numbers,
    "Rating": _numbers,
}


# -- details ----------------------------------------------------------------------------------------


def right(output: Output, item: Scored) -> bool:
    """Whether the task's answer for ``output`` says what its ground truth says (a failure never does)."""
    return not item.failed and answer(output, item.predicted) == answer(output, item.truth)


def judged(output: Output, item: Scored) -> bool:
    """Whether the task's ground truth says something for ``output``, so that it is scored on it."""
    return answer(output, item.truth) is not None


def _accuracy(output: Output, items: list[Scored]) -> float | None:
    return _mean([right(output, i) for i in items])


def _label(found: Any) -> str:
    """A single-label answer as one class name."""
    if isinstance(found, str):
        return found
    if not found:
        return NONE
    return ", ".join(sorted(found))  # more than one choice where one was expected: its own class


def _names(output: Output, found: frozenset | None) -> frozenset[str]:
    if not found:
        return frozenset()
    if output.tag == "Taxonomy":
        return frozenset(" / ".join(path) for path in found)
    return found


def _present(configured: Sequence[str], seen: Iterable[str]) -> list[str]:
    """The labels seen, in the config's order, then any the config does not name, sorted.

    Labels outside the config come from ground truth written under an older config; they keep
    their support rather than vanish. The placeholders for failed and empty answers are never labels.
    """
    seen = set(seen) - {FAILED, NONE}
    return [label for label in configured if label in seen] + sorted(seen - set(configured))


def _classification(truth, predicted, labels: list[str], columns: list | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not labels:
        return {"macro_f1": None, "micro_f1": None}, []
    from sklearn.metrics import precision_recall_fscore_support

    columns = labels if columns is None else columns
    per_label = precision_recall_fscore_support(truth, predicted, labels=columns, zero_division=0)
    per_class = [
        {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, *per_label)
    ]
    scores = {
        f"{average}_f1": float(precision_recall_fscore_support(truth, predicted, labels=columns, average=average, zero_division=0)[2])
        for average in ("macro", "micro")
    }
    return scores, per_class


def _counts(true: np.ndarray, said: np.ndarray) -> np.ndarray:
    """Per task and label, (true positive, false positive, false negative), from boolean matrices of
    shape (tasks, labels): whether the truth, and the answer, hold the label."""
    return np.stack([true & said, ~true & said, true & ~said], axis=-1).astype(float)


def _with_intervals(scores: dict[str, Any], per_class: list[dict[str, Any]], counts: np.ndarray) -> dict[str, Any]:
    """Intervals beside the classification figures: Wilson for each class's precision (over the tasks
    answered with it) and recall (over its support), the bootstrap for F1; adds them to ``per_class``
    in place and returns the scores with theirs."""
    if not counts.size:  # no task, or no label to count
        return scores | {"macro_f1_interval": None, "micro_f1_interval": None}
    totals = counts.sum(axis=0)
    for row, (tp, fp, fn) in zip(per_class, totals):
        row["precision_interval"] = _wilson(tp, tp + fp)
        row["recall_interval"] = _wilson(tp, tp + fn)
    statistics = {str(column): lambda sums, c=column: intervals.f1(_by_label(sums)[..., c, :]) for column in range(len(per_class))}
    statistics["macro"] = lambda sums: intervals.f1(_by_label(sums)).mean(axis=-1)
    statistics["micro"] = lambda sums: intervals.f1(_by_label(sums).sum(axis=-2))
    found = _bootstrap_each(counts.reshape(len(counts), -1), statistics)
    for column, row in enumerate(per_class):
        row["f1_interval"] = found[str(column)]
    return scores | {"macro_f1_interval": found["macro"], "micro_f1_interval": found["micro"]}


_SPAN_FIGURES = {"precision": lambda sums: _precision(sums), "recall": lambda sums: _recall(sums), "f1": intervals.f1}


def _by_label(sums: np.ndarray) -> np.ndarray:
    return sums.reshape(*sums.shape[:-1], -1, 3)


def _precision(sums: np.ndarray) -> np.ndarray:
    return intervals.ratio(np.stack([sums[..., 0], sums[..., 0] + sums[..., 1]], axis=-1))


def _recall(sums: np.ndarray) -> np.ndarray:
    return intervals.ratio(np.stack([sums[..., 0], sums[..., 0] + sums[..., 2]], axis=-1))


def _wilson(successes: float, trials: float) -> dict | None:
    found = intervals.wilson(int(successes), int(trials))
    return found.to_dict() if found else None


def _bootstrap(per_task, statistic) -> dict | None:
    found = intervals.bootstrap(per_task, statistic)
    return found.to_dict() if found else None


def _bootstrap_each(per_task, statistics) -> dict[str, dict | None]:
    return {name: found.to_dict() if found else None for name, found in intervals.bootstrap_each(per_task, statistics).items()}


def _confusion(truth: list[str], predicted: list[str], labels: list[str]) -> dict[str, Any] | None:
    if not truth:
        return None
    extra = [label for label in (NONE, FAILED) if label in truth or label in predicted]
    everything = labels + extra
    from sklearn.metrics import confusion_matrix

    with warnings.catch_warnings():
        # The labels are given: one label seen makes a 1x1 matrix, as it should.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        matrix = confusion_matrix(truth, predicted, labels=everything)
    return {"labels": everything, "matrix": matrix.tolist()}


def _prf(hits: int, predicted: int, truth: int) -> dict[str, float]:
    precision = hits / predicted if predicted else 0.0
    recall = hits / truth if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _similarity(said: str, truth: str) -> float:
    return difflib.SequenceMatcher(None, normalized(said), normalized(truth)).ratio()


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
