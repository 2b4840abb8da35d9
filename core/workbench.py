"""The prompt workbench: one Label Studio project, loaded once, to write prompts against.

It answers what the prompt page and ``prompts`` commands need: what the project's config asks for
and which fields its tasks have; a draft checked before it is saved; the exact messages a task
would send; and "try it": one real call on one task, with the answer, its regions, whether it
matches the ground truth, tokens, cost and latency.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from core import audit, calls, confidence, connection, fewshot, identity, keys, labeling, messages, pricing, prompts, providers
from core.evaluation import answers
from core.labelstudio import LabelStudioClient, LabelStudioError, Project, Task
from core.prompts import PromptError, Version
from core.rendering import RenderError

DRAFT_NAME = "draft"


@dataclass(frozen=True)
class Trial:
    """One draft tried on one task: everything the user needs to judge the answer."""

    task_id: int
    messages: list[dict[str, Any]]
    request: dict[str, Any] | None  # the body sent, or None when nothing could be sent
    raw: str | None
    parsed: dict[str, Any] | None
    regions: list[dict[str, Any]]
    error: str | None
    ground_truth: list[dict[str, Any]] | None
    matches: dict[str, bool] | None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float | None = None
    confidence: float | None = None  # core.confidence: None when the provider gave nothing to measure it by

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def correct(self) -> bool | None:
        """Whether every chosen output matches the ground truth; None when the task has none."""
        if self.matches is None:
            return None
        return self.ok and all(self.matches.values())

    @property
    def differs_in(self) -> list[str]:
        """The outputs whose answer is not the ground truth's."""
        return [name for name, matched in (self.matches or {}).items() if not matched]


class Workbench:
    def __init__(self, client: LabelStudioClient, project: Project, config: str, fields: list[str]):
        self.client = client
        self.project = project
        self.targets = labeling.read(config)
        self.fields = fields
        self.images = messages.ImageLinks(client.url, client.file)
        self._ground_truth_ids: list[int] | None = None

    @classmethod
    def open(cls, project_id: int, client: LabelStudioClient | None = None) -> "Workbench":
        client = client or connection.client()
        project = client.project(project_id)
        return cls(client, project, client.label_config(project_id), client.task_fields(project_id))

    # -- drafts -----------------------------------------------------------------------------------

    def variables(self) -> list[str]:
        """What a template may insert: the inputs' fields, the tasks' other fields, then the labels."""
        fields = dict.fromkeys([*self.targets.fields, *self.fields])
        return [f"{{{f}}}" for f in fields] + ["{labels}"] + [f"{{labels:{o.name}}}" for o in self.targets.outputs]

    def starter_template(self) -> str:
        """A first template that works for this project, for the user to improve."""
        return f"Label the task below.\n\n{prompts.inputs_shown(self.targets)}\n\nAnswer for each of these:\n{{labels}}"

    def draft(self, name: str = DRAFT_NAME, **settings: Any) -> Version:
        """An unsaved version (number 0); outputs default to every one the config lets Prompter fill."""
        settings.setdefault("controls", tuple(o.name for o in self.targets.outputs))
        settings["controls"] = tuple(settings["controls"] or ())
        allowed = {f.name for f in dataclasses.fields(Version)} - {"prompt", "project_id", "number", "created_at"}
        unknown = set(settings) - allowed
        if unknown:
            raise PromptError(f"{', '.join(sorted(unknown))}: not a setting of a version.")
        settings.setdefault("template", "")
        settings.setdefault("system_message", None)
        settings.setdefault("provider_key", "")
        settings.setdefault("model", "")
        return Version(prompt=name or DRAFT_NAME, project_id=self.project.id, number=0, **settings)

    def check(self, draft: Version) -> None:
        """Raise PromptError saying what to fix before this draft can be tried or saved."""
        if not self.targets.outputs:
            raise PromptError(self.no_outputs_message())
        if not draft.controls:
            raise PromptError("controls: choose at least one output for the prompt to fill.")
        for name in draft.controls:
            try:
                self.targets.output(name)
            except labeling.ConfigError as error:
                raise PromptError(f"controls: {error}") from None
        prompts.check_template(draft.template, self.targets, draft.controls, self.fields, draft.system_message)
        if draft.examples and any(set(e["answer"]) != set(draft.controls) for e in draft.examples["pool"]):
            raise PromptError("examples: they were chosen for other outputs than the version fills now; choose the examples again.")
        if not draft.provider_key:
            raise PromptError("provider_key: choose the key to call the model with (add one on the Keys page).")
        try:
            keys.get(draft.provider_key)
        except keys.KeyNotFound:
            raise PromptError(f"provider_key: no key is named {draft.provider_key!r}; add it on the Keys page or pick another.") from None
        if not draft.model.strip():
            raise PromptError("model: name the model to call, e.g. gpt-4o-mini.")

    def choose_examples(
        self, controls: Sequence[str], *, how: str, k: int, seed: int = 0, ids: Sequence[int] = (), embeddings: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """A version's few-shot examples setting, from the examples part of the project's split."""
        try:
            return fewshot.choose(self.client, self.project.id, self.targets, controls, how=how, k=k, seed=seed, ids=ids, embeddings=embeddings)
        except fewshot.FewShotError as error:
            raise PromptError(str(error)) from None

    def no_outputs_message(self) -> str:
        reasons = "; ".join(f"{s.tag} {s.name!r}: {s.reason}" for s in self.targets.skipped) or "it has no control tags"
        return (
            f"Project {self.project.id}'s labeling config has nothing Prompter can fill ({reasons}). "
            f"Add a {', '.join(labeling.OUTPUT_TAGS)} control over a {', '.join(labeling.INPUT_TAGS)} input in Label Studio."
        )

    def save_new_prompt(self, name: str, draft: Version) -> Version:
        self.check(draft)
        return prompts.create(self.project.id, name, **_settings(draft))

    def save_version(self, name: str, draft: Version) -> Version:
        self.check(draft)
        return prompts.new_version(name, self.project.id, **_settings(draft))

    # -- tasks ------------------------------------------------------------------------------------

    def task(self, task_id: int | None = None, *, after: int | None = None) -> Task:
        """Task ``task_id``, or the next ground-truth task after ``after`` (wrapping around)."""
        if task_id is not None:
            found = next(iter(self.client.tasks(self.project.id, ids=[task_id])), None)
            if found is None:
                raise LabelStudioError(f"Project {self.project.id} has no task {task_id}.")
            return found
        ids = self.ground_truth_ids()
        if not ids:
            raise LabelStudioError(
                f"Project {self.project.id} has no ground-truth tasks yet; give a task id, or mark annotations "
                "as ground truth in Label Studio."
            )
        following = [i for i in ids if after is None or i > after]
        return self.task(following[0] if following else ids[0])

    def ground_truth_ids(self) -> list[int]:
        if self._ground_truth_ids is None:
            self._ground_truth_ids = sorted(t.id for t in self.client.tasks(self.project.id) if t.ground_truth)
        return self._ground_truth_ids

    # -- preview and try --------------------------------------------------------------------------

    def messages(self, draft: Version, task: Task) -> list[dict[str, Any]]:
        """The exact messages ``draft`` sends for ``task``; raises RenderError when it cannot."""
        return messages.build(draft, self.targets, task.data, self.images, task.id)

    def try_on(self, draft: Version, task: Task) -> Trial:
        """Call the model once with ``draft`` on ``task`` (members and admins: it spends the key). A
        failure is in the Trial, not raised."""
        user = identity.require_role("member", "try prompts on the model")
        self.check(draft)
        truth = task.ground_truth.result if task.ground_truth else None
        outputs = [self.targets.output(c) for c in draft.controls]
        try:
            sent = self.messages(draft, task)
        except (RenderError, LabelStudioError) as error:
            return Trial(task.id, [], None, None, None, [], str(error), truth, None)
        key = keys.get(draft.provider_key)
        request = calls.request(draft, key, sent, labeling.schema(self.targets, draft.controls))
        try:
            reply = calls.ask(providers.client(key), request)
        except providers.KeyUnusable as error:
            return Trial(task.id, sent, request.body, None, None, [], str(error), truth, None)
        if reply.ok:
            reply = confidence.measure(reply, outputs)
        cost = pricing.cost(draft.model, reply.input_tokens, reply.output_tokens, cached_input_tokens=reply.cached_input_tokens)
        audit.record("model tried", target=draft.model_version, by=user, detail={"task": task.id, "key": key.name, "model": draft.model, "cost_usd": cost})
        answer = labeling.to_regions(self.targets, draft.controls, reply.raw, task.data) if reply.ok else None
        error = reply.error or (answer.error if answer else None)
        regions = answer.regions if answer and answer.ok else []
        return Trial(
            task_id=task.id,
            messages=sent,
            request=request.body,
            raw=reply.raw,
            parsed=answer.parsed if answer else None,
            regions=regions,
            error=error,
            ground_truth=truth,
            matches=answers.matches(outputs, regions, truth) if truth is not None else None,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost_usd=cost,
            latency_ms=reply.latency_ms,
            confidence=reply.confidence,
        )


def _settings(draft: Version) -> dict[str, Any]:
    return {f: getattr(draft, f) for f in prompts.EDITABLE}
