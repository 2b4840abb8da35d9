"""`python -m core backend ...`: serve, publish a version to a project, and see what each project is served."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core import connection, runs, settings
from core.backend import instructions, publications
from core.formatting import usd


def add(commands) -> None:
    group = commands.add_parser("backend", help="Prompter as Label Studio's ML backend: a published version answers inside Label Studio").add_subparsers(title="backend")

    serve = group.add_parser("serve", help="the server Label Studio calls (binds loopback unless told otherwise)")
    serve.add_argument("--host", default=None, help="address to listen on (default: PROMPTER_BACKEND_HOST, else 127.0.0.1; another one lets other machines call it)")
    serve.add_argument("--port", type=int, default=None, help="default: PROMPTER_BACKEND_PORT, else 9090")
    serve.set_defaults(action=_serve)

    connect = group.add_parser("connect", help="publish a version to a project: Label Studio asks it for predictions")
    connect.add_argument("--project", type=int, required=True, metavar="ID")
    connect.add_argument("--prompt", required=True, metavar="NAME")
    connect.add_argument("--version", type=int, metavar="N", help="default: the latest")
    connect.add_argument("--url", default=None, help="where Label Studio reaches the backend (default: PROMPTER_BACKEND_URL, else http://127.0.0.1:PROMPTER_BACKEND_PORT)")
    connect.add_argument("--interactive", action="store_true", help="also answer instructions annotators type in the task (Shift+Enter)")
    connect.add_argument("--instruction", default=publications.DEFAULT_INSTRUCTION, metavar="NAME", help="the TextArea annotators type instructions into (default: prompt)")
    connect.add_argument("--concurrency", type=int, default=publications.DEFAULT_CONCURRENCY, help="calls at once for one Retrieve Predictions")
    connect.add_argument("--max-cost", type=float, metavar="USD", help="spending limit for everything served to the project under this publication")
    connect.add_argument("--json", action="store_true", help="print one JSON document")
    connect.set_defaults(action=_connect)

    disconnect = group.add_parser("disconnect", help="remove the backend from a project in Label Studio")
    disconnect.add_argument("--project", type=int, required=True, metavar="ID")
    disconnect.add_argument("--json", action="store_true", help="print one JSON document")
    disconnect.set_defaults(action=_disconnect)

    status = group.add_parser("status", help="each project served: its version, Label Studio's state of the connection, the last calls")
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.set_defaults(action=_status)

    listing = group.add_parser("instructions", help="the instructions annotators typed in a project, the most used first")
    listing.add_argument("--project", type=int, required=True, metavar="ID")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_instructions)

    save = group.add_parser("save-instruction", help="save an annotator's instruction as a new version of the published prompt")
    save.add_argument("--project", type=int, required=True, metavar="ID")
    which = save.add_mutually_exclusive_group(required=True)
    which.add_argument("--text", help="the instruction")
    which.add_argument("--number", type=int, metavar="N", help="the N-th of `backend instructions` (1 is the most used)")
    save.add_argument("--json", action="store_true", help="print one JSON document")
    save.set_defaults(action=_save_instruction)


def _serve(args: argparse.Namespace) -> int:
    from core.backend import server

    conf = settings.load()
    host, port = args.host or conf.backend_host, args.port or conf.backend_port
    print(f"Prompter's ML backend on http://{host}:{port} (publish a version with `python -m core backend connect`)", flush=True)
    server.serve(host, port)
    return 0


def _connect(args: argparse.Namespace) -> int:
    found = publications.connect(
        args.project,
        args.prompt,
        args.version,
        args.url or settings.load().backend_url,
        connection.client(),
        interactive=args.interactive,
        instruction=args.instruction,
        concurrency=args.concurrency,
        max_cost_usd=args.max_cost,
    )
    if args.json:
        print(json.dumps(_document(found, "connected", None)))
    else:
        said = f" interactive (instructions typed into {found.instruction!r})" if found.interactive else ""
        print(f"Project {found.project_id} is served by {found.version.model_version}{said} through {found.url}: tasks opened without a prediction get one.")
    return 0


def _disconnect(args: argparse.Namespace) -> int:
    found = publications.disconnect(args.project, connection.client())
    if args.json:
        print(json.dumps({"project": found.project_id, "disconnected": found.version.model_version}))
    else:
        print(f"Project {found.project_id} is no longer served by {found.version.model_version}.")
    return 0


def _status(args: argparse.Namespace) -> int:
    client = connection.client()
    documents = []
    for found in publications.published():
        state, error = publications.label_studio_state(found, client)
        documents.append(_document(found, state, error))
    if args.json:
        print(json.dumps({"projects": documents}))
        return 0
    if not documents:
        print("No project is served; publish a version with `python -m core backend connect --project ID --prompt NAME`.")
    for d in documents:
        print(f"project {d['project']}: {d['model_version']} ({d['state']}{', interactive' if d['interactive'] else ''}) at {d['url']}, published by {d['published_by']}")
        if d["error"]:
            print(f"  Label Studio says: {d['error']}")
        for call in d["last_calls"]:
            cost = usd(call["cost_usd"]) if call["cost_usd"] is not None else "no price"
            print(f"  {call['at']}  {call['why']}: {call['answered']} answered, {call['failed']} failed, {call['from_cache']} from the store, {cost}")
            if call["reason"]:
                print(f"    {call['reason']}")
    return 0


def _instructions(args: argparse.Namespace) -> int:
    found = instructions.listed(args.project)
    if args.json:
        print(json.dumps({"project": args.project, "instructions": [_instruction(i) for i in found]}))
        return 0
    if not found:
        print(f"No instruction was saved with an annotation in project {args.project} yet.")
    for n, i in enumerate(found, 1):
        print(f"{n}. used {i.times} times by {', '.join(i.annotators)}: {i.text}")
    return 0


def _save_instruction(args: argparse.Namespace) -> int:
    text = args.text
    if args.number is not None:
        found = instructions.listed(args.project)
        if not 1 <= args.number <= len(found):
            raise ValueError(f"--number: project {args.project} has {len(found)} instructions; `backend instructions --project {args.project}` lists them.")
        text = found[args.number - 1].text
    saved = instructions.save_as_version(args.project, text)
    if args.json:
        print(json.dumps({"prompt": saved.prompt, "version": saved.number, "model_version": saved.model_version, "template": saved.template}))
    else:
        print(f"Saved {saved.model_version}; evaluate it with `python -m core evaluate --prompt {saved.prompt} --version {saved.number} --project {args.project}`.")
    return 0


def _document(found: publications.Publication, state: str, error: str | None) -> dict[str, Any]:
    return {
        "project": found.project_id,
        "prompt": found.version.prompt,
        "version": found.version.number,
        "model_version": found.version.model_version,
        "url": found.url,
        "interactive": found.interactive,
        "instruction": found.instruction if found.interactive else None,
        "max_cost_usd": found.max_cost_usd,
        "published_by": found.published_by,
        "published_at": found.published_at.isoformat(),
        "state": state,
        "error": error,
        "last_calls": [_call(r) for r in publications.recent_calls(found)],
    }


def _call(run: runs.RunView) -> dict[str, Any]:
    return publications.call_summary(run)


def _instruction(i: instructions.Listed) -> dict[str, Any]:
    return {"text": i.text, "times": i.times, "annotators": list(i.annotators), "tasks": list(i.tasks), "last_at": i.last_at.isoformat()}
