"""core.rendering: what each input type puts into the prompt."""

from __future__ import annotations

import pytest

from core.labeling import Input
from core.rendering import RenderError, field_text, html_text


def test_text_is_inserted_as_is():
    assert field_text(Input("text", "Text", "text"), "  Héllo 👋\nworld ") == "  Héllo 👋\nworld "


def test_hypertext_loses_its_markup_scripts_and_styles():
    markup = "<div><h1>Order &amp; refund</h1><p>Please <b>refund</b> #4821.</p><script>alert(1)</script><style>p{}</style><ul><li>one</li><li>two</li></ul></div>"
    assert html_text(markup) == "Order & refund\nPlease refund #4821.\none\ntwo"
    assert field_text(Input("page", "HyperText", "html"), markup).startswith("Order & refund")


def test_paragraphs_become_one_line_per_turn():
    dialogue = [{"author": "customer", "text": "Where is my parcel?"}, {"author": "agent", "text": "Let me check."}]
    assert field_text(Input("chat", "Paragraphs", "dialogue"), dialogue) == "customer: Where is my parcel?\nagent: Let me check."


def test_missing_and_malformed_fields_say_which():
    with pytest.raises(RenderError, match="The task has no field 'text', which Text 'message' reads"):
        field_text(Input("message", "Text", "text"), None)
    with pytest.raises(RenderError, match="should be a list of turns"):
        field_text(Input("chat", "Paragraphs", "dialogue"), "just a string")
