"""Every page, in every bad state we know of, says what is wrong instead of crashing: no exception
reaches Streamlit's red box, and the page shows the sentence that explains it."""

from __future__ import annotations

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from core import connection, keys, prompts, store, vault
from core.labelstudio import NewTask
from core.local_labelstudio import free_port
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import APP, picker

HOME, KEYS, PROMPTS, EVALUATE, PREDICT = "views/home.py", "views/1_Keys.py", "views/2_Prompts.py", "views/3_Evaluate.py", "views/4_Predict.py"
PROJECT_PICKER = {PROMPTS: "project", EVALUATE: "ev_project", PREDICT: "pr_project"}
TEMPLATE = "Review: {text}\nAnswer with {labels}"


def visit(page: str, project_id: int | None = None) -> AppTest:
    """The page as a user opens it, with the project picked (and, on Prompts, the prompt 'sentiment')."""
    app = AppTest.from_file(APP, default_timeout=90)
    app.run()
    if page != HOME:
        app.switch_page(page).run()
    if project_id is not None and page in PROJECT_PICKER and has(app, PROJECT_PICKER[page]):
        app.selectbox(key=PROJECT_PICKER[page]).set_value(project_id).run()
        if page == PROMPTS and has(app, "prompt") and "sentiment" in picker(app, "Prompt").options:
            picker(app, "Prompt").set_value("sentiment").run()
    return app


def has(app: AppTest, selectbox: str) -> bool:
    return not app.exception and any(s.key == selectbox for s in app.selectbox)


def said(app: AppTest) -> str:
    """Every sentence the page shows: errors, warnings, notes, captions, text and table cells."""
    elements = [*app.error, *app.warning, *app.info, *app.success, *app.caption, *app.markdown]
    cells = [frame.value.to_string() for frame in app.dataframe]
    return "\n".join([*(str(e.value) for e in elements), *cells])


def fault(app: AppTest, page: str, expected: str) -> str | None:
    """What is wrong with the page: a crash, or the explanation missing; None when it explains."""
    if app.exception:
        return f"{page} crashed: {[e.value for e in app.exception]}"
    if expected not in said(app):
        return f"{page} does not say {expected!r}; it says:\n{said(app)}"
    return None


def assert_explains(app: AppTest, page: str, expected: str) -> None:
    problem = fault(app, page, expected)
    assert problem is None, problem


def assert_every_page_explains(expected: dict[str, str], project_id: int | None = None) -> None:
    problems = [fault(visit(page, project_id), page, sentence) for page, sentence in expected.items()]
    assert not any(problems), "\n\n".join(p for p in problems if p)


@pytest.fixture
def project(use_labelstudio, make_project, standin):
    """A project with one ground-truth task and the prompt 'sentiment' v1, on the key 'team'."""
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    proj, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "Great value"}, [(choice("Positive"), True)])], title="Sweep check")
    prompts.create(proj.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return proj


def test_label_studio_unreachable(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "some-token-0000000000")
    unavailable = f"Label Studio is not available. Cannot reach Label Studio at {url}"
    assert_every_page_explains(
        {
            HOME: f"Cannot reach Label Studio at {url}",
            KEYS: "LABEL_STUDIO_URL is set in the environment",
            PROMPTS: unavailable,
            EVALUATE: unavailable,
            PREDICT: unavailable,
        }
    )


def test_no_label_studio_configured_and_an_empty_database():
    assert_every_page_explains({page: "No Label Studio is configured" for page in (HOME, PROMPTS, EVALUATE, PREDICT)} | {KEYS: "No provider keys yet"})


def test_an_empty_database_with_a_project(use_labelstudio, make_project):
    proj, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "hello"})], title="Sweep empty")
    assert_every_page_explains(
        {
            HOME: "No prompts yet: write one on the Prompts page.",
            KEYS: "No provider keys yet",
            PROMPTS: "No model-provider keys yet",
            EVALUATE: "This project has no prompts yet",
            PREDICT: "This project has no prompts yet",
        },
        proj.id,
    )


def test_a_project_deleted_from_label_studio_while_its_prompts_remain(use_labelstudio, ls_client, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    kept, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "kept"})], title="Sweep kept")
    gone = ls_client.create_project("Sweep gone", CHOICES_CONFIG)
    ls_client.import_tasks(gone.id, [NewTask({"text": "gone"})])
    prompts.create(gone.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    opened = {page: visit(page, gone.id) for page in PROJECT_PICKER}  # open on it, then it goes
    ls_client.delete_project(gone.id)

    problems = [fault(visit(HOME), HOME, f"#{gone.id} (not in Label Studio)")]
    for page, app in opened.items():
        app.run()
        problems.append(fault(app, page, f"Project #{gone.id} is no longer in Label Studio (deleted, or hidden from this token); pick another."))
    assert not any(problems), "\n\n".join(p for p in problems if p)
    assert all(app.selectbox(key=PROJECT_PICKER[page]).value == kept.id for page, app in opened.items())


GONE = "sentiment@v1 uses the key 'team', which no longer exists; add it again on the Keys page, or save a new version with another key."


def test_a_version_whose_key_was_deleted(project):
    keys.remove("team")
    assert_every_page_explains({HOME: "sentiment", KEYS: "No provider keys yet", PROMPTS: GONE, EVALUATE: GONE, PREDICT: GONE}, project.id)
    assert visit(EVALUATE, project.id).button(key="ev_start").disabled
    assert visit(PREDICT, project.id).button(key="pr_start").disabled


def test_a_version_whose_key_was_renamed(project):
    keys.update("team", name="team-renamed")
    assert_every_page_explains({PROMPTS: GONE, EVALUATE: GONE, PREDICT: GONE}, project.id)


def test_a_key_whose_environment_variable_is_unset(use_labelstudio, make_project, standin, monkeypatch):
    monkeypatch.delenv("TEAM_KEY", raising=False)
    keys.add("team", "openai", api_key_env="TEAM_KEY", base_url=standin.base_url)
    proj, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "Great value"}, [(choice("Positive"), True)])], title="Sweep env")
    prompts.create(proj.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    unusable = "sentiment@v1 uses the key 'team', which cannot be used now: the environment variable TEAM_KEY is not set"
    assert_every_page_explains({KEYS: "the environment variable TEAM_KEY is not set", PROMPTS: unusable, EVALUATE: unusable, PREDICT: unusable}, proj.id)
    assert visit(PREDICT, proj.id).button(key="pr_start").disabled


def test_a_version_without_a_model(project):
    with store.writing() as s:  # v2 as an older release saved it: it let a model of only spaces through
        prompt_id = s.exec(select(store.Prompt)).one().id
        s.add(store.PromptVersion(prompt_id=prompt_id, number=2, template=TEMPLATE, controls=["sentiment"], provider_key="team", model=""))
    no_model = "sentiment@v2 names no model; save a new version with a model on the Prompts page."
    assert_every_page_explains({PROMPTS: no_model, EVALUATE: no_model, PREDICT: no_model}, project.id)


@pytest.mark.parametrize("broken", ["environment", "file"])
def test_a_malformed_secret_key(project, monkeypatch, prompter_home, broken):
    connection.save("http://127.0.0.1:9", "ls-token-saved-0000000000")  # a saved token to read, as well as the key
    if broken == "environment":
        monkeypatch.setenv("PROMPTER_SECRET_KEY", "not-a-key")
        sentence = "PROMPTER_SECRET_KEY is not a valid key"
    else:
        (prompter_home / vault.KEY_FILE).write_text("not-a-key\n")
        sentence = f"{prompter_home / vault.KEY_FILE} does not hold a valid key"
    assert_every_page_explains({page: sentence for page in (HOME, KEYS, PROMPTS, EVALUATE, PREDICT)}, project.id)


def test_a_template_naming_no_output(project):
    app = visit(PROMPTS, project.id)
    app.text_area(key="ed_template").input("Review: {text}\nAnswer with {labels:typo}").run()
    assert_explains(app, PROMPTS, "The template cannot be filled: {labels:typo} names no output of this prompt; the outputs are: sentiment.")
    app.button(key="try").click().run()
    assert_explains(app, PROMPTS, "Cannot try yet: template: {labels:typo} names no output of this prompt; the outputs are: sentiment.")
    app.button(key="save").click().run()
    assert_explains(app, PROMPTS, "Not saved: template: {labels:typo} names no output of this prompt; the outputs are: sentiment.")


def test_a_label_config_changed_since_the_version_was_saved(use_labelstudio, ls_client, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    proj, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "Great value"})], title="Sweep config")
    prompts.create(proj.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    renamed = CHOICES_CONFIG.replace('name="sentiment"', 'name="mood"')
    response = ls_client._http("PATCH", f"api/projects/{proj.id}/", json={"label_config": renamed})
    assert response.status_code == 200, response.text
    # the Prompts editor drops the output the config lost; neither it nor Evaluate crashes
    assert_every_page_explains({PROMPTS: "", EVALUATE: "", PREDICT: "No estimate: The labeling config has no output 'sentiment' that Prompter can fill (it can fill: mood)."}, proj.id)


def test_a_malformed_port_setting(monkeypatch):
    monkeypatch.setenv("PROMPTER_LABEL_STUDIO_PORT", "eighty")
    assert_every_page_explains({page: "PROMPTER_LABEL_STUDIO_PORT must be a port number" for page in (HOME, KEYS, PROMPTS, EVALUATE, PREDICT)})
