"""core.pricing: list prices per model from genai-prices, the team's over them; unknown models cost
'unknown', not zero."""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price

from core import pricing


def test_known_models_and_their_dated_snapshots_are_priced():
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.15 + 0.60)
    assert pricing.cost("gpt-4o-mini-2024-07-18", 2000, 500) == pytest.approx((2000 * 0.15 + 500 * 0.60) / 1e6)


def test_an_unknown_model_has_no_price():
    assert pricing.price("llama3.1:8b") is None
    assert pricing.cost("my-azure-deployment", 1000, 100) is None


def test_a_team_sets_prices_for_other_models_and_corrects_defaults():
    pricing.save("my-azure-gpt4o", 2.5, 10)
    pricing.save("llama3.1:8b", 0, 0)
    pricing.save("gpt-4o-mini", 0.2, 0.8)
    assert pricing.cost("my-azure-gpt4o", 1_000_000, 0) == pytest.approx(2.5)
    assert pricing.cost("llama3.1:8b", 5000, 500) == 0.0  # free, which is not the same as unknown
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(1.0)
    pricing.remove("gpt-4o-mini")
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)  # the list price again
    assert pricing.saved_models() == {"my-azure-gpt4o", "llama3.1:8b"}


@pytest.mark.parametrize("args, message", [(("", 1, 1), "model: name the model"), (("m", -1, 1), "0 or more")])
def test_bad_prices_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        pricing.save(*args)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o-2024-08-06", "gpt-4.1", "gpt-5-mini", "o3", "gpt-3.5-turbo"])
@pytest.mark.parametrize("batch", [False, True])
def test_list_prices_are_genai_prices_own_cached_input_and_batch_included(model, batch):
    usage = dict(input_tokens=12_000, output_tokens=800, cache_read_tokens=5_000)
    theirs = calc_price(Usage(**usage), model, provider_id="openai", price_context={"processing": "batch"} if batch else None).total_price
    ours = pricing.cost(model, 12_000, 800, cached_input_tokens=5_000, batch=batch)
    assert ours == pytest.approx(float(theirs), rel=1e-9)


def test_cached_input_tokens_cost_less_by_hand():
    # gpt-4o-mini: $0.15 per million input tokens, $0.075 cached, $0.60 output; the Batch API halves each
    assert pricing.cost("gpt-4o-mini", 1_000_000, 0, cached_input_tokens=400_000) == pytest.approx(0.6 * 0.15 + 0.4 * 0.075)
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000, batch=True) == pytest.approx(0.075 + 0.30)


def test_a_teams_price_applies_to_cached_input_and_to_batch_calls_unless_it_gives_a_batch_price():
    pricing.save("gpt-4o-mini", 1.0, 2.0)
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000, cached_input_tokens=500_000) == pytest.approx(3.0)
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000, batch=True) == pytest.approx(3.0)
    assert pricing.listed()["gpt-4o-mini"].source == "yours"

    pricing.save("gpt-4o-mini", 1.0, 2.0, batch_input_per_million=0.4, batch_output_per_million=1.2)
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000, batch=True) == pytest.approx(1.6)
    assert pricing.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000, cached_input_tokens=500_000, batch=True) == pytest.approx(1.6)
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(3.0)  # live calls: the price above
    shown = {row["model"]: row for row in pricing.table()}["gpt-4o-mini"]
    assert (shown["input_per_million"], shown["output_per_million"], shown["batch_input_per_million"], shown["batch_output_per_million"]) == (1.0, 2.0, 0.4, 1.2)

    pricing.save("gpt-4o-mini", 1.0, 2.0)  # saved again without one: batch calls cost the price again
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000, batch=True) == pytest.approx(3.0)


def test_the_list_shows_each_models_batch_price():
    shown = {row["model"]: row for row in pricing.table()}["gpt-4o-mini"]
    assert (shown["batch_input_per_million"], shown["batch_output_per_million"], shown["source"]) == (pytest.approx(0.075), pytest.approx(0.30), "list price")


@pytest.mark.parametrize(
    "batch, message",
    [
        ({"batch_input_per_million": 0.5}, "give both the input and the output price"),
        ({"batch_input_per_million": -1.0, "batch_output_per_million": 1.0}, "batch price: give US dollars per million tokens, 0 or more"),
    ],
)
def test_a_bad_batch_price_is_refused_and_nothing_is_saved(batch, message):
    with pytest.raises(ValueError, match=message):
        pricing.save("my-azure-gpt4o", 2.5, 10, **batch)
    assert "my-azure-gpt4o" not in pricing.saved_models()
