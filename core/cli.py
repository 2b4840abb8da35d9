"""`python -m core ...`: the dashboard's actions from the command line.

Errors go to stderr as one sentence with a non-zero exit code; ``--json`` prints one JSON document
on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from core import connection, demo, launcher
from core.labelstudio import LabelStudioError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "action"):
        parser.print_help()
        return 2
    try:
        return args.action(args)
    except LabelStudioError as error:
        print(f"error: {error}", file=sys.stderr)
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
