"""Task data -> the text a prompt inserts for each input: text as is, HyperText without its markup,
Paragraphs (dialogues) as one ``author: text`` line per turn."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from core.labeling import Input

BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "blockquote"}


class RenderError(ValueError):
    """A task's field cannot be put into the prompt; the message says which and why."""


class MissingField(RenderError):
    """The task has no field the prompt reads."""


def field_text(source: Input, value: Any) -> str:
    if value is None:
        raise MissingField(f"The task has no field {source.field!r}, which {source.tag} {source.name!r} reads.")
    if source.tag == "Text":
        return value if isinstance(value, str) else str(value)
    if source.tag == "HyperText":
        return html_text(str(value))
    if source.tag == "Paragraphs":
        if not isinstance(value, list):
            raise RenderError(f"The field {source.field!r} should be a list of turns for Paragraphs, not {type(value).__name__}.")
        return "\n".join(_turn(turn, source) for turn in value)
    raise RenderError(f"{source.tag} {source.name!r} is not inserted as text.")


def _turn(turn: Any, source: Input) -> str:
    if not isinstance(turn, dict):
        return str(turn)
    return f"{turn.get(source.name_key, '?')}: {turn.get(source.text_key, '')}"


def html_text(markup: str) -> str:
    """The visible text of an HTML fragment: scripts and styles dropped, blocks on their own lines."""
    parser = _TextOnly()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


class _TextOnly(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._hidden += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._hidden = max(0, self._hidden - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)
