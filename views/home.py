import pandas as pd
import streamlit as st

import signin
import widgets
from core import connection, guide
from core.evaluation import evaluate
from core.formatting import with_intervals

st.title("Prompter")
st.caption(
    "Write a prompt against a Label Studio project, measure every version on its ground truth, "
    "then label the whole project in one click."
)
widgets.require_settings()
st.caption(signin.serving().describe(), help="The README's Team section says how to share the dashboard with a team.")

status = connection.status()

st.subheader("Label Studio")
if status.ok:
    source = "from LABEL_STUDIO_URL" if status.source == "environment" else "started by `make run`"
    st.success(f"Connected to Label Studio {status.version} at {status.url} ({source}).", icon=":material/check_circle:")
else:
    where = f" at {status.url}" if status.url else ""
    st.error(f"Label Studio{where} is not available. {status.error}", icon=":material/error:")
    st.stop()

widgets.next_step(guide.first_step())

st.subheader("Projects")
if not status.projects:
    st.info(f"Label Studio has no projects yet. Create one at {status.url}, or run `python -m core demo create`.")
    st.stop()

st.dataframe(
    pd.DataFrame(
        [
            {
                "id": p.id,
                "project": p.title,
                "tasks": p.task_count,
                "annotated": p.annotated_count,
                "ground truth": p.ground_truth_count,
                "predictions": p.prediction_count,
                "open": f"{status.url}/projects/{p.id}/data",
            }
            for p in status.projects
        ]
    ),
    key="projects",
    hide_index=True,
    column_config={"open": st.column_config.LinkColumn("open", display_text="open in Label Studio")},
)

st.subheader("Prompts")
scores = evaluate.overview()
if not scores:
    st.info("No prompts yet: write one on the Prompts page.")
else:
    titles = {p.id: p.title for p in status.projects}
    st.dataframe(
        pd.DataFrame(
            [
                with_intervals(row, percents=("accuracy",)) | {"project": titles.get(row["project"], f"#{row['project']} (not in Label Studio)")}
                for row in scores
            ]
        ),
        key="prompts",
        hide_index=True,
    )
