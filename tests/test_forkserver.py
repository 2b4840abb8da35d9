"""Run workers forked from a warm server (core/forkserver.py), as the dashboard starts them: the run is
worked exactly as by a fresh worker process, in a process of its own session and in the environment
of the launch; when the server is gone, a fresh process works the run instead.

Real Label Studio, the stand-in model over HTTP; the calls are held until the test lets them through.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from core import forkserver, keys, prompts, runs, settings, store
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import HeldCalls, wait_for_run, wait_until
from tests.standin import Reply

REVIEWS = {"Great value": "Positive", "Broke at once": "Negative", "It is a lamp": "Neutral"}
FORKED = "forked by the fork server"


def right_answer(request) -> Reply:
    return Reply.json({"sentiment": next(label for text, label in REVIEWS.items() if text in request.user_text)})


@pytest.fixture
def forking(use_labelstudio, monkeypatch):
    """The fork server on, started for this test's environment, and ready."""
    monkeypatch.setenv(forkserver.ENABLED_VARIABLE, "1")
    assert forkserver.wait_until_ready(60)
    yield
    forkserver.stop()


@pytest.fixture
def project(make_project, standin):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    made, ids = make_project(CHOICES_CONFIG, [NewTask({"text": text}) for text in REVIEWS], title="Forked workers")
    return made.id, ids


def new_run(project_id: int, ids: list[int]) -> runs.RunView:
    """A prediction run of a new prompt over the project's tasks, asking the model for each."""
    name = f"sentiment-{len(prompts.latest_versions(project_id)) + 1}"
    version = prompts.create(project_id, name, template="Review: {text}\n{labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    return runs.create(version, ids, kind="predict", label_config=CHOICES_CONFIG, cache="fresh")


def launch_held(project, standin, *, calls_out: int) -> tuple[runs.RunView, int, HeldCalls]:
    """A new run launched with the stand-in holding its calls, once ``calls_out`` of them are out."""
    held = HeldCalls(right_answer)
    standin.respond_with(held)
    run = new_run(*project)
    pid = runs.launch(run.id)
    held.wait_arrived(calls_out)
    return run, pid, held


def log_of(run_id: int) -> str:
    log = settings.load().home / "logs" / f"run-{run_id}.log"
    return log.read_text() if log.exists() else ""


def parent_and_session(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[3])


def written(ls_client, project_id: int, model_version: str) -> dict[int, list[str]]:
    return {p.task_id: p.result[0]["value"]["choices"] for p in ls_client.predictions(project_id) if p.model_version == model_version}


def test_a_run_started_through_the_warm_server_is_worked_by_a_process_of_its_own(forking, project, standin, ls_client):
    project_id, ids = project
    run, pid, held = launch_held(project, standin, calls_out=1)  # the worker is on the run, its first call held
    parent, session = parent_and_session(pid)
    assert parent == forkserver.server_pid() and pid != os.getpid()
    assert session == pid  # its own session: a Ctrl-C or a hang-up of the dashboard's terminal does not reach it
    assert runs.get(run.id).worker_pid == pid
    held.open()
    done = wait_for_run(run.id)
    assert (done.status, done.done, done.failed) == ("completed", 3, 0)
    assert FORKED in log_of(run.id)
    assert written(ls_client, project_id, done.model_version) == {task: [label] for task, label in zip(ids, REVIEWS.values())}


def test_a_forked_worker_works_in_the_environment_of_the_launch_not_of_the_server(forking, project, standin, monkeypatch, tmp_path):
    project_id, ids = project
    standin.respond_with(right_answer)
    server = forkserver.server_pid()
    # another PROMPTER_HOME after the server started: the worker must use the new store, not the old
    monkeypatch.setenv("PROMPTER_HOME", str(tmp_path / "another-home"))
    store.forget_engines()
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    run = new_run(project_id, ids)
    runs.launch(run.id)
    done = wait_for_run(run.id)
    assert (done.status, done.done) == ("completed", 3)
    assert FORKED in log_of(run.id) and forkserver.server_pid() == server


def test_a_server_that_is_gone_is_replaced_and_the_run_starts_all_the_same(forking, project, standin):
    project_id, ids = project
    standin.respond_with(right_answer)
    os.kill(forkserver.server_pid(), signal.SIGKILL)
    run = new_run(project_id, ids)
    runs.launch(run.id)
    done = wait_for_run(run.id)
    assert (done.status, done.done) == ("completed", 3)
    assert FORKED not in log_of(run.id)


def test_a_forked_worker_killed_mid_run_leaves_the_run_interrupted_and_resumable(forking, project, standin, ls_client):
    project_id, ids = project
    run, pid, held = launch_held(project, standin, calls_out=3)
    os.kill(pid, signal.SIGKILL)
    # the server reaps it (no zombie that would look alive), so the run is seen stopped at once
    wait_until(lambda: runs.status_of(runs.get(run.id)) == "interrupted")
    held.open()
    runs.resume_in_background(run.id)
    done = wait_for_run(run.id)
    assert (done.status, done.done, done.failed) == ("completed", 3, 0)
    assert written(ls_client, project_id, done.model_version) == {task: [label] for task, label in zip(ids, REVIEWS.values())}
