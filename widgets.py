"""Streamlit pieces the pages share: flash messages, the project, prompt and version pickers, and a run
followed live with cancel and resume. Layout only: every decision is in core/.

(It lives beside app.py, not in views/, because every file there is one of the app's pages.)
"""

from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from core import batch_runs, budgets, chunks, connection, guide, identity, prompts, recent, runs, settings, vault
from core.formatting import duration, usd
from core.labelstudio import LabelStudioClient, LabelStudioError, Project
from core.prompts import Version
from core.runs import RunError, RunView


def require_settings() -> None:
    """Stop the page, saying what to fix, when a setting is malformed: a port number, or the key that
    encrypts saved secrets (no saved key or token can be read or saved until it is fixed)."""
    try:
        settings.load()
        vault.check()
    except vault.SecretKeyInvalid as error:
        st.error(str(error), icon=":material/key_off:")
        st.stop()
    except ValueError as error:  # settings.load names the variable and what it must be
        st.error(str(error), icon=":material/settings:")
        st.stop()


def show_flash() -> None:
    """Messages left by the previous script run (an action, then st.rerun)."""
    for kind, text in st.session_state.pop("flash", []):
        (st.success if kind == "ok" else st.error)(text)


def flash(kind: str, text: str) -> None:
    st.session_state["flash"] = [(kind, text)]


def ground_truth_count(project: Project) -> str:
    return f"{project.ground_truth_count} ground truth"


def pick_project(key: str, detail: Callable[[Project], str] = ground_truth_count) -> tuple[LabelStudioClient, int]:
    """The Label Studio client and the chosen project's id; stops the page when there is none."""
    try:
        client = connection.client()
        projects = client.projects()
    except (LabelStudioError, ValueError) as error:
        st.error(f"Label Studio is not available. {error}")
        st.stop()
    if not projects:
        st.info("Label Studio has no projects yet; create one there, or run `python -m core demo create`.")
        st.stop()
    by_id = {p.id: p for p in projects}
    previous = st.session_state.get(key)
    if previous is not None and previous not in by_id:
        st.warning(f"Project #{previous} is no longer in Label Studio (deleted, or hidden from this token); pick another.")
    if previous is None and recent.project() in by_id:
        # start where the team last worked, not on the newest project of the list
        st.session_state[key] = recent.project()

    def label(i: int) -> str:
        return f"{by_id[i].title} (#{i}) · {by_id[i].task_count} tasks · {detail(by_id[i])}"

    chosen = st.session_state.get(key)
    show_fresh_label(key, label(chosen) if chosen in by_id else None)  # counts change after a run or a delete
    project_id = st.selectbox(
        "Project",
        list(by_id),
        format_func=label,
        key=key,
    )
    return client, project_id


def pick_version(
    project_id: int,
    prefix: str,
    *,
    then: str,
    label: Callable[[Version], str] = lambda v: f"v{v.number}",
    default: Callable[[str], int | None] = lambda name: None,
) -> Version | None:
    """A prompt of the project and one of its versions (``default(prompt)``, else the latest, whenever
    the prompt changes); None, with a pointer to the Prompts page, when the project has no prompt to
    ``then`` with."""
    names = [v.prompt for v in prompts.latest_versions(project_id)]
    if not names:
        st.info(f"This project has no prompts yet: write one on the Prompts page, then {then} here.")
        st.page_link("views/2_Prompts.py", label="Open the Prompts page", icon=":material/edit_note:")
        return None
    state = st.session_state
    if state.get(f"{prefix}_prompt") not in names and recent.prompt(project_id) in names:
        state[f"{prefix}_prompt"] = recent.prompt(project_id)  # the one last worked on, not the first by name
    left, right = st.columns(2)
    name = left.selectbox("Prompt", names, key=f"{prefix}_prompt")
    by_number = {v.number: v for v in prompts.versions(name, project_id)}
    numbers = sorted(by_number, reverse=True)
    if state.get(f"{prefix}_version_for") != (project_id, name) or state.get(f"{prefix}_version") not in numbers:
        preferred = default(name)
        state[f"{prefix}_version"] = preferred if preferred in numbers else numbers[0]
        state[f"{prefix}_version_for"] = (project_id, name)
    number = right.selectbox("Version", numbers, format_func=lambda n: label(by_number[n]), key=f"{prefix}_version")
    return by_number[number]


def may_change() -> bool:
    """Whether the user may change things (a member or an admin); a viewer is told why the buttons
    that would are greyed out."""
    user = identity.current()
    if user.may("member"):
        return True
    st.caption(":material/visibility: You are a viewer: you see every figure, and an admin can make you a member to change things.")
    return False


def _cancel(run_id: int) -> None:
    try:
        runs.cancel(run_id)
    except (RunError, identity.NotAllowed):
        pass  # it ended meanwhile, or a viewer's click (the button is greyed out for them)


def follow_run(run_id: int, cancel_key: str) -> None:
    """A running run, refreshed: progress, cost so far, time left, and Cancel. Closely (four times a
    second) until its first result is on the page, then every second."""
    if st.session_state.get(f"_first_result_shown_{run_id}"):
        _follow(run_id, cancel_key)
    else:
        _follow_closely(run_id, cancel_key)


@st.fragment(run_every=0.25)
def _follow_closely(run_id: int, cancel_key: str) -> None:
    if st.session_state.get(f"_first_result_shown_{run_id}"):
        st.rerun(scope="app")  # shown: on at the calmer pace
    run = _run_progress(run_id, cancel_key)
    if run.finished:
        st.session_state[f"_first_result_shown_{run_id}"] = True


@st.fragment(run_every=1.0)
def _follow(run_id: int, cancel_key: str) -> None:
    _run_progress(run_id, cancel_key)


MODE_LABELS = {"live": "Live: answers as they come", "batch": "Batch API: cheaper, within 24 hours"}


def mode_label(run: RunView) -> str:
    """' · batch' in a run picker for a Batch API run; nothing for a live one."""
    return " · batch" if run.mode == "batch" else ""


def _run_progress(run_id: int, cancel_key: str) -> RunView:
    run = runs.get(run_id)
    if not runs.live(run):
        st.rerun(scope="app")  # it ended: the whole page shows how
    if run.status == "pending":
        st.caption("Waiting for the worker to start…")
    st.progress(run.finished / run.total if run.total else 0.0, text=f"{run.done} done, {run.failed} failed of {run.total} tasks")
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.metric("Cost so far", usd(run.cost_usd) if run.finished else "—")
    if run.mode == "batch":
        c2.metric("Batches ended", "{} of {}".format(*batch_runs.ended(run.id)))
        st.caption(batch_runs.summary(run))
    else:
        c2.metric("Time left", duration(run.eta_seconds))
    if run.worker == chunks.WORKERS:
        _chunks(run)
    if run.cancel_requested:
        c3.caption("Stopping: no new calls go out; calls already sent finish.")
    else:
        # A click callback, not st.rerun: a fragment may not rerun itself during a full-page run.
        c3.button("Cancel", key=cancel_key, on_click=_cancel, args=(run_id,), disabled=not identity.current().may("member"))
    return run


def _chunks(run: RunView) -> None:
    """A run spread over workers: each chunk, its progress and the worker on it."""
    shown = chunks.progress(run.id)
    working = {c.worker for c in shown if c.status == "working"}
    said = f"Spread over workers: {len(shown)} chunks, {len(working)} being worked now."
    if chunks.worked_here(run):
        said += " No worker was alive when it started, so the dashboard's machine works its chunks; `python -m core worker` on other machines shares them."
    st.caption(said)
    st.dataframe(
        pd.DataFrame([{"chunk": c.number, "tasks": c.tasks, "finished": c.finished, "status": c.status, "worker": c.worker or "—"} for c in shown]),
        hide_index=True,
        key=f"chunks_{run.id}",
    )


def stopped_run(run: RunView, resume_key: str) -> bool:
    """Say why a run stopped before its end (interrupted, failed, stopped, cancelled) and offer Resume;
    False when it did not stop early."""
    if runs.resumable(run):
        st.warning(f"Run {run.id} is {runs.status_of(run)}. {runs.why_stopped(run) or 'It did not finish.'}")
        if st.button("Resume", key=resume_key, disabled=not identity.current().may("member")):
            try:
                with st.spinner("Starting a worker…"):
                    resumed = runs.resume_in_background(run.id)
            except (RunError, identity.NotAllowed) as error:
                st.error(str(error))
            else:
                if runs.live(resumed) or resumed.status == "completed":
                    flash("ok", f"Resumed run {run.id}: only tasks without a result are sent.")
                else:
                    flash("error", f"Run {run.id} did not start again; `python -m core runs resume {run.id}` shows why.")
                st.rerun()
        return True
    return False


def pick_cache(key: str) -> str:
    """Whether the run may reuse answers of earlier identical calls."""
    return st.selectbox(
        "Earlier answers",
        list(runs.CACHE_POLICIES),
        format_func=lambda policy: {"auto": "Reuse when the temperature is 0", "reuse": "Always reuse", "fresh": "Ask the model again"}[policy],
        key=key,
        help="An identical call that already succeeded can be answered from the store, at no cost. "
        + " ".join(f"{name}: {meaning}." for name, meaning in runs.CACHE_POLICIES.items()),
    )


def run_outcome(run: RunView, retry_key: str) -> None:
    """What came from the cache, and the failures grouped by why, with a retry of only those."""
    note = runs.cache_note(run)
    if note:
        st.caption(note)
    if not run.failed:
        return
    groups = runs.failures_of(run.id)
    st.warning(f"{run.failed} of {run.total} tasks failed: " + "; ".join(f"{g.count} {g.label}" for g in groups) + ".")
    st.dataframe(
        [{"why": g.label, "tasks": g.count, "example task": g.example_task, "example": g.example} for g in groups],
        hide_index=True,
        key=f"{retry_key}_failures",
        column_config={"example": st.column_config.TextColumn(width="large")},
    )
    if runs.live(run):
        return
    if st.button(
        f"Retry the {run.failed} failed tasks",
        key=retry_key,
        help="Only these tasks are sent again; the others keep their answers.",
        disabled=not identity.current().may("member"),
    ):
        try:
            runs.retry_failed(run.id)
            with st.spinner("Starting a worker…"):
                runs.resume_in_background(run.id)
        except (RunError, identity.NotAllowed) as error:
            st.error(str(error))
        else:
            flash("ok", f"Run {run.id}: sending its {run.failed} failed tasks again.")
            st.rerun()


def readable(frame: pd.DataFrame, missing: str = "—") -> pd.DataFrame:
    """A table as a person reads it: a value that is not there shows as a dash, never None or nan."""
    return frame.astype(object).where(frame.notna(), missing)


def next_step(step: "guide.Step | None") -> None:
    """Where to go from here: one sentence and one link."""
    if step is None:
        return
    st.caption(step.why)
    if step.page.startswith(("http://", "https://")):
        st.link_button(step.label, step.page, icon=":material/open_in_new:")
    else:
        st.page_link(step.page, label=step.label, icon=":material/arrow_forward:")


_UNSET = object()


def show_next(key: str, value) -> None:
    """Have the picker ``key`` (made by ``select``) show ``value`` on the page's next draw: a run just
    started, a version just saved."""
    st.session_state[f"{key}__next"] = value


def select(where, label: str, options: list, key: str, *, default=None, format_func: Callable = str, **kwargs):
    """A selectbox the page may point at a value (``show_next``); else it keeps what was picked,
    else ``default``, else the first option.

    A value the page chose goes to a new widget (a new key): the browser sends back every widget's
    value with each event, and one it sent before it drew the chosen value (typing on right after
    Save) would otherwise set the picker back to what it showed before, and with it what the page
    shows below it. The widget's default is always the value the server holds, so a browser that
    draws the widget before it hears of the value still shows the right one."""
    state = st.session_state
    chosen = state.pop(f"{key}__next", _UNSET)
    if chosen is not _UNSET:
        state[f"{key}__generation"] = state.get(f"{key}__generation", 0) + 1
    widget = _generation(key)
    current = chosen if chosen is not _UNSET else state.get(widget, default)
    if current in options:
        show_fresh_label(widget, format_func(current))
    index = options.index(current) if current in options else 0
    return where.selectbox(label, options, index=index, format_func=format_func, key=widget, **kwargs)


def send_again_next_draw(keys) -> None:
    """Mark widget values the page has just set (the editor opening a version) to be sent to the
    browser once more on the next draw (``send_again``)."""
    st.session_state["_send_again"] = set(keys)


def send_again() -> None:
    """Send the browser once more the widget values the page set on the draw before, as they are
    now. An edit the browser sent before it had those values (typing on right after Save) is what
    they are now; without this, the values set on the earlier draw, reaching the browser after
    the edit, would replace what the user typed."""
    state = st.session_state
    for key in state.pop("_send_again", ()):
        if key in state:
            state[key] = state[key]


def forget_pick(key: str) -> None:
    """Let the picker ``key`` fall back to its default on the next draw."""
    st.session_state.pop(_generation(key), None)


def _generation(key: str) -> str:
    generation = st.session_state.get(f"{key}__generation", 0)
    return f"{key}_{generation}" if generation else key


def show_fresh_label(key: str, label: str | None) -> None:
    """Call before creating a selectbox whose chosen option's label can change between runs (a run's
    status, a project's counts). The browser keeps showing the label it drew when the value itself
    does not change; setting the value outright makes it draw the new one."""
    state = st.session_state
    shown = f"{key}__label"
    if key in state and state.get(shown) not in (None, label):
        state[key] = state[key]
    state[shown] = label


def key_budget(key_name: str, where, *, can_set: bool) -> None:
    """A key's spend this month against its monthly budget; admins set the budget here."""
    budget, spent = budgets.key_budget(key_name), budgets.key_spend(key_name)
    if budget is None:
        where.caption(f"{usd(spent)} spent this month · no monthly budget")
    else:
        where.progress(min(1.0, spent / budget), text=f"{usd(spent)} of the {usd(budget)} monthly budget spent this month")
    if not can_set:
        return
    with where.popover("Monthly budget", icon=":material/savings:"):
        amount = st.number_input("US dollars a month (0: no budget)", min_value=0.0, step=5.0, value=budget or 0.0, key=f"budget_{key_name}")
        if st.button("Save budget", key=f"budget_save_{key_name}"):
            budgets.set_key_budget(key_name, amount or None)
            flash("ok", f"Budget of {key_name!r}: {usd(amount) + ' a month' if amount else 'none'}.")
            st.rerun()
