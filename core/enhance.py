"""Enhance: a teacher model reads a version's mistakes on the development part of the split and
proposes a revised system message and template, with its reasons.

- ``development_errors(run_id)``: the tasks of an evaluation that are in the development part and
  were answered wrongly (or failed), each with its text, the answer and the ground truth. Tasks of
  the examples and test parts never leave Prompter here: what Enhance tunes on is never what the
  gain is measured on.
- ``propose(version, run_id, teacher_key=, teacher_model=)``: one call to the teacher, through the
  same strict structured output as every call, with the current prompt, the outputs and their
  classes, and the errors (as many as ``max_error_tokens`` holds). The proposal is not a version: it
  becomes one only when a user saves it (``Workbench.save_version``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from core import audit, calls, connection, fewshot, identity, keys, labeling, messages, pricing, providers, runs, tokens
from core.evaluation import answers, split
from core.labelstudio import LabelStudioClient
from core.prompts import Version

MAX_ERROR_TOKENS = 4000
SCHEMA = {
    "type": "object",
    "properties": {
        "system_message": {"type": "string", "description": "The revised system message; empty for none."},
        "template": {"type": "string", "description": "The revised template, with the same {variables}."},
        "rationale": {"type": "string", "description": "Why these changes should fix the errors, in two or three sentences."},
    },
    "required": ["system_message", "template", "rationale"],
    "additionalProperties": False,
}
INSTRUCTIONS = (
    "You improve prompts for a labeling model. You get a prompt (a system message and a template whose "
    "{variables} are filled with each task's data), what the model must answer, and tasks it answered wrongly "
    "with the right answer. Revise the system message and the template so the model answers such tasks "
    "rightly: make the instructions more specific where the errors show confusion between classes. Keep every "
    "{variable} of the template; do not quote the tasks themselves in the prompt. Answer in JSON."
)


class EnhanceError(ValueError):
    """Enhance cannot run as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Error:
    task_id: int
    text: str
    answer: str
    truth: str


@dataclass(frozen=True)
class Proposal:
    version: Version
    run_id: int
    system_message: str | None
    template: str
    rationale: str
    errors_sent: list[int]  # the development tasks the teacher saw
    errors_left_out: int  # beyond the token cap
    teacher: str  # "key · model"
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    sent: list[dict] = field(default_factory=list, repr=False)  # the teacher's messages

    def draft(self) -> Version:
        """The proposal as an unsaved version of the same prompt (number 0), with a note saying where it came from."""
        note = f"Enhanced from v{self.version.number} by {self.teacher}: {self.rationale}"
        return dataclasses.replace(self.version, number=0, system_message=self.system_message, template=self.template, note=note[:500])


def development_errors(run_id: int, client: LabelStudioClient | None = None) -> list[Error]:
    run = runs.get(run_id)
    parts = split.get(run.project_id)
    if parts is None:
        raise EnhanceError(
            f"Enhance reads only errors on the development part of the ground-truth split, and project {run.project_id} has no split: "
            "make one on the Evaluate page first."
        )
    development = set(parts.parts["development"])
    targets = labeling.read(runs.label_config(run_id))
    chosen = [targets.output(c) for c in runs.version_of(run_id).controls]
    wrong = [
        item
        for item in runs.items(run_id)
        if item.task_id in development
        and item.ground_truth is not None
        and (item.status != "ok" or not all(answers.matches(chosen, item.regions or [], item.ground_truth).values()))
    ]
    if not wrong:
        return []
    client = client or connection.client()
    data = {task.id: task.data for task in client.tasks(run.project_id, ids=[item.task_id for item in wrong])}
    return [
        Error(
            item.task_id,
            fewshot.task_text(targets, data.get(item.task_id, {})),
            "; ".join(answers.shown(o, item.regions or []) for o in chosen) if item.status == "ok" else f"(failed: {item.error})",
            "; ".join(answers.shown(o, item.ground_truth) for o in chosen),
        )
        for item in wrong
    ]


def propose(
    version: Version,
    run_id: int,
    *,
    teacher_key: str,
    teacher_model: str,
    client: LabelStudioClient | None = None,
    max_error_tokens: int = MAX_ERROR_TOKENS,
) -> Proposal:
    user = identity.require_role("member", "enhance prompts")
    run = runs.get(run_id)
    if (run.prompt, run.version, run.project_id) != (version.prompt, version.number, version.project_id) or run.kind != "evaluate":
        raise EnhanceError(f"Run {run_id} is not an evaluation of {version.model_version}; pick one of its evaluations.")
    errors = development_errors(run_id, client)
    if not errors:
        raise EnhanceError(
            f"Run {run_id} has no wrong answer on the development part to learn from: evaluate {version.model_version} on the "
            "development part (or on tasks that include it) first."
        )
    shown, left_out = _capped(errors, max_error_tokens, teacher_model)
    targets = labeling.read(runs.label_config(run_id))
    sent = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": _brief(version, targets, shown)},
    ]
    key = keys.get(teacher_key)
    teacher = Version(version.prompt, version.project_id, 0, "", None, (), teacher_key, teacher_model)
    reply = calls.ask(providers.client(key), calls.request(teacher, key, sent, SCHEMA))
    cost = pricing.cost(teacher_model, reply.input_tokens, reply.output_tokens, cached_input_tokens=reply.cached_input_tokens)
    audit.record(
        "prompt enhanced",
        target=version.model_version,
        by=user,
        detail={"teacher": f"{teacher_key} · {teacher_model}", "errors": len(shown), "cost_usd": cost},
    )
    if not reply.ok:
        raise EnhanceError(f"The teacher model did not answer: {reply.error}")
    try:
        found = json.loads(reply.raw or "")
        system, template, rationale = (str(found[k]) for k in ("system_message", "template", "rationale"))
    except (ValueError, KeyError, TypeError):
        raise EnhanceError(f"The teacher's answer is not the JSON asked for: {(reply.raw or '')[:200]!r}") from None
    return Proposal(
        version, run_id, system.strip() or None, template, rationale.strip(), [e.task_id for e in shown], left_out,
        f"{teacher_key} · {teacher_model}", reply.input_tokens, reply.output_tokens, cost, sent,
    )


def check_on_test(proposal: Proposal, edited: Version | None = None, client: LabelStudioClient | None = None) -> tuple[runs.RunView, runs.RunView]:
    """"Enhance and evaluate": record the two evaluations that measure the proposal (as ``edited``, by
    default as proposed) against its version on the test part, the part nothing was tuned on. The
    version's completed evaluation of the whole test part is reused when there is one; the proposal
    runs as a variant of the version, so it is still not a version (nor written to Label Studio)
    until it is saved, and saving it then costs nothing to evaluate again: the cache holds its answers."""
    from core.evaluation import evaluate, subsets

    client = client or connection.client()
    tried = edited or proposal.draft()
    version = proposal.version
    test = subsets.choose(client, version.project_id, "test")
    config = runs.label_config(proposal.run_id)
    reused = [
        r
        for r in runs.runs(prompt=version.prompt, project_id=version.project_id, kind="evaluate")
        if r.version == version.number and r.status == "completed" and r.subset.get("kind") == "test" and sorted(r.subset["task_ids"]) == sorted(test.task_ids)
    ]
    base = reused[0] if reused else evaluate.start(version, test, config, client=client)
    variant = {"system_message": tried.system_message, "template": tried.template}
    proposed = runs.create(version, test.task_ids, kind="evaluate", subset=test.as_dict() | {"group": f"enhance:{proposal.run_id}"}, label_config=config, variant=variant)
    return base, proposed


def gain(base_run: int, proposal_run: int):
    """The proposal's gain over its version on the test part: the difference, its interval, McNemar's p."""
    from core.evaluation import evaluate

    base = runs.get(base_run)
    return evaluate.compare_runs(base_run, proposal_run, label_a=f"v{base.version}", label_b="the proposal")


def _capped(errors: list[Error], budget: int, model: str) -> tuple[list[Error], int]:
    kept, used = [], 0
    for error in errors:
        size = tokens.count(json.dumps(error.__dict__, ensure_ascii=False), model)
        if kept and used + size > budget:
            break
        kept.append(error)
        used += size
    return kept, len(errors) - len(kept)


def _brief(version: Version, targets: labeling.Targets, errors: list[Error]) -> str:
    return json.dumps(
        {
            "system_message": version.system_message or "",
            "template": version.template,
            "outputs": messages.labels_text(targets, version.controls),
            "errors": [{"task": e.text, "answer": e.answer, "right answer": e.truth} for e in errors],
        },
        ensure_ascii=False,
        indent=1,
    )
