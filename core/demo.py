"""The demo projects: customer-support messages to sort into intents, with a ground-truth set.

The messages (``demo/support_messages.jsonl``) were written for Prompter: 153 short messages over
8 intents, a quarter of them genuinely ambiguous, 50 of them annotated as ground truth. The project is
created with its ground truth split: 8 examples (one per intent), 20 test tasks, 22 development.

The second project, "ask the model", holds 40 of the same messages under a labeling config with an
instruction box: published through Prompter's ML backend (once the team has a model key), an
annotator who opens a task sees the version's pre-label, and can type an instruction and press
Shift+Enter to have the answer box and the intent filled.
"""

from __future__ import annotations

import json
from pathlib import Path

from core import keys, prompts
from core.backend import publications
from core.evaluation import split
from core.labelstudio import LabelStudioClient, LabelStudioError, NewTask, Project
from core.settings import REPO_ROOT

TITLE = "Prompter demo: support intents"
MESSAGES = REPO_ROOT / "demo" / "support_messages.jsonl"
INTENTS = (
    "Billing",
    "Refund",
    "Delivery",
    "Cancellation",
    "Account Access",
    "Technical Problem",
    "Product Question",
    "Complaint",
)
LABEL_CONFIG = (
    "<View>\n"
    '  <Text name="text" value="$text"/>\n'
    '  <Choices name="intent" toName="text" choice="single" showInline="true">\n'
    + "".join(f'    <Choice value="{intent}"/>\n' for intent in INTENTS)
    + "  </Choices>\n</View>"
)
DESCRIPTION = (
    "Customer-support messages to route to one of eight intents. 50 tasks carry ground-truth "
    "annotations; about a quarter of the messages are ambiguous between two intents."
)


def load_messages(path: Path = MESSAGES) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def tasks(messages: list[dict]) -> list[NewTask]:
    return [
        NewTask(
            data={"text": m["text"], "message_id": m["id"]},
            annotations=[(_choice(m["intent"]), True)] if m["ground_truth"] else [],
        )
        for m in messages
    ]


def ensure_project(client: LabelStudioClient) -> tuple[Project, bool]:
    """Find the demo project by its title, or create it; return it and whether it was created."""
    for project in client.projects():
        if project.title == TITLE:
            return project, False
    project = client.create_project(TITLE, LABEL_CONFIG, DESCRIPTION)
    client.import_tasks(project.id, tasks(load_messages()))
    # one example per intent, 40% of the ground truth held out for testing
    split.make_for_demo(client, project.id, examples=len(INTENTS))
    return client.project(project.id), True


INTERACTIVE_TITLE = "Prompter demo: ask the model"
INTERACTIVE_TASKS = 40  # the first 40 messages: 20 of them with their ground truth
INTERACTIVE_PROMPT = "assistant"
INTERACTIVE_CONFIG = (
    "<View>\n"
    '  <Text name="text" value="$text"/>\n'
    '  <Header value="Instruction (type one, then Shift+Enter; Auto-Annotation on)"/>\n'
    '  <TextArea name="prompt" toName="text" rows="2" editable="true" maxSubmissions="1" showSubmitButton="false"'
    ' placeholder="e.g. Which intent is this? Explain in one sentence."/>\n'
    '  <Header value="Answer"/>\n'
    '  <TextArea name="response" toName="text" rows="3" editable="true" maxSubmissions="1" smart="false"/>\n'
    '  <Choices name="intent" toName="text" choice="single" showInline="true">\n'
    + "".join(f'    <Choice value="{intent}"/>\n' for intent in INTENTS)
    + "  </Choices>\n</View>"
)
INTERACTIVE_DESCRIPTION = (
    "Support messages to route, with Prompter's published version helping: a pre-label when a task opens, "
    "and the answer to an instruction typed into the Instruction box (Shift+Enter, with Auto-Annotation on)."
)
INTERACTIVE_TEMPLATE = (
    "Route this customer-support message to one intent, and say in one sentence why.\n\n"
    "Message:\n{text}\n\nIntents: {labels:intent}"
)


def ensure_interactive_project(client: LabelStudioClient) -> tuple[Project, bool]:
    """Find the "ask the model" project by its title, or create it; return it and whether it was created."""
    for project in client.projects():
        if project.title == INTERACTIVE_TITLE:
            return project, False
    project = client.create_project(INTERACTIVE_TITLE, INTERACTIVE_CONFIG, INTERACTIVE_DESCRIPTION)
    messages = load_messages()
    with_truth = [m for m in messages if m["ground_truth"]][: INTERACTIVE_TASKS // 2]
    without = [m for m in messages if not m["ground_truth"]][: INTERACTIVE_TASKS - len(with_truth)]
    client.import_tasks(project.id, tasks(with_truth + without))
    return client.project(project.id), True


def publish_interactive(client: LabelStudioClient, project_id: int, url: str) -> str:
    """Publish the demo's assistant prompt to the "ask the model" project, interactive, unless it is
    published already; say what was done, or what the user needs to do first."""
    if publications.get(project_id) is not None:
        return f"Demo project #{project_id} is served by {publications.get(project_id).version.model_version}."
    usable = [k for k in keys.all_keys() if not k.problem]
    if not usable:
        return f"Add a model key (Keys page), then publish a version to demo project #{project_id} on the In Label Studio page."
    key = usable[0]
    names = {v.prompt for v in prompts.latest_versions(project_id)}
    if INTERACTIVE_PROMPT not in names:
        model = _model_for(key)
        if model is None:
            return f"Write a prompt for demo project #{project_id} on the Prompts page (no model known for the key {key.name!r}), then publish it."
        prompts.create(
            project_id, INTERACTIVE_PROMPT, template=INTERACTIVE_TEMPLATE, controls=["response", "intent"], provider_key=key.name, model=model,
            note="The demo's interactive assistant",
        )
    try:
        found = publications.connect(project_id, INTERACTIVE_PROMPT, None, url, client, interactive=True)
    except (LabelStudioError, ValueError) as error:
        return f"Demo project #{project_id} is not published: {error}"
    return f"Demo project #{project_id} is served by {found.version.model_version}, interactive: open a task in Label Studio."


def _model_for(key: keys.Key) -> str | None:
    """The model the demo prompt uses: Azure's deployment, the one the team last used with the key, or a small one."""
    if key.provider == "azure":
        return key.deployment
    used = [v.model for v in prompts.latest_versions() if v.provider_key == key.name and v.model]
    if used:
        return used[0]
    if key.provider == "openai":
        return "gpt-4o-mini"
    from core import providers

    offered, _ = providers.model_choices(key)
    return offered[0] if offered else None


def _choice(intent: str) -> list[dict]:
    return [
        {"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [intent]}}
    ]
