"""A member's own Label Studio token, against the real Label Studio: the annotations they make from
predictions carry their name in Label Studio; without one, the shared connection's user makes them;
the audit trail says who asked either way."""

from __future__ import annotations

import uuid

import httpx

from core import audit, connection, predict, prompts, store
from core.labelstudio import NewPrediction, NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.team import acting, join, plain_deployment  # noqa: F401 - plain_deployment is autouse

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"


def sign_up(url: str, email: str, password: str) -> str:
    """A new Label Studio user, signed up through its own form as a person would; their API token."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        browser.get("/user/signup/")
        signed_up = browser.post(
            "/user/signup/",
            data={"email": email, "password": password, "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": f"{url}/user/signup/"},
        )
        assert signed_up.status_code in (200, 302), signed_up.text[:500]
        token = browser.get("/api/current-user/token")
        token.raise_for_status()
        return token.json()["token"]


def whoami(url: str, token: str) -> int:
    answer = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=30)
    answer.raise_for_status()
    return answer.json()["id"]


def annotations(url: str, token: str, task_id: int) -> list[tuple[int, str]]:
    """(completed_by, chosen label) of each annotation of the task, as Label Studio holds them."""
    answer = httpx.get(f"{url}/api/tasks/{task_id}/annotations/", headers={"Authorization": f"Token {token}"}, timeout=30)
    answer.raise_for_status()
    found = []
    for a in answer.json():
        by = a["completed_by"]
        found.append((by["id"] if isinstance(by, dict) else by, a["result"][0]["value"]["choices"][0]))
    return sorted(found)


def test_annotations_made_from_predictions_carry_the_members_own_label_studio_user(use_labelstudio, make_project, ls_client):
    url, shared_token = use_labelstudio.url, use_labelstudio.credentials.token
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": "I love it"}), NewTask({"text": "Meh"})])
    email = f"ann-{uuid.uuid4().hex[:8]}@x.com"
    ann_token = sign_up(url, email, "a-long-password-123")
    ann_id, shared_id = whoami(url, ann_token), whoami(url, shared_token)
    assert ann_id != shared_id

    join(email, "member", "Ann")
    join("mo@x.com", "member", "Mo")
    with acting("mo@x.com"):
        v1 = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
        v2 = prompts.new_version("sentiment", project.id, note="another")
    ls_client.import_predictions(project.id, [NewPrediction(t, choice("Positive"), v1.model_version) for t in ids])
    ls_client.import_predictions(project.id, [NewPrediction(t, choice("Negative"), v2.model_version) for t in ids])

    with acting(email):
        refused = connection.save_own_token("not-anyones-token-0000")
        assert not refused.ok
        assert connection.own_token(email) is None  # a token Label Studio turns down is not kept
        assert connection.save_own_token(ann_token).ok
        made = predict.to_annotations(v1, ls_client)
    assert made == 2
    with acting("mo@x.com"):  # Mo gave no token of his own: the shared connection's user makes them
        made = predict.to_annotations(v2, ls_client)
    assert made == 2

    for task_id in ids:
        assert annotations(url, shared_token, task_id) == sorted([(ann_id, "Positive"), (shared_id, "Negative")])

    turned = audit.events(action="predictions turned into annotations")
    assert [(e.actor, e.target, e.detail["in Label Studio as"], e.detail["annotations"]) for e in turned] == [
        ("mo@x.com", "sentiment@v2", "the shared connection", 2),
        (email, "sentiment@v1", "their own token", 2),
    ]
    assert [e.actor for e in audit.events(action="own Label Studio token saved")] == [email]  # once: the refused token left no row
    with store.session() as s:
        assert ann_token not in (s.get(store.TeamMember, email).labelstudio_token_encrypted or "")  # kept encrypted
