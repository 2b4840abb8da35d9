"""Prompts and their versions.

A prompt belongs to one Label Studio project and has a name unique there. Each saved version is
immutable and numbered v1, v2, ...; "save as new version" copies the latest and applies the changes.

Templates insert task fields as ``{field}``, the allowed labels as ``{labels}`` (every chosen
output) or ``{labels:NAME}`` (one output); ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from sqlmodel import select

from core import keys, labeling, store

VARIABLE = re.compile(r"(?<!\{)\{([A-Za-z_][\w.-]*)(?::([\w.-]+))?\}(?!\})")


class PromptError(ValueError):
    """Something about a prompt or version is wrong; the message names the field and the fix."""


@dataclass(frozen=True)
class Version:
    prompt: str
    project_id: int
    number: int
    template: str
    system_message: str | None
    controls: tuple[str, ...]
    provider_key: str
    model: str
    temperature: float = 0.0
    max_output_tokens: int | None = None
    note: str | None = None
    created_at: datetime | None = None

    @property
    def model_version(self) -> str:
        """The name its predictions carry in Label Studio."""
        return f"{self.prompt}@v{self.number}"


EDITABLE = ("template", "system_message", "controls", "provider_key", "model", "temperature", "max_output_tokens", "note")


def variables(template: str) -> list[tuple[str, str | None]]:
    """The ``{name}`` / ``{labels:NAME}`` variables of a template, in order."""
    return [(m.group(1), m.group(2)) for m in VARIABLE.finditer(template)]


def check_template(
    template: str, targets: labeling.Targets, controls: Sequence[str], task_fields: Iterable[str], system_message: str | None = None
) -> None:
    """Refuse a template (or system message) that cannot be filled for this project, saying what to change."""
    if not (template or "").strip():
        raise PromptError("template: is empty; write the instructions and insert a task field such as {text}.")
    known = sorted(set(task_fields) | set(targets.fields))
    if not _fields_used("template", template, controls, known):
        raise PromptError(f"template: inserts no task field, so every task would get the same prompt; insert one of {', '.join('{' + f + '}' for f in known)}.")
    images = {i.field for i in targets.inputs if i.tag == "Image"}
    for name in _fields_used("system_message", system_message or "", controls, known):
        if name in images:
            raise PromptError(f"system_message: {{{name}}} is an image, and models take images only in the template (the user message); move it there.")


def _fields_used(where: str, text: str, controls: Sequence[str], known: list[str]) -> list[str]:
    used = []
    for name, argument in variables(text):
        if name == "labels":
            if argument is not None and argument not in controls:
                chosen = ", ".join(controls) or "none (choose one to fill)"
                raise PromptError(f"{where}: {{labels:{argument}}} names no output of this prompt; the outputs are: {chosen}.")
            continue
        if argument is not None:
            raise PromptError(f"{where}: {{{name}:{argument}}} is not a variable; write {{{name}}} for a field, or {{labels:NAME}}.")
        if name not in known:
            raise PromptError(f"{where}: {{{name}}} is not a field of this project's tasks; the fields are: {', '.join(known) or 'none'}.")
        used.append(name)
    return used


def create(project_id: int, name: str, **version: Any) -> Version:
    """A new prompt and its v1."""
    name = (name or "").strip()
    if not name:
        raise PromptError("name: is empty; name the prompt, e.g. 'intent-classifier'.")
    if "@" in name:
        raise PromptError("name: may not contain '@' (Label Studio model versions are '<name>@v<N>').")
    with store.writing() as s:
        if s.exec(select(store.Prompt).where(store.Prompt.project_id == project_id, store.Prompt.name == name)).first():
            raise PromptError(f"name: project {project_id} already has a prompt named {name!r}; pick another name or save a new version of it.")
        prompt = store.Prompt(project_id=project_id, name=name)
        s.add(prompt)
        s.flush()
        row = _version_row(prompt.id, 1, version)
        s.add(row)
    return _version(prompt, row)


def new_version(name: str, project_id: int | None = None, **changes: Any) -> Version:
    """Save the latest version with ``changes`` applied as the next number (settings not given are kept)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise PromptError(f"{', '.join(sorted(unknown))}: not a setting of a version (settings: {', '.join(EDITABLE)}).")
    with store.writing() as s:
        prompt = _prompt(s, name, project_id)
        latest = _latest(s, prompt.id)
        # A note describes one version's change, so it is not carried over; None clears a setting.
        settings = {f: getattr(latest, f) for f in EDITABLE if f != "note"} | changes
        row = _version_row(prompt.id, latest.number + 1, settings)
        s.add(row)
    return _version(prompt, row)


def versions(name: str, project_id: int | None = None) -> list[Version]:
    with store.session() as s:
        prompt = _prompt(s, name, project_id)
        rows = s.exec(select(store.PromptVersion).where(store.PromptVersion.prompt_id == prompt.id).order_by(store.PromptVersion.number)).all()
    return [_version(prompt, row) for row in rows]


def version(name: str, number: int | None = None, project_id: int | None = None) -> Version:
    found = versions(name, project_id)
    if number is None:
        return found[-1]
    for v in found:
        if v.number == number:
            return v
    raise PromptError(f"version: prompt {name!r} has versions v1 to v{found[-1].number}, not v{number}.")


def row_id(v: Version) -> int:
    """The stored id of a saved version (runs refer to it)."""
    with store.session() as s:
        prompt = _prompt(s, v.prompt, v.project_id)
        row = s.exec(select(store.PromptVersion).where(store.PromptVersion.prompt_id == prompt.id, store.PromptVersion.number == v.number)).first()
    if row is None:
        raise PromptError(f"version: {v.prompt} v{v.number} is not saved; save it before running it.")
    return row.id


def by_row_id(version_id: int) -> Version:
    with store.session() as s:
        row = s.get(store.PromptVersion, version_id)
        if row is None:
            raise PromptError(f"version: no saved version has id {version_id}.")
        return _version(s.get(store.Prompt, row.prompt_id), row)


def latest_versions(project_id: int | None = None) -> list[Version]:
    """Every prompt's latest version (of one project, or all), by project and name."""
    with store.session() as s:
        query = select(store.Prompt).order_by(store.Prompt.project_id, store.Prompt.name)
        if project_id is not None:
            query = query.where(store.Prompt.project_id == project_id)
        return [_version(p, _latest(s, p.id)) for p in s.exec(query).all()]


def why_unusable(version: Version) -> str | None:
    """Why ``version`` cannot call its model now, in one sentence with the fix; None when it can.

    Its key may have been renamed, deleted or lost its secret since the version was saved.
    """
    if not version.model.strip():
        return f"{version.model_version} names no model; save a new version with a model on the Prompts page."
    try:
        key = keys.get(version.provider_key)
    except keys.KeyNotFound:
        return (
            f"{version.model_version} uses the key {version.provider_key!r}, which no longer exists; "
            "add it again on the Keys page, or save a new version with another key."
        )
    if key.problem:
        return (
            f"{version.model_version} uses the key {key.name!r}, which cannot be used now: {key.problem}; "
            "fix it on the Keys page, or save a new version with another key."
        )
    return None


def changed(a: Version, b: Version) -> list[str]:
    """The settings in which ``b`` differs from ``a`` (the note aside)."""
    return [f for f in EDITABLE if f != "note" and getattr(a, f) != getattr(b, f)]


def diff(a: Version, b: Version) -> str:
    """A unified diff of two versions: settings first, then the system message and the template."""

    def lines(v: Version) -> list[str]:
        settings = [f"{f}: {getattr(v, f)}" for f in ("model", "provider_key", "temperature", "max_output_tokens", "controls", "note")]
        return settings + ["", "--- system message ---", *(v.system_message or "").splitlines(), "", "--- template ---", *v.template.splitlines()]

    return "\n".join(difflib.unified_diff(lines(a), lines(b), f"v{a.number}", f"v{b.number}", lineterm=""))


def _prompt(s, name: str, project_id: int | None) -> store.Prompt:
    query = select(store.Prompt).where(store.Prompt.name == name)
    if project_id is not None:
        query = query.where(store.Prompt.project_id == project_id)
    found = s.exec(query).all()
    if not found:
        raise PromptError(f"prompt: no prompt is named {name!r}; `prompts list` shows them.")
    if len(found) > 1:
        raise PromptError(f"prompt: {name!r} exists in projects {', '.join(str(p.project_id) for p in found)}; say which with --project.")
    return found[0]


def _latest(s, prompt_id: int) -> store.PromptVersion:
    return s.exec(
        select(store.PromptVersion).where(store.PromptVersion.prompt_id == prompt_id).order_by(store.PromptVersion.number.desc())
    ).first()


def _version_row(prompt_id: int, number: int, settings: dict[str, Any]) -> store.PromptVersion:
    missing = [f for f in ("template", "controls", "provider_key", "model") if not str(settings.get(f) or "").strip()]
    if missing:
        raise PromptError(f"{missing[0]}: is required for a prompt version.")
    temperature = float(settings.get("temperature") or 0.0)
    if not 0.0 <= temperature <= 2.0:
        raise PromptError(f"temperature: {temperature:g} is outside 0 to 2.")
    max_tokens = settings.get("max_output_tokens")
    if max_tokens is not None and int(max_tokens) < 1:
        raise PromptError("max_output_tokens: must be at least 1, or empty for the model's default.")
    return store.PromptVersion(
        prompt_id=prompt_id,
        number=number,
        template=settings["template"],
        system_message=(settings.get("system_message") or None),
        controls=list(settings["controls"]),
        provider_key=settings["provider_key"],
        model=str(settings["model"]).strip(),
        temperature=temperature,
        max_output_tokens=int(max_tokens) if max_tokens is not None else None,
        note=(settings.get("note") or None),
    )


def _version(prompt: store.Prompt, row: store.PromptVersion) -> Version:
    return Version(
        prompt=prompt.name,
        project_id=prompt.project_id,
        number=row.number,
        template=row.template,
        system_message=row.system_message,
        controls=tuple(row.controls),
        provider_key=row.provider_key,
        model=row.model,
        temperature=row.temperature,
        max_output_tokens=row.max_output_tokens,
        note=row.note,
        created_at=row.created_at,
    )
