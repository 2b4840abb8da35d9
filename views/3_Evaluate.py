import dataclasses

import pandas as pd
import streamlit as st

import widgets
from core import batch_runs, enhance, guide, identity, keys, optimize, pricing, prompts, runs
from core.evaluation import calibration, charts, evaluate, matrix, split, subsets
from core.evaluation.subsets import SubsetError
from core.formatting import interval, milliseconds, percent, percent_with_interval, usd, with_intervals
from core.labelstudio import LabelStudioError
from core.runs import RunError
from core.workbench import Workbench

SUBSET_LABELS = {
    "ground-truth": "Ground-truth tasks",
    "test": "Test part",
    "development": "Development part",
    "sample": "Random sample",
    "all": "All tasks",
    "tasks": "Task ids",
}
ALL_CLASSES = "(all)"
PER_CLASS_COLUMNS = ["label", "precision", "precision 95%", "recall", "recall 95%", "f1", "f1 95%", "support"]

st.title("Evaluate")
st.caption("Run a prompt version on a set of tasks, score it against their ground truth, and see whether the new version is better.")
widgets.require_settings()

state = st.session_state
widgets.show_flash()


# -- project, prompt, version ---------------------------------------------------------------------

client, project_id = widgets.pick_project("ev_project")
version = widgets.pick_version(project_id, "ev", then="evaluate it")
if version is None:
    st.stop()
prompt_name = version.prompt

# -- the ground-truth split -----------------------------------------------------------------------


def make_split(replace: bool) -> None:
    try:
        made = split.make(
            client, project_id, examples=int(state["ev_split_examples"]), test_share=state["ev_split_test"] / 100, seed=int(state["ev_split_seed"]), replace=replace
        )
    except (split.SplitError, LabelStudioError, identity.NotAllowed) as error:
        widgets.flash("error", f"Not split: {error}")
    else:
        widgets.flash("ok", f"Split the ground truth: {made.describe()}.")
        state.pop("ev_preview_for", None)  # the parts changed: choose the tasks again


may_change = widgets.may_change()
current_split = split.get(project_id)
with st.expander(f"Ground-truth split: {current_split.describe()}" if current_split else "Ground-truth split: none yet"):
    st.caption(
        "Examples are the only tasks few-shot examples come from; Enhance and Optimize read the development part's errors; "
        "the test part is held out, so a version built with examples or tuning is measured on tasks nothing was tuned on."
    )
    s1, s2, s3 = st.columns(3)
    s1.number_input("Examples", min_value=0, value=split.DEFAULT_EXAMPLES, step=1, key="ev_split_examples", help="Tasks kept for few-shot examples.")
    s2.number_input("Test share (%)", min_value=5, max_value=90, value=int(split.DEFAULT_TEST_SHARE * 100), step=5, key="ev_split_test")
    s3.number_input("Seed", min_value=0, value=split.DEFAULT_SEED, step=1, key="ev_split_seed", help="The same seed gives the same parts.")
    if current_split is None:
        st.button("Split the ground truth", key="ev_split", on_click=make_split, args=(False,), disabled=not may_change)
    else:
        st.caption(f"Made by {current_split.created_by or 'someone'}; replacing it makes earlier test figures incomparable with new ones.")
        st.button("Replace the split", key="ev_split_replace", on_click=make_split, args=(True,), disabled=not may_change)

# -- a new evaluation -----------------------------------------------------------------------------

st.subheader("New evaluation")
unusable = prompts.why_unusable(version)
if unusable:
    st.error(unusable)
held_out = evaluate.test_part_only(version)
if held_out and current_split and state.get("ev_subset_for") != version.model_version:
    state["ev_subset"] = "test"  # a version shown examples is measured on the held-out part
state["ev_subset_for"] = version.model_version
kind = st.radio("Tasks", subsets.KINDS, format_func=SUBSET_LABELS.get, horizontal=True, key="ev_subset")
if held_out and kind != "test":
    st.caption(
        f"{version.model_version} shows the model few-shot examples, so its accuracy counts only on the test part: "
        "a run on other tasks is kept, but not charted or used as its score."
    )
size, seed, ids_text = None, 0, ""
if kind == "sample":
    c1, c2 = st.columns(2)
    size = c1.number_input("Sample size", min_value=1, value=50, step=10, key="ev_sample_size")
    seed = c2.number_input("Seed", min_value=0, value=0, step=1, key="ev_seed", help="The same seed picks the same tasks.")
elif kind == "tasks":
    ids_text = st.text_input("Task ids", key="ev_task_ids", placeholder="1,2,3")
c1, c2 = st.columns(2)
concurrency = c1.number_input(
    "Concurrency", min_value=1, max_value=256, value=runs.DEFAULT_CONCURRENCY, step=1, key="ev_concurrency", help="Calls to the model at once."
)
with c2:
    cache = widgets.pick_cache("ev_cache")


def choose_subset(kind: str, size: int | None, seed: int, ids_text: str) -> subsets.Subset:
    ids = evaluate.parse_task_ids(ids_text) if kind == "tasks" else None
    return subsets.choose(client, project_id, kind, size=int(size) if size else None, seed=int(seed), ids=ids)


# Choosing reads every task from Label Studio: done again only when the choice changes (and on start).
choice = (project_id, kind, size, seed, ids_text)
if state.get("ev_preview_for") != choice:
    try:
        state["ev_preview"] = choose_subset(kind, size, seed, ids_text)
    except (SubsetError, LabelStudioError) as error:
        state["ev_preview"] = error
    state["ev_preview_for"] = choice
preview = state["ev_preview"]
if isinstance(preview, Exception):
    st.warning(str(preview))
else:
    st.caption(f"{version.model_version} ({version.model}) on {preview.description}.")
    if preview.note:
        st.info(preview.note)
    # The Batch API is offered for a large subset, with its saving estimated (which reads tasks: once per choice)
    asked = (choice, cache, version.model_version)
    if state.get("ev_offer_for") != asked:
        try:
            state["ev_offer"] = batch_runs.offer_for(version, preview.task_ids, client, cache)
        except (LabelStudioError, ValueError) as error:
            state["ev_offer"] = error
        state["ev_offer_for"] = asked
    offer = state["ev_offer"]
    state["ev_batch_offered"] = isinstance(offer, batch_runs.Offer)
    if isinstance(offer, batch_runs.Offer):
        st.radio("Send the calls", runs.MODES, format_func=widgets.MODE_LABELS.get, horizontal=True, key="ev_mode")
        st.caption(offer.sentence())
    elif offer is not None:
        st.caption(f"The Batch API's saving could not be estimated: {offer}")



def start_evaluating() -> None:
    """Create the run and hand it to a worker before the page draws itself again, so the page that
    follows already shows it going. The choices are read from the widgets as they are now."""
    chosen_version = prompts.version(state["ev_prompt"], state["ev_version"], state["ev_project"])
    sampled = state["ev_subset"] == "sample"
    try:
        subset = choose_subset(state["ev_subset"], state.get("ev_sample_size") if sampled else None, state.get("ev_seed", 0) if sampled else 0, state.get("ev_task_ids", ""))
        run = evaluate.start(
            chosen_version,
            subset,
            client.label_config(project_id),
            concurrency=int(state["ev_concurrency"]),
            cache=state["ev_cache"],
            client=client,
            mode=state.get("ev_mode", "live") if state.get("ev_batch_offered") else "live",
        )
        runs.launch(run.id)
    except (SubsetError, RunError, LabelStudioError, identity.NotAllowed) as error:
        widgets.flash("error", f"Not started: {error}")
    else:
        widgets.flash("ok", f"Started run {run.id}: {chosen_version.model_version} on {subset.description}.")
        widgets.show_next("ev_run", run.id)


st.button("Run evaluation", key="ev_start", type="primary", disabled=isinstance(preview, Exception) or bool(unusable) or not may_change, on_click=start_evaluating)

# -- a model matrix -------------------------------------------------------------------------------


def start_matrix() -> None:
    chosen_version = prompts.version(state["ev_prompt"], state["ev_version"], state["ev_project"])
    sampled = state["ev_subset"] == "sample"
    try:
        models = matrix.parse_models(",".join(state["ev_matrix_models"]))
        subset = choose_subset(state["ev_subset"], state.get("ev_sample_size") if sampled else None, state.get("ev_seed", 0) if sampled else 0, state.get("ev_task_ids", ""))
        started = matrix.start(
            chosen_version, subset, client.label_config(project_id), models, concurrency=int(state["ev_concurrency"]), cache=state["ev_cache"], client=client
        )
        for run in started:
            runs.launch(run.id)
    except (matrix.MatrixError, SubsetError, RunError, LabelStudioError, identity.NotAllowed) as error:
        widgets.flash("error", f"Matrix not started: {error}")
    else:
        widgets.flash("ok", f"Started {chosen_version.model_version} on {len(started)} models, on {subset.description}.")
        state["ev_matrix_group"] = started[0].subset["group"]


def save_matrix_model(run_id: int) -> None:
    try:
        saved = matrix.save_as_version(run_id)
    except (matrix.MatrixError, prompts.PromptError, identity.NotAllowed) as error:
        widgets.flash("error", f"Not saved: {error}")
    else:
        widgets.flash("ok", f"Saved {saved.model_version} on {saved.provider_key} · {saved.model}: evaluate it to give it figures of its own.")


@st.fragment(run_every=1.0)
def follow_matrix(group: str) -> None:
    show_matrix(group)
    if not any(runs.live(r) for r in matrix.runs_of(group)):
        st.rerun(scope="app")


def show_matrix(group: str) -> None:
    table = matrix.rows(group)
    going = sum(runs.live(r) for r in matrix.runs_of(group))
    if going:
        st.caption(f"{going} of {len(table)} models still running: the figures are of the tasks finished so far.")
    shown = pd.DataFrame(
        [
            {
                "model": f"{row['key']} · {row['model']}",
                "status": row["status"],
                "accuracy": percent(row["accuracy"]),
                "accuracy 95%": interval(row["accuracy_interval"]) if row["accuracy_interval"] else "—",
                "scored": row["scored"],
                "per 1,000 tasks": usd(row["cost_per_1000"]) if row["cost_per_1000"] is not None else "no price",
                "tokens / task": round(row["tokens_per_task"]) if row["tokens_per_task"] is not None else None,
                "latency p50": milliseconds(row["latency_p50_ms"]),
                "latency p95": milliseconds(row["latency_p95_ms"]),
                "frontier": "★" if row["on_frontier"] else "",
            }
            for row in table
        ]
    )
    st.dataframe(widgets.readable(shown), hide_index=True, key=f"ev_matrix_table_{group}")
    st.caption(
        "Cost per 1,000 tasks is what these calls cost at the models' prices (answers from the cache count at what their call cost). "
        "★ marks the Pareto frontier: no other model is as accurate for less."
    )
    if any(row["accuracy"] is not None and row["cost_per_1000"] is not None for row in table):
        st.altair_chart(charts.accuracy_against_cost(table), use_container_width=True)
    finished = {row["run"]: f"{row['key']} · {row['model']}" for row in table if row["status"] == "completed"}
    if finished:
        m1, m2 = st.columns([2, 1])
        chosen_run = m1.selectbox("Model to keep", list(finished), format_func=finished.get, key=f"ev_matrix_keep_{group}")
        latest = prompts.versions(prompt_name, project_id)[-1].number
        m2.button(f"Save as v{latest + 1} with this model", key=f"ev_matrix_save_{group}", on_click=save_matrix_model, args=(chosen_run,), disabled=not may_change)


matrices = matrix.groups(prompt_name, project_id)
with st.expander("Model matrix: this version on several models", expanded=bool(state.get("ev_matrix_group") or matrices)):
    st.caption(
        f"Runs {version.model_version}'s prompt unchanged on each model, on the tasks chosen above, side by side. "
        "The answers are not written to Label Studio and do not count as the version's figures."
    )
    model_names = sorted((set(pricing.listed()) - set(pricing.EMBEDDING_MODELS)) | {version.model})
    key_names = [k.name for k in keys.all_keys()]
    options = list(dict.fromkeys([f"{version.provider_key}:{version.model}"] + [f"{k}:{m}" for k in key_names for m in model_names]))
    st.multiselect(
        "Models (KEY:MODEL)",
        options,
        default=[f"{version.provider_key}:{version.model}"],
        key="ev_matrix_models",
        accept_new_options=True,
        help="A saved key and a model or Azure deployment on it; type one that is not listed.",
    )
    st.button(
        "Evaluate on these models",
        key="ev_matrix_start",
        disabled=isinstance(preview, Exception) or len(state.get("ev_matrix_models") or []) < 2 or not may_change,
        on_click=start_matrix,
    )
    if matrices:
        labels = {m["group"]: f"v{m['version']} on {', '.join(m['models'])} · {m['subset']}" for m in matrices}
        if state.get("ev_matrix_group") not in labels:
            state["ev_matrix_group"] = matrices[0]["group"]
        group = st.selectbox("Matrix", list(labels), format_func=labels.get, key="ev_matrix_group")
        if any(runs.live(r) for r in matrix.runs_of(group)):
            follow_matrix(group)
        else:
            show_matrix(group)

# -- optimize -------------------------------------------------------------------------------------


def start_optimize() -> None:
    chosen_version = prompts.version(state["ev_prompt"], state["ev_version"], state["ev_project"])
    try:
        found = optimize.start(
            chosen_version,
            reflection_key=state["ev_opt_key"],
            reflection_model=state["ev_opt_model"].strip(),
            max_calls=int(state["ev_opt_calls"]),
            max_cost_usd=float(state["ev_opt_cost"]) or None,
            concurrency=int(state["ev_concurrency"]),
            client=client,
        )
        optimize.launch(found.id)
    except (optimize.OptimizeError, RunError, identity.NotAllowed, LabelStudioError, ValueError) as error:
        widgets.flash("error", f"Optimize not started: {error}")
    else:
        widgets.flash("ok", f"Started Optimize {found.id} from {chosen_version.model_version}: at most {found.max_calls} calls.")
        widgets.show_next("ev_opt_pick", found.id)


def cancel_optimize(optimization_id: int) -> None:
    try:
        optimize.cancel(optimization_id)
    except (optimize.OptimizeError, identity.NotAllowed):
        pass  # it ended meanwhile


def resume_optimize(optimization_id: int) -> None:
    try:
        optimize.resume_in_background(optimization_id)
    except (optimize.OptimizeError, identity.NotAllowed) as error:
        widgets.flash("error", f"Not resumed: {error}")
    else:
        widgets.flash("ok", f"Resumed Optimize {optimization_id}: what it evaluated before comes from the cache.")


def show_search(search: optimize.OptimizationView) -> None:
    searched = max(1, search.max_calls - search.reserved_calls)
    st.progress(
        min(1.0, search.calls_used / searched),
        text=f"{search.calls_used} of {search.max_calls} calls ({search.reserved_calls} held for the check on the test part); "
        f"{search.evaluations} candidate evaluations; cost {usd(search.cost_usd)}",
    )
    checked = search.seed_test_run_id and search.best_test_run_id and search.status == "completed"
    if search.status_reason and not checked:
        (st.warning if search.status in ("failed", "stopped", "cancelled") else st.caption)(search.status_reason)
    if search.live:
        st.button("Cancel", key=f"ev_opt_cancel_{search.id}", on_click=cancel_optimize, args=(search.id,), disabled=not may_change or search.cancel_requested)
    elif search.resumable:
        st.button("Resume", key=f"ev_opt_resume_{search.id}", on_click=resume_optimize, args=(search.id,), disabled=not may_change)
    if search.candidates:
        kept = [
            {
                "version": f"v{c['version']}",
                "development accuracy": percent(c["development_accuracy"]),
                "95%": interval(c.get("development_interval")),
                "tasks": c.get("development_tasks"),
                "from": "the start" if c["parent_version"] is None else f"v{c['parent_version']}",
                "best": "★" if c["version"] == search.best_version else "",
            }
            for c in search.candidates
        ]
        st.dataframe(pd.DataFrame(kept), hide_index=True, key=f"ev_opt_candidates_{search.id}")
    if checked:
        st.success(f"On the test part: {evaluate.compare_runs(search.seed_test_run_id, search.best_test_run_id).verdict()}")
    evaluated = [
        {
            "run": e["run"],
            "tasks": e["tasks"],
            "status": e["status"],
            "accuracy": percent(e["accuracy"]),
            "accuracy 95%": interval(e["accuracy_interval"]),
            "cost": usd(e["cost_usd"]),
            "template": e["template"],
        }
        for e in optimize.evaluations(search.id)
    ]
    if evaluated:
        st.caption(f"Every candidate evaluation on the development part ({len(evaluated)}):")
        st.dataframe(widgets.readable(pd.DataFrame(evaluated)), hide_index=True, key=f"ev_opt_evaluations_{search.id}")


@st.fragment(run_every=1.0)
def follow_search(search_id: int) -> None:
    search = optimize.get(search_id)
    show_search(search)
    if not search.live:
        st.rerun(scope="app")


searches = {o.id: o for o in optimize.optimizations(prompt_name, project_id)}
with st.expander(f"Optimize: search for a better prompt than {version.model_version}", expanded=bool(searches)):
    st.caption(
        "A search on gepa: a reflection model reads the version's answers on development tasks and writes candidate prompts; each is "
        "scored on the development part, the ones that do better are kept as versions, and the best is checked against "
        f"{version.model_version} on the test part. The budget covers every call, the final check included."
    )
    if current_split is None:
        st.caption("Optimize needs the ground-truth split (above): it searches on the development part and checks on the test part.")
    else:
        development, test = len(current_split.parts["development"]), len(current_split.parts["test"])
        o1, o2, o3, o4 = st.columns(4)
        o1.selectbox("Reflection key", key_names, key="ev_opt_key")
        o2.text_input("Reflection model", value=version.model, key="ev_opt_model", help="Reads the errors and writes the candidates; a strong model pays off.")
        o3.number_input(
            "Max calls",
            min_value=1,
            value=development + 2 * test + 10 * (development + 7),
            step=10,
            key="ev_opt_calls",
            help=f"Every model call of the search: {development} to score the start, about {development + 7} per candidate kept, "
            f"and {2 * test} held for the check on the test part.",
        )
        o4.number_input("Max cost (US$, 0 for none)", min_value=0.0, value=0.0, step=0.5, key="ev_opt_cost")
        st.button("Optimize", key="ev_optimize", on_click=start_optimize, disabled=not may_change or not key_names or bool(unusable))
    if searches:
        def search_label(i: int) -> str:
            return f"Optimize {i} · from v{searches[i].seed_version} · {searches[i].shown_status} · {searches[i].calls_used}/{searches[i].max_calls} calls"

        search_id = widgets.select(st, "Search", list(searches), "ev_opt_pick", format_func=search_label)
        if searches[search_id].live:
            follow_search(search_id)
        else:
            show_search(searches[search_id])

# -- the selected run -----------------------------------------------------------------------------

evaluations = {r.id: r for r in runs.runs(prompt=prompt_name, project_id=project_id, kind="evaluate")}
if not evaluations:
    st.info(f"No evaluation of {prompt_name} yet: run one above.")
    st.stop()

st.subheader("Results")


def run_label(i: int) -> str:
    r = evaluations[i]
    return f"run {i} · v{r.version} · {runs.status_of(r)}{widgets.mode_label(r)} · {r.subset.get('description', '')}{r.started_by_label}"


run_id = widgets.select(st, "Run", list(evaluations), "ev_run", format_func=run_label)  # the newest first
run = runs.get(run_id)


if runs.live(run):
    widgets.follow_run(run.id, "ev_cancel")
else:
    widgets.stopped_run(run, "ev_resume")

if not run.finished:
    st.caption("Results show here as tasks finish.")
    st.stop()

summary = evaluate.summary(run.id)
before = evaluate.previous(run)
before_accuracy = evaluate.summary(before.id)["accuracy"] if before else None
change = None
if before_accuracy is not None and summary["accuracy"] is not None:
    change = f"{(summary['accuracy'] - before_accuracy) * 100:+.1f} points vs v{before.version}"
if summary["accuracy"] is None:
    why = "no task was answered" if not run.done else "no ground truth on these tasks"
    accuracy_help = f"No accuracy: {why}."
else:
    accuracy_help = (
        f"On {summary['scored']} tasks with ground truth; 95% interval {interval(summary['accuracy_interval'])} "
        "(Wilson): with this many tasks, the true accuracy could be anywhere in it."
    )
m1, m2, m3 = st.columns(3)
m1.metric("Accuracy", percent(summary["accuracy"]), delta=change, help=accuracy_help)
m2.metric("Completion rate", percent(summary["completion_rate"]), help="Tasks answered without an error.")
m3.metric("Cost", usd(summary["cost_usd"]))
if summary["accuracy"] is None:
    st.caption(accuracy_help)
else:
    st.caption(f"Accuracy {percent_with_interval(summary['accuracy'], summary['accuracy_interval'])} on {summary['scored']} ground-truth tasks.")
if run.cached < run.finished:  # tokens and latency of the calls this run paid for
    m4, m5, m6 = st.columns(3)
    m4.metric("Tokens in / out", f"{summary['tokens']['input']:,} / {summary['tokens']['output']:,}")
    m5.metric("Latency p50", milliseconds(summary["latency_ms"]["p50"]))
    m6.metric("Latency p95", milliseconds(summary["latency_ms"]["p95"]))
widgets.run_outcome(run, "ev_retry")
if run.status == "completed":
    widgets.next_step(guide.after_evaluation(run, summary["accuracy"]))
if runs.live(run):
    st.caption("The run is still going: these figures are of the tasks finished so far.")


def heatmap_key(name: str) -> str:
    # A chart's selection cannot be set from the script: a new key draws the chart with none. A keyed
    # chart keeps its selection when its data changes, hence the run in the key.
    return f"ev_confusion_{run.id}_{name}_{state.get('ev_cells_cleared', 0)}"


def show_all_tasks() -> None:
    state["ev_cells_cleared"] = state.get("ev_cells_cleared", 0) + 1
    state["ev_wrong_only"] = state["ev_failed_only"] = False
    state["ev_class"] = ALL_CLASSES


cells = []  # the heatmap cells clicked, one per control at most
for name, control in summary["metrics"].items():
    st.markdown(f"**{name}** ({control['tag']})")
    if not control["scores"].get("tasks"):
        st.caption("— no scores: no ground truth on these tasks, or no answer to score.")
        continue
    st.dataframe(widgets.readable(pd.DataFrame([with_intervals(control["scores"])])), hide_index=True, key=f"ev_scores_{name}")
    if control["per_class"]:
        st.dataframe(
            pd.DataFrame([with_intervals(row) for row in control["per_class"]], columns=PER_CLASS_COLUMNS),
            hide_index=True,
            key=f"ev_per_class_{name}",
            # a long class name is cut to a medium column (whole on hover), so the figures stay in view
            column_config={"label": st.column_config.TextColumn("label", width="medium")}
            | {c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "f1")},
        )
    if control["confusion"]:
        event = st.altair_chart(
            charts.confusion_heatmap(control["confusion"]), key=heatmap_key(name), on_select="rerun", selection_mode=charts.CELL
        )
        st.caption("Click a cell to list its tasks in the task table below.")
        if clicked := charts.clicked_cell(event.selection):
            cells.append(evaluate.Cell(name, *clicked))

# -- confidence -----------------------------------------------------------------------------------

WHOLE_ANSWER = "the whole answer"


def show_confidence(found: calibration.Calibration) -> None:
    if found.measure is None:
        st.info(
            "No confidence: none of this run's answers carries one, and Prompter invents none. The provider gave no log-probabilities; "
            "on the Prompts page, save a version that measures the confidence by the agreement of several answers (Confidence: agreement)."
        )
        return
    parts = {WHOLE_ANSWER: found.overall, **found.outputs}
    shown = st.selectbox("Confidence of", list(parts), key="ev_confidence_of") if found.outputs else WHOLE_ANSWER
    measured = parts[shown]
    c1, c2, c3 = st.columns(3)
    c1.metric("Tasks with a confidence", f"{measured.tasks}", help=f"{measured.without_confidence} scored tasks have none (they failed)." if measured.without_confidence else None)
    c2.metric("Expected calibration error", f"{measured.ece:.3f}" if measured.ece is not None else "—", help="How far, on average, each bin's accuracy is from its mean confidence, weighted by its tasks: 0 is a perfectly calibrated model.")
    c3.metric("AUROC, right vs wrong", f"{measured.auroc:.3f}" if measured.auroc is not None else "—", help="How well confidence ranks right answers above wrong ones: 0.5 is chance, 1 perfect. None when every answer was right, or every one wrong.")
    st.altair_chart(charts.reliability(measured.to_dict()["bins"]), key=f"ev_reliability_{run.id}_{shown}")
    st.caption(f"Confidence from {found.measure}. Each dot is a tenth of the confidence scale, sized and labelled by its tasks; on the dashed diagonal a confidence means what it says.")

    curve = calibration.curve(found.points)
    if not curve:
        return
    st.markdown("**A threshold for a target accuracy**")
    target = st.number_input("Target accuracy (%)", min_value=50.0, max_value=99.9, value=95.0, step=0.5, key="ev_target") / 100
    reached = calibration.threshold_for(found.points, target)
    (st.success if reached else st.warning)(calibration.verdict(found.points, target))
    thresholds = [t.threshold for t in curve]
    default = reached.threshold if reached else calibration.best_reachable(found.points).threshold
    if state.get("ev_threshold_for") != (run.id, target):  # a new run or target moves the picker to its threshold
        state["ev_threshold"], state["ev_threshold_for"] = default, (run.id, target)
    chosen = st.select_slider("Or pick a threshold", thresholds, format_func=lambda t: f"{t:.2f}", key="ev_threshold")
    point = calibration.at(found.points, chosen)
    st.altair_chart(charts.coverage_against_accuracy([t.to_dict() for t in curve], target, chosen), key=f"ev_coverage_{run.id}")
    st.caption(f"Picked: {point.sentence()}. The band is each point's 95% interval; the dashed line is the target.")
    state.setdefault("accept_threshold", {})[f"{prompt_name}@v{run.version}"] = chosen  # the Predict page starts from it
    widgets.next_step(
        guide.Step(guide.PREDICT, "Accept the sure ones, review the rest", f"On the Predict page, predictions of v{run.version} at or above {chosen:.2f} can become annotations, the rest a review tab in Label Studio.")
    )


if summary["scored"]:
    st.subheader("Confidence")
    show_confidence(calibration.of_run(run.id))

points = evaluate.history(prompt_name, project_id)
if points:
    st.subheader("Accuracy across versions")
    st.altair_chart(charts.accuracy_over_versions(points), key="ev_accuracy_line")

# -- tasks ----------------------------------------------------------------------------------------

st.subheader("Tasks")
rows = evaluate.task_rows(run.id, client)
classes = [ALL_CLASSES, *sorted({r["ground truth"] for r in rows})]
if state.get("ev_class") not in classes:
    state["ev_class"] = ALL_CLASSES
f1, f2, f3 = st.columns([1, 1, 2])
wrong_only = f1.checkbox("Wrong only", key="ev_wrong_only")
failed_only = f2.checkbox("Failed only", key="ev_failed_only")
truth = f3.selectbox("Ground truth", classes, key="ev_class")
narrowed = dict(wrong_only=wrong_only, failed_only=failed_only, truth=None if truth == ALL_CLASSES else truth, cells=cells)
shown = evaluate.filter_rows(rows, **narrowed)
st.dataframe(
    widgets.readable(pd.DataFrame(shown, columns=["task", "text", "ground truth", "answer", "correct", "failed", "error", "link"])),
    hide_index=True,
    key="ev_tasks",
    column_config={
        "link": st.column_config.LinkColumn("link", display_text="open in Label Studio"),
        "text": st.column_config.TextColumn("text", width="medium", help="The task's text, shortened; hover to read more."),
    },
)
st.caption(evaluate.describe_shown(len(shown), len(rows), **narrowed))
if len(shown) < len(rows) or cells:
    st.button("Show all tasks", key="ev_show_all", on_click=show_all_tasks, help="Clears the heatmap cell selected and the filters above the table.")

# -- comparison -----------------------------------------------------------------------------------

if len(evaluations) > 1:
    st.subheader("Compare two runs")
    run_ids = list(evaluations)
    if state.get("ev_compare_for") != run.id:  # by default: this run against the one before it
        widgets.show_next("ev_compare_b", run.id)
        widgets.show_next("ev_compare_a", before.id if before and before.id in evaluations else next(i for i in run_ids if i != run.id))
        state["ev_compare_for"] = run.id
    c1, c2 = st.columns(2)
    a = widgets.select(c1, "Compare", run_ids, "ev_compare_a", format_func=run_label)
    b = widgets.select(c2, "with", run_ids, "ev_compare_b", format_func=run_label)
    comparison = evaluate.compare_runs(a, b)
    if comparison.tasks:
        st.info(comparison.verdict())
        d1, d2, d3 = st.columns(3)
        d1.metric(
            "Accuracy difference",
            f"{comparison.difference * 100:+.1f} points",
            help=f"On the tasks both runs scored; {comparison.interval_text()} (bootstrap over those tasks).",
        )
        d2.metric("Wrong → right", len(comparison.wrong_to_right))
        d3.metric("Right → wrong", len(comparison.right_to_wrong))

        def links(task_ids: list[int]) -> str:
            return ", ".join(f"[{t}]({client.task_url(project_id, t)})" for t in task_ids) or "none"

        st.markdown(f"**Wrong → right** (wrong in run {a}, right in run {b}): {links(comparison.wrong_to_right)}")
        st.markdown(f"**Right → wrong** (right in run {a}, wrong in run {b}): {links(comparison.right_to_wrong)}")
    else:
        try:
            changes = evaluate.compare_answers(a, b, client)
        except (SubsetError, LabelStudioError) as error:
            st.warning(str(error))
        else:
            st.info(changes.verdict())
            if changes.changed:
                st.dataframe(
                    pd.DataFrame(
                        [{"task": c.task_id, "text": c.text, f"run {a}": c.answer_a, f"run {b}": c.answer_b, "link": c.link} for c in changes.changed]
                    ),
                    hide_index=True,
                    key="ev_changed",
                    column_config={"link": st.column_config.LinkColumn("link", display_text="open in Label Studio")},
                )

# -- enhance --------------------------------------------------------------------------------------

run_version = prompts.version(prompt_name, run.version, project_id)
st.subheader(f"Enhance v{run.version}")
st.caption(
    "A teacher model reads this run's wrong answers on the development part of the split (never the examples or the test part) "
    "and proposes a revised system message and template. Nothing is saved until you save it."
)
key_names = [k.name for k in keys.all_keys()]
t1, t2 = st.columns(2)
teacher_key = t1.selectbox("Teacher key", key_names, key="ev_teacher_key")
teacher_model = t2.text_input("Teacher model", value=run_version.model, key="ev_teacher_model")


def propose() -> None:
    try:
        state["ev_proposal"] = enhance.propose(run_version, run.id, teacher_key=state["ev_teacher_key"], teacher_model=state["ev_teacher_model"].strip(), client=client)
    except (enhance.EnhanceError, identity.NotAllowed, LabelStudioError, ValueError) as error:
        state.pop("ev_proposal", None)
        widgets.flash("error", f"No proposal: {error}")
        return
    state["ev_proposed_system"] = state["ev_proposal"].system_message or ""
    state["ev_proposed_template"] = state["ev_proposal"].template


st.button("Propose a better prompt", key="ev_enhance", on_click=propose, disabled=not may_change or not teacher_key or not run.finished)
proposal = state.get("ev_proposal")
if proposal is not None and proposal.run_id == run.id:
    left_out = f" ({proposal.errors_left_out} more left out to keep the request short)" if proposal.errors_left_out else ""
    st.info(f"**Why:** {proposal.rationale}")
    st.caption(f"From {proposal.teacher}, after {len(proposal.errors_sent)} development errors{left_out}; cost {usd(proposal.cost_usd)}.")
    edited_system = st.text_area("Proposed system message", key="ev_proposed_system", height=80)
    edited_template = st.text_area("Proposed template", key="ev_proposed_template", height=160)
    edited = dataclasses.replace(proposal.draft(), system_message=edited_system or None, template=edited_template)
    st.code(prompts.diff(run_version, edited).text() or "(no change)", language=None)

    def save_proposal() -> None:
        # read the text areas as they are at the click, not as the page last drew them
        chosen = dataclasses.replace(proposal.draft(), system_message=state["ev_proposed_system"] or None, template=state["ev_proposed_template"])
        try:
            saved = Workbench.open(project_id, client).save_version(prompt_name, chosen)
        except (prompts.PromptError, identity.NotAllowed) as error:
            widgets.flash("error", f"Not saved: {error}")
        else:
            state.pop("ev_proposal", None)
            widgets.flash("ok", f"Saved {saved.model_version}: evaluate it on the test part to see the gain.")

    def check_proposal() -> None:
        chosen = dataclasses.replace(proposal.draft(), system_message=state["ev_proposed_system"] or None, template=state["ev_proposed_template"])
        try:
            base, tried = enhance.check_on_test(proposal, chosen, client)
            for started in (base, tried):
                if started.status != "completed":
                    runs.launch(started.id)
        except (SubsetError, RunError, LabelStudioError, identity.NotAllowed) as error:
            widgets.flash("error", f"Not evaluated: {error}")
        else:
            state["ev_enhance_check"] = {"for": proposal.run_id, "base": base.id, "proposal": tried.id}

    latest = prompts.versions(prompt_name, project_id)[-1].number
    b1, b2 = st.columns(2)
    b1.button(f"Save as v{latest + 1}", key="ev_save_proposal", type="primary", on_click=save_proposal, disabled=not may_change)
    b2.button(
        "Enhance and evaluate",
        key="ev_check_proposal",
        on_click=check_proposal,
        disabled=not may_change or current_split is None,
        help="Evaluate the proposal as it is above, and the version, on the test part, and show the gain; nothing is saved.",
    )

    @st.fragment(run_every=1.0)
    def follow_check(base_id: int, proposal_id: int) -> None:
        going = [runs.get(i) for i in (base_id, proposal_id)]
        finished, total = sum(r.finished for r in going), sum(r.total for r in going)
        st.progress(finished / total if total else 0.0, text=f"Evaluating on the test part: {finished} of {total} answers")
        if not any(runs.live(r) for r in going):
            st.rerun(scope="app")

    check = state.get("ev_enhance_check")
    if check and check["for"] == proposal.run_id:
        checked = [runs.get(check[k]) for k in ("base", "proposal")]
        if any(runs.live(r) for r in checked):
            follow_check(check["base"], check["proposal"])
        elif all(r.status == "completed" for r in checked):
            st.success(f"On the test part: {enhance.gain(check['base'], check['proposal']).verdict()}")
            st.caption(
                f"Run {check['base']} (v{run.version}) against run {check['proposal']} (the proposal); saving the proposal costs nothing "
                "to evaluate again: the cache holds its answers."
            )
        else:
            stopped = next(r for r in checked if r.status != "completed")
            st.warning(f"The check did not finish: run {stopped.id} is {runs.status_of(stopped)} ({runs.why_stopped(stopped) or stopped.status_reason}).")

# -- history --------------------------------------------------------------------------------------

st.subheader(f"Evaluations of {prompt_name}")
history_rows = [with_intervals(row, percents=("accuracy",)) | {"cost": usd(row["cost"])} for row in evaluate.run_rows(prompt_name, project_id)]
st.dataframe(
    pd.DataFrame(history_rows),
    hide_index=True,
    key="ev_history",
    column_config={
        "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    },
)
