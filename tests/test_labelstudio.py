"""core.labelstudio against a real Label Studio server."""

from __future__ import annotations

import pytest

from core.labelstudio import (
    FileRefused,
    LabelStudioClient,
    LabelStudioError,
    NewPrediction,
    NewTask,
    ProjectNotFound,
    TokenRejected,
    Unreachable,
)
from core.local_labelstudio import free_port
from tests.conftest import CHOICES_CONFIG, choice
from tests.listener import Listener


def test_project_with_tasks_and_ground_truth_round_trips(ls_client, make_project):
    project, ids = make_project(
        CHOICES_CONFIG,
        [
            NewTask({"text": "I love it"}, [(choice("Positive"), True)]),
            NewTask({"text": "Terrible"}, [(choice("Negative"), True)]),
            NewTask({"text": "It arrived"}, [(choice("Neutral"), False)]),
            NewTask({"text": "No label yet"}),
        ],
    )

    assert (project.task_count, project.annotated_count, project.ground_truth_count) == (4, 3, 2)
    assert ls_client.label_config(project.id).strip() == CHOICES_CONFIG.strip()
    tasks = {t.id: t for t in ls_client.tasks(project.id)}
    assert sorted(tasks) == sorted(ids)
    assert tasks[ids[0]].data == {"text": "I love it"}
    assert tasks[ids[0]].ground_truth.result == choice("Positive")
    assert tasks[ids[1]].ground_truth.result == choice("Negative")
    assert tasks[ids[2]].ground_truth is None and len(tasks[ids[2]].annotations) == 1
    assert tasks[ids[3]].annotations == ()
    listed = {p.id: p for p in ls_client.projects()}
    assert listed[project.id] == project


def test_ground_truth_is_the_most_recent_marked_annotation(ls_client, make_project):
    project, (task_id,) = make_project(
        CHOICES_CONFIG,
        [NewTask({"text": "meh"}, [(choice("Negative"), True), (choice("Neutral"), True)])],
    )
    (task,) = ls_client.tasks(project.id)
    assert len(task.annotations) == 2
    latest = max(task.annotations, key=lambda a: (a.updated_at, a.id))
    assert task.ground_truth == latest


def test_tasks_by_id_reads_only_those_across_batches(ls_client, make_project):
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": f"message {i}"}) for i in range(450)])
    wanted = ids[::2]  # 225 ids: more than one export request's worth
    found = [t.id for t in ls_client.tasks(project.id, ids=wanted)]
    assert sorted(found) == sorted(wanted)
    assert list(ls_client.tasks(project.id, ids=[])) == []


def test_bulk_predictions_versions_delete_and_to_annotations(ls_client, make_project):
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": f"review {i}"}) for i in range(1000)])

    created = ls_client.import_predictions(
        project.id,
        (NewPrediction(task_id, choice("Positive"), "sentiment@v1", score=0.9) for task_id in ids),
    )
    assert created == 1000
    other = ls_client.import_predictions(
        project.id, [NewPrediction(task_id, choice("Negative"), "sentiment@v2") for task_id in ids[:30]]
    )
    assert other == 30
    versions = {v.name: v.prediction_count for v in ls_client.model_versions(project.id)}
    assert versions == {"sentiment@v1": 1000, "sentiment@v2": 30}

    assert ls_client.delete_model_version(project.id, "sentiment@v1") == 1000
    assert {v.name: v.prediction_count for v in ls_client.model_versions(project.id)} == {"sentiment@v2": 30}

    assert ls_client.predictions_to_annotations(project.id, "sentiment@v2") == 30
    tasks = {t.id: t for t in ls_client.tasks(project.id)}
    assert all(len(tasks[i].annotations) == 1 for i in ids[:30])
    assert all(tasks[i].annotations[0].result == choice("Negative") for i in ids[:30])
    assert all(tasks[i].annotations == () for i in ids[30:])
    assert ls_client.project(project.id).annotated_count == 30


def test_predictions_of_tasks_reads_those_tasks_only_with_every_versions_results(ls_client, make_project):
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": f"review {i}"}) for i in range(250)])
    ls_client.import_predictions(project.id, [NewPrediction(task_id, choice("Positive"), "sentiment@v1", score=0.5) for task_id in ids])
    ls_client.import_predictions(project.id, [NewPrediction(ids[3], choice("Negative"), "other@v2")])
    wanted = ids[:3] + ids[3:220:2]  # more than one request's worth
    found = ls_client.predictions_of_tasks(project.id, wanted)
    assert sorted(found) == sorted(wanted)
    assert all([(p.task_id, p.result, p.model_version, p.score) for p in found[t]] == [(t, choice("Positive"), "sentiment@v1", 0.5)] for t in wanted if t != ids[3])
    assert sorted((p.model_version, p.result[0]["value"]["choices"]) for p in found[ids[3]]) == [("other@v2", ["Negative"]), ("sentiment@v1", ["Positive"])]
    (last,) = ls_client.predictions(project.id, task_id=ids[-1])
    assert ls_client.predictions_of_tasks(project.id, [ids[-1]]) == {ids[-1]: [last]}  # the same as the prediction list says


def test_rejected_token_is_one_clear_sentence(labelstudio):
    with pytest.raises(TokenRejected) as caught:
        LabelStudioClient(labelstudio.url, "not-the-token").check()
    message = str(caught.value)
    assert "rejected the API token" in message and "LABEL_STUDIO_API_KEY" in message
    assert "not-the-token" not in message


def test_unreachable_host_says_how_to_fix_it():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unreachable) as caught:
        LabelStudioClient(url, "token").projects()
    assert url in str(caught.value) and "connection refused" in str(caught.value)
    assert "make run" in str(caught.value)


def test_unknown_project_names_the_project(ls_client):
    with pytest.raises(ProjectNotFound, match="no project 987654"):
        ls_client.project(987654)
    with pytest.raises(ProjectNotFound):
        list(ls_client.tasks(987654))


def test_url_that_is_not_label_studio(standin):
    with pytest.raises(LabelStudioError, match="has no Label Studio API"):
        LabelStudioClient(standin.root_url, "token").check()


@pytest.mark.parametrize(
    "url, key, expected",
    [
        ("127.0.0.1:8080", "token", "no http:// or https:// scheme"),
        ("http://127.0.0.1:8080", "   ", "No Label Studio API token is set"),
    ],
)
def test_bad_settings_are_refused_before_any_request(url, key, expected):
    with pytest.raises(LabelStudioError, match=expected):
        LabelStudioClient(url, key)


def test_client_repr_hides_the_token(ls_client, labelstudio):
    assert labelstudio.credentials.token not in repr(ls_client)
    assert labelstudio.credentials.token not in repr(labelstudio.credentials)


def test_label_studio_stores_predictions_unchecked_so_prompter_checks_every_answer(ls_client, make_project):
    """With the fast import Prompter turns on, Label Studio no longer validates predictions: a label the
    config lacks is stored as given. Every answer is therefore checked (labeling.to_regions) before it
    is written; tests/test_runs.py shows such an answer fails and is never written."""
    project, (task_id,) = make_project(CHOICES_CONFIG, [NewTask({"text": "fine"})])
    created = ls_client.import_predictions(
        project.id,
        [NewPrediction(task_id, choice("Positive"), "v1"), NewPrediction(task_id, choice("Ecstatic"), "v1")],
    )
    assert created == 2


def test_task_ids_reads_every_page(ls_client, make_project):
    project, ids = make_project(tasks=[NewTask({"text": f"t{n}"}) for n in range(25)])
    assert ls_client.task_ids(project.id, page_size=10) == sorted(ids)
    assert ls_client.task_ids(project.id) == sorted(ids)


@pytest.mark.parametrize(
    "path",
    [
        "/data/upload/../../api/projects",
        "/data/upload/%2e%2e/%2e%2e/api/users",
        "data/upload/../../api/current-user/whoami",
        "/api/projects",
        "/data/upload/1/cat.png#x",
        "http://127.0.0.1:1/data/upload/1/cat.png",
    ],
)
def test_file_fetches_nothing_but_stored_files(path):
    """Defence in depth: whatever its caller checked, the client itself sends the token only to stored files."""
    with Listener() as server:
        client = LabelStudioClient(server.url, "token-that-must-stay-home-0000")
        with pytest.raises(FileRefused, match=r"^Prompter does not fetch .* with the Label Studio token: .*; it fetches only the files Label Studio stores \(/data/upload/\.\.\., /data/local-files/\.\.\.\)\.$"):
            client.file(path)
        assert server.requests() == []
        with pytest.raises(LabelStudioError, match="has no file"):
            client.file("/data/upload/1/cat.png")  # a stored path is asked for, with the token
        (asked,) = server.requests()
        assert (asked.path, asked.headers["authorization"]) == ("/data/upload/1/cat.png", "Token token-that-must-stay-home-0000")
