"""core.workbench against the real Label Studio and the stand-in model: picking tasks, trying a
draft on one task, saving checked versions, and images fetched from Label Studio."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from core import keys, messages, prompts
from core.labelstudio import FileRefused, LabelStudioError, NewPrediction, NewTask
from core.prompts import PromptError
from core.workbench import Workbench
from tests.conftest import CHOICES_CONFIG, choice
from tests.standin import Reply
from tests.test_labeling import ALL, DATA, EVERY_CONTROL, GOOD
from tests.test_messages import PNG

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"


@pytest.fixture
def bench(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(
        CHOICES_CONFIG,
        [
            NewTask({"text": "I love it"}, [(choice("Positive"), True)]),
            NewTask({"text": "No opinion", "channel": "chat"}),
            NewTask({"text": "Broken on arrival"}, [(choice("Negative"), True)]),
            NewTask({"text": "Fine, I guess", "note": "sent twice"}),
        ],
    )
    workbench = Workbench.open(project.id)
    workbench.ids = ids
    return workbench


def test_it_reads_the_config_and_the_fields_tasks_have(bench):
    assert [o.name for o in bench.targets.outputs] == ["sentiment"]
    assert bench.fields == ["text", "channel", "note"]
    assert bench.project.task_count == 4 and bench.project.ground_truth_count == 2


def test_next_ground_truth_task_wraps_around(bench):
    first, _, third, _ = bench.ids
    assert bench.task().id == first
    assert bench.task(after=first).id == third
    assert bench.task(after=third).id == first
    assert bench.task(bench.ids[1]).data == {"text": "No opinion", "channel": "chat"}
    with pytest.raises(LabelStudioError, match=f"Project {bench.project.id} has no task 999999"):
        bench.task(999999)


def test_try_shows_messages_answer_match_tokens_cost_and_latency(bench, standin):
    draft = bench.draft(template=TEMPLATE, system_message="You label reviews.", provider_key="team", model="gpt-4o-mini")
    standin.script(Reply.json({"sentiment": "Positive"}, usage=(1000, 10)))
    trial = bench.try_on(draft, bench.task())
    assert trial.ok and trial.correct is True
    assert trial.messages == [
        {"role": "system", "content": "You label reviews."},
        {"role": "user", "content": "Sentiment of: I love it\nAnswer with sentiment: one of: Positive, Negative, Neutral"},
    ]
    sent = standin.requests[-1]
    assert sent.messages == trial.messages and sent.body["temperature"] == 0
    assert sent.schema == trial.request["response_format"]["json_schema"]["schema"]
    assert trial.raw == '{"sentiment": "Positive"}' and trial.parsed == {"sentiment": "Positive"}
    assert trial.regions == choice("Positive")
    assert (trial.input_tokens, trial.output_tokens) == (1000, 10)
    assert trial.cost_usd == pytest.approx((1000 * 0.15 + 10 * 0.60) / 1e6)
    assert trial.latency_ms > 0


def test_a_wrong_answer_is_shown_against_the_ground_truth(bench, standin):
    draft = bench.draft(template=TEMPLATE, provider_key="team", model="gpt-4o")
    standin.script(Reply.json({"sentiment": "Neutral"}))
    trial = bench.try_on(draft, bench.task(bench.ids[2]))
    assert trial.ok and trial.correct is False and trial.matches == {"sentiment": False}
    assert trial.differs_in == ["sentiment"]
    assert trial.ground_truth == choice("Negative")


def test_a_model_the_server_does_not_have(bench, standin):
    trial = bench.try_on(bench.draft(template=TEMPLATE, provider_key="team", model="llama-9000"), bench.task())
    assert trial.error.startswith("The provider has no such model or deployment (404)")
    assert trial.cost_usd is None and trial.correct is False


def test_a_task_without_ground_truth_has_no_verdict(bench, standin):
    draft = bench.draft(template=TEMPLATE, provider_key="team", model="gpt-4o-mini")
    trial = bench.try_on(draft, bench.task(bench.ids[1]))
    assert trial.ok and trial.correct is None and trial.matches is None and trial.differs_in == []


@pytest.mark.parametrize(
    "reply, reason",
    [
        (Reply.text('{"sentiment": "Posi'), "The answer is not valid JSON"),
        (Reply.json({"sentiment": "Ecstatic"}), "The answer breaks the schema at sentiment: 'Ecstatic' is not one of"),
        (Reply.refusal("I cannot help with that."), "The model refused: I cannot help with that."),
        (Reply.truncated('{"senti'), "cut off at the output token limit"),
        (Reply.error(400, "model does not support json_schema"), "HTTP 400: model does not support json_schema"),
    ],
)
def test_a_bad_answer_is_a_failure_with_its_reason_and_the_raw_answer(bench, standin, reply, reason):
    draft = bench.draft(template=TEMPLATE, provider_key="team", model="gpt-4o-mini")
    standin.script(reply)
    trial = bench.try_on(draft, bench.task())
    assert not trial.ok and reason in trial.error
    assert trial.regions == [] and trial.correct is False
    if reply.kind in ("text", "json"):
        assert trial.raw == reply.content  # kept whole, never mapped to a closest label


def test_a_task_missing_a_field_fails_without_a_call(bench, standin):
    draft = bench.draft(template=TEMPLATE + "\nChannel: {channel}", provider_key="team", model="gpt-4o-mini")
    trial = bench.try_on(draft, bench.task(bench.ids[3]))
    assert trial.error == "The task has no field 'channel'; its fields are: text, note."
    assert standin.request_count == 0


def test_a_template_naming_no_output_says_which_outputs_there_are(bench):
    draft = bench.draft(template="Sentiment of: {text}\nAnswer with {labels:typo}")
    with pytest.raises(messages.TemplateError, match=r"^\{labels:typo\} names no output of this prompt; the outputs are: sentiment\.$"):
        bench.messages(draft, bench.task(bench.ids[0]))
    with pytest.raises(messages.TemplateError, match=r"the outputs are: none"):
        bench.messages(bench.draft(template="{text} {labels:sentiment}", controls=()), bench.task(bench.ids[0]))


def test_save_checks_the_draft_against_the_project(bench):
    good = bench.draft(template=TEMPLATE, provider_key="team", model="gpt-4o-mini", note="first")
    with pytest.raises(PromptError, match=r"\{review\} is not a field of this project's tasks; the fields are: channel, note, text"):
        bench.save_new_prompt("sentiment", bench.draft(template="Classify {review}", provider_key="team", model="m"))
    with pytest.raises(PromptError, match="provider_key: no key is named 'nobody'"):
        bench.save_new_prompt("sentiment", bench.draft(template=TEMPLATE, provider_key="nobody", model="m"))
    with pytest.raises(PromptError, match="template: is empty"):
        bench.save_new_prompt("sentiment", bench.draft(template="", provider_key="team", model="m"))
    v1 = bench.save_new_prompt("sentiment", good)
    v2 = bench.save_version("sentiment", bench.draft(template=TEMPLATE + "\nChannel: {channel}", provider_key="team", model="gpt-4o"))
    assert (v1.number, v2.number, v2.model, v2.note, v2.system_message) == (1, 2, "gpt-4o", None, None)
    assert prompts.versions("sentiment", bench.project.id) == [v1, v2]


def test_a_config_with_nothing_to_fill_says_so(use_labelstudio, make_project):
    project, _ = make_project('<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img"><Label value="Cat"/></RectangleLabels></View>')
    workbench = Workbench.open(project.id)
    assert workbench.targets.outputs == ()
    with pytest.raises(PromptError, match=r"has nothing Prompter can fill \(RectangleLabels 'box': Prompter fills Choices, .*, not RectangleLabels\)"):
        workbench.check(workbench.draft(template="{image}", provider_key="k", model="m"))


IMAGE_CONFIG = """
<View>
  <Image name="photo" value="$image"/>
  <Choices name="animal" toName="photo"><Choice value="Cat"/><Choice value="Dog"/></Choices>
</View>
"""


def test_an_image_uploaded_to_label_studio_is_sent_inline(use_labelstudio, make_project, standin):
    keys.add("vision", "openai-compatible", base_url=standin.base_url)
    project, _ = make_project(IMAGE_CONFIG)
    uploaded = httpx.post(
        f"{use_labelstudio.url}/api/projects/{project.id}/import",
        headers={"Authorization": f"Token {use_labelstudio.credentials.token}"},
        files={"file": ("cat.png", PNG, "image/png")},
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text
    workbench = Workbench.open(project.id)
    task = next(iter(workbench.client.tasks(project.id)))
    assert task.data["image"].startswith("/data/upload/")

    standin.script(Reply.json({"animal": "Cat"}))
    trial = workbench.try_on(workbench.draft(template="Which animal? {image}", provider_key="vision", model="gpt-4o-mini"), task)
    assert trial.ok, trial.error
    part = standin.requests[-1].messages[0]["content"][1]
    assert part["type"] == "image_url"
    header, encoded = part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64" and base64.b64decode(encoded) == PNG
    assert json.loads(trial.raw) == {"animal": "Cat"}

    # the same file by its full URL on Label Studio, or by a path written loosely, is the same file
    stored = task.data["image"]
    assert workbench.client.file(f"{use_labelstudio.url}{stored}") == (PNG, "image/png")
    assert workbench.client.file(stored.replace("/data/upload/", "/data/upload/./")) == (PNG, "image/png")
    # a path that would lead the token to the API is never asked for, from a task or directly
    with pytest.raises(FileRefused, match="its path has a '..' segment"):
        workbench.client.file("/data/upload/../../api/projects")
    (tricky,) = workbench.client.import_tasks(project.id, [NewTask({"image": "/data/upload/%2e%2e/%2e%2e/api/users"})])
    calls_before = standin.request_count
    refused = workbench.try_on(workbench.draft(template="Which animal? {image}", provider_key="vision", model="gpt-4o-mini"), workbench.task(tricky))
    assert refused.error.startswith("The image '/data/upload/%2e%2e/%2e%2e/api/users' in field 'image' is refused: its path has a '..' segment")
    assert standin.request_count == calls_before  # nothing was sent to the model either


@pytest.mark.parametrize("control", ALL)
def test_each_control_type_from_a_model_answer_round_trips_through_label_studio(control, use_labelstudio, make_project, standin):
    """A scripted model answer becomes regions that the real Label Studio accepts and reads back equal."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, (task_id,) = make_project(EVERY_CONTROL, [NewTask(DATA)], title=f"round trip {control}")
    workbench = Workbench.open(project.id)
    standin.script(Reply.json({control: GOOD[control]}))
    draft = workbench.draft(template="{text} / {other}: {labels}", controls=[control], provider_key="team", model="gpt-4o-mini")
    trial = workbench.try_on(draft, workbench.task(task_id))
    assert trial.ok, trial.error
    assert standin.requests[-1].schema["required"] == [control]

    created = workbench.client.import_predictions(project.id, [NewPrediction(task_id, trial.regions, f"check@{control}")])
    assert created == 1  # Label Studio drops a prediction it finds invalid, and says 0
    (stored,) = workbench.client.predictions(project.id)
    assert stored.task_id == task_id and stored.model_version == f"check@{control}"
    assert stored.result == trial.regions
