"""Accept the sure predictions, review the rest, in the real Label Studio: the annotations made are
exactly those at or above the threshold, marked by their annotator; the review tab lists the rest,
least confident first, as Label Studio itself reads it back."""

from __future__ import annotations

import json

import pytest

from core import acceptance, connection, keys, predict, prompts, runs
from core.evaluation import evaluate, subsets
from core.labelstudio import NewTask
from tests.conftest import choice
from tests.helpers import wilson_by_hand
from tests.standin import Reply
from tests.test_cli import _cli

LABELS = ("Positive", "Negative", "Neutral")
TRUTH_TASKS = 40
OPEN_TASKS = 30


def number_of(request) -> int:
    return int(request.last_user_text.split("review number ")[1].split("\n")[0])


def confidence_of(n: int) -> float:
    """Ground-truth tasks 0-39 and open tasks 40-69: confidences spread over 0.40 to 0.99."""
    return round(0.40 + (n * 37 % 60) / 100, 2)


def wrong(n: int) -> bool:
    return confidence_of(n) < 0.7 and n % 2 == 0  # only unsure answers are ever wrong


def answer(request):
    n = number_of(request)
    said = LABELS[(n + wrong(n)) % 3]
    return Reply.json({"sentiment": said}, confidence={"sentiment": confidence_of(n)})


@pytest.fixture
def predicted(use_labelstudio, make_project, standin, ls_client):
    """A version evaluated on 40 ground-truth tasks, then run over all 70."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(answer)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(TRUTH_TASKS)]
    tasks += [NewTask({"text": f"review number {n}"}) for n in range(TRUTH_TASKS, TRUTH_TASKS + OPEN_TASKS)]
    found, ids = make_project(tasks=tasks, title="accept check")
    v1 = prompts.create(found.id, "sentiment", template="Sentiment of: {text}\nAnswer with {labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    client = connection.client()
    runs.execute(evaluate.start(v1, subsets.choose(client, found.id, "ground-truth"), client.label_config(found.id)).id)
    run = runs.execute(predict.start(v1, predict.scope(v1, client), client).id)
    assert run.status == "completed" and predict.written(run.id) == TRUTH_TASKS + OPEN_TASKS
    return found, dict(zip(range(TRUTH_TASKS + OPEN_TASKS), ids)), v1


def hand_threshold(target: float) -> float:
    """The lowest confidence whose ground-truth tasks at or above it clear the target with the
    Wilson interval's lower bound."""
    for t in sorted({confidence_of(n) for n in range(TRUTH_TASKS)}):
        above = [n for n in range(TRUTH_TASKS) if confidence_of(n) >= t]
        if wilson_by_hand(sum(not wrong(n) for n in above), len(above))[0] >= target:
            return t
    raise AssertionError("no threshold reaches the target")


def test_accept_annotates_exactly_the_sure_open_tasks_as_prompter(predicted, ls_client):
    found, task_of, v1 = predicted
    target = 0.8
    threshold = acceptance.threshold_for(v1, target)
    assert threshold.threshold == pytest.approx(hand_threshold(target))
    t = threshold.threshold
    sure_open = {task_of[n] for n in range(TRUTH_TASKS, TRUTH_TASKS + OPEN_TASKS) if confidence_of(n) >= t}
    unsure_open = {task_of[n] for n in range(TRUTH_TASKS, TRUTH_TASKS + OPEN_TASKS) if confidence_of(n) < t}
    assert sure_open and unsure_open

    shown = acceptance.plan(v1, t, ls_client)
    assert {p.task_id for p in shown.to_accept} == sure_open
    assert (shown.annotated, shown.below) == (TRUTH_TASKS, len(unsure_open))
    covered = [n for n in range(TRUTH_TASKS) if confidence_of(n) >= t]
    assert shown.expected.tasks == len(covered) and shown.expected.accuracy == pytest.approx(sum(not wrong(n) for n in covered) / len(covered))

    done = acceptance.accept(v1, t, ls_client)
    assert (done.accepted, done.failed, done.queued, done.annotated) == (len(sure_open), 0, len(unsure_open), TRUTH_TASKS)
    predictions = {p.task_id: p for p in ls_client.predictions(found.id)}
    after = {task.id: task for task in ls_client.tasks(found.id)}
    marker = ls_client.user_id(acceptance.ACCEPTED_BY)
    for task_id, task in after.items():
        made = [a for a in task.annotations if a.completed_by == marker]
        if task_id in sure_open:
            (annotation,) = task.annotations
            assert made == [annotation] and annotation.result == predictions[task_id].result
            assert annotation.parent_prediction == predictions[task_id].id and not annotation.ground_truth
        elif task_id in unsure_open:
            assert task.annotations == ()  # left untouched, for review
        else:
            assert len(task.annotations) == 1 and task.annotations[0].ground_truth and not made  # the ground truth as it was

    again = acceptance.accept(v1, t, ls_client)
    assert again.accepted == 0 and again.annotated == TRUTH_TASKS + len(sure_open)  # nothing is annotated twice


def test_the_review_tab_lists_the_unsure_open_tasks_least_confident_first(predicted, ls_client):
    found, task_of, v1 = predicted
    t = 0.8
    tab = acceptance.review_tab(v1, t, ls_client)
    (view,) = [v for v in ls_client.views(found.id) if v["id"] == tab.view_id]
    assert view["data"]["title"] == f"Review first: sentiment@v1 below {t:.2f}"
    assert view["data"]["ordering"] == ["tasks:predictions_score"]
    filters = {item["filter"]: (item["operator"], item["value"]) for item in view["data"]["filters"]["items"]}
    assert filters == {
        "filter:tasks:predictions_model_versions": ("contains", ["sentiment@v1"]),
        "filter:tasks:predictions_score": ("less", t),
        "filter:tasks:total_annotations": ("equal", 0),
    }
    listed = [task["id"] for task in ls_client.view_tasks(found.id, tab.view_id)]
    number = {task_id: n for n, task_id in task_of.items()}
    unsure = sorted((n for n in range(TRUTH_TASKS, TRUTH_TASKS + OPEN_TASKS) if confidence_of(n) < t), key=confidence_of)
    assert [confidence_of(number[i]) for i in listed] == [confidence_of(n) for n in unsure]  # least confident first
    assert set(listed) == {task_of[n] for n in unsure} and tab.tasks == len(unsure)

    # asked again, the same tab is kept up to date, not a second one made
    assert acceptance.review_tab(v1, t, ls_client).view_id == tab.view_id
    assert sum(v["data"].get("title") == tab.title for v in ls_client.views(found.id)) == 1

    # a version that never ran over the project has nothing to review: said so, and no tab made
    v2 = prompts.new_version("sentiment", found.id, temperature=0.5)
    with pytest.raises(acceptance.AcceptError, match=r"sentiment@v2 has no predictions in project \d+ yet.*run it over the project first \(Predict\)"):
        acceptance.review_tab(v2, t, ls_client)
    assert not any("sentiment@v2" in (v["data"].get("title") or "") for v in ls_client.views(found.id))


def test_a_target_no_threshold_reaches_is_refused_saying_the_best_there_is(predicted):
    found, task_of, v1 = predicted
    with pytest.raises(acceptance.AcceptError, match=r"No threshold reaches 99\.0% .* The best there is: at or above"):
        acceptance.threshold_for(v1, 0.99)


def test_the_cli_accepts_by_target_accuracy_after_asking_and_makes_the_review_tab(predicted, ls_client):
    found, task_of, v1 = predicted
    t = hand_threshold(0.8)
    refused = _cli("predictions", "accept", "--prompt", "sentiment", "--version", "1", "--target-accuracy", "80%")
    assert refused.returncode == 1 and "--yes" in refused.stderr  # asks first: without a terminal, it needs --yes
    assert all(task.annotations == () for task in ls_client.tasks(found.id) if task.ground_truth is None)

    done = _cli("predictions", "accept", "--prompt", "sentiment", "--version", "1", "--target-accuracy", "80%", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    sure_open = sum(confidence_of(n) >= t for n in range(TRUTH_TASKS, TRUTH_TASKS + OPEN_TASKS))
    assert (said["threshold"], said["accepted"], said["left_for_review"]) == (pytest.approx(t), sure_open, OPEN_TASKS - sure_open)

    tab = _cli("predictions", "review-tab", "--prompt", "sentiment", "--version", "1", "--threshold", str(t), "--json")
    assert tab.returncode == 0, tab.stderr
    made = json.loads(tab.stdout)
    assert made["tasks"] == OPEN_TASKS - sure_open and made["url"].endswith(f"/projects/{found.id}/data?tab={made['view_id']}")
