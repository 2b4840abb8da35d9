"""The "In Label Studio" page through AppTest, with the real backend and Label Studio: publishing a
version, the calls Label Studio made with figures from the stand-in's own count, and disconnecting
after a confirmation."""

from __future__ import annotations

import pytest

from core import keys, prompts
from core.backend import publications
from core.labelstudio import NewTask
from tests.helpers import open_page, table
from tests.standin import Reply
from tests.test_backend import predictions_by_task, retrieve_predictions

CALL_COLUMNS = ("at", "why", "version", "tasks", "answered", "failed", "from_cache", "cost_usd", "reason")
# gpt-4o-mini's list price: $0.15 per million input tokens, $0.60 per million output tokens
CALL_COST = 1000 * 0.15 / 1e6 + 10 * 0.60 / 1e6


def answer(request):
    if "breaks the model" in request.last_user_text:
        return Reply.error(500, "the model fell over")
    return Reply.json({"sentiment": "Positive"}, usage=(1000, 10))


@pytest.fixture
def project(use_labelstudio, make_project, standin, backend, monkeypatch):
    monkeypatch.setenv("PROMPTER_BACKEND_URL", backend.url)
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    standin.respond_with(answer)
    texts = ["good soup", "kind staff", "this one breaks the model"]
    project, ids = make_project(tasks=[NewTask({"text": t}) for t in texts], title="backend page check")
    prompts.create(project.id, "sentiment", template="Sentiment of: {text}\n{labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return project, ids


def test_publish_see_the_calls_label_studio_made_and_disconnect(project, standin, ls_client, backend):
    proj, ids = project
    app = open_page("views/7_Label_Studio.py", project_key="lb_project", project_id=proj.id)
    assert [i.value for i in app.info] == ["No version answers inside Label Studio for this project yet: publish one below."]
    assert app.text_input(key="lb_url").value == backend.url
    assert app.checkbox(key="lb_interactive").disabled  # the config has no TextArea to type instructions into
    app.button(key="lb_publish").click().run()
    assert not app.exception, app.exception
    assert [s.value for s in app.success] == ["Published: sentiment@v1 answers for this project in Label Studio. Open a task there to see its pre-label."]
    assert "Label Studio says *connected*" in app.markdown[0].value
    (connected,) = ls_client.ml_backends(proj.id)
    assert connected["model_version"] == "sentiment@v1"
    served = table(app, "project", "version", "interactive", "Label Studio says", "published by").to_dict("records")
    assert served == [{"project": f"backend page check (#{proj.id})", "version": "sentiment@v1", "interactive": False, "Label Studio says": "connected", "published by": "local"}]

    retrieve_predictions(ls_client, proj.id, ids)
    app.run()
    (call,) = table(app, *CALL_COLUMNS).to_dict("records")
    paid = [r for r in standin.requests if "breaks the model" not in r.last_user_text]
    assert (call["why"], call["tasks"], call["answered"], call["failed"]) == ("Retrieve Predictions on 3 tasks", 3, len(paid), 1)
    assert call["cost_usd"] == pytest.approx(len(paid) * CALL_COST) and "the model fell over" in call["reason"]
    assert set(predictions_by_task(ls_client, proj.id)) == set(ids[:2])

    app.button(key="lb_disconnect").click().run()
    assert ls_client.ml_backends(proj.id)  # asked first: nothing done yet
    app.button(key="lb_disconnect_confirm").click().run()
    assert [s.value for s in app.success] == ["Disconnected: sentiment@v1 no longer answers for this project."]
    assert ls_client.ml_backends(proj.id) == [] and publications.get(proj.id) is None
    assert [i.value for i in app.info] == ["No version answers inside Label Studio for this project yet: publish one below."]
