import pandas as pd
import streamlit as st

import widgets
from core import fewshot, guide, keys, messages, pricing, prompts, providers, recent
from core.evaluation import answers, evaluate, split
from core.labeling import ConfigError
from core.labelstudio import LabelStudioError
from core.prompts import PromptError
from core.rendering import RenderError
from core.workbench import Workbench

OTHER_MODEL = "Another model…"
NEW = "(new prompt)"
NO_EXAMPLES = "none"
TFIDF, EMBEDDINGS = "TF-IDF (no key)", "an embeddings model"
LOGPROBS, AGREEMENT = "log-probabilities", "agreement of several answers"

st.title("Prompts")
st.caption("Write a prompt against a Label Studio project, see what the model receives, try it on one task, save versions.")
widgets.require_settings()

state = st.session_state
widgets.show_flash()

# -- project --------------------------------------------------------------------------------------

_, project_id = widgets.pick_project("project")
if st.button("Reload from Label Studio", key="reload") or state.get("workbench_for") != project_id:
    try:
        state["workbench"] = Workbench.open(project_id)
        state["workbench_for"] = project_id
    except (LabelStudioError, ConfigError) as error:
        st.error(str(error))
        st.stop()
bench: Workbench = state["workbench"]

with st.expander("What the labeling config asks for", expanded=not bench.targets.outputs):
    left, right = st.columns(2)
    left.markdown("**Inputs** (what the prompt can read)")
    left.dataframe(pd.DataFrame([{"name": i.name, "tag": i.tag, "field": i.field} for i in bench.targets.inputs]), hide_index=True, key="inputs")
    right.markdown("**Outputs** (what the model fills)")
    right.dataframe(
        pd.DataFrame([{"name": o.name, "tag": o.tag, "accepts": messages.labels_text(bench.targets, [], o.name)} for o in bench.targets.outputs]),
        hide_index=True,
        key="outputs",
    )
    if bench.targets.skipped:
        st.markdown("**Not filled by Prompter**")
        st.dataframe(pd.DataFrame([{"name": s.name, "tag": s.tag, "why": s.reason} for s in bench.targets.skipped]), hide_index=True, key="skipped")
if not bench.targets.outputs:
    st.error(bench.no_outputs_message())
    st.stop()

# -- prompt and version to start from ----------------------------------------------------------------

saved = {v.prompt: v for v in prompts.latest_versions(project_id)}


def open_version(name: str, number: int) -> None:
    """Have the pickers, and so the editor, hold this version on the next draw (a version just saved)."""
    widgets.show_next("prompt", name)
    widgets.show_next(f"start_version_{name}", number)


left, right = st.columns(2)
last_worked_on = recent.prompt(project_id)
prompt_name = widgets.select(left, "Prompt", [NEW, *saved], "prompt", default=last_worked_on if last_worked_on in saved else None)
history = prompts.versions(prompt_name, project_id) if prompt_name != NEW else []
start_number = widgets.select(
    right, "Start from version", [v.number for v in reversed(history)], f"start_version_{prompt_name}", format_func=lambda n: f"v{n}", disabled=not history
)
start = next((v for v in history if v.number == start_number), None)

def examples_choice(controls) -> tuple:
    """What the few-shot examples are chosen from: when it changes, they are chosen again."""
    how = state.get("ed_examples_how", NO_EXAMPLES)
    ranking = (state.get("ed_examples_by"), state.get("ed_examples_key"), state.get("ed_examples_model")) if how == "similar" else None
    return (project_id, how, state.get("ed_examples_k"), state.get("ed_examples_seed"), state.get("ed_examples_ids", "") if how == "ids" else "", tuple(controls), ranking)


source = (project_id, prompt_name, start.number if start else None)
widgets.send_again()
if state.get("editor_source") != source:
    state["editor_source"] = source
    origin = start or bench.draft(template=bench.starter_template())  # a new prompt starts from core's defaults
    state["ed_template"] = origin.template
    state["ed_system"] = origin.system_message or ""
    state["ed_controls"] = list(origin.controls)
    state["ed_temperature"] = origin.temperature
    state["ed_max_tokens"] = origin.max_output_tokens
    state["ed_confidence"] = AGREEMENT if origin.samples else LOGPROBS
    state["ed_samples"] = origin.samples or 5
    if start:
        state["ed_key"] = start.provider_key
        state["ed_model"] = start.model.strip() or None  # a version saved with no model (an older release allowed it)
    state["ed_note"] = ""
    shots = origin.examples or {}
    state["ed_examples_how"] = shots.get("how", NO_EXAMPLES)
    state["ed_examples_k"] = shots.get("k") or 3
    state["ed_examples_seed"] = shots.get("seed", 0)
    state["ed_examples_ids"] = ",".join(map(str, shots.get("ids", []))) if shots.get("how") == "ids" else ""
    ranked_by = shots.get("embeddings") or {}
    state["ed_examples_by"] = EMBEDDINGS if ranked_by else TFIDF
    state["ed_examples_key"] = ranked_by.get("key") or state.get("ed_key")
    state["ed_examples_model"] = ranked_by.get("model") or pricing.EMBEDDING_MODELS[0]
    # the version's own examples, as saved: not chosen again unless the choice changes
    state["examples_for"] = examples_choice(origin.controls) if shots else None
    state["examples"] = origin.examples
    state.pop("trial", None)
    widgets.send_again_next_draw(key for key in state if key.startswith("ed_"))

# -- editor ---------------------------------------------------------------------------------------

key_names = [k.name for k in keys.all_keys()]
if not key_names:
    st.warning("No model-provider keys yet: add one on the Keys page to try and save prompts.")

st.subheader("Editor")
if start and (unusable := prompts.why_unusable(start)):
    st.warning(unusable)
name = st.text_input("Name of the new prompt", key="ed_name", placeholder="e.g. intent-classifier") if prompt_name == NEW else prompt_name
controls = st.multiselect("Outputs to fill", [o.name for o in bench.targets.outputs], key="ed_controls")
c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
if state.get("ed_key") not in key_names:  # the key last used, else the first
    state["ed_key"] = recent.key() if recent.key() in key_names else (key_names[0] if key_names else None)
key_name = c1.selectbox("Provider key", key_names, key="ed_key")
if key_name and state.get("models_for") != key_name:
    state["models"], state["models_note"] = providers.model_choices(keys.get(key_name))
    state["models_for"] = key_name
# A listed model is picked, any other typed in a plain text box: a selectbox that also takes typed
# options cuts "gpt-4o-mini" to "-mini" as it is typed, when "gpt-4o" is one of its options.
listed = state.get("models", [])
if listed:
    current = state.get("ed_model")
    choices = list(dict.fromkeys([*listed, *([current] if current and current != OTHER_MODEL else []), OTHER_MODEL]))
    model = c2.selectbox("Model", choices, key="ed_model", index=None, placeholder="pick a model", help=f"The models {key_name} lists.")
    if model == OTHER_MODEL:
        model = c2.text_input("Model name", key="ed_model_name", placeholder="as the provider names it")
else:
    if state.get("ed_model") == OTHER_MODEL:  # picked on a key that lists models, before this one
        state["ed_model"] = state.get("ed_model_name")
    model = c2.text_input("Model", key="ed_model", placeholder="type a model name", help=state.get("models_note"))
temperature = c3.number_input("Temperature", min_value=0.0, max_value=2.0, step=0.1, key="ed_temperature")
max_tokens = c4.number_input("Max output tokens", min_value=1, value=None, step=64, key="ed_max_tokens", placeholder="model default")
system = st.text_area("System message (optional)", key="ed_system", height=80)


def insert(variable: str) -> None:
    state["ed_template"] = state.get("ed_template", "") + variable


st.caption("Insert a variable at the end of the template:")
variable_columns = st.columns(min(len(bench.variables()), 6))
for i, variable in enumerate(bench.variables()):
    variable_columns[i % len(variable_columns)].button(variable, key=f"var_{variable}", on_click=insert, args=(variable,))
template = st.text_area("Template", key="ed_template", height=220)
note = st.text_input("Note for this version (optional)", key="ed_note", placeholder="what changed and why")

project_split = split.get(project_id)
examples_box = st.expander("Few-shot examples", expanded=state.get("ed_examples_how") != NO_EXAMPLES)
with examples_box:
    st.caption(
        "Ground-truth tasks shown to the model before each task, as a question and its right answer. They come only from the "
        + (f"examples part of the split ({len(project_split.parts['examples'])} tasks), " if project_split else "examples part of the ground-truth split (none yet: make one on the Evaluate page), ")
        + "so nothing is later tested on what it was shown; a task is never its own example."
    )
    how = st.selectbox("Examples", [NO_EXAMPLES, *fewshot.HOW], format_func=lambda h: fewshot.HOW.get(h, "none"), key="ed_examples_how")
    if how in ("random", "per-class", "similar"):
        e1, e2 = st.columns(2)
        e1.number_input("How many", min_value=1, max_value=50, step=1, key="ed_examples_k")
        if how != "similar":
            e2.number_input("Seed", min_value=0, step=1, key="ed_examples_seed", help="The same seed chooses the same examples.")
        else:
            e2.radio("Similar by", [TFIDF, EMBEDDINGS], key="ed_examples_by", horizontal=True, help="TF-IDF needs no key; an embeddings model is called once per text (kept, so never paid twice).")
            if state.get("ed_examples_by") == EMBEDDINGS:
                m1, m2 = st.columns(2)
                m1.selectbox("Embeddings key", [k.name for k in keys.all_keys()], key="ed_examples_key")
                m2.text_input("Embeddings model", key="ed_examples_model")
    elif how == "ids":
        st.text_input("Example task ids", key="ed_examples_ids", placeholder="e.g. 12,40,41")
examples_error = None
if how == NO_EXAMPLES:
    state["examples"], state["examples_for"] = None, None
elif state.get("examples_for") != examples_choice(controls):
    try:
        state["examples"] = bench.choose_examples(
            controls,
            how=how,
            k=int(state["ed_examples_k"]),
            seed=int(state["ed_examples_seed"]),
            ids=evaluate.parse_task_ids(state.get("ed_examples_ids", "")) if how == "ids" else (),
            embeddings=(state["ed_examples_key"], state["ed_examples_model"].strip())
            if how == "similar" and state.get("ed_examples_by") == EMBEDDINGS and state.get("ed_examples_key")
            else None,
        )
        state["examples_for"] = examples_choice(controls)
    except (PromptError, ValueError, LabelStudioError) as error:
        state["examples"], state["examples_for"], examples_error = None, None, str(error)
if examples_error:
    examples_box.warning(f"No examples: {examples_error}")
elif state.get("examples"):
    examples_box.caption(f"Chosen: {fewshot.describe(state['examples'])}. The messages below show them.")

with st.expander(f"Confidence: {'agreement' if state.get('ed_confidence') == AGREEMENT else 'log-probabilities'}", expanded=state.get("ed_confidence") == AGREEMENT):
    st.caption(
        "How sure the model is of each answer: its Label Studio score, calibrated on the Evaluate page, and what the Predict page accepts by. "
        "Log-probabilities cost nothing, where the provider gives them; agreement asks for several answers and keeps the most common."
    )
    st.radio("Measured by", [LOGPROBS, AGREEMENT], key="ed_confidence", horizontal=True)
    if state["ed_confidence"] == AGREEMENT:
        samples = st.number_input("Answers per task", min_value=2, max_value=prompts.MAX_SAMPLES, step=1, key="ed_samples")
        st.caption(
            f"Each call asks for {samples} answers at the version's temperature: the output tokens are paid {samples} times, "
            "the prompt once where the provider takes `n` (OpenAI, Azure OpenAI, vLLM; others are asked again for the rest). "
            "The confidence of an output is the share of the answers that agree with the kept one."
        )
        if float(state.get("ed_temperature") or 0) == 0:
            st.warning("At temperature 0 the answers mostly agree whatever the task: raise the temperature (0.7 is common) for agreement to measure anything.")

draft = bench.draft(
    name=name or "draft",
    template=template,
    system_message=system or None,
    controls=controls,
    provider_key=key_name or "",
    model=(model or "").strip(),
    temperature=float(temperature),
    max_output_tokens=int(max_tokens) if max_tokens else None,
    note=note or None,
    examples=state.get("examples"),
    samples=int(state["ed_samples"]) if state.get("ed_confidence") == AGREEMENT else None,
)
if start and prompts.changed(start, draft):
    st.caption(f"Unsaved changes to v{start.number}: {', '.join(prompts.changed(start, draft))}.")

# -- save -----------------------------------------------------------------------------------------

label = "Create prompt (v1)" if prompt_name == NEW else f"Save as new version (v{history[-1].number + 1})"
may_change = widgets.may_change()
if st.button(label, key="save", type="primary", disabled=not may_change):
    try:
        if examples_error:
            raise PromptError(f"examples: {examples_error}")
        saved_version = bench.save_new_prompt(name, draft) if prompt_name == NEW else bench.save_version(prompt_name, draft)
    except (PromptError, ConfigError) as error:
        st.error(f"Not saved: {error}")
    else:
        widgets.flash("ok", f"Saved {saved_version.prompt} v{saved_version.number} ({saved_version.model_version}).")
        open_version(saved_version.prompt, saved_version.number)  # the editor holds what was just saved
        st.rerun()

if history:
    widgets.next_step(guide.after_version_saved(history[-1]))

# -- preview and try ------------------------------------------------------------------------------


def preview_and_try() -> None:
    st.subheader("Preview and try on one task")
    t1, t2 = st.columns([2, 1])
    if "next_task" in state:
        state["task_id"] = state.pop("next_task")
    task_id = t1.number_input("Task id", min_value=1, value=None, step=1, key="task_id", placeholder="the next ground-truth task")
    try:
        task = bench.task(int(task_id) if task_id else None)
    except LabelStudioError as error:
        st.info(str(error))
        task = None
    if t2.button("Next ground-truth task", key="next_gt"):
        try:
            state["next_task"] = bench.task(after=task.id if task else task_id).id
            st.rerun()
        except LabelStudioError as error:
            st.error(str(error))
    if task is None:
        return

    st.caption(f"Task {task.id} · [open in Label Studio]({bench.client.task_url(project_id, task.id)})")
    try:
        preview = messages.text_parts(bench.messages(draft, task))
    except messages.TemplateError as error:
        st.error(f"The template cannot be filled: {error}")
    except (RenderError, LabelStudioError) as error:
        st.error(f"This task cannot be put into the prompt: {error}")
    else:
        st.code(preview, language=None, wrap_lines=True)

    if st.button("Try it", key="try", type="primary", disabled=not may_change):
        try:
            state["trial"] = bench.try_on(draft, task)
        except (PromptError, ConfigError) as error:
            st.error(f"Cannot try yet: {error}")
            state.pop("trial", None)

    trial = state.get("trial")
    if trial is not None and trial.task_id == task.id:
        outputs = [bench.targets.output(c) for c in draft.controls if c in {o.name for o in bench.targets.outputs}]
        if trial.error:
            st.error(f"Failed: {trial.error}")
        elif trial.correct is True:
            st.success("Matches the ground truth.")
        elif trial.correct is False:
            st.warning(f"Differs from the ground truth in: {', '.join(trial.differs_in)}.")
        else:
            st.info("This task has no ground truth to compare with.")
        m1, m2, m3, m4, m5 = st.columns(5)
        m5.metric("Confidence", f"{trial.confidence:.2f}" if trial.confidence is not None else "—", help=None if trial.confidence is not None else "Nothing to measure it by: the provider gave no log-probabilities.")
        m1.metric("Input tokens", trial.input_tokens)
        m2.metric("Output tokens", trial.output_tokens)
        m3.metric("Cost", f"${trial.cost_usd:.6f}" if trial.cost_usd is not None else "no price")
        m4.metric("Latency", f"{trial.latency_ms:.0f} ms" if trial.latency_ms is not None else "—")
        if outputs:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "output": o.name,
                            "answer": answers.shown(o, trial.regions),
                            "ground truth": answers.shown(o, trial.ground_truth) if trial.ground_truth is not None else "—",
                        }
                        for o in outputs
                    ]
                ),
                hide_index=True,
                key="trial_answers",
            )
        with st.expander("Raw answer", expanded=bool(trial.error)):
            st.code(trial.raw if trial.raw is not None else "(no answer)", language="json", wrap_lines=True)
        with st.expander("Parsed answer and Label Studio regions"):
            st.json({"parsed": trial.parsed, "regions": trial.regions})
        with st.expander("Messages sent"):
            st.code(messages.text_parts(trial.messages) if trial.messages else "(nothing was sent)", language=None, wrap_lines=True)


preview_and_try()

# -- history and diff -----------------------------------------------------------------------------

if history:
    st.subheader(f"History of {prompt_name}")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "version": f"v{v.number}",
                    "saved": v.created_at,
                    "model": v.model,
                    "key": v.provider_key,
                    "temperature": v.temperature,
                    "outputs": ", ".join(v.controls),
                    "note": v.note or "",
                }
                for v in reversed(history)
            ]
        ),
        hide_index=True,
        key="history",
    )
    if len(history) > 1:
        numbers = [v.number for v in history]
        if state.get("diff_for") != (project_id, prompt_name, numbers[-1]):
            # a new version (or another prompt): compare the latest with the one before it
            state["diff_for"] = (project_id, prompt_name, numbers[-1])
            widgets.show_next("diff_a", numbers[-2])
            widgets.show_next("diff_b", numbers[-1])
        d1, d2 = st.columns(2)
        a = widgets.select(d1, "Compare", numbers, "diff_a", format_func=lambda n: f"v{n}")
        b = widgets.select(d2, "with", numbers, "diff_b", format_func=lambda n: f"v{n}")
        shown = prompts.diff(history[numbers.index(a)], history[numbers.index(b)])
        if shown.same:
            st.caption("These versions are the same.")
        if shown.settings:
            st.dataframe(pd.DataFrame(shown.settings, columns=["setting", f"v{a}", f"v{b}"]), hide_index=True, key="diff_settings")
        for title, lines in (("System message", shown.system_message), ("Template", shown.template)):
            if lines:
                st.markdown(f"**{title}**")
                st.code("\n".join(lines), language="diff", wrap_lines=True)

# -- archive, restore, delete ------------------------------------------------------------------------

if history:
    with st.expander(f"Archive or delete {prompt_name}"):
        st.caption("Archiving hides the prompt from the pickers and keeps its versions, runs and scores; it can be restored. "
                   "Only a prompt that was never run can be deleted.")
        a1, a2, _ = st.columns([1, 1, 2])
        if a1.button("Archive", key="archive", disabled=not may_change):
            prompts.archive(prompt_name, project_id)
            widgets.flash("ok", f"Archived {prompt_name}; restore it below whenever you need it.")
            widgets.forget_pick("prompt")
            st.rerun()
        if a2.button("Delete", key="delete", disabled=not may_change):
            state["confirm_delete"] = (project_id, prompt_name)
        if state.get("confirm_delete") == (project_id, prompt_name):
            st.warning(f"Delete {prompt_name} and its {len(history)} versions? This cannot be undone.")
            if st.button("Yes, delete", key="delete_confirm", type="primary"):
                state.pop("confirm_delete", None)
                try:
                    prompts.delete(prompt_name, project_id)
                except PromptError as error:
                    st.error(f"Not deleted: {error}")
                else:
                    widgets.flash("ok", f"Deleted {prompt_name}.")
                    widgets.forget_pick("prompt")
                    st.rerun()

archived = prompts.latest_versions(project_id, archived=True)
if archived:
    with st.expander(f"Archived prompts ({len(archived)})"):
        for v in archived:
            r1, r2 = st.columns([3, 1])
            r1.write(f"**{v.prompt}** · latest v{v.number} · {v.model}")
            if r2.button("Restore", key=f"restore_{v.prompt}", disabled=not may_change):
                prompts.restore(v.prompt, project_id)
                widgets.flash("ok", f"Restored {v.prompt}.")
                open_version(v.prompt, v.number)
                st.rerun()
