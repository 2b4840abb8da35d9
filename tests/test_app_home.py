"""The home page, through Streamlit's AppTest, with Label Studio up and with it down."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core import settings
from core.labelstudio import NewTask
from core.local_labelstudio import free_port
from tests.conftest import CHOICES_CONFIG, choice

APP = str(settings.REPO_ROOT / "app.py")


def _run() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    return app


def test_home_lists_projects_with_their_counts(use_labelstudio, make_project):
    project, _ = make_project(
        CHOICES_CONFIG,
        [NewTask({"text": "good"}, [(choice("Positive"), True)]), NewTask({"text": "bad"}), NewTask({"text": "so so"})],
        title="Home page check",
    )
    app = _run()

    assert "Connected to Label Studio" in app.success[0].value
    assert use_labelstudio.url in app.success[0].value
    table = app.dataframe[0].value
    row = table[table["id"] == project.id].iloc[0]
    assert (row["project"], row["tasks"], row["ground truth"]) == ("Home page check", 3, 1)
    assert row["open"] == f"{use_labelstudio.url}/projects/{project.id}/data"


def test_home_says_what_to_do_when_label_studio_is_down(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "some-token-value")
    app = _run()

    (error,) = app.error
    assert url in error.value and "connection refused" in error.value and "make run" in error.value
    assert "some-token-value" not in error.value
    assert not app.dataframe


def test_home_explains_a_rejected_token(use_labelstudio, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "wrong-token-0000")
    app = _run()
    (error,) = app.error
    assert "rejected the API token" in error.value and "wrong-token-0000" not in error.value


def test_home_without_any_label_studio_configured():
    app = _run()
    (error,) = app.error
    assert "No Label Studio is configured" in error.value and "make run" in error.value


def test_home_lists_each_prompt_with_its_best_evaluated_version(use_labelstudio, make_project, standin, ls_client):
    from core import keys, prompts, runs
    from core.evaluation import evaluate, subsets
    from tests.standin import Reply

    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": t}, [(choice("Positive"), True)]) for t in ("good", "great", "fine", "nice")], title="Home scores")
    version = prompts.create(project.id, "tone", template="{text}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    prompts.new_version("tone", project.id, template="Tone: {text}")
    standin.respond_with(lambda r: Reply.json({"sentiment": "Positive" if "great" not in r.user_text else "Negative"}))
    runs.execute(evaluate.start(version, subsets.choose(ls_client, project.id), ls_client.label_config(project.id)).id)
    v2 = prompts.version("tone", 2, project.id)
    standin.respond_with(lambda r: Reply.json({"sentiment": "Negative"}))  # v2, evaluated later, scores 0 of 4
    runs.execute(evaluate.start(v2, subsets.choose(ls_client, project.id), ls_client.label_config(project.id)).id)

    app = _run()
    table = app.dataframe[1].value
    assert table.to_dict("records") == [  # the best version, not the latest run
        {"project": "Home scores", "prompt": "tone", "latest": "v2", "model": "gpt-4o-mini", "best": "v1", "accuracy": "75.0%", "accuracy 95%": "30.1–95.4%", "on": "4 ground-truth tasks"}
    ]
