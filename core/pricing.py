"""What a call costs: its tokens at its model's prices per million tokens.

List prices come from ``genai-prices`` (maintained price data: OpenAI's models, their dated
snapshots, cached input and Batch API prices), as OpenAI lists them. A team sets prices of its own
(``save``) over them: for other models, such as an Azure deployment's name or a local model at 0,
and to correct a list price. A team's price applies to cached input tokens alike; for Batch API calls
the team may give a batch price with it, else its price applies to them too. A model with no price
has an unknown cost, not a zero one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from sqlmodel import select

from core import audit, identity, store

PROVIDER = "openai"  # whose list prices apply to a model name: an OpenAI-compatible server is priced as OpenAI
# Shown on the Keys page and offered for a model matrix; any model genai-prices knows is priced.
COMMON_MODELS = (
    "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini",
    "o4-mini", "o3", "o3-mini", "gpt-4-turbo", "gpt-3.5-turbo",
)  # fmt: skip
EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")
MILLION = 1_000_000

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float
    cached_input_per_million: float | None = None  # None: cached input tokens cost as much as the others
    source: str = "list price"  # or "yours"
    batch: Price | None = None  # the team's price for Batch API calls, when it gave one

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """USD for a call; ``input_tokens`` counts every input token, the cached ones included (as
        the providers report them)."""
        cached = min(cached_input_tokens or 0, input_tokens)
        cached_rate = self.input_per_million if self.cached_input_per_million is None else self.cached_input_per_million
        return ((input_tokens - cached) * self.input_per_million + cached * cached_rate + output_tokens * self.output_per_million) / MILLION


def own_prices() -> dict[str, Price]:
    """The prices the team set, by model."""
    with store.session() as s:
        rows = s.exec(select(store.ModelPrice)).all()
    return {row.model: _own(row) for row in rows}


def _own(row: store.ModelPrice) -> Price:
    batch = None
    if row.batch_input_per_million is not None and row.batch_output_per_million is not None:
        batch = Price(row.batch_input_per_million, row.batch_output_per_million, source="yours")
    return Price(row.input_per_million, row.output_per_million, source="yours", batch=batch)


def saved_models() -> set[str]:
    with store.session() as s:
        return set(s.exec(select(store.ModelPrice.model)).all())


def listed() -> dict[str, Price]:
    """The prices to show: the common models' list prices, with the team's own over them and beside them."""
    shown = {model: found for model in (*COMMON_MODELS, *EMBEDDING_MODELS) if (found := list_price(model)) is not None}
    return shown | own_prices()


def table() -> list[dict[str, Any]]:
    """The prices to show, a row per model: live, cached input (None: as input) and Batch API prices."""
    own = own_prices()
    rows = []
    for model, live in sorted(listed().items()):
        batch = price(model, own, batch=True)
        rows.append(
            {
                "model": model, "input_per_million": live.input_per_million, "cached_input_per_million": live.cached_input_per_million,
                "output_per_million": live.output_per_million, "batch_input_per_million": batch.input_per_million,
                "batch_output_per_million": batch.output_per_million, "source": live.source,
            }
        )  # fmt: skip
    return rows


def save(
    model: str, input_per_million: float, output_per_million: float, *, batch_input_per_million: float | None = None, batch_output_per_million: float | None = None
) -> Price:
    """Set the team's price for a model, and optionally its price for Batch API calls (admins only)."""
    user = identity.require_role("admin", "set prices")
    model = (model or "").strip()
    if not model:
        raise ValueError("model: name the model (or Azure deployment) the price is for.")
    if input_per_million < 0 or output_per_million < 0:
        raise ValueError("price: give US dollars per million tokens, 0 or more.")
    batch = (batch_input_per_million, batch_output_per_million)
    if (batch[0] is None) != (batch[1] is None):
        raise ValueError("batch price: give both the input and the output price per million tokens, or neither (batch calls then cost your price).")
    if batch[0] is not None and (batch[0] < 0 or batch[1] < 0):
        raise ValueError("batch price: give US dollars per million tokens, 0 or more.")
    figures = {
        "input_per_million": float(input_per_million),
        "output_per_million": float(output_per_million),
        "batch_input_per_million": None if batch[0] is None else float(batch[0]),
        "batch_output_per_million": None if batch[1] is None else float(batch[1]),
    }
    with store.writing() as s:
        row = s.get(store.ModelPrice, model) or store.ModelPrice(model=model, input_per_million=0, output_per_million=0)
        for name, value in figures.items():
            setattr(row, name, value)
        row.updated_at = store.utcnow()
        s.add(row)
        saved = _own(row)
    audit.record("price set", target=model, by=user, detail=figures)
    return saved


def remove(model: str) -> None:
    """Forget the team's price for a model (a list price applies again); admins only."""
    user = identity.require_role("admin", "remove prices")
    with store.writing() as s:
        row = s.get(store.ModelPrice, model)
        if row is None:
            raise ValueError(f"model: no price of your own is saved for {model!r}.")
        s.delete(row)
    audit.record("price removed", target=model, by=user)


def price(model: str, own: dict[str, Price] | None = None, *, batch: bool = False) -> Price | None:
    """The price of a call to ``model``: the team's (``own``, read from the store when not given),
    else the list price (the Batch API's with ``batch``), else None."""
    own = own_prices() if own is None else own
    model = (model or "").strip()
    yours = own.get(model) or own.get(_SNAPSHOT.sub("", model))
    if yours is not None:
        return yours.batch if batch and yours.batch is not None else yours
    return list_price(model, batch=batch)


def cost(
    model: str, input_tokens: int, output_tokens: int, own: dict[str, Price] | None = None, *, cached_input_tokens: int = 0, batch: bool = False
) -> float | None:
    """USD for the tokens, or None when the model has no price."""
    found = price(model, own, batch=batch)
    return found.cost(input_tokens, output_tokens, cached_input_tokens) if found else None


@lru_cache(maxsize=512)
def list_price(model: str, *, batch: bool = False) -> Price | None:
    """``model``'s list price per million tokens, as genai-prices has it today; None when it has none.

    Read by pricing a million tokens of each kind, so that genai-prices' own rules (its model name
    matching, dated prices, the batch variant) decide."""
    from genai_prices import Usage, calc_price  # its price data takes a moment to load: only when a price is asked

    context = {"processing": "batch"} if batch else None
    now = datetime.now(timezone.utc)

    def per_million(**usage: int) -> float:
        return float(calc_price(Usage(**usage), model, provider_id=PROVIDER, genai_request_timestamp=now, price_context=context).total_price)

    try:
        input_rate = per_million(input_tokens=MILLION)
    except LookupError:
        return None
    output_rate = per_million(output_tokens=MILLION)
    cached_rate = per_million(input_tokens=MILLION, cache_read_tokens=MILLION)
    return Price(input_rate, output_rate, cached_rate if cached_rate != input_rate else None)
