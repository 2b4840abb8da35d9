"""Prompter's core: everything that is not a widget. Never imports streamlit."""
