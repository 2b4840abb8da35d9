"""An uncaught exception in the dashboard shows the browser a generic sentence only: its type, message
and traceback (which may hold a URL, a path or a value being worked on) stay in the server's log. This
is .streamlit/config.toml's client.showErrorDetails, which `make run` and the tests read."""

from __future__ import annotations

from streamlit import config
from streamlit.testing.v1 import AppTest

from core import settings

SECRET = "sk-in-an-exception-0000000000abcd"


def failing_page():
    import streamlit as st

    st.write("before the failure")
    raise RuntimeError(f"could not call https://api.example.com with {SECRET}")


def test_an_uncaught_exception_shows_no_details_in_the_browser(monkeypatch):
    monkeypatch.chdir(settings.REPO_ROOT)  # where `make run` starts the dashboard, reading .streamlit/config.toml
    config.get_config_options(force_reparse=True)
    assert config.get_option("client.showErrorDetails") == "none"

    app = AppTest.from_function(failing_page, default_timeout=30)
    app.run()
    (shown,) = app.exception
    assert shown.message.startswith("This app has encountered an error. The original error message is redacted")
    assert shown.stack_trace == [] and shown.proto.type == ""
    assert SECRET not in str(shown.proto) and "RuntimeError" not in str(shown.proto)
