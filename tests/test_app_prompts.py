"""The Prompts page through AppTest, on the real Label Studio and the stand-in model: pick a project,
write a template, preview it, try it on a task, save versions and compare them."""

from __future__ import annotations

import pytest

from core import keys, prompts
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import open_page, picker, table
from tests.standin import Reply

TEMPLATE = "Review: {text}\nAnswer with {labels}"




@pytest.fixture
def project(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(
        CHOICES_CONFIG,
        [
            NewTask({"text": "Great value"}, [(choice("Positive"), True)]),
            NewTask({"text": "Arrived broken", "channel": "email"}, [(choice("Negative"), True)]),
            NewTask({"text": "It is a lamp"}),
        ],
        title="Prompts page check",
    )
    return project, ids






def test_the_page_shows_what_the_config_asks_for_and_a_working_starter(project):
    (proj, ids) = project
    app = open_page("views/2_Prompts.py", project_key="project", project_id=proj.id)
    assert f"Prompts page check (#{proj.id}) · 3 tasks · 2 ground truth" in app.selectbox(key="project").format_func(proj.id)
    inputs = table(app, "name", "tag", "field")
    outputs = table(app, "name", "tag", "accepts")
    assert inputs.to_dict("records") == [{"name": "text", "tag": "Text", "field": "text"}]
    assert outputs.to_dict("records") == [{"name": "sentiment", "tag": "Choices", "accepts": "one of: Positive, Negative, Neutral"}]
    assert [b.label for b in app.button if b.key.startswith("var_")] == ["{text}", "{channel}", "{labels}", "{labels:sentiment}"]
    # the starter template previews on the first ground-truth task
    (preview,) = [c.value for c in app.code]
    assert "Text:\nGreat value" in preview and "sentiment: one of: Positive, Negative, Neutral" in preview


def test_write_try_save_and_compare_versions(project, standin):
    (proj, ids) = project
    app = open_page("views/2_Prompts.py", project_key="project", project_id=proj.id)
    app.text_input(key="ed_name").input("sentiment")
    app.text_area(key="ed_template").input(TEMPLATE)
    app.selectbox(key="ed_model").set_value("gpt-4o-mini")
    app.button(key="var_{channel}").click().run()  # inserts at the end of the template
    assert app.text_area(key="ed_template").value == TEMPLATE + "{channel}"
    app.text_area(key="ed_template").input(TEMPLATE).run()
    assert app.code[0].value == "[user]\nReview: Great value\nAnswer with sentiment: one of: Positive, Negative, Neutral"

    standin.script(Reply.json({"sentiment": "Positive"}, usage=(1200, 8), confidence={"sentiment": 0.87}))
    app.button(key="try").click().run()
    assert not app.exception, app.exception
    assert [s.value for s in app.success] == ["Matches the ground truth."]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"Input tokens": "1200", "Output tokens": "8", "Cost": f"${(1200 * 0.15 + 8 * 0.60) / 1e6:.6f}", "Latency": metrics["Latency"], "Confidence": "0.87"}
    assert table(app, "output", "answer", "ground truth").to_dict("records") == [{"output": "sentiment", "answer": "Positive", "ground truth": "Positive"}]
    assert standin.requests[-1].messages == [{"role": "user", "content": "Review: Great value\nAnswer with sentiment: one of: Positive, Negative, Neutral"}]

    app.button(key="save").click().run()
    assert not app.exception, app.exception
    assert "Saved sentiment v1 (sentiment@v1)." in [s.value for s in app.success]
    assert picker(app, "Prompt").value == "sentiment"
    assert prompts.version("sentiment", 1, proj.id).template == TEMPLATE

    # the next ground-truth task; a wrong answer says where it differs
    app.button(key="next_gt").click().run()
    assert app.number_input(key="task_id").value == ids[1]
    standin.script(Reply.json({"sentiment": "Neutral"}))
    app.button(key="try").click().run()
    assert [w.value for w in app.warning] == ["Differs from the ground truth in: sentiment."]

    app.text_area(key="ed_template").input(TEMPLATE + "\nChannel: {channel}")
    app.text_input(key="ed_note").input("add the channel").run()
    assert "Unsaved changes to v1: template." in [c.value for c in app.caption]
    app.button(key="save").click().run()
    assert "Saved sentiment v2 (sentiment@v2)." in [s.value for s in app.success]
    assert [v.note for v in prompts.versions("sentiment", proj.id)] == [None, "add the channel"]
    history = table(app, "version", "saved", "model", "key", "temperature", "outputs", "note")
    assert list(history["version"]) == ["v2", "v1"]
    assert table(app, "setting", "v1", "v2").to_dict("records") == [{"setting": "Note", "v1": "none", "v2": "add the channel"}]
    diff = app.code[-1].value
    assert "+ Channel: {channel}" in diff and "@@" not in diff


def test_a_bad_draft_is_refused_with_the_fix_and_nothing_is_saved(project, standin):
    (proj, ids) = project
    app = open_page("views/2_Prompts.py", project_key="project", project_id=proj.id)
    app.text_input(key="ed_name").input("sentiment")
    app.text_area(key="ed_template").input("Classify {review}")
    app.selectbox(key="ed_model").set_value("gpt-4o-mini").run()
    assert app.error[0].value.startswith("This task cannot be put into the prompt: The task has no field 'review'")
    app.button(key="save").click().run()
    assert "Not saved: template: {review} is not a field of this project's tasks; the fields are: channel, text." in [e.value for e in app.error]
    app.button(key="try").click().run()
    assert any(e.value.startswith("Cannot try yet: template: {review}") for e in app.error)
    assert prompts.latest_versions(proj.id) == [] and standin.request_count == 0


def test_a_failed_answer_shows_its_reason_and_the_raw_text(project, standin):
    (proj, ids) = project
    app = open_page("views/2_Prompts.py", project_key="project", project_id=proj.id)
    app.text_area(key="ed_template").input(TEMPLATE)
    app.selectbox(key="ed_model").set_value("gpt-4o-mini").run()
    standin.script(Reply.json({"sentiment": "Ecstatic"}))
    app.button(key="try").click().run()
    assert app.error[0].value.startswith("Failed: The answer breaks the schema at sentiment: 'Ecstatic' is not one of")
    assert app.code[1].value == '{"sentiment": "Ecstatic"}'


def test_a_project_with_nothing_to_fill_says_why(use_labelstudio, make_project):
    project, _ = make_project('<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img"><Label value="Cat"/></RectangleLabels></View>')
    app = open_page("views/2_Prompts.py", project_key="project", project_id=project.id)
    assert "has nothing Prompter can fill (RectangleLabels 'box'" in app.error[0].value
    assert table(app, "name", "tag", "why").to_dict("records")[0]["why"] == "Prompter fills Choices, Labels, TextArea, Number, Rating, Pairwise, Taxonomy, not RectangleLabels"


def test_few_shot_examples_are_chosen_shown_in_the_messages_and_kept_in_the_version(use_labelstudio, make_project, standin):
    from core import connection
    from core.evaluation import split

    keys.add("team", "openai-compatible", base_url=standin.base_url)
    texts = {"Great value": "Positive", "Love it": "Positive", "Arrived broken": "Negative", "Awful": "Negative", "A lamp": "Neutral", "Blue": "Neutral"}
    proj, ids = make_project(CHOICES_CONFIG, [NewTask({"text": t}, [(choice(label), True)]) for t, label in texts.items()], title="Few-shot page check")
    text_of = dict(zip(ids, texts))
    app = open_page("views/2_Prompts.py", project_key="project", project_id=proj.id)
    app.selectbox(key="ed_examples_how").set_value("per-class").run()
    assert any("has none yet: split it on the Evaluate page" in w.value for w in app.warning)
    app.button(key="save").click().run()
    assert prompts.latest_versions(proj.id) == []  # not saved without the examples asked for

    made = split.make(connection.client(), proj.id, examples=3, test_share=0.34, seed=0)  # one example per class
    app.text_input(key="ed_name").input("shots")
    app.text_area(key="ed_template").input(TEMPLATE)
    app.selectbox(key="ed_model").set_value("gpt-4o-mini")
    app.number_input(key="ed_examples_k").set_value(3)
    app.selectbox(key="ed_examples_how").set_value("random").run()
    app.selectbox(key="ed_examples_how").set_value("per-class")
    app.number_input(key="task_id").set_value(made.parts["test"][0]).run()  # preview a task that is no example
    assert not app.warning, [w.value for w in app.warning]
    examples = made.parts["examples"]
    by_class = sorted(examples, key=lambda t: ["Positive", "Negative", "Neutral"].index(texts[text_of[t]]))
    preview = app.code[0].value
    for task_id in by_class:  # each example: its question, then its ground truth as the answer
        assert f"[user]\nReview: {text_of[task_id]}\n" in preview and f'[assistant]\n{{"sentiment": "{texts[text_of[task_id]]}"}}' in preview
    assert preview.index(text_of[by_class[0]]) < preview.index(text_of[by_class[1]]) < preview.index(text_of[by_class[2]])

    app.button(key="save").click().run()
    assert not app.exception, app.exception
    saved = prompts.version("shots", 1, proj.id)
    assert saved.examples["how"] == "per-class" and saved.examples["ids"] == by_class
    # reopened, the editor holds the saved examples, unchanged
    app.run()
    assert app.selectbox(key="ed_examples_how").value == "per-class"
    assert not any("Unsaved changes" in c.value for c in app.caption)


def test_similar_examples_can_be_ranked_by_an_embeddings_model_of_a_saved_key(use_labelstudio, make_project, standin):
    from core import connection
    from core.evaluation import split

    keys.add("team", "openai-compatible", base_url=standin.base_url)
    texts = {"Great value": "Positive", "Love it": "Positive", "Arrived broken": "Negative", "Awful": "Negative", "A lamp": "Neutral", "Blue": "Neutral"}
    proj, ids = make_project(CHOICES_CONFIG, [NewTask({"text": t}, [(choice(label), True)]) for t, label in texts.items()], title="Embeddings page check")
    split.make(connection.client(), proj.id, examples=3, test_share=0.34, seed=0)
    app = open_page("views/2_Prompts.py", project_key="project", project_id=proj.id)
    app.text_input(key="ed_name").input("near")
    app.text_area(key="ed_template").input(TEMPLATE)
    app.selectbox(key="ed_model").set_value("gpt-4o-mini")
    app.selectbox(key="ed_examples_how").set_value("similar").run()
    app.number_input(key="ed_examples_k").set_value(2).run()
    assert [c.value for c in app.caption if c.value.startswith("Chosen:")] == ["Chosen: the 2 most similar to each task (TF-IDF) of 3 examples. The messages below show them."]
    assert standin.embedding_requests == []  # TF-IDF needs no key
    app.radio(key="ed_examples_by").set_value("an embeddings model").run()
    app.selectbox(key="ed_examples_key").set_value("team")
    app.text_input(key="ed_examples_model").input("text-embedding-3-small").run()
    assert not app.exception, app.exception
    assert "Chosen: the 2 most similar to each task (embeddings: team · text-embedding-3-small) of 3 examples. The messages below show them." in [c.value for c in app.caption]
    assert len(standin.embedding_requests) >= 1 and standin.embedding_requests[0]["model"] == "text-embedding-3-small"
    app.button(key="save").click().run()
    assert not app.exception, app.exception
    assert prompts.version("near", 1, proj.id).examples["embeddings"] == {"key": "team", "model": "text-embedding-3-small"}
