"""core.labeling: reading configs, the strict schema, spans, and answers -> regions."""

from __future__ import annotations

import json

import jsonschema
import pytest

from core import labeling
from core.labeling import STRICT_KEYWORDS

EVERY_CONTROL = """
<View>
  <Text name="text" value="$text"/>
  <Text name="other" value="$other"/>
  <Choices name="sentiment" toName="text" choice="single"><Choice value="Positive"/><Choice value="Negative"/></Choices>
  <Choices name="topics" toName="text" choice="multiple"><Choice value="Price"/><Choice value="Service"/><Choice value="Speed"/></Choices>
  <Labels name="entities" toName="text"><Label value="Person"/><Label value="Place"/></Labels>
  <TextArea name="summary" toName="text"/>
  <Number name="stars" toName="text" min="0" max="10"/>
  <Rating name="quality" toName="text" maxRating="5"/>
  <Pairwise name="better" toName="text,other"/>
  <Taxonomy name="category" toName="text"><Choice value="Food"><Choice value="Fruit"/><Choice value="Bread"/></Choice><Choice value="Drink"/></Taxonomy>
</View>
"""
ALL = ("sentiment", "topics", "entities", "summary", "stars", "quality", "better", "category")
DATA = {"text": "Anna flew to Paris, then Anna drove home.", "other": "Second text"}
GOOD = {
    "sentiment": "Positive",
    "topics": ["Price", "Speed"],
    "entities": [{"text": "Anna", "label": "Person"}, {"text": "paris", "label": "Place"}, {"text": "Anna", "label": "Person"}],
    "summary": "A trip.",
    "stars": 7,
    "quality": 4,
    "better": "left",
    "category": [["Food", "Fruit"]],
}


def test_read_finds_inputs_outputs_and_says_why_others_are_skipped():
    config = EVERY_CONTROL.replace(
        "</View>",
        '<Image name="photo" value="$image"/><RectangleLabels name="boxes" toName="photo"><Label value="Cat"/></RectangleLabels>'
        '<HyperText name="page" value="$html"/><Labels name="page_spans" toName="page"><Label value="X"/></Labels>'
        '<Choices name="per_span" toName="text" perRegion="true"><Choice value="Sure"/></Choices>'
        '<Audio name="sound" value="$audio"/></View>',
    )
    targets = labeling.read(config)
    assert [(i.name, i.tag, i.field) for i in targets.inputs] == [
        ("text", "Text", "text"), ("other", "Text", "other"), ("photo", "Image", "image"), ("page", "HyperText", "html"),
    ]
    assert tuple(o.name for o in targets.outputs) == ALL
    assert targets.output("topics").multiple and not targets.output("sentiment").multiple
    assert targets.output("entities").labels == ("Person", "Place")
    assert (targets.output("stars").minimum, targets.output("stars").maximum) == (0, 10)
    assert targets.output("quality").maximum == 5 and targets.output("better").labels == ("left", "right")
    skipped = {s.name: s.reason for s in targets.skipped}
    assert "not RectangleLabels" in skipped["boxes"]
    assert skipped["page_spans"] == "span labels are filled over Text only"
    assert "perRegion" in skipped["per_span"]
    assert "not Audio" in skipped["sound"]


def test_a_broken_config_is_a_clear_error():
    with pytest.raises(labeling.ConfigError, match="cannot be read"):
        labeling.read("<View><Choices name=")


def _walk(node, path="$"):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_the_schema_sent_is_strict_for_every_control_type():
    targets = labeling.read(EVERY_CONTROL)
    for controls in [(name,) for name in ALL] + [ALL]:
        sent = labeling.schema(targets, controls)
        jsonschema.Draft202012Validator.check_schema(sent)
        for path, node in _walk(sent):
            if not isinstance(node, dict) or path.endswith(".properties"):
                continue
            assert set(node) <= STRICT_KEYWORDS, (path, set(node) - STRICT_KEYWORDS)
            if node.get("type") == "object":
                assert node["additionalProperties"] is False, path
                assert sorted(node["required"]) == sorted(node["properties"]), path
        jsonschema.validate({k: GOOD[k] for k in controls}, sent)


def test_labels_ask_for_quoted_entities():
    sent = labeling.schema(labeling.read(EVERY_CONTROL), ["entities"])
    item = sent["properties"]["entities"]["items"]
    assert item["properties"]["label"]["enum"] == ["Person", "Place"]
    assert item["required"] == ["text", "label"]


def test_every_control_type_becomes_its_regions():
    targets = labeling.read(EVERY_CONTROL)
    answer = labeling.to_regions(targets, ALL, json.dumps(GOOD), DATA)
    assert answer.ok, answer.error
    by_control = {}
    for region in answer.regions:
        by_control.setdefault(region["from_name"], []).append(region)
    assert by_control["sentiment"][0]["value"] == {"choices": ["Positive"]}
    assert by_control["topics"][0]["value"] == {"choices": ["Price", "Speed"]}
    assert [r["value"] for r in by_control["entities"]] == [
        {"start": 0, "end": 4, "text": "Anna", "labels": ["Person"]},
        {"start": 13, "end": 18, "text": "Paris", "labels": ["Place"]},
        {"start": 25, "end": 29, "text": "Anna", "labels": ["Person"]},
    ]
    assert by_control["summary"][0]["value"] == {"text": ["A trip."]}
    assert by_control["stars"][0]["value"] == {"number": 7}
    assert by_control["quality"][0]["value"] == {"rating": 4}
    assert by_control["better"][0]["value"] == {"selected": "left"}
    assert by_control["category"][0]["value"] == {"taxonomy": [["Food", "Fruit"]]}


@pytest.mark.parametrize(
    "raw, controls, reason",
    [
        ('{"sentiment": "Posi', ["sentiment"], "not valid JSON"),
        ("", ["sentiment"], "empty answer"),
        ('{"sentiment": "Neutral"}', ["sentiment"], "breaks the schema at sentiment: 'Neutral' is not one of"),
        ('{"sentiment": "Positive", "extra": 1}', ["sentiment"], "breaks the schema at the top level"),
        ("{}", ["sentiment"], "'sentiment' is a required property"),
        ('{"entities": [{"text": "Berlin", "label": "Place"}]}', ["entities"], "quotes 'Berlin', which is not in the text"),
        ('{"entities": [{"text": "Paris", "label": "Planet"}]}', ["entities"], "'Planet' is not one of"),
        ('{"stars": 11}', ["stars"], "above the maximum 10"),
        ('{"quality": 0}', ["quality"], "below the minimum 1"),
        ('{"topics": ["Price", "Price"]}', ["topics"], "repeats a choice"),
        ('{"category": [["Food", "Pizza"]]}', ["category"], "'Pizza' is not one of"),
    ],
)
def test_answers_outside_the_config_fail_with_their_reason(raw, controls, reason):
    answer = labeling.to_regions(labeling.read(EVERY_CONTROL), controls, raw, DATA)
    assert not answer.ok and answer.regions == []
    assert reason in answer.error


class TestLocateSpans:
    def test_repeated_quotes_take_successive_occurrences(self):
        text = "the cat saw the cat"
        assert labeling.locate_spans(text, ["cat", "cat"]) == [(4, 7), (16, 19)]
        with pytest.raises(labeling.AnswerError, match="3 times, but the text has it 2"):
            labeling.locate_spans(text, ["cat", "cat", "cat"])

    def test_overlapping_candidates_are_found_each_in_full(self):
        text = "She moved to New York City from York."
        assert labeling.locate_spans(text, ["New York City", "York"]) == [(13, 26), (17, 21)]
        assert labeling.locate_spans(text, ["New York"]) == [(13, 21)]

    def test_case_and_whitespace_may_differ(self):
        text = "Order   #4821 was\nlate"
        (start, end), = labeling.locate_spans(text, ["order #4821 WAS late"])
        assert text[start:end] == "Order   #4821 was\nlate"

    def test_offsets_count_characters_after_unicode_and_emoji(self):
        text = "👨🏻‍🚒 Zoë drives to Köln 🚒 with Ånna"
        spans = labeling.locate_spans(text, ["Köln", "Ånna"])
        assert [text[s:e] for s, e in spans] == ["Köln", "Ånna"]
        assert spans[0] == (text.index("Köln"), text.index("Köln") + 4)

    def test_a_quote_not_in_the_text_fails(self):
        with pytest.raises(labeling.AnswerError, match="'Rome', which is not in the text"):
            labeling.locate_spans("Paris and Lyon", ["Paris", "Rome"])
