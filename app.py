"""Prompter: write prompts against a Label Studio project, score them, label the project."""

import streamlit as st

import signin
from core import forkserver, identity

st.set_page_config(page_title="Prompter", page_icon=":material/science:", layout="wide")

serving = signin.serving()
signin.refuse_foreign_requests(serving)
identity.use_resolver(signin.session_user)  # core checks every action against the session's user
user = signin.signed_in(serving)
signin.show_user(user, serving)

# The pages live in views/, not pages/: a Streamlit server that finds a pages/ folder serves its
# scripts directly (each at its own URL, listed in the sidebar) until some session's run reaches
# st.navigation, so before the first sign-in anyone could open a page around the checks above.
navigation = st.navigation(
    [
        st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("views/1_Keys.py", title="Keys", icon=":material/key:"),
        st.Page("views/2_Prompts.py", title="Prompts", icon=":material/edit_note:"),
        st.Page("views/3_Evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("views/4_Predict.py", title="Predict", icon=":material/bolt:"),
        st.Page("views/7_Label_Studio.py", title="In Label Studio", icon=":material/smart_toy:"),
        st.Page("views/5_Team.py", title="Team", icon=":material/group:"),
        st.Page("views/6_Activity.py", title="Activity", icon=":material/history:"),
    ]
)
forkserver.warm()  # so that a click on Start finds a worker process ready
navigation.run()
