"""The dashboard in a real browser: a Streamlit server of the app on a free loopback port, driven by
Playwright through the distribution's Chromium (headless).

Streamlit keeps part of a page's state in the browser (what a widget shows), which AppTest does not
model; a defect that lives there is only seen here.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from core import deployment, forkserver, settings
from tests.helpers import ServerProcess, streamlit_healthy

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium() -> str:
    """The distribution's Chromium; `make test` installs it (Playwright cannot download its own here)."""
    for path in (os.environ.get("PROMPTER_CHROMIUM"), *CHROMIUM_PATHS, shutil.which("chromium")):
        if path and Path(path).exists():
            return path
    raise RuntimeError("Chromium is not installed: run the tests with `make test` (it installs the distribution's chromium package).")


class Dashboard(ServerProcess):
    """`streamlit run app.py` with this process's environment (PROMPTER_HOME, Label Studio), what the
    launcher adds to it (deployment.SERVER_ENVIRONMENT), and ``env`` over both. The port, and so
    ``url``, is known before it starts (a sign-in's redirect URI names it)."""

    what = "the dashboard"

    def command(self) -> list[str]:
        return [
            "-m", "streamlit", "run", str(settings.REPO_ROOT / "app.py"),
            "--server.address", "127.0.0.1",
            "--server.port", str(self.port),
            "--server.headless", "true",
        ]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **deployment.SERVER_ENVIRONMENT, forkserver.ENABLED_VARIABLE: "1", **self.env}  # as `make run` starts runs

    def up(self) -> bool:
        return streamlit_healthy(self.url)


class HeldMessages:
    """The dashboard's messages to the browser, held back on cue: what the browser sends meanwhile is
    sent as if the server were slow to answer, so a race between the two happens in a known order.
    Install it before the page opens the dashboard."""

    def __init__(self, page) -> None:
        self.page = page
        self.holding = False
        self.held: list[bytes] = []
        self.browser_side = None
        page.held_messages = self
        page.route_web_socket(re.compile(r"/_stcore/stream$"), self._route)

    def _route(self, socket) -> None:
        server = socket.connect_to_server()
        self.browser_side = socket
        socket.on_message(server.send)
        server.on_message(self._from_server)

    def _from_server(self, message) -> None:
        if self.holding:
            self.held.append(message)
        else:
            self.browser_side.send(message)

    def hold(self) -> None:
        self.held.clear()
        self.holding = True

    def wait_for_script_runs(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` whole-page script runs have finished on the server since ``hold``."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        def finished(message: bytes) -> bool:
            parsed = ForwardMsg.FromString(message)
            return parsed.WhichOneof("type") == "script_finished" and parsed.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY

        deadline = time.monotonic() + timeout
        while sum(map(finished, self.held)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dashboard did not finish {count} script runs")
            self.page.wait_for_timeout(50)

    def release(self) -> None:
        self.holding = False
        for message in self.held:
            self.browser_side.send(message)
        self.held.clear()


def settle(page, timeout: float = 60_000) -> None:
    """Wait until the script run a click or an edit started has finished and the page is drawn."""
    # The run starts a moment after the event reaches the server, and one run can start another
    # (st.rerun): call it settled once the app says it is not running for three looks in a row.
    quiet = 0
    deadline = time.monotonic() + timeout / 1000
    while quiet < 3:
        page.wait_for_timeout(150)
        quiet = quiet + 1 if page.locator(IDLE).count() else 0
        if time.monotonic() > deadline:
            raise TimeoutError("the page kept running")


def open_page(page, base_url: str, title: str) -> None:
    """Open the dashboard at its root and go to a page by its sidebar link, as a user does."""
    page.goto(base_url)
    settle(page)
    if title != "Home":
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
        settle(page)


def fill(page, label: str, text: str) -> None:
    """Type into a text input or area and commit it, as a user does by clicking elsewhere."""
    box = page.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Tab")
    settle(page)


def choose(page, label: str, option: str | re.Pattern) -> None:
    """Pick an option of a selectbox (by its whole text, or a pattern)."""
    box = page.get_by_role("combobox", name=label, exact=True)
    wanted = page.get_by_role("option", name=option, exact=True) if isinstance(option, str) else page.get_by_role("option", name=option)
    box.scroll_into_view_if_needed()
    for _ in range(3):  # a list opened while the page still scrolls to the box closes again at once
        box.click()
        try:
            wanted.wait_for(state="visible", timeout=3_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    wanted.click()
    settle(page)


def click(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()
    settle(page)


def shown_value(page, label: str) -> str:
    """What a selectbox shows the user right now."""
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def table_column(page, columns: tuple[str, ...], name: str):
    """The cells of one column of the table with these columns, to check with ``expect`` (it waits
    for the table to show them). st.dataframe draws on a canvas and keeps an accessible copy of the
    cells in view, which is every row of a short table."""
    grid = page.locator("[data-testid='stDataFrame'] table[role='grid']")
    for index, column in enumerate(columns, start=1):
        grid = grid.filter(has=page.locator(f"thead th[aria-colindex='{index}']:text-is('{column}')"))
    return grid.locator(f"tbody td[aria-colindex='{columns.index(name) + 1}']")


def click_heatmap_cell(chart, truth: str, predicted: str) -> None:
    """Click the middle of a confusion heatmap's cell, found by the description Vega gives each mark."""
    cell = chart.locator(f"path[aria-label*='Ground truth: {truth};'][aria-label*='Predicted: {predicted};']")
    cell.scroll_into_view_if_needed()
    box = cell.bounding_box()
    chart.page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def shoot(page, name: str, *, at=None) -> None:
    """A screenshot of the page as a 1400x1600 window shows it (scrolled to the element ``at``), when
    PROMPTER_SCREENSHOTS names a folder."""
    folder = os.environ.get("PROMPTER_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.set_viewport_size({"width": 1400, "height": 1600})
    if page.locator("[data-testid='stApp']").count():  # the dashboard; Label Studio's pages have no script to wait for
        settle(page)
    if at is not None:
        at.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(Path(folder) / f"{name}.png"))
    page.set_viewport_size(size)
