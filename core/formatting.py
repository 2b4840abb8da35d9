"""Figures as the pages and commands show them."""

from __future__ import annotations


def percent(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "—"


def usd(value: float | None) -> str:
    """Dollars to the cent, or to the millionth below a dollar (a single call costs fractions of a cent)."""
    if value is None:
        return "no price"
    if value == 0:
        return "$0.00"
    return f"${value:,.2f}" if value >= 1 else f"${value:.6f}".rstrip("0")


def milliseconds(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "—"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
