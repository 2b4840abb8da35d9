"""Runs followed in a real browser (headless Chromium): what the pickers show once a run has ended."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from core import keys, prompts, runs
from core.labelstudio import NewTask
from tests.browser import open_page
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import wait_until
from tests.standin import Reply


def test_the_run_picker_says_completed_once_the_run_it_shows_has_ended(browser_page, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": f"review {n}"}, [(choice("Positive"), True)]) for n in range(3)], title="Follow a run")
    prompts.create(project.id, "sentiment", template="Sentiment of: {text}\n{labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    standin.respond_with(lambda r: Reply.json({"sentiment": "Positive"}))
    page = browser_page
    open_page(page, page.base_url, "Evaluate")
    # no settling here: the page follows the new run, drawing itself until the run's first result,
    # however long a loaded machine takes to start the run's worker
    page.get_by_role("button", name="Run evaluation", exact=True).click()
    wait_until(lambda: runs.runs(prompt="sentiment"), what="the run started")
    (run,) = runs.runs(prompt="sentiment")
    picker = page.get_by_role("combobox", name="Run", exact=True)
    expect(picker).to_have_value(re.compile(rf"^run {run.id} · v1 · (pending|running|completed) · "))
    # the page follows the run and draws itself again when it ends: the picker must say so
    expect(picker).to_have_value(f"run {run.id} · v1 · completed · 3 ground-truth tasks", timeout=120_000)
    assert runs.get(run.id).status == "completed"
