"""What a call costs: tokens times a price per million tokens for its model.

The defaults are OpenAI's list prices (USD per million input and output tokens) for common models.
A dated snapshot (``gpt-4o-mini-2024-07-18``) is priced as its model. Models not listed (local
servers, Azure deployments under their own names) have no price: their cost is unknown, not zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1_000_000


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "o4-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
}

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def price(model: str, table: dict[str, Price] | None = None) -> Price | None:
    table = DEFAULT_PRICES if table is None else table
    model = (model or "").strip()
    return table.get(model) or table.get(_SNAPSHOT.sub("", model))


def cost(model: str, input_tokens: int, output_tokens: int, table: dict[str, Price] | None = None) -> float | None:
    """USD for the tokens, or None when the model has no price."""
    found = price(model, table)
    return found.cost(input_tokens, output_tokens) if found else None
