"""`python -m core ...`: the dashboard's actions from the command line.

Errors go to stderr as one sentence with a non-zero exit code; ``--json`` prints one JSON document
on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys
from contextlib import nullcontext
from datetime import date
from pathlib import Path
from typing import Any

from core import audit, batch_runs, budgets, connection, demo, enhance, fewshot, identity, keys, launcher, messages, predict, pricing, prompts, providers, runs
from core.backend import commands as backend_commands
from core.evaluation import split, subsets
from core.checks import Check
from core.formatting import interval, percent, percent_with_interval, usd
from core.labelstudio import LabelStudioError
from core.prompts import PromptError, Version
from core.workbench import Trial, Workbench


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "action"):
        parser.print_help()
        return 2
    try:
        acting = identity.acting_as(identity.for_cli(args.as_user)) if args.as_user else nullcontext()
        with acting:
            return args.action(args)
    except (LabelStudioError, keys.InvalidKey, keys.KeyNotFound, providers.KeyUnusable, ValueError) as error:  # RunError is one
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--as",
        dest="as_user",
        metavar="EMAIL",
        default=os.environ.get("PROMPTER_AS") or None,
        help="act as this team member, with their role and budget (default: PROMPTER_AS; in personal mode, the local admin)",
    )
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser("run", help="start Label Studio (unless configured), the demo and the dashboard")
    run.set_defaults(action=lambda _args: launcher.run())

    projects = commands.add_parser("projects", help="Label Studio projects").add_subparsers(title="projects")
    listing = projects.add_parser("list", help="projects with their task and ground-truth counts")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_projects_list)

    _keys_commands(commands)
    _labelstudio_commands(commands)
    _prompts_commands(commands)
    _ground_truth_commands(commands)
    _evaluate_command(commands)
    _calibration_command(commands)
    _optimize_commands(commands)
    _prices_commands(commands)
    _predict_commands(commands)
    _runs_commands(commands)
    _worker_command(commands)
    _team_commands(commands)
    _activity_commands(commands)
    backend_commands.add(commands)

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

    add = group.add_parser("add", help="test a provider key, then save it under a name; exits non-zero, saving nothing, when the test fails")
    add.add_argument("name")
    add.add_argument("--provider", required=True, choices=list(keys.PROVIDERS))
    _key_options(add)
    add.set_defaults(action=_keys_add)

    edit = group.add_parser(
        "edit",
        help="change a saved key, test it, then save it; a new base URL, endpoint, organization or headers needs the key given again",
    )
    edit.add_argument("name")
    edit.add_argument("--name", dest="new_name", metavar="NEW_NAME", help="rename the key")
    _key_options(edit, editing=True)
    edit.set_defaults(action=_keys_edit)

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

    budget = group.add_parser("budget", help="set what runs on a key may spend in a calendar month (admins)")
    budget.add_argument("name")
    amount = budget.add_mutually_exclusive_group(required=True)
    amount.add_argument("--usd", type=float, help="the monthly budget in US dollars")
    amount.add_argument("--none", action="store_true", help="remove the budget")
    budget.set_defaults(action=_keys_budget)


def _labelstudio_commands(commands) -> None:
    group = commands.add_parser("labelstudio", help="the Label Studio connection").add_subparsers(title="labelstudio")
    set_ = group.add_parser("set", help="save the Label Studio URL and token")
    set_.add_argument("--url", required=True)
    set_.add_argument("--api-key", required=True, metavar="TOKEN", help=f"legacy token or personal access token: {SECRET_HELP}")
    set_.set_defaults(action=_labelstudio_set)
    test = group.add_parser("test", help="test the connection in use; exits non-zero when it fails")
    test.add_argument("--json", action="store_true", help="print one JSON document")
    test.set_defaults(action=_labelstudio_test)


def _key_options(parser: argparse.ArgumentParser, *, editing: bool = False) -> None:
    """The options `keys add` and `keys edit` share; on an edit, an option not given keeps the saved value."""
    keep = "; not given: the saved one is kept, unless the address changes" if editing else ""
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--api-key", metavar="KEY", help=f"the key itself, saved encrypted: {SECRET_HELP}{keep}")
    secret.add_argument("--api-key-env", metavar="VAR", help="read the key from this environment variable at each use; never saved")
    parser.add_argument("--base-url", help="OpenAI or OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1")
    parser.add_argument("--organization", help="OpenAI organization id")
    parser.add_argument("--endpoint", help="Azure OpenAI endpoint, e.g. https://my-resource.openai.azure.com")
    parser.add_argument("--deployment", help="Azure OpenAI deployment name")
    parser.add_argument("--api-version", help=f"Azure OpenAI API version (default {keys.DEFAULT_AZURE_API_VERSION})")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra header, repeatable, saved encrypted; '-' reads 'Name: value' lines from standard input and 'env:VAR' "
        "from the variable VAR (a header given on the command line is visible to other users in `ps`)"
        + ("; given: replaces every saved header" if editing else ""),
    )
    parser.add_argument("--no-test", action="store_true", help="save without testing the key first")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _keys_add(args: argparse.Namespace) -> int:
    secrets = _SecretReader()
    fields = {
        "api_key": secrets.read("--api-key", args.api_key),
        **{name: getattr(args, name) for name in keys.PLAIN_FIELDS},
        "extra_headers": keys.parse_headers(secrets.lines("--header", args.header)),
    }
    return _saved_key(lambda: keys.test_and_add(args.name, args.provider, anyway=args.no_test, **fields), args.json)


def _keys_edit(args: argparse.Namespace) -> int:
    secrets = _SecretReader()
    given = {
        "name": args.new_name,
        "api_key": secrets.read("--api-key", args.api_key),
        **{name: getattr(args, name) for name in keys.PLAIN_FIELDS},
        "extra_headers": keys.parse_headers(secrets.lines("--header", args.header)),
    }
    changes = {field: value for field, value in given.items() if value is not None}
    if not changes:
        raise ValueError(
            "keys edit: give at least one change (--name, --api-key, --api-key-env, --base-url, --organization, "
            "--endpoint, --deployment, --api-version or --header)."
        )
    return _saved_key(lambda: keys.test_and_update(args.name, anyway=args.no_test, **changes), args.json)


def _saved_key(save, as_json: bool) -> int:
    try:
        key, check = save()
    except keys.KeyTestFailed as error:
        print(f"error: Not saved. {_one_line(error)} (--no-test saves it without a test.)", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"key": key.summary(), "test": {"outcome": check.outcome, "message": check.message} if check else None}))
    else:
        print(f"Saved key {key.name!r} ({key.masked}). {check.message if check else 'Not tested (--no-test).'}")
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
    return _report(keys.test(args.name), args.json, name=args.name)


def _keys_budget(args: argparse.Namespace) -> int:
    budgets.set_key_budget(args.name, None if args.none else args.usd)
    spent = budgets.key_spend(args.name)
    print(f"Key {args.name!r}: {'no budget' if args.none else f'monthly budget {usd(args.usd)}'}; {usd(spent)} spent this month.")
    return 0


def _keys_remove(args: argparse.Namespace) -> int:
    keys.remove(args.name)
    print(f"Removed key {args.name!r}.")
    return 0


def _labelstudio_set(args: argparse.Namespace) -> int:
    saved = connection.save(args.url, _SecretReader().read("--api-key", args.api_key))
    print(f"Saved the Label Studio connection to {saved.url}.")
    if connection.environment_overrides_saved():
        print("Note: LABEL_STUDIO_URL is set in the environment, and wins over the saved connection.")
    return 0


def _labelstudio_test(args: argparse.Namespace) -> int:
    return _report(connection.test(), args.json)


SECRET_HELP = (
    "'-' reads it from standard input, 'env:VAR' from the environment variable VAR; given as is on the command "
    "line it is visible to other users of this machine (ps, /proc) and kept in your shell history"
)


class _SecretReader:
    """Secret option values, read the way the option's value says: '-' is standard input (one option per
    command can read it), 'env:VAR' the variable VAR as it is now, anything else the secret itself.

    Standard input and the environment keep a secret out of the process's command line, which any user
    of the machine can read (`ps`); a terminal on standard input is asked without echo."""

    STDIN = "-"
    ENVIRONMENT = "env:"

    def __init__(self):
        self.stdin_read_by: str | None = None

    def read(self, option: str, value: str | None) -> str | None:
        if value is None:
            return None
        if value == self.STDIN:
            return self._stdin(option)
        if value.startswith(self.ENVIRONMENT):
            return self._environment(option, value[len(self.ENVIRONMENT):])
        return value

    def lines(self, option: str, values: list[str]) -> list[str]:
        """Each value read as ``read`` does; one read from stdin or a variable may hold several lines."""
        return [line for value in values for line in (self.read(option, value) or "").splitlines()]

    def _stdin(self, option: str) -> str:
        if self.stdin_read_by is not None:
            raise ValueError(
                f"{option} -: standard input is already read for {self.stdin_read_by}; give only one secret as '-' "
                "and the others as env:VAR."
            )
        self.stdin_read_by = option
        if sys.stdin is None:
            raise ValueError(f"{option} -: there is no standard input to read; pipe the secret in, or give it as env:VAR.")
        text = getpass.getpass(f"{option}: ") if sys.stdin.isatty() else sys.stdin.read()
        if not text.strip():
            raise ValueError(
                f"{option} -: standard input was empty; pipe the secret in, e.g. printf '%s' \"$SECRET\" | python -m core ..."
            )
        return text.strip()

    def _environment(self, option: str, name: str) -> str:
        if not name or not name.replace("_", "").isalnum() or name[0].isdigit():
            raise ValueError(f"{option} env:{name}: {name!r} is not an environment variable name; write env:VAR, e.g. env:OPENAI_API_KEY.")
        text = os.environ.get(name, "")
        if not text.strip():
            raise ValueError(
                f"{option} env:{name}: the environment variable {name} is not set; export it first, or give the secret "
                f"on standard input with {option} -."
            )
        return text.strip()


def _report(check: Check, as_json: bool, **extra) -> int:
    if as_json:
        print(json.dumps({**extra, "ok": check.ok, "outcome": check.outcome, "message": check.message, "models": list(check.models)}))
    elif check.ok:
        print(check.message)
    if not check.ok:
        print(f"error: {check.message}", file=sys.stderr)
    return 0 if check.ok else 1


# -- prompts ----------------------------------------------------------------------------------------


def _prompts_commands(commands) -> None:
    group = commands.add_parser("prompts", help="prompts and their versions").add_subparsers(title="prompts")

    create = group.add_parser("create", help="create a prompt and its v1, checked against the project")
    create.add_argument("--project", type=int, required=True, metavar="ID", help="Label Studio project id")
    create.add_argument("--name", required=True)
    create.add_argument("--key", required=True, help="name of the provider key to call the model with")
    create.add_argument("--model", required=True, help="e.g. gpt-4o-mini")
    create.add_argument("--template-file", required=True, metavar="FILE", help="the template (user message), UTF-8 text")
    _version_options(create)
    create.set_defaults(action=_prompts_create)

    version = group.add_parser("version", help="save a new version: the latest with the changes given")
    version.add_argument("--prompt", required=True, metavar="NAME")
    version.add_argument("--project", type=int, metavar="ID", help="project id, when prompts in several projects share the name")
    version.add_argument("--template-file", metavar="FILE", help="the new template (user message), UTF-8 text")
    version.add_argument("--model")
    version.add_argument("--key", help="name of the provider key to call the model with")
    _version_options(version)
    version.set_defaults(action=_prompts_version)

    listing = group.add_parser("list", help="every prompt's latest version")
    listing.add_argument("--project", type=int, metavar="ID", help="only this project's prompts")
    listing.add_argument("--archived", action="store_true", help="the archived prompts instead")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_prompts_list)

    for name, help_, act in (
        ("archive", "hide a prompt from the pickers; its versions and runs are kept", prompts.archive),
        ("restore", "bring an archived prompt back", prompts.restore),
        ("delete", "delete a prompt that has no runs (archive one that has)", prompts.delete),
    ):
        command = group.add_parser(name, help=help_)
        command.add_argument("name")
        command.add_argument("--project", type=int, metavar="ID", help="project id, when prompts in several projects share the name")
        command.set_defaults(action=lambda args, act=act, done=name: _prompt_state(args, act, done))

    show = group.add_parser("show", help="one version's settings, system message and template")
    _pick_version(show)
    show.add_argument("--json", action="store_true", help="print one JSON document")
    show.set_defaults(action=_prompts_show)

    try_ = group.add_parser("try", help="call the model once on one task; exits non-zero when the trial fails")
    _pick_version(try_)
    task = try_.add_mutually_exclusive_group(required=True)
    task.add_argument("--task", type=int, metavar="ID", help="the task id")
    task.add_argument("--next-ground-truth", action="store_true", help="the project's first ground-truth task")
    try_.add_argument("--json", action="store_true", help="print one JSON document")
    try_.set_defaults(action=_prompts_try)

    enhance_ = group.add_parser("enhance", help="a teacher model reads an evaluation's errors on the development part and proposes a better prompt")
    _pick_version(enhance_)
    enhance_.add_argument("--run", type=int, metavar="ID", help="the evaluation to learn from (default: the version's latest)")
    enhance_.add_argument("--teacher-key", required=True, metavar="KEY", help="the saved key to call the teacher with")
    enhance_.add_argument("--teacher-model", required=True, metavar="MODEL", help="e.g. gpt-4o")
    enhance_.add_argument("--save", action="store_true", help="save the proposal as the next version (without it, nothing is saved)")
    enhance_.add_argument("--evaluate", action="store_true", help="also evaluate the proposal and the version on the test part, and print the gain")
    enhance_.add_argument("--json", action="store_true", help="print one JSON document")
    enhance_.set_defaults(action=_prompts_enhance)


def _version_options(parser: argparse.ArgumentParser) -> None:
    """The settings `create` and `version` share; `version` keeps the latest's for those not given."""
    parser.add_argument("--system-file", metavar="FILE", help="the system message, UTF-8 text (an empty file means none)")
    parser.add_argument("--controls", type=_names, metavar="a,b", help="the outputs to fill (create's default: every one the config has)")
    parser.add_argument("--temperature", type=float, help="0 to 2 (create's default: 0)")
    parser.add_argument("--max-output-tokens", type=int, metavar="N", help="create's default: the model's")
    parser.add_argument("--note", help="what this version changes")
    parser.add_argument(
        "--samples",
        type=int,
        metavar="N",
        help=f"measure each answer's confidence by the agreement of N answers (2 to {prompts.MAX_SAMPLES}, at the version's temperature: "
        "N times the output tokens); 0: from log-probabilities (the default)",
    )
    parser.add_argument(
        "--examples",
        choices=[*fewshot.HOW, "none"],
        help="few-shot examples from the examples part of the ground-truth split: "
        + "; ".join(f"{how}: {meaning}" for how, meaning in fewshot.HOW.items())
        + "; none: no examples",
    )
    parser.add_argument("--k", type=int, default=3, metavar="N", help="how many examples (default %(default)s; with ids, the ids given)")
    parser.add_argument("--examples-seed", type=int, default=0, metavar="S", help="the seed of random and per-class examples (default 0)")
    parser.add_argument("--example-ids", type=_ids, metavar="1,2,3", help="the example task ids (--examples ids)")
    parser.add_argument(
        "--examples-embeddings",
        metavar="KEY:MODEL",
        help="rank --examples similar by this saved key's embeddings model (e.g. team:text-embedding-3-small) instead of TF-IDF",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _pick_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the prompt's name")
    parser.add_argument("--version", type=int, metavar="N", help="default: the latest")
    parser.add_argument("--project", type=int, metavar="ID", help="project id, when prompts in several projects share the name")


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _prompts_create(args: argparse.Namespace) -> int:
    changes = _changes(args)
    workbench = Workbench.open(args.project)
    draft = workbench.draft(name=args.name, note=args.note, **changes)
    saved = workbench.save_new_prompt(args.name, _with_examples(args, workbench, draft))
    return _print_saved(saved, args.json)


def _prompts_version(args: argparse.Namespace) -> int:
    changes = _changes(args)
    if not changes and not args.examples:
        raise PromptError(
            "version: give at least one change (--template-file, --system-file, --model, --key, --controls, "
            "--temperature, --max-output-tokens, --samples or --examples); without one the new version would repeat the latest."
        )
    latest = prompts.version(args.prompt, project_id=args.project)
    # A note describes one version's change, so the latest's is not carried over.
    draft = dataclasses.replace(latest, note=args.note, **changes)
    workbench = Workbench.open(latest.project_id)
    saved = workbench.save_version(latest.prompt, _with_examples(args, workbench, draft))
    return _print_saved(saved, args.json)


def _with_examples(args: argparse.Namespace, workbench: Workbench, draft):
    """The draft with the few-shot examples asked for (chosen now, and kept in the version)."""
    if not args.examples:
        return draft
    if args.examples == "none":
        return dataclasses.replace(draft, examples=None)
    embeddings = None
    if args.examples_embeddings:
        key, colon, model = args.examples_embeddings.partition(":")
        if not colon or not key or not model or args.examples != "similar":
            raise PromptError("--examples-embeddings: give KEY:MODEL (e.g. team:text-embedding-3-small), with --examples similar.")
        embeddings = (key, model)
    chosen = workbench.choose_examples(draft.controls, how=args.examples, k=args.k, seed=args.examples_seed, ids=args.example_ids or (), embeddings=embeddings)
    return dataclasses.replace(draft, examples=chosen)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The version settings given on the command line, files read."""
    given = {
        "template": _read_text("--template-file", args.template_file),
        "system_message": _read_text("--system-file", args.system_file),
        "controls": args.controls,
        "provider_key": args.key,
        "model": args.model,
        "temperature": args.temperature,
        "max_output_tokens": args.max_output_tokens,
    }
    found = {setting: value for setting, value in given.items() if value is not None}
    if args.samples is not None:
        found["samples"] = args.samples or None  # 0: back to log-probabilities
    return found


def _read_text(option: str, path: str | None) -> str | None:
    if path is None:
        return None
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ValueError(f"{option} {path} does not exist; give the path of a UTF-8 text file.") from None
    except UnicodeDecodeError as error:
        bad = error.object[error.start]
        raise ValueError(f"{option} {path} is not UTF-8 text (byte 0x{bad:02x} at position {error.start}); save it as UTF-8.") from None
    except OSError as error:
        raise ValueError(f"{option} {path} cannot be read ({error.strerror}).") from None
    # Editors on Windows may add a byte-order mark and \r\n; neither belongs in the prompt.
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _print_saved(saved: Version, as_json: bool) -> int:
    if as_json:
        print(json.dumps(_version_document(saved)))
    else:
        print(f"Saved {saved.prompt} v{saved.number} ({saved.model_version}) for project {saved.project_id}.")
    return 0


def _prompt_state(args: argparse.Namespace, act, done: str) -> int:
    act(args.name, args.project)
    past = {"archive": "Archived", "restore": "Restored", "delete": "Deleted"}[done]
    print(f"{past} prompt {args.name!r}.")
    return 0


def _prompts_list(args: argparse.Namespace) -> int:
    found = prompts.latest_versions(args.project, archived=args.archived)
    if args.json:
        print(json.dumps({"prompts": [_version_document(v) for v in found]}))
        return 0
    if not found:
        print("No prompts yet: create one with `python -m core prompts create --project ID --name NAME ...`.")
        return 0
    print(f"{'prompt':<24} {'project':>7} {'latest':>6}  {'model':<20} {'key':<16} {'controls':<24} created")
    for v in found:
        created = f"{v.created_at:%Y-%m-%d %H:%M}" if v.created_at else ""
        print(f"{v.prompt:<24} {v.project_id:>7} {'v' + str(v.number):>6}  {v.model:<20} {v.provider_key:<16} {','.join(v.controls):<24} {created}")
    return 0


def _prompts_show(args: argparse.Namespace) -> int:
    version = prompts.version(args.name, args.version, args.project)
    if args.json:
        print(json.dumps(_version_document(version)))
    else:
        print(_version_text(version))
    return 0


def _version_document(v: Version) -> dict[str, Any]:
    return {
        "prompt": v.prompt,
        "version": v.number,
        "project_id": v.project_id,
        **{setting: getattr(v, setting) for setting in prompts.EDITABLE},
        "controls": list(v.controls),
        "model_version": v.model_version,
        "created_at": v.created_at.isoformat() if v.created_at else None,
    }


def _version_text(v: Version) -> str:
    created = f", saved {v.created_at:%Y-%m-%d %H:%M} UTC" if v.created_at else ""
    max_tokens = v.max_output_tokens if v.max_output_tokens is not None else "the model's default"
    return "\n".join(
        [
            f"{v.prompt} v{v.number} ({v.model_version}), project {v.project_id}{created}",
            f"model: {v.model} with key {v.provider_key!r}",
            f"temperature: {v.temperature:g}; max output tokens: {max_tokens}",
            f"controls: {', '.join(v.controls)}",
            f"few-shot examples: {fewshot.describe(v.examples)}",
            f"confidence: {prompts.describe_confidence(v.samples)}",
            f"note: {v.note or '-'}",
            "",
            "--- system message ---",
            v.system_message or "(none)",
            "",
            "--- template ---",
            v.template,
        ]
    )


def _prompts_try(args: argparse.Namespace) -> int:
    version = prompts.version(args.name, args.version, args.project)
    workbench = Workbench.open(version.project_id)
    trial = workbench.try_on(version, workbench.task(args.task))
    if args.json:
        print(json.dumps(_trial_document(version, trial)))
    else:
        print(_trial_text(version, trial))
    if trial.error:
        print(f"error: {_one_line(trial.error)}", file=sys.stderr)
        return 1
    return 0


def _prompts_enhance(args: argparse.Namespace) -> int:
    version = prompts.version(args.name, args.version, args.project)
    run_id = args.run
    if run_id is None:
        found = [r for r in runs.runs(prompt=version.prompt, project_id=version.project_id, kind="evaluate") if r.version == version.number and r.finished]
        if not found:
            raise enhance.EnhanceError(f"{version.model_version} has no evaluation to learn from; evaluate it on the development part first.")
        run_id = found[0].id
    proposal = enhance.propose(version, run_id, teacher_key=args.teacher_key, teacher_model=args.teacher_model)
    saved = Workbench.open(version.project_id).save_version(version.prompt, proposal.draft()) if args.save else None
    checked = None
    if args.evaluate:
        checked = [runs.execute(r.id) if r.status != "completed" else r for r in enhance.check_on_test(proposal)]
        failed = [r for r in checked if r.status != "completed"]
        if failed:
            raise runs.RunError(f"The check on the test part did not finish: run {failed[0].id} is {failed[0].status} ({failed[0].status_reason}).")
        compared = enhance.gain(checked[0].id, checked[1].id)
    if args.json:
        print(json.dumps({
            "prompt": version.prompt, "version": version.number, "run_id": run_id, "system_message": proposal.system_message,
            "template": proposal.template, "rationale": proposal.rationale, "errors_sent": proposal.errors_sent,
            "errors_left_out": proposal.errors_left_out, "teacher": proposal.teacher, "cost_usd": proposal.cost_usd,
            "saved_version": saved.number if saved else None,
            "test_check": compared.to_dict() | {"verdict": compared.verdict(), "runs": [r.id for r in checked]} if checked else None,
        }))
        return 0
    print(f"Proposal for {version.model_version} from {proposal.teacher}, after {len(proposal.errors_sent)} development errors of run {run_id}"
          + (f" ({proposal.errors_left_out} more left out to keep the request short)" if proposal.errors_left_out else "") + f"; cost {usd(proposal.cost_usd)}")
    print(f"\nWhy: {proposal.rationale}\n")
    print(prompts.diff(version, proposal.draft()).text() or "(no change)")
    if checked:
        print(f"\nOn the test part (runs {checked[0].id} and {checked[1].id}): {compared.verdict()}")
    print(f"\nSaved as {saved.model_version}." if saved else "\nNothing saved: add --save to save it as the next version.")
    return 0


def _trial_document(version: Version, trial: Trial) -> dict[str, Any]:
    found = dataclasses.asdict(trial)
    del found["request"]  # the messages are the part to read; the rest of the body is settings shown by `show`
    return {"prompt": version.prompt, "version": version.number, "project_id": version.project_id, **found, "correct": trial.correct}


def _trial_text(version: Version, trial: Trial) -> str:
    lines = [f"{version.model_version} on task {trial.task_id}", "", "--- messages sent ---", messages.text_parts(trial.messages) or "(none)"]
    lines += ["", "--- raw answer ---", trial.raw if trial.raw is not None else "(none)", ""]
    parsed = json.dumps(trial.parsed, ensure_ascii=False) if trial.parsed is not None else "(none)"
    sure = f"{trial.confidence:.2f}" if trial.confidence is not None else "none (nothing to measure it by)"
    lines += [f"parsed: {parsed}", f"ground truth: {_regions_text(trial.ground_truth)}", f"verdict: {_verdict(trial)}", f"confidence: {sure}", _usage_text(version, trial)]
    return "\n".join(lines)


def _regions_text(regions: list[dict[str, Any]] | None) -> str:
    if regions is None:
        return "none (the task has no ground-truth annotation)"
    return "; ".join(f"{r.get('from_name')}: {json.dumps(r.get('value'), ensure_ascii=False)}" for r in regions) or "empty"


def _verdict(trial: Trial) -> str:
    if trial.error:
        return "failed (see the error)"
    if trial.correct is None:
        return "no verdict without ground truth"
    if trial.correct:
        return "correct"
    return "wrong (not as the ground truth: " + ", ".join(name for name, matched in trial.matches.items() if not matched) + ")"


def _usage_text(version: Version, trial: Trial) -> str:
    cost = f"${trial.cost_usd:.6f}" if trial.cost_usd is not None else f"unknown (no list price for {version.model})"
    latency = f"{trial.latency_ms:.0f} ms" if trial.latency_ms is not None else "-"
    return f"tokens: {trial.input_tokens} in, {trial.output_tokens} out; cost: {cost}; latency: {latency}"


def _one_line(error: Exception | str) -> str:
    return " ".join(str(error).split())


# -- ground truth ----------------------------------------------------------------------------------


def _ground_truth_commands(commands) -> None:
    group = commands.add_parser("ground-truth", help="a project's ground truth: its examples, development and test parts").add_subparsers(title="ground-truth")
    divide = group.add_parser("split", help="split the project's ground-truth tasks into examples, development and test parts (seeded, stratified by class)")
    divide.add_argument("--project", type=int, required=True, metavar="ID")
    divide.add_argument("--examples", type=int, default=split.DEFAULT_EXAMPLES, metavar="N", help="tasks kept for few-shot examples (default %(default)s)")
    divide.add_argument("--test-share", type=float, default=split.DEFAULT_TEST_SHARE, metavar="SHARE", help="share held out for testing (default %(default)s)")
    divide.add_argument("--seed", type=int, default=split.DEFAULT_SEED, help="the split's random seed (default %(default)s)")
    divide.add_argument("--replace", action="store_true", help="replace the project's existing split (earlier test figures stop being comparable)")
    divide.add_argument("--json", action="store_true", help="print one JSON document")
    divide.set_defaults(action=_ground_truth_split)
    show = group.add_parser("show", help="the project's split: which task is in which part")
    show.add_argument("--project", type=int, required=True, metavar="ID")
    show.add_argument("--json", action="store_true", help="print one JSON document")
    show.set_defaults(action=_ground_truth_show)


def _ground_truth_split(args: argparse.Namespace) -> int:
    made = split.make(connection.client(), args.project, examples=args.examples, test_share=args.test_share, seed=args.seed, replace=args.replace)
    return _print_split(made, args.json)


def _ground_truth_show(args: argparse.Namespace) -> int:
    found = split.get(args.project)
    if found is None:
        print(f"error: project {args.project} has no split yet; make one with `python -m core ground-truth split --project {args.project}`.", file=sys.stderr)
        return 1
    return _print_split(found, args.json)


def _print_split(found: split.Split, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"split": found.to_dict()}))
        return 0
    print(f"Project {found.project_id}: {found.describe()}")
    for part in split.PARTS:
        ids = found.parts[part]
        print(f"  {part:<12} {len(ids):>4} tasks: {', '.join(map(str, ids[:20]))}{', ...' if len(ids) > 20 else ''}")
    return 0


# -- evaluate and runs ------------------------------------------------------------------------------


def _evaluate_command(commands) -> None:
    parser = commands.add_parser("evaluate", help="run a version on a subset of tasks and score it against the ground truth")
    parser.add_argument("--prompt", required=True, metavar="NAME")
    parser.add_argument("--version", type=int, metavar="N", help="default: the latest")
    parser.add_argument("--project", type=int, metavar="ID", help="project id, when prompts in several projects share the name")
    parser.add_argument("--subset", choices=[k for k in subsets.KINDS if k != "tasks"], default="ground-truth")
    parser.add_argument("--sample-size", type=int, metavar="N", help="tasks in the sample (--subset sample)")
    parser.add_argument("--seed", type=int, default=0, help="the sample's random seed (default 0)")
    parser.add_argument("--tasks", type=_ids, metavar="1,2,3", help="these task ids (instead of --subset)")
    parser.add_argument("--concurrency", type=int, default=runs.DEFAULT_CONCURRENCY, metavar="C", help="calls at once (default %(default)s)")
    parser.add_argument(
        "--models",
        metavar="KEY:MODEL,...",
        help="a model matrix: the version on each of these saved keys and models (its prompt unchanged), side by side; not written to Label Studio",
    )
    _cache_option(parser)
    _batch_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(action=_evaluate)


def _optimize_commands(commands) -> None:
    parser = commands.add_parser(
        "optimize",
        help="search for a better prompt from a version (gepa): candidates scored on the development part, the best checked on the test part",
        description="With --prompt: start a search and work it here until it ends. Its subcommands follow searches already started.",
    )
    parser.add_argument("--prompt", metavar="NAME", help="the prompt to optimize")
    parser.add_argument("--version", type=int, metavar="N", help="the version to start from (default: the latest)")
    parser.add_argument("--project", type=int, metavar="ID", help="project id, when prompts in several projects share the name")
    parser.add_argument("--reflection-key", metavar="KEY", help="the saved key the reflection model is called with")
    parser.add_argument("--reflection-model", metavar="MODEL", help="the model that reads the errors and proposes candidates, e.g. gpt-4o")
    parser.add_argument("--max-calls", type=int, metavar="N", help="model calls the whole search may send, the final check on the test part included")
    parser.add_argument("--max-cost", type=float, metavar="USD", help="US dollars the whole search may spend (default: no limit)")
    parser.add_argument("--concurrency", type=int, default=runs.DEFAULT_CONCURRENCY, metavar="C", help="calls at once (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="gepa's random seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(action=_optimize)
    group = parser.add_subparsers(title="searches already started")
    listing = group.add_parser("list", help="searches, newest first")
    listing.add_argument("--prompt", metavar="NAME")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_optimize_list)
    for name, help_, action in (
        ("show", "one search: its budget, what it spent, the candidates it kept, and the check on the test part", _optimize_show),
        ("resume", "go on with a stopped search, here (what it evaluated comes from the cache)", _optimize_resume),
        ("cancel", "stop a search: no new call goes out; what it kept stays kept", _optimize_cancel),
        ("work", "(the dashboard's background worker) work a search quietly", lambda args: _optimize_ended(optimize_module().execute(args.optimization_id))),
    ):
        command = group.add_parser(name, help=help_)
        command.add_argument("optimization_id", type=int)
        command.add_argument("--json", action="store_true", help="print one JSON document")
        command.set_defaults(action=action)


def optimize_module():
    from core import optimize  # gepa, scikit-learn and scipy: loaded only by the commands that search

    return optimize


def _optimize(args: argparse.Namespace) -> int:
    missing = [f"--{name.replace('_', '-')}" for name in ("prompt", "reflection_key", "reflection_model", "max_calls") if getattr(args, name) is None]
    if missing:
        raise ValueError(f"optimize: {', '.join(missing)} missing; e.g. `optimize --prompt sentiment --reflection-key team --reflection-model gpt-4o --max-calls 300`.")
    optimize = optimize_module()
    version = prompts.version(args.prompt, args.version, args.project)
    client = connection.client()
    found = optimize.start(
        version, reflection_key=args.reflection_key, reflection_model=args.reflection_model, max_calls=args.max_calls,
        max_cost_usd=args.max_cost, concurrency=args.concurrency, seed=args.seed, client=client,
    )
    print(f"Optimize {found.id}: from {version.model_version}, at most {found.max_calls} calls ({found.reserved_calls} held for the check on the test part)"
          + (f" and {usd(found.max_cost_usd)}" if found.max_cost_usd is not None else "") + ".", file=sys.stderr)
    return _optimize_ended(optimize.execute(found.id, client=client, progress=_search_progress), args.json)


def _search_progress(found) -> None:
    print(f"\r{found.calls_used}/{found.max_calls} calls, {found.evaluations} evaluations, {usd(found.cost_usd)}   ", end="", file=sys.stderr, flush=True)


def _optimize_ended(found, as_json: bool = False) -> int:
    print(file=sys.stderr)
    _print_search(found, as_json)
    if found.status != "completed":
        print(f"error: Optimize {found.id} is {found.shown_status}: {found.status_reason or 'not finished'}", file=sys.stderr)
        return 1
    return 0


def _print_search(found, as_json: bool) -> None:
    from core.evaluation import evaluate

    document = found.document()
    gain = None
    if found.seed_test_run_id and found.best_test_run_id and found.status == "completed":
        compared = evaluate.compare_runs(found.seed_test_run_id, found.best_test_run_id)
        gain = compared.to_dict() | {"verdict": compared.verdict()}
    document["test_check"] = gain
    if as_json:
        print(json.dumps(document, default=str))
        return
    print(f"Optimize {found.id}: {found.prompt}@v{found.seed_version}, {found.shown_status}" + (f" ({found.status_reason})" if found.status_reason else ""))
    print(f"calls: {found.calls_used} of {found.max_calls}; cost {usd(found.cost_usd)}; {found.evaluations} candidate evaluations on the development part")
    for entry in found.candidates:
        origin = "the starting version" if entry["parent_version"] is None else f"from v{entry['parent_version']}"
        accuracy = percent_with_interval(entry["development_accuracy"], entry.get("development_interval"))
        print(f"  v{entry['version']:<4} {accuracy} on {entry.get('development_tasks', '?')} development tasks, {origin}")
    if gain:
        print(f"on the test part: v{found.seed_version} {percent(gain['accuracy_a'])} -> v{found.best_version} {percent(gain['accuracy_b'])}; {gain['verdict']}")


def _optimize_list(args: argparse.Namespace) -> int:
    found = optimize_module().optimizations(prompt=args.prompt)
    if args.json:
        print(json.dumps({"optimizations": [o.document() for o in found]}, default=str))
        return 0
    if not found:
        print("No searches yet: `python -m core optimize --prompt NAME ...` starts one.")
    for o in found:
        best = f", best v{o.best_version}" if o.best_version else ""
        print(f"{o.id:>4}  {o.prompt}@v{o.seed_version}  {o.shown_status:<11} {o.calls_used}/{o.max_calls} calls  {usd(o.cost_usd)}{best}")
    return 0


def _optimize_show(args: argparse.Namespace) -> int:
    _print_search(optimize_module().get(args.optimization_id), args.json)
    return 0


def _optimize_resume(args: argparse.Namespace) -> int:
    optimize = optimize_module()
    return _optimize_ended(optimize.execute(args.optimization_id, progress=_search_progress), args.json)


def _optimize_cancel(args: argparse.Namespace) -> int:
    found = optimize_module().cancel(args.optimization_id)
    if args.json:
        print(json.dumps(found.document(), default=str))
    else:
        print(f"Optimize {found.id} is {'cancelled' if found.status == 'cancelled' else 'stopping: no new call goes out'}.")
    return 0


def _cache_option(parser: argparse.ArgumentParser) -> None:
    choices = "; ".join(f"{name}: {meaning}" for name, meaning in runs.CACHE_POLICIES.items())
    parser.add_argument("--cache", choices=list(runs.CACHE_POLICIES), default="auto", help=f"earlier identical calls' answers ({choices}; default auto)")


def _batch_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch",
        action="store_true",
        help="send the calls through the provider's Batch API: at its price (half OpenAI's live price), answered within 24 hours. "
        "The command waits and shows the batches; Ctrl-C stops waiting, the batches go on, and `runs resume ID` collects them",
    )


def _runs_commands(commands) -> None:
    group = commands.add_parser("runs", help="evaluation and prediction runs").add_subparsers(title="runs")
    listing = group.add_parser("list", help="runs, newest first")
    listing.add_argument("--prompt", metavar="NAME")
    listing.add_argument("--project", type=int, metavar="ID")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_runs_list)
    for name, help_, action in (
        ("show", "one run: its state, and an evaluation's scores", _runs_show),
        ("resume", "continue a stopped run: only tasks without a result are sent", _runs_resume),
        ("cancel", "stop a run from sending calls; what finished is kept", _runs_cancel),
        ("retry", "send a finished run's failed tasks again (only those), then score it again", _runs_retry),
    ):
        command = group.add_parser(name, help=help_)
        command.add_argument("run_id", type=int)
        command.add_argument("--json", action="store_true", help="print one JSON document")
        command.set_defaults(action=action)
    compare_ = group.add_parser("compare", help="two runs side by side: the answers that changed, and the scores where there is ground truth")
    compare_.add_argument("run_a", type=int)
    compare_.add_argument("run_b", type=int)
    compare_.add_argument("--json", action="store_true", help="print one JSON document")
    compare_.set_defaults(action=_runs_compare)
    saving = group.add_parser("save-as-version", help="a model matrix's model (or an Optimize candidate) of this run as the prompt's next version")
    saving.add_argument("run_id", type=int)
    saving.add_argument("--json", action="store_true", help="print one JSON document")
    saving.set_defaults(action=_runs_save_as_version)
    work = group.add_parser("work", help="(the dashboard's background worker) execute a run quietly")
    work.add_argument("run_id", type=int)
    work.set_defaults(action=lambda args: _finished_ok(runs.execute(args.run_id)))


def _ids(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of task ids, e.g. 1,2,3") from None


def _evaluate(args: argparse.Namespace) -> int:
    from core.evaluation import evaluate  # scikit-learn and scipy: loaded only by the commands that score

    version = prompts.version(args.prompt, args.version, args.project)
    client = connection.client()
    kind = "tasks" if args.tasks else args.subset
    subset = subsets.choose(client, version.project_id, kind, size=args.sample_size, seed=args.seed, ids=args.tasks)
    if subset.note:
        print(f"note: {subset.note}", file=sys.stderr)
    if args.models:
        if args.batch:
            print("error: a model matrix runs live; leave out --batch.", file=sys.stderr)
            return 2
        return _evaluate_matrix(args, version, subset, client)
    mode = "batch" if args.batch else "live"
    run = evaluate.start(version, subset, client.label_config(version.project_id), concurrency=args.concurrency, cache=args.cache, client=client, mode=mode)
    print(f"Run {run.id}: {version.model_version} on {subset.description}.", file=sys.stderr)
    run = _execute(run.id)
    print(file=sys.stderr)  # end the progress line
    return _print_run(run, args.json)


def _calibration_command(commands) -> None:
    parser = commands.add_parser("calibration", help="what a version's confidence means on ground truth: reliability, ECE, AUROC, the threshold for a target accuracy")
    parser.add_argument("--prompt", required=True, metavar="NAME")
    parser.add_argument("--version", type=int, metavar="N", help="default: the latest")
    parser.add_argument("--project", type=int, metavar="ID", help="project id, when prompts in several projects share the name")
    parser.add_argument("--target-accuracy", type=_share, metavar="A", help="the accuracy to reach, as 0.97 or 97%%: prints the lowest threshold that reaches it with its 95%% interval's lower bound")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(action=_calibration)


def _share(value: str) -> float:
    text = value.strip()
    number = float(text.rstrip("%")) / (100 if text.endswith("%") or float(text.rstrip("%")) > 1 else 1)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not an accuracy between 0 and 1 (or 0% and 100%), such as 0.97 or 97%")
    return number


def _calibration(args: argparse.Namespace) -> int:
    from core.evaluation import calibration

    version = prompts.version(args.prompt, args.version, args.project)
    found = calibration.of_version(version)
    shown = calibration.document(found, args.target_accuracy)
    if args.json:
        print(json.dumps({"prompt": version.prompt, "version": version.number} | shown))
    else:
        print(_calibration_text(version, found, args.target_accuracy))
    return 0


def _calibration_text(version, found, target: float | None) -> str:
    from core.evaluation import calibration

    run = runs.get(found.run_id)
    lines = [f"{version.model_version}, run {run.id} ({run.subset.get('description', '')})"]
    if found.measure is None:
        lines.append(f"No confidence: no answer of this run carries one. {NO_CONFIDENCE_HINT}")
        return "\n".join(lines)
    lines.append(f"Confidence from {found.measure}.")
    for name, reliability in [("the whole answer", found.overall), *found.outputs.items()]:
        lines.append(f"Reliability of {name}: {reliability.tasks} tasks with a confidence" + (f", {reliability.without_confidence} without" if reliability.without_confidence else ""))
        lines.append(f"  {'confidence':<12} {'tasks':>6} {'mean':>6} {'accuracy':>9}")
        for b in reliability.bins:
            if b.tasks:
                lines.append(f"  {b.low:.1f}-{b.high:.1f}     {b.tasks:>6} {b.confidence:>6.2f} {b.accuracy:>9.1%}")
        ece = f"{reliability.ece:.3f}" if reliability.ece is not None else "none"
        auroc = f"{reliability.auroc:.3f}" if reliability.auroc is not None else "none (every answer right, or every one wrong)"
        lines.append(f"  expected calibration error {ece} · AUROC, right against wrong: {auroc}")
    if target is not None:
        lines.append(calibration.verdict(found.points, target))
    return "\n".join(lines)


NO_CONFIDENCE_HINT = "The provider gave no log-probabilities; save a version that measures agreement (`prompts version NAME --samples 5 --temperature 0.7`)."


def _evaluate_matrix(args: argparse.Namespace, version, subset, client) -> int:
    from core.evaluation import matrix

    started = matrix.start(version, subset, client.label_config(version.project_id), matrix.parse_models(args.models), concurrency=args.concurrency, cache=args.cache, client=client)
    group = started[0].subset["group"]
    print(f"Model matrix {group}: {version.model_version} on {len(started)} models, {subset.description}.", file=sys.stderr)
    ended = []
    for run in started:
        print(f"Run {run.id}: {run.label}", file=sys.stderr)
        ended.append(runs.execute(run.id, progress=_progress_bar, client=client))
        print(file=sys.stderr)
    table = matrix.rows(group)
    if args.json:
        print(json.dumps({"matrix": group, "prompt": version.prompt, "version": version.number, "subset": subset.description, "models": table}, default=str))
    else:
        print(_matrix_text(table))
    return max(_finished_ok(run) for run in ended)


def _matrix_text(table: list[dict[str, Any]]) -> str:
    lines = [f"{'model':<32} {'accuracy (95% interval)':<28} {'per 1,000 tasks':>15} {'tokens/task':>11} {'p50 ms':>8} {'p95 ms':>8}"]
    for row in table:
        accuracy = percent_with_interval(row["accuracy"], row["accuracy_interval"]) if row["accuracy"] is not None else "none (no answer)"
        per_1000 = usd(row["cost_per_1000"]) if row["cost_per_1000"] is not None else "no price"
        tokens_ = f"{row['tokens_per_task']:.0f}" if row["tokens_per_task"] is not None else "-"
        p50, p95 = (f"{row[k]:.0f}" if row[k] is not None else "-" for k in ("latency_p50_ms", "latency_p95_ms"))
        mark = "  * frontier" if row["on_frontier"] else ""
        lines.append(f"run {row['run']:<5} {row['key'] + ' · ' + row['model']:<26} {accuracy:<28} {per_1000:>15} {tokens_:>11} {p50:>8} {p95:>8}{mark}")
    lines.append("* on the Pareto frontier: no other model is as accurate for less. `python -m core runs save-as-version RUN` makes one the next version.")
    return "\n".join(lines)


def _runs_save_as_version(args: argparse.Namespace) -> int:
    from core.evaluation import matrix

    saved = matrix.save_as_version(args.run_id)
    if args.json:
        print(json.dumps({"prompt": saved.prompt, "version": saved.number, "provider_key": saved.provider_key, "model": saved.model}))
    else:
        print(f"Saved {saved.model_version}: {saved.provider_key} · {saved.model}. Evaluate it to see its own figures.")
    return 0


def _runs_list(args: argparse.Namespace) -> int:
    found = runs.runs(prompt=args.prompt, project_id=args.project)
    if args.json:
        print(json.dumps({"runs": [r.document() for r in found]}, default=str))
        return 0
    if not found:
        print("No runs yet: `python -m core evaluate --prompt NAME` starts one.")
    for r in found:
        cost = usd(r.cost_usd)
        state = runs.status_of(r)
        print(f"{r.id:>5}  {r.kind:<8} {r.model_version:<28} {state:<11} {r.done:>6} done {r.failed:>5} failed  {cost:>10}  {r.subset.get('description', '')}")
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    return _print_run(runs.get(args.run_id), args.json)


def _runs_resume(args: argparse.Namespace) -> int:
    run = _execute(args.run_id)
    print(file=sys.stderr)  # end the progress line
    return _print_run(run, args.json)


def _runs_retry(args: argparse.Namespace) -> int:
    run = runs.retry_failed(args.run_id)
    print(f"Run {run.id}: sending its {run.subset.get('retried', 0)} failed tasks again.", file=sys.stderr)
    return _runs_resume(args)


def _runs_compare(args: argparse.Namespace) -> int:
    from core.evaluation import evaluate

    document = evaluate.comparison(args.run_a, args.run_b, connection.client())
    if args.json:
        print(json.dumps(document, default=str))
        return 0
    lines = [document["verdict"]]
    scored = document["ground_truth"]
    if scored:
        lines.append(f"on {scored['tasks']} tasks with ground truth: wrong to right {len(scored['wrong_to_right'])}, right to wrong {len(scored['right_to_wrong'])}")
    for change in document["changed"]:
        text = f"  {change['text']}" if change["text"] else ""
        lines.append(f"task {change['task_id']}: {change['answer_a']} -> {change['answer_b']}{text}")
    print("\n".join(lines))
    return 0


def _runs_cancel(args: argparse.Namespace) -> int:
    run = runs.cancel(args.run_id)
    if args.json:
        print(json.dumps(run.document(), default=str))
    else:
        print(f"Run {run.id} is {'cancelled' if run.status == 'cancelled' else 'stopping: no new calls go out'}; {run.finished} of {run.total} tasks finished.")
    return 0


def _print_run(run: runs.RunView, as_json: bool) -> int:
    from core.evaluation import evaluate

    document = evaluate.summary(run.id) if run.kind == "evaluate" else _prediction_document(run)
    if as_json:
        print(json.dumps(document, default=str))
    else:
        print(_run_text(run, document))
    return _finished_ok(run)


def _finished_ok(run: runs.RunView) -> int:
    if run.status != "completed":
        print(f"error: run {run.id} is {run.status}: {run.status_reason or 'not finished'}", file=sys.stderr)
        return 1
    return 0


def _run_text(run: runs.RunView, document: dict[str, Any]) -> str:
    cost = usd(run.cost_usd)
    lines = [
        f"Run {run.id}: {run.kind} of {run.model_version}, {run.status}" + (f" ({run.status_reason})" if run.status_reason else ""),
        f"tasks: {run.total}, completed {run.done}, failed {run.failed}; tokens {run.input_tokens} in, {run.output_tokens} out; cost {cost}",
    ]
    if run.mode == "batch":
        lines.append(batch_runs.summary(run))
    if run.cached:
        saved = f" (saved {usd(document['saved_usd'])})" if document.get("saved_usd") is not None else ""
        lines.append(f"{run.cached} of {run.finished} answers from earlier identical calls, not paid again{saved}")
    if run.failed:
        lines.append(f"failed: {run.failed} of {run.total} tasks" + (f"; `python -m core runs retry {run.id}` sends them again" if run.status not in runs.ACTIVE else ""))
        for group in document.get("failures", []):
            lines.append(f"  {group['count']} {group['label']}, e.g. task {group['example_task']}: {group['example']}")
    if run.kind == "predict":
        lines.append(f"written to Label Studio: {document['written']} predictions of {run.model_version}")
    if run.kind == "evaluate":
        if document["accuracy"] is None:
            lines.append(f"accuracy: none, no task was answered (completion rate {percent(document['completion_rate'])})")
        else:
            accuracy = percent_with_interval(document["accuracy"], document["accuracy_interval"])
            lines.append(f"accuracy: {accuracy} on {document['scored']} scored tasks; completion rate {percent(document['completion_rate'])}")
        for name, control in document["metrics"].items():
            lines.append(f"  {name} ({control['tag']}): {_scores_text(control['scores'])}")
            for row in control["per_class"]:
                f1 = f"F1 {row['f1']:.2f} [{interval(row.get('f1_interval'), scale=1, unit='', digits=2)}]"
                lines.append(f"    {row['label']:<24} P {row['precision']:.2f}  R {row['recall']:.2f}  {f1}  n {row['support']}")
    return "\n".join(lines)


def _scores_text(scores: dict[str, Any]) -> str:
    """A control's figures on one line, each with its 95% interval in brackets when it has one."""
    shown = []
    for key, value in scores.items():
        if key.endswith("_interval"):
            continue
        bounds = f" [{interval(scores[f'{key}_interval'], scale=1, unit='', digits=3)}]" if scores.get(f"{key}_interval") else ""
        shown.append(f"{key} {_figure(value)}{bounds}")
    return ", ".join(shown)


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _execute(run_id: int) -> runs.RunView:
    """Run it to its end: here, or on the workers where the store spreads runs over them."""
    from core import workers

    return workers.execute(run_id, progress=_progress_bar, say=lambda note: print(f"note: {note}", file=sys.stderr))


def _worker_command(commands) -> None:
    parser = commands.add_parser(
        "worker",
        help="work the chunks of runs (a PostgreSQL store spreads runs over workers: start one on each machine, with the team's PROMPTER_SECRET_KEY)",
    )
    parser.add_argument("--run", type=int, metavar="ID", help="only this run's chunks, until none is left (what a machine does when no worker is alive)")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N", help="chunks worked at once by this worker (default 1; each sends its run's concurrency of calls)")
    parser.set_defaults(action=_worker)


def _worker(args: argparse.Namespace) -> int:
    from core import workers

    try:
        workers.serve(args.run, concurrency=args.concurrency)
    except workers.WorkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _progress_bar(run: runs.RunView) -> None:
    width = 30
    filled = int(width * run.finished / run.total) if run.total else width
    cost = usd(run.cost_usd)
    left = f", {run.eta_seconds:.0f} s left" if run.eta_seconds is not None else ""
    if run.mode == "batch":
        left = ", {} of {} batches ended".format(*batch_runs.ended(run.id))
    line = f"\r[{'#' * filled}{'.' * (width - filled)}] {run.finished}/{run.total} ({run.failed} failed), {cost}{left}   "
    print(line, end="", file=sys.stderr, flush=True)


# -- prices ---------------------------------------------------------------------------------------


def _prices_commands(commands) -> None:
    group = commands.add_parser("prices", help="model prices (USD per million tokens) used for costs").add_subparsers(title="prices")
    listing = group.add_parser("list", help="the prices in force: built-in list prices and your own")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_prices_list)
    set_ = group.add_parser("set", help="set a model's price (e.g. an Azure deployment, or 0 for a local model)")
    set_.add_argument("model")
    set_.add_argument("--input", type=float, required=True, metavar="USD", help="per million input tokens")
    set_.add_argument("--output", type=float, required=True, metavar="USD", help="per million output tokens")
    set_.add_argument("--batch-input", type=float, metavar="USD", help="per million input tokens of a Batch API call (with --batch-output; default: --input)")
    set_.add_argument("--batch-output", type=float, metavar="USD", help="per million output tokens of a Batch API call (with --batch-input; default: --output)")
    set_.set_defaults(action=_prices_set)
    remove = group.add_parser("remove", help="forget your price for a model")
    remove.add_argument("model")
    remove.set_defaults(action=_prices_remove)


def _prices_list(args: argparse.Namespace) -> int:
    rows = pricing.table()
    if args.json:
        print(json.dumps({"prices": rows}))
        return 0
    print(f"{'model':<32} {'input $/M':>10} {'cached $/M':>10} {'output $/M':>11} {'batch in/out $/M':>17}  source")
    for row in rows:
        cached = "as input" if row["cached_input_per_million"] is None else f"{row['cached_input_per_million']:.3f}"
        batch = f"{row['batch_input_per_million']:.3f}/{row['batch_output_per_million']:.3f}"
        print(f"{row['model']:<32} {row['input_per_million']:>10.3f} {cached:>10} {row['output_per_million']:>11.3f} {batch:>17}  {row['source']}")
    return 0


def _prices_set(args: argparse.Namespace) -> int:
    saved = pricing.save(args.model, args.input, args.output, batch_input_per_million=args.batch_input, batch_output_per_million=args.batch_output)
    batch = (
        f"; Batch API calls ${saved.batch.input_per_million:g} and ${saved.batch.output_per_million:g}"
        if saved.batch
        else "; Batch API calls at the same price"
    )
    print(f"Saved the price of {args.model}: ${args.input:g} per million input tokens, ${args.output:g} per million output tokens{batch}.")
    return 0


def _prices_remove(args: argparse.Namespace) -> int:
    pricing.remove(args.model)
    print(f"Removed your price for {args.model}.")
    return 0


# -- predict and predictions ----------------------------------------------------------------------


def _predict_commands(commands) -> None:
    parser = commands.add_parser("predict", help="run a version over the project's tasks and write the predictions into Label Studio")
    parser.add_argument("--prompt", required=True, metavar="NAME")
    parser.add_argument("--version", type=int, metavar="N", help="default: the latest")
    parser.add_argument("--project", type=int, metavar="ID", help="project id, when prompts in several projects share the name")
    parser.add_argument("--only-missing", action="store_true", help="only tasks without a prediction of this version")
    parser.add_argument("--concurrency", type=int, default=runs.DEFAULT_CONCURRENCY, metavar="C", help="calls at once (default %(default)s)")
    parser.add_argument("--max-cost", type=float, metavar="USD", help="stop before the run's cost would pass this")
    _cache_option(parser)
    _batch_option(parser)
    parser.add_argument("--estimate", action="store_true", help="print the estimate (tasks, tokens, cost) and stop")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(action=_predict)

    group = commands.add_parser("predictions", help="a project's predictions in Label Studio").add_subparsers(title="predictions")
    listing = group.add_parser("list", help="model versions with their prediction counts")
    listing.add_argument("--project", type=int, required=True, metavar="ID")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_predictions_list)
    for name, help_, action in (
        ("delete", "delete one version's predictions (other versions' stay)", _predictions_delete),
        ("to-annotations", "turn one version's predictions into annotations", _predictions_to_annotations),
    ):
        command = group.add_parser(name, help=help_)
        command.add_argument("--prompt", required=True, metavar="NAME")
        command.add_argument("--version", type=int, required=True, metavar="N")
        command.add_argument("--project", type=int, metavar="ID")
        command.add_argument("--json", action="store_true", help="print one JSON document")
        command.set_defaults(action=action)

    accept = group.add_parser("accept", help="turn into annotations only the predictions of a version at or above a confidence threshold (asks first)")
    _accept_options(accept)
    how = accept.add_mutually_exclusive_group(required=True)
    how.add_argument("--threshold", type=float, metavar="T", help="accept predictions whose confidence is at least T (0 to 1)")
    how.add_argument("--target-accuracy", type=_share, metavar="A", help="the lowest threshold whose accuracy on ground truth reaches A (0.97 or 97%%) with its 95%% interval's lower bound")
    accept.add_argument("--yes", action="store_true", help="do not ask (needed when not at a terminal)")
    accept.set_defaults(action=_predictions_accept)
    review = group.add_parser("review-tab", help="a Data Manager tab of the tasks whose prediction is below the threshold, least confident first")
    _accept_options(review)
    review.add_argument("--threshold", type=float, required=True, metavar="T")
    review.set_defaults(action=_predictions_review_tab)


def _accept_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, metavar="NAME")
    parser.add_argument("--version", type=int, required=True, metavar="N")
    parser.add_argument("--project", type=int, metavar="ID")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _predictions_accept(args: argparse.Namespace) -> int:
    from core import acceptance  # reads calibration: scoring's imports, only for this command

    version = prompts.version(args.prompt, args.version, args.project)
    client = connection.client()
    threshold = args.threshold if args.threshold is not None else acceptance.threshold_for(version, args.target_accuracy).threshold
    shown = acceptance.plan(version, threshold, client)
    print(shown.sentence(), file=sys.stderr)
    if shown.to_accept and not args.yes:
        if not sys.stdin.isatty():
            print(f"error: not at a terminal to ask; add --yes to create the {len(shown.to_accept)} annotations.", file=sys.stderr)
            return 1
        if input(f"Create {len(shown.to_accept)} annotations? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing accepted.", file=sys.stderr)
            return 1
    done = acceptance.accept(version, threshold, client)
    if args.json:
        expected = done.expected.to_dict() if done.expected else None
        print(json.dumps({
            "model_version": version.model_version, "threshold": threshold, "accepted": done.accepted, "failed": done.failed,
            "already_annotated": done.annotated, "left_for_review": done.queued, "expected_on_ground_truth": expected, "first_error": done.first_error,
        }))
    else:
        print(done.sentence())
    return 1 if done.failed else 0


def _predictions_review_tab(args: argparse.Namespace) -> int:
    from core import acceptance

    version = prompts.version(args.prompt, args.version, args.project)
    tab = acceptance.review_tab(version, args.threshold, connection.client())
    if args.json:
        print(json.dumps(dataclasses.asdict(tab)))
    else:
        print(f"{tab.title}: {tab.tasks} tasks, least confident first, in the Data Manager tab {tab.url}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    version = prompts.version(args.prompt, args.version, args.project)
    client = connection.client()
    chosen = predict.scope(version, client, only_missing=args.only_missing)
    runs.check_spending_limit(version, args.max_cost)  # before the estimate reads the tasks
    guess = predict.estimate(version, chosen, client, cache=args.cache)
    mode = "batch" if args.batch else "live"
    cost = f"${guess.cost_for(mode):.4f}" if guess.cost_for(mode) is not None else "no price"
    at = " at the Batch API's price" if args.batch else ""
    print(f"Estimate: {guess.tasks} tasks, about {guess.input_tokens} input and {guess.output_tokens} output tokens to pay for, {cost}{at}. {guess.describe()}", file=sys.stderr)
    if args.estimate:
        if args.json:
            print(json.dumps({"prompt": version.prompt, "version": version.number, **dataclasses.asdict(guess)}))
        return 0
    if not chosen.task_ids:
        document = {"prompt": version.prompt, "version": version.number, "model_version": version.model_version, "tasks": 0, "completed": 0, "failed": 0, "written": 0, "cost_usd": None, "tokens": {"input": 0, "output": 0}}
        print(json.dumps(document) if args.json else f"Every task already has a prediction of {version.model_version}.")
        return 0
    run = predict.start(
        version, chosen, client, concurrency=args.concurrency, max_cost_usd=args.max_cost, cache=args.cache, estimated_cost_usd=guess.cost_for(mode), mode=mode
    )
    print(f"Run {run.id}: {version.model_version} on {chosen.description}.", file=sys.stderr)
    run = _execute(run.id)
    print(file=sys.stderr)  # end the progress line
    return _print_run(run, args.json)


def _prediction_document(run: runs.RunView) -> dict[str, Any]:
    return run.document() | {"written": predict.written(run.id)}


def _predictions_list(args: argparse.Namespace) -> int:
    found = predict.model_versions(connection.client(), args.project)
    if args.json:
        print(json.dumps({"project_id": args.project, "model_versions": [{"model_version": v.name, "predictions": v.prediction_count} for v in found]}))
        return 0
    if not found:
        print(f"Project {args.project} has no predictions.")
    for v in found:
        print(f"{v.prediction_count:>8}  {v.name}")
    return 0


def _predictions_delete(args: argparse.Namespace) -> int:
    version = prompts.version(args.prompt, args.version, args.project)
    deleted = predict.delete(version, connection.client())
    print(json.dumps({"model_version": version.model_version, "deleted": deleted}) if args.json else f"Deleted {deleted} predictions of {version.model_version}.")
    return 0


def _predictions_to_annotations(args: argparse.Namespace) -> int:
    version = prompts.version(args.prompt, args.version, args.project)
    created = predict.to_annotations(version, connection.client())
    print(json.dumps({"model_version": version.model_version, "annotations_created": created}) if args.json else f"Created {created} annotations from the predictions of {version.model_version}.")
    return 0


# -- the team and its activity -------------------------------------------------------------------------


def _team_commands(commands) -> None:
    group = commands.add_parser("team", help="who may use the dashboard, and as what").add_subparsers(title="team")
    listing = group.add_parser("list", help="team members, their roles, budgets and this month's spend")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(action=_team_list)
    add = group.add_parser("add", help="put someone on the team (admins)")
    add.add_argument("email")
    add.add_argument("--role", required=True, choices=identity.ROLES)
    add.add_argument("--name")
    add.set_defaults(action=lambda args: _said(f"Added {identity.add(args.email, args.role, args.name).label} as {args.role}."))
    role = group.add_parser("role", help="change a member's role (admins)")
    role.add_argument("email")
    role.add_argument("role", choices=identity.ROLES)
    role.set_defaults(action=lambda args: _said(f"{identity.set_role(args.email, args.role).label} is now {args.role}."))
    remove = group.add_parser("remove", help="take someone off the team (admins); their runs and activity are kept")
    remove.add_argument("email")
    remove.set_defaults(action=lambda args: _said(identity.remove(args.email) or f"Removed {args.email} from the team."))
    budget = group.add_parser("budget", help="set what a member's runs may spend in a calendar month (admins)")
    budget.add_argument("email")
    amount = budget.add_mutually_exclusive_group(required=True)
    amount.add_argument("--usd", type=float, help="the monthly budget in US dollars")
    amount.add_argument("--none", action="store_true", help="remove the budget")
    budget.set_defaults(action=lambda args: _said(budgets.set_member_budget(args.email, None if args.none else args.usd) or f"Budget of {args.email} set."))


def _team_list(args: argparse.Namespace) -> int:
    members = identity.team()
    rows = [
        {
            "email": m.email,
            "name": m.name,
            "role": m.role,
            "monthly_budget_usd": m.monthly_budget_usd,
            "spent_this_month_usd": budgets.member_spend(m.email),
            "own_labelstudio_token": m.has_labelstudio_token,
        }
        for m in members
    ]
    if args.json:
        print(json.dumps({"team": rows}))
        return 0
    if not rows:
        print("Nobody is on the team yet: PROMPTER_ADMINS become admins when they first sign in, and add the others.")
    for row in rows:
        budget = usd(row["monthly_budget_usd"]) if row["monthly_budget_usd"] is not None else "no budget"
        print(f"{row['email']:<32} {row['role']:<7} {usd(row['spent_this_month_usd'])} this month of {budget}  {row['name'] or ''}")
    return 0


def _activity_commands(commands) -> None:
    group = commands.add_parser("activity", help="the audit trail: who did what, and when").add_subparsers(title="activity")
    listing = group.add_parser("list", help="events, newest first")
    listing.add_argument("--user", help="only this user's (an email, or 'local')")
    # not dest "action": that names the function each command runs
    listing.add_argument("--action", dest="only_action", choices=audit.ACTIONS, metavar="ACTION", help="only this action, e.g. 'run started'")
    listing.add_argument("--since", type=date.fromisoformat, metavar="YYYY-MM-DD")
    listing.add_argument("--until", type=date.fromisoformat, metavar="YYYY-MM-DD")
    listing.add_argument("--csv", action="store_true", help="print CSV, as the Activity page exports it")
    listing.set_defaults(action=_activity_list)


def _activity_list(args: argparse.Namespace) -> int:
    found = audit.events(actor=args.user, action=args.only_action, since=args.since, until=args.until, limit=None)
    if args.csv:
        sys.stdout.write(audit.to_csv(found))
        return 0
    for event in found:
        print(f"{event.at:%Y-%m-%d %H:%M:%S}  {event.actor:<28} {event.action:<36} {event.target or ''}  {event.describe()}")
    return 0


def _said(message: str) -> int:
    print(message)
    return 0
