"""The audit trail: who did what and when, appended to the store and never changed.

Each action of the team's rules records one event after it succeeded, naming the acting user. The
database refuses to update or delete an event (triggers in migration 11).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from core import store

if TYPE_CHECKING:
    from core.identity import User

ACTIONS = (
    "signed in",
    "key added",
    "key edited",
    "key removed",
    "key tested",
    "key budget set",
    "price set",
    "price removed",
    "Label Studio connection saved",
    "Label Studio connection removed",
    "own Label Studio token saved",
    "own Label Studio token removed",
    "prompt version saved",
    "prompt archived",
    "prompt restored",
    "prompt deleted",
    "model tried",
    "prompt enhanced",
    "ground truth split",
    "run started",
    "run cancelled",
    "run resumed",
    "optimize started",
    "optimize cancelled",
    "predictions deleted",
    "predictions turned into annotations",
    "predictions accepted",
    "review tab created",
    "version published",
    "version unpublished",
    "member added",
    "member removed",
    "role changed",
    "member budget set",
)


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]

    def describe(self) -> str:
        """The details in words, for the Activity page and the CSV."""
        return ", ".join(f"{name}: {_text(value)}" for name, value in self.detail.items() if value not in (None, ""))


def record(action: str, *, target: str | None = None, by: User | None = None, detail: dict[str, Any] | None = None) -> None:
    """Append one event; ``by`` defaults to the acting user."""
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is not an audited action")
    if by is None:
        from core import identity  # identity records sign-ins here

        by = identity.current()
    with store.writing() as s:
        s.add(store.AuditEvent(actor=by.email, action=action, target=target, detail=detail or {}))


def events(
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int | None = 5000,
) -> list[Event]:
    """Events, newest first; ``since`` and ``until`` are whole days (UTC), both included."""
    query = select(store.AuditEvent).order_by(store.AuditEvent.id.desc())
    if actor:
        query = query.where(store.AuditEvent.actor == actor)
    if action:
        query = query.where(store.AuditEvent.action == action)
    if target:
        query = query.where(store.AuditEvent.target == target)
    if since:
        query = query.where(store.AuditEvent.at >= datetime.combine(since, time.min, timezone.utc))
    if until:
        query = query.where(store.AuditEvent.at < datetime.combine(until + timedelta(days=1), time.min, timezone.utc))
    if limit:
        query = query.limit(limit)
    with store.session() as s:
        rows = s.exec(query).all()
    return [Event(r.id, _utc(r.at), r.actor, r.action, r.target, r.detail or {}) for r in rows]


def actors() -> list[str]:
    with store.session() as s:
        return sorted(set(s.exec(select(store.AuditEvent.actor).distinct()).all()))


def to_csv(found: list[Event]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time (UTC)", "user", "action", "target", "details", "details (JSON)"])
    for e in found:
        row = [e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.target or "", e.describe(), json.dumps(e.detail, sort_keys=True)]
        writer.writerow([_inert(cell) for cell in row])
    return out.getvalue()


def _inert(cell: str) -> str:
    """A cell a spreadsheet shows as text: a prompt named "=HYPERLINK(...)" is not run as a formula."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
