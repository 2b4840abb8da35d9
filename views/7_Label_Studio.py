import pandas as pd
import streamlit as st

import widgets
from core import identity, labeling, predict, settings
from core.backend import instructions, publications
from core.formatting import percent, usd
from core.labelstudio import LabelStudioError

st.title("In Label Studio")
st.caption(
    "Publish a version to a project: Label Studio asks it for a pre-label when a task opens, for Retrieve Predictions on "
    "selected tasks, and (interactive) for the answer to an instruction an annotator types in the task and sends with Shift+Enter."
)
widgets.require_settings()

state = st.session_state
widgets.show_flash()

client, project_id = widgets.pick_project("lb_project", detail=lambda p: f"{p.prediction_count} predictions")
served = publications.get(project_id)
may_change = widgets.may_change()


# -- what the project is served by ------------------------------------------------------------------

st.subheader("Served by")
if served is None:
    st.info("No version answers inside Label Studio for this project yet: publish one below.")
else:
    state_now, error = publications.label_studio_state(served, client)
    said = f"**{served.version.model_version}** ({served.version.model}) answers for this project through {served.url}: Label Studio says *{state_now}*."
    if served.interactive:
        said += f" Interactive: annotators type an instruction into **{served.instruction}** and press Shift+Enter."
    st.markdown(said)
    st.caption(f"Published by {served.published_by} on {served.published_at:%Y-%m-%d %H:%M} UTC." + (f" Spending limit {usd(served.max_cost_usd)}." if served.max_cost_usd else ""))
    if error:
        st.error(f"Label Studio says: {error}")
    calls = [publications.call_summary(r) for r in publications.recent_calls(served, limit=20)]
    if calls:
        shown = pd.DataFrame(calls)[["at", "why", "version", "tasks", "answered", "failed", "from_cache", "cost_usd", "reason"]]
        shown["at"] = pd.to_datetime(shown["at"])
        st.dataframe(
            widgets.readable(shown),
            hide_index=True,
            key="lb_calls",
            column_config={
                "at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                "cost_usd": st.column_config.NumberColumn("cost (USD)", format="%.5f"),
                "from_cache": "from the store",
            },
        )
    else:
        st.caption("Label Studio has not asked for anything yet: open a task without a prediction in Label Studio.")
    if st.button("Disconnect", key="lb_disconnect", disabled=not may_change):
        state["lb_confirm_disconnect"] = project_id
    if state.get("lb_confirm_disconnect") == project_id:
        st.warning(f"Disconnect Prompter's backend from this project? Predictions already saved stay; nothing new is asked of {served.version.model_version}.")
        y, n, _ = st.columns([1, 1, 2])
        if y.button("Yes, disconnect", key="lb_disconnect_confirm", type="primary"):
            state.pop("lb_confirm_disconnect", None)
            try:
                publications.disconnect(project_id, client)
                widgets.flash("ok", f"Disconnected: {served.version.model_version} no longer answers for this project.")
            except (LabelStudioError, identity.NotAllowed, ValueError) as error:
                widgets.flash("error", f"Not disconnected: {error}")
            st.rerun()
        if n.button("No", key="lb_disconnect_cancel"):
            state.pop("lb_confirm_disconnect", None)
            st.rerun()


# -- publishing -------------------------------------------------------------------------------------

st.subheader("Publish a version")


def version_label(v) -> str:
    scored = predict.scores(v.prompt, v.project_id).get(v.number)
    shown = f"v{v.number} · accuracy {percent(scored['accuracy'])} on {scored['tasks']} tasks" if scored else f"v{v.number} · not evaluated yet"
    return shown + (" · published" if served and served.version == v else "")


version = widgets.pick_version(project_id, "lb", then="publish it", label=version_label, default=lambda name: predict.best_version(name, project_id))
if version is not None:
    try:
        text_areas = [o.name for o in labeling.read(client.label_config(project_id)).outputs if o.tag == "TextArea" and o.name not in version.controls]
    except (LabelStudioError, labeling.ConfigError) as error:
        st.error(f"Could not read the project's labeling config. {error}")
        st.stop()
    url = st.text_input("Backend address (as Label Studio reaches it)", value=served.url if served else settings.load().backend_url, key="lb_url")
    c1, c2, c3 = st.columns(3)
    interactive = c1.checkbox(
        "Interactive prompter",
        value=bool(served and served.interactive) or bool(text_areas),
        disabled=not text_areas,
        key="lb_interactive",
        help="Annotators type an instruction into a TextArea of the task and press Shift+Enter; the version answers it."
        if text_areas
        else "The labeling config needs a TextArea the version does not fill, for annotators to type into.",
    )
    instruction = c2.selectbox("Instruction box", text_areas or ["(none)"], key="lb_instruction", disabled=not (interactive and text_areas))
    max_cost = c3.number_input(
        "Spending limit (USD)", min_value=0.0, value=None, step=0.5, format="%.4f", placeholder="no limit", key="lb_max_cost",
        help="Calls that would pass this are refused; their tasks get no prediction. Empty: no limit (monthly budgets still hold).",
    )
    switching = served is not None and served.version != version
    if served is not None and served.version == version:
        label = f"Publish {version.model_version} again with these settings"
    else:
        label = f"Publish {version.model_version}" + (f" instead of {served.version.model_version}" if switching else "")
    if st.button(label, key="lb_publish", type="primary", disabled=not may_change):
        try:
            found = publications.connect(
                project_id, version.prompt, version.number, url, client,
                interactive=bool(interactive and text_areas), instruction=instruction if text_areas else publications.DEFAULT_INSTRUCTION,
                max_cost_usd=float(max_cost) if max_cost else None,
            )
            widgets.flash("ok", f"Published: {found.version.model_version} answers for this project in Label Studio. Open a task there to see its pre-label.")
        except (LabelStudioError, identity.NotAllowed, ValueError) as error:
            widgets.flash("error", f"Not published: {error}")
        st.rerun()


# -- instructions annotators typed ------------------------------------------------------------------

if served is not None and served.interactive:
    st.subheader("Instructions annotators typed")
    found = instructions.listed(project_id, client)
    if not found:
        st.caption(f"None saved with an annotation yet. An annotator types one into {served.instruction!r}, presses Shift+Enter, then submits the task.")
    else:
        st.dataframe(
            pd.DataFrame([{"instruction": i.text, "times": i.times, "by": ", ".join(i.annotators), "tasks": len(i.tasks), "last": i.last_at} for i in found]),
            hide_index=True,
            key="lb_instructions",
            column_config={"last": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
        )
        texts = [i.text for i in found]
        chosen = st.selectbox("Instruction", texts, key="lb_instruction_pick", format_func=lambda t: t if len(t) < 90 else t[:87] + "...")
        if st.button("Save as a new version", key="lb_save_instruction", disabled=not may_change, help="A new version of the published prompt with this instruction as its template, to evaluate on the ground truth."):
            try:
                saved = instructions.save_as_version(project_id, chosen, client)
                widgets.flash("ok", f"Saved {saved.model_version}. Evaluate it on the Evaluate page to see how it does on the ground truth.")
            except (LabelStudioError, identity.NotAllowed, ValueError) as error:
                widgets.flash("error", f"Not saved: {error}")
            st.rerun()
        st.page_link("views/3_Evaluate.py", label="Evaluate a version", icon=":material/analytics:")


# -- every project served ----------------------------------------------------------------------------

everything = publications.published()
if everything:
    st.subheader("Every project served")
    titles = {p.id: p.title for p in client.projects()}
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "project": f"{titles.get(p.project_id, '(not in Label Studio)')} (#{p.project_id})",
                    "version": p.version.model_version,
                    "interactive": p.interactive,
                    "Label Studio says": publications.label_studio_state(p, client)[0],
                    "published by": p.published_by,
                }
                for p in everything
            ]
        ),
        hide_index=True,
        key="lb_served",
    )
