"""Monthly budgets: what runs on a provider key, and runs a member starts, may spend in a calendar
month (UTC), counting every user's runs.

A run that would pass a budget is refused before it starts (from its estimate), and the run engine
stops sending calls before one would take the month's spend past a budget. Spend is what the calls
cost at the prices of the time they were made; answers reused from earlier calls cost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func
from sqlmodel import select

from core import audit, identity, pricing, store
from core.formatting import usd
from core.prompts import Version


class OverBudget(ValueError):
    """A run would take a month's spend past a budget."""


@dataclass(frozen=True)
class Budget:
    what: str  # "the key 'openai-team'" | "ana@example.com"
    amount_usd: float
    spent_usd: float  # this month, every run (the one asking included, when it has spent)

    @property
    def left_usd(self) -> float:
        return max(0.0, self.amount_usd - self.spent_usd)

    def describe(self) -> str:
        return f"the monthly budget of {self.what} ({usd(self.amount_usd)}; {usd(self.spent_usd)} spent this month)"


def month_start(now: datetime | None = None) -> datetime:
    now = now or store.utcnow()
    return datetime(now.year, now.month, 1, tzinfo=timezone.utc)


def key_spend(key_name: str, *, excluding_run: int | None = None) -> float:
    """What runs on the key paid this month."""
    return _spend(store.PromptVersion.provider_key == key_name, excluding_run)


def member_spend(email: str, *, excluding_run: int | None = None) -> float:
    """What runs the member started paid this month."""
    return _spend(store.Run.started_by == email, excluding_run)


def run_spend_this_month(run_id: int) -> float:
    return _spend(store.Run.id == run_id, None)


def run_spend_before_this_month(run_id: int) -> float:
    """What the run paid in earlier months (a run resumed, or still going, after the month turned):
    no budget counts it this month."""
    return _spend(store.Run.id == run_id, None, this_month=False)


def key_budget(key_name: str) -> float | None:
    with store.session() as s:
        key = s.exec(select(store.ProviderKey).where(store.ProviderKey.name == key_name)).first()
    return key.monthly_budget_usd if key is not None else None


def applying(version: Version, started_by: str | None, *, excluding_run: int | None = None) -> list[Budget]:
    """The budgets a run of ``version`` started by ``started_by`` spends against, with what everyone
    else spent this month (the run ``excluding_run`` left out)."""
    found = []
    with store.session() as s:
        key = s.exec(select(store.ProviderKey).where(store.ProviderKey.name == version.provider_key)).first()
        person = s.get(store.TeamMember, started_by) if started_by else None
    if key is not None and key.monthly_budget_usd is not None:
        found.append(Budget(f"the key {key.name!r}", key.monthly_budget_usd, key_spend(key.name, excluding_run=excluding_run)))
    if person is not None and person.monthly_budget_usd is not None:
        found.append(Budget(person.email, person.monthly_budget_usd, member_spend(person.email, excluding_run=excluding_run)))
    return found


def check_start(version: Version, started_by: str | None, estimated_cost_usd: float | None) -> None:
    """Refuse a run whose estimate would pass a budget (or that cannot be priced under one)."""
    budgets = applying(version, started_by)
    if not budgets:
        return
    if pricing.price(version.model) is None:
        raise OverBudget(
            f"{version.model} has no price, so {budgets[0].describe()} cannot be kept; an admin sets its price on the Keys page first."
        )
    for budget in budgets:
        if budget.left_usd <= 0:
            raise OverBudget(f"Refused: {budget.describe()} is used up; an admin can raise it on the Keys or Team page.")
        if estimated_cost_usd is not None and estimated_cost_usd > budget.left_usd:
            raise OverBudget(
                f"Refused: the run is estimated at {usd(estimated_cost_usd)}, more than the {usd(budget.left_usd)} left of "
                f"{budget.describe()}. Run it on fewer tasks, or ask an admin to raise the budget."
            )


def set_key_budget(key_name: str, amount_usd: float | None) -> None:
    """Set (or, with None, remove) a key's monthly budget; admins only."""
    by = identity.require_role("admin", "set budgets")
    amount = _amount(amount_usd)
    with store.writing() as s:
        row = s.exec(select(store.ProviderKey).where(store.ProviderKey.name == key_name)).first()
        if row is None:
            raise ValueError(f"No saved key is named {key_name!r}; budgets are set on saved keys.")
        row.monthly_budget_usd = amount
        s.add(row)
    audit.record("key budget set", target=key_name, by=by, detail={"monthly_budget_usd": amount})


def set_member_budget(email: str, amount_usd: float | None) -> None:
    """Set (or, with None, remove) what a member's runs may spend in a month; admins only."""
    by = identity.require_role("admin", "set budgets")
    amount = _amount(amount_usd)
    email = email.strip().lower()
    with store.writing() as s:
        row = s.get(store.TeamMember, email)
        if row is None:
            raise ValueError(f"{email} is not on the team; the Team page lists who is.")
        row.monthly_budget_usd = amount
        s.add(row)
    audit.record("member budget set", target=email, by=by, detail={"monthly_budget_usd": amount})


def _amount(amount_usd: float | None) -> float | None:
    if amount_usd is None:
        return None
    if not isinstance(amount_usd, (int, float)) or not math.isfinite(amount_usd) or amount_usd <= 0:
        raise ValueError(f"budget: {amount_usd} is not a positive amount of US dollars; give one, or none for no budget.")
    return float(amount_usd)


def _spend(where, excluding_run: int | None, *, this_month: bool = True) -> float:
    when = store.RunItem.created_at >= month_start() if this_month else store.RunItem.created_at < month_start()
    query = (
        select(func.sum(store.RunItem.cost_usd))
        .join(store.Run, store.Run.id == store.RunItem.run_id)
        .join(store.PromptVersion, store.PromptVersion.id == store.Run.prompt_version_id)
        .where(where, store.RunItem.from_cache == False, when)  # noqa: E712
    )
    if excluding_run is not None:
        query = query.where(store.Run.id != excluding_run)
    with store.session() as s:
        return float(s.exec(query).one() or 0.0)
