"""The HTTP server Label Studio calls as its ML backend (Starlette under uvicorn).

It speaks Label Studio 1.23's protocol: ``GET /health``, ``POST /setup`` (answers the published
version's name as ``model_version``), ``POST /predict`` (one result per task, in order; with a
``context`` it is the interactive prompter), ``POST /webhook`` (annotations saved, for the
instructions annotators typed) and ``GET /versions``. One server serves every project: the
basic-auth credentials of each call name the publication, and the call's ``project`` must be that
publication's. A call without them is refused: the server spends the team's keys.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core import labeling
from core.backend import answering, instructions, publications
from core.backend.publications import Publication

log = logging.getLogger("prompter.backend")

LOOPBACK = "127.0.0.1"


def app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", health, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/setup", setup, methods=["POST"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/webhook", webhook, methods=["POST"]),
            Route("/versions", versions, methods=["GET"]),
        ]
    )


def serve(host: str = LOOPBACK, port: int = 9090) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(app(), host=host, port=port, log_level="info")


# -- the endpoints -------------------------------------------------------------------------------


async def health(request: Request) -> JSONResponse:
    found = _caller(request)
    if found is None:
        return _refused()
    return JSONResponse({"status": "UP", "model_class": "Prompter", "model_version": found.version.model_version})


async def setup(request: Request) -> JSONResponse:
    found, body = await _authorized(request)
    if found is None:
        return body
    return JSONResponse({"model_version": found.version.model_version})


async def predict(request: Request) -> JSONResponse:
    found, body = await _authorized(request)
    if found is None:
        return body
    tasks = body.get("tasks") or []
    config = body.get("label_config") or ""
    context = (body.get("params") or {}).get("context") or None
    model_version = found.version.model_version
    if context and tasks:
        return JSONResponse({"results": [await _interactive(found, tasks[0], context, config)], "model_version": model_version})
    why = "a task opened in Label Studio" if len(tasks) == 1 else f"Retrieve Predictions on {len(tasks)} tasks"
    answers = await answering.predict(found, tasks, config, why=why)
    # A task that failed gets an empty list: Label Studio saves nothing for it (not an empty
    # prediction, which would look like an answer), and the others are saved.
    results = [{"result": a.regions, "score": a.score, "model_version": model_version} if a.ok else [] for a in answers]
    return JSONResponse({"results": results, "model_version": model_version})


async def webhook(request: Request) -> JSONResponse:
    found, body = await _authorized(request)
    if found is None:
        return body
    return JSONResponse({"status": "ok", "instructions_kept": instructions.record(body)})


async def versions(request: Request) -> JSONResponse:
    found = _caller(request)
    if found is None:
        return _refused()
    return JSONResponse({"versions": [found.version.model_version]})


# -- the interactive prompter -------------------------------------------------------------------


async def _interactive(found: Publication, task: dict[str, Any], context: dict[str, Any], config: str) -> dict[str, Any]:
    """The filled controls for the instruction typed in the task; an error comes back as a message
    in a TextArea of the task, which is what Label Studio shows an annotator (an HTTP error reaches
    them only as "500 Server Error")."""
    model_version = found.version.model_version
    typed = instructions.instruction_in(context.get("result") or [], found.instruction)
    if typed is None:
        error = f"Type an instruction into the {found.instruction!r} box, then press Shift+Enter."
    else:
        answer = await answering.interactive(found, task, typed, config)
        if answer.ok:
            return {"result": answer.regions, "score": answer.score, "model_version": model_version}
        error = answer.error
    log.warning("project %s task %s: interactive instruction not answered: %s", found.project_id, task.get("id"), error)
    return {"result": [_message_region(found, config, f"Prompter could not answer: {error}")], "model_version": model_version}


def _message_region(found: Publication, config: str, text: str) -> dict[str, Any]:
    targets = labeling.read(config)
    areas = [o for o in targets.outputs if o.tag == "TextArea"]
    shown = next((o for o in areas if o.name in found.version.controls), None) or next((o for o in areas if o.name == found.instruction), None)
    if shown is None:
        return {}
    return {"from_name": shown.name, "to_name": shown.inputs[0], "type": "textarea", "value": {"text": [text]}, "origin": "prediction"}


# -- who is calling ------------------------------------------------------------------------------


def _caller(request: Request) -> Publication | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        username, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return publications.authenticate(username, password)


async def _authorized(request: Request) -> tuple[Publication | None, Any]:
    """The publication calling, and the call's body; or (None, the refusal to send)."""
    found = _caller(request)
    if found is None:
        return None, _refused()
    try:
        body = await request.json()
    except ValueError:
        return None, JSONResponse({"error": "The body is not JSON."}, status_code=400)
    project = _project_id(body.get("project") if isinstance(body, dict) else None)
    if project is not None and project != found.project_id:
        log.warning("refused: the credentials of project %s were used for project %s", found.project_id, project)
        return None, JSONResponse({"error": f"These credentials are for project {found.project_id}, not {project}."}, status_code=403)
    return found, body


def _project_id(value: Any) -> int | None:
    """Label Studio names a project "<id>.<created timestamp>" in ML calls, and by a dict in webhooks."""
    if isinstance(value, dict):
        value = value.get("id")
    try:
        return int(str(value).split(".")[0]) if value is not None else None
    except ValueError:
        return None


def _refused() -> JSONResponse:
    return JSONResponse(
        {"error": "Prompter's backend needs the basic-auth credentials it gave Label Studio; connect with `python -m core backend connect`."},
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="Prompter"'},
    )
