"""Fault drills for prediction runs: a worker killed (SIGKILL) at five points, Label Studio behind a
proxy that drops answers, answers 502 or stalls, two workers or two runs started at once, a cancel
in the middle. After each, every task holds exactly one prediction of the version, with its new
answer (or, where the run never reached it, its previous one), and no call is paid twice except
those that were out when the worker died: the tests count them.

Everything here is driven by events (the stand-in holds calls until told, the proxy holds or breaks
the request it waits for), never by sleeps. Real Label Studio, stand-in model over HTTP.
"""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass

import pytest

from core import keys, prompts, runs, settings, store
from core.labelstudio import LabelStudioClient, NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import HeldCalls, wait_until
from tests.proxy import FaultProxy, drop_response, hold, hold_response, stall, status, status_after_forward
from tests.standin import Reply

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
LABELS = ("Positive", "Negative", "Neutral")
TASKS = 12
PREVIOUSLY = 6  # tasks 0..5 hold a prediction of the version from an earlier run (all "Neutral")
EXPORT = r"/api/projects/\d+/export"
IMPORT = r"/api/projects/\d+/import/predictions"
PREDICTION = r"/api/predictions/\d+/"


def number_of(request) -> int:
    return int(request.user_text.split("review number ")[1].split("\n")[0])


def right_answer(request):
    return Reply.json({"sentiment": LABELS[number_of(request) % 3]}, usage=(100, 5))


@dataclass
class Drill:
    project_id: int
    ids: list[int]
    version: prompts.Version
    ls: LabelStudioClient

    def new_run(self, **options) -> runs.RunView:
        """A prediction run over every task, asking the model again (not the store) for each."""
        return runs.create(self.version, self.ids, kind="predict", label_config=CHOICES_CONFIG, cache="fresh", **options)

    def predictions(self) -> dict[int, list[str]]:
        """Each task's predictions of the version, as their labels."""
        found: dict[int, list[str]] = collections.defaultdict(list)
        for p in self.ls.predictions(self.project_id):
            assert p.model_version == self.version.model_version
            found[p.task_id].append(p.result[0]["value"]["choices"][0])
        return dict(found)

    def assert_each_task_has_its_new_prediction_once(self) -> None:
        assert self.predictions() == {task: [LABELS[n % 3]] for n, task in enumerate(self.ids)}

    def stored_tasks(self, run_id: int) -> set[int]:
        return {self.ids.index(i.task_id) for i in runs.items(run_id)}


@pytest.fixture
def drill(use_labelstudio, make_project, standin, ls_client) -> Drill:
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    project, ids = make_project(CHOICES_CONFIG, [NewTask({"text": f"review number {n}"}) for n in range(TASKS)])
    version = prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
    standin.respond_with(lambda r: Reply.json({"sentiment": "Neutral"}, usage=(100, 5)))
    earlier = runs.execute(runs.create(version, ids[:PREVIOUSLY], kind="predict", label_config=CHOICES_CONFIG).id, client=ls_client)
    assert earlier.status == "completed"
    standin.reset()
    found = Drill(project.id, ids, version, ls_client)
    assert found.predictions() == {task: ["Neutral"] for task in ids[:PREVIOUSLY]}
    return found


@pytest.fixture
def proxy(labelstudio, monkeypatch):
    """A fault-injecting proxy in front of Label Studio; the app (and its workers) talk through it."""
    with FaultProxy(labelstudio.url) as found:
        monkeypatch.setenv("LABEL_STUDIO_URL", found.url)
        yield found


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def resume_and_check(drill: Drill, standin, run_id: int, out_at_kill: set[int]) -> None:
    """Resume the run (here, talking to Label Studio directly) and check the outcome of the drill."""
    assert runs.get(run_id).interrupted  # the dead worker's process is gone: shown at once, resumable
    resumed = runs.execute(run_id, client=drill.ls)
    assert (resumed.status, resumed.done, resumed.failed) == ("completed", TASKS, 0)
    drill.assert_each_task_has_its_new_prediction_once()
    sent = collections.Counter(number_of(r) for r in standin.requests)
    assert set(sent) == set(range(TASKS))
    paid_twice = {n for n, count in sent.items() if count > 1}
    assert paid_twice == out_at_kill and max(sent.values()) <= 2


# -- a worker killed at five points of a prediction run ----------------------------------------------


def test_killed_before_the_first_call(drill, standin, proxy):
    standin.respond_with(right_answer)
    fetch = proxy.add_rule(method="GET", path=EXPORT, action=hold)
    run = drill.new_run(concurrency=4)
    pid = runs.launch(run.id)
    assert fetch.arrived.wait(60)  # the worker took the run and asks Label Studio for its tasks
    kill(pid)
    fetch.release()
    assert standin.request_count == 0
    resume_and_check(drill, standin, run.id, out_at_kill=set())


def test_killed_in_the_middle_of_the_calls(drill, standin, proxy):
    held = HeldCalls(right_answer)
    standin.respond_with(held)
    run = drill.new_run(concurrency=4)
    pid = runs.launch(run.id)
    held.allow(5)
    held.wait_arrived(5 + 4)  # five answered, four more out and held
    wait_until(lambda: runs.get(run.id).done == 5)
    kill(pid)
    out = {number_of(r) for r in standin.requests} - drill.stored_tasks(run.id)
    assert len(out) == 4
    held.open()
    resume_and_check(drill, standin, run.id, out_at_kill=out)


def test_killed_during_a_chunk_import(drill, standin, proxy):
    standin.respond_with(right_answer)
    imported = proxy.add_rule(method="POST", path=IMPORT, action=hold_response)
    run = drill.new_run(concurrency=4)
    pid = runs.launch(run.id)
    assert imported.forwarded.wait(60)  # Label Studio has saved the chunk; its answer never arrives
    kill(pid)
    out = {number_of(r) for r in standin.requests} - drill.stored_tasks(run.id)
    imported.release()
    resume_and_check(drill, standin, run.id, out_at_kill=out)


def test_killed_between_an_import_and_marking_it_written(drill, standin, proxy):
    standin.respond_with(right_answer)
    imported = proxy.add_rule(method="POST", path=IMPORT, action=hold)
    run = drill.new_run(concurrency=4)
    pid = runs.launch(run.id)
    assert imported.arrived.wait(60)
    lock = sqlite3.connect(settings.load().database_path, timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the worker cannot record what it wrote until this ends
    try:
        imported.release()
        assert imported.forwarded.wait(60)
        wait_until(lambda: any(e.path.endswith("/import/predictions") and e.status == 201 for e in proxy.log))
        out = {number_of(r) for r in standin.requests}
        kill(pid)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    out -= drill.stored_tasks(run.id)
    assert not any(i.written_to_labelstudio for i in runs.items(run.id) if i.task_id in drill.ids[PREVIOUSLY:])
    resume_and_check(drill, standin, run.id, out_at_kill=out)


def test_killed_during_the_final_write(drill, standin, proxy):
    held = HeldCalls(right_answer)
    standin.respond_with(held)
    run = drill.new_run(concurrency=4)
    pid = runs.launch(run.id)
    held.allow(TASKS - 1)
    wait_until(lambda: runs.get(run.id).done == TASKS - 1)
    wait_until(lambda: all(i.written_to_labelstudio for i in runs.items(run.id)), timeout=60)
    last_writes = [proxy.add_rule(method=m, path=p, action=hold_response) for m, p in (("POST", IMPORT), ("PATCH", PREDICTION))]
    held.allow(1)  # the last answer arrives; writing it is the run's last write
    wait_until(lambda: any(rule.forwarded.is_set() for rule in last_writes), timeout=60)
    kill(pid)
    for rule in last_writes:
        rule.release()
    assert len(runs.items(run.id)) == TASKS
    resume_and_check(drill, standin, run.id, out_at_kill=set())


# -- Label Studio behind a faulty network --------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, fault",
    [
        ("POST", IMPORT, drop_response),  # saved, but the answer is lost
        ("POST", IMPORT, status_after_forward(502)),  # saved, then a 502
        ("PATCH", PREDICTION, drop_response),
        ("GET", EXPORT, status(502)),
        ("GET", EXPORT, status(200)),  # a 200 whose body is not JSON (the proxy's own text)
        ("POST", IMPORT, stall(10)),  # a slow answer, not a lost one
    ],
    ids=["import-answer-dropped", "import-saved-then-502", "update-answer-dropped", "tasks-502", "tasks-not-json", "import-stalls-10s"],
)
def test_a_faulty_network_to_label_studio_loses_and_duplicates_nothing(drill, standin, proxy, labelstudio, method, path, fault):
    standin.respond_with(right_answer)
    rule = proxy.add_rule(method=method, path=path, action=fault, times=1)
    run = runs.execute(drill.new_run(concurrency=4).id, client=LabelStudioClient(proxy.url, labelstudio.credentials.token))
    assert rule.matched == 1
    assert (run.status, run.done) == ("completed", TASKS)
    drill.assert_each_task_has_its_new_prediction_once()
    assert sorted(number_of(r) for r in standin.requests) == list(range(TASKS))  # each task paid once


# -- two at once, and a cancel -------------------------------------------------------------------------


def test_two_workers_started_on_one_run_at_once_give_one_engine(drill, standin):
    held = HeldCalls(right_answer)
    standin.respond_with(held)
    run = drill.new_run(concurrency=2)
    command = [sys.executable, "-m", "core", "runs", "work", str(run.id)]
    workers = [subprocess.Popen(command, cwd=settings.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        held.wait_arrived(1)  # one of them works
        wait_until(lambda: any(w.poll() is not None for w in workers))
        (refused,) = [w for w in workers if w.poll() is not None]
        assert refused.returncode == 1
        assert f"error: Run {run.id} is already running (process " in refused.stderr.read()
        held.open()
        (working,) = [w for w in workers if w is not refused]
        assert working.wait(60) == 0
    finally:
        held.open()
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.communicate()
    assert runs.get(run.id).status == "completed"
    assert sorted(number_of(r) for r in standin.requests) == list(range(TASKS))
    drill.assert_each_task_has_its_new_prediction_once()


def test_two_predict_runs_of_one_version_started_at_once_one_is_refused(drill, standin):
    held = HeldCalls(right_answer)
    standin.respond_with(held)
    command = [sys.executable, "-m", "core", "predict", "--prompt", "sentiment", "--json"]
    both = [subprocess.Popen(command, cwd=settings.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        wait_until(lambda: any(p.poll() is not None for p in both), timeout=60)
        (refused,) = [p for p in both if p.poll() is not None]
        assert refused.returncode == 1
        assert "error: sentiment v1 already has a run going: run " in refused.stderr.read()
        held.open()
        (working,) = [p for p in both if p is not refused]
        assert working.wait(60) == 0
    finally:
        held.open()
        for p in both:
            if p.poll() is None:
                p.kill()
            p.communicate()
    predict_runs = runs.runs(prompt="sentiment", kind="predict")
    assert len(predict_runs) == 2  # the earlier run, and exactly one of the two
    assert sorted(number_of(r) for r in standin.requests) == list(range(PREVIOUSLY, TASKS))  # the others came from the store


def test_a_cancel_in_the_middle_leaves_the_unreached_tasks_their_previous_prediction(drill, standin):
    held = HeldCalls(right_answer)
    standin.respond_with(held)
    run = drill.new_run(concurrency=2)
    worker = threading.Thread(target=runs.execute, args=(run.id,), kwargs={"client": drill.ls})
    worker.start()
    held.allow(3)
    held.wait_arrived(3 + 2)
    asked = store.utcnow()
    runs.cancel(run.id)
    wait_until(lambda: runs.get(run.id).heartbeat_at > asked)  # the worker has seen the cancel
    held.open()
    worker.join(60)
    cancelled = runs.get(run.id)
    assert (cancelled.status, cancelled.done) == ("cancelled", 5)
    reached = drill.stored_tasks(run.id)
    expected = {task: [LABELS[n % 3]] for n, task in enumerate(drill.ids) if n in reached}
    expected |= {task: ["Neutral"] for n, task in enumerate(drill.ids) if n < PREVIOUSLY and n not in reached}
    assert drill.predictions() == expected


def test_writing_reads_only_the_predictions_of_the_tasks_written(drill, standin, proxy):
    """A chunk's write reads what Label Studio holds for its own tasks, and only for those the export
    showed with predictions (here the six of the earlier run), never every prediction of the project:
    a write costs the same however large the project has grown."""
    standin.respond_with(right_answer)
    run = runs.execute(drill.new_run().id)
    assert (run.status, run.done) == ("completed", TASKS)
    drill.assert_each_task_has_its_new_prediction_once()
    asked = [(e.method, e.path) for e in proxy.log]
    assert ("GET", "/api/predictions/") not in asked  # the project's whole list
    assert asked.count(("GET", "/api/tasks")) == 1  # the six tasks predicted before, in one read
    changed = [n for n in range(PREVIOUSLY) if LABELS[n % 3] != "Neutral"]  # the others already say it: left alone
    assert sum(1 for method, path in asked if method == "PATCH" and path.startswith("/api/predictions/")) == len(changed) == 4
