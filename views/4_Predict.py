import pandas as pd
import streamlit as st

import widgets
from core import acceptance, batch_runs, guide, identity, predict, prompts, runs
from core.evaluation import calibration
from core.formatting import percent, usd
from core.labelstudio import LabelStudioError
from core.prompts import Version
from core.runs import RunError

st.title("Predict")
st.caption("Run a prompt version over the project's tasks and write its answers into Label Studio as predictions.")
widgets.require_settings()

state = st.session_state
widgets.show_flash()


# -- project ----------------------------------------------------------------------------------------

client, project_id = widgets.pick_project("pr_project", detail=lambda p: f"{p.prediction_count} predictions")


# -- managing predictions (shown last; also on a project without prompts) ----------------------------


def manage_predictions(version: Version | None) -> None:
    st.subheader("Predictions in Label Studio")
    try:
        found = predict.model_versions(client, project_id)
    except LabelStudioError as error:
        st.error(f"Could not read the project's predictions. {error}")
        return
    if not found:
        st.info("This project has no predictions yet.")
        return
    st.dataframe(
        pd.DataFrame([{"model version": v.name, "predictions": v.prediction_count} for v in found]),
        hide_index=True,
        key="pr_model_versions",
    )
    counts = {v.name: v.prediction_count for v in found}
    # start on the version the page predicts with (the one just predicted), not the first listed
    preferred = version.model_version if version is not None and version.model_version in counts else None
    if state.get("pr_model_version_for") != (project_id, preferred) or state.get("pr_model_version") not in counts:
        state["pr_model_version"] = preferred or next(iter(counts))
        state["pr_model_version_for"] = (project_id, preferred)
    name = st.selectbox("Model version", list(counts), format_func=lambda n: f"{n} ({counts[n]} predictions)", key="pr_model_version")
    c1, c2, _ = st.columns([1, 1, 2])
    viewer = not identity.current().may("member")
    if c1.button("Create annotations", key="pr_convert", help="Turn this version's predictions into annotations.", disabled=viewer):
        state["pr_confirm"] = ("convert", project_id, name)
    if c2.button("Delete predictions", key="pr_delete", help="Delete this version's predictions; other versions' stay.", disabled=viewer):
        state["pr_confirm"] = ("delete", project_id, name)

    asked = state.get("pr_confirm")
    if asked == ("convert", project_id, name):
        confirm(
            "convert",
            f"Create {counts[name]} annotations from the predictions of {name}?",
            "Yes, create",
            lambda: predict.to_annotations_named(client, project_id, name),
            lambda n: f"Created {n} annotations from the predictions of {name}.",
            "No annotations created",
        )
    elif asked == ("delete", project_id, name):
        confirm(
            "delete",
            f"Delete the {counts[name]} predictions of {name}? Other model versions' predictions stay.",
            "Yes, delete",
            lambda: predict.delete_named(client, project_id, name),
            lambda n: f"Deleted {n} predictions of {name}.",
            "Nothing deleted",
        )


def confirm(action: str, question: str, yes: str, act, done, failed: str) -> None:
    """Ask before acting on Label Studio; report after the rerun."""
    st.warning(question)
    y, n, _ = st.columns([1, 1, 2])
    if y.button(yes, key=f"pr_{action}_confirm", type="primary"):
        state.pop("pr_confirm", None)
        try:
            said = done(act())
            if said:  # None: the section shows the outcome itself
                widgets.flash("ok", said)
        except (LabelStudioError, identity.NotAllowed, ValueError) as error:
            widgets.flash("error", f"{failed}: {error}")
        state.pop("pr_estimate_for", None)  # which tasks lack a prediction may have changed
        st.rerun()
    if n.button("No", key=f"pr_{action}_cancel"):
        state.pop("pr_confirm", None)
        st.rerun()


# -- accepting the sure predictions, reviewing the rest -------------------------------------------


def accept_and_review(version: Version) -> None:
    st.subheader(f"Accept the sure ones, review the rest: {version.model_version}")
    st.caption(
        "Predictions whose confidence is at or above a threshold become annotations (made by the Label Studio user "
        "“Prompter (accepted prediction)”, so reviewers can filter them); the rest go to a Data Manager tab, least confident first."
    )
    try:
        found = calibration.of_version(version)
    except calibration.NoConfidence as error:
        st.info(str(error))
        return
    if found.measure is None:
        st.info(f"{version.model_version}'s answers carry no confidence, so none can be accepted by it; save a version that measures agreement on the Prompts page.")
        return
    how = st.radio("Threshold", ["For a target accuracy", "One I choose"], horizontal=True, key="pr_accept_how")
    if how == "For a target accuracy":
        target = st.number_input("Target accuracy (%)", min_value=50.0, max_value=99.9, value=95.0, step=0.5, key="pr_accept_target") / 100
        reached = calibration.threshold_for(found.points, target)
        if reached is None:
            st.warning(calibration.verdict(found.points, target) + " Pick a threshold yourself, or lower the target.")
            return
        threshold = reached.threshold
        st.success(calibration.verdict(found.points, target))
    else:
        picked = state.get("accept_threshold", {}).get(version.model_version, 0.9)
        threshold = st.number_input("Confidence threshold", min_value=0.0, max_value=1.0, value=float(picked), step=0.01, format="%.2f", key="pr_accept_threshold")
        point = calibration.at(found.points, threshold)
        st.caption(f"On ground truth, {point.sentence()}." if point else "No ground-truth task is this sure: nothing measures what it would give.")

    asked = (project_id, version.model_version, threshold)
    if st.button("Count again", key="pr_accept_recount"):
        state.pop("pr_plan_for", None)
    if state.get("pr_plan_for") != asked:
        try:
            state["pr_plan"] = acceptance.plan(version, threshold, client)
        except (LabelStudioError, ValueError) as error:
            state["pr_plan"] = error
        state["pr_plan_for"] = asked
    planned = state["pr_plan"]
    if isinstance(planned, Exception):
        st.warning(f"Could not read the project's predictions: {planned}")
        return
    st.info(planned.sentence())
    viewer = not identity.current().may("member")
    a1, a2, _ = st.columns([1, 1, 2])
    if a1.button(f"Accept {len(planned.to_accept)} predictions", key="pr_accept", disabled=viewer or not planned.to_accept):
        state["pr_confirm"] = ("accept", project_id, version.model_version, threshold)
    if a2.button("Create the review tab", key="pr_review_tab", disabled=viewer, help="A Data Manager tab in the project: the tasks below the threshold, not annotated yet, least confident first."):
        try:
            tab = acceptance.review_tab(version, threshold, client)
        except (LabelStudioError, acceptance.AcceptError, identity.NotAllowed) as error:
            st.error(f"No review tab: {error}")
        else:
            state["pr_accept_done"] = (version.model_version, f"“{tab.title}”: {tab.tasks} tasks, least confident first.", tab.url)
    if state.get("pr_confirm") == ("accept", project_id, version.model_version, threshold):
        confirm(
            "accept",
            f"Create {len(planned.to_accept)} annotations from the predictions of {version.model_version} at or above {threshold:.2f}? Nothing else is touched.",
            "Yes, accept",
            lambda: acceptance.accept(version, threshold, client),
            lambda done: remember_accepted(version, done),
            "Nothing accepted",
        )
    accepted = state.get("pr_accepted")
    if accepted and accepted[0] == version.model_version:
        (st.warning if accepted[1].failed else st.success)(accepted[1].sentence())
    shown = state.get("pr_accept_done")
    if shown and shown[0] == version.model_version:
        st.success(shown[1])
        st.link_button("Open the review tab in Label Studio", shown[2], icon=":material/open_in_new:")


def remember_accepted(version: Version, done: acceptance.Summary) -> None:
    state.pop("pr_plan_for", None)  # the tasks annotated now are counted again
    state["pr_accepted"] = (version.model_version, done)


# -- prompt and version ------------------------------------------------------------------------------


def version_label(v: Version) -> str:
    scored = predict.scores(v.prompt, v.project_id).get(v.number)
    return f"v{v.number} · accuracy {percent(scored['accuracy'])} on {scored['tasks']} tasks" if scored else f"v{v.number} · not evaluated yet"


# the version with the best accuracy on ground truth is preselected, not merely the latest
version = widgets.pick_version(
    project_id, "pr", then="predict with it", label=version_label, default=lambda name: predict.best_version(name, project_id)
)
if version is None:
    manage_predictions(version)
    st.stop()
prompt_name, number = version.prompt, version.number
predictions = runs.runs(prompt=prompt_name, project_id=project_id, kind="predict")
going = [r for r in predictions if r.version == number and runs.live(r)]

# -- a new prediction run ----------------------------------------------------------------------------

st.subheader("New prediction run")
unusable = prompts.why_unusable(version)
if unusable:
    st.error(unusable)
only_missing = st.checkbox("Only tasks without a prediction of this version yet", key="pr_only_missing")
c1, c2, c3 = st.columns(3)
concurrency = c1.number_input(
    "Concurrency", min_value=1, max_value=256, value=runs.DEFAULT_CONCURRENCY, step=1, key="pr_concurrency", help="Calls to the model at once."
)
with c3:
    cache = widgets.pick_cache("pr_cache")
max_cost = c2.number_input(
    "Spending limit (USD)",
    min_value=0.0,
    value=None,
    step=0.5,
    format="%.4f",
    placeholder="no limit",
    key="pr_max_cost",
    help="The run stops before its cost would pass this. Empty: no limit.",
)

# The estimate reads tasks from Label Studio: done again only when the choice changes, when a run of
# this version ends, or on request (not while one is going: nothing can start then anyway).
choice = (project_id, prompt_name, number, only_missing, cache)
marker = tuple((r.id, r.status) for r in predictions if r.version == number and not runs.live(r))
if st.button("Re-estimate", key="pr_reestimate"):
    state.pop("pr_estimate_for", None)
if not unusable and state.get("pr_estimate_for") != (choice, marker):  # an unusable version has no estimate
    try:
        chosen = predict.scope(version, client, only_missing=only_missing)
        state["pr_estimate"] = (chosen, predict.estimate(version, chosen, client, cache=cache))
    except (LabelStudioError, ValueError) as error:
        state["pr_estimate"] = error
    state["pr_estimate_for"] = (choice, marker)
estimated = None if unusable else state["pr_estimate"]

nothing_to_do = False
if isinstance(estimated, Exception):
    st.warning(f"No estimate: {estimated}")
elif estimated is not None:
    chosen, guess = estimated
    nothing_to_do = not chosen.task_ids
    offer = batch_runs.offer(guess.tasks, guess.cost_usd, guess.batch_cost_usd, version.provider_key)
    state["pr_batch_offered"] = offer is not None
    mode = state.get("pr_mode", "live") if offer else "live"
    m1, m2, m3 = st.columns(3)
    m1.metric("Tasks", f"{guess.tasks:,}")
    m2.metric("Tokens to pay for (in / out)", f"{guess.input_tokens:,} / {guess.output_tokens:,}", help="An estimate; answers from earlier calls are not paid for.")
    m3.metric(
        "Estimated cost" + (" (Batch API)" if mode == "batch" else ""),
        usd(guess.cost_for(mode)),
        help="An estimate. No price: the model has none; set one on the Keys page.",
    )
    notes = [f"{version.model_version} ({version.model}) on {chosen.description}."]
    if chosen.already_predicted:
        notes.append(f"{chosen.already_predicted} tasks already have a prediction of this version.")
    notes.append(guess.describe())
    st.caption(" ".join(notes))
    if offer:
        st.radio("Send the calls", runs.MODES, format_func=widgets.MODE_LABELS.get, horizontal=True, key="pr_mode")
        st.caption(offer.sentence())
    if nothing_to_do:
        st.info(f"Nothing to do: every task already has a prediction of {version.model_version}.")

if going:
    st.caption(f"Run {going[0].id} of {version.model_version} is going; wait for it to end, or cancel it, before starting another.")
unevaluated = predict.unevaluated_warning(version)
confirmed = True
if unevaluated:
    st.warning(unevaluated)
    confirmed = st.checkbox(f"Predict with v{version.number} all the same", key=f"pr_confirm_unevaluated_{version.number}")
blocked = estimated is None or isinstance(estimated, Exception) or nothing_to_do or bool(going) or not confirmed


def start_predicting() -> None:
    """Create the run and hand it to a worker before the page draws itself again, so the page that
    follows already shows it going. The choices are read from the widgets as they are now."""
    chosen_version = prompts.version(state["pr_prompt"], state["pr_version"], state["pr_project"])
    limit = state.get("pr_max_cost")
    try:
        run, chosen = predict.start_now(
            chosen_version,
            client,
            only_missing=state["pr_only_missing"],
            concurrency=int(state["pr_concurrency"]),
            max_cost_usd=float(limit) if limit is not None else None,
            cache=state["pr_cache"],
            mode=state.get("pr_mode", "live") if state.get("pr_batch_offered") else "live",
        )
    except (RunError, LabelStudioError, identity.NotAllowed) as error:
        widgets.flash("error", f"Not started: {error}")
    else:
        widgets.flash("ok", f"Started run {run.id}: {chosen_version.model_version} on {chosen.description}.")
        widgets.show_next("pr_run", run.id)


may_change = widgets.may_change()
st.button("Start predicting", key="pr_start", type="primary", disabled=blocked or not may_change, on_click=start_predicting)

# -- the selected run --------------------------------------------------------------------------------

if not predictions:
    st.info(f"No prediction run of {prompt_name} yet: start one above.")
    manage_predictions(version)
    st.stop()

st.subheader("Run")
by_run = {r.id: r for r in predictions}


def run_label(i: int) -> str:
    r = by_run[i]
    return f"run {i} · v{r.version} · {runs.status_of(r)}{widgets.mode_label(r)} · {r.subset.get('description', '')}{r.started_by_label}"


run_id = widgets.select(st, "Run", list(by_run), "pr_run", format_func=run_label)  # the newest first
run = runs.get(run_id)


if runs.live(run):
    widgets.follow_run(run.id, "pr_cancel")
else:
    written = predict.written(run.id)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Done", f"{run.done} of {run.total}")
    m2.metric("Failed", run.failed)
    m3.metric("Written to Label Studio", written, help=f"Predictions of {run.model_version}.")
    m4.metric("Cost", usd(run.cost_usd))
    finished = not widgets.stopped_run(run, "pr_resume") and run.status == "completed"
    if finished:
        st.success(f"Run {run.id} finished: {written} predictions of {run.model_version} written to Label Studio, {run.failed} tasks failed.")
    widgets.run_outcome(run, "pr_retry")
    if finished:
        widgets.next_step(guide.after_prediction(run, f"{client.url}/projects/{project_id}/data"))

# -- past runs ---------------------------------------------------------------------------------------

st.subheader(f"Prediction runs of {prompt_name}")
st.dataframe(
    pd.DataFrame([row | {"cost": usd(row["cost"])} for row in predict.run_rows(prompt_name, project_id)]),
    hide_index=True,
    key="pr_history",
    column_config={
        "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    },
)

accept_and_review(version)
manage_predictions(version)
