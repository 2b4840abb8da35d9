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


def test_a_teams_price_applies_to_cached_input_and_batch_alike():
    pricing.save("gpt-4o-mini", 1.0, 2.0)
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000, cached_input_tokens=500_000) == pytest.approx(3.0)
    assert pricing.cost("gpt-4o-mini", 1_000_000, 1_000_000, batch=True) == pytest.approx(3.0)
    assert pricing.listed()["gpt-4o-mini"].source == "yours"
