"""The one door to Label Studio: every call Prompter makes to it goes through here.

It uses label-studio-sdk, and its HTTP client for the endpoints the SDK does not wrap or wraps
slowly (the export, the project list, model versions, and the Data Manager action that turns
predictions into annotations). Callers get
plain dataclasses back and, when something is wrong, a ``LabelStudioError`` whose message is one
sentence saying what is wrong and what to change.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import quote, unquote, urlsplit

import httpx
# The base client: the SDK's full client adds export helpers that Prompter does not use, and they
# load pandas, a third of a second at the start of every command and worker.
from label_studio_sdk.base_client import LabelStudioBase
from label_studio_sdk.core.api_error import ApiError

from core.checks import missing_scheme

PREDICTION_CHUNK = 500
# The only paths fetched with the token for a task's value: files Label Studio stores. Anything else
# (its API above all) is never asked for on a task's say-so.
STORED_PREFIXES = ("/data/upload/", "/data/local-files/")
EXPORT_IDS_PER_REQUEST = 200  # keeps the query string well under common URL limits


class LabelStudioError(Exception):
    """Something went wrong talking to Label Studio; ``str(error)`` is meant for the user."""


class Unreachable(LabelStudioError):
    pass


class TokenRejected(LabelStudioError):
    pass


class ProjectNotFound(LabelStudioError):
    pass


class FileRefused(LabelStudioError):
    """A value that was to be fetched as a stored file is not one, so it is not fetched with the token."""

    def __init__(self, value: str, reason: str):
        super().__init__(
            f"Prompter does not fetch {value[:120]!r} with the Label Studio token: {reason}; it fetches only the "
            f"files Label Studio stores ({', '.join(p + '...' for p in STORED_PREFIXES)})."
        )
        self.value = value
        self.reason = reason


class NotLabelStudio(LabelStudioError):
    """The address answers, but it is not Label Studio's API."""


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    task_count: int
    annotated_count: int
    ground_truth_count: int
    prediction_count: int


@dataclass(frozen=True)
class Annotation:
    id: int
    result: list[dict[str, Any]]
    ground_truth: bool
    was_cancelled: bool
    created_at: str
    updated_at: str
    completed_by: int | None = None  # the Label Studio user id
    parent_prediction: int | None = None  # the prediction it was made from, if any


@dataclass(frozen=True)
class Task:
    id: int
    data: dict[str, Any]
    annotations: tuple[Annotation, ...] = ()
    prediction_ids: tuple[int, ...] = ()

    @property
    def ground_truth(self) -> Annotation | None:
        """The task's most recent ground-truth annotation, if any."""
        marked = [a for a in self.annotations if a.ground_truth and not a.was_cancelled]
        return max(marked, key=lambda a: (a.updated_at, a.id), default=None)

    def reference(self, truth: str = "ground-truth") -> Annotation | None:
        """What an answer is scored against: the ground truth, or with ``truth="annotations"`` (for
        projects without ground truth) the most recent annotation."""
        if self.ground_truth is not None or truth != "annotations":
            return self.ground_truth
        kept = [a for a in self.annotations if not a.was_cancelled]
        return max(kept, key=lambda a: (a.updated_at, a.id), default=None)


@dataclass(frozen=True)
class Prediction:
    id: int
    task_id: int
    result: list[dict[str, Any]]
    model_version: str
    score: float | None


@dataclass(frozen=True)
class NewPrediction:
    task_id: int
    result: list[dict[str, Any]]
    model_version: str
    score: float | None = None


@dataclass(frozen=True)
class ModelVersion:
    name: str
    prediction_count: int


@dataclass(frozen=True)
class NewTask:
    data: dict[str, Any]
    annotations: Sequence[tuple[list[dict[str, Any]], bool]] = field(default_factory=tuple)
    """(result, ground_truth) pairs to import with the task."""


class LabelStudioClient:
    """A connection to one Label Studio server.

    >>> ls = LabelStudioClient("http://127.0.0.1:8080", token)  # doctest: +SKIP
    >>> [p.title for p in ls.projects()]  # doctest: +SKIP
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 60.0):
        url = (url or "").strip().rstrip("/")
        problem = missing_scheme(url, "http://127.0.0.1:8080")
        if problem:
            raise LabelStudioError(f"The Label Studio URL {problem}.")
        if not (api_key or "").strip():
            raise TokenRejected(
                "No Label Studio API token is set; copy it from Label Studio's Account & Settings "
                "page into LABEL_STUDIO_API_KEY (or the Keys page)."
            )
        self.url = url
        self._sdk = LabelStudioBase(base_url=url, api_key=api_key.strip(), timeout=timeout)

    def __repr__(self) -> str:  # never show the token
        return f"LabelStudioClient({self.url!r})"

    # -- connection ---------------------------------------------------------------------------

    def check(self) -> str:
        """Check the URL and token; return Label Studio's version or raise LabelStudioError."""
        response = self._http("GET", "api/version", retries=0)
        if response.status_code == 404:
            raise NotLabelStudio(
                f"{self.url} answered but has no Label Studio API (GET /api/version gave 404); "
                "check that LABEL_STUDIO_URL is the address of Label Studio itself."
            )
        self._raise_for_status(response)
        self._call(lambda: self._sdk.users.whoami(), retries=0)
        try:
            version = response.json().get("release") or response.json().get("label-studio-os-package", {})
        except ValueError:
            version = None
        return version if isinstance(version, str) else "unknown version"

    # -- projects -----------------------------------------------------------------------------

    def projects(self) -> list[Project]:
        """Every project the token can see, newest first, with task and annotation counts.

        Only the fields a Project holds are asked for: the list is read on every page of the
        dashboard, and Label Studio's full listing (configs, settings) costs twice as long."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self._http("GET", "api/projects/", params={"page": page, "page_size": 100, "include": _PROJECT_FIELDS})
            self._raise_for_status(response)
            listing = self._json(response)
            found += listing.get("results", [])
            if not listing.get("next"):
                return [_project(SimpleNamespace(**{name: p.get(name) for name in _PROJECT_FIELDS.split(",")})) for p in found]
            page += 1

    def project(self, project_id: int) -> Project:
        return _project(self._call(lambda: self._sdk.projects.get(project_id), project_id=project_id))

    def label_config(self, project_id: int) -> str:
        found = self._call(lambda: self._sdk.projects.get(project_id), project_id=project_id)
        return found.label_config or ""

    def create_project(self, title: str, label_config: str, description: str = "") -> Project:
        created = self._call(
            lambda: self._sdk.projects.create(
                title=title, label_config=label_config, description=description
            )
        )
        return self.project(created.id)

    def delete_project(self, project_id: int) -> None:
        self._call(lambda: self._sdk.projects.delete(project_id), project_id=project_id)

    # -- tasks --------------------------------------------------------------------------------

    def import_tasks(self, project_id: int, tasks: Iterable[NewTask]) -> list[int]:
        """Import tasks (with their annotations) in one request; return the new task ids in order."""
        payload = [
            {
                "data": t.data,
                "annotations": [{"result": r, "ground_truth": gt} for r, gt in t.annotations],
            }
            for t in tasks
        ]
        response = self._call(
            lambda: self._sdk.projects.import_tasks(
                project_id, request=payload, return_task_ids=True
            ),
            project_id=project_id,
        )
        return list(response.task_ids or [])

    def tasks(self, project_id: int, *, ids: Iterable[int] | None = None) -> Iterator[Task]:
        """Every task of a project with its annotations and predictions (or only ``ids``).

        Reads the export endpoint, which returns all tasks in about half the time that paging
        through the task list takes.
        """
        if ids is None:
            return map(_task, self._export(project_id, None))
        wanted = sorted(set(int(i) for i in ids))
        batches = [wanted[i : i + EXPORT_IDS_PER_REQUEST] for i in range(0, len(wanted), EXPORT_IDS_PER_REQUEST)]
        return (_task(t) for batch in batches for t in self._export(project_id, batch))

    def task_ids(self, project_id: int, *, page_size: int = 1000) -> list[int]:
        """Every task id of the project, in order, read a page at a time without task data."""
        found: list[int] = []
        page = 1
        while True:
            params = {"project": project_id, "page": page, "page_size": page_size, "fields": "task_only", "include": "id"}
            response = self._http("GET", "api/tasks", params=params)
            if response.status_code == 404 and page > 1:
                break  # Label Studio answers 404 past the last page
            self._raise_for_status(response, project_id=project_id)
            body = self._json(response)
            batch = body.get("tasks", []) if isinstance(body, dict) else body
            found.extend(int(t["id"]) for t in batch)
            total = body.get("total") if isinstance(body, dict) else None
            if not batch or len(batch) < page_size or (total is not None and len(found) >= total):
                break
            page += 1
        return sorted(found)

    def task_fields(self, project_id: int, *, sample: int = 100) -> list[str]:
        """The data fields of the project's first ``sample`` tasks, in the order first seen."""
        response = self._http("GET", "api/tasks", params={"project": project_id, "page_size": sample, "fields": "all"})
        self._raise_for_status(response, project_id=project_id)
        body = self._json(response)
        found = body.get("tasks", []) if isinstance(body, dict) else body
        return list(dict.fromkeys(key for task in found for key in (task.get("data") or {})))

    def file(self, path: str) -> tuple[bytes, str]:
        """A file Label Studio stores (``/data/upload/...``, ``/data/local-files/...``), fetched with the
        token; returns its bytes and content type. Any other path, or one that only looks stored until
        it is normalised (``..``, encoded dots, backslashes, another host), raises FileRefused unsent."""
        path = stored_file_path(path, self.url)
        response = self._http("GET", path.lstrip("/"), retries=1)
        if response.status_code == 404:
            raise LabelStudioError(f"Label Studio at {self.url} has no file {path}; check the task's data.")
        self._raise_for_status(response)
        return response.content, response.headers.get("content-type", "").split(";")[0].strip()

    def _export(self, project_id: int, ids: list[int] | None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"exportType": "JSON", "download_all_tasks": "true"}
        if ids is not None:
            params["ids[]"] = ids
        response = self._http("GET", f"api/projects/{project_id}/export", params=params)
        self._raise_for_status(response, project_id=project_id)
        return self._json(response)

    # -- predictions --------------------------------------------------------------------------

    def import_predictions(
        self, project_id: int, predictions: Iterable[NewPrediction], *, chunk_size: int = PREDICTION_CHUNK, retries: int | None = None
    ) -> int:
        """Bulk-import predictions in chunks; return how many Label Studio created.

        An import is not idempotent: a retry after a lost answer may create a second copy. A caller
        that must not duplicate passes ``retries=0`` and reads what Label Studio holds after a failure.
        """
        created = 0
        chunk: list[dict[str, Any]] = []
        for prediction in predictions:
            chunk.append(_prediction_payload(prediction))
            if len(chunk) >= chunk_size:
                created += self._import_chunk(project_id, chunk, retries)
                chunk = []
        if chunk:
            created += self._import_chunk(project_id, chunk, retries)
        return created

    def _import_chunk(self, project_id: int, chunk: list[dict[str, Any]], retries: int | None) -> int:
        options = {"max_retries": retries} if retries is not None else None
        response = self._call(
            lambda: self._sdk.projects.import_predictions(project_id, request=chunk, request_options=options),
            project_id=project_id,
        )
        return int(response.created or 0)

    def update_prediction(self, prediction_id: int, result: list[dict[str, Any]], score: float | None) -> None:
        """Replace a prediction's result and score in place (same id, same model version)."""
        response = self._http("PATCH", f"api/predictions/{prediction_id}/", json={"result": result, "score": score})
        self._raise_for_status(response)

    def predictions(self, project_id: int, *, task_id: int | None = None) -> list[Prediction]:
        """A project's predictions (or one task's), with their results."""
        found = self._call(
            lambda: self._sdk.predictions.list(project=project_id, task=task_id), project_id=project_id
        )
        return [
            Prediction(int(p.id), int(p.task), list(p.result or []), p.model_version or "", p.score)
            for p in found
        ]

    def predictions_of_tasks(self, project_id: int, task_ids: Iterable[int]) -> dict[int, list[Prediction]]:
        """The predictions of these tasks, every model version's, with their results: the Data
        Manager's task list, a page of the tasks picked by id (the export and the prediction list
        give either ids only, or every prediction of the project)."""
        wanted = sorted(set(int(i) for i in task_ids))
        found: dict[int, list[Prediction]] = {task_id: [] for task_id in wanted}
        for start in range(0, len(wanted), EXPORT_IDS_PER_REQUEST):
            picked = wanted[start : start + EXPORT_IDS_PER_REQUEST]
            query = json.dumps({"selectedItems": {"all": False, "included": picked}})
            params = {"project": project_id, "fields": "all", "page": 1, "page_size": len(picked), "query": query}
            response = self._http("GET", "api/tasks", params=params)
            self._raise_for_status(response, project_id=project_id)
            body = self._json(response)
            for task in body.get("tasks", []) if isinstance(body, dict) else body:
                found[int(task["id"])] = [
                    Prediction(int(p["id"]), int(task["id"]), list(p.get("result") or []), p.get("model_version") or "", p.get("score"))
                    for p in task.get("predictions") or []
                ]
        return found

    def delete_prediction(self, prediction_id: int) -> None:
        response = self._http("DELETE", f"api/predictions/{prediction_id}/")
        if response.status_code != 404:  # already gone is what we wanted
            self._raise_for_status(response)

    def model_versions(self, project_id: int) -> list[ModelVersion]:
        """The project's prediction model versions with their prediction counts, largest first."""
        response = self._http("GET", f"api/projects/{project_id}/model-versions/")
        self._raise_for_status(response, project_id=project_id)
        counts = self._json(response)
        return sorted(
            (ModelVersion(name, int(n)) for name, n in counts.items()),
            key=lambda v: (-v.prediction_count, v.name),
        )

    def delete_model_version(self, project_id: int, model_version: str) -> int:
        """Delete one model version's predictions (and only those); return how many went."""
        response = self._http(
            "DELETE",
            f"api/projects/{project_id}/model-versions/",
            json={"model_version": model_version},
        )
        self._raise_for_status(response, project_id=project_id)
        return int(self._json(response).get("deleted_predictions", 0))

    def predictions_to_annotations(self, project_id: int, model_version: str) -> int:
        """Turn every prediction of ``model_version`` into an annotation; return how many were made."""
        response = self._http(
            "POST",
            "api/dm/actions",
            params={"id": "predictions_to_annotations", "project": project_id},
            json={"selectedItems": {"all": True, "excluded": []}, "model_version": model_version},
        )
        self._raise_for_status(response, project_id=project_id)
        detail = str(self._json(response).get("detail", ""))
        digits = [int(word) for word in detail.split() if word.isdigit()]
        return digits[0] if digits else 0

    def create_annotation(self, task_id: int, result: list[dict[str, Any]], *, completed_by: int | None = None, parent_prediction: int | None = None) -> int:
        """Annotate one task (as ``completed_by``, a user id, when given); return the annotation's id.
        Sent once: a retry after a lost answer could annotate the task twice."""
        body: dict[str, Any] = {"result": result, "ground_truth": False}
        if completed_by is not None:
            body["completed_by"] = completed_by
        if parent_prediction is not None:
            body["parent_prediction"] = parent_prediction
        response = self._http("POST", f"api/tasks/{task_id}/annotations/", json=body, retries=0)
        self._raise_for_status(response)
        return int(self._json(response)["id"])

    def user_id(self, email: str, *, first_name: str = "", last_name: str = "") -> int:
        """The id of the organization's user with ``email``, made (without a password: nobody signs in
        as it) when there is none."""
        response = self._http("GET", "api/users/")
        self._raise_for_status(response)
        for user in self._json(response):
            if str(user.get("email", "")).lower() == email.lower():
                return int(user["id"])
        response = self._http(
            "POST", "api/users/", json={"email": email, "username": email.split("@")[0], "first_name": first_name, "last_name": last_name}, retries=0
        )
        self._raise_for_status(response)
        return int(self._json(response)["id"])

    def set_model_version(self, project_id: int, model_version: str) -> None:
        """Make ``model_version`` the project's: the predictions annotators see, and the one the Data
        Manager's prediction score column and filters read."""
        response = self._http("PATCH", f"api/projects/{project_id}/", json={"model_version": model_version})
        self._raise_for_status(response, project_id=project_id)

    def update_project(self, project_id: int, **fields: Any) -> None:
        response = self._http("PATCH", f"api/projects/{project_id}/", json=fields)
        self._raise_for_status(response, project_id=project_id)

    # -- ML backends: Label Studio calls them for predictions --------------------------------------

    def ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        """The project's ML backend connections: each with ``id``, ``url``, ``state`` (CO connected,
        DI disconnected, ER error), ``model_version``, ``is_interactive``."""
        response = self._http("GET", "api/ml/", params={"project": project_id})
        self._raise_for_status(response, project_id=project_id)
        return list(self._json(response))

    def ml_backend(self, backend_id: int) -> dict[str, Any]:
        response = self._http("GET", f"api/ml/{backend_id}")
        self._raise_for_status(response)
        return self._json(response)

    def save_ml_backend(self, project_id: int, fields: dict[str, Any], backend_id: int | None = None) -> dict[str, Any]:
        """Connect an ML backend to the project (or change connection ``backend_id``). Label Studio
        asks the backend's /health and /setup before it answers, so a backend it cannot reach, or
        that refuses its credentials, is refused here with Label Studio's reason."""
        if backend_id is None:
            response = self._http("POST", "api/ml/", json={"project": project_id, **fields}, retries=0)
        else:
            # Label Studio 1.23 checks the backend's /setup on a change too, and needs the project for it
            response = self._http("PATCH", f"api/ml/{backend_id}", json={"project": project_id, **fields}, retries=0)
        self._raise_for_status(response, project_id=project_id)
        return self._json(response)

    def delete_ml_backend(self, backend_id: int) -> None:
        response = self._http("DELETE", f"api/ml/{backend_id}")
        if response.status_code != 404:  # already gone is what was asked
            self._raise_for_status(response)

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        response = self._http("GET", "api/webhooks/", params={"project": project_id})
        self._raise_for_status(response, project_id=project_id)
        return list(self._json(response))

    def update_webhook(self, webhook_id: int, fields: dict[str, Any]) -> None:
        response = self._http("PATCH", f"api/webhooks/{webhook_id}/", json=fields)
        self._raise_for_status(response)

    def delete_webhook(self, webhook_id: int) -> None:
        response = self._http("DELETE", f"api/webhooks/{webhook_id}/")
        if response.status_code != 404:
            self._raise_for_status(response)

    def users(self) -> dict[int, str]:
        """The organization's users: id to email."""
        response = self._http("GET", "api/users/")
        self._raise_for_status(response)
        return {int(u["id"]): str(u.get("email") or u.get("username") or u["id"]) for u in self._json(response)}

    def views(self, project_id: int) -> list[dict[str, Any]]:
        """The project's Data Manager tabs: each with its ``id`` and ``data`` (title, filters, ordering)."""
        response = self._http("GET", "api/dm/views/", params={"project": project_id})
        self._raise_for_status(response, project_id=project_id)
        return list(self._json(response))

    def save_view(self, project_id: int, data: dict[str, Any], view_id: int | None = None) -> int:
        """Create a Data Manager tab (or replace tab ``view_id``'s settings); return its id."""
        body = {"project": project_id, "data": data}
        if view_id is None:
            response = self._http("POST", "api/dm/views/", json=body)
        else:
            response = self._http("PUT", f"api/dm/views/{view_id}/", json=body)
        self._raise_for_status(response, project_id=project_id)
        return int(self._json(response)["id"])

    def view_tasks(self, project_id: int, view_id: int, *, page_size: int = 1000) -> list[dict[str, Any]]:
        """The tasks a Data Manager tab lists, in its order (as Label Studio's task list gives them)."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            params = {"project": project_id, "view": view_id, "page": page, "page_size": page_size}
            response = self._http("GET", "api/tasks", params=params)
            if response.status_code == 404 and page > 1:
                break
            self._raise_for_status(response, project_id=project_id)
            batch = self._json(response).get("tasks", [])
            found.extend(batch)
            if len(batch) < page_size:
                break
            page += 1
        return found

    def view_url(self, project_id: int, view_id: int) -> str:
        return f"{self.url}/projects/{project_id}/data?tab={view_id}"

    def task_url(self, project_id: int, task_id: int) -> str:
        return f"{self.url}/projects/{project_id}/data?task={task_id}"

    # -- plumbing -----------------------------------------------------------------------------

    def _http(self, method: str, path: str, *, retries: int | None = None, **kwargs) -> httpx.Response:
        options = {"max_retries": retries} if retries is not None else None
        return self._call(
            lambda: self._sdk._client_wrapper.httpx_client.request(
                path, method=method, request_options=options, **kwargs
            ),
            retries=retries,
        )

    def _call(self, action, *, project_id: int | None = None, retries: int | None = None):
        try:
            return action()
        except ApiError as error:
            raise self._explain(error.status_code, error.body, project_id) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise Unreachable(
                f"Cannot reach Label Studio at {self.url} ({_reason(error)}); start it with "
                "`make run`, or set LABEL_STUDIO_URL to the address of a running one."
            ) from None
        except httpx.TimeoutException:
            raise Unreachable(
                f"Label Studio at {self.url} did not answer in time; check that it is running and "
                "not overloaded, then try again."
            ) from None
        except httpx.HTTPError as error:
            raise Unreachable(
                f"Talking to Label Studio at {self.url} failed ({_reason(error)}); check LABEL_STUDIO_URL."
            ) from None

    def _json(self, response: httpx.Response) -> Any:
        """A successful answer's body; one that is not JSON (an answer cut short, a proxy's page) is
        an error of Label Studio's, which the run engine waits out like an outage."""
        try:
            return response.json()
        except ValueError:
            raise LabelStudioError(
                f"Label Studio at {self.url} sent an answer that is not JSON ({len(response.content)} bytes, HTTP {response.status_code}) "
                f"to {response.request.method} {response.request.url.path}; try again."
            ) from None

    def _raise_for_status(self, response: httpx.Response, *, project_id: int | None = None) -> None:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text[:200]
            raise self._explain(response.status_code, body, project_id)

    def _explain(self, status: int | None, body: Any, project_id: int | None) -> LabelStudioError:
        if status in (401, 403):
            return TokenRejected(
                f"Label Studio at {self.url} rejected the API token (HTTP {status}); copy a valid "
                "token from Label Studio's Account & Settings page into LABEL_STUDIO_API_KEY "
                "(or the Keys page)."
            )
        if status == 404 and project_id is not None:
            return ProjectNotFound(
                f"Label Studio at {self.url} has no project {project_id} that this token can see; "
                "pick a project from the list on the home page."
            )
        detail = body.get("detail") if isinstance(body, dict) else None
        detail = detail or (body if isinstance(body, str) else "") or "no detail given"
        if isinstance(body, dict) and body.get("validation_errors"):
            detail = f"{detail}: {_flatten(body['validation_errors'])}"
        return LabelStudioError(
            f"Label Studio at {self.url} answered HTTP {status}: {str(detail)[:200]}"
        )


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def stored_file_path(value: str, label_studio_url: str | None = None) -> str:
    """The path (and query) to fetch a stored file at, from a task's value: a path, or a URL on
    ``label_studio_url``. Raises FileRefused, saying why, for anything that is not, once normalised, a
    path under STORED_PREFIXES.

    The value is percent-decoded and normalised before the prefix is checked, because the server (or a
    proxy before it) resolves ``..`` and ``%2e%2e``: ``/data/upload/../../api/users`` is Label Studio's
    API, and the token would go with it. A ``..`` segment, a backslash or a second layer of percent
    encoding is refused outright rather than resolved: no stored file's path has one.
    """
    raw = (value or "").strip()
    parts = urlsplit(raw)
    path = parts.path
    if parts.scheme or parts.netloc:
        if not label_studio_url or not same_origin(raw, label_studio_url):
            where = f"{parts.scheme}://{parts.netloc}" if parts.scheme else f"//{parts.netloc}"
            raise FileRefused(raw, f"it is on {where}, not on Label Studio ({label_studio_url or 'none set'})")
        base = urlsplit(label_studio_url).path.rstrip("/")  # Label Studio served under a path of its own
        if base and not path.startswith(base + "/"):
            raise FileRefused(raw, f"it is not under Label Studio's address {label_studio_url}")
        path = path[len(base):]
    if parts.fragment:
        raise FileRefused(raw, "it has a fragment (#...), which a stored file's address never has")
    decoded = unquote(path)
    if _ESCAPE.search(decoded):
        raise FileRefused(raw, "its path is percent-encoded twice")
    if "\\" in decoded:
        raise FileRefused(raw, "its path holds a backslash")
    if ".." in decoded.split("/"):
        raise FileRefused(raw, "its path has a '..' segment, which could lead out of the stored files to Label Studio's API")
    path = posixpath.normpath(decoded) + ("/" if decoded.endswith("/") and decoded != "/" else "")
    if not path.startswith(STORED_PREFIXES) or path.startswith("//"):
        raise FileRefused(raw, f"its path {path} is not under {' or '.join(STORED_PREFIXES)}")
    return quote(path, safe="/:@!$&'()*+,;=-._~") + (f"?{parts.query}" if parts.query else "")


def same_origin(url: str, other: str) -> bool:
    """Whether the two URLs are on the same scheme, host and port (a port that is not a number: no)."""
    a, b = urlsplit(url), urlsplit(other)
    defaults = {"http": 80, "https": 443}
    try:
        ports = (a.port or defaults.get(a.scheme), b.port or defaults.get(b.scheme))
    except ValueError:
        return False
    return bool(a.hostname) and (a.scheme, a.hostname) == (b.scheme, b.hostname) and ports[0] == ports[1]


def _flatten(errors: Any) -> str:
    if isinstance(errors, dict):
        return "; ".join(f"{field} {_flatten(message)}" for field, message in errors.items())
    if isinstance(errors, list):
        return " ".join(_flatten(e) for e in errors)
    return str(errors)


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return text[:120]


_PROJECT_FIELDS = "id,title,task_number,finished_task_number,ground_truth_number,total_predictions_number"


def _project(p: Any) -> Project:
    return Project(
        id=int(p.id),
        title=p.title or f"Project {p.id}",
        task_count=int(p.task_number or 0),
        annotated_count=int(p.finished_task_number or 0),
        ground_truth_count=int(p.ground_truth_number or 0),
        prediction_count=int(p.total_predictions_number or 0),
    )


def _task(raw: dict[str, Any]) -> Task:
    return Task(
        id=int(raw["id"]),
        data=raw.get("data") or {},
        annotations=tuple(
            Annotation(
                id=int(a["id"]),
                result=a.get("result") or [],
                ground_truth=bool(a.get("ground_truth")),
                was_cancelled=bool(a.get("was_cancelled")),
                created_at=a.get("created_at") or "",
                updated_at=a.get("updated_at") or a.get("created_at") or "",
                completed_by=_user_id(a.get("completed_by")),
                parent_prediction=int(a["parent_prediction"]) if a.get("parent_prediction") else None,
            )
            for a in raw.get("annotations") or []
        ),
        prediction_ids=tuple(
            int(p["id"]) if isinstance(p, dict) else int(p) for p in raw.get("predictions") or []
        ),
    )


def _user_id(found: Any) -> int | None:
    """A user as Label Studio gives it: an id, or (in exports) a dict with one."""
    if isinstance(found, dict):
        found = found.get("id")
    return int(found) if found is not None else None


def _prediction_payload(p: NewPrediction) -> dict[str, Any]:
    payload: dict[str, Any] = {"task": p.task_id, "result": p.result, "model_version": p.model_version}
    if p.score is not None:
        payload["score"] = p.score
    return payload
