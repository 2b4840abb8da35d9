"""In a real browser: a version published from the dashboard's "In Label Studio" page answers inside
Label Studio's labeling screen: the pre-label when a task opens, and the interactive prompter (an
instruction typed into the task, Shift+Enter, the answer box and the intent filled)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from core import demo, keys, prompts
from core.backend import instructions, publications
from tests.browser import choose, click, open_page, shoot, table_column
from tests.helpers import wait_until
from tests.standin import Reply


def answer(request):
    if "one word" in request.last_user_text:
        return Reply.json({"response": "Refund.", "intent": "Refund"})
    return Reply.json({"response": "The customer asks about a charge on the invoice.", "intent": "Billing"})


@pytest.fixture
def interactive_demo(use_labelstudio, standin, ls_client, backend, monkeypatch):
    """The demo's "ask the model" project, its assistant prompt written, not yet published."""
    monkeypatch.setenv("PROMPTER_BACKEND_URL", backend.url)  # what the page offers as the backend's address
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(answer)
    project, _ = demo.ensure_interactive_project(ls_client)
    prompts.create(project.id, demo.INTERACTIVE_PROMPT, template=demo.INTERACTIVE_TEMPLATE, controls=["response", "intent"], provider_key="team", model="gpt-4o-mini")
    yield project
    ls_client.delete_project(project.id)


def test_an_annotator_gets_the_published_versions_prelabel_and_answer_to_a_typed_instruction(interactive_demo, browser_page, standin, labelstudio, ls_client):
    project = interactive_demo
    page = browser_page
    open_page(page, page.base_url, "In Label Studio")
    choose(page, "Project", re.compile(re.escape(f"{demo.INTERACTIVE_TITLE} (#{project.id})")))
    expect(page.get_by_text("No version answers inside Label Studio for this project yet")).to_be_visible()
    click(page, "Publish assistant@v1")
    expect(page.get_by_text("Published: assistant@v1 answers for this project in Label Studio")).to_be_visible()
    expect(page.get_by_text("Label Studio says connected", exact=False)).to_be_visible()
    shoot(page, "backend-published")
    found = publications.get(project.id)
    assert found.interactive and found.instruction == "prompt"

    task_id = ls_client.task_ids(project.id)[-1]  # a task nobody annotated
    text = next(t.data["text"] for t in ls_client.tasks(project.id, ids=[task_id]))
    page.goto(f"{labelstudio.url}/user/login/")
    page.locator("input[name='email']").fill(labelstudio.credentials.username)
    page.locator("input[name='password']").fill(labelstudio.credentials.password)
    page.locator("button[type='submit'], input[type='submit']").first.click()
    page.wait_for_load_state("networkidle")

    # the task opens with the published version's pre-label
    page.goto(f"{labelstudio.url}/projects/{project.id}/data?task={task_id}")
    instruction = page.get_by_placeholder("e.g. Which intent is this? Explain in one sentence.")
    expect(instruction).to_be_visible(timeout=60_000)
    expect(page.get_by_text("The customer asks about a charge on the invoice.")).to_be_visible()
    expect(intent(page, "Billing")).to_be_checked()
    shoot(page, "labelstudio-task-opened-with-prelabel")
    (prelabel,) = standin.requests
    assert text in prelabel.last_user_text

    # Auto-Annotation on, an instruction typed, Shift+Enter: the answer box and the intent filled
    page.get_by_text("Auto-Annotation", exact=True).click()
    typed = "Which intent is this? Answer in one word."
    instruction.fill(typed)
    instruction.press("Shift+Enter")
    expect(page.get_by_text("Refund.", exact=True)).to_be_visible()
    expect(intent(page, "Refund")).to_be_checked()
    expect(intent(page, "Billing")).not_to_be_checked()
    shoot(page, "labelstudio-instruction-answered")
    asked = standin.requests[-1]
    assert asked.last_user_text.startswith(typed) and text in asked.last_user_text and len(standin.requests) == 2
    assert [p.model_version for p in ls_client.predictions(project.id, task_id=task_id)] == ["assistant@v1"]  # the answer is no prediction

    # submitted, the instruction is kept; on the dashboard it becomes a version to evaluate
    page.get_by_role("button", name="Submit").click()
    wait_until(lambda: instructions.listed(project.id), 30, what="the annotation to reach the backend's webhook")
    (annotation,) = next(ls_client.tasks(project.id, ids=[task_id])).annotations
    assert instructions.instruction_in(annotation.result, "prompt") == typed
    open_page(page, page.base_url, "In Label Studio")
    choose(page, "Project", re.compile(re.escape(f"{demo.INTERACTIVE_TITLE} (#{project.id})")))
    columns = ("instruction", "times", "by", "tasks", "last")
    expect(table_column(page, columns, "instruction")).to_have_text([typed])
    expect(table_column(page, columns, "times")).to_have_text(["1"])
    expect(table_column(page, columns, "by")).to_have_text([labelstudio.credentials.username])
    click(page, "Save as a new version")
    expect(page.get_by_text("Saved assistant@v2. Evaluate it on the Evaluate page")).to_be_visible()
    shoot(page, "backend-instruction-saved")
    saved = prompts.version(demo.INTERACTIVE_PROMPT, 2, project.id)
    assert saved.template == f"{typed}\n\nText:\n{{text}}" and saved.controls == ("response", "intent")


def intent(page, name: str):
    return page.get_by_role("checkbox", name=re.compile(rf"^{name}"))
