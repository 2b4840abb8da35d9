"""Few-shot examples from a project's ground truth, shown to the model before each task.

A version's ``examples`` setting says how they were chosen and keeps what was chosen, so a re-run
sends the very same messages even if Label Studio's tasks change later:

- ``choose(client, project_id, targets, controls, how=..., k=...)`` draws the examples from the
  *examples* part of the project's ground-truth split, and nowhere else: ``ids`` (the given task ids),
  ``random`` (k of them, seeded), ``per-class`` (one task of each class in turn), or ``similar``
  (keeps the whole part and, for each task, sends the k most like it by cosine similarity over the
  task's text: TF-IDF by default, which needs no key, or the vectors of a saved key's embeddings
  model, kept in the store so a re-run ranks them the same; ``prefetch`` embeds a batch of tasks in
  one request).
- ``for_task(setting, targets, task_id, data)``: the examples one task gets. A task is never its own
  example.

Each example is the task's input, filled into the version's template, as a user message, and its
ground truth, in the answer schema, as the assistant's reply (``core.messages``).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, Sequence


from core import embeddings, labeling, rendering
from core.evaluation import metrics, split
from core.labelstudio import LabelStudioClient

HOW = {
    "ids": "chosen by id",
    "random": "seeded random",
    "per-class": "one per class",
    "similar": "the most similar to each task (TF-IDF)",
}


class FewShotError(ValueError):
    """The examples cannot be chosen as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Example:
    task_id: int
    data: dict[str, Any]
    answer: dict[str, Any]


def choose(
    client: LabelStudioClient,
    project_id: int,
    targets: labeling.Targets,
    controls: Sequence[str],
    *,
    how: str,
    k: int,
    seed: int = 0,
    ids: Sequence[int] = (),
    embeddings: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The ``examples`` setting of a version: how they were chosen and the examples themselves.
    With ``how="similar"``, ``embeddings`` (key, model) ranks them by that embeddings model instead
    of TF-IDF; the examples are embedded now, so a key that cannot embed is refused here."""
    if how not in HOW:
        raise FewShotError(f"examples: {how!r} is not one of {', '.join(HOW)}.")
    if how != "ids" and k < 1:
        raise FewShotError("examples: ask for at least one example (k), or none at all.")
    parts = split.get(project_id)
    if parts is None:
        raise FewShotError(
            f"Few-shot examples come only from the examples part of the project's ground-truth split, and project "
            f"{project_id} has none yet: split it on the Evaluate page or with `python -m core ground-truth split --project {project_id}`."
        )
    allowed = parts.parts["examples"]
    pool = _examples(client, project_id, targets, controls, allowed)
    if how == "ids":
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not wanted:
            raise FewShotError("examples: give the task ids to use as examples, e.g. 12,40.")
        outside = [i for i in wanted if i not in allowed]
        if outside:
            raise FewShotError(
                f"examples: task {', '.join(map(str, outside))} is not in the examples part of the split "
                f"({', '.join(map(str, allowed)) or 'empty'}); examples come only from it, so that nothing is tested on what it was shown."
            )
        chosen = [pool[i] for i in wanted if i in pool]
        k = len(chosen)
    elif how == "random":
        chosen = [pool[i] for i in sorted(random.Random(seed).sample(sorted(pool), min(k, len(pool))))]
    elif how == "per-class":
        chosen = _one_per_class(pool, targets, controls, k, seed)
    else:
        chosen = [pool[i] for i in sorted(pool)]
    if not chosen:
        raise FewShotError("examples: the examples part has no task whose ground truth answers every output of this version.")
    setting = {
        "how": how,
        "k": k,
        "seed": seed,
        "ids": [e.task_id for e in chosen] if how != "similar" else [],
        "pool": [{"task_id": e.task_id, "data": e.data, "answer": e.answer} for e in chosen],
    }
    if embeddings and how == "similar":
        setting["embeddings"] = {"key": embeddings[0], "model": embeddings[1]}
        _embedded(setting, [task_text(targets, e.data) for e in chosen])
    return setting


def for_task(setting: dict[str, Any] | None, targets: labeling.Targets, task_id: int | None, data: dict[str, Any]) -> list[Example]:
    """The examples one task is shown, in order."""
    if not setting:
        return []
    pool = [Example(e["task_id"], e["data"], e["answer"]) for e in setting["pool"] if e["task_id"] != task_id]
    if setting["how"] != "similar":
        return pool[: setting["k"]]
    if not pool:
        return []
    texts = tuple(task_text(targets, e.data) for e in pool)
    if setting.get("embeddings"):
        *examples, this = _embedded(setting, [*texts, task_text(targets, data)]).vectors
        scores = [embeddings.cosine(this, vector) for vector in examples]
        ranked = sorted(range(len(pool)), key=lambda i: (-scores[i], pool[i].task_id))
        return [pool[i] for i in ranked[: setting["k"]]]
    try:
        vectorizer, matrix = _fitted(texts)
    except ValueError:  # no words at all to compare: the examples in their stored order
        return pool[: setting["k"]]
    from sklearn.metrics.pairwise import linear_kernel  # scikit-learn takes seconds to import: only when asked

    scores = linear_kernel(vectorizer.transform([task_text(targets, data)]), matrix)[0]
    ranked = sorted(range(len(pool)), key=lambda i: (-scores[i], pool[i].task_id))
    return [pool[i] for i in ranked[: setting["k"]]]


def prefetch(setting: dict[str, Any] | None, targets: labeling.Targets, datas: Sequence[dict[str, Any]]) -> embeddings.Embedded | None:
    """Embed a batch of tasks (and the examples) in one request before their messages are built;
    None when the setting ranks by no embeddings model."""
    if not setting or not setting.get("embeddings"):
        return None
    texts = [task_text(targets, e["data"]) for e in setting["pool"]] + [task_text(targets, d) for d in datas]
    return _embedded(setting, texts)


def describe(setting: dict[str, Any] | None) -> str:
    if not setting:
        return "none"
    if setting["how"] == "similar":
        by = f"embeddings: {setting['embeddings']['key']} · {setting['embeddings']['model']}" if setting.get("embeddings") else "TF-IDF"
        return f"the {setting['k']} most similar to each task ({by}) of {len(setting['pool'])} examples"
    seed = f", seed {setting['seed']}" if setting["how"] == "random" else ""
    return f"{len(setting['pool'])} {HOW[setting['how']]}{seed}: tasks {', '.join(str(e['task_id']) for e in setting['pool'])}"


# -- details ----------------------------------------------------------------------------------------


def _examples(client: LabelStudioClient, project_id: int, targets: labeling.Targets, controls: Sequence[str], allowed: list[int]) -> dict[int, Example]:
    """The examples part's tasks whose ground truth answers every control, by task id."""
    found = {}
    allowed_ids = set(allowed)
    for task in client.tasks(project_id):
        if task.id not in allowed_ids or task.ground_truth is None:
            continue
        answer = labeling.answer_from_regions(targets, controls, task.ground_truth.result, task.data)
        if answer is not None:
            found[task.id] = Example(task.id, task.data, answer)
    return found


def _one_per_class(pool: dict[int, Example], targets: labeling.Targets, controls: Sequence[str], k: int, seed: int) -> list[Example]:
    outputs = [targets.output(c) for c in controls]
    single = [o for o in outputs if metrics.single_label(o)]
    if len(single) != 1:
        raise FewShotError("examples: 'one per class' needs exactly one single-choice output among the version's outputs; choose 'random' or 'ids' instead.")
    output = single[0]
    by_class: dict[str, list[Example]] = {}
    for task_id in sorted(pool):
        by_class.setdefault(str(pool[task_id].answer[output.name]), []).append(pool[task_id])
    rng = random.Random(seed)
    for group in by_class.values():
        rng.shuffle(group)
    order = [label for label in output.labels if label in by_class] + sorted(set(by_class) - set(output.labels))
    chosen = []
    while len(chosen) < k and any(by_class.values()):  # a round of one per class, then another
        for label in order:
            if by_class[label] and len(chosen) < k:
                chosen.append(by_class[label].pop(0))
    return chosen


def task_text(targets: labeling.Targets, data: dict[str, Any]) -> str:
    """A task's text for similarity: every text input the config reads, in order."""
    shown = []
    for source in targets.inputs:
        if source.tag == "Image":
            continue
        try:
            shown.append(rendering.field_text(source, data.get(source.field)))
        except rendering.RenderError:
            continue
    return "\n".join(shown)


def _embedded(setting: dict[str, Any], texts: list[str]) -> embeddings.Embedded:
    try:
        return embeddings.vectors(setting["embeddings"]["key"], setting["embeddings"]["model"], texts)
    except (embeddings.EmbeddingError, LookupError, ValueError) as error:  # no such key, a refused request
        raise FewShotError(f"examples: the most similar examples could not be found: {error}") from None


@functools.lru_cache(maxsize=16)  # one fit per version's pool, not one per task
def _fitted(texts: tuple[str, ...]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)
    return vectorizer, vectorizer.fit_transform(texts)
