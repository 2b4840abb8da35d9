import pandas as pd
import streamlit as st

from core import audit

st.title("Activity")
st.caption("Who did what, and when: every change to keys, prompts, runs, predictions and the team, and every sign-in. Nothing here can be edited or deleted.")

f1, f2, f3, f4 = st.columns([2, 2, 1, 1])
actor = f1.selectbox("User", ["everyone", *audit.actors()], key="activity_user")
action = f2.selectbox("Action", ["every action", *audit.ACTIONS], key="activity_action")
since = f3.date_input("From", value=None, key="activity_since")
until = f4.date_input("To", value=None, key="activity_until")

found = audit.events(
    actor=None if actor == "everyone" else actor,
    action=None if action == "every action" else action,
    since=since,
    until=until,
    limit=None,
)
if not found:
    st.info("Nothing matches these filters.")
    st.stop()
st.caption(f"{len(found):,} events, newest first.")
st.dataframe(
    pd.DataFrame(
        [{"time (UTC)": e.at.strftime("%Y-%m-%d %H:%M:%S"), "user": e.actor, "action": e.action, "target": e.target or "", "details": e.describe()} for e in found]
    ),
    hide_index=True,
)
st.download_button("Export CSV", audit.to_csv(found), file_name="prompter-activity.csv", mime="text/csv", icon=":material/download:")
