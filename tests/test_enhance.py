"""Enhance: the teacher model's request holds the version's errors on the development part and nothing
of the examples or test parts (the stand-in logs every request); the proposal is a version only once
saved."""

from __future__ import annotations

import json

import pytest

from core import audit, connection, enhance, keys, prompts, runs
from core.evaluation import evaluate, split, subsets
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.standin import Reply
from tests.test_cli import _cli

LABELS = ["Positive", "Negative", "Neutral"]
TEXTS = {f"[review {n:02d}]": LABELS[n % 3] for n in range(15)}
TEMPLATE = "Review: {text}\nAnswer with {labels}"
REVISED = "Review: {text}\nA review that only states facts is Neutral.\nAnswer with {labels}"


def is_teacher(request) -> bool:
    return "rationale" in (request.schema or {}).get("properties", {})


def answer(request):
    if is_teacher(request):
        return Reply.json({"system_message": "You label product reviews.", "template": REVISED, "rationale": "Neutral reviews were called Positive."})
    return Reply.json({"sentiment": "Positive"})  # right on a third of the tasks


@pytest.fixture
def evaluated(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(answer)
    found, ids = make_project(CHOICES_CONFIG, [NewTask({"text": t}, [(choice(label), True)]) for t, label in TEXTS.items()], title="enhance check")
    client = connection.client()
    made = split.make(client, found.id, examples=3, test_share=0.4, seed=2)
    v1 = prompts.create(found.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    # evaluated on every ground-truth task: its errors are in all three parts
    run = runs.execute(evaluate.start(v1, subsets.choose(client, found.id, "ground-truth"), client.label_config(found.id)).id)
    return found, dict(zip(ids, TEXTS)), made, v1, run


def test_the_teacher_sees_the_development_errors_and_nothing_of_the_test_or_examples(evaluated, standin):
    found, text_of, made, v1, run = evaluated
    wrong = {t for t, text in text_of.items() if TEXTS[text] != "Positive"}
    assert wrong & set(made.parts["test"]) and wrong & set(made.parts["examples"])  # there were errors to leak
    before = standin.request_count
    proposal = enhance.propose(v1, run.id, teacher_key="team", teacher_model="gpt-4o")
    (teacher,) = standin.requests[before:]
    assert is_teacher(teacher) and teacher.model == "gpt-4o"
    sent = teacher.all_text
    development_errors = sorted(wrong & set(made.parts["development"]))
    assert proposal.errors_sent == development_errors and proposal.errors_left_out == 0
    for task_id in development_errors:
        assert text_of[task_id] in sent
    for task_id in made.parts["test"] + made.parts["examples"]:
        assert text_of[task_id] not in sent, f"task {task_id} of another part reached the teacher"
    brief = json.loads(teacher.messages[-1]["content"])
    assert brief["template"] == TEMPLATE and brief["outputs"] == "sentiment: one of: Positive, Negative, Neutral"
    assert {"answer": "Positive", "right answer": "Neutral"} in [{k: e[k] for k in ("answer", "right answer")} for e in brief["errors"]]

    assert (proposal.template, proposal.system_message, proposal.rationale) == (REVISED, "You label product reviews.", "Neutral reviews were called Positive.")
    assert [v.number for v in prompts.versions("sentiment", found.id)] == [1]  # a proposal is not a version
    (event,) = [e for e in audit.events() if e.action == "prompt enhanced"]
    assert (event.actor, event.target, event.detail["errors"]) == ("local", "sentiment@v1", len(development_errors))


def test_the_error_cap_keeps_the_request_short(evaluated, standin):
    found, text_of, made, v1, run = evaluated
    proposal = enhance.propose(v1, run.id, teacher_key="team", teacher_model="gpt-4o", max_error_tokens=1)
    assert len(proposal.errors_sent) == 1 and proposal.errors_left_out == len(enhance.development_errors(run.id)) - 1


def test_without_development_errors_there_is_nothing_to_learn_from(evaluated, standin):
    found, text_of, made, v1, run = evaluated
    client = connection.client()
    on_test = runs.execute(evaluate.start(v1, subsets.choose(client, found.id, "test"), client.label_config(found.id)).id)
    with pytest.raises(enhance.EnhanceError, match="no wrong answer on the development part"):
        enhance.propose(v1, on_test.id, teacher_key="team", teacher_model="gpt-4o")


def test_the_command_prints_the_proposal_and_saves_it_only_when_asked(evaluated, standin):
    found, text_of, made, v1, run = evaluated
    shown = _cli("prompts", "enhance", "sentiment", "--teacher-key", "team", "--teacher-model", "gpt-4o")
    assert shown.returncode == 0, shown.stderr
    assert "Why: Neutral reviews were called Positive." in shown.stdout and "+ A review that only states facts is Neutral." in shown.stdout
    assert "Nothing saved" in shown.stdout and [v.number for v in prompts.versions("sentiment", found.id)] == [1]
    saved = _cli("prompts", "enhance", "sentiment", "--run", str(run.id), "--teacher-key", "team", "--teacher-model", "gpt-4o", "--save", "--json")
    assert saved.returncode == 0, saved.stderr
    assert json.loads(saved.stdout)["saved_version"] == 2
    v2 = prompts.version("sentiment", 2, found.id)
    assert (v2.template, v2.system_message) == (REVISED, "You label product reviews.")
    assert v2.note.startswith("Enhanced from v1 by team · gpt-4o: Neutral reviews")


def test_the_evaluate_page_shows_the_proposal_lets_it_be_edited_and_saves_it(evaluated, standin):
    from tests.helpers import open_page

    found, text_of, made, v1, run = evaluated
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=found.id)
    app.text_input(key="ev_teacher_model").input("gpt-4o")
    app.button(key="ev_enhance").click().run()
    assert not app.exception, app.exception
    assert "**Why:** Neutral reviews were called Positive." in [i.value for i in app.info]
    assert app.text_area(key="ev_proposed_template").value == REVISED
    assert any("+ A review that only states facts is Neutral." in c.value for c in app.code)
    assert [v.number for v in prompts.versions("sentiment", found.id)] == [1]

    app.text_area(key="ev_proposed_template").input(REVISED + "\nBe brief.")
    app.button(key="ev_save_proposal").click().run()
    assert not app.exception, app.exception
    v2 = prompts.version("sentiment", 2, found.id)
    assert v2.template == REVISED + "\nBe brief." and v2.system_message == "You label product reviews."
    assert "Saved sentiment@v2: evaluate it on the test part to see the gain." in [s.value for s in app.success]


def knows_neutral(request):
    """The task model gets Neutral reviews right only once told how to tell them."""
    if is_teacher(request):
        return answer(request)
    label = next(label for text, label in TEXTS.items() if text in request.user_text)
    knows = label == "Positive" or (label == "Neutral" and "only states facts is Neutral" in request.all_text)
    return Reply.json({"sentiment": label if knows else "Positive"})


def test_enhance_and_evaluate_measures_the_proposal_on_the_test_part_and_saves_nothing(evaluated, standin, ls_client):
    found, text_of, made, v1, run = evaluated
    standin.respond_with(knows_neutral)
    proposal = enhance.propose(v1, run.id, teacher_key="team", teacher_model="gpt-4o")
    base, tried = enhance.check_on_test(proposal)
    base, tried = runs.execute(base.id), runs.execute(tried.id)
    test = made.parts["test"]
    assert sorted(base.subset["task_ids"]) == sorted(tried.subset["task_ids"]) == sorted(test)
    found_gain = enhance.gain(base.id, tried.id)
    # by hand: v1 is right on the Positive reviews, the proposal on the Neutral ones too
    positive = sum(TEXTS[text_of[t]] == "Positive" for t in test)
    neutral = sum(TEXTS[text_of[t]] == "Neutral" for t in test)
    assert neutral, "the test part holds a Neutral review to gain on"
    assert (found_gain.accuracy_a, found_gain.accuracy_b) == (pytest.approx(positive / len(test)), pytest.approx((positive + neutral) / len(test)))
    assert found_gain.p_value == pytest.approx(min(1.0, 2 * 0.5**neutral))  # McNemar's exact test: every flip one way
    assert found_gain.verdict().startswith(f"the proposal is {neutral / len(test) * 100:.1f} points better than v1 on {len(test)} tasks")
    # still only a proposal: no version, and Label Studio holds only v1's own answers
    assert [v.number for v in prompts.versions("sentiment", found.id)] == [1]
    assert {p.result[0]["value"]["choices"][0] for p in ls_client.predictions(found.id)} == {"Positive"}
    # asked again, the version's test evaluation is reused rather than paid again
    again, _ = enhance.check_on_test(proposal)
    assert again.id == base.id


def test_the_page_evaluates_the_proposal_before_it_is_saved(evaluated, standin):
    from tests.helpers import open_page, wait_until

    found, text_of, made, v1, run = evaluated
    standin.respond_with(knows_neutral)
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=found.id)
    app.text_input(key="ev_teacher_model").input("gpt-4o")
    app.button(key="ev_enhance").click().run()
    app.button(key="ev_check_proposal").click().run()
    assert not app.exception, app.exception
    wait_until(lambda: len(runs.runs(kind="evaluate", variants=True)) == 3 and not any(runs.live(r) for r in runs.runs(variants=True)), timeout=60, what="the check's runs")
    app.run()
    verdict = next(s.value for s in app.success if s.value.startswith("On the test part:"))
    neutral = sum(TEXTS[text_of[t]] == "Neutral" for t in made.parts["test"])
    assert f"the proposal is {neutral / len(made.parts['test']) * 100:.1f} points better than v1" in verdict and "p = " in verdict
    assert [v.number for v in prompts.versions("sentiment", found.id)] == [1]
