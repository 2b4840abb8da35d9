"""`python -m core ...`: the dashboard's actions from the command line.

Errors go to stderr as one sentence with a non-zero exit code; ``--json`` prints one JSON document
on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from core import connection, demo, keys, launcher, providers
from core.checks import Check
from core.labelstudio import LabelStudioError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "action"):
        parser.print_help()
        return 2
    try:
        return args.action(args)
    except (LabelStudioError, keys.InvalidKey, keys.KeyNotFound, providers.KeyUnusable, ValueError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser("run", help="start Label Studio (unless configured), the demo and the dashboard")
    run.set_defaults(action=lambda _args: launcher.run())

    projects = commands.add_parser("projects", help="Label Studio projects").add_subparsers(title="projects")
    listing = projects.add_parser("list", help="projects with their task and ground-truth counts")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_projects_list)

    _keys_commands(commands)
    _labelstudio_commands(commands)

    demo_parser = commands.add_parser("demo", help="the demo project").add_subparsers(title="demo")
    create = demo_parser.add_parser("create", help="create the demo project if it is not there yet")
    create.add_argument("--json", action="store_true", help="print one JSON document")
    create.set_defaults(action=_demo_create)
    return parser


def _projects_list(args: argparse.Namespace) -> int:
    projects = connection.client().projects()
    if args.json:
        print(json.dumps({"projects": [dataclasses.asdict(p) for p in projects]}))
        return 0
    print(f"{'id':>5}  {'tasks':>6}  {'annotated':>9}  {'ground truth':>12}  title")
    for p in projects:
        print(f"{p.id:>5}  {p.task_count:>6}  {p.annotated_count:>9}  {p.ground_truth_count:>12}  {p.title}")
    return 0


def _demo_create(args: argparse.Namespace) -> int:
    project, created = demo.ensure_project(connection.client())
    if args.json:
        print(json.dumps({"project": dataclasses.asdict(project), "created": created}))
    else:
        print(f"{'Created' if created else 'Found'} demo project #{project.id} {project.title!r}.")
    return 0


def _keys_commands(commands) -> None:
    group = commands.add_parser("keys", help="model-provider keys").add_subparsers(title="keys")

    add = group.add_parser("add", help="save a provider key under a name")
    add.add_argument("name")
    add.add_argument("--provider", required=True, choices=list(keys.PROVIDERS))
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--api-key", help="the key itself (saved encrypted)")
    secret.add_argument("--api-key-env", metavar="VAR", help="read the key from this environment variable at use; never saved")
    add.add_argument("--base-url", help="OpenAI or OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1")
    add.add_argument("--organization", help="OpenAI organization id")
    add.add_argument("--endpoint", help="Azure OpenAI endpoint, e.g. https://my-resource.openai.azure.com")
    add.add_argument("--deployment", help="Azure OpenAI deployment name")
    add.add_argument("--api-version", help=f"Azure OpenAI API version (default {keys.DEFAULT_AZURE_API_VERSION})")
    add.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="extra header, repeatable")
    add.add_argument("--json", action="store_true", help="print one JSON document")
    add.set_defaults(action=_keys_add)

    listing = group.add_parser("list", help="saved keys and keys from the environment, masked")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_keys_list)

    test = group.add_parser("test", help="test a key; exits non-zero when the test fails")
    test.add_argument("name")
    test.add_argument("--json", action="store_true", help="print one JSON document")
    test.set_defaults(action=_keys_test)

    remove = group.add_parser("remove", help="delete a saved key")
    remove.add_argument("name")
    remove.set_defaults(action=_keys_remove)


def _labelstudio_commands(commands) -> None:
    group = commands.add_parser("labelstudio", help="the Label Studio connection").add_subparsers(title="labelstudio")
    set_ = group.add_parser("set", help="save the Label Studio URL and token")
    set_.add_argument("--url", required=True)
    set_.add_argument("--api-key", required=True, help="legacy token or personal access token")
    set_.set_defaults(action=_labelstudio_set)
    test = group.add_parser("test", help="test the connection in use; exits non-zero when it fails")
    test.add_argument("--json", action="store_true", help="print one JSON document")
    test.set_defaults(action=_labelstudio_test)


def _keys_add(args: argparse.Namespace) -> int:
    key = keys.add(
        args.name,
        args.provider,
        api_key=args.api_key,
        **{name: getattr(args, name) for name in keys.PLAIN_FIELDS},
        extra_headers=dict(keys.parse_header(h) for h in args.header),
    )
    if args.json:
        print(json.dumps({"key": key.summary()}))
    else:
        print(f"Saved key {key.name!r} ({key.masked}).")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    found = keys.all_keys()
    if args.json:
        print(json.dumps({"keys": [k.summary() for k in found]}))
        return 0
    if not found:
        print("No keys yet: add one with `python -m core keys add NAME --provider openai --api-key-env OPENAI_API_KEY`.")
    for key in found:
        note = f"  ! {key.problem}" if key.problem else ""
        print(f"{key.name:<24} {key.masked:<32} {key.source:<12} {key.address}{note}")
    return 0


def _keys_test(args: argparse.Namespace) -> int:
    return _report(providers.test(keys.get(args.name)), args.json, name=args.name)


def _keys_remove(args: argparse.Namespace) -> int:
    keys.remove(args.name)
    print(f"Removed key {args.name!r}.")
    return 0


def _labelstudio_set(args: argparse.Namespace) -> int:
    saved = connection.save(args.url, args.api_key)
    print(f"Saved the Label Studio connection to {saved.url}.")
    if connection.environment_overrides_saved():
        print("Note: LABEL_STUDIO_URL is set in the environment, and wins over the saved connection.")
    return 0


def _labelstudio_test(args: argparse.Namespace) -> int:
    return _report(connection.test(), args.json)


def _report(check: Check, as_json: bool, **extra) -> int:
    if as_json:
        print(json.dumps({**extra, "ok": check.ok, "outcome": check.outcome, "message": check.message, "models": list(check.models)}))
    elif check.ok:
        print(check.message)
    if not check.ok:
        print(f"error: {check.message}", file=sys.stderr)
    return 0 if check.ok else 1


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
