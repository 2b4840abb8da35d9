"""Prompter as Label Studio's ML backend, through Label Studio itself: the real server (its own
process) connected to the real Label Studio, the stand-in model over HTTP. Label Studio makes
every call to the backend here; the tests only do what an annotator's clicks do."""

from __future__ import annotations

import json

import httpx
import pytest

from core import identity, keys, prompts, runs
from core.backend import instructions, publications
from core.labelstudio import NewTask
from tests.backend import BackendServer
from tests.helpers import wait_until
from tests.standin import Reply
from tests.team import acting, join, plain_deployment, team_mode  # noqa: F401 - plain_deployment is autouse
from tests.test_cli import _cli

LABELS = ("Positive", "Negative", "Neutral")

INTERACTIVE_CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <TextArea name="prompt" toName="text" rows="2" editable="true" maxSubmissions="1" showSubmitButton="false"/>
  <TextArea name="response" toName="text" rows="3" editable="true" smart="false"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral"/>
  </Choices>
</View>
"""


def label_for(request) -> str:
    n = int(request.last_user_text.split("review number ")[1].split()[0])
    return LABELS[n % 3]


def answer(request):
    if "breaks the model" in request.last_user_text:
        return Reply.error(500, "the model fell over")
    return Reply.json({"sentiment": label_for(request)}, usage=(1000, 10))


@pytest.fixture
def served(use_labelstudio, make_project, standin, backend, ls_client):
    """A project of six reviews (one that breaks the model) with sentiment@v1 published to it."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(answer)
    texts = [f"review number {n}" for n in range(5)] + ["review number 5 breaks the model"]
    project, ids = make_project(tasks=[NewTask({"text": t}) for t in texts], title="backend check")
    prompts.create(project.id, "sentiment", template="Sentiment of: {text}\nAnswer with {labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    found = publications.connect(project.id, "sentiment", None, backend.url, ls_client)
    return project, ids, found


def open_task(ls_client, task_id: int) -> dict:
    """What Label Studio's labeling screen asks when an annotator opens a task."""
    response = ls_client._http("GET", f"api/tasks/{task_id}/")
    assert response.status_code == 200, response.text
    return response.json()


def retrieve_predictions(ls_client, project_id: int, task_ids: list[int]) -> dict:
    """The Data Manager's "Retrieve Predictions" on the selected tasks."""
    response = ls_client._http(
        "POST", "api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project_id}, json={"selectedItems": {"all": False, "included": task_ids}}
    )
    assert response.status_code == 200, response.text
    return response.json()


def predictions_by_task(ls_client, project_id: int) -> dict[int, list]:
    found: dict[int, list] = {}
    for p in ls_client.predictions(project_id):
        found.setdefault(p.task_id, []).append(p)
    return found


def test_connect_makes_label_studio_use_the_published_version_and_refuses_wrong_credentials(served, backend, ls_client):
    project, ids, found = served
    (connected,) = ls_client.ml_backends(project.id)
    assert connected["state"] == "CO" and connected["model_version"] == "sentiment@v1" and connected["auth_method"] == "BASIC_AUTH"
    assert publications.label_studio_state(found, ls_client) == ("connected", None)
    versions = ls_client._http("GET", f"api/ml/{found.ml_backend_id}/versions")  # Label Studio asks the backend's /versions
    assert versions.status_code == 200 and versions.json()["versions"] == ["sentiment@v1"], versions.text

    # the backend answers nobody without the credentials it gave Label Studio
    for auth in (None, (found.username, "not-the-password"), ("someone", "else")):
        response = httpx.post(f"{backend.url}/setup", json={"project": f"{project.id}.0"}, auth=auth)
        assert response.status_code == 401
        assert httpx.post(f"{backend.url}/predict", json={"tasks": [{"id": ids[0], "data": {"text": "x"}}]}, auth=auth).status_code == 401
    stored = json.dumps([vars(r) for r in _publication_rows()], default=str)
    assert found.username in stored and "not-the-password" not in stored and len(_publication_rows()[0].password_hash) == 64

    # publishing another version switches what Label Studio is answered by
    prompts.new_version("sentiment", project.id, template="Is this review positive, negative or neutral? {text}\n{labels}")
    publications.connect(project.id, "sentiment", 2, backend.url, ls_client)
    (connected,) = ls_client.ml_backends(project.id)
    assert connected["state"] == "CO" and connected["model_version"] == "sentiment@v2"
    assert publications.get(project.id).version.number == 2


def _publication_rows():
    from sqlmodel import select

    from core import store

    with store.session() as s:
        return s.exec(select(store.Publication)).all()


def test_opening_a_task_prelabels_it_once_with_the_models_answer(served, standin, ls_client):
    project, ids, found = served
    listed = ls_client._http("GET", "api/tasks", params={"project": project.id, "fields": "all"})  # the Data Manager's list
    assert len(listed.json()["tasks"]) == 6 and standin.request_count == 0  # tasks merely listed cost nothing
    shown = open_task(ls_client, ids[1])
    (prediction,) = predictions_by_task(ls_client, project.id)[ids[1]]
    assert prediction.model_version == "sentiment@v1"
    assert prediction.result == [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Negative"]}}]
    assert [p["model_version"] for p in shown["predictions"]] == ["sentiment@v1"]  # the annotator sees it at once
    assert standin.request_count == 1 and "review number 1" in standin.requests[0].last_user_text

    open_task(ls_client, ids[1])  # opened again: it has its prediction, nothing is asked
    assert standin.request_count == 1 and len(predictions_by_task(ls_client, project.id)[ids[1]]) == 1

    # the prediction deleted in Label Studio, the task opened again: answered from the store, 0 model calls
    ls_client.delete_prediction(prediction.id)
    open_task(ls_client, ids[1])
    (again,) = predictions_by_task(ls_client, project.id)[ids[1]]
    assert again.result == prediction.result and standin.request_count == 1
    (latest, first) = runs.runs(project_id=project.id, kind="backend", limit=2)
    assert (first.done, first.cached, latest.done, latest.cached) == (1, 0, 1, 1)
    assert first.cost_usd == pytest.approx(_cost(1000, 10)) and latest.cost_usd == 0.0
    assert runs.cache_note(latest) == "1 of 1 answers from earlier calls: $0.00 (saved $0.000156)."  # what the first call cost, 1000 x $0.15/M + 10 x $0.60/M


def _cost(input_tokens: int, output_tokens: int) -> float:
    from core import pricing

    return pricing.cost("gpt-4o-mini", input_tokens, output_tokens)


def test_retrieve_predictions_writes_exactly_the_selected_tasks_and_a_failing_one_fails_alone(served, standin, backend, ls_client):
    project, ids, found = served
    selected = [ids[0], ids[2], ids[3], ids[5]]  # ids[5] breaks the model
    retrieve_predictions(ls_client, project.id, selected)
    written = predictions_by_task(ls_client, project.id)
    assert set(written) == {ids[0], ids[2], ids[3]}  # not the failing task, not the unselected ones
    for n in (0, 2, 3):
        (p,) = written[ids[n]]
        assert p.result[0]["value"]["choices"] == [LABELS[n % 3]] and p.model_version == "sentiment@v1"
    asked = sorted(r.last_user_text.split("review number ")[1].split()[0] for r in standin.requests)
    assert asked[:3] == ["0", "2", "3"] and set(asked[3:]) == {"5"}  # the failing task was tried (and retried by the SDK)

    (run,) = runs.runs(project_id=project.id, kind="backend")
    assert (run.total, run.done, run.failed, run.status) == (4, 3, 1, "completed")
    (failure,) = runs.failures_of(run.id)
    assert failure.example_task == ids[5] and "the model fell over" in failure.example
    assert f"task {ids[5]}: no answer from sentiment@v1" in backend.logged()


def test_a_spending_limit_refuses_calls_past_it_and_their_tasks_stay_without_a_prediction(served, standin, backend, ls_client):
    project, ids, _ = served
    per_call = _cost(1000, 10)
    # published again with room for two calls' estimates (the prompt's tokens and a typical answer)
    publications.connect(project.id, "sentiment", 1, backend.url, ls_client, max_cost_usd=per_call * 2.5, concurrency=1)
    retrieve_predictions(ls_client, project.id, ids[:5])
    written = predictions_by_task(ls_client, project.id)
    (run,) = runs.runs(project_id=project.id, kind="backend")
    refused = [f for f in runs.failures_of(run.id) if f.kind == "over_budget"]
    assert refused and "spending limit" in refused[0].example
    assert run.done == len(written) == standin.request_count and run.done + refused[0].count == 5
    assert run.cost_usd <= per_call * 2.5


def test_the_interactive_prompter_answers_a_typed_instruction_without_saving_a_prediction(use_labelstudio, make_project, standin, backend, ls_client):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(INTERACTIVE_CONFIG, [NewTask({"text": "The soup was cold and the waiter rude."})], title="interactive check")
    prompts.create(project.id, "assist", template="Label: {text}", controls=["response", "sentiment"], provider_key="team", model="gpt-4o-mini")
    found = publications.connect(project.id, "assist", None, backend.url, ls_client, interactive=True)
    standin.respond_with(lambda request: Reply.json({"response": "The customer is unhappy with the food and service.", "sentiment": "Negative"}))

    typed = "Summarize the complaint in one sentence and give its sentiment."
    data = interactive(ls_client, found, ids[0], typed)
    (request,) = standin.requests
    assert typed in request.last_user_text and "The soup was cold and the waiter rude." in request.last_user_text
    filled = {r["from_name"]: r["value"] for r in data["result"]}
    assert filled == {"response": {"text": ["The customer is unhappy with the food and service."]}, "sentiment": {"choices": ["Negative"]}}
    assert ls_client.predictions(project.id) == []  # a suggestion in the task, not a saved prediction

    # an instruction naming a field is the whole template
    interactive(ls_client, found, ids[0], "Mood of this: {text}")
    assert standin.requests[-1].last_user_text.startswith("Mood of this: The soup was cold")

    # a failing model comes back as a message the annotator reads in the response box
    standin.respond_with(lambda request: Reply.error(500, "the model fell over"))
    data = interactive(ls_client, found, ids[0], "Anything else?")
    (shown,) = data["result"]
    assert shown["from_name"] == "response" and shown["value"]["text"][0].startswith("Prompter could not answer:")
    assert "the model fell over" in shown["value"]["text"][0]


def interactive(ls_client, found, task_id: int, typed: str) -> dict:
    """What Label Studio's labeling screen sends on Shift+Enter in the instruction box."""
    region = {"id": "typed", "from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": [typed]}, "origin": "manual"}
    response = ls_client._http("POST", f"api/ml/{found.ml_backend_id}/interactive-annotating", json={"task": task_id, "context": {"result": [region]}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_instructions_saved_with_annotations_are_kept_and_become_a_version(use_labelstudio, make_project, standin, backend, ls_client):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(INTERACTIVE_CONFIG, [NewTask({"text": f"review number {n}"}) for n in range(3)], title="instructions check")
    prompts.create(project.id, "assist", template="Label: {text}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    publications.connect(project.id, "assist", None, backend.url, ls_client, interactive=True)
    typed = ["Is the reviewer happy?", "Is the reviewer happy?", "What is the tone?"]
    for task_id, text in zip(ids, typed):
        region = {"from_name": "prompt", "to_name": "text", "type": "textarea", "value": {"text": [text]}}
        ls_client.create_annotation(task_id, [region, {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}])
    wait_until(lambda: sum(i.times for i in instructions.listed(project.id)) == 3, 30, what="Label Studio's webhooks to reach the backend")
    listed = instructions.listed(project.id)
    assert [(i.text, i.times, set(i.tasks)) for i in listed] == [("Is the reviewer happy?", 2, {ids[0], ids[1]}), ("What is the tone?", 1, {ids[2]})]
    assert listed[0].annotators == (use_labelstudio.credentials.username,) or "@" in listed[0].annotators[0]

    saved = instructions.save_as_version(project.id, listed[0].text, ls_client)
    assert saved.number == 2 and saved.template == "Is the reviewer happy?\n\nText:\n{text}" and saved.model == "gpt-4o-mini"
    assert saved.controls == ("sentiment",)


def test_the_cli_connects_shows_status_and_disconnects(use_labelstudio, make_project, standin, backend, ls_client):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(answer)
    project, ids = make_project(tasks=[NewTask({"text": "review number 1"})], title="backend cli check")
    prompts.create(project.id, "sentiment", template="Sentiment of: {text}\n{labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    done = _cli("backend", "connect", "--project", str(project.id), "--prompt", "sentiment", "--url", backend.url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model_version"] == "sentiment@v1"
    open_task(ls_client, ids[0])

    done = _cli("backend", "status", "--json")
    assert done.returncode == 0, done.stderr
    (shown,) = json.loads(done.stdout)["projects"]
    assert (shown["project"], shown["model_version"], shown["state"]) == (project.id, "sentiment@v1", "connected")
    (call,) = shown["last_calls"]
    assert (call["why"], call["answered"], call["failed"]) == ("a task opened in Label Studio", 1, 0)

    done = _cli("backend", "disconnect", "--project", str(project.id))
    assert done.returncode == 0, done.stderr
    assert ls_client.ml_backends(project.id) == [] and publications.get(project.id) is None
    assert not [h for h in ls_client.webhooks(project.id) if h["url"].startswith(backend.url)]

    done = _cli("backend", "connect", "--project", str(project.id), "--prompt", "sentiment", "--url", "http://127.0.0.1:9", "--json")
    assert done.returncode == 1 and "Label Studio" in done.stderr and publications.get(project.id) is None


def test_only_members_publish_and_a_publisher_who_left_the_team_spends_no_more(use_labelstudio, make_project, standin, ls_client, monkeypatch, tmp_path):
    team_mode(monkeypatch)
    join("mo@x.com", "member")
    join("vi@x.com", "viewer")
    with identity.acting_as(identity.local_admin()):
        keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(answer)
    project, ids = make_project(tasks=[NewTask({"text": f"review number {n}"}) for n in range(2)], title="backend team check")
    with BackendServer(tmp_path / "team-backend.log") as server:
        with acting("mo@x.com"):
            prompts.create(project.id, "sentiment", template="Sentiment of: {text}\n{labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
        with acting("vi@x.com"), pytest.raises(identity.NotAllowed, match="publish a version to Label Studio"):
            publications.connect(project.id, "sentiment", None, server.url, ls_client)
        assert ls_client.ml_backends(project.id) == []
        with acting("mo@x.com"):
            found = publications.connect(project.id, "sentiment", None, server.url, ls_client)
        assert found.published_by == "mo@x.com"
        open_task(ls_client, ids[0])
        assert standin.request_count == 1 and len(predictions_by_task(ls_client, project.id)[ids[0]]) == 1
        (first,) = runs.runs(project_id=project.id, kind="backend")
        assert first.started_by == "mo@x.com"  # the calls are the publisher's, under their budget

        with identity.acting_as(identity.local_admin()):
            identity.remove("mo@x.com")
        open_task(ls_client, ids[1])
        assert standin.request_count == 1 and ids[1] not in predictions_by_task(ls_client, project.id)
        latest = runs.runs(project_id=project.id, kind="backend")[0]
        (refused,) = runs.failures_of(latest.id)
        assert refused.kind == "not_serving" and "published by mo@x.com, who may no longer spend the team's keys" in refused.example
        assert latest.status == "failed"
