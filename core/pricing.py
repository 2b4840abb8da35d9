"""What a call costs: tokens times a price per million tokens for its model.

The defaults are OpenAI's list prices (USD per million input and output tokens) for common models.
A team sets prices of its own (``save``) for other models, such as an Azure deployment's name or a
local model at 0, and to correct a default. A dated snapshot (``gpt-4o-mini-2024-07-18``) is priced
as its model. A model with no price has an unknown cost, not a zero one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import select

from core import audit, identity, store


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
    # embeddings models (few-shot similarity): input only
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "text-embedding-ada-002": Price(0.10, 0.0),
}
EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def table() -> dict[str, Price]:
    """The prices in force: the defaults, with the team's own over them."""
    with store.session() as s:
        saved = {row.model: Price(row.input_per_million, row.output_per_million) for row in s.exec(select(store.ModelPrice)).all()}
    return DEFAULT_PRICES | saved


def saved_models() -> set[str]:
    with store.session() as s:
        return set(s.exec(select(store.ModelPrice.model)).all())


def save(model: str, input_per_million: float, output_per_million: float) -> Price:
    """Set the team's price for a model (admins only)."""
    user = identity.require_role("admin", "set prices")
    model = (model or "").strip()
    if not model:
        raise ValueError("model: name the model (or Azure deployment) the price is for.")
    if input_per_million < 0 or output_per_million < 0:
        raise ValueError("price: give US dollars per million tokens, 0 or more.")
    with store.writing() as s:
        row = s.get(store.ModelPrice, model) or store.ModelPrice(model=model, input_per_million=0, output_per_million=0)
        row.input_per_million, row.output_per_million, row.updated_at = float(input_per_million), float(output_per_million), store.utcnow()
        s.add(row)
    audit.record("price set", target=model, by=user, detail={"input_per_million": float(input_per_million), "output_per_million": float(output_per_million)})
    return Price(float(input_per_million), float(output_per_million))


def remove(model: str) -> None:
    """Forget the team's price for a model (a default price applies again); admins only."""
    user = identity.require_role("admin", "remove prices")
    with store.writing() as s:
        row = s.get(store.ModelPrice, model)
        if row is None:
            raise ValueError(f"model: no price of your own is saved for {model!r}.")
        s.delete(row)
    audit.record("price removed", target=model, by=user)


def price(model: str, prices: dict[str, Price] | None = None) -> Price | None:
    prices = table() if prices is None else prices
    model = (model or "").strip()
    return prices.get(model) or prices.get(_SNAPSHOT.sub("", model))


def cost(model: str, input_tokens: int, output_tokens: int, prices: dict[str, Price] | None = None) -> float | None:
    """USD for the tokens, or None when the model has no price."""
    found = price(model, prices)
    return found.cost(input_tokens, output_tokens) if found else None
