"""Which version answers for which Label Studio project, and the connection that makes Label Studio ask.

``connect`` publishes a version to a project: it records the publication (with fresh basic-auth
credentials, kept only as a hash), registers Prompter's ML backend in Label Studio (``POST
/api/ml``, which makes Label Studio ask the backend's /health and /setup at once), gives the webhook
Label Studio made for it the same credentials, and turns on predictions when a task opens.
Publishing another version to the project switches what the backend answers. ``disconnect``
removes all of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import select

from core import audit, identity, labeling, prompts, runs, store
from core.labelstudio import LabelStudioClient, LabelStudioError
from core.prompts import Version

DEFAULT_INSTRUCTION = "prompt"
DEFAULT_CONCURRENCY = 8
CONNECTED = "CO"  # Label Studio's state of a connection whose /health and /setup answered
STATES = {"CO": "connected", "DI": "disconnected", "ER": "error", "TR": "training", "PR": "predicting"}


class PublishError(ValueError):
    """The version cannot be published as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Publication:
    project_id: int
    version: Version
    url: str
    interactive: bool
    instruction: str  # the TextArea annotators type an instruction into (interactive only)
    concurrency: int
    max_cost_usd: float | None
    username: str
    ml_backend_id: int | None
    published_by: str | None
    published_at: datetime

    @property
    def webhook_url(self) -> str:
        return self.url.rstrip("/") + "/webhook"


def get(project_id: int) -> Publication | None:
    with store.session() as s:
        row = s.get(store.Publication, project_id)
    return _publication(row) if row else None


def published() -> list[Publication]:
    with store.session() as s:
        rows = s.exec(select(store.Publication).order_by(store.Publication.project_id)).all()
    return [_publication(r) for r in rows]


def authenticate(username: str, password: str) -> Publication | None:
    """The publication these basic-auth credentials were made for, or None."""
    with store.session() as s:
        row = s.exec(select(store.Publication).where(store.Publication.username == username)).first()
    if row is None or not hmac.compare_digest(row.password_hash, _hash(password)):
        return None
    return _publication(row)


def connect(
    project_id: int,
    prompt: str,
    number: int | None,
    url: str,
    client: LabelStudioClient,
    *,
    interactive: bool = False,
    instruction: str = DEFAULT_INSTRUCTION,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_cost_usd: float | None = None,
) -> Publication:
    """Publish ``prompt`` v``number`` (the latest when None) to the project through the backend at ``url``."""
    user = identity.require_role("member", "publish a version to Label Studio (its calls spend the team's keys)")
    version = prompts.version(prompt, number, project_id)
    _check(version, url, client, interactive=interactive, instruction=instruction, concurrency=concurrency, max_cost_usd=max_cost_usd)
    before = _row(project_id)
    username, password = f"prompter-project-{project_id}", secrets.token_urlsafe(32)
    _save(
        store.Publication(
            project_id=project_id,
            prompt_version_id=prompts.row_id(version),
            url=url.rstrip("/"),
            interactive=interactive,
            instruction=instruction,
            concurrency=concurrency,
            max_cost_usd=max_cost_usd,
            username=username,
            password_hash=_hash(password),
            ml_backend_id=before.ml_backend_id if before else None,
            published_by=user.email,
        )
    )
    try:
        backend_id = _register(project_id, version, url.rstrip("/"), client, interactive, username, password, before.ml_backend_id if before else None)
    except (LabelStudioError, PublishError):
        _restore(project_id, before)  # Label Studio still holds the old credentials, or none
        raise
    with store.writing() as s:
        row = s.get(store.Publication, project_id)
        row.ml_backend_id = backend_id
        s.add(row)
    audit.record(
        "version published",
        target=version.model_version,
        by=user,
        detail={"project": project_id, "url": url, "interactive": interactive, "instruction": instruction if interactive else None, "max_cost_usd": max_cost_usd},
    )
    return get(project_id)


def disconnect(project_id: int, client: LabelStudioClient) -> Publication:
    """Remove the backend from the project in Label Studio and forget what the project served."""
    user = identity.require_role("member", "disconnect Prompter's backend from a project")
    found = get(project_id)
    if found is None:
        raise PublishError(f"Project {project_id} has no version published through Prompter's backend; `backend status` lists those that do.")
    for backend in client.ml_backends(project_id):
        if backend["id"] == found.ml_backend_id or _same_url(backend.get("url", ""), found.url):
            client.delete_ml_backend(backend["id"])
    for hook in client.webhooks(project_id):
        if _same_url(hook.get("url", ""), found.webhook_url):
            client.delete_webhook(hook["id"])
    with store.writing() as s:
        row = s.get(store.Publication, project_id)
        if row is not None:
            s.delete(row)
    audit.record("version unpublished", target=found.version.model_version, by=user, detail={"project": project_id})
    return found


def label_studio_state(publication: Publication, client: LabelStudioClient) -> tuple[str, str | None]:
    """What Label Studio says of the connection: (state, its error or None)."""
    try:
        for backend in client.ml_backends(publication.project_id):
            if backend["id"] == publication.ml_backend_id:
                return STATES.get(backend.get("state"), str(backend.get("state"))), backend.get("error_message")
    except LabelStudioError as error:
        return "unknown", str(error)
    return "missing", "Label Studio has no such connection any more; connect again."


def recent_calls(publication: Publication, limit: int = 5) -> list[runs.RunView]:
    """The last requests Label Studio made to the backend for the project, newest first."""
    return runs.runs(prompt=publication.version.prompt, project_id=publication.project_id, kind="backend", limit=limit)


def call_summary(run: runs.RunView) -> dict[str, Any]:
    """One request from Label Studio, as the status shows it."""
    return {
        "run_id": run.id,
        "at": run.created_at.isoformat(timespec="seconds"),
        "why": run.subset.get("description", ""),
        "version": run.model_version,
        "tasks": run.total,
        "answered": run.done,
        "failed": run.failed,
        "from_cache": run.cached,
        "cost_usd": run.cost_usd,
        "reason": run.status_reason or (runs.failures_of(run.id)[0].example if run.failed else None),
    }


# -- checks and Label Studio ---------------------------------------------------------------------


def _check(version: Version, url: str, client: LabelStudioClient, *, interactive: bool, instruction: str, concurrency: int, max_cost_usd: float | None) -> None:
    unusable = prompts.why_unusable(version)
    if unusable:
        raise PublishError(unusable)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PublishError(f"url: {url!r} is not where Label Studio can reach the backend; give one like http://127.0.0.1:9090.")
    if not 1 <= int(concurrency) <= 64:
        raise PublishError(f"concurrency: {concurrency} is outside 1 to 64.")
    if max_cost_usd is not None and not max_cost_usd > 0:
        raise PublishError(f"spending limit: {max_cost_usd} is not a positive amount of US dollars; give one, or none for no limit.")
    if interactive:
        config = labeling.read(client.label_config(version.project_id))
        tags = {t.name: t.tag for t in [*config.outputs, *config.skipped]}
        if tags.get(instruction) != "TextArea":
            raise PublishError(
                f"instruction: project {version.project_id}'s labeling config has no TextArea named {instruction!r} for annotators to type "
                f'an instruction into; add one (<TextArea name="{instruction}" toName="..." rows="3"/>) or name the one it has.'
            )
        if instruction in version.controls:
            raise PublishError(
                f"instruction: {version.model_version} fills {instruction!r} itself; the instruction TextArea is the annotator's input, "
                "so save a version that fills the other outputs, or name another TextArea."
            )


def _register(project_id: int, version: Version, url: str, client: LabelStudioClient, interactive: bool, username: str, password: str, known_id: int | None) -> int:
    fields = {
        "url": url,
        # Label Studio calls a connection whose title is the project's model version its "live model"
        "title": version.model_version,
        "description": "Prompter: a published prompt version answers",
        "is_interactive": interactive,
        "auth_method": "BASIC_AUTH",
        "basic_auth_user": username,
        "basic_auth_pass": password,
        "auto_update": True,  # the connection's model version follows what /setup answers
    }
    existing = next((b["id"] for b in client.ml_backends(project_id) if b["id"] == known_id or _same_url(b.get("url", ""), url)), None)
    saved = client.save_ml_backend(project_id, fields, existing)
    backend = client.ml_backend(saved["id"])
    if backend.get("state") != CONNECTED:
        if existing is None:
            client.delete_ml_backend(saved["id"])  # a connection that cannot answer helps nobody
        reason = backend.get("error_message") or "it did not answer /health and /setup"
        raise PublishError(f"Label Studio could not use the backend at {url}: {reason}. Start it with `python -m core backend serve` where Label Studio can reach it.")
    authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    for hook in client.webhooks(project_id):  # made by Label Studio with the connection, without credentials
        if _same_url(hook.get("url", ""), url + "/webhook"):
            client.update_webhook(hook["id"], {"headers": {"Authorization": authorization}, "send_payload": True, "send_for_all_actions": True})
    # A task opened in the labeling screen asks the backend (show_collab_predictions). Label Studio's
    # "evaluate predictions automatically" would also ask for every task of each Data Manager page
    # listed, and for every task read through its task list (Prompter's own reads included): a model
    # call per task merely looked at, so it is turned off.
    client.update_project(project_id, evaluate_predictions_automatically=False, show_collab_predictions=True, model_version=version.model_version)
    return int(saved["id"])


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


# -- the store -------------------------------------------------------------------------------------


def _hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _row(project_id: int) -> store.Publication | None:
    with store.session() as s:
        row = s.get(store.Publication, project_id)
        if row is not None:
            s.expunge(row)
        return row


def _save(row: store.Publication) -> None:
    with store.writing() as s:
        s.merge(row)


def _restore(project_id: int, before: store.Publication | None) -> None:
    with store.writing() as s:
        current = s.get(store.Publication, project_id)
        if current is not None:
            s.delete(current)
        if before is not None:
            s.flush()
            s.merge(before)


def _publication(row: store.Publication) -> Publication:
    return Publication(
        project_id=row.project_id,
        version=prompts.by_row_id(row.prompt_version_id),
        url=row.url,
        interactive=row.interactive,
        instruction=row.instruction,
        concurrency=row.concurrency,
        max_cost_usd=row.max_cost_usd,
        username=row.username,
        ml_backend_id=row.ml_backend_id,
        published_by=row.published_by,
        published_at=row.published_at,
    )
