"""The labeling config read for a prompt: what it can read, what it fills, and how answers land.

- ``read(config)``: the inputs (object tags and the task field each reads), the outputs (control tags
  with their labels or ranges), and the tags Prompter cannot fill, each with the reason.
- ``schema(targets, controls)``: the JSON schema an answer must follow, from
  ``LabelInterface.to_json_schema()``, adapted to strict structured outputs.
- ``to_regions(...)``: a model's answer -> Label Studio result regions, or a failure with its reason.
  Spans for Labels are found in the source text by the quoted text, never trusted from offsets.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import jsonschema

if TYPE_CHECKING:
    from label_studio_sdk.label_interface import LabelInterface

INPUT_TAGS = ("Text", "HyperText", "Paragraphs", "Image")
OUTPUT_TAGS = ("Choices", "Labels", "TextArea", "Number", "Rating", "Pairwise", "Taxonomy")
# What every strict structured-output implementation accepts; anything else is dropped from the
# schema sent, and checked here instead (ranges, unique items).
STRICT_KEYWORDS = {"type", "enum", "const", "anyOf", "properties", "required", "additionalProperties", "items", "description"}


class ConfigError(ValueError):
    """The labeling config cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Input:
    name: str
    tag: str
    field: str  # the task-data key it reads: value="$text" -> "text"
    name_key: str = "author"  # Paragraphs: the keys of each turn's speaker and words
    text_key: str = "text"


@dataclass(frozen=True)
class Output:
    name: str
    tag: str
    inputs: tuple[str, ...]
    labels: tuple[str, ...] = ()
    multiple: bool = False
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Skipped:
    name: str
    tag: str
    reason: str


@dataclass(frozen=True)
class Targets:
    config: str
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    skipped: tuple[Skipped, ...]

    def output(self, name: str) -> Output:
        for output in self.outputs:
            if output.name == name:
                return output
        fillable = ", ".join(o.name for o in self.outputs) or "none"
        raise ConfigError(f"The labeling config has no output {name!r} that Prompter can fill (it can fill: {fillable}).")

    def input(self, name: str) -> Input:
        return next(i for i in self.inputs if i.name == name)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.field for i in self.inputs))


@dataclass(frozen=True)
class Answer:
    """A model's answer as Label Studio will hold it, or the reason it cannot."""

    parsed: dict[str, Any] | None
    regions: list[dict[str, Any]]
    error: str | None = None
    error_kind: str | None = None  # "invalid_answer", or "unknown_label" for a label the config lacks

    @property
    def ok(self) -> bool:
        return self.error is None


def read(config: str) -> Targets:
    interface = _interface(config)
    inputs, skipped = [], []
    for tag in interface.objects:
        value = str(tag.value or "")
        if tag.tag not in INPUT_TAGS:
            skipped.append(Skipped(tag.name, tag.tag, f"Prompter reads {', '.join(INPUT_TAGS)}, not {tag.tag}"))
        elif not value.startswith("$") or len(value) < 2:
            skipped.append(Skipped(tag.name, tag.tag, f"its value {value!r} is not a task field like $text"))
        else:
            attr = tag.attr or {}
            inputs.append(Input(tag.name, tag.tag, value[1:], attr.get("nameKey") or "author", attr.get("textKey") or "text"))
    readable = {i.name: i for i in inputs}
    outputs = []
    for control in interface.controls:
        reason = _why_not_fillable(control, readable)
        if reason:
            skipped.append(Skipped(control.name, control.tag, reason))
        else:
            outputs.append(_output(control))
    return Targets(config, tuple(inputs), tuple(outputs), tuple(skipped))


def schema(targets: Targets, controls: Sequence[str]) -> dict[str, Any]:
    """The strict JSON schema of an answer filling ``controls``."""
    return copy.deepcopy(_schema(targets, tuple(controls)))


@functools.lru_cache(maxsize=64)
def _schema(targets: Targets, controls: tuple[str, ...]) -> dict[str, Any]:
    if not controls:
        raise ConfigError("Choose at least one output for the prompt to fill.")
    full = _interface(targets.config).to_json_schema()["properties"]
    properties = {}
    for name in controls:
        output = targets.output(name)
        if output.tag == "Labels":
            properties[name] = _entities_schema(output)
        else:
            properties[name] = _strict(full[name])
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


@functools.lru_cache(maxsize=64)
def _validator(targets: Targets, controls: tuple[str, ...]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_schema(targets, controls))


def to_regions(targets: Targets, controls: Sequence[str], raw: str | None, data: dict[str, Any]) -> Answer:
    """Parse the model's raw answer and turn it into result regions, or say why it cannot be."""
    if raw is None or not raw.strip():
        return Answer(None, [], "The model returned an empty answer.", "invalid_answer")
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as error:
        return Answer(None, [], f"The answer is not valid JSON ({error.msg} at character {error.pos}).", "invalid_answer")
    problems = sorted(_validator(targets, tuple(controls)).iter_errors(parsed), key=lambda e: list(e.path))
    if problems:
        first = problems[0]
        where = "/".join(str(p) for p in first.path) or "the top level"
        kind = "unknown_label" if first.validator == "enum" else "invalid_answer"
        return Answer(parsed, [], f"The answer breaks the schema at {where}: {first.message}.", kind)
    regions, errors = [], []
    for name in controls:
        output = targets.output(name)
        try:
            regions.extend(_regions_for(targets, output, parsed[name], data))
        except AnswerError as error:
            errors.append(str(error))
    if errors:
        return Answer(parsed, [], " ".join(errors), "invalid_answer")
    problems = _interface(targets.config).validate_prediction({"result": regions}, return_errors=True)
    if problems is not True and problems:
        return Answer(parsed, [], f"Label Studio would reject the result: {problems[0]}", "invalid_answer")
    return Answer(parsed, regions)


def answer_from_regions(targets: Targets, controls: Sequence[str], regions: Sequence[dict[str, Any]], data: dict[str, Any]) -> dict[str, Any] | None:
    """The answer a model would give, in the answer schema, for result regions (a ground truth): what a
    few-shot example shows as the assistant's reply. None when the regions say nothing for a control."""
    found = {}
    for name in controls:
        output = targets.output(name)
        values = [r.get("value") or {} for r in regions if r.get("from_name") == name]
        if not values:
            return None
        found[name] = _answer_value(targets, output, values, data)
        if found[name] is None:
            return None
    return found


def _answer_value(targets: Targets, output: Output, values: list[dict[str, Any]], data: dict[str, Any]) -> Any:
    if output.tag == "Choices":
        chosen = [c for v in values for c in v.get("choices") or []]
        return chosen if output.multiple else (chosen[0] if len(chosen) == 1 else None)
    if output.tag == "Taxonomy":
        return [list(path) for v in values for path in v.get("taxonomy") or []]
    if output.tag == "Labels":
        text = data.get(targets.input(output.inputs[0]).field) or ""
        spans = sorted((int(v["start"]), int(v["end"]), label) for v in values for label in v.get("labels") or [])
        return [{"text": text[start:end], "label": label} for start, end, label in spans]
    if output.tag == "TextArea":
        return " ".join(t for v in values for t in v.get("text") or [])
    if output.tag == "Pairwise":
        return values[0].get("selected")
    key = "number" if output.tag == "Number" else "rating"
    value = values[0].get(key)
    if value is None:
        return None
    return int(value) if output.tag == "Rating" else float(value)


class AnswerError(ValueError):
    pass


def locate_spans(text: str, quotes: Sequence[str]) -> list[tuple[int, int]]:
    """Where each quote is in ``text``, as (start, end) in characters (code points, as Label Studio counts).

    The n-th repeat of the same quote is its n-th occurrence; case and runs of whitespace may differ.
    Raises AnswerError naming a quote that is not in the text.
    """
    spans, used = [], {}
    for quote in quotes:
        words = quote.split()
        if not words:
            raise AnswerError("The answer quotes an empty span.")
        pattern = re.compile(r"\s+".join(re.escape(w) for w in words), re.IGNORECASE)
        key = " ".join(words).casefold()
        matches = list(pattern.finditer(text))
        nth = used.get(key, 0)
        if nth >= len(matches):
            if not matches:
                raise AnswerError(f"The answer quotes {quote!r}, which is not in the text.")
            raise AnswerError(f"The answer quotes {quote!r} {nth + 1} times, but the text has it {len(matches)} time(s).")
        used[key] = nth + 1
        spans.append((matches[nth].start(), matches[nth].end()))
    return spans


# -- details ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)  # parsed once per config, not once per answer
def _interface(config: str) -> LabelInterface:
    # Imported on the first config read: the SDK's sample-data generators (faker, jsf) take half a
    # second to load, which a command that reads no config should not wait for.
    from label_studio_sdk.label_interface import LabelInterface

    try:
        return LabelInterface(config)
    except Exception as error:  # the SDK raises a variety of parser errors
        raise ConfigError(f"The labeling config cannot be read ({type(error).__name__}: {error}); fix it in the project's Settings → Labeling Interface.") from None


def _why_not_fillable(control, readable: dict[str, Input]) -> str | None:
    if control.tag not in OUTPUT_TAGS:
        return f"Prompter fills {', '.join(OUTPUT_TAGS)}, not {control.tag}"
    if str(control.attr.get("perRegion", "")).lower() == "true":
        return "it labels regions one by one (perRegion), which needs a region first"
    unread = [name for name in control.to_name if name not in readable]
    if unread:
        return f"it labels {', '.join(unread)}, which Prompter cannot read"
    if control.tag == "Labels" and any(readable[n].tag != "Text" for n in control.to_name):
        return "span labels are filled over Text only"
    return None


def _output(control) -> Output:
    attr = control.attr
    minimum = maximum = None
    if control.tag == "Number":
        minimum, maximum = _number(attr.get("min")), _number(attr.get("max"))
    elif control.tag == "Rating":
        minimum, maximum = 1, _number(attr.get("maxRating")) or 5
    labels = tuple(control.labels) if control.tag != "Pairwise" else ("left", "right")
    return Output(
        name=control.name,
        tag=control.tag,
        inputs=tuple(control.to_name),
        labels=labels,
        multiple=control.tag == "Choices" and attr.get("choice") == "multiple",
        minimum=minimum,
        maximum=maximum,
    )


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _entities_schema(output: Output) -> dict[str, Any]:
    return {
        "type": "array",
        "description": f"Every span of the text to label, quoted exactly as it appears, in order; labels: {', '.join(output.labels)}.",
        "items": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": list(output.labels)}},
            "required": ["text", "label"],
            "additionalProperties": False,
        },
    }


def _strict(node: Any) -> Any:
    """Adapt a JSON schema to strict structured outputs: anyOf for oneOf, every property required,
    no additional properties, and only the keywords every implementation accepts."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = copy.deepcopy(node)
    if "oneOf" in node:
        node["anyOf"] = node.pop("oneOf")
    strict = {k: _strict(v) if k in ("items", "anyOf") else v for k, v in node.items() if k in STRICT_KEYWORDS}
    if "properties" in strict:
        strict["properties"] = {k: _strict(v) for k, v in strict["properties"].items()}
        strict["required"] = list(strict["properties"])
        strict["additionalProperties"] = False
    return strict


def _regions_for(targets: Targets, output: Output, value: Any, data: dict[str, Any]) -> list[dict[str, Any]]:
    interface = _interface(targets.config)
    if output.minimum is not None and isinstance(value, (int, float)) and value < output.minimum:
        raise AnswerError(f"{output.name}: {value} is below the minimum {output.minimum:g}.")
    if output.maximum is not None and isinstance(value, (int, float)) and value > output.maximum:
        raise AnswerError(f"{output.name}: {value} is above the maximum {output.maximum:g}.")
    if output.multiple and len(set(value)) != len(value):
        raise AnswerError(f"{output.name}: the answer repeats a choice.")
    if output.tag == "Labels":
        return _span_regions(targets, output, value, data)
    if output.tag == "TextArea" and isinstance(value, str):
        value = [value]
    try:
        regions = [_as_dict(r) for r in interface.create_regions({output.name: value})]
    except ValueError as error:
        raise AnswerError(f"{output.name}: {error}") from None
    if output.tag == "Pairwise":
        # The SDK names the control itself as to_name; Label Studio 1.23 drops such predictions and
        # keeps those pointing at the first compared object.
        for region in regions:
            region["to_name"] = output.inputs[0]
    return regions


def _span_regions(targets: Targets, output: Output, entities: list[dict], data: dict[str, Any]) -> list[dict[str, Any]]:
    source = targets.input(output.inputs[0])
    text = data.get(source.field)
    if not isinstance(text, str):
        raise AnswerError(f"{output.name}: the task has no text in its field {source.field!r}.")
    try:
        spans = locate_spans(text, [e["text"] for e in entities])
    except AnswerError as error:
        raise AnswerError(f"{output.name}: {error}") from None
    return [
        {
            "from_name": output.name,
            "to_name": source.name,
            "type": "labels",
            "value": {"start": start, "end": end, "text": text[start:end], "labels": [entity["label"]]},
        }
        for entity, (start, end) in zip(entities, spans)
    ]


def _as_dict(region) -> dict[str, Any]:
    found = json.loads(region.to_json())
    found.pop("id", None)
    return found
