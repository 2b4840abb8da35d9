"""An admin sets a model's price with its Batch API price on the Keys page, in a real browser
(headless Chromium), and reads both back in the price table."""

from __future__ import annotations

from playwright.sync_api import expect

from core import pricing
from tests.browser import click, fill, open_page, shoot, table_column

COLUMNS = ("model", "input $/M", "cached input $/M", "output $/M", "batch input $/M", "batch output $/M", "source")


def test_an_admin_sets_a_models_price_and_its_batch_price(browser_page):
    page = browser_page
    open_page(page, page.base_url, "Keys")
    expect(page.get_by_label("Batch input $ per million", exact=True)).to_have_attribute("placeholder", "as input")

    fill(page, "Model", "my-azure-gpt4o")
    fill(page, "Input $ per million", "2.5")
    fill(page, "Output $ per million", "10")
    fill(page, "Batch input $ per million", "1.25")
    fill(page, "Batch output $ per million", "5")
    click(page, "Save price")

    expect(page.get_by_text("Saved the price of my-azure-gpt4o.")).to_be_visible()
    models = table_column(page, COLUMNS, "model")
    expect(models.filter(has_text="my-azure-gpt4o")).to_have_count(1)
    row = page.locator("[data-testid='stDataFrame'] tbody tr").filter(has=page.locator("td", has_text="my-azure-gpt4o"))
    expect(row.locator("td")).to_have_text(["my-azure-gpt4o", "2.5", "as input", "10", "1.25", "5", "yours"])
    shoot(page, "keys-batch-price", at=page.get_by_role("heading", name="Model prices"))
    # 1M input and 100k output tokens: live at $2.50 + $1.00, in a batch at $1.25 + $0.50
    assert pricing.cost("my-azure-gpt4o", 1_000_000, 100_000) == 3.5
    assert pricing.cost("my-azure-gpt4o", 1_000_000, 100_000, batch=True) == 1.75
