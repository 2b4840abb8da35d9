"""A module imported when it is first used, for the heavy ones that many commands never touch."""

from __future__ import annotations

import importlib
from typing import Any


class Later:
    """Stands for the module ``name`` and imports it when an attribute is first read from it. Python
    keeps the module once imported, so later reads cost a dictionary lookup, from any thread."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"Later({self._name!r})"
