"""The Prompts page in a real browser (headless Chromium): what the user sees and what gets saved."""

from __future__ import annotations

import pytest

from core import keys, prompts
from core.labelstudio import NewTask
from tests.browser import HeldMessages, choose, click, fill, open_page, settle, shown_value
from tests.conftest import CHOICES_CONFIG, choice

TEMPLATE = "Review: {text}\nAnswer with {labels}"


@pytest.fixture
def new_prompt(browser_page, make_project, standin):
    HeldMessages(browser_page)  # only passes the dashboard's messages on, until a test holds them
    """The Prompts page open on a new prompt named 'sentiment', for a project of one task, with a
    key on the stand-in (which lists gpt-4o-mini and gpt-4o); the page and the project."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "Great value"}, [(choice("Positive"), True)])], title="Prompts in a browser")
    open_page(browser_page, browser_page.base_url, "Prompts")
    fill(browser_page, "Name of the new prompt", "sentiment")
    return browser_page, project


def test_an_edit_typed_before_the_page_showed_a_save_is_kept(new_prompt):
    """Typing on right after "Save as new version", before the page had drawn the saved version,
    carried "Start from version: v1" back to the server: the editor opened v1 again and the typing
    was replaced by v1's template. The dashboard's messages are held here so the two cross."""
    page, project = new_prompt
    messages = page.held_messages
    choose(page, "Model", "gpt-4o-mini")
    fill(page, "Template", f"{TEMPLATE}\nedit 1")
    click(page, "Create prompt (v1)")
    fill(page, "Template", f"{TEMPLATE}\nedit 2")

    messages.hold()
    page.get_by_role("button", name="Save as new version (v2)", exact=True).click()
    messages.wait_for_script_runs(1)  # v2 is saved and the page drawn, but the browser has not seen it
    fill_without_waiting(page, "Template", f"{TEMPLATE}\nedit 3, typed at once")
    messages.wait_for_script_runs(2)
    messages.release()
    settle(page)

    assert page.get_by_label("Template", exact=True).input_value() == f"{TEMPLATE}\nedit 3, typed at once"
    assert [v.template for v in prompts.versions("sentiment", project.id)] == [f"{TEMPLATE}\nedit 1", f"{TEMPLATE}\nedit 2"]
    click(page, "Save as new version (v3)")
    assert prompts.version("sentiment", 3, project.id).template == f"{TEMPLATE}\nedit 3, typed at once"


def fill_without_waiting(page, label: str, text: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Tab")


def test_each_save_keeps_the_edit_just_made_three_versions_in_a_row(new_prompt):
    page, project = new_prompt
    choose(page, "Model", "gpt-4o-mini")
    for n in (1, 2, 3):
        fill(page, "Template", f"{TEMPLATE}\nedit {n}")
        label = "Create prompt (v1)" if n == 1 else f"Save as new version (v{n})"
        click(page, label)
        assert page.get_by_label("Template", exact=True).input_value() == f"{TEMPLATE}\nedit {n}"
        assert shown_value(page, "Start from version") == f"v{n}"
        if n > 1:  # the diff compares the version just saved with the one before it
            assert (shown_value(page, "Compare"), shown_value(page, "with")) == (f"v{n - 1}", f"v{n}")
    assert [v.template for v in prompts.versions("sentiment", project.id)] == [f"{TEMPLATE}\nedit {n}" for n in (1, 2, 3)]


def test_a_model_the_key_does_not_list_is_typed_whole(new_prompt):
    page, project = new_prompt  # a dated snapshot of a listed model is typed by hand
    choose(page, "Model", "Another model…")
    page.get_by_label("Model name", exact=True).press_sequentially("gpt-4o-2024-08-06", delay=10)
    page.get_by_label("Model name", exact=True).press("Tab")
    settle(page)
    fill(page, "Template", TEMPLATE)
    click(page, "Create prompt (v1)")
    assert prompts.version("sentiment", 1, project.id).model == "gpt-4o-2024-08-06"
    # and the editor, opened on v1, shows it as the model of v1
    assert shown_value(page, "Model") == "gpt-4o-2024-08-06"
