"""Confidence and calibration against the real Label Studio and the stand-in over HTTP: answers whose
log-probabilities say how sure the model was, answers sampled n times and voted on, a server that
gives neither, and the reliability bins, ECE, AUROC and threshold computed here by hand."""

from __future__ import annotations

import json

import pytest

from core import connection, keys, labeling, messages, predict, pricing, prompts, runs, tokens
from core.evaluation import calibration, evaluate, subsets
from core.evaluation.calibration import Point
from core.labelstudio import NewTask
from tests.conftest import choice
from tests.helpers import wilson_by_hand
from tests.standin import Reply
from tests.test_cli import _cli

LABELS = ("Positive", "Negative", "Neutral")
# each task's confidence, and the tasks answered wrongly: mostly the unsure ones
CONFIDENCE = [0.32, 0.38, 0.45, 0.47, 0.52, 0.55, 0.58, 0.63, 0.66, 0.71, 0.74, 0.77, 0.81, 0.84, 0.86, 0.88, 0.91, 0.93, 0.95, 0.97]
WRONG = {0, 1, 2, 4, 7, 12}


def number_of(request) -> int:
    return int(request.last_user_text.split("review number ")[1].split("\n")[0])


def truth(n: int) -> str:
    return LABELS[n % 3]


def scripted(request):
    n = number_of(request)
    said = LABELS[(n + 1) % 3] if n in WRONG else truth(n)
    return Reply.json({"sentiment": said}, confidence={"sentiment": CONFIDENCE[n]})


@pytest.fixture
def reviews(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(truth(n)), True)]) for n in range(len(CONFIDENCE))]
    found, ids = make_project(tasks=tasks, title="confidence check")
    return found, ids


def evaluate_version(found, version, cache="auto"):
    client = connection.client()
    run = evaluate.start(version, subsets.choose(client, found.id, "ground-truth"), client.label_config(found.id), cache=cache)
    return runs.execute(run.id)


def create(found, **settings):
    return prompts.create(found.id, "sentiment", template="Sentiment of: {text}\nAnswer with {labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini", **settings)


def test_reliability_ece_and_auroc_equal_the_hand_counts(reviews, standin):
    found, ids = reviews
    standin.respond_with(scripted)
    run = evaluate_version(found, create(found))
    assert run.status == "completed"
    by_task = {item.task_id: item for item in runs.items(run.id)}
    assert [by_task[t].score for t in ids] == pytest.approx(CONFIDENCE, abs=1e-4)  # the value's probability, not the JSON's

    measured = calibration.of_run(run.id)
    right = [n not in WRONG for n in range(len(CONFIDENCE))]
    # the bins by hand: tenths of confidence, each with its count, mean confidence and accuracy
    expected = {}
    for conf, ok in zip(CONFIDENCE, right):
        expected.setdefault(int(conf * 10), []).append((conf, ok))
    bins = {round(b.low * 10): b for b in measured.overall.bins if b.tasks}
    assert set(bins) == set(expected)
    for tenth, members in expected.items():
        assert bins[tenth].tasks == len(members)
        assert bins[tenth].confidence == pytest.approx(sum(c for c, _ in members) / len(members), abs=1e-4)
        assert bins[tenth].accuracy == pytest.approx(sum(ok for _, ok in members) / len(members))
    ece = sum(abs(sum(ok for _, ok in m) / len(m) - sum(c for c, _ in m) / len(m)) * len(m) for m in expected.values()) / len(CONFIDENCE)
    assert measured.overall.ece == pytest.approx(ece, abs=1e-4)
    # AUROC by hand: the share of (right, wrong) pairs in which the right answer was surer
    pairs = [(a, b) for a, ra in zip(CONFIDENCE, right) for b, rb in zip(CONFIDENCE, right) if ra and not rb]
    assert measured.overall.auroc == pytest.approx(sum(a > b for a, b in pairs) / len(pairs))
    assert measured.measure == "log-probabilities" and measured.overall.without_confidence == 0

    shown = json.loads(_cli("calibration", "--prompt", "sentiment", "--target-accuracy", "0.5", "--json").stdout)
    assert shown["overall"]["ece"] == pytest.approx(ece, abs=1e-4) and shown["overall"]["auroc"] == pytest.approx(measured.overall.auroc)
    # 0.5 is first reached, with the lower bound, at the lowest threshold whose tasks' Wilson bound clears it
    lowest = next(
        c for c in sorted(CONFIDENCE)
        if wilson_by_hand(sum(ok for conf, ok in zip(CONFIDENCE, right) if conf >= c), sum(conf >= c for conf in CONFIDENCE))[0] >= 0.5
    )
    assert shown["threshold"]["threshold"] == pytest.approx(lowest, abs=1e-4)
    assert evaluate.summary(run.id)["calibration"]["overall"]["ece"] == pytest.approx(ece, abs=1e-4)


def test_a_server_without_log_probabilities_gives_no_confidence_rather_than_one_made_up(reviews, standin):
    found, ids = reviews
    standin.gives_logprobs = False
    standin.respond_with(scripted)
    run = evaluate_version(found, create(found))
    assert run.status == "completed" and all(item.score is None for item in runs.items(run.id))
    measured = calibration.of_run(run.id)
    assert measured.measure is None and measured.overall.tasks == 0 and measured.overall.ece is None and measured.overall.auroc is None
    said = _cli("calibration", "--prompt", "sentiment").stdout
    assert "No confidence" in said and "--samples" in said


# each task's five answers (by sample index): the kept answer is the most common, a tie going to the
# earliest, and an answer that is not JSON agrees with none
SAMPLES = [
    ["Positive"] * 5,
    ["Positive", "Positive", "Negative", "Positive", "Neutral"],
    ["Negative", "Positive", "Negative", "Positive", "Negative"],
    ["Neutral", "Positive", "Negative", "Neutral", "Positive"],
    ["{not json", "Positive", "Positive", "Positive", "Positive"],
]
KEPT = [("Positive", 1.0), ("Positive", 0.6), ("Negative", 0.6), ("Neutral", 0.4), ("Positive", 0.8)]


def sampled(request):
    said = SAMPLES[number_of(request) % len(SAMPLES)][request.sample]
    return Reply.text(said, usage=(100, 5)) if said.startswith("{not") else Reply.json({"sentiment": said}, usage=(100, 5))


def test_agreement_keeps_the_majority_with_its_share_and_the_cache_keeps_all_n(reviews, standin, ls_client):
    found, ids = reviews
    standin.respond_with(sampled)
    v1 = create(found, samples=5, temperature=0.7)
    run = evaluate_version(found, v1)
    assert run.status == "completed"
    requests = standin.requests
    assert len(requests) == len(ids) and {r.body["n"] for r in requests} == {5} and not any("logprobs" in r.body for r in requests)
    items = {item.task_id: item for item in runs.items(run.id)}
    for n, task_id in enumerate(ids):
        label, share = KEPT[n % len(KEPT)]
        assert items[task_id].regions[0]["value"]["choices"] == [label]
        assert items[task_id].score == pytest.approx(share)
        assert len(items[task_id].samples) == 5
        # the prompt is read once for the five answers; each answer's tokens are paid
        assert (items[task_id].input_tokens, items[task_id].output_tokens) == (100, 25)

    # the estimate before the next run counts the five answers of each call: 5 x 5 output tokens
    guess = predict.estimate(v1, predict.scope(v1, ls_client), ls_client)
    assert guess.output_tokens == 25 * len(ids) and "asks for 5 answers" in guess.describe()

    again = runs.execute(evaluate.start(v1, subsets.choose(connection.client(), found.id, "ground-truth"), ls_client.label_config(found.id), cache="reuse").id)
    assert standin.request_count == len(ids)  # every answer from the store...
    assert {i.task_id: i.score for i in runs.items(again.id)} == {t: i.score for t, i in items.items()}  # ...with its n answers, not one

    v2 = prompts.new_version("sentiment", found.id, samples=3)
    evaluate_version(found, v2, cache="reuse")
    assert standin.request_count == 2 * len(ids) and {r.body["n"] for r in standin.requests[len(ids):]} == {3}  # other n, other calls


def test_a_server_that_ignores_n_is_asked_again_for_the_rest(reviews, standin):
    found, ids = reviews
    standin.honours_n = False
    given: dict[int, int] = {}

    def one_at_a_time(request):
        n = number_of(request)
        given[n] = given.get(n, -1) + 1
        return Reply.json({"sentiment": SAMPLES[n % len(SAMPLES)][given[n]]}) if n % len(SAMPLES) != 4 else Reply.json({"sentiment": "Positive"})

    standin.respond_with(one_at_a_time)
    run = evaluate_version(found, create(found, samples=5, temperature=0.7))
    assert run.status == "completed"
    assert sorted(r.body["n"] for r in standin.requests) == sorted([5, 4, 3, 2, 1] * len(ids))
    scores = {item.task_id: item.score for item in runs.items(run.id)}
    assert [scores[t] for t in ids[:4]] == pytest.approx([share for _, share in KEPT[:4]])


def test_a_threshold_is_refused_when_only_its_point_value_reaches_the_target():
    sure = [Point(i, 0.95, True) for i in range(10)]
    # ten right of ten is 100%, but its interval reaches down to 72%: not a measured 90%
    assert wilson_by_hand(10, 10)[0] < 0.9
    assert calibration.threshold_for(sure, 0.9) is None
    assert "No threshold reaches 90.0%" in calibration.verdict(sure, 0.9)

    more = sure + [Point(10 + i, 0.9, True) for i in range(40)] + [Point(50 + i, 0.7, i >= 5) for i in range(10)]
    # at 0.7: 55 of 60 right, 91.7%, above the target, but its lower bound is not: 0.9 is the threshold
    assert 55 / 60 > 0.9 and wilson_by_hand(55, 60)[0] < 0.9 <= wilson_by_hand(50, 50)[0]
    found = calibration.threshold_for(more, 0.9)
    assert (found.threshold, found.tasks, found.right, found.of) == (0.9, 50, 50, 60)
    assert (found.interval["low"], found.interval["high"]) == pytest.approx(wilson_by_hand(50, 50))
    assert found.sentence().startswith("at or above 0.90: 83% of tasks, accuracy 100.0% (95% interval 92.9%-100.0%) on 50 of 60")


TWO_OUTPUTS = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>
  </Choices>
  <Choices name="urgent" toName="text" choice="single">
    <Choice value="yes"/><Choice value="no"/>
  </Choices>
</View>
"""


def test_each_output_has_its_own_confidence_and_the_answer_its_lowest(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [
        NewTask({"text": f"review number {n}"}, [(choice(truth(n)) + choice("yes" if n % 2 else "no", control="urgent"), True)])
        for n in range(8)
    ]
    found, ids = make_project(TWO_OUTPUTS, tasks, title="two outputs")

    def answer(request):
        n = number_of(request)
        urgent = ("yes" if n % 2 else "no") if n < 6 else ("no" if n % 2 else "yes")  # the last two wrong on urgency
        return Reply.json({"sentiment": truth(n), "urgent": urgent}, confidence={"sentiment": 0.9, "urgent": 0.3 if n >= 6 else 0.8})

    standin.respond_with(answer)
    version = prompts.create(found.id, "two", template="{text}", controls=["sentiment", "urgent"], provider_key="team", model="gpt-4o-mini")
    run = evaluate_version(found, version)
    items = {i.task_id: i for i in runs.items(run.id)}
    assert items[ids[0]].confidences == {"sentiment": pytest.approx(0.9), "urgent": pytest.approx(0.8)} and items[ids[0]].score == pytest.approx(0.8)
    assert items[ids[7]].score == pytest.approx(0.3)
    measured = calibration.of_run(run.id)
    assert set(measured.outputs) == {"sentiment", "urgent"}
    assert measured.outputs["sentiment"].auroc is None  # every sentiment right: nothing to rank
    assert measured.outputs["urgent"].auroc == pytest.approx(1.0) and measured.overall.auroc == pytest.approx(1.0)


def test_the_spending_limit_holds_n_answers_before_the_first_call_of_a_version_measuring_agreement(reviews, standin, ls_client):
    found, ids = reviews
    standin.respond_with(lambda r: Reply.json({"sentiment": "Positive"}, usage=(30, 5)))
    v1 = create(found, samples=5, temperature=0.7)
    targets = labeling.read(ls_client.label_config(found.id))
    sent = messages.build(v1, targets, {"text": "review number 0"}, None, ids[0])
    prompt, answer = tokens.prompt_tokens(sent), tokens.typical_answer_tokens(targets, v1.controls)
    one_answer, five_answers = pricing.cost("gpt-4o-mini", prompt, answer), pricing.cost("gpt-4o-mini", prompt, 5 * answer)
    limit = (one_answer + five_answers) / 2  # enough for a call of one answer, not for one of five

    run = runs.execute(runs.create(v1, ids, kind="evaluate", label_config=ls_client.label_config(found.id), max_cost_usd=limit).id)
    assert run.status == "stopped" and standin.request_count == 0  # nothing sent that could pass the limit

    single = prompts.new_version("sentiment", found.id, samples=None)
    run = runs.execute(runs.create(single, ids[:1], kind="evaluate", label_config=ls_client.label_config(found.id), max_cost_usd=limit).id)
    assert run.status == "completed" and standin.request_count == 1  # the same limit lets a one-answer call go
