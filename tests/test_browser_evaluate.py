"""The Evaluate page in a real browser (headless Chromium): a click on a confusion heatmap cell lists
its tasks. AppTest cannot click a chart; the selection lives in the browser's Vega view."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from core import connection, keys, prompts, runs
from core.evaluation import charts, evaluate, subsets
from core.labelstudio import NewTask
from tests.browser import HeldMessages, click, click_heatmap_cell, open_page, settle, shown_value, table_column
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import wait_for_run
from tests.standin import Reply

TRUTH = {"good": "Positive", "great": "Positive", "superb": "Positive", "bad": "Negative", "awful": "Negative", "meh": "Neutral", "fine": "Neutral"}
# wrong on three tasks: great and superb (Positive) said Negative, fine (Neutral) said Positive
SAID = TRUTH | {"great": "Negative", "superb": "Negative", "fine": "Positive"}
TASK_COLUMNS = ("task", "text", "ground truth", "answer", "correct", "failed", "error", "link")


def said(request) -> Reply:
    text = request.user_text.split(": ", 1)[1].split("\n")[0]
    return Reply.json({"sentiment": SAID[text]})


def shown(page, column: str):
    """The task table's cells in this column."""
    return table_column(page, TASK_COLUMNS, column)


def test_a_click_on_a_heatmap_cell_lists_its_tasks_until_all_are_shown_again(browser_page, make_project, standin, tmp_path):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(said)
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": t}, [(choice(label), True)]) for t, label in TRUTH.items()], title="Heatmap cells")
    task = dict(zip(TRUTH, (str(i) for i in ids)))
    version = prompts.create(project.id, "sentiment", template="Sentiment of: {text}\n{labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    client = connection.client()
    run = evaluate.start(version, subsets.choose(client, project.id, "ground-truth"), client.label_config(project.id))
    runs.launch(run.id)  # a worker process: the browser's event loop rules out running it here
    assert wait_for_run(run.id).status == "completed"

    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 3600})  # the whole page in one screenshot
    open_page(page, page.base_url, "Evaluate")
    all_tasks = [task[t] for t in TRUTH]
    expect(shown(page, "task")).to_have_text(all_tasks)
    expect(page.get_by_text("7 of 7 tasks.", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Show all tasks")).to_have_count(0)
    page.screenshot(path=tmp_path / "1-before.png")  # to look at

    heatmap = page.locator("[class*='st-key-ev_confusion_']")
    expect(heatmap).to_have_count(1)
    click_heatmap_cell(heatmap, "Positive", "Negative")
    expect(page.get_by_text("2 of 7 tasks: ground truth Positive predicted as Negative (the cell selected on the sentiment heatmap).")).to_be_visible()
    expect(shown(page, "task")).to_have_text([task["great"], task["superb"]])
    expect(shown(page, "ground truth")).to_have_text(["Positive", "Positive"])
    expect(shown(page, "answer")).to_have_text(["Negative", "Negative"])
    selected = heatmap.locator("path[aria-label*='Ground truth: Positive;'][aria-label*='Predicted: Negative;']")
    expect(selected).to_have_attribute("stroke", charts.SELECTED_STROKE)  # outlined
    page.screenshot(path=tmp_path / "2-cell-clicked.png")  # to look at

    click_heatmap_cell(heatmap, "Neutral", "Positive")  # another cell replaces the first
    expect(page.get_by_text("1 of 7 tasks: ground truth Neutral predicted as Positive (the cell selected on the sentiment heatmap).")).to_be_visible()
    expect(shown(page, "task")).to_have_text([task["fine"]])

    click(page, "Show all tasks")
    expect(page.get_by_text("7 of 7 tasks.", exact=True)).to_be_visible()
    expect(shown(page, "task")).to_have_text(all_tasks)
    expect(page.get_by_role("button", name="Show all tasks")).to_have_count(0)
    expect(heatmap.locator(f"path[stroke='{charts.SELECTED_STROKE}']")).to_have_count(0)  # no cell outlined any more
    page.screenshot(path=tmp_path / "3-all-again.png")  # to look at


def test_the_run_picker_keeps_the_run_just_started_when_a_click_crosses_the_page_update(browser_page, make_project, standin):
    """A change made right after "Run evaluation", before the page had drawn the new run, carried the
    picker's old choice back to the server, which set the picker back to the earlier run: the new run
    was out of sight. The dashboard's messages are held here while the browser sends that change, so
    the two cross every time."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(said)
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": t}, [(choice(label), True)]) for t, label in TRUTH.items()], title="Crossing clicks")
    version = prompts.create(project.id, "sentiment", template="Sentiment of: {text}\n{labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    client = connection.client()
    earlier = evaluate.start(version, subsets.choose(client, project.id, "ground-truth"), client.label_config(project.id))
    runs.launch(earlier.id)
    assert wait_for_run(earlier.id).status == "completed"

    page = browser_page
    messages = HeldMessages(page)
    open_page(page, page.base_url, "Evaluate")
    assert shown_value(page, "Run").startswith(f"run {earlier.id} · ")

    messages.hold()
    page.get_by_role("button", name="Run evaluation", exact=True).click()
    messages.wait_for_script_runs(1)  # the run is started and the page drawn, but the browser has not seen it
    concurrency = page.get_by_label("Concurrency", exact=True)
    concurrency.fill("3")
    concurrency.press("Tab")  # sent with the picker's value as the browser still shows it
    messages.wait_for_script_runs(2)
    messages.release()
    settle(page)

    started = runs.runs(prompt="sentiment", project_id=project.id, kind="evaluate")[0]
    assert started.id != earlier.id
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(re.compile(rf"^run {started.id} · "))
    assert wait_for_run(started.id).status == "completed"
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value(re.compile(rf"^run {started.id} · v1 · completed · "))
    expect(page.get_by_label("Concurrency", exact=True)).to_have_value("3")  # the change itself is kept
