"""Figures as the pages and commands show them."""

from __future__ import annotations


def percent(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "—"


def interval(found: dict | None, scale: float = 100, unit: str = "%", digits: int = 1) -> str:
    """A 95% interval as "67.0–88.8%" (percentages by default), or "—" when there is none."""
    if not found:
        return "—"
    return f"{found['low'] * scale:.{digits}f}–{found['high'] * scale:.{digits}f}{unit}"


def percent_with_interval(value: float | None, found: dict | None) -> str:
    """A proportion with its interval: "80.0% (95% interval 67.0–88.8%)"; just the figure without one."""
    if value is None or not found:
        return percent(value)
    return f"{percent(value)} (95% interval {interval(found)})"


def with_intervals(row: dict, percents: tuple[str, ...] = (), digits: int = 3) -> dict:
    """A row of figures for a table: each ``<name>_interval`` becomes a text column "<name> 95%"
    placed right after its figure: "0.620–0.910", or "62.0–91.0%" for the figures named in
    ``percents`` (which are shown as percentages too), or "—" when there is no interval."""
    shown = {}
    for key, value in row.items():
        if key.endswith("_interval") and key[: -len("_interval")] in row:
            continue
        shown[key] = percent(value) if key in percents else value
        if f"{key}_interval" in row:
            found = row[f"{key}_interval"]
            shown[f"{key} 95%"] = interval(found) if key in percents else interval(found, scale=1, unit="", digits=digits)
    return shown


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
