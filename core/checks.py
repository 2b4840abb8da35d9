"""The one-sentence outcome of testing a connection (a model provider, or Label Studio)."""

from __future__ import annotations

from dataclasses import dataclass

OUTCOMES = ("ok", "rejected", "not_found", "unreachable", "rate_limited", "unreadable", "error")


@dataclass(frozen=True)
class Check:
    outcome: str  # one of OUTCOMES
    message: str  # one sentence for the user; never holds a secret
    models: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def missing_scheme(url: str, example: str) -> str | None:
    """Why ``url`` cannot be a server address (no http:// or https://), or None when it can."""
    if url.startswith(("http://", "https://")) and url.split("://", 1)[1]:
        return None
    return f"{url!r} has no http:// or https:// scheme; write it in full, e.g. {example}"
