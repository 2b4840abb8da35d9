"""A team's dashboard in a real browser (headless Chromium): people sign in through OpenID Connect
(st.login against a real provider on loopback, tests/oidc.py) or through a trusted proxy that names
them in a header (tests/signing_proxy.py), and each sees what their role allows; requests for
another host name, or naming a user from anywhere but the proxy, are refused.

Each person has their own browser context (their own cookies: on 127.0.0.1 they are shared across
ports). Set PROMPTER_SCREENSHOTS to a folder to keep screenshots of the pages a team sees.
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest
from playwright.sync_api import expect

from core import audit, budgets, identity, keys, prompts, runs
from core.labelstudio import NewTask
from core.local_labelstudio import free_port
from tests.browser import Dashboard, choose, chromium, click, fill, settle, shoot, table_column
from tests.conftest import CHOICES_CONFIG, choice
from tests.oidc import oidc_provider, sign_in, sign_out, stay_on_loopback, write_secrets
from tests.signing_proxy import SigningProxy
from tests.standin import Reply

ADMIN = ("admin@example.com", "Ada Admin")
MEMBER = ("member@example.com", "Mo Member")
VIEWER = ("viewer@example.com", "Vi Viewer")
STRANGER = ("stranger@other.org", "Stan Stranger")
LEAD = "lead@example.com"
REVIEWS = {"I love it": "Positive", "Works great": "Positive", "Broke in a day": "Negative"}
TEMPLATE = "Review: {text}\nAnswer with {labels}"
SECRET = "sk-team-0123456789abcdef"


@pytest.fixture
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    expect.set_options(timeout=30_000)  # a script run can take seconds on a busy machine
    with sync_playwright() as playwright:
        chromium_browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            yield chromium_browser
        finally:
            chromium_browser.close()


def visitor(browser, url: str):
    """A new person: their own browser context, kept on loopback, with a page open at ``url``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    stay_on_loopback(context)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    settle(page)
    return page


def go(page, url: str, title: str) -> None:
    """Open a page of the dashboard at its own address (a bookmark, a link someone sent)."""
    page.goto(f"{url}/{title}")
    settle(page)


def main(page):
    return page.get_by_test_id("stMain")


def sidebar(page):
    return page.get_by_test_id("stSidebar")


def signed_in_rows(email: str) -> list[audit.Event]:
    return audit.events(actor=email, action="signed in")


# -- OpenID Connect ------------------------------------------------------------------------------


@pytest.fixture
def oidc_team(use_labelstudio, tmp_path, monkeypatch) -> Iterator[Dashboard]:
    """A team dashboard signing people in through the loopback provider, with Ada its admin."""
    dashboard = Dashboard(tmp_path / "dashboard.log")  # its URL is the redirect URI's
    with oidc_provider(f"{dashboard.url}/oauth2callback", tmp_path / "oidc.log") as provider:
        secrets = write_secrets(tmp_path / "secrets.toml", dashboard.url, provider)
        monkeypatch.setenv("PROMPTER_SECRETS_FILE", str(secrets))  # where core.deployment finds [auth]
        monkeypatch.setenv("STREAMLIT_SECRETS_FILES", str(secrets))  # where st.login finds it
        monkeypatch.setenv("PROMPTER_ADMINS", ADMIN[0])
        monkeypatch.setenv("PROMPTER_PUBLIC_URL", dashboard.url)
        with dashboard:
            yield dashboard


def test_a_team_signs_in_and_each_person_does_what_their_role_allows(oidc_team, browser, make_project, standin):
    url = oidc_team.url
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": r}, [(choice(label), True)]) for r, label in REVIEWS.items()], title="Team reviews")
    standin.respond_with(lambda request: Reply.json({"sentiment": "Positive"}))

    # Before anyone signs in, a page's own address shows the door, not the page
    ada = visitor(browser, f"{url}/Activity")
    expect(ada.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    expect(main(ada)).to_contain_text("Sign in to use this team's Prompter.")
    expect(main(ada)).not_to_contain_text("Who did what")
    expect(ada.get_by_test_id("stSidebarNav")).to_have_count(0)
    shoot(ada, "sign-in")

    # The admin signs in; the sidebar names her and her role
    sign_in(ada, *ADMIN)
    settle(ada)
    expect(sidebar(ada)).to_contain_text("Signed in as Ada Admin (admin)")

    # She adds the team's OpenAI-compatible server, which wants its key, on the Keys page (the
    # fields in the order the form shows them)
    standin.api_key = SECRET
    go(ada, url, "Keys")
    choose(ada, "Provider", "OpenAI-compatible")
    fill(ada, "Name", "team")
    type_secret(ada, "API key", SECRET)
    fill(ada, "Base URL", standin.base_url)
    click(ada, "Test and save")
    expect(main(ada)).to_contain_text(f"Saved 'team'. OK: {standin.base_url} answered")
    saved = {k.name: k for k in keys.all_keys()}["team"]
    assert (saved.provider, saved.source, saved.base_url, saved.api_key) == ("openai-compatible", "saved", standin.base_url, SECRET)
    expect(main(ada)).to_contain_text(f"team · {saved.masked}")  # "OpenAI-compatible …cdef": never the key
    expect(main(ada)).not_to_contain_text(SECRET)
    shoot(ada, "keys-admin")

    # and puts a member and a viewer on the team from the Team page
    go(ada, url, "Team")
    for (email, _), role in ((MEMBER, "member"), (VIEWER, "viewer")):
        fill(ada, "Email", email)
        choose_first(ada, "Role", role)  # the Add form's; "Change a member" has a Role too
        click(ada, "Add to the team")
        expect(main(ada)).to_contain_text(f"Added {email} as {role}; they sign in with that email.")
    assert {m.email: m.role for m in identity.team()} == {ADMIN[0]: "admin", MEMBER[0]: "member", VIEWER[0]: "viewer"}

    # The prompt the team works on, and a budget on the key, set by the admin
    with identity.acting_as(identity.member(ADMIN[0])):
        prompts.create(project.id, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
        budgets.set_key_budget("team", 5.0)

    # The viewer sees the keys but no form, and greyed-out Start buttons with the reason
    vi = visitor(browser, url)
    sign_in(vi, *VIEWER)
    settle(vi)
    expect(sidebar(vi)).to_contain_text("Signed in as Vi Viewer (viewer)")
    go(vi, url, "Keys")
    expect(main(vi)).to_contain_text("Keys, prices, budgets and the Label Studio connection are managed by admins; as a viewer you see them here.")
    expect(main(vi)).to_contain_text(saved.masked)
    expect(vi.get_by_role("heading", name="Add a provider")).to_have_count(0)
    expect(vi.get_by_role("button", name="Test and save")).to_have_count(0)
    for title, start in (("Evaluate", "Run evaluation"), ("Predict", "Start predicting")):
        go(vi, url, title)
        expect(vi.get_by_role("button", name=start, exact=True)).to_be_disabled()
        expect(main(vi)).to_contain_text("You are a viewer: you see every figure, and an admin can make you a member to change things.")
    shoot(vi, "predict-viewer")

    # The member evaluates the prompt from the Evaluate page; the run and the trail name him
    mo = visitor(browser, url)
    sign_in(mo, *MEMBER)
    settle(mo)
    expect(sidebar(mo)).to_contain_text("Signed in as Mo Member (member)")
    go(mo, url, "Evaluate")
    expect(mo.get_by_role("combobox", name="Version", exact=True)).to_have_value(re.compile(r"^v1\b"))
    expect(main(mo)).not_to_contain_text("You are a viewer")
    mo.get_by_role("button", name="Run evaluation", exact=True).click()
    picked = mo.get_by_role("combobox", name="Run", exact=True)
    expect(picked).to_have_value(re.compile(r"^run \d+ · v1 · (completed|failed|stopped|cancelled|interrupted) · "), timeout=60_000)
    settle(mo)
    run = runs.get(int(picked.input_value().split()[1]))
    assert (run.status, run.started_by) == ("completed", MEMBER[0]), run.status_reason
    started = audit.events(action="run started")
    assert [(e.actor, e.target) for e in started] == [(MEMBER[0], f"run {run.id}")], started

    # Someone the team does not know signs in at the provider, and is turned away
    stan = visitor(browser, url)
    sign_in(stan, *STRANGER)
    settle(stan)
    expect(main(stan)).to_contain_text(f"{STRANGER[0]} is not on this dashboard's team; ask an admin to add you on the Team page.")
    expect(stan.get_by_test_id("stSidebarNav")).to_have_count(0)
    assert identity.member(STRANGER[0]) is None

    # Signing out leads back to the Sign in button, also on a fresh load
    sign_out(mo)
    expect(mo.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    mo.reload()
    expect(mo.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    expect(sidebar(mo)).to_have_count(0)

    # One "signed in" row per sign-in (the pages opened since recorded none), none for the stranger
    for email, _ in (ADMIN, VIEWER, MEMBER):
        rows = signed_in_rows(email)
        assert [e.detail for e in rows] == [{"method": "OpenID Connect"}], (email, rows)
    assert signed_in_rows(STRANGER[0]) == []

    # What the admin sees of the team and of its activity
    go(ada, url, "Team")
    expect(main(ada)).to_contain_text("Team mode: everyone signs in through OpenID Connect")
    members = ("email", "name", "role", "spent this month", "monthly budget", "own Label Studio token", "last seen")
    expect(table_column(ada, members, "email")).to_have_text([ADMIN[0], MEMBER[0], VIEWER[0]])
    expect(table_column(ada, members, "name")).to_have_text([ADMIN[1], MEMBER[1], VIEWER[1]])  # as their sign-in named them
    expect(table_column(ada, members, "role")).to_have_text(["admin", "member", "viewer"])
    shoot(ada, "team")
    go(ada, url, "Activity")
    events = ("time (UTC)", "user", "action", "target", "details")
    expect(table_column(ada, events, "target")).to_contain_text([f"run {run.id}"])
    expect(table_column(ada, events, "action")).to_contain_text(["run started", "member added", "member added", "key added", "signed in"])
    shoot(ada, "activity")


def type_secret(page, label: str, text: str) -> None:
    """Type into a password input and commit it with Enter. (Tab would move the focus to the input's
    Show-password button, and Streamlit 1.67 then never sends what was typed: the field blurs into
    its own button, which it does not count as leaving.)"""
    box = page.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Enter")
    settle(page)


def choose_first(page, label: str, option: str) -> None:
    """Pick an option of the first selectbox with this label."""
    box = page.get_by_role("combobox", name=label, exact=True).first
    box.scroll_into_view_if_needed()
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)
    expect(box).to_have_value(option)


# -- a trusted proxy ---------------------------------------------------------------------------------


@pytest.fixture
def proxy_team(tmp_path) -> Iterator[tuple[Dashboard, int]]:
    """A team dashboard that trusts the sign-in proxy at 127.0.0.1, and the port the team opens it
    at (the proxy's, PROMPTER_PUBLIC_URL)."""
    public_port = free_port()
    env = {
        "PROMPTER_TRUSTED_PROXY": "127.0.0.1",
        "PROMPTER_ADMINS": LEAD,
        "PROMPTER_PUBLIC_URL": f"http://127.0.0.1:{public_port}",
        "PROMPTER_SECRETS_FILE": str(tmp_path / "no-secrets.toml"),
    }
    with Dashboard(tmp_path / "dashboard.log", env=env) as dashboard:
        yield dashboard, public_port


def test_the_trusted_proxy_signs_people_in_and_the_same_header_from_elsewhere_does_not(proxy_team, browser):
    dashboard, public_port = proxy_team

    # (a) through the proxy the team uses, which names the user and, as proxies do, adds their
    # address in X-Forwarded-For (the dashboard must still see the proxy's own address)
    named = {"X-Forwarded-Email": LEAD, "X-Forwarded-For": "203.0.113.7"}
    with SigningProxy(dashboard.url, headers=named, port=public_port) as proxy:
        lead = visitor(browser, proxy.url)
        expect(sidebar(lead)).to_contain_text(f"Signed in as {LEAD} (admin)")
        expect(lead.get_by_test_id("stSidebarNav").get_by_role("link", name="Team", exact=True)).to_be_visible()
    upgrades = [head for head in proxy.heads if "upgrade: websocket" in head.lower()]
    assert upgrades and all(f"X-Forwarded-Email: {LEAD}" in head for head in proxy.heads)
    rows = signed_in_rows(LEAD)
    assert [e.detail for e in rows] == [{"method": "trusted proxy"}], rows

    # (b) the same header from another address (127.0.0.2), presented at the team's address so that
    # the Host check passes: nobody is signed in, and the trail records nothing
    with SigningProxy(dashboard.url, headers=named, present_as=f"127.0.0.1:{public_port}", source="127.0.0.2") as elsewhere:
        other = visitor(browser, elsewhere.url)
        expect(main(other)).to_contain_text(
            f"Open this dashboard through your team's sign-in proxy (http://127.0.0.1:{public_port}); requests that do not come through it are not signed in."
        )
        expect(sidebar(other)).to_have_count(0)
    assert any(head.startswith("GET /_stcore/stream") for head in elsewhere.heads)
    assert signed_in_rows(LEAD) == rows
    assert [e.action for e in audit.events()] == ["signed in"]


# -- DNS rebinding -----------------------------------------------------------------------------------


def test_a_request_for_another_host_name_gets_the_refusal_and_nothing_of_the_app(tmp_path, browser, monkeypatch):
    monkeypatch.setenv("PROMPTER_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))  # personal mode
    with Dashboard(tmp_path / "dashboard.log") as dashboard:
        # A page of evil.example whose name now resolves to 127.0.0.1: its requests say so in Host (and Origin)
        with SigningProxy(dashboard.url, present_as=f"evil.example:{dashboard.port}") as rebound:
            page = visitor(browser, rebound.url)
            refusal = (
                f"This dashboard answers only at http://127.0.0.1:{dashboard.port}, not at evil.example:{dashboard.port}. "
                "Open it at that address (an admin sets PROMPTER_PUBLIC_URL to the address the team uses)."
            )
            for path in ("", "/Keys", "/Activity"):  # a page's own address gets no further
                if path:
                    page.goto(rebound.url + path)
                    settle(page)
                expect(main(page)).to_contain_text(refusal)
                assert main(page).inner_text().replace(refusal, "").strip() == "gpp_bad"  # and the alert's icon, nothing else
                expect(sidebar(page)).to_have_count(0)
        # the same dashboard at its own address is the personal dashboard
        page.goto(dashboard.url)
        settle(page)
        expect(page.get_by_test_id("stSidebarNav").get_by_role("link", name="Keys", exact=True)).to_be_visible()
        expect(sidebar(page)).to_contain_text("Personal mode")
