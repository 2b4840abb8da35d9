"""core.pricing: list prices per model; unknown models cost 'unknown', not zero."""

from __future__ import annotations

import pytest

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
