"""The demo dataset and project."""

from __future__ import annotations

from collections import Counter

from core import demo
from core.evaluation import split
from core.labelstudio import LabelStudioClient


def test_dataset_is_the_size_and_shape_the_demo_promises():
    messages = demo.load_messages()
    intents = Counter(m["intent"] for m in messages)

    assert 140 <= len(messages) <= 160
    assert set(intents) == set(demo.INTENTS)
    assert min(intents.values()) >= 10  # every intent is there in earnest
    assert len({m["text"] for m in messages}) == len(messages)
    ground_truth = [m for m in messages if m["ground_truth"]]
    assert len(ground_truth) == 50
    assert {m["intent"] for m in ground_truth} == set(demo.INTENTS)
    ambiguous = [m for m in messages if m["ambiguous"]]
    assert 0.15 <= len(ambiguous) / len(messages) <= 0.35
    assert any(m["ambiguous"] for m in ground_truth)


def test_demo_project_is_created_once_with_its_ground_truth(ls_client: LabelStudioClient):
    messages = demo.load_messages()
    project, created = demo.ensure_project(ls_client)
    try:
        assert created
        assert (project.task_count, project.ground_truth_count) == (len(messages), 50)
        again, created_again = demo.ensure_project(ls_client)
        assert (again.id, created_again) == (project.id, False)
        assert [p.title for p in ls_client.projects()].count(demo.TITLE) == 1

        by_id = {m["id"]: m for m in messages}
        for task in ls_client.tasks(project.id):
            message = by_id[task.data["message_id"]]
            assert task.data["text"] == message["text"]
            if message["ground_truth"]:
                assert task.ground_truth.result[0]["value"]["choices"] == [message["intent"]]
            else:
                assert task.annotations == ()

        # created with its ground truth split: one example per intent, 40% held out for testing
        made = split.get(project.id)
        assert {part: len(ids) for part, ids in made.parts.items()} == {"examples": 8, "development": 22, "test": 20}
        intent_of = {t.id: by_id[t.data["message_id"]]["intent"] for t in ls_client.tasks(project.id)}
        assert sorted(intent_of[t] for t in made.parts["examples"]) == sorted(demo.INTENTS)
        assert made.stratified_by == "intent" and made.created_by == "local"
    finally:
        ls_client.delete_project(project.id)
