"""core.prompts: versions numbered and immutable, templates checked against the project."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core import keys, labeling, prompts, store
from tests.test_labeling import EVERY_CONTROL

V1 = dict(template="Classify: {text}\nLabels: {labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")


def test_versions_are_numbered_and_keep_every_setting():
    first = prompts.create(7, "intent", system_message="Be terse.", note="baseline", **V1)
    assert (first.prompt, first.number, first.model_version, first.temperature) == ("intent", 1, "intent@v1", 0.0)
    second = prompts.new_version("intent", template="Decide: {text}", note="shorter")
    third = prompts.new_version("intent", model="gpt-4o", temperature=0.3)
    assert [v.number for v in prompts.versions("intent")] == [1, 2, 3]
    assert second.system_message == "Be terse." and second.model == "gpt-4o-mini"
    assert (third.template, third.model, third.temperature, third.note) == ("Decide: {text}", "gpt-4o", 0.3, None)
    assert second.note == "shorter"
    assert prompts.version("intent", 1) == first
    assert prompts.version("intent").number == 3
    assert [v.prompt for v in prompts.latest_versions(7)] == ["intent"]


def test_a_saved_version_cannot_be_changed():
    prompts.create(7, "intent", **V1)
    with pytest.raises(IntegrityError, match="cannot change"):
        with store.writing() as s:
            row = s.exec(select(store.PromptVersion)).one()
            row.template = "sneaky edit {text}"
            s.add(row)
    assert prompts.version("intent", 1).template == V1["template"]


def test_names_are_unique_within_a_project():
    prompts.create(7, "intent", **V1)
    prompts.create(8, "intent", **V1)  # another project may reuse the name
    with pytest.raises(prompts.PromptError, match="name: project 7 already has a prompt named 'intent'"):
        prompts.create(7, "intent", **V1)
    with pytest.raises(prompts.PromptError, match="say which with --project"):
        prompts.versions("intent")
    assert prompts.versions("intent", project_id=8)[0].project_id == 8


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"template": ""}, "template: is required"),
        ({"model": ""}, "model: is required"),
        ({"model": "   "}, "model: is required"),
        ({"provider_key": " "}, "provider_key: is required"),
        ({"temperature": 3}, "temperature: 3 is outside 0 to 2"),
        ({"max_output_tokens": 0}, "max_output_tokens: must be at least 1"),
    ],
)
def test_bad_version_settings_name_the_field(changes, message):
    with pytest.raises(prompts.PromptError, match=message):
        prompts.create(7, "p", **(V1 | changes))


def test_a_version_says_why_it_cannot_call_its_model(monkeypatch):
    keys.add("team", "openai-compatible", base_url="http://127.0.0.1:9/v1")
    v1 = prompts.create(7, "intent", **V1)
    assert prompts.why_unusable(v1) is None

    keys.update("team", name="team-2")  # renamed: versions still name 'team'
    assert prompts.why_unusable(v1) == (
        "intent@v1 uses the key 'team', which no longer exists; add it again on the Keys page, or save a new version with another key."
    )
    keys.add("team", "openai", api_key_env="TEAM_KEY")
    monkeypatch.delenv("TEAM_KEY", raising=False)
    assert prompts.why_unusable(v1) == (
        "intent@v1 uses the key 'team', which cannot be used now: the environment variable TEAM_KEY is not set; "
        "fix it on the Keys page, or save a new version with another key."
    )
    no_model = dataclasses.replace(v1, number=2, model="")  # as an older release could save it
    assert prompts.why_unusable(no_model) == "intent@v2 names no model; save a new version with a model on the Prompts page."


def test_diff_shows_what_changed():
    prompts.create(7, "intent", **V1)
    prompts.new_version("intent", template="Decide: {text}\nLabels: {labels}", model="gpt-4o")
    a, b = prompts.versions("intent")
    shown = prompts.diff(a, b)
    assert shown.settings == [("Model", "gpt-4o-mini", "gpt-4o")]
    assert shown.template == ["- Classify: {text}", "+ Decide: {text}", "  Labels: {labels}"]  # no hunk headers; context marked
    assert shown.system_message == [] and not shown.same


def test_diff_reads_as_words_not_python_values():
    prompts.create(7, "intent", **V1)
    prompts.new_version("intent", controls=["sentiment", "topic"], max_output_tokens=256, temperature=0.7, note="longer answers")
    a, b = prompts.versions("intent")
    assert prompts.diff(a, b).settings == [
        ("Temperature", "0", "0.7"),
        ("Max output tokens", "the model's default", "256"),
        ("Outputs", "sentiment", "sentiment, topic"),
        ("Note", "none", "longer answers"),
    ]
    assert "None" not in prompts.diff(a, b).text() and "(" not in prompts.diff(a, b).text()
    assert prompts.diff(a, a).same


class TestTemplate:
    targets = labeling.read(EVERY_CONTROL)

    def check(self, template, controls=("sentiment",), fields=("text", "other", "source")):
        prompts.check_template(template, self.targets, controls, fields)

    def test_fields_and_labels_variables(self):
        self.check("Text: {text}\nFrom: {source}\nOne of {labels} / {labels:sentiment}\nJSON like {{\"a\": 1}}")
        assert prompts.variables("{text} {labels:sentiment} {{literal}}") == [("text", None), ("labels", "sentiment")]

    def test_an_unknown_field_lists_the_fields_there_are(self):
        with pytest.raises(prompts.PromptError, match=r"\{body\} is not a field of this project's tasks; the fields are: other, source, text"):
            self.check("Classify {body}")

    def test_labels_of_an_output_the_prompt_does_not_fill(self):
        with pytest.raises(prompts.PromptError, match=r"\{labels:topics\} names no output of this prompt; the outputs are: sentiment\."):
            self.check("{text} {labels:topics}")

    def test_empty_and_field_less_templates(self):
        with pytest.raises(prompts.PromptError, match="template: is empty"):
            self.check("   ")
        with pytest.raises(prompts.PromptError, match="inserts no task field"):
            self.check("Classify it: {labels}")


@pytest.mark.parametrize(
    "template, refusal",
    [
        ("Classify {text", "template: line 1, column 10: '{text' is not closed; write {text} to insert a field, or '{{' for a literal brace."),
        ("Classify {text}}", "template: line 1, column 16: a '}' closes nothing; write '}}' for a literal brace."),
        ("Classify {text:>10}", "template: line 1, column 10: {text:>10}: format specifications are not supported; write {text} to insert the field as it is."),
        ("Classify {text!r}", "template: line 1, column 10: {text!r}: conversions such as !r are not supported; write {text}."),
        ("Classify { text }", "template: line 1, column 10: { text } has spaces inside the braces; write {text}."),
        ("{text} {labels:intent:x}", "template: line 1, column 8: {labels:intent:x} is not a labels variable; write {labels} for every output, or {labels:NAME} with one output's name."),
        ("Classify {} {text}", "template: line 1, column 10: {} inserts nothing; name a field, such as {text}, or write '{{}}' for literal braces."),
        ("Read this:\n  {text", "template: line 2, column 3: '{text' is not closed; write {text} to insert a field, or '{{' for a literal brace."),
    ],
)
def test_a_template_with_a_stray_or_malformed_brace_is_refused_at_its_place_with_the_fix(template, refusal):
    with pytest.raises(prompts.PromptError) as refused:
        prompts.pieces(template)
    assert str(refused.value) == refusal


def test_doubled_braces_are_literal_and_variables_are_found_around_them():
    assert prompts.pieces("Answer {{\"label\": ...}} for {text}}}") == [('Answer {"label": ...} for ', "text", None), ("}", None, None)]
    assert prompts.variables("{text} then {labels:intent}") == [("text", None), ("labels", "intent")]
