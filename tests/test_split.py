"""The ground-truth split: examples, development and test parts that are deterministic for a seed,
stratified by class, disjoint, stored per project, and chosen as an evaluation's subset."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from core import audit, connection
from core.evaluation import split, subsets
from core.evaluation.split import SplitError, divide
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.team import acting, join, plain_deployment  # noqa: F401 - plain_deployment is autouse
from tests.test_cli import _cli

# 60 tasks: 30 Positive, 20 Negative, 10 Neutral
CLASSES = {task_id: "Positive" if task_id <= 30 else "Negative" if task_id <= 50 else "Neutral" for task_id in range(1, 61)}


def test_the_same_seed_gives_the_same_parts_and_another_seed_others():
    first = divide(CLASSES, examples=6, test_share=0.4, seed=7)
    assert divide(dict(reversed(list(CLASSES.items()))), examples=6, test_share=0.4, seed=7) == first  # order given does not matter
    assert divide(CLASSES, examples=6, test_share=0.4, seed=8) != first


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_parts_are_disjoint_cover_every_task_and_have_the_sizes_asked(seed):
    parts = divide(CLASSES, examples=6, test_share=0.4, seed=seed)
    assert set(parts) == {"examples", "development", "test"}
    everything = parts["examples"] + parts["development"] + parts["test"]
    assert sorted(everything) == sorted(CLASSES) and len(set(everything)) == 60
    assert (len(parts["examples"]), len(parts["test"]), len(parts["development"])) == (6, 24, 30)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_each_part_keeps_the_classes_in_proportion(seed):
    parts = divide(CLASSES, examples=6, test_share=0.4, seed=seed)
    # 40% of 30, 20 and 10
    assert Counter(CLASSES[t] for t in parts["test"]) == {"Positive": 12, "Negative": 8, "Neutral": 4}
    # one of each class first, then the other 3 in proportion to what is left (17, 11, 5): 1.5, 1.0, 0.5
    assert Counter(CLASSES[t] for t in parts["examples"]) == {"Positive": 3, "Negative": 2, "Neutral": 1}


def test_examples_hold_one_task_of_every_class_even_a_rare_one():
    classes = {i: "common" for i in range(1, 19)} | {19: "rare", 20: "rarer"}
    parts = divide(classes, examples=3, test_share=0.25, seed=0)
    assert {classes[t] for t in parts["examples"]} == {"common", "rare", "rarer"}


def test_without_classes_the_split_is_still_seeded_and_sized():
    plain = {i: None for i in range(1, 11)}
    parts = divide(plain, examples=2, test_share=0.3, seed=5)
    assert (len(parts["examples"]), len(parts["test"]), len(parts["development"])) == (2, 3, 5)
    assert parts == divide(plain, examples=2, test_share=0.3, seed=5)


@pytest.mark.parametrize(
    "examples, share, message",
    [
        (3, 1.5, "test share: 1.5 is not between 0 and 1"),
        (-1, 0.4, "examples: -1 is negative"),
        (6, 0.4, "10 ground-truth tasks: 6 examples and a test part of 4 leave none for development"),
    ],
)
def test_a_split_that_cannot_be_made_says_why(examples, share, message):
    with pytest.raises(SplitError, match=message):
        divide({i: None for i in range(1, 11)}, examples=examples, test_share=share, seed=0)


LABELS = ["Positive"] * 6 + ["Negative"] * 4 + ["Neutral"] * 2  # 12 ground-truth tasks


@pytest.fixture
def project(use_labelstudio, make_project):
    tasks = [NewTask({"text": f"review {i}"}, [(choice(label), True)]) for i, label in enumerate(LABELS)]
    tasks += [NewTask({"text": "not annotated"}), NewTask({"text": "a draft"}, [(choice("Positive"), False)])]
    found, ids = make_project(CHOICES_CONFIG, tasks, title="split check")
    return found, ids


def test_a_projects_split_is_made_from_its_ground_truth_stored_and_used_as_a_subset(project):
    found, ids = project
    client = connection.client()
    made = split.make(client, found.id, examples=3, test_share=0.25, seed=11)
    label_of = dict(zip(ids, LABELS))
    everything = sum(made.parts.values(), [])
    assert sorted(everything) == sorted(ids[:12])  # the tasks without ground truth are in no part
    assert Counter(label_of[t] for t in made.parts["test"]) == {"Positive": 2, "Negative": 1}  # 3 of 12: 1.5, 1, 0.5, the tie to the larger class
    assert {label_of[t] for t in made.parts["examples"]} == {"Positive", "Negative", "Neutral"}
    assert made.stratified_by == "sentiment" and made.describe() == "3 examples, 6 development and 3 test tasks (seed 11, stratified by sentiment)"
    assert split.get(found.id) == made

    test = subsets.choose(client, found.id, "test")
    assert test.task_ids == made.parts["test"] and test.description == "the test part: 3 ground-truth tasks"
    assert subsets.choose(client, found.id, "development").task_ids == made.parts["development"]

    (event,) = [e for e in audit.events() if e.action == "ground truth split"]
    assert (event.actor, event.target) == ("local", f"project {found.id}")


def test_a_split_is_replaced_only_when_asked(project):
    found, _ = project
    client = connection.client()
    first = split.make(client, found.id, examples=3, test_share=0.25, seed=1)
    with pytest.raises(SplitError, match="already has a split .* replace it only on purpose"):
        split.make(client, found.id, examples=2, test_share=0.5, seed=2)
    assert split.get(found.id) == first
    again = split.make(client, found.id, examples=2, test_share=0.5, seed=2, replace=True)
    assert (len(again.parts["examples"]), len(again.parts["test"])) == (2, 6)


def test_a_viewer_cannot_split(project):
    found, _ = project
    join("vera@x.com", "viewer")
    with acting("vera@x.com"), pytest.raises(ValueError, match="split a project's ground truth"):
        split.make(connection.client(), found.id)
    assert split.get(found.id) is None


def test_without_a_split_the_test_subset_says_how_to_make_one(project):
    found, _ = project
    with pytest.raises(subsets.SubsetError, match=f"no ground-truth split yet.*ground-truth split --project {found.id}"):
        subsets.choose(connection.client(), found.id, "test")


def test_the_split_command_prints_the_parts_and_refuses_to_replace_silently(project):
    found, ids = project
    done = _cli("ground-truth", "split", "--project", str(found.id), "--examples", "3", "--test-share", "0.25", "--seed", "11", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)["split"]
    assert document["parts"] == split.get(found.id).parts and document["seed"] == 11
    # the same seed on the same ground truth gives the same parts, made through core directly
    assert document["parts"] == divide({t: lbl for t, lbl in zip(ids, LABELS)}, examples=3, test_share=0.25, seed=11)
    again = _cli("ground-truth", "split", "--project", str(found.id))
    assert again.returncode == 1 and "already has a split" in again.stderr
    shown = _cli("ground-truth", "show", "--project", str(found.id))
    assert shown.returncode == 0 and "3 examples, 6 development and 3 test tasks (seed 11, stratified by sentiment)" in shown.stdout
