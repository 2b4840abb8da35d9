"""Bulk prediction: a chosen version over every task of its project, written into Label Studio.

- ``scope``: every task, or only those without a prediction of this version yet;
- ``estimate``: tasks, tokens and cost before starting, from tiktoken counts of the rendered prompts
  of a sample of tasks and the average answer length of this prompt's past runs;
- ``start``: a prediction run (the run engine executes it, writing predictions as items finish);
- managing a project's predictions: model versions with counts, deleting one version's predictions,
  and turning them into annotations.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from core import audit, budgets, calls, connection, identity, keys, labeling, messages, pricing, recent, runs, store, tokens
from core.labelstudio import LabelStudioClient, ModelVersion
from core.prompts import Version
from core.rendering import RenderError
from core.runs import RunView

ESTIMATE_SAMPLE = 50


@dataclass(frozen=True)
class Scope:
    task_ids: list[int]
    description: str
    already_predicted: int = 0


@dataclass(frozen=True)
class Estimate:
    tasks: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    sampled: int
    unrenderable: int  # sampled tasks that cannot be put into the prompt (they will fail, unpaid)
    cached: int  # sampled tasks whose identical call already succeeded (answered from the store, unpaid)
    answer_basis: str  # where the answer length came from
    answers_per_task: int = 1  # a version measuring agreement asks for n answers to each call
    batch_cost_usd: float | None = None  # the same calls at the Batch API's price

    def cost_for(self, mode: str) -> float | None:
        """The estimated cost when sent live or through the Batch API."""
        return self.batch_cost_usd if mode == "batch" else self.cost_usd

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def _share(self, sampled_count: int) -> int:
        """A count among the sampled tasks, scaled to every task of the scope."""
        return round(self.tasks * sampled_count / self.sampled) if self.sampled else 0

    @property
    def answered_before(self) -> int:
        """Tasks (estimated) that earlier identical calls will answer, unpaid."""
        return self._share(self.cached)

    @property
    def failing(self) -> int:
        """Tasks (estimated) that cannot be put into the prompt: they fail, unpaid."""
        return self._share(self.unrenderable)

    @property
    def calls(self) -> int:
        """Calls (estimated) that will be sent and paid for."""
        return max(0, self.tasks - self.answered_before - self.failing)

    def describe(self) -> str:
        """What will be sent and what it will cost, said as an estimate."""
        if not self.tasks:
            return "Nothing to send."
        exact = self.sampled == self.tasks
        about = "" if exact else "about "
        parts = [f"{about}{self.calls:,} of the {self.tasks:,} tasks will be sent to the model"]
        if self.answered_before:
            parts.append(f"{about}{self.answered_before:,} will be answered from earlier identical calls at no cost")
        if self.failing:
            parts.append(f"{about}{self.failing:,} cannot be put into the prompt and will fail unpaid")
        text = "; ".join(parts) + "."
        if self.answers_per_task > 1:
            text += f" Each call asks for {self.answers_per_task} answers (confidence by their agreement): {self.answers_per_task} times the output tokens."
        basis = (
            f"Estimated from {self.sampled} sampled tasks: prompts counted with tiktoken, answer length from {self.answer_basis}."
            if not exact
            else f"Prompts counted with tiktoken on every task; answer length from {self.answer_basis}."
        )
        if not self.calls:
            return text[0].upper() + text[1:] + " Nothing will be paid."
        return text[0].upper() + text[1:] + " " + basis


def scope(version: Version, client: LabelStudioClient, *, only_missing: bool = False) -> Scope:
    ids = client.task_ids(version.project_id)
    if not only_missing:
        return Scope(ids, f"all {len(ids)} tasks")
    have = {p.task_id for p in client.predictions(version.project_id) if p.model_version == version.model_version}
    missing = [i for i in ids if i not in have]
    return Scope(missing, f"{len(missing)} tasks without a prediction of {version.model_version}", already_predicted=len(ids) - len(missing))


def estimate(version: Version, chosen: Scope, client: LabelStudioClient, *, sample: int = ESTIMATE_SAMPLE, seed: int = 0, cache: str = "auto") -> Estimate:
    targets = labeling.read(client.label_config(version.project_id))
    picked = sorted(random.Random(seed).sample(chosen.task_ids, min(sample, len(chosen.task_ids))))
    images = messages.ImageLinks(client.url, client.file)
    key, schema = keys.get(version.provider_key), labeling.schema(targets, version.controls)
    counts, unrenderable, cached = [], 0, 0
    reuse = runs.reuses_answers(version, cache)
    for task in client.tasks(version.project_id, ids=picked):
        try:
            sent = messages.build(version, targets, task.data, images, task.id)
        except RenderError:
            unrenderable += 1
            continue
        if reuse and _answered_before(calls.request(version, key, sent, schema).hash):
            cached += 1  # the store answers it: nothing to pay
        else:
            counts.append(tokens.prompt_tokens(sent, version.model))
    per_input = sum(counts) / len(counts) if counts else 0.0
    per_answer, basis = _answer_length(version, targets)
    per_output = per_answer * (version.samples or 1)
    payable = len(chosen.task_ids) * (len(counts) / len(picked)) if picked else 0
    input_tokens, output_tokens = round(per_input * payable), round(per_output * payable)
    return Estimate(
        tasks=len(chosen.task_ids),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=pricing.cost(version.model, input_tokens, output_tokens),
        batch_cost_usd=pricing.cost(version.model, input_tokens, output_tokens, batch=True),
        sampled=len(picked),
        unrenderable=unrenderable,
        cached=cached,
        answer_basis=basis,
        answers_per_task=version.samples or 1,
    )


def start(
    version: Version,
    chosen: Scope,
    client: LabelStudioClient,
    *,
    concurrency: int = runs.DEFAULT_CONCURRENCY,
    max_cost_usd: float | None = None,
    cache: str = "auto",
    label_config: str | None = None,
    estimated_cost_usd: float | None = None,
    mode: str = "live",
) -> RunView:
    """Record a prediction run over ``chosen``. Under a monthly budget, a run without an estimate is
    estimated here first, so that one that would pass the budget is refused before it starts."""
    if estimated_cost_usd is None and budgets.applying(version, identity.current().email):
        estimated_cost_usd = estimate(version, chosen, client, cache=cache).cost_for(mode)
    run = runs.create(
        version,
        chosen.task_ids,
        kind="predict",
        subset={"kind": "only-missing" if chosen.already_predicted else "all", "description": chosen.description},
        label_config=label_config if label_config is not None else client.label_config(version.project_id),
        concurrency=concurrency,
        max_cost_usd=max_cost_usd,
        cache=cache,
        estimated_cost_usd=estimated_cost_usd,
        mode=mode,
    )
    recent.remember(project_id=version.project_id, prompt=version.prompt)
    return run


def start_now(
    version: Version,
    client: LabelStudioClient,
    *,
    only_missing: bool = False,
    concurrency: int = runs.DEFAULT_CONCURRENCY,
    max_cost_usd: float | None = None,
    cache: str = "auto",
    mode: str = "live",
) -> tuple[RunView, Scope]:
    """Choose the tasks afresh (they may have changed since the estimate), start the run and hand it
    to a worker; the two reads from Label Studio go out together, so the first call is sent sooner."""
    with ThreadPoolExecutor(1) as pool:
        config = pool.submit(client.label_config, version.project_id)
        chosen = scope(version, client, only_missing=only_missing)
        label_config = config.result()
    run = start(version, chosen, client, concurrency=concurrency, max_cost_usd=max_cost_usd, cache=cache, label_config=label_config, mode=mode)
    runs.launch(run.id)
    return run, chosen


def written(run_id: int) -> int:
    """How many of the run's answers are in Label Studio."""
    with store.session() as s:
        return len(s.exec(select(store.RunItem.id).where(store.RunItem.run_id == run_id, store.RunItem.written_to_labelstudio == True)).all())  # noqa: E712


def scores(prompt: str, project_id: int) -> dict[int, dict[str, Any]]:
    """Each evaluated version's latest score on ground truth, by version number."""
    from core.evaluation import evaluate  # evaluation builds on runs; imported here to keep predict light

    return {int(point["version"][1:]): point for point in evaluate.history(prompt, project_id)}


def best_version(prompt: str, project_id: int) -> int | None:
    """The version with the best accuracy on ground truth (the later one in a tie), if any was scored."""
    found = scores(prompt, project_id)
    return max(sorted(found, reverse=True), key=lambda n: found[n]["accuracy"]) if found else None


def unevaluated_warning(version: Version) -> str | None:
    """A sentence to confirm before predicting with a version never scored on ground truth."""
    found = scores(version.prompt, version.project_id)
    if version.number in found:
        return None
    text = f"v{version.number} was never evaluated on ground truth"
    top = best_version(version.prompt, version.project_id)
    if top is not None:
        text += f"; v{top} scored {found[top]['accuracy'] * 100:.0f}% on {found[top]['tasks']} tasks"
    return text + "."


def model_versions(client: LabelStudioClient, project_id: int) -> list[ModelVersion]:
    return client.model_versions(project_id)


def delete(version: Version, client: LabelStudioClient) -> int:
    """Delete this version's predictions from Label Studio (other versions' stay); return how many."""
    return delete_named(client, version.project_id, version.model_version)


def to_annotations(version: Version, client: LabelStudioClient) -> int:
    """Turn this version's predictions into annotations; return how many were created."""
    return to_annotations_named(client, version.project_id, version.model_version)


def prediction_count(version: Version, client: LabelStudioClient) -> int:
    return next((v.prediction_count for v in client.model_versions(version.project_id) if v.name == version.model_version), 0)


# -- details --------------------------------------------------------------------------------------


def _answered_before(call_hash: str) -> bool:
    with store.session() as s:
        return s.exec(select(store.RunItem.id).where(store.RunItem.call_hash == call_hash, store.RunItem.status == "ok").limit(1)).first() is not None


def _answer_length(version: Version, targets: labeling.Targets) -> tuple[float, str]:
    """Average output tokens of one answer: this version's past answers, else this prompt's, else a
    sample answer's."""
    for label, numbers in (("past runs of this version", [version.number]), ("past runs of this prompt", None)):
        found = _past_output_tokens(version, numbers)
        if found:
            return sum(found) / len(found), label
    return float(tokens.typical_answer_tokens(targets, version.controls, version.model)), "the length of a typical answer"


def _past_output_tokens(version: Version, numbers: list[int] | None) -> list[float]:
    past = [r for r in runs.runs(prompt=version.prompt, project_id=version.project_id) if numbers is None or r.version in numbers]
    if not past:
        return []
    with store.session() as s:
        found = s.exec(
            select(store.RunItem.output_tokens, store.RunItem.samples).where(
                store.RunItem.run_id.in_([r.id for r in past]), store.RunItem.status == "ok", store.RunItem.from_cache == False  # noqa: E712
            )
        ).all()
    return [tokens_ / len(samples or [None]) for tokens_, samples in found if tokens_]  # per answer, of the n sampled


# -- for the Predict page: past runs, and model versions by name ------------------------------------


def run_rows(prompt: str, project_id: int) -> list[dict[str, Any]]:
    """The prompt's prediction runs, newest first, one row each."""
    return [
        {
            "run": run.id,
            "version": f"v{run.version}",
            "status": runs.status_of(run),
            "scope": run.subset.get("description", ""),
            "done": run.done,
            "failed": run.failed,
            "written": written(run.id),
            "cost": run.cost_usd,
            "started": run.started_at or run.created_at,
            "started by": run.started_by or "",
        }
        for run in runs.runs(prompt=prompt, project_id=project_id, kind="predict")
    ]


def delete_named(client: LabelStudioClient, project_id: int, model_version: str) -> int:
    """Delete one model version's predictions by name (a saved version's or any other); return how many."""
    user = identity.require_role("member", "delete predictions")
    deleted = connection.acting_client(client, user).delete_model_version(project_id, model_version)
    audit.record("predictions deleted", target=model_version, by=user, detail={"project": project_id, "predictions": deleted})
    return deleted


def to_annotations_named(client: LabelStudioClient, project_id: int, model_version: str) -> int:
    """Turn one model version's predictions (by name) into annotations, made in Label Studio as the
    acting user when they gave their own token; return how many were created."""
    user = identity.require_role("member", "turn predictions into annotations")
    own = connection.acting_client(client, user)
    created = own.predictions_to_annotations(project_id, model_version)
    audit.record(
        "predictions turned into annotations",
        target=model_version,
        by=user,
        detail={"project": project_id, "annotations": created, "in Label Studio as": "their own token" if own is not client else "the shared connection"},
    )
    return created
