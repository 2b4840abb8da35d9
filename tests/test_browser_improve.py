"""The tools that make a prompt better, in a real browser (headless Chromium), as a user meets them:
few-shot examples on the Prompts page, and on the Evaluate page the model matrix with its chart,
Enhance and evaluate, and Optimize started by a click and followed until it ends. Set
PROMPTER_SCREENSHOTS to a folder to keep a screenshot of each."""

from __future__ import annotations

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from core import connection, optimize, prompts, runs
from core.evaluation import evaluate, matrix, subsets
from tests.browser import choose, click, fill, open_page, settle, shoot, table_column
from tests.helpers import wait_for_run, wait_until
from tests.standin import Reply
from tests.test_optimize import TEMPLATE, answer, reviews_project

MATRIX_COLUMNS = ("model", "status", "accuracy", "accuracy 95%", "scored", "per 1,000 tasks", "tokens / task", "latency p50", "latency p95", "frontier")


def with_a_teacher(request):
    if "rationale" in (request.schema or {}).get("properties", {}):
        return Reply.json({"system_message": "", "template": TEMPLATE + "\nA review that only states facts is Neutral.", "rationale": "Neutral reviews were called Positive."})
    return answer(request)


def test_a_user_improves_a_prompt_with_examples_a_matrix_enhance_and_optimize(browser_page, make_project, standin):
    project, v1, _, _ = reviews_project(make_project, standin, with_a_teacher, "Improve in the browser")
    client = connection.client()
    page = browser_page

    # Prompts: the few-shot box draws the most similar examples, by TF-IDF, from the examples part
    open_page(page, page.base_url, "Prompts")
    page.get_by_text("Few-shot examples", exact=True).click()
    choose(page, "Examples", "the most similar to each task (TF-IDF)")
    expect(page.get_by_text("Chosen: the 3 most similar to each task (TF-IDF) of 3 examples.", exact=False)).to_be_visible()
    shoot(page, "prompts-few-shot", at=page.get_by_text("Few-shot examples", exact=True))

    # the version's development errors to learn from, and a matrix of two models
    run = evaluate.start(v1, subsets.choose(client, project.id, "development"), client.label_config(project.id))
    runs.launch(run.id)
    assert wait_for_run(run.id).status == "completed"
    for started in matrix.start(v1, subsets.choose(client, project.id, "test"), client.label_config(project.id), [("team", "gpt-4o-mini"), ("team", "gpt-4o")]):
        runs.launch(started.id)
        assert wait_for_run(started.id).status == "completed"

    open_page(page, page.base_url, "Evaluate")
    page.set_viewport_size({"width": 1400, "height": 4200})
    expect(table_column(page, MATRIX_COLUMNS, "model")).to_have_text(["team · gpt-4o-mini", "team · gpt-4o"])
    expect(table_column(page, MATRIX_COLUMNS, "frontier")).to_have_text(["★", ""])  # as accurate, for less
    expect(page.locator("[data-testid='stVegaLiteChart']").first).to_be_visible()
    shoot(page, "evaluate-model-matrix")

    # Enhance and evaluate: the proposal measured on the test part before it is saved
    click(page, "Propose a better prompt")
    expect(page.get_by_text("Why: Neutral reviews were called Positive.")).to_be_visible()
    click(page, "Enhance and evaluate")
    verdict = page.get_by_text("On the test part: the proposal is", exact=False)
    expect(verdict).to_be_visible(timeout=60_000)
    assert [v.number for v in prompts.versions("sentiment", project.id)] == [1]
    shoot(page, "evaluate-enhance-and-evaluate", at=page.get_by_role("heading", name="Enhance v1"))

    # Optimize, started by a click, followed live until it ends with the check on the test part
    page.get_by_text("Optimize: search for a better prompt than sentiment@v1", exact=True).click()
    fill(page, "Reflection model", "gpt-4o")
    max_calls = page.get_by_label("Max calls", exact=True)
    max_calls.fill("150")
    max_calls.press("Tab")
    settle(page)
    click(page, "Optimize")
    expect(page.get_by_text("Started Optimize 1 from sentiment@v1: at most 150 calls.", exact=False)).to_be_visible()
    wait_until(lambda: optimize.get(1).status not in ("pending", "running"), timeout=120, what="the search to end")
    ended = optimize.get(1)
    assert ended.status == "completed", ended.status_reason
    settle(page)
    expect(page.get_by_text(f"On the test part: v{ended.best_version} is", exact=False)).to_be_visible(timeout=30_000)
    kept = ("version", "development accuracy", "95%", "tasks", "from", "best")
    expect(table_column(page, kept, "version")).to_have_text([f"v{c['version']}" for c in ended.candidates])
    expect(table_column(page, kept, "best")).to_have_text(["★" if c["version"] == ended.best_version else "" for c in ended.candidates])
    search = page.get_by_role("combobox", name="Search", exact=True)
    shown = f"Optimize 1 · from v1 · completed · {ended.calls_used}/150 calls"
    # While the section redraws, the old picker can stand beside the new one (more than once as the
    # page stops following the search): wait until one picker is left, showing the ended search.
    wait_until(lambda: pickers_showing(search) == [shown], timeout=30, what=f"one Search picker showing {shown!r}")
    shoot(page, "evaluate-optimize", at=page.get_by_text("Optimize: search for a better prompt than sentiment@v1", exact=True))
    assert ended.calls_used <= 150 - ended.reserved_calls  # the search kept the test check's calls


def pickers_showing(pickers) -> list[str]:
    """What each picker on the page shows now; none while one is being redrawn."""
    try:
        return [picker.input_value(timeout=1_000) for picker in pickers.all()]
    except PlaywrightError:
        return []
