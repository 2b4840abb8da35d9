"""A newcomer is led through the loop and nothing is chosen for them that could cost money (AppTest,
real Label Studio, stand-in): each page says the next step, and the pickers start from what was last
worked on, not from the first item of a list."""

from __future__ import annotations

import pytest

from core import keys, prompts, runs
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import open_page, picker, table
from tests.standin import Reply

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"


def captions(app) -> list[str]:
    return [c.value for c in app.caption]


def test_home_on_an_empty_dashboard_says_the_first_step(use_labelstudio, make_project):
    make_project(CHOICES_CONFIG, [NewTask({"text": "a"})], title="Empty start")
    app = open_page("views/home.py")
    assert "Prompter needs a model to ask: add an OpenAI, Azure OpenAI or OpenAI-compatible key first." in captions(app)


def test_each_step_points_to_the_next(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": "good"}, [(choice("Positive"), True)])], title="Guided")
    keys_page = open_page("views/1_Keys.py")
    assert "The key is ready: next, write a prompt against a Label Studio project." in captions(keys_page)

    version = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    prompts_page = open_page("views/2_Prompts.py", project_key="project", project_id=project.id)
    assert picker(prompts_page, "Prompt").value == "sentiment"  # the prompt last worked on is open
    assert "Next, measure sentiment@v1 against the project's ground truth." in captions(prompts_page)

    standin.respond_with(lambda r: Reply.json({"sentiment": "Positive"}))
    runs.execute(runs.create(version, ids, kind="evaluate", label_config=CHOICES_CONFIG).id)
    evaluate_page = open_page("views/3_Evaluate.py", project_key="ev_project", project_id=project.id)
    assert "v1 scored 100.0%. Label the whole project with it, or write a better version on the Prompts page first." in captions(evaluate_page)
    assert table(evaluate_page, "task", "text", "ground truth", "answer", "correct", "failed", "error", "link")["text"].tolist() == ["good"]


def test_pages_start_from_the_project_prompt_and_key_last_worked_on(use_labelstudio, make_project, standin):
    keys.add("aaa-dead", "openai-compatible", base_url="http://127.0.0.1:9/v1")  # first by name
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    worked_on, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "a"})], title="Worked on")
    prompts.create(worked_on.id, "b-prompt", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    prompts.create(worked_on.id, "a-prompt", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    prompts.new_version("b-prompt", worked_on.id, note="the one being improved")
    newer, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "b"})], title="Created a minute ago")  # newest: first in the list

    for page, project_key, prompt_key in (("views/3_Evaluate.py", "ev_project", "ev_prompt"), ("views/4_Predict.py", "pr_project", "pr_prompt")):
        app = open_page(page)
        assert app.selectbox(key=project_key).value == worked_on.id, page
        assert app.selectbox(key=prompt_key).value == "b-prompt", page

    app = open_page("views/2_Prompts.py")
    assert app.selectbox(key="project").value == worked_on.id
    picker(app, "Prompt").set_value("(new prompt)").run()
    assert app.selectbox(key="ed_key").value == "team"  # the key last used, not the first by name


def test_a_prompt_is_archived_restored_and_deleted_only_without_runs(use_labelstudio, make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": "a"})], title="Archive")
    ran = prompts.create(project.id, "ran", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    prompts.create(project.id, "draft", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    runs.execute(runs.create(ran, ids, kind="evaluate", label_config=CHOICES_CONFIG).id)

    app = open_page("views/2_Prompts.py", project_key="project", project_id=project.id)
    picker(app, "Prompt").set_value("ran").run()
    app.button(key="delete").click().run()
    app.button(key="delete_confirm").click().run()
    assert "Not deleted: prompt: 'ran' has runs, which are the record of what it cost and scored; archive it instead." in [e.value for e in app.error]
    app.button(key="archive").click().run()
    assert [v.prompt for v in prompts.latest_versions(project.id)] == ["draft"]
    assert picker(app, "Prompt").options == ["(new prompt)", "draft"]  # hidden from the picker
    assert len(runs.runs(prompt="ran")) == 1  # its runs are kept

    app.button(key="restore_ran").click().run()
    assert picker(app, "Prompt").value == "ran" and [v.prompt for v in prompts.latest_versions(project.id)] == ["draft", "ran"]

    picker(app, "Prompt").set_value("draft").run()
    app.button(key="delete").click().run()
    app.button(key="delete_confirm").click().run()
    assert [v.prompt for v in prompts.latest_versions(project.id)] == ["ran"] and "Deleted draft." in [s.value for s in app.success]


def test_the_commands_archive_restore_and_delete(use_labelstudio, make_project, standin):
    import subprocess
    import sys

    from core import settings

    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "a"})], title="Archive CLI")
    prompts.create(project.id, "p", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "prompts", *args], cwd=settings.REPO_ROOT, capture_output=True, text=True, timeout=60)

    assert cli("archive", "p").stdout == "Archived prompt 'p'.\n" and prompts.latest_versions() == []
    assert "p" in cli("list", "--archived").stdout
    assert cli("restore", "p").returncode == 0 and [v.prompt for v in prompts.latest_versions()] == ["p"]
    assert cli("delete", "p").returncode == 0 and prompts.latest_versions() == [] and prompts.latest_versions(archived=True) == []
