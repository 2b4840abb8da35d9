"""How sure a version is of an answer: per output it fills, and overall.

Two measures, whichever the version uses:

- *log-probabilities* (the default, when the provider gives them): an output's confidence is the
  probability the model gave its value's tokens. For a choice, a set of labels or a number that is
  their joint probability, the probability of that one decision; for free text (TextArea) it is the
  mean per token (geometric), since a joint probability would mostly measure the text's length.
  The JSON around the values (braces, keys, quotes) is left out: it is always near-certain and
  would make every answer look sure.
- *agreement* (a version with ``samples``): n answers at the version's temperature; each output keeps
  its most common value, and its confidence is the share of the n answers that gave it. An answer
  that is not a JSON object agrees with none.

An answer's overall confidence is its lowest output's, since it is right only when every output is.
With neither measure there is no confidence (None), never an invented one.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from typing import Any, Sequence

from core.calls import Reply
from core.labeling import Output

_DECODER = json.JSONDecoder()
_UNORDERED = ("Choices", "Taxonomy", "Labels")  # outputs whose value is a set written as a list


def measure(reply: Reply, outputs: Sequence[Output]) -> Reply:
    """``reply`` with its confidence filled in (and, for agreement, the answer kept)."""
    if reply.samples:
        kept, per_output = by_agreement(reply.samples, outputs)
        return replace(reply, raw=kept, confidences=per_output, confidence=overall(per_output))
    if reply.tokens:
        per_output = from_logprobs(reply.raw, reply.tokens, outputs)
        return replace(reply, confidences=per_output, confidence=overall(per_output))
    return reply


def overall(per_output: dict[str, float] | None) -> float | None:
    return min(per_output.values()) if per_output else None


def from_logprobs(raw: str | None, tokens: Sequence[tuple[bytes, float]], outputs: Sequence[Output]) -> dict[str, float] | None:
    """Each output's confidence from the answer's token log-probabilities; None when the tokens do
    not spell the answer (nothing to align them with) or an output's value cannot be found."""
    if not raw:
        return None
    text = raw.encode("utf-8")
    if b"".join(token for token, _ in tokens) != text:
        return None
    starts, at = [], 0
    for token, _ in tokens:
        starts.append(at)
        at += len(token)
    spans = value_spans(raw)
    found = {}
    for output in outputs:
        if output.name not in spans:
            return None
        start, end = (len(raw[:i].encode("utf-8")) for i in spans[output.name])
        chosen = [lp for (token, lp), s in zip(tokens, starts) if s < end and s + len(token) > start]
        if not chosen:
            return None
        total = sum(chosen) / len(chosen) if output.tag == "TextArea" else sum(chosen)
        found[output.name] = round(math.exp(total), 4)
    return found


def value_spans(raw: str) -> dict[str, tuple[int, int]]:
    """Where each top-level value of a JSON object lies in ``raw``, as [start, end) character
    offsets; a non-empty string without its quotes. Empty when ``raw`` is not a JSON object."""
    spans: dict[str, tuple[int, int]] = {}
    try:
        i = _blank(raw, 0)
        if raw[i] != "{":
            return {}
        i = _blank(raw, i + 1)
        while raw[i] != "}":
            key, i = _DECODER.raw_decode(raw, i)
            i = _blank(raw, i)
            if raw[i] != ":":
                return {}
            start = _blank(raw, i + 1)
            value, end = _DECODER.raw_decode(raw, start)
            spans[str(key)] = (start + 1, end - 1) if isinstance(value, str) and value else (start, end)
            i = _blank(raw, end)
            if raw[i] == ",":
                i = _blank(raw, i + 1)
    except (ValueError, IndexError):
        return {}
    return spans


def by_agreement(samples: Sequence[str | None], outputs: Sequence[Output]) -> tuple[str | None, dict[str, float] | None]:
    """The answer kept (each output's most common value; a tie goes to the earliest answer) and
    each output's share of the n answers that gave it. When no answer is a JSON object, the first
    answer as it came and no confidence: it fails as any broken answer does."""
    answers = [_object(s) for s in samples]
    valid = [a for a in answers if a is not None]
    if not valid:
        return samples[0] if samples else None, None
    kept, shares = {}, {}
    for output in outputs:
        given = [(a[output.name], _comparable(output, a[output.name])) for a in valid if output.name in a]
        if not given:
            return samples[0], None
        winner, votes = Counter(c for _, c in given).most_common(1)[0]
        kept[output.name] = next(value for value, c in given if c == winner)
        shares[output.name] = round(votes / len(samples), 4)
    return json.dumps(kept, ensure_ascii=False), shares


def _object(raw: str | None) -> dict[str, Any] | None:
    try:
        found = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def _comparable(output: Output, value: Any) -> str:
    """A value as it compares between answers: text without regard to case or spacing, a set of
    choices, labels or paths without regard to order."""
    if output.tag == "TextArea" and isinstance(value, str):
        value = " ".join(value.casefold().split())
    elif output.tag in _UNORDERED and isinstance(value, list):
        value = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _blank(raw: str, i: int) -> int:
    while raw[i] in " \t\r\n":
        i += 1
    return i
