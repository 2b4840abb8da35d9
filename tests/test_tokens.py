"""core.tokens: each model's prompt is counted in its own tiktoken encoding, with no internet."""

from __future__ import annotations

import pytest

from core import tokens

# The token ids OpenAI's cookbook ("How to count tokens with tiktoken") gives for these strings.
COOKBOOK = {
    "tiktoken is great!": {"o200k_base": [83, 8251, 2488, 382, 2212, 0], "cl100k_base": [83, 1609, 5963, 374, 2294, 0]},
    "antidisestablishmentarianism": {
        "o200k_base": [493, 129901, 376, 160388, 21203, 2367],
        "cl100k_base": [519, 85342, 34500, 479, 8997, 2191],
    },
}


@pytest.mark.parametrize(
    "model, encoding",
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("my-azure-deployment", "o200k_base"),  # unknown to tiktoken: counted as OpenAI's current models are
    ],
)
def test_each_model_family_has_its_encoding(model, encoding):
    assert tokens.encoding_name(model) == encoding


@pytest.mark.parametrize("text", list(COOKBOOK))
def test_counts_are_the_published_ones_in_both_encodings(text):
    assert tokens.encoding("gpt-4o").encode(text) == COOKBOOK[text]["o200k_base"]
    assert tokens.encoding("gpt-4").encode(text) == COOKBOOK[text]["cl100k_base"]
    assert (tokens.count(text, "gpt-4o"), tokens.count(text, "gpt-4")) == (6, 6)


def test_a_prompt_is_counted_in_the_models_encoding():
    sent = [{"role": "system", "content": "antidisestablishmentarianism"}, {"role": "user", "content": "tiktoken is great!"}]
    framing = tokens.TOKENS_PER_REPLY + 2 * tokens.TOKENS_PER_MESSAGE
    assert tokens.prompt_tokens(sent, "gpt-4o-mini") == framing + 6 + 6
    text = "Ça va? 你好, wonderful world"
    assert tokens.count(text, "gpt-4o") != tokens.count(text, "gpt-3.5-turbo")  # the encodings do differ


def test_text_that_looks_like_a_special_token_is_counted_as_text():
    assert tokens.count("a task that says <|endoftext|>", "gpt-4o") > 3


def test_ranks_are_found_with_no_internet_wherever_tiktoken_is_told_to_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken's way of saying "do not cache": it would fetch
    assert tokens.encoding("gpt-4o").encode("tiktoken is great!") == COOKBOOK["tiktoken is great!"]["o200k_base"]
    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert tokens.count("tiktoken is great!", "gpt-4") == 6 and len(list((tmp_path / "elsewhere").iterdir())) == 2
