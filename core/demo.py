"""The demo project: customer-support messages to sort into intents, with a ground-truth set.

The messages (``demo/support_messages.jsonl``) were written for Prompter: 153 short messages over
8 intents, a quarter of them genuinely ambiguous, 50 of them annotated as ground truth. The project is
created with its ground truth split: 8 examples (one per intent), 20 test tasks, 22 development.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.evaluation import split
from core.labelstudio import LabelStudioClient, NewTask, Project
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


def _choice(intent: str) -> list[dict]:
    return [
        {"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [intent]}}
    ]
