"""A newcomer's first hour, walked in a real browser (headless Chromium) from an empty dashboard: a key,
a prompt, an evaluation, two more versions, a comparison, then predictions written to Label Studio.

At each step it reads what the newcomer reads: what happened, and the one link onward, which it then
follows as they would. The expected figures are worked out here by hand from the stand-in's answers.
Set PROMPTER_SCREENSHOTS to a folder to keep a screenshot of every step.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import expect

from core import runs
from core.labelstudio import NewTask
from tests.browser import choose, click, fill, open_page, settle
from tests.conftest import CHOICES_CONFIG, choice
from tests.standin import Reply

REVIEWS = {"I love it": "Positive", "Works great": "Positive", "Broke in a day": "Negative", "Terrible support": "Negative"}
V1 = "Review: {text}\nAnswer with {labels}"  # the model says Positive to everything: 2 of 4 right
V2 = V1 + "\nComplaints are Negative."  # the model gets every review right: 4 of 4
V3 = V2 + "\nBe strict."  # the model says Negative to everything: 2 of 4


def model(request) -> Reply:
    """The stand-in's model: its answer depends on which version's instructions it was sent."""
    text = request.user_text
    if "Be strict." in text:
        return Reply.json({"sentiment": "Negative"})
    if "Complaints are Negative." in text:
        review = next(r for r in REVIEWS if r in text)
        return Reply.json({"sentiment": REVIEWS[review]})
    return Reply.json({"sentiment": "Positive"})


def test_a_newcomer_goes_from_an_empty_dashboard_to_predictions_in_label_studio(browser_page, make_project, standin, ls_client, tmp_path):
    project, task_ids = make_project(CHOICES_CONFIG, [NewTask({"text": r}, [(choice(label), True)]) for r, label in REVIEWS.items()], title="First hour")
    standin.respond_with(model)
    page = browser_page
    shots = Shots(page)

    # Home: nothing is set up, so it says to add a key first, and links there
    open_page(page, page.base_url, "Home")
    expect(main(page)).to_contain_text("Prompter needs a model to ask: add an OpenAI, Azure OpenAI or OpenAI-compatible key first.")
    shots.take("home")
    follow(page, "Add a model-provider key")

    # Keys: add the team's OpenAI-compatible server; the test passes, and the page points to Prompts
    expect(page.get_by_role("heading", name="Keys")).to_be_visible()
    expect(main(page)).to_contain_text("No provider keys yet")
    choose(page, "Provider", "OpenAI-compatible")
    fill(page, "Name", "team")
    fill(page, "Base URL", standin.base_url)
    click(page, "Test and save")
    expect(main(page)).to_contain_text("The key is ready: next, write a prompt against a Label Studio project.")
    shots.take("keys")
    follow(page, "Write a prompt")

    # Prompts: the first version against the project; the page points to its evaluation
    expect(page.get_by_role("heading", name="Prompts")).to_be_visible()
    pick_project(page, project.title)
    fill(page, "Name of the new prompt", "sentiment")
    choose(page, "Model", "gpt-4o-mini")
    fill(page, "Template", V1)
    click(page, "Create prompt (v1)")
    expect(main(page)).to_contain_text("Saved sentiment v1 (sentiment@v1).")
    expect(main(page)).to_contain_text("Next, measure sentiment@v1 against the project's ground truth.")
    shots.take("prompts-v1")
    follow(page, "Evaluate v1")

    # Evaluate v1: half right; the page says so and offers to predict with it or write a better one
    evaluate(page, "v1", "50.0%")
    expect(main(page)).to_contain_text("v1 scored 50.0%. Label the whole project with it, or write a better version on the Prompts page first.")
    shots.take("evaluate-v1")

    # two more versions, each saved and evaluated from the link the Prompts page gives
    for number, template, accuracy in ((2, V2, "100.0%"), (3, V3, "50.0%")):
        open_page(page, page.base_url, "Prompts")
        expect(page.get_by_role("combobox", name="Prompt", exact=True)).to_have_value("sentiment")
        expect(page.get_by_role("combobox", name="Start from version", exact=True)).to_have_value(f"v{number - 1}")
        fill(page, "Template", template)
        click(page, f"Save as new version (v{number})")
        expect(main(page)).to_contain_text(f"Saved sentiment v{number} (sentiment@v{number}).")
        shots.take(f"prompts-v{number}")
        follow(page, f"Evaluate v{number}")
        evaluate(page, f"v{number}", accuracy)
    shots.take("evaluate-v3")

    # compare v1's evaluation with v2's: the same 4 tasks, 2 answers fixed, none broken
    by_version = {r.version: r.id for r in runs.runs(prompt="sentiment", kind="evaluate")}
    choose_run(page, "Compare", by_version[1])
    choose_run(page, "with", by_version[2])
    expect(main(page)).to_contain_text("v2 is 50.0 points better than v1 on 4 tasks")
    assert metric(page, "Wrong → right") == "2"
    assert metric(page, "Right → wrong") == "0"
    shots.take("compare")

    # Predict: the best version is offered, not the latest; one click labels the project
    open_page(page, page.base_url, "Predict")
    expect(page.get_by_role("combobox", name="Version", exact=True)).to_have_value("v2 · accuracy 100.0% on 4 tasks")
    assert metric(page, "Tasks") == "4"
    expect(main(page)).not_to_contain_text("was never evaluated")
    shots.take("predict-before")
    page.get_by_role("button", name="Start predicting", exact=True).click()
    expect(main(page)).to_contain_text(re.compile(r"Run \d+ finished: 4 predictions of sentiment@v2 written to Label Studio, 0 tasks failed\."), timeout=60_000)
    settle(page)
    expect(main(page)).to_contain_text("sentiment@v2 is in Label Studio: review its predictions, or turn them into annotations below.")
    expect(page.get_by_role("link", name=re.compile("Review the predictions in Label Studio"))).to_have_attribute("href", f"{ls_client.url}/projects/{project.id}/data")
    shots.take("predict-after")

    # and Label Studio holds exactly what v2 answered: every review's true label, once
    written = {p.task_id: p.result[0]["value"]["choices"] for p in ls_client.predictions(project.id) if p.model_version == "sentiment@v2"}
    assert written == {task_id: [label] for task_id, label in zip(task_ids, REVIEWS.values())}


# -- what the newcomer does and reads ------------------------------------------------------------------


def main(page):
    return page.get_by_test_id("stMain")


def follow(page, label: str) -> None:
    """Click the page's link onward, as the newcomer would."""
    page.get_by_test_id("stMain").get_by_role("link", name=re.compile(re.escape(label))).click()
    settle(page)


def pick_project(page, title: str) -> None:
    choose(page, "Project", re.compile(rf"^{re.escape(title)} \(#"))


def evaluate(page, version: str, accuracy: str) -> None:
    """Start an evaluation of the version the page offers, wait for its end, check its accuracy."""
    expect(page.get_by_role("combobox", name="Version", exact=True)).to_have_value(re.compile(rf"^{version}\b"))
    page.get_by_role("button", name="Run evaluation", exact=True).click()
    run = page.get_by_role("combobox", name="Run", exact=True)
    expect(run).to_have_value(re.compile(rf"^run \d+ · {version} · (completed|failed|stopped|cancelled|interrupted) · "), timeout=60_000)
    settle(page)
    ended = runs.get(int(run.input_value().split()[1]))
    assert ended.status == "completed", f"run {ended.id}: {ended.status}: {ended.status_reason}"
    expect(run).to_have_value(f"run {ended.id} · {version} · completed · 4 ground-truth tasks")
    expect(main(page)).to_contain_text("Completion rate")
    assert metric(page, "Accuracy") == accuracy


def choose_run(page, label: str, run_id: int) -> None:
    choose(page, label, re.compile(rf"^run {run_id} · "))


def metric(page, label: str) -> str:
    """The value a metric shows, found by its label."""
    card = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
    return card.get_by_test_id("stMetricValue").inner_text().strip()


class Shots:
    """Screenshots of the walk, kept where PROMPTER_SCREENSHOTS says (none when it is unset)."""

    def __init__(self, page):
        self.page = page
        self.folder = Path(os.environ["PROMPTER_SCREENSHOTS"]) if os.environ.get("PROMPTER_SCREENSHOTS") else None
        self.count = 0

    def take(self, name: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count += 1
        self.page.set_viewport_size({"width": 1400, "height": 3000})
        self.page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"))
        self.page.set_viewport_size({"width": 1400, "height": 1000})
