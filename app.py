"""Prompter: write prompts against a Label Studio project, score them, label the project."""

import streamlit as st

st.set_page_config(page_title="Prompter", page_icon=":material/science:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/1_Keys.py", title="Keys", icon=":material/key:"),
    ]
)
navigation.run()
