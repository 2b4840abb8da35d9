"""Embeddings of task texts by a saved key's embeddings model, for few-shot examples chosen by
similarity (``core.fewshot``).

Every vector is kept in the store by key, model and the text's hash: a text is embedded (and paid
for) once, and a re-run ranks the examples exactly as the first run did. ``vectors`` returns the
vectors of some texts, asking the model in one request (per ``BATCH`` texts) only for those it has
never seen, and says what the new ones cost.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from sqlmodel import select

from core import keys, pricing, providers, store
from core.later import Later

if TYPE_CHECKING:
    import openai
else:
    openai = Later("openai")  # half a second to import: only once a model is called

BATCH = 256  # texts per request
TIMEOUT = 60.0


class EmbeddingError(ValueError):
    """The texts could not be embedded; the message says why and what to do."""


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    new_tokens: int = 0  # tokens of the texts embedded now (the others came from the store)
    cost_usd: float | None = 0.0  # of those; None when the model has no price


def vectors(key_name: str, model: str, texts: Sequence[str]) -> Embedded:
    hashes = [_hash(t) for t in texts]
    known = _stored(key_name, model, set(hashes))
    missing = list(dict.fromkeys(h for h in hashes if h not in known))
    tokens = 0
    if missing:
        text_of = {h: t for h, t in zip(hashes, texts)}
        for start in range(0, len(missing), BATCH):
            part = missing[start : start + BATCH]
            found, used = _ask(key_name, model, [text_of[h] for h in part])
            tokens += used
            _store(key_name, model, part, found, used)
            known.update(zip(part, found))
    cost = pricing.cost(model, tokens, 0) if tokens else 0.0
    return Embedded([known[h] for h in hashes], tokens, cost)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    norm = (sum(x * x for x in a) ** 0.5) * (sum(y * y for y in b) ** 0.5)
    return dot / norm if norm else 0.0


def _ask(key_name: str, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
    key = keys.get(key_name)
    try:
        reply = providers.client(key, timeout=TIMEOUT, max_retries=4).embeddings.create(model=model, input=[t or " " for t in texts])
    except openai.APIStatusError as error:
        raise EmbeddingError(f"The embeddings model {model} on key {key_name} refused the request ({error.status_code}): {error.message}") from None
    except openai.APIError as error:
        raise EmbeddingError(f"The embeddings model {model} on key {key_name} could not be reached: {error}") from None
    ordered = sorted(reply.data, key=lambda d: d.index)
    if len(ordered) != len(texts):
        raise EmbeddingError(f"The embeddings model {model} returned {len(ordered)} vectors for {len(texts)} texts.")
    return [list(d.embedding) for d in ordered], (reply.usage.prompt_tokens if reply.usage else 0)


def _stored(key_name: str, model: str, hashes: set[str]) -> dict[str, list[float]]:
    if not hashes:
        return {}
    with store.session() as s:
        rows = s.exec(
            select(store.Embedding).where(store.Embedding.provider_key == key_name, store.Embedding.model == model, store.Embedding.text_hash.in_(hashes))
        ).all()
    return {row.text_hash: row.vector for row in rows}


def _store(key_name: str, model: str, hashes: list[str], found: list[list[float]], tokens: int) -> None:
    each = round(tokens / len(hashes)) if hashes else 0  # the reply counts the request's tokens, not each text's
    with store.writing() as s:
        already = set(  # another process may have just stored some
            s.exec(
                select(store.Embedding.text_hash).where(
                    store.Embedding.provider_key == key_name, store.Embedding.model == model, store.Embedding.text_hash.in_(hashes)
                )
            ).all()
        )
        for text_hash, vector in zip(hashes, found):
            if text_hash not in already:
                s.add(store.Embedding(provider_key=key_name, model=model, text_hash=text_hash, vector=vector, tokens=each))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
