"""tests/oidc.py end to end, away from the dashboard: a throwaway Streamlit app that signs in with
st.login() against the loopback OIDC provider, two people in two browser contexts, one signs out."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from core.local_labelstudio import free_port
from tests.helpers import streamlit_healthy, wait_until
from tests.oidc import oidc_provider, sign_in, sign_out, stay_on_loopback, write_secrets

APP = """
import streamlit as st

if st.user.is_logged_in:
    st.text(f"Signed in as {st.user.email} ({st.user.name})")
    if st.button("Sign out"):
        st.logout()
else:
    if st.button("Sign in"):
        st.login()
"""


@contextmanager
def streamlit_app(script: Path, port: int, secrets: Path, log: Path) -> Iterator[str]:
    """`streamlit run script` on 127.0.0.1:port reading only ``secrets``; yields its URL."""
    url = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "streamlit", "run", str(script),
                "--server.address", "127.0.0.1",
                "--server.port", str(port),
                "--server.headless", "true",
                "--server.fileWatcherType", "none",
                "--browser.gatherUsageStats", "false",
                "--secrets.files", str(secrets),
            ],
            cwd=script.parent,
            env={key: value for key, value in os.environ.items() if not key.startswith("STREAMLIT_")},
            stdout=out,
            stderr=out,
        )

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited; see {log}")
        return streamlit_healthy(url)

    try:
        wait_until(up, 60, 0.2, what=f"the app to start (see {log})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def signed_in_app(tmp_path: Path) -> Iterator[str]:
    """The throwaway app's URL, with the provider and the secrets.toml that ties them together."""
    script = tmp_path / "app" / "signin_app.py"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(APP))
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    with oidc_provider(f"{app_url}/oauth2callback", tmp_path / "oidc.log") as provider:
        secrets = write_secrets(tmp_path / "secrets.toml", app_url, provider)
        with streamlit_app(script, port, secrets, tmp_path / "app.log") as url:
            yield url


def test_two_people_sign_in_and_one_signs_out(signed_in_app: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import chromium

    people = [("ada@example.com", "Ada Lovelace"), ("grace@example.org", "Grace Hopper")]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            pages = []
            for email, name in people:
                context = browser.new_context()  # its own cookie jar: its own identity
                stay_on_loopback(context)
                page = context.new_page()
                page.set_default_timeout(30_000)
                page.goto(signed_in_app)
                sign_in(page, email, name)
                pages.append(page)

            for page, (email, name) in zip(pages, people):
                expect(page.get_by_text(f"Signed in as {email} ({name})", exact=True)).to_be_visible(timeout=30_000)

            ada, grace = pages
            sign_out(ada)
            expect(ada.get_by_role("button", name="Sign in", exact=True)).to_be_visible(timeout=30_000)
            expect(ada.get_by_text("Signed in as")).to_have_count(0)

            # The other person stays signed in, also on a fresh load of the page.
            grace.reload()
            expect(grace.get_by_text("Signed in as grace@example.org (Grace Hopper)", exact=True)).to_be_visible(timeout=30_000)
        finally:
            browser.close()
