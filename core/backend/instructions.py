"""The instructions annotators typed into tasks with the interactive prompter, kept so a good one
found while labeling becomes a version and is evaluated against the ground truth.

Label Studio sends every annotation saved in a project to the backend's webhook; the text of the
publication's instruction TextArea is kept per annotation (an edited annotation keeps its latest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import select

from core import connection, labeling, prompts, store
from core.backend import answering, publications
from core.labelstudio import LabelStudioClient, LabelStudioError
from core.prompts import Version

SAVED = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED")


@dataclass(frozen=True)
class Listed:
    text: str
    times: int  # annotations saved with it
    annotators: tuple[str, ...]
    tasks: tuple[int, ...]
    last_at: datetime


def record(payload: dict[str, Any]) -> int:
    """Keep the instruction of each annotation a webhook call carries; return how many were kept."""
    if payload.get("action") not in SAVED:
        return 0
    project_id = _project_id(payload)
    found = publications.get(project_id) if project_id is not None else None
    if found is None or not found.interactive:
        return 0
    annotations = payload.get("annotations") or ([payload["annotation"]] if payload.get("annotation") else [])
    kept = 0
    for annotation in annotations:
        text = instruction_in(annotation.get("result") or [], found.instruction)
        if text is None or annotation.get("id") is None:
            continue
        task_id = annotation.get("task") or (payload.get("task") or {}).get("id")
        _save(found, int(annotation["id"]), int(task_id or 0), text, annotation.get("completed_by"))
        kept += 1
    return kept


def instruction_in(result: list[dict[str, Any]], name: str) -> str | None:
    """The text typed into TextArea ``name`` in an annotation's (or a context's) result, or None."""
    texts = [
        line
        for region in result
        if region.get("from_name") == name and region.get("type") == "textarea"
        for line in ((region.get("value") or {}).get("text") or [])
        if str(line).strip()
    ]
    return "\n".join(str(t).strip() for t in texts) if texts else None


def listed(project_id: int, client: LabelStudioClient | None = None) -> list[Listed]:
    """The project's instructions, the most used first: how often, by whom, on which tasks."""
    with store.session() as s:
        rows = s.exec(select(store.Instruction).where(store.Instruction.project_id == project_id).order_by(store.Instruction.created_at)).all()
    names = _annotator_names(client, {r.annotator for r in rows})
    grouped: dict[str, list[store.Instruction]] = {}
    for row in rows:
        grouped.setdefault(row.text.strip(), []).append(row)
    found = [
        Listed(
            text,
            len(group),
            tuple(dict.fromkeys(names.get(r.annotator, r.annotator or "unknown") for r in group)),
            tuple(dict.fromkeys(r.task_id for r in group)),
            max(r.created_at for r in group),
        )
        for text, group in grouped.items()
    ]
    return sorted(found, key=lambda f: (-f.times, -f.last_at.timestamp()))


def save_as_version(project_id: int, text: str, client: LabelStudioClient | None = None) -> Version:
    """A new version of the published prompt whose template is the instruction, as the interactive
    prompter sent it (the task's inputs appended when it names none), ready to evaluate."""
    found = publications.get(project_id)
    if found is None:
        raise prompts.PromptError(f"Project {project_id} has no published version to save an instruction of; publish one first.")
    client = client or connection.client()
    targets = labeling.read(client.label_config(project_id))
    template = answering.instructed(found.version, text, targets).template
    published = found.version  # the settings the annotator's instruction was answered with, not the latest version's
    kept = {f: getattr(published, f) for f in ("system_message", "controls", "provider_key", "model", "temperature", "max_output_tokens", "samples")}
    note = f"From an annotator's instruction in Label Studio, answered by {published.model_version}"
    return prompts.new_version(published.prompt, project_id, **kept, template=template, examples=None, note=note)  # audited as a version saved


def _save(found: publications.Publication, annotation_id: int, task_id: int, text: str, annotator: Any) -> None:
    who = str(annotator.get("email") or annotator.get("id")) if isinstance(annotator, dict) else (str(annotator) if annotator is not None else None)
    with store.writing() as s:
        row = s.exec(select(store.Instruction).where(store.Instruction.annotation_id == annotation_id)).first()
        row = row or store.Instruction(project_id=found.project_id, task_id=task_id, annotation_id=annotation_id, text=text)
        row.text, row.annotator, row.created_at = text, who, store.utcnow()
        row.prompt_version_id = prompts.row_id(found.version)
        s.add(row)


def _project_id(payload: dict[str, Any]) -> int | None:
    project = payload.get("project")
    if isinstance(project, dict):
        project = project.get("id")
    try:
        return int(project)
    except (TypeError, ValueError):
        return None


def _annotator_names(client: LabelStudioClient | None, ids: set[str | None]) -> dict[str, str]:
    """Label Studio user ids to emails, when Label Studio can be asked; ids stay as they are otherwise."""
    if not any(i and i.isdigit() for i in ids):
        return {}
    try:
        users = (client or connection.client()).users()
    except LabelStudioError:
        return {}
    return {str(uid): email for uid, email in users.items()}
