"""Optimize against the real Label Studio and the stand-in: a task model that errs less as the
instructions grow more specific, and a reflection model that adds one rule per error it is shown.
Optimize must find a version that does better on the test part than the seed, stay within its call
budget (counted in the stand-in's log), and never show the reflection model a test or examples task."""

from __future__ import annotations

import json
import re

import pytest

from core import connection, keys, optimize, prompts, runs
from core.evaluation import evaluate, split
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.standin import Reply
from tests.test_cli import _cli

LABELS = ("Positive", "Negative", "Neutral")
TASKS = 24
TEMPLATE = "Review: {text}\nAnswer with {labels}"
# a rule the task model needs to see before it answers a class rightly (it says Positive otherwise)
RULES = {"Negative": "A review that complains is Negative.", "Neutral": "A review that only states facts is Neutral."}


def text_of(n: int) -> str:
    return f"[review {n:02d}]"


def truth_of_text(text: str) -> str:
    return LABELS[int(re.search(r"\[review (\d+)\]", text).group(1)) % 3]


def is_reflection(request) -> bool:
    return request.schema is None


def task_model(request):
    truth = truth_of_text(request.user_text)
    knows = truth == "Positive" or RULES[truth] in request.all_text
    return Reply.json({"sentiment": truth if knows else "Positive"}, usage=(100, 5))


def reflection_model(request):
    """Add the rule for the first wrongly answered class that the current instructions lack."""
    prompt = request.all_text
    current = prompt.split("```")[1].strip("\n")
    wanted = [label for label in re.findall(r"the right answer is (\w+)", prompt) if RULES.get(label) and RULES[label] not in current]
    revised = current + ("\n" + RULES[wanted[0]] if wanted else "\nBe careful.")
    return Reply.text(f"Here is a better one:\n```\n{revised}\n```", usage=(400, 40))


def answer(request):
    return reflection_model(request) if is_reflection(request) else task_model(request)


def reviews_project(make_project, standin, responder, title: str):
    """TASKS reviews with ground truth, split (3 examples, 40% test), a key on the stand-in answering
    with ``responder``, and a v1 that knows no rule: the project, v1, the split and each task's text."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(responder)
    tasks = [NewTask({"text": text_of(n)}, [(choice(LABELS[n % 3]), True)]) for n in range(TASKS)]
    found, ids = make_project(CHOICES_CONFIG, tasks, title=title)
    parts = split.make(connection.client(), found.id, examples=3, test_share=0.4, seed=5)
    v1 = prompts.create(found.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return found, v1, parts, dict(zip(ids, (text_of(n) for n in range(TASKS))))


@pytest.fixture
def seeded(use_labelstudio, make_project, standin):
    return reviews_project(make_project, standin, answer, "optimize check")


def start(v1, max_calls, **options):
    return optimize.start(v1, reflection_key="team", reflection_model="gpt-4o", max_calls=max_calls, **options)


def by_hand_accuracy(task_ids, text, knows: set[str]) -> float:
    """The task model's accuracy on these tasks when its instructions hold the rules of ``knows``."""
    return sum(truth_of_text(text[t]) in knows | {"Positive"} for t in task_ids) / len(task_ids)


def test_optimize_finds_a_better_version_on_the_test_part_within_its_budget(seeded, standin):
    found, v1, parts, text = seeded
    search = optimize.execute(start(v1, max_calls=150).id)
    assert search.status == "completed", search.status_reason

    # within the budget, counted in the stand-in's own log (evaluations, reflections and the test check)
    test_check = sum(runs.get(r).total - runs.get(r).cached for r in (search.seed_test_run_id, search.best_test_run_id))
    assert len(standin.requests) == search.calls_used + test_check <= 150

    # every candidate it kept is a normal version, with where it came from
    kept = [e for e in search.candidates if e["parent_version"] is not None]
    assert kept, "the search kept no candidate"
    for entry in kept:
        version = prompts.version("sentiment", entry["version"], found.id)
        assert version.note.startswith(f"Optimize {search.id}: candidate ") and f"from v{entry['parent_version']}" in version.note
        assert "{text}" in version.template
    best = prompts.version("sentiment", search.best_version, found.id)
    learned = {label for label, rule in RULES.items() if rule in (best.template + (best.system_message or ""))}
    assert learned, "the best candidate learned no rule"

    # the gain on the test part, against the accuracy computed here from the rules each version holds
    test = parts.parts["test"]
    seed_run, best_run = evaluate.summary(search.seed_test_run_id), evaluate.summary(search.best_test_run_id)
    assert (seed_run["version"], best_run["version"]) == (1, search.best_version)
    assert seed_run["subset"]["kind"] == best_run["subset"]["kind"] == "test"
    assert seed_run["accuracy"] == pytest.approx(by_hand_accuracy(test, text, set()))
    assert best_run["accuracy"] == pytest.approx(by_hand_accuracy(test, text, learned))
    assert best_run["accuracy"] > seed_run["accuracy"]
    # the versions' own figures: the best version's test score is in the history like any evaluation
    assert {p["version"] for p in evaluate.history("sentiment", found.id)} >= {"v1", f"v{search.best_version}"}

    # the reflection model never saw a task of the test or examples parts, only development ones
    reflections = [r for r in standin.requests if is_reflection(r)]
    assert reflections and search.candidates
    seen = " ".join(r.all_text for r in reflections)
    for task_id in parts.parts["test"] + parts.parts["examples"]:
        assert text[task_id] not in seen, f"task {task_id} of another part reached the reflection model"
    assert any(text[t] in seen for t in parts.parts["development"])
    # before the test check, the task model was only asked about development tasks
    searching = [r for r in standin.requests if not is_reflection(r)][: -2 * len(test)]
    assert {truth_of_text(r.user_text) for r in searching} and all(
        any(text[t] in r.user_text for t in parts.parts["development"]) for r in searching
    )


def test_the_search_stops_at_its_call_budget(seeded, standin):
    found, v1, parts, text = seeded
    development, test = len(parts.parts["development"]), len(parts.parts["test"])
    budget = development + 2 * test + 8  # the seed's first evaluation, the test check, and little more
    search = optimize.execute(start(v1, max_calls=budget).id)
    # the seed's evaluation, then one step (a reflection and a candidate on 3 tasks); the candidate's
    # evaluation on the whole development part would pass the budget, so it is never sent
    assert len(standin.requests) == search.calls_used == development + 1 + 3
    assert sum(is_reflection(r) for r in standin.requests) == 1
    assert (search.status, search.best_version, search.seed_test_run_id) == ("stopped", None, None)
    assert f"Stopped at its budget of {budget} calls ({2 * test} held for the final check on the test part)." in search.status_reason


def test_a_budget_too_small_for_the_search_is_refused_saying_what_it_needs(seeded):
    found, v1, parts, text = seeded
    needed = len(parts.parts["development"]) + 2 * len(parts.parts["test"]) + 1
    with pytest.raises(optimize.OptimizeError, match=f"needs at least {needed}"):
        start(v1, max_calls=needed - 1)
    assert optimize.optimizations() == []


def cancelled_at_the_first_reflection(v1, standin):
    """A search worked here until it was cancelled, as a user would, while its first reflection was out."""
    search = start(v1, max_calls=150)

    def cancel_at_the_first_reflection(request):
        if is_reflection(request) and not optimize.get(search.id).cancel_requested:
            optimize.cancel(search.id)
        return answer(request)

    standin.respond_with(cancel_at_the_first_reflection)
    optimize.execute(search.id)
    return search


def test_cancel_stops_the_search_and_keeps_what_it_found(seeded, standin):
    found, v1, parts, text = seeded
    search = cancelled_at_the_first_reflection(v1, standin)
    ended = optimize.get(search.id)
    assert ended.status == "cancelled" and ended.seed_test_run_id is None
    assert sum(is_reflection(r) for r in standin.requests) == 1  # no reflection after the cancel
    assert not any(runs.live(r) for r in runs.runs(variants=True))


def test_a_cancelled_search_resumes_from_where_it_stopped_within_the_same_budget(seeded, standin):
    found, v1, parts, text = seeded
    search = cancelled_at_the_first_reflection(v1, standin)
    assert optimize.get(search.id).status == "cancelled"
    before = len(standin.requests)
    standin.respond_with(answer)
    resumed = optimize.execute(search.id)
    assert resumed.status == "completed", resumed.status_reason
    # the seed's answers on the development part came from the cache: after the resume, every
    # development task the task model is asked about comes with a candidate's rule
    development = {text[t] for t in parts.parts["development"]}
    asked_again = [r for r in standin.requests[before:] if not is_reflection(r) and truth_of_text(r.user_text) and any(t in r.user_text for t in development)]
    assert asked_again and all(any(rule in r.all_text for rule in RULES.values()) or "Be careful." in r.all_text for r in asked_again)
    # one budget across both: the stand-in's log, from the first call to the last, stays within it
    test_check = sum(runs.get(r).total - runs.get(r).cached for r in (resumed.seed_test_run_id, resumed.best_test_run_id))
    assert len(standin.requests) == resumed.calls_used + test_check <= 150


def test_the_search_stops_before_passing_its_spending_limit(seeded, standin):
    found, v1, parts, text = seeded
    # the seed's evaluation costs $0.000198; a reflection on gpt-4o is held at its estimate (its prompt and
    # 1,000 tokens of answer at $2.50/$10 per million: over $0.01), which this limit cannot pay
    limit = 0.002
    search = optimize.execute(start(v1, max_calls=150, max_cost_usd=limit).id)
    assert search.status == "stopped" and "Stopped at its spending limit of $0.002" in search.status_reason
    assert [is_reflection(r) for r in standin.requests] == [False] * len(parts.parts["development"])  # the seed's evaluation, then nothing
    paid = len(standin.requests) * (100 * 0.15 + 5 * 0.60) / 1e6  # gpt-4o-mini at $0.15/$0.60 per million
    assert paid == pytest.approx(search.cost_usd) and paid <= limit


def test_the_command_optimizes_and_prints_the_gain(seeded, standin):
    found, v1, parts, text = seeded
    done = _cli("optimize", "--prompt", "sentiment", "--reflection-key", "team", "--reflection-model", "gpt-4o", "--max-calls", "150", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "completed" and document["calls_used"] <= 150
    assert document["test_check"]["accuracy_b"] > document["test_check"]["accuracy_a"]
    assert "p =" in document["test_check"]["verdict"] or "p=" in document["test_check"]["verdict"]
    listed = _cli("optimize", "list")
    assert listed.returncode == 0 and "sentiment@v1  completed" in listed.stdout
    refused = _cli("optimize", "--prompt", "sentiment", "--reflection-key", "team", "--reflection-model", "gpt-4o", "--max-calls", "3")
    assert refused.returncode != 0 and "cannot cover the search" in refused.stderr


def test_the_evaluate_page_starts_a_search_in_the_background_and_shows_what_it_kept(seeded, standin):
    from tests.helpers import open_page, table, wait_until, wilson_by_hand

    found, v1, parts, text = seeded
    app = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=found.id)
    app.text_input(key="ev_opt_model").input("gpt-4o")
    app.number_input(key="ev_opt_calls").set_value(150)
    app.button(key="ev_optimize").click().run()
    assert not app.exception, app.exception
    (search,) = optimize.optimizations()
    assert any(f"Started Optimize {search.id} from sentiment@v1: at most 150 calls." in s.value for s in app.success)
    wait_until(lambda: optimize.get(search.id).status not in ("pending", "running"), timeout=120, what="the search's worker to finish")
    ended = optimize.get(search.id)
    assert ended.status == "completed", ended.status_reason

    app.run()
    assert not app.exception, app.exception
    kept = table(app, "version", "development accuracy", "95%", "tasks", "from", "best")
    assert list(kept["version"]) == [f"v{c['version']}" for c in ended.candidates]
    # the seed's development accuracy, counted here: it answers only the Positive tasks rightly
    development = parts.parts["development"]
    right = sum(truth_of_text(text[t]) == "Positive" for t in development)
    assert kept["development accuracy"][0] == f"{right / len(development) * 100:.1f}%" == f"{by_hand_accuracy(development, text, set()) * 100:.1f}%"
    low, high = wilson_by_hand(right, len(development))
    assert (kept["95%"][0], kept["tasks"][0]) == (f"{low * 100:.1f}–{high * 100:.1f}%", len(development))
    assert list(kept["best"]).count("★") == 1 and kept["best"][list(kept["version"]).index(f"v{ended.best_version}")] == "★"
    verdict = next(s.value for s in app.success if s.value.startswith("On the test part:"))
    assert f"v{ended.best_version} is" in verdict and "better than v1" in verdict and "p =" in verdict
