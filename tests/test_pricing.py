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


def test_a_table_of_ones_own_replaces_the_defaults():
    table = {"llama3.1:8b": pricing.Price(0.0, 0.0)}
    assert pricing.cost("llama3.1:8b", 5000, 500, table) == 0.0
    assert pricing.cost("gpt-4o", 5000, 500, table) is None
