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

from sqlalchemy import delete as sa_delete
from sqlmodel import select

from core import audit, fewshot, identity, keys, labeling, recent, store

NAME = re.compile(r"[A-Za-z_][\w.-]*")


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
    examples: dict | None = None  # few-shot examples: how they were chosen and what (core.fewshot)
    samples: int | None = None  # confidence by the agreement of this many answers; None: from log-probabilities

    @property
    def model_version(self) -> str:
        """The name its predictions carry in Label Studio."""
        return f"{self.prompt}@v{self.number}"


EDITABLE = ("template", "system_message", "controls", "provider_key", "model", "temperature", "max_output_tokens", "examples", "samples", "note")
MAX_SAMPLES = 20


def inputs_shown(targets: labeling.Targets) -> str:
    """The task's inputs laid out for a template: each under its name, as ``{field}``."""
    return "\n\n".join(f"{i.name.replace('_', ' ').capitalize()}:\n{{{i.field}}}" for i in targets.inputs)


def variables(template: str) -> list[tuple[str, str | None]]:
    """The ``{name}`` / ``{labels:NAME}`` variables of a template, in order."""
    return [(name, argument) for _, name, argument in pieces(template) if name is not None]


def pieces(template: str, where: str = "template") -> list[tuple[str, str | None, str | None]]:
    """The template as (literal text, variable name, argument) pieces, the last with no variable;
    ``{{`` and ``}}`` become literal braces. A brace that opens or closes nothing is refused with its
    line and column, what is wrong and the fix."""
    found, literal, i = [], [], 0
    while i < len(template):
        char = template[i]
        if template.startswith("{{", i) or template.startswith("}}", i):
            literal.append(char)
            i += 2
        elif char == "}":
            raise PromptError(f"{where}: {_at(template, i)} a '}}' closes nothing; write '}}}}' for a literal brace.")
        elif char == "{":
            end = template.find("}", i + 1)
            opens = template.find("{", i + 1)
            if end == -1 or (opens != -1 and opens < end):
                shown = template[i : (opens if opens != -1 and (end == -1 or opens < end) else len(template))].split("\n")[0][:30]
                raise PromptError(
                    f"{where}: {_at(template, i)} {shown!r} is not closed; write {{{shown[1:].strip() or 'text'}}} to insert a field, "
                    "or '{{' for a literal brace."
                )
            name, argument = _variable(template[i + 1 : end], template, i, where)
            found.append(("".join(literal), name, argument))
            literal = []
            i = end + 1
        else:
            literal.append(char)
            i += 1
    found.append(("".join(literal), None, None))
    return found


def _variable(inner: str, template: str, at: int, where: str) -> tuple[str, str | None]:
    """The name and argument inside one pair of braces, or a refusal saying how to write it."""
    place, shown = _at(template, at), "{" + inner + "}"
    if not inner:
        raise PromptError(f"{where}: {place} {{}} inserts nothing; name a field, such as {{text}}, or write '{{{{}}}}' for literal braces.")
    if inner != inner.strip():
        raise PromptError(f"{where}: {place} {shown} has spaces inside the braces; write {{{inner.strip()}}}.")
    if "!" in inner:
        name = inner.split("!")[0]
        raise PromptError(f"{where}: {place} {shown}: conversions such as !r are not supported; write {{{name}}}.")
    name, colon, argument = inner.partition(":")
    if name == "labels":
        if colon and (not argument or ":" in argument or not NAME.fullmatch(argument)):
            raise PromptError(f"{where}: {place} {shown} is not a labels variable; write {{labels}} for every output, or {{labels:NAME}} with one output's name.")
        return name, argument or None
    if colon:
        raise PromptError(f"{where}: {place} {shown}: format specifications are not supported; write {{{name}}} to insert the field as it is.")
    if not NAME.fullmatch(name):
        raise PromptError(f"{where}: {place} {shown} is not a field name; write {{field}} with a task field such as {{text}}, or '{{{{' and '}}}}' for literal braces.")
    return name, None


def _at(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}:"


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
    for _, name, argument in pieces(text, where):
        if name is None:
            continue
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
    """A new prompt and its v1 (members and admins)."""
    user = identity.require_role("member", "save prompts")
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
    recent.remember(project_id=project_id, prompt=name, key=row.provider_key)
    saved = _version(prompt, row)
    _audit_saved(user, saved)
    return saved


def new_version(name: str, project_id: int | None = None, **changes: Any) -> Version:
    """Save the latest version with ``changes`` applied as the next number (settings not given are kept)."""
    user = identity.require_role("member", "save prompts")
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
    recent.remember(project_id=prompt.project_id, prompt=prompt.name, key=row.provider_key)
    saved = _version(prompt, row)
    _audit_saved(user, saved)
    return saved


def _audit_saved(user: identity.User, saved: Version) -> None:
    audit.record(
        "prompt version saved",
        target=saved.model_version,
        by=user,
        detail={"project": saved.project_id, "model": saved.model, "key": saved.provider_key, "note": saved.note or ""},
    )


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


def latest_versions(project_id: int | None = None, *, archived: bool = False) -> list[Version]:
    """Every prompt's latest version (of one project, or all), by project and name; the archived
    prompts instead when ``archived``."""
    with store.session() as s:
        query = select(store.Prompt).order_by(store.Prompt.project_id, store.Prompt.name)
        if project_id is not None:
            query = query.where(store.Prompt.project_id == project_id)
        query = query.where(store.Prompt.archived_at.is_not(None) if archived else store.Prompt.archived_at.is_(None))
        return [_version(p, _latest(s, p.id)) for p in s.exec(query).all()]


def archive(name: str, project_id: int | None = None) -> None:
    """Hide a prompt from the pickers; its versions, runs and scores are kept, and it can be restored."""
    user = identity.require_role("member", "archive prompts")
    with store.writing() as s:
        prompt = _prompt(s, name, project_id)
        prompt.archived_at = prompt.archived_at or store.utcnow()
        s.add(prompt)
        project = prompt.project_id
    audit.record("prompt archived", target=name, by=user, detail={"project": project})


def restore(name: str, project_id: int | None = None) -> None:
    user = identity.require_role("member", "restore prompts")
    with store.writing() as s:
        prompt = _prompt(s, name, project_id)
        prompt.archived_at = None
        s.add(prompt)
        project = prompt.project_id
    audit.record("prompt restored", target=name, by=user, detail={"project": project})


def delete(name: str, project_id: int | None = None) -> None:
    """Delete a prompt and its versions, only when no run used it (runs are the record of what was
    spent and scored: archive such a prompt instead)."""
    user = identity.require_role("member", "delete prompts")
    with store.writing() as s:
        prompt = _prompt(s, name, project_id)
        version_ids = s.exec(select(store.PromptVersion.id).where(store.PromptVersion.prompt_id == prompt.id)).all()
        used = s.exec(select(store.Run.id).where(store.Run.prompt_version_id.in_(version_ids)).limit(1)).first()
        if used is not None:
            raise PromptError(f"prompt: {name!r} has runs, which are the record of what it cost and scored; archive it instead.")
        s.execute(sa_delete(store.PromptVersion).where(store.PromptVersion.prompt_id == prompt.id))
        s.delete(prompt)
        project = prompt.project_id
    audit.record("prompt deleted", target=name, by=user, detail={"project": project})


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


SETTING_LABELS = {
    "model": "Model",
    "provider_key": "Key",
    "temperature": "Temperature",
    "max_output_tokens": "Max output tokens",
    "controls": "Outputs",
    "examples": "Few-shot examples",
    "samples": "Confidence",
    "note": "Note",
}


@dataclass(frozen=True)
class Diff:
    """What changed from one version to another, as a person reads it."""

    settings: list[tuple[str, str, str]]  # (setting, before, after), for each changed setting
    system_message: list[str]  # the system message's changed lines ("- old", "+ new", "  context")
    template: list[str]  # the template's changed lines, the same way

    @property
    def same(self) -> bool:
        return not (self.settings or self.system_message or self.template)

    def text(self) -> str:
        """The whole diff as plain text: the settings as "Model: a → b", then each text's lines."""
        parts = [f"{name}: {before} → {after}" for name, before, after in self.settings]
        for title, lines in (("System message", self.system_message), ("Template", self.template)):
            if lines:
                parts += ["", f"{title}:", *lines]
        return "\n".join(parts)


def diff(a: Version, b: Version) -> Diff:
    """How ``b`` differs from ``a``: each changed setting with its old and new value, then the system
    message's and the template's changed lines with a little context."""
    settings = [
        (label, _setting_text(field, getattr(a, field)), _setting_text(field, getattr(b, field)))
        for field, label in SETTING_LABELS.items()
        if getattr(a, field) != getattr(b, field)
    ]
    return Diff(settings, _line_changes(a.system_message or "", b.system_message or ""), _line_changes(a.template, b.template))


def _setting_text(field: str, value: Any) -> str:
    if field == "controls":
        return ", ".join(value) or "none"
    if field == "max_output_tokens":
        return "the model's default" if value is None else str(value)
    if field == "note":
        return value or "none"
    if field == "examples":
        return fewshot.describe(value)
    if field == "samples":
        return describe_confidence(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_confidence(samples: int | None) -> str:
    """How a version measures the confidence of its answers."""
    if samples:
        return f"agreement of {samples} answers"
    return "log-probabilities (when the provider gives them)"


def _line_changes(old: str, new: str) -> list[str]:
    """Changed lines marked "- " and "+ ", with one line of context marked "  "; no hunk headers."""
    if old == new:
        return []
    shown = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1):
        if line.startswith(("---", "+++", "@@")):
            if line.startswith("@@") and shown:
                shown.append("  …")
            continue
        shown.append(f"{line[0] if line[0] in '+-' else ' '} {line[1:]}")
    return shown


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
    samples = settings.get("samples")
    if samples is not None and not 2 <= int(samples) <= MAX_SAMPLES:
        raise PromptError(f"samples: {samples} answers cannot agree; ask for 2 to {MAX_SAMPLES}, or none to read the confidence from log-probabilities.")
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
        examples=settings.get("examples") or None,
        samples=int(samples) if samples is not None else None,
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
        examples=row.examples,
        samples=row.samples,
    )
