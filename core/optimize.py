"""Optimize: a search over a version's system message and template, on gepa's optimizer, against the
development part of the ground-truth split, within a budget of calls and dollars.

- ``start(version, ...)`` records the search (refused when its budget cannot cover the seed's first
  evaluation and the final check on the test part); ``launch`` gives it a background worker, and
  ``execute`` works it in this process (the command line), resuming where a stopped one left off.
- gepa proposes candidates (a saved key is its reflection model) and Prompter's run engine scores
  them: each evaluation is a variant run of the seed version on development tasks (``runs.create``
  with the candidate's prompt), so the cache, cost accounting, concurrency, spending limit and
  budgets are those of every run. Nothing from the examples or test parts reaches the reflection
  model: it sees only the development tasks the engine evaluated.
- The budget counts every model call the search sends (evaluations and reflections; answers from the
  cache are free) and holds back what the final check needs, so the whole search never passes it.
- At the end, every candidate gepa kept becomes a normal version (its note says which candidate it
  came from), and the best is evaluated on the test part against the seed, as normal evaluations.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import select

from core import audit, background, connection, fewshot, identity, keys, labeling, pricing, private, prompts, providers, runs, store, tokens
from core.evaluation import answers, evaluate, split, subsets
from core.labelstudio import LabelStudioClient
from core.prompts import Version

GROUP = "optimize"
MINIBATCH = 3  # development tasks gepa reflects on at a time
ERRORS_IN_A_ROW = 3  # the search gives up after this many failed iterations in a row
REFLECTION_ANSWER_TOKENS = 1000  # what a reflection is assumed to write, for the spending limit's estimate
QUIET_STEPS = 10  # ... or after this many iterations that sent no call (every answer came from the cache)
TEST_COST_MARGIN = 2.5  # the final check's cost held back: the seed's estimate on the test part, twice, and more
RENDER_KINDS = ("task_gone", "missing_field", "task_data", "examples")  # items that never reached the model

REFLECTION = {
    "system_message": (
        "A labeling model was given this system message:\n```\n<curr_param>\n```\n\n"
        "Here are development tasks it answered with it, its answers, and whether each was right:\n```\n<side_info>\n```\n\n"
        "Write a better system message: say precisely how to tell the classes apart where the answers show confusion, "
        "in general rules, without quoting the tasks. Give only the new system message within ``` blocks."
    ),
    "template": (
        "A labeling model was given this prompt template; each task's data fill its {variables}:\n```\n<curr_param>\n```\n\n"
        "Here are development tasks it answered with it, its answers, and whether each was right:\n```\n<side_info>\n```\n\n"
        "Write a better template: keep every {variable} exactly as written (such as {text} and {labels}), write literal "
        "braces as {{ and }}, and add precise rules for telling the classes apart where the answers show confusion, "
        "without quoting the tasks. Give only the new template within ``` blocks."
    ),
}


class OptimizeError(ValueError):
    """The search cannot start or go on as asked; the message says why."""


class _OutOfBudget(Exception):
    """The next step would pass the search's budget: the search stops before it."""


@dataclass(frozen=True)
class OptimizationView:
    id: int
    prompt: str
    project_id: int
    seed_version: int
    status: str
    status_reason: str | None
    reflection: str  # "key · model"
    max_calls: int
    max_cost_usd: float | None
    calls_used: int
    cost_usd: float | None
    evaluations: int
    candidates: list[dict[str, Any]]
    best_version: int | None
    seed_test_run_id: int | None
    best_test_run_id: int | None
    reserved_calls: int
    cancel_requested: bool
    worker: str | None
    heartbeat_at: datetime | None
    started_by: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def group(self) -> str:
        return f"{GROUP}:{self.id}"

    @property
    def interrupted(self) -> bool:
        return self.status == "running" and runs.worker_gone(self.worker, self.heartbeat_at)

    @property
    def shown_status(self) -> str:
        return "interrupted" if self.interrupted else self.status

    @property
    def live(self) -> bool:
        return self.status in runs.ACTIVE and not self.interrupted and not self._never_picked_up

    @property
    def resumable(self) -> bool:
        return self.interrupted or self.status in ("failed", "stopped", "cancelled") or self._never_picked_up

    @property
    def _never_picked_up(self) -> bool:
        return self.status == "pending" and store.utcnow() - runs._aware(self.created_at) > runs.STALE_AFTER

    def document(self) -> dict[str, Any]:
        return {
            "optimization_id": self.id,
            "prompt": self.prompt,
            "seed_version": self.seed_version,
            "status": self.shown_status,
            "status_reason": self.status_reason,
            "reflection_model": self.reflection,
            "max_calls": self.max_calls,
            "max_cost_usd": self.max_cost_usd,
            "calls_used": self.calls_used,
            "calls_held_for_the_test_check": self.reserved_calls,
            "cost_usd": self.cost_usd,
            "evaluations": self.evaluations,
            "candidates": self.candidates,
            "best_version": self.best_version,
            "seed_test_run_id": self.seed_test_run_id,
            "best_test_run_id": self.best_test_run_id,
            "started_by": self.started_by,
            "created_at": runs._aware(self.created_at).isoformat(),
            "finished_at": runs._aware(self.finished_at).isoformat() if self.finished_at else None,
        }


# -- starting, reading, cancelling ------------------------------------------------------------------


def start(
    version: Version,
    *,
    reflection_key: str,
    reflection_model: str,
    max_calls: int,
    max_cost_usd: float | None = None,
    concurrency: int = runs.DEFAULT_CONCURRENCY,
    seed: int = 0,
    client: LabelStudioClient | None = None,
) -> OptimizationView:
    """Record a search from ``version``; refused, saying why, when it could not do its work within
    its budget, or while another search of the version is going."""
    user = identity.require_role("member", "optimize prompts")
    client = client or connection.client()
    parts = _parts(version.project_id)
    if not isinstance(max_calls, int) or max_calls < 1:
        raise OptimizeError(f"max calls: {max_calls} is not a positive whole number of calls.")
    keys.get(reflection_key)  # a clear error when there is no such key
    unusable = prompts.why_unusable(version)
    if unusable:
        raise OptimizeError(unusable)
    needed = len(parts.parts["development"]) + _reserved_calls(parts) + 1
    if max_calls < needed:
        raise OptimizeError(
            f"max calls: {max_calls} cannot cover the search. It needs at least {needed}: "
            f"{len(parts.parts['development'])} to score {version.model_version} on the development part, one reflection, "
            f"and {_reserved_calls(parts)} held for the final check on the test part (both versions); give more calls."
        )
    if max_cost_usd is not None:
        runs.check_spending_limit(version, max_cost_usd)
        if pricing.price(reflection_model) is None:
            raise OptimizeError(f"spending limit: {reflection_model} (the reflection model) has no price, so a limit cannot be kept; set its price first.")
    with store.writing() as s:
        version_row = prompts.row_id(version)
        going = [row for row in s.exec(select(store.Optimization).where(store.Optimization.prompt_version_id == version_row)).all() if _view(row).live]
        if going:
            raise OptimizeError(f"{version.model_version} already has a search going: Optimize {going[0].id}; follow it, or cancel it first.")
        row = store.Optimization(
            prompt_version_id=version_row,
            reflection_key=reflection_key,
            reflection_model=reflection_model,
            max_calls=max_calls,
            max_cost_usd=max_cost_usd,
            concurrency=int(concurrency),
            seed=int(seed),
            label_config=client.label_config(version.project_id),
            started_by=user.email,
        )
        s.add(row)
        s.flush()
        found = row.id
    audit.record(
        "optimize started",
        target=version.model_version,
        by=user,
        detail={"optimization": found, "max_calls": max_calls, "max_cost_usd": max_cost_usd, "reflection": f"{reflection_key} · {reflection_model}"},
    )
    return get(found)


def get(optimization_id: int) -> OptimizationView:
    with store.session() as s:
        row = s.get(store.Optimization, optimization_id)
    if row is None:
        raise OptimizeError(f"There is no Optimize {optimization_id}; `python -m core optimize list` shows them.")
    return _view(row)


def optimizations(prompt: str | None = None, project_id: int | None = None) -> list[OptimizationView]:
    """Searches, newest first."""
    with store.session() as s:
        rows = s.exec(select(store.Optimization).order_by(store.Optimization.id.desc())).all()
    found = [_view(row) for row in rows]
    return [o for o in found if (prompt is None or o.prompt == prompt) and (project_id is None or o.project_id == project_id)]


def evaluations(optimization_id: int) -> list[dict[str, Any]]:
    """Every candidate evaluation the search made, oldest first: the run, the tasks, its score, and
    what the candidate's prompt was."""
    shown = []
    for run in runs.in_group(f"{GROUP}:{optimization_id}"):
        found = evaluate.report(run.id)
        shown.append(
            {
                "run": run.id,
                "tasks": run.total,
                "status": runs.status_of(run),
                "accuracy": found.accuracy,
                "accuracy_interval": found.accuracy_interval,
                "cost_usd": run.cost_usd,
                "system_message": run.variant.get("system_message"),
                "template": run.variant.get("template"),
            }
        )
    return shown


def cancel(optimization_id: int) -> OptimizationView:
    """Stop the search: no new call goes out; what it kept so far stays kept."""
    user = identity.require_role("member", "cancel searches")
    found = get(optimization_id)
    if found.status not in runs.ACTIVE:
        raise OptimizeError(f"Optimize {optimization_id} is {found.shown_status}; only a pending or running search can be cancelled.")
    with store.writing() as s:
        row = s.get(store.Optimization, optimization_id)
        row.cancel_requested = True
        if row.status == "pending" or found.interrupted:
            _finish(row, "cancelled", "Cancelled before it finished; the candidates it kept are kept.")
        s.add(row)
    for run in runs.in_group(found.group):
        if run.status in runs.ACTIVE:
            runs.cancel(run.id)
    audit.record("optimize cancelled", target=f"optimize {optimization_id}", by=user, detail={"calls_used": found.calls_used, "cost_usd": found.cost_usd})
    return get(optimization_id)


def launch(optimization_id: int) -> int:
    """Start a background worker on the search (it outlives the page that started it); return its pid."""
    get(optimization_id)
    return background.start(["optimize", "work", str(optimization_id)], background.log_path(f"optimize-{optimization_id}.log"))


def resume_in_background(optimization_id: int) -> OptimizationView:
    identity.require_role("member", "resume searches")
    found = get(optimization_id)
    if not found.resumable:
        raise OptimizeError(f"Optimize {optimization_id} is {found.shown_status}; there is nothing to resume.")
    launch(optimization_id)
    return found


# -- working ------------------------------------------------------------------------------------------


def execute(optimization_id: int, *, client: LabelStudioClient | None = None, progress=None) -> OptimizationView:
    """Work the search in this process until it ends (or stops); a stopped one goes on from gepa's
    saved state, and the engine's cache answers what it had already evaluated."""
    me = _claim(optimization_id)
    row = _row(optimization_id)
    with identity.acting_as(_starter(row)):
        search = _Search(optimization_id, me, client or connection.client(), progress)
        try:
            search.go()
        except BaseException as error:  # noqa: BLE001 - record why, then let it propagate
            reason = "Stopped by the user (interrupt); resume to continue." if isinstance(error, KeyboardInterrupt) else f"The search stopped: {error}"
            _set_status(optimization_id, "failed", reason, me)
            raise
        finally:
            search.beating.set()
    return get(optimization_id)


class _Search:
    propose_new_texts = None  # gepa's own reflective proposer writes the candidates, with REFLECTION's instructions

    def __init__(self, optimization_id: int, me: str, client: LabelStudioClient, progress):
        self.id = optimization_id
        self.me = me
        self.client = client
        self.progress = progress
        row = _row(optimization_id)
        self.row = row
        self.seed_version = prompts.by_row_id(row.prompt_version_id)
        self.parts = _parts(self.seed_version.project_id)
        self.development = list(self.parts.parts["development"])
        self.targets = labeling.read(row.label_config)
        self.outputs = [self.targets.output(c) for c in self.seed_version.controls]
        self.reserved_calls = _reserved_calls(self.parts)
        self.texts: dict[int, str] = {}
        self.stopping: str | None = None
        self.errors_in_a_row = 0
        self.quiet_steps, self.calls_at_last_step = 0, -1
        self.beating = threading.Event()
        self.reserved_usd = self._test_check_estimate() if row.max_cost_usd is not None else 0.0

    # the budget

    def calls_left(self) -> int:
        return self.row.max_calls - self.reserved_calls - _calls_used(self.id)

    def dollars_left(self) -> float | None:
        if self.row.max_cost_usd is None:
            return None
        return self.row.max_cost_usd - self.reserved_usd - (_cost(self.id) or 0.0)

    def _spend(self, calls: int, dollars: float = 0.0) -> None:
        """Refuse a step that could pass the budget: every task of a batch is counted as a call (the
        cache may answer some for free), and a reflection at its estimated cost."""
        if self.stopping:
            raise _OutOfBudget(self.stopping)
        if calls > self.calls_left():
            self.stopping = f"Stopped at its budget of {self.row.max_calls} calls ({self.reserved_calls} held for the final check on the test part)."
            raise _OutOfBudget(self.stopping)
        left = self.dollars_left()
        if left is not None and (left <= 0 or dollars > left):
            self.stopping = f"Stopped at its spending limit of ${self.row.max_cost_usd:g} (part of it held for the final check on the test part)."
            raise _OutOfBudget(self.stopping)

    def _test_check_estimate(self) -> float:
        from core import predict

        test = subsets.choose(self.client, self.seed_version.project_id, "test")
        found = predict.estimate(self.seed_version, predict.Scope(test.task_ids, test.description), self.client).cost_usd
        return (found or 0.0) * TEST_COST_MARGIN

    # gepa's side: the adapter (evaluate, make_reflective_dataset), the reflection model, the stopper

    def evaluate(self, batch: list[int], candidate: dict[str, str], capture_traces: bool = False):
        from gepa import EvaluationBatch

        outside = set(batch) - set(self.development)
        if outside:  # gepa only draws from the development part; say so loudly if that ever changed
            raise OptimizeError(f"tasks {sorted(outside)} are not in the development part; the search evaluates only there.")
        self._spend(len(batch))
        variant = {"system_message": candidate.get("system_message") or None, "template": candidate["template"]}
        try:
            run = runs.create(
                self.seed_version,
                batch,
                kind="evaluate",
                subset={"kind": "development", "description": f"{len(batch)} development tasks (Optimize {self.id})", "group": f"{GROUP}:{self.id}"},
                label_config=self.row.label_config,
                concurrency=self.row.concurrency,
                max_cost_usd=self.dollars_left(),
                variant=variant,
            )
        except runs.RunError as error:  # a candidate that cannot be sent (a template that lost its fields) scores 0
            self.errors_in_a_row = 0
            feedback = f"This prompt could not be used: {error}"
            return EvaluationBatch(outputs=[feedback] * len(batch), scores=[0.0] * len(batch), trajectories=[self._trace(t, feedback, None) for t in batch] if capture_traces else None)
        try:
            done = runs.execute(run.id, client=self.client)
        except Exception:
            self.errors_in_a_row += 1  # Label Studio away, the store locked: gepa logs it and tries another step
            raise
        if done.status == "stopped" and done.status_reason and "spending limit" in done.status_reason:
            self.stopping = f"Stopped at its spending limit of ${self.row.max_cost_usd:g}."
        correct = set(evaluate.report(run.id).correct_task_ids)
        items = {item.task_id: item for item in runs.items(run.id)}
        shown = [self._answer(items.get(t)) for t in batch]
        self.errors_in_a_row = 0
        self._report()
        return EvaluationBatch(
            outputs=shown,
            scores=[1.0 if t in correct else 0.0 for t in batch],
            trajectories=[self._trace(t, answer, t in correct) for t, answer in zip(batch, shown)] if capture_traces else None,
        )

    def make_reflective_dataset(self, candidate, eval_batch, components_to_update):
        records = [
            {
                "Inputs": trace["task"],
                "Generated Outputs": trace["answer"],
                "Feedback": "Right." if trace["correct"] else f"Wrong: the right answer is {trace['truth']}." if trace["correct"] is False else trace["answer"],
            }
            for trace in eval_batch.trajectories or []
        ]
        return {component: records for component in components_to_update}

    def reflect(self, prompt) -> str:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        estimate = pricing.cost(self.row.reflection_model, tokens.prompt_tokens(messages, self.row.reflection_model), REFLECTION_ANSWER_TOKENS) or 0.0
        self._spend(1, estimate)
        key = keys.get(self.row.reflection_key)
        try:
            reply = providers.client(key, timeout=runs.CALL_TIMEOUT, max_retries=runs.CALL_RETRIES).chat.completions.create(
                model=self.row.reflection_model, messages=messages
            )
        except Exception:
            self._count_reflection(0, 0)  # a failed call was still sent
            self.errors_in_a_row += 1
            raise
        usage = reply.usage
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0
        self._count_reflection(usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0, cached)
        return reply.choices[0].message.content or ""

    def __call__(self, gepa_state) -> bool:
        """gepa's stop condition, asked before each iteration."""
        used = _calls_used(self.id)
        self.quiet_steps = self.quiet_steps + 1 if used == self.calls_at_last_step else 0
        self.calls_at_last_step = used
        if _row(self.id).cancel_requested:
            self.stopping = "Cancelled; the candidates kept so far are kept."
        elif self.errors_in_a_row >= ERRORS_IN_A_ROW:
            self.stopping = self.stopping or f"Stopped after {ERRORS_IN_A_ROW} failed steps in a row; the log says why (resume to try again)."
        elif max(gepa_state.program_full_scores_val_set, default=0.0) >= 1.0:
            self.stopping = "A candidate answers every development task rightly: there is nothing left to learn from."
        elif self.quiet_steps >= QUIET_STEPS:
            self.stopping = f"Stopped after {QUIET_STEPS} steps in a row without a new call: the search has run out of new candidates."
        elif not self.stopping and self.calls_left() < 2 * min(MINIBATCH, len(self.development)) + 1:
            self.stopping = f"Stopped at its budget of {self.row.max_calls} calls ({self.reserved_calls} held for the final check on the test part)."
        return self.stopping is not None

    # the search, from start (or from where it stopped) to its end

    def go(self) -> None:
        import gepa

        threading.Thread(target=self._beat, daemon=True).start()
        seed = {"system_message": self.seed_version.system_message or "", "template": self.seed_version.template}
        result = gepa.optimize(
            seed_candidate=seed,
            trainset=self.development,
            adapter=self,
            reflection_lm=self.reflect,
            reflection_prompt_template=REFLECTION,
            reflection_minibatch_size=min(MINIBATCH, len(self.development)),
            stop_callbacks=[self],
            run_dir=str(private.in_home("optimize", str(self.id))),  # gepa's state, so a stopped search goes on from it
            logger=self,
            seed=self.row.seed,
            raise_on_exception=False,
            display_progress_bar=False,
        )
        kept = self._keep(result)
        cancelled = _row(self.id).cancel_requested
        best = kept.get(result.best_idx)
        if cancelled:
            _set_status(self.id, "cancelled", self.stopping, self.me)
        elif best is None:
            # out of budget is a stop a user can lift (resume with more); out of ideas is an end
            status = "stopped" if self.stopping and self.stopping.startswith("Stopped at its") else "completed"
            reason = f"No candidate beat {self.seed_version.model_version} on the development part, so there is nothing to check on the test part. {self.stopping or ''}"
            _set_status(self.id, status, reason.strip(), self.me)
        else:
            self._check_on_test(best)
        self._report()

    def _keep(self, result) -> dict[int, Version]:
        """Every candidate gepa kept (beyond the seed) as a normal version with its lineage; once, even
        when the search is resumed. Returns the versions by candidate index."""
        row = _row(self.id)
        saved = {entry["candidate"]: entry for entry in row.candidates}
        numbers = {0: self.seed_version.number} | {i: e["version"] for i, e in saved.items()}
        for index in range(1, len(result.candidates)):
            if index in saved:
                continue
            parent = next((p for p in result.parents[index] if p is not None), 0)
            candidate = result.candidates[index]
            score = result.val_aggregate_scores[index]
            settings_ = {name: getattr(self.seed_version, name) for name in prompts.EDITABLE if name != "note"}
            version = prompts.new_version(
                self.seed_version.prompt,
                self.seed_version.project_id,
                **(settings_ | {"system_message": candidate.get("system_message") or None, "template": candidate["template"]}),
                note=f"Optimize {self.id}: candidate {index}, from v{numbers.get(parent, self.seed_version.number)}; {score:.1%} on the development part",
            )
            numbers[index] = version.number
            saved[index] = {"candidate": index, "version": version.number, "parent_version": numbers.get(parent, self.seed_version.number)} | _scored(result, index)
        seed_entry = {"candidate": 0, "version": self.seed_version.number, "parent_version": None} | _scored(result, 0)
        with store.writing() as s:
            found = s.get(store.Optimization, self.id)
            found.candidates = [seed_entry] + [saved[i] for i in sorted(saved) if i != 0]
            s.add(found)
        by_index = {i: prompts.version(self.seed_version.prompt, e["version"], self.seed_version.project_id) for i, e in saved.items() if i != 0}
        return by_index

    def _check_on_test(self, best: Version) -> None:
        """The best candidate and the seed on the test part, as normal evaluations (the cache answers
        what was already asked), so their figures are the versions' own."""
        test = subsets.choose(self.client, self.seed_version.project_id, "test")
        with store.writing() as s:
            found = s.get(store.Optimization, self.id)
            found.best_version_id = prompts.row_id(best)
            s.add(found)
        ran = {}
        for name, version in (("seed", self.seed_version), ("best", best)):
            earlier = getattr(_row(self.id), f"{name}_test_run_id")
            if earlier and runs.get(earlier).status == "completed":
                ran[name] = runs.get(earlier)  # a resumed search: this check was done
                continue
            if earlier:
                run_id = earlier  # a resumed search: its check goes on where it stopped
            else:
                left = None if self.row.max_cost_usd is None else max(self.row.max_cost_usd - (_cost(self.id) or 0.0), 1e-9)
                run_id = runs.create(
                    version, test.task_ids, kind="evaluate", subset=test.as_dict() | {"optimize": self.id},
                    label_config=self.row.label_config, concurrency=self.row.concurrency, max_cost_usd=left,
                ).id
                with store.writing() as s:
                    found = s.get(store.Optimization, self.id)
                    setattr(found, f"{name}_test_run_id", run_id)
                    s.add(found)
            ran[name] = runs.execute(run_id, client=self.client)
        if all(r.status == "completed" for r in ran.values()):
            gain = evaluate.compare_runs(ran["seed"].id, ran["best"].id)
            _set_status(self.id, "completed", f"Best: {best.model_version}; on the test part {gain.verdict()}", self.me)
        else:
            failed = next(r for r in ran.values() if r.status != "completed")
            _set_status(self.id, "failed", f"The check on the test part did not finish: run {failed.id} is {failed.status} ({failed.status_reason}); resume it to finish.", self.me)

    # details

    def _answer(self, item) -> str:
        if item is None:
            return "(not answered)"
        if item.status != "ok":
            return f"(failed: {item.error})"
        return "; ".join(answers.shown(o, item.regions or []) for o in self.outputs)

    def _trace(self, task_id: int, answer: str, correct: bool | None) -> dict[str, Any]:
        if task_id not in self.texts:
            for task in self.client.tasks(self.seed_version.project_id, ids=list(self.development)):
                self.texts[task.id] = fewshot.task_text(self.targets, task.data)
                reference = task.reference("ground-truth")
                self.texts[-task.id] = "; ".join(answers.shown(o, reference.result) for o in self.outputs) if reference else ""
        return {"task": self.texts.get(task_id, ""), "answer": answer, "correct": correct, "truth": self.texts.get(-task_id, "")}

    def _count_reflection(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> None:
        cost = pricing.cost(self.row.reflection_model, input_tokens, output_tokens, cached_input_tokens=cached_input_tokens)
        with store.writing() as s:
            found = s.get(store.Optimization, self.id)
            found.reflection_calls += 1
            if cost is not None:
                found.reflection_cost_usd = (found.reflection_cost_usd or 0.0) + cost
            s.add(found)

    def log(self, message: str) -> None:
        """gepa's log (which candidate it tried, what it scored) goes to the search's own log file, not to stdout."""
        with private.append(private.in_home("logs") / f"optimize-{self.id}.log") as out:
            out.write(f"{message}\n".encode())

    def _beat(self) -> None:
        while not self.beating.wait(runs.HEARTBEAT_EVERY):
            with store.writing() as s:
                found = s.get(store.Optimization, self.id)
                if found.worker != self.me:
                    return
                found.heartbeat_at = store.utcnow()
                s.add(found)

    def _report(self) -> None:
        if self.progress:
            self.progress(get(self.id))


def _scored(result, index: int) -> dict[str, Any]:
    """A kept candidate's accuracy on the development part, on how many tasks, with its Wilson interval."""
    from core.evaluation import intervals

    scores = list(result.val_subscores[index].values())
    right = sum(1 for score in scores if score >= 1.0)
    found = intervals.wilson(right, len(scores))
    return {"development_accuracy": result.val_aggregate_scores[index], "development_tasks": len(scores), "development_interval": found.to_dict() if found else None}


# -- the store's side -----------------------------------------------------------------------------------


def _parts(project_id: int) -> split.Split:
    parts = split.get(project_id)
    if parts is None:
        raise OptimizeError(
            f"Optimize searches on the development part of the ground-truth split and checks on the test part, and project {project_id} "
            "has no split: make one on the Evaluate page (or `python -m core ground-truth split`) first."
        )
    if len(parts.parts["development"]) < 2 or not parts.parts["test"]:
        raise OptimizeError("The split needs at least two development tasks and one test task for a search; make it again with more ground truth.")
    return parts


def _reserved_calls(parts: split.Split) -> int:
    return 2 * len(parts.parts["test"])  # the seed and the best on the test part; the cache may need fewer


def _calls_used(optimization_id: int) -> int:
    """Model calls the search sent: its evaluations' answers not from the cache, and its reflections."""
    group_runs = [r.id for r in runs.in_group(f"{GROUP}:{optimization_id}")]
    with store.session() as s:
        sent = 0
        if group_runs:
            sent = s.exec(
                select(func.count(store.RunItem.id)).where(
                    store.RunItem.run_id.in_(group_runs),
                    store.RunItem.from_cache == False,  # noqa: E712
                    (store.RunItem.error_kind.is_(None)) | (store.RunItem.error_kind.not_in(RENDER_KINDS)),
                )
            ).one()
        row = s.get(store.Optimization, optimization_id)
        return int(sent) + row.reflection_calls


def _cost(optimization_id: int) -> float | None:
    """What the search paid: its evaluations and reflections, and its check on the test part."""
    row = _row(optimization_id)
    paid = [r.cost_usd for r in runs.in_group(f"{GROUP}:{optimization_id}")]
    paid += [runs.get(i).cost_usd for i in (row.seed_test_run_id, row.best_test_run_id) if i]
    paid.append(row.reflection_cost_usd)
    known = [p for p in paid if p is not None]
    return sum(known) if known else None


def _row(optimization_id: int) -> store.Optimization:
    with store.session() as s:
        row = s.get(store.Optimization, optimization_id)
    if row is None:
        raise OptimizeError(f"There is no Optimize {optimization_id}.")
    return row


def _claim(optimization_id: int) -> str:
    me = runs.worker_name()
    with store.writing() as s:
        row = s.exec(select(store.Optimization).where(store.Optimization.id == optimization_id).with_for_update()).first()
        if row is None:
            raise OptimizeError(f"There is no Optimize {optimization_id}.")
        if row.status == "completed":
            raise OptimizeError(f"Optimize {optimization_id} is already completed.")
        if row.status == "running" and row.worker != me and not runs.worker_gone(row.worker, row.heartbeat_at):
            raise OptimizeError(f"Optimize {optimization_id} is already running; follow it, or cancel it.")
        row.status, row.status_reason, row.cancel_requested = "running", None, False
        row.worker, row.heartbeat_at = me, store.utcnow()
        row.started_at = row.started_at or store.utcnow()
        row.finished_at = None
        s.add(row)
    return me


def _starter(row: store.Optimization) -> identity.User:
    """Who the worker acts as: whoever started the search (their role, checked again now)."""
    if row.started_by in (None, identity.LOCAL_EMAIL):
        return identity.local_admin()
    found = identity.member(row.started_by)
    if found is None:
        raise OptimizeError(f"{row.started_by} started this search and is no longer on the team; someone on it must start a new one.")
    return found


def _set_status(optimization_id: int, status: str, reason: str | None, me: str | None = None) -> None:
    with store.writing() as s:
        row = s.get(store.Optimization, optimization_id)
        if me is not None and row.worker != me:
            return
        _finish(row, status, reason)
        s.add(row)


def _finish(row: store.Optimization, status: str, reason: str | None) -> None:
    row.status, row.status_reason = status, reason
    if status != "running":
        row.finished_at = store.utcnow()


def _view(row: store.Optimization) -> OptimizationView:
    version = prompts.by_row_id(row.prompt_version_id)
    best = prompts.by_row_id(row.best_version_id).number if row.best_version_id else None
    parts = split.get(version.project_id)
    return OptimizationView(
        id=row.id,
        prompt=version.prompt,
        project_id=version.project_id,
        seed_version=version.number,
        status=row.status,
        status_reason=row.status_reason,
        reflection=f"{row.reflection_key} · {row.reflection_model}",
        max_calls=row.max_calls,
        max_cost_usd=row.max_cost_usd,
        calls_used=_calls_used(row.id),
        cost_usd=_cost(row.id),
        evaluations=len(runs.in_group(f"{GROUP}:{row.id}")),
        candidates=list(row.candidates or []),
        best_version=best,
        seed_test_run_id=row.seed_test_run_id,
        best_test_run_id=row.best_test_run_id,
        reserved_calls=_reserved_calls(parts) if parts else 0,
        cancel_requested=row.cancel_requested,
        worker=row.worker,
        heartbeat_at=row.heartbeat_at,
        started_by=row.started_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
