"""Why a task failed, by kind: a run with failures groups them, so a user sees at once whether the
provider was away, the answers were wrong-shaped, or some tasks lack a field the template reads.

Each failure is classified where it happens (the call, the answer, the task's data) and stored with
its item; ``groups`` counts a run's failures by kind, with one example of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

KINDS = {
    "unreachable": "provider unreachable",
    "timeout": "timeout",
    "rate_limit": "rate limit",
    "key_rejected": "key rejected",
    "unknown_model": "unknown model",
    "provider_error": "provider error",
    "invalid_answer": "invalid answer",
    "unknown_label": "label not in the config",
    "missing_field": "data field missing from the task",
    "task_data": "task data that cannot be sent",
    "task_gone": "task no longer in Label Studio",
    "examples": "few-shot examples not found",
    "over_budget": "spending limit or budget reached",
    "batch_expired": "batch expired before the answer",
    "not_serving": "the published version cannot answer",
    "unexpected": "unexpected error",
}


@dataclass(frozen=True)
class Group:
    kind: str
    count: int
    example: str  # one failure's reason, as stored
    example_task: int

    @property
    def label(self) -> str:
        return KINDS.get(self.kind, "other")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "count": self.count, "example": self.example, "example_task": self.example_task}


def groups(failed: Iterable[tuple[int, str | None, str | None]]) -> list[Group]:
    """(task id, kind, error) of each failed item -> one group per kind, the largest first."""
    by_kind: dict[str, list[tuple[int, str]]] = {}
    for task_id, kind, error in failed:
        by_kind.setdefault(kind or "unexpected", []).append((task_id, error or "no reason recorded"))
    found = [Group(kind, len(items), items[0][1], items[0][0]) for kind, items in by_kind.items()]
    return sorted(found, key=lambda g: (-g.count, g.kind))


def sentence(found: list[Group]) -> str:
    """The failures in one line: "3 label not in the config (e.g. task 12: ...); 1 timeout (...)"."""
    return "; ".join(f"{g.count} {g.label} (e.g. task {g.example_task}: {g.example})" for g in found)
