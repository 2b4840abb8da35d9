"""Token counts before a call: the prompt's, counted with tiktoken in the model's own encoding
(o200k_base for the gpt-4o, gpt-4.1, gpt-5 and o-series families, cl100k_base for gpt-4 and
gpt-3.5), and a typical answer's length.

Used to estimate what a run will cost before it starts, and to reserve a call's cost against a
spending limit before the call is sent. A model tiktoken does not know (an Azure deployment's name,
a local model) is counted in o200k_base, the encoding of OpenAI's current models: an estimate.

tiktoken fetches an encoding's ranks from the internet the first time; here they come from the
``bpe-openai`` package, which ships them, and tiktoken checks them against the hash it knows.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import threading
from importlib import util
from typing import Any

import tiktoken

from core import labeling

DEFAULT_ENCODING = "o200k_base"
TOKENS_PER_MESSAGE = 3  # the chat format's framing of each message, as OpenAI counts it
TOKENS_PER_REPLY = 3
TOKENS_PER_IMAGE = 765  # one 512 px tile at high detail; images vary, so this is a rough figure


def prompt_tokens(sent: list[dict[str, Any]], model: str | None = None) -> int:
    """The input tokens of a chat request to ``model``."""
    total = TOKENS_PER_REPLY
    for message in sent:
        total += TOKENS_PER_MESSAGE
        content = message["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        for part in parts:
            total += count(part["text"], model) if part["type"] == "text" else TOKENS_PER_IMAGE
    return total


def count(text: str, model: str | None = None) -> int:
    """The tokens of ``text`` in ``model``'s encoding (special tokens counted as text)."""
    return len(encoding(model).encode(text, disallowed_special=()))


def typical_answer_tokens(targets: labeling.Targets, controls: tuple[str, ...], model: str | None = None) -> int:
    """The length of a plausible answer for these outputs, for when no past answer tells better."""
    return count(json.dumps(example_answer(targets, controls)), model)


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


def encoding_name(model: str | None) -> str:
    """The encoding tiktoken gives ``model`` (a dated snapshot or a fine-tune included), else o200k_base."""
    try:
        return tiktoken.encoding_name_for_model((model or "").strip())
    except KeyError:
        return DEFAULT_ENCODING


def encoding(model: str | None = None) -> tiktoken.Encoding:
    name = encoding_name(model)
    with _lock:
        if name not in _encodings:
            _ship_ranks()
            _encodings[name] = tiktoken.get_encoding(name)
        return _encodings[name]


_encodings: dict[str, tiktoken.Encoding] = {}
_lock = threading.Lock()
_SHIPPED = ("cl100k_base", "o200k_base")  # what bpe-openai ships; o200k_harmony is o200k_base's ranks
_SOURCE = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"  # where tiktoken would fetch them


def _ship_ranks() -> None:
    """Put the ranks bpe-openai ships where tiktoken looks before fetching them (its cache, keyed by
    the address it would fetch), once per process. tiktoken checks each file's hash when it reads it."""
    folder = os.environ.get("TIKTOKEN_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "prompter-tiktoken")
    os.environ["TIKTOKEN_CACHE_DIR"] = folder  # an empty one would have tiktoken fetch them
    os.makedirs(folder, exist_ok=True)
    for name in _SHIPPED:
        cached = os.path.join(folder, hashlib.sha1(_SOURCE.format(name).encode()).hexdigest())
        if not os.path.exists(cached):
            with open(os.path.join(_shipped_folder(), f"{name}.tiktoken.gz"), "rb") as packed:
                data = gzip.decompress(packed.read())
            partial = f"{cached}.{os.getpid()}.partial"
            with open(partial, "wb") as out:
                out.write(data)
            os.replace(partial, cached)


def _shipped_folder() -> str:
    """bpe-openai's data folder, found without importing the package (its tokenizer is a large library we do not use)."""
    spec = util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("bpe-openai is not installed: run `make setup` (token counts need the ranks it ships).")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")
