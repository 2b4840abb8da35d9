"""Runs spread over workers (core.workers, core.chunks) against a real PostgreSQL server, the real
Label Studio and the stand-in: `python -m core worker` processes share a run's chunks; twenty runs on
three workers, each task done once; a worker killed with -9 mid-chunk and the others finishing its
chunks; a spending limit held across workers; cancel; answers a chunk could not write, written by the
run's last chunk; a chunk beating through its last write; a run queued behind another; no worker
alive."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from typing import Iterator

import pytest
from sqlmodel import select

from core import budgets, chunks, keys, prompts, runs, settings, store, vault, workers
from core.labelstudio import NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.helpers import HeldCalls, wait_for_run, wait_until
from tests.proxy import FaultProxy, hold, status
from tests.standin import Reply

LABELS = ("Positive", "Negative", "Neutral")
CHUNK = 3
PER_CALL = (100 * 0.15 + 5 * 0.60) / 1e6  # gpt-4o-mini's list price, 100 tokens in and 5 out


@pytest.fixture
def team_store(postgres, prompter_home, monkeypatch) -> Iterator[None]:
    """A fresh PostgreSQL database as the store, with the team's key in the environment, chunks of
    three tasks, and workers that beat every second (silent for 4 s: taken for dead)."""
    name = postgres.create_database()
    monkeypatch.setenv("PROMPTER_DATABASE_URL", postgres.url(name))
    monkeypatch.setenv("PROMPTER_SECRET_KEY", vault.new_key())
    monkeypatch.setenv("PROMPTER_CHUNK_TASKS", str(CHUNK))
    monkeypatch.setenv("PROMPTER_WORKER_HEARTBEAT_SECONDS", "1")
    store.forget_engines()
    yield
    store.forget_engines()
    postgres.drop_database(name)


class Workers:
    """`python -m core worker` processes, as on other machines."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            self.processes.append(
                subprocess.Popen([sys.executable, "-m", "core", "worker"], cwd=settings.REPO_ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )
        wait_until(lambda: workers.alive() >= count, timeout=60, what=f"{count} workers alive")

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        next(p for p in self.processes if p.pid == pid).wait(10)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def worker_pool(team_store) -> Iterator[Workers]:
    pool = Workers()
    yield pool
    pool.stop()


@pytest.fixture
def project(team_store, use_labelstudio, make_project, standin, ls_client):
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    tasks = [NewTask({"text": f"review number {n}"}, [(choice(LABELS[n % 3]), True)]) for n in range(12)]
    project, ids = make_project(CHOICES_CONFIG, tasks)
    return project, ids, ls_client.label_config(project.id)


def number_of(request) -> int:
    return int(request.user_text.split("review number ")[1].split("\n")[0])


def answer(request) -> Reply:
    return Reply.json({"sentiment": LABELS[number_of(request) % 3]}, usage=(100, 5))


def new_version(project_id: int, name: str = "sentiment"):
    return prompts.create(project_id, name, template="Sentiment of: {text}\nAnswer with {labels}", controls=["sentiment"], provider_key="team", model="gpt-4o-mini")


def reserved(run_id: int) -> float:
    with store.session() as s:
        return s.get(store.Run, run_id).reserved_usd


def workers_of(run_id: int) -> set[str]:
    return {c.worker for c in chunks.progress(run_id) if c.worker}


def test_one_runs_chunks_are_worked_by_several_workers_at_once_and_each_task_once(project, worker_pool, standin, ls_client):
    proj, ids, config = project
    held = HeldCalls(answer)
    standin.respond_with(held)
    worker_pool.start(3)
    run = runs.create(new_version(proj.id), ids, kind="predict", label_config=config)
    assert runs.launch(run.id) is None  # workers are alive: the dashboard only starts and follows
    wait_until(lambda: len({c.worker for c in chunks.progress(run.id) if c.status == "working"}) >= 2, what="two workers on the run at once")
    held.open()
    done = wait_for_run(run.id)
    assert (done.status, done.done, done.failed) == ("completed", 12, 0)
    assert len(workers_of(run.id)) >= 2
    assert [c.tasks for c in chunks.progress(run.id)] == [CHUNK] * 4 and all(c.status == "done" for c in chunks.progress(run.id))
    assert sorted(number_of(r) for r in standin.requests) == list(range(12))
    assert sorted(p.task_id for p in ls_client.predictions(proj.id)) == sorted(ids)
    assert done.cost_usd == pytest.approx(12 * PER_CALL)


def test_twenty_runs_on_three_workers_one_killed_mid_chunk_each_task_done_once(project, worker_pool, standin):
    proj, ids, config = project
    standin.respond_with(lambda r: Reply.json({"sentiment": LABELS[number_of(r) % 3]}, usage=(100, 5), delay=0.05))
    worker_pool.start(3)
    started = []
    for n in range(20):
        version = new_version(proj.id, f"prompt {n}")
        started.append(runs.create(version, ids[:6], kind="evaluate", label_config=config, cache="fresh"))  # every call sent
        runs.launch(started[-1].id)
    # kill the worker of a chunk being worked, while its calls are out
    wait_until(lambda: any(c.status == "working" and c.finished < c.tasks for r in started for c in chunks.progress(r.id)), what="a chunk being worked")
    victim_run, victim_chunk, victim = next((r.id, c.number, c.worker) for r in started for c in chunks.progress(r.id) if c.status == "working")
    worker_pool.kill(int(victim.split(":")[1]))

    ended = [wait_for_run(r.id, timeout=120) for r in started]
    assert [(r.status, r.done, r.failed) for r in ended] == [("completed", 6, 0)] * 20
    for r in ended:
        assert sorted(i.task_id for i in runs.items(r.id)) == sorted(ids[:6])  # one item per task
    sent = collections.Counter((r.body["model"], r.user_text) for r in standin.requests if r.body.get("messages"))
    assert len(sent) == 6  # the same six prompts, sent for twenty versions
    per_prompt = collections.Counter(number_of(r) for r in standin.requests if r.body.get("messages"))
    twice = sum(count - 20 for count in per_prompt.values())
    assert 0 <= twice <= CHUNK  # only the calls the killed worker had out were paid twice
    taken_over = next(c for c in chunks.progress(victim_run) if c.number == victim_chunk)
    assert taken_over.status == "done" and taken_over.worker != victim  # the dead worker's chunk, finished by another
    assert len({w for r in started for w in workers_of(r.id)} - {victim}) == 2  # both others worked


def test_a_spending_limit_holds_for_the_run_across_workers(project, worker_pool, standin):
    proj, ids, config = project
    standin.respond_with(answer)
    worker_pool.start(3)
    limit = 5.5 * PER_CALL
    run = runs.create(new_version(proj.id), ids, kind="predict", label_config=config, max_cost_usd=limit)
    runs.launch(run.id)
    stopped = wait_for_run(run.id, timeout=90)
    assert stopped.status == "stopped" and "spending limit" in stopped.status_reason
    assert stopped.cost_usd <= limit and 1 <= stopped.done <= 5
    assert standin.request_count == stopped.done  # nothing was sent past the limit
    assert reserved(run.id) == pytest.approx(0.0, abs=1e-12)  # every hold given back


def test_cancel_stops_every_chunk(project, worker_pool, standin):
    proj, ids, config = project
    held = HeldCalls(answer)
    standin.respond_with(held)
    worker_pool.start(2)
    run = runs.create(new_version(proj.id), ids, kind="predict", label_config=config)
    runs.launch(run.id)
    wait_until(lambda: held.arrived >= 2, what="calls out")
    runs.cancel(run.id)
    held.open()
    ended = wait_for_run(run.id, timeout=60)
    assert ended.status == "cancelled" and ended.finished < 12
    assert all(c.status == "done" for c in chunks.progress(run.id))
    assert standin.request_count == ended.finished  # the calls out when it was cancelled finished; no other was sent


def test_what_a_run_paid_before_the_month_turned_is_last_months_across_workers(project, standin, monkeypatch):
    proj, ids, config = project
    standin.respond_with(answer)
    budgets.set_key_budget("team", 4.5 * PER_CALL)  # room for 4 calls a month
    run = runs.create(new_version(proj.id), ids[:9], kind="predict", label_config=config)
    first, *rest = chunks.plan(run.id)[0]

    chunks.work(first.id)  # 3 calls, paid this month
    turned = store.utcnow()
    monkeypatch.setattr(budgets, "month_start", lambda now=None: turned)  # a new month begins
    for chunk in rest:
        chunks.work(chunk.id)

    ended = runs.get(run.id)
    assert (ended.status, ended.done, standin.request_count) == ("stopped", 7, 7)  # 3 last month, then the new month's 4
    assert ended.status_reason == (  # 4.5, and 4 calls of $0.000018
        "Stopped before passing the monthly budget of the key 'team' ($0.000081): this month's spend on it is $0.000072, "
        "this run's part $0.000072. An admin can raise the budget; then resume."
    )
    assert [c.finished for c in chunks.progress(run.id)] == [3, 3, 1]


@pytest.fixture
def refusing_imports(labelstudio, monkeypatch):
    """Label Studio behind a proxy that answers 503 to every prediction import until the rule is
    stopped, and chunks that give up on a write at its first failure."""
    monkeypatch.setattr(runs, "LABEL_STUDIO_GRACE", 0.0)
    with FaultProxy(labelstudio.url) as proxy:
        monkeypatch.setenv("LABEL_STUDIO_URL", proxy.url)
        yield proxy.add_rule(method="POST", path=r"/api/projects/\d+/import/predictions", action=status(503), times=None)


def written(run_id: int) -> list[bool]:
    return [item.written_to_labelstudio for item in runs.items(run_id)]


def test_the_last_chunk_writes_the_answers_another_chunk_could_not(project, standin, refusing_imports, ls_client):
    proj, ids, config = project
    standin.respond_with(answer)
    run = runs.create(new_version(proj.id), ids[:6], kind="predict", label_config=config)
    first, second = chunks.plan(run.id)[0]

    chunks.work(first.id)  # its write refused: it gives up, its answers kept in the store
    assert refusing_imports.matched >= 1
    assert runs.get(run.id).status == "running" and written(run.id) == [False] * 3
    refusing_imports.stop()
    chunks.work(second.id)

    done = runs.get(run.id)
    assert (done.status, done.done, done.failed) == ("completed", 6, 0)
    assert written(run.id) == [True] * 6
    found = collections.Counter(p.task_id for p in ls_client.predictions(proj.id))
    assert found == collections.Counter(ids[:6])  # each task once
    assert standin.request_count == 6  # nothing asked again


def test_answers_left_unwritten_at_the_end_fail_the_run_until_a_resume_writes_them(project, standin, refusing_imports, ls_client):
    proj, ids, config = project
    standin.respond_with(answer)
    run = runs.create(new_version(proj.id), ids[:6], kind="predict", label_config=config)
    for chunk in chunks.plan(run.id)[0]:
        chunks.work(chunk.id)
    failed = runs.get(run.id)
    assert failed.status == "failed" and failed.done == 6
    assert "could not be reached to write 6 results" in failed.status_reason

    refusing_imports.stop()
    new, waiting = chunks.plan(run.id)  # the resume: chunks of the answers to write, no call
    assert [c.task_ids for c in new] == [ids[:3], ids[3:6]] and not waiting
    for chunk in new:
        chunks.work(chunk.id)
    assert runs.get(run.id).status == "completed" and written(run.id) == [True] * 6
    assert sorted(p.task_id for p in ls_client.predictions(proj.id)) == sorted(ids[:6])
    assert standin.request_count == 6


def test_a_chunk_beats_while_its_last_write_waits_on_label_studio(project, standin, labelstudio, monkeypatch):
    proj, ids, config = project
    standin.respond_with(answer)
    with FaultProxy(labelstudio.url) as proxy:
        monkeypatch.setenv("LABEL_STUDIO_URL", proxy.url)
        held = proxy.add_rule(method="POST", path=r"/api/projects/\d+/import/predictions", action=hold)
        run = runs.create(new_version(proj.id), ids[:3], kind="predict", label_config=config)
        (chunk,), _ = chunks.plan(run.id)
        worker = threading.Thread(target=chunks.work, args=(chunk.id,))
        worker.start()
        assert held.arrived.wait(60)
        wait_until(lambda: len(runs.items(run.id)) == 3, what="every answer stored")
        for _ in range(2):  # not one last beat before the end: it goes on beating
            beat = runs.get(run.id).heartbeat_at
            wait_until(lambda: runs.get(run.id).heartbeat_at > beat, what="a heartbeat while the write waits")
        assert not runs.get(run.id).interrupted
        held.release()
        worker.join(60)
    assert runs.get(run.id).status == "completed"


def test_a_run_queued_behind_another_waits_for_the_workers_and_keeps_its_version_busy(project, worker_pool, standin, monkeypatch):
    proj, ids, config = project
    held = HeldCalls(answer)
    standin.respond_with(held)
    worker_pool.start(1)  # one chunk at a time: the second run's chunks wait in the queue
    first = runs.create(new_version(proj.id, "first"), ids, kind="predict", label_config=config)
    runs.launch(first.id)
    wait_until(lambda: held.arrived >= 1, what="the worker on the first run")
    version = new_version(proj.id, "second")
    queued = runs.create(version, ids, kind="predict", label_config=config)
    runs.launch(queued.id)
    monkeypatch.setattr(runs, "STALE_AFTER", timedelta(seconds=1))  # here: a run silent for 1 s has lost its worker
    wait_until(lambda: runs.worker_gone(runs.WORKERS, runs.get(queued.id).heartbeat_at), what="no beat from the queued run")

    waiting = runs.get(queued.id)
    assert (runs.status_of(waiting), runs.live(waiting), runs.resumable(waiting)) == ("running", True, False)
    with pytest.raises(runs.RunError, match="already has a run going"):  # still one run per version
        runs.create(version, ids, kind="predict", label_config=config)

    worker_pool.kill(worker_pool.processes[0].pid)  # no worker left to take its chunks
    wait_until(lambda: workers.alive() == 0, timeout=30, what="the worker taken for dead")
    gone = runs.get(queued.id)
    assert (runs.status_of(gone), runs.resumable(gone)) == ("interrupted", True)
    held.open()


def test_with_no_worker_alive_the_machine_that_started_the_run_works_it(project, standin):
    proj, ids, config = project
    standin.respond_with(answer)
    run = runs.create(new_version(proj.id), ids, kind="predict", label_config=config)
    dispatched = workers.dispatch(run.id)
    assert dispatched.note == workers.NO_WORKER and dispatched.pid
    assert chunks.worked_here(runs.get(run.id))
    done = wait_for_run(run.id, timeout=90)
    assert (done.status, done.done) == ("completed", 12)
    os.waitpid(dispatched.pid, 0)  # the run's own worker ends with the run


def test_the_predict_page_follows_every_workers_chunks(project, worker_pool, standin):
    from tests.helpers import open_page, table

    proj, ids, config = project
    held = HeldCalls(answer)
    standin.respond_with(held)
    worker_pool.start(2)
    new_version(proj.id)
    app = open_page("views/4_Predict.py", project_key="pr_project", project_id=proj.id)
    app.checkbox(key="pr_confirm_unevaluated_1").check().run()
    app.button(key="pr_start").click().run()
    assert not app.exception, app.exception
    (run,) = runs.runs(prompt="sentiment", project_id=proj.id, kind="predict")
    wait_until(lambda: len({c.worker for c in chunks.progress(run.id) if c.status == "working"}) == 2, what="both workers on the run")
    app.run()
    assert not app.exception, app.exception
    shown = table(app, "chunk", "tasks", "finished", "status", "worker")
    with store.session() as s:  # what the store holds, read here, not through the page's own call
        rows = s.exec(select(store.RunChunk).where(store.RunChunk.run_id == run.id).order_by(store.RunChunk.number)).all()
    assert shown[["chunk", "tasks", "worker"]].to_dict("records") == [{"chunk": r.number, "tasks": len(r.task_ids), "worker": r.worker or "—"} for r in rows]
    assert sorted(shown["status"]).count("working") == 2
    assert any(c.value.startswith("Spread over workers: 4 chunks, 2 being worked now.") for c in app.caption)
    held.open()
    assert wait_for_run(run.id).status == "completed"
