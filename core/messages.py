"""A prompt version and one task -> the chat messages the model receives.

The template's ``{field}`` variables take the task's data, each input by its kind: Text as is,
HyperText without markup, Paragraphs as ``author: text`` lines, and Image as an ``image_url`` content
part. An image stored in Label Studio is fetched with the connection's token and sent inline
(base64), since the provider cannot reach a loopback or private server; a public URL goes as is.
``{labels}`` lists what every chosen output accepts, ``{labels:NAME}`` what one accepts.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from core import fewshot, rendering
from core.labeling import Output, Targets
from core.labelstudio import FileRefused, same_origin, stored_file_path
from core.prompts import PromptError, Version, pieces
from core.rendering import MissingField, RenderError

MAX_TASK_BYTES = 1_000_000
MAX_IMAGE_BYTES = 20_000_000  # what OpenAI accepts for one image


class TemplateError(RenderError):
    """The template itself cannot be filled, whatever the task (a task's own faults are RenderErrors)."""


FileFetcher = Callable[[str], tuple[bytes, str]]
"""Label Studio's ``file(path) -> (bytes, content type)``."""


class ImageLinks:
    """Task image values -> URLs a provider can open.

    ``label_studio_url`` and ``fetch`` come from the connection (``LabelStudioClient.url``/``.file``);
    without them, only public URLs and data URLs can be sent.
    """

    def __init__(self, label_studio_url: str | None = None, fetch: FileFetcher | None = None):
        self.label_studio_url = (label_studio_url or "").rstrip("/")
        self.fetch = fetch

    def __call__(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise RenderError(f"The task's field {field!r} should hold an image URL, not {_kind(value)}.")
        value = value.strip()
        if value.startswith("data:image/"):
            return value
        path = self._stored_path(value, field)
        if path is not None:
            return self._inline(path)
        scheme = urlsplit(value).scheme
        if scheme in ("http", "https"):
            return value  # a public URL: the provider fetches it, and no token goes with it
        where = f"{scheme}:// storage" if scheme else "a path Label Studio does not serve"
        raise RenderError(
            f"The image {value[:80]!r} in field {field!r} is in {where}; Prompter sends images stored in "
            "Label Studio (/data/upload/, /data/local-files/) or at public http(s) URLs."
        )

    def _stored_path(self, value: str, field: str) -> str | None:
        """The normalised path to fetch with the token, for a path or a URL on Label Studio; None for
        anything else (a public URL, another scheme). A value that is on Label Studio but not, once
        normalised, one of its stored files is refused (see labelstudio.stored_file_path)."""
        parts = urlsplit(value)
        on_label_studio = parts.scheme in ("http", "https") and bool(self.label_studio_url) and same_origin(value, self.label_studio_url)
        if not (on_label_studio or (value.startswith("/") and not parts.netloc)):
            return None
        try:
            return stored_file_path(value, self.label_studio_url or None)
        except FileRefused as refused:
            raise RenderError(
                f"The image {value[:120]!r} in field {field!r} is refused: {refused.reason}; Prompter sends its Label "
                "Studio token only for files stored in Label Studio (/data/upload/..., /data/local-files/...)."
            ) from None

    def _inline(self, path: str) -> str:
        if self.fetch is None:
            raise RenderError(f"The image {path} is stored in Label Studio, but no Label Studio connection is set to fetch it.")
        content, content_type = self.fetch(path)
        if len(content) > MAX_IMAGE_BYTES:
            raise RenderError(f"The image {path} is {len(content) / 1e6:.1f} MB; providers accept images up to {MAX_IMAGE_BYTES / 1e6:.0f} MB.")
        if not content_type.startswith("image/"):
            content_type = mimetypes.guess_type(path)[0] or ""
        if not content_type.startswith("image/"):
            raise RenderError(f"The file {path} is not an image (Label Studio sent {content_type or 'no content type'}).")
        return f"data:{content_type};base64,{base64.b64encode(content).decode('ascii')}"


def build(
    version: Version, targets: Targets, data: dict[str, Any], images: ImageLinks | None = None, task_id: int | None = None
) -> list[dict[str, Any]]:
    """The chat messages for one task: the system message (if any), the version's few-shot examples
    (each its filled template and its ground-truth answer; never the task itself), then the filled
    template.

    Raises RenderError naming the field and the fix when this task cannot be put into the prompt.
    """
    check_size(data)
    images = images or ImageLinks()
    messages = []
    if version.system_message:
        system = _fill(version.system_message, version, targets, data, images)
        if any(part["type"] != "text" for part in system):
            raise RenderError("The system message cannot hold an image; move the image variable into the template.")
        messages.append({"role": "system", "content": _content(system)})
    for example in fewshot.for_task(version.examples, targets, task_id, data):
        try:
            shown = _fill(version.template, version, targets, example.data, images)
        except RenderError as error:
            raise TemplateError(f"Few-shot example task {example.task_id} cannot be put into the template: {error}") from None
        messages.append({"role": "user", "content": _content(shown)})
        messages.append({"role": "assistant", "content": json.dumps(example.answer, ensure_ascii=False)})
    messages.append({"role": "user", "content": _content(_fill(version.template, version, targets, data, images))})
    return messages


def check_size(data: dict[str, Any]) -> None:
    size = len(json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_TASK_BYTES:
        raise RenderError(
            f"The task's data is {size / 1e6:.1f} MB, more than the {MAX_TASK_BYTES / 1e6:.0f} MB Prompter puts "
            "into one prompt; split it into smaller tasks in Label Studio."
        )


def labels_text(targets: Targets, controls: Sequence[str], name: str | None = None) -> str:
    """What ``{labels}`` (every chosen output, one per line) or ``{labels:NAME}`` (one) inserts."""
    if name is not None:
        return _accepts(targets.output(name))
    return "\n".join(f"{c}: {_accepts(targets.output(c))}" for c in controls)


def text_parts(messages: list[dict[str, Any]]) -> str:
    """Messages as plain text for showing, with inline images shortened."""
    shown = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = "".join(p["text"] if p["type"] == "text" else f"[image {_short(p['image_url']['url'])}]" for p in content)
        shown.append(f"[{message['role']}]\n{content}")
    return "\n\n".join(shown)


# -- details ----------------------------------------------------------------------------------------


def _fill(template: str, version: Version, targets: Targets, data: dict[str, Any], images: ImageLinks) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for literal, name, argument in _pieces(template):
        text = literal
        if name == "labels":
            if argument is not None and argument not in version.controls:
                outputs = ", ".join(version.controls) or "none (choose one to fill)"
                raise TemplateError(f"{{labels:{argument}}} names no output of this prompt; the outputs are: {outputs}.")
            text += labels_text(targets, version.controls, argument)
        elif name is not None:
            source = next((i for i in targets.inputs if i.field == name), None)
            if source is not None and source.tag == "Image":
                _add_text(parts, text)
                if name not in data:
                    raise MissingField(f"The task has no field {name!r}, which Image {source.name!r} reads.")
                parts.append({"type": "image_url", "image_url": {"url": images(data[name], name)}})
                continue
            text += _field(name, data, source)
        _add_text(parts, text)
    return parts


def _pieces(template: str) -> list[tuple[str, str | None, str | None]]:
    """(literal text before, variable name, argument) for each variable, then the tail."""
    try:
        return pieces(template)
    except PromptError as error:
        raise TemplateError(str(error)) from None


def _field(name: str, data: dict[str, Any], source) -> str:
    if name not in data:
        if source is not None:
            raise MissingField(f"The task has no field {name!r}, which {source.tag} {source.name!r} reads; its fields are: {', '.join(data) or 'none'}.")
        raise MissingField(f"The task has no field {name!r}; its fields are: {', '.join(data) or 'none'}.")
    value = data[name]
    if source is not None:
        text = rendering.field_text(source, value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RenderError(
            f"The task's field {name!r} is not valid UTF-8 text (a broken character at position {error.start}); "
            "fix the text in Label Studio and import it again."
        ) from None
    return text


def _add_text(parts: list[dict[str, Any]], text: str) -> None:
    if not text:
        return
    if parts and parts[-1]["type"] == "text":
        parts[-1]["text"] += text
    else:
        parts.append({"type": "text", "text": text})


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _accepts(output: Output) -> str:
    if output.tag == "Choices":
        return ("any of" if output.multiple else "one of") + ": " + ", ".join(output.labels)
    if output.tag == "Taxonomy":
        return "one or more paths through: " + ", ".join(output.labels)
    if output.tag == "Labels":
        return "spans of the text, each quoted exactly and labeled one of: " + ", ".join(output.labels)
    if output.tag == "Pairwise":
        return "left or right"
    if output.tag == "Rating":
        return f"a whole number from 1 to {output.maximum:g}"
    if output.tag == "Number":
        low = f"{output.minimum:g}" if output.minimum is not None else None
        high = f"{output.maximum:g}" if output.maximum is not None else None
        if low and high:
            return f"a number from {low} to {high}"
        return f"a number{f' of at least {low}' if low else ''}{f' of at most {high}' if high else ''}"
    return "free text"


def _kind(value: Any) -> str:
    return "nothing" if value in (None, "") else f"a {type(value).__name__}"


def _short(url: str) -> str:
    if url.startswith("data:"):
        return f"{url.split(';')[0][5:]}, {len(url) * 3 // 4 // 1000} kB inline"
    return url
