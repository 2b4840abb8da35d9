"""Confidence a team acts on, in a real browser (headless Chromium), as a user meets it: the
Evaluate page's reliability chart and threshold for a target accuracy, then the Predict page's
accept (asked first) and review tab, ending in Label Studio. Set PROMPTER_SCREENSHOTS to a folder to
keep a screenshot of each."""

from __future__ import annotations

from playwright.sync_api import expect

from core import acceptance
from tests.browser import click, fill, open_page, shoot
from tests.test_acceptance import OPEN_TASKS, TRUTH_TASKS, confidence_of, hand_threshold, predicted  # noqa: F401 - the fixture


def test_a_user_reads_the_calibration_then_accepts_the_sure_ones(predicted, browser_page, ls_client, labelstudio):  # runs before the browser
    found, task_of, v1 = predicted
    page = browser_page
    t = hand_threshold(0.8)
    sure = {task_of[n] for n in range(TRUTH_TASKS, TRUTH_TASKS + OPEN_TASKS) if confidence_of(n) >= t}

    open_page(page, page.base_url, "Evaluate")
    page.set_viewport_size({"width": 1400, "height": 5200})
    heading = page.get_by_role("heading", name="Confidence", exact=True)
    expect(heading).to_be_visible(timeout=30_000)
    fill(page, "Target accuracy (%)", "80")
    expect(page.get_by_text(f"For 80.0%: at or above {t:.2f}", exact=False)).to_be_visible()
    expect(page.locator("[data-testid='stVegaLiteChart']").nth(1)).to_be_visible()
    shoot(page, "evaluate-confidence", at=heading)

    open_page(page, page.base_url, "Predict")
    accept_heading = page.get_by_role("heading", name="Accept the sure ones, review the rest: sentiment@v1", exact=True)
    expect(accept_heading).to_be_visible(timeout=30_000)
    fill(page, "Target accuracy (%)", "80")
    expect(page.get_by_text(f"{len(sure)} predictions of sentiment@v1 are at or above {t:.2f}", exact=False)).to_be_visible()
    click(page, f"Accept {len(sure)} predictions")
    expect(page.get_by_text(f"Create {len(sure)} annotations from the predictions of sentiment@v1", exact=False)).to_be_visible()
    shoot(page, "predict-accept-asks", at=accept_heading)
    click(page, "Yes, accept")
    expect(page.get_by_text(f"Accepted {len(sure)} predictions as annotations", exact=False)).to_be_visible(timeout=30_000)
    click(page, "Create the review tab")
    expect(page.get_by_text(f"“Review first: sentiment@v1 below {t:.2f}”: {OPEN_TASKS - len(sure)} tasks", exact=False)).to_be_visible(timeout=30_000)
    expect(page.get_by_role("link", name="Open the review tab in Label Studio")).to_be_visible()
    shoot(page, "predict-accepted-and-review-tab", at=accept_heading)

    marker = ls_client.user_id(acceptance.ACCEPTED_BY)
    assert {task.id for task in ls_client.tasks(found.id) if any(a.completed_by == marker for a in task.annotations)} == sure

    # the tab in Label Studio itself: the link opens it, for an annotator signed in
    tab_url = page.get_by_role("link", name="Open the review tab in Label Studio").get_attribute("href")
    page.goto(f"{labelstudio.url}/user/login/")
    page.locator("input[name='email']").fill(labelstudio.credentials.username)
    page.locator("input[name='password']").fill(labelstudio.credentials.password)
    page.locator("button[type='submit'], input[type='submit']").first.click()
    page.wait_for_load_state("networkidle")
    page.goto(tab_url)
    expect(page.get_by_text(f"Review first: sentiment@v1 below {t:.2f}", exact=False).first).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"Tasks: {OPEN_TASKS - len(sure)}", exact=False).first).to_be_visible(timeout=30_000)
    shoot(page, "labelstudio-review-tab")
