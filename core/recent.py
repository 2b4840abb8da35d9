"""What the team last worked on: the project, the prompt of each project and the provider key.

Saving a version or starting a run remembers them, from a page or the command line alike, and the
pages start from them instead of the first item of a list (which may be a dead key, or the project
someone created a minute ago).
"""

from __future__ import annotations

from typing import Any

from core import store


def remember(*, project_id: int | None = None, prompt: str | None = None, key: str | None = None) -> None:
    choices: dict[str, Any] = {}
    if project_id is not None:
        choices["project"] = project_id
        if prompt is not None:
            choices[f"prompt@{project_id}"] = prompt
    if key is not None:
        choices["key"] = key
    with store.writing() as s:
        for name, value in choices.items():
            row = s.get(store.RecentChoice, name) or store.RecentChoice(name=name)
            row.value, row.updated_at = value, store.utcnow()
            s.add(row)


def project() -> int | None:
    return _get("project")


def prompt(project_id: int) -> str | None:
    return _get(f"prompt@{project_id}")


def key() -> str | None:
    return _get("key")


def _get(name: str) -> Any:
    with store.session() as s:
        row = s.get(store.RecentChoice, name)
    return row.value if row else None
