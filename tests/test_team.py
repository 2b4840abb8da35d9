"""Roles enforced in core, whoever asks (page, command, script): a viewer changes nothing, a member
writes prompts and runs them, an admin also manages keys, prices, the connection, the team and its
budgets. Who may sign in, and the CLI's --as. The stand-in shows that a refused key test sends nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from core import budgets, cli, connection, identity, keys, predict, pricing, prompts, runs, store
from core.labelstudio import LabelStudioClient, NewTask
from tests.conftest import CHOICES_CONFIG, choice
from tests.test_cli_keys import cli as subprocess_cli
from tests.team import acting, database, join, plain_deployment, team_mode  # noqa: F401 - plain_deployment is autouse

TEMPLATE = "Sentiment of: {text}\nAnswer with {labels}"
PROJECT = 7  # the core rules below never ask Label Studio about the project
NOWHERE = LabelStudioClient("http://127.0.0.1:9", "never-used-token")  # a refused action must not reach it


@pytest.fixture
def world(standin):
    """A key, a saved price, a saved connection; Vera (viewer), Mo (member), Bea (admin); Mo's prompt
    and a pending run of it."""
    with identity.acting_as(identity.local_admin()):
        keys.add("team", "openai-compatible", base_url=standin.base_url)
        pricing.save("gpt-4o-mini", 0.15, 0.60)
        connection.save("http://127.0.0.1:8080", "shared-labelstudio-token")
    join("vera@x.com", "viewer", "Vera")
    join("mo@x.com", "member", "Mo")
    join("bea@x.com", "admin", "Bea")
    with acting("mo@x.com"):
        v1 = prompts.create(PROJECT, "sentiment", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
        run = runs.create(v1, [1, 2, 3], kind="evaluate", label_config=CHOICES_CONFIG)
    return SimpleNamespace(v1=v1, run=run, base_url=standin.base_url)


ADMIN_ACTIONS = {
    "add keys": lambda w: keys.add("k2", "openai-compatible", base_url=w.base_url),
    "add keys (tested first)": lambda w: keys.test_and_add("k2", "openai-compatible", base_url=w.base_url),
    "edit keys": lambda w: keys.update("team", base_url=w.base_url + "/other"),
    "edit keys (tested first)": lambda w: keys.test_and_update("team", base_url=w.base_url + "/other"),
    "remove keys": lambda w: keys.remove("team"),
    "test keys": lambda w: keys.test("team"),
    "set prices": lambda w: pricing.save("gpt-4o-mini", 1.0, 2.0),
    "remove prices": lambda w: pricing.remove("gpt-4o-mini"),
    "change the Label Studio connection": lambda w: connection.save("http://127.0.0.1:8081", "another-token"),
    "change the Label Studio connection (tested first)": lambda w: connection.test_and_save("http://127.0.0.1:8081", "another-token"),
    "remove the Label Studio connection": lambda w: connection.forget(),
    "set budgets (key)": lambda w: budgets.set_key_budget("team", 5.0),
    "set budgets (member)": lambda w: budgets.set_member_budget("mo@x.com", 5.0),
    "add people to the team": lambda w: identity.add("zed@x.com", "viewer"),
    "change roles": lambda w: identity.set_role("mo@x.com", "viewer"),
    "remove people from the team": lambda w: identity.remove("mo@x.com"),
}
MEMBER_ACTIONS = {
    "save prompts (create)": lambda w: prompts.create(PROJECT, "other", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini"),
    "save prompts (new version)": lambda w: prompts.new_version("sentiment", PROJECT, temperature=0.5),
    "archive prompts": lambda w: prompts.archive("sentiment", PROJECT),
    "restore prompts": lambda w: prompts.restore("sentiment", PROJECT),
    "delete prompts": lambda w: prompts.delete("sentiment", PROJECT),
    "start runs": lambda w: runs.create(w.v1, [4], kind="predict", label_config=CHOICES_CONFIG),
    "cancel runs": lambda w: runs.cancel(w.run.id),
    "resume runs": lambda w: runs.resume_in_background(w.run.id),
    "retry runs": lambda w: runs.retry_failed(w.run.id),
    "delete predictions": lambda w: predict.delete_named(NOWHERE, PROJECT, "sentiment@v1"),
    "turn predictions into annotations": lambda w: predict.to_annotations_named(NOWHERE, PROJECT, "sentiment@v1"),
    "use their own Label Studio token": lambda w: connection.save_own_token("my-own-token"),
}


def refusal(label: str, role: str, needed: str, action: str) -> str:
    who = "an admin" if needed == "admin" else "a member or an admin"
    return f"{label} is a {role}, and only {who} may {action}; ask an admin (Team page) to change your role."


def action_words(name: str) -> str:
    return name.split(" (")[0]


@pytest.mark.parametrize("name", list(ADMIN_ACTIONS) + list(MEMBER_ACTIONS))
def test_a_viewer_is_refused_every_change_and_nothing_changes(world, standin, name):
    call, needed = (ADMIN_ACTIONS[name], "admin") if name in ADMIN_ACTIONS else (MEMBER_ACTIONS[name], "member")
    before = database()
    with acting("vera@x.com"):
        with pytest.raises(identity.NotAllowed) as refused:
            call(world)
    assert str(refused.value) == refusal("Vera <vera@x.com>", "viewer", needed, action_words(name))
    assert database() == before
    assert standin.request_count == 0 and standin.counts == {}  # no key was tested, no model called


@pytest.mark.parametrize("name", list(ADMIN_ACTIONS))
def test_a_member_is_refused_what_only_an_admin_may_do(world, standin, name):
    before = database()
    with acting("mo@x.com"):
        with pytest.raises(identity.NotAllowed) as refused:
            ADMIN_ACTIONS[name](world)
    assert str(refused.value) == refusal("Mo <mo@x.com>", "member", "admin", action_words(name))
    assert database() == before
    assert standin.counts == {}


def test_a_member_saves_prompts_and_starts_and_cancels_runs(world):
    with acting("mo@x.com"):
        other = prompts.create(PROJECT, "other", template=TEMPLATE, controls=["sentiment"], provider_key="team", model="gpt-4o-mini")
        v2 = prompts.new_version("sentiment", PROJECT, temperature=0.5, note="warmer")
        started = runs.create(other, [1, 2], kind="evaluate", label_config=CHOICES_CONFIG)
        cancelled = runs.cancel(started.id)
        prompts.archive("other", PROJECT)
        prompts.restore("other", PROJECT)
    assert (other.model_version, v2.model_version, v2.temperature) == ("other@v1", "sentiment@v2", 0.5)
    assert cancelled.status == "cancelled"
    with store.session() as s:
        assert s.get(store.Run, started.id).started_by == "mo@x.com"
        assert s.get(store.Run, world.run.id).started_by == "mo@x.com"


def test_an_admin_may_do_everything(world, standin):
    with acting("bea@x.com"):
        assert keys.test("team").ok
        keys.test_and_add("k2", "openai-compatible", base_url=standin.base_url)
        keys.update("k2", base_url=standin.base_url + "/")
        pricing.save("gpt-4o-mini", 1.0, 2.0)
        pricing.remove("gpt-4o-mini")
        connection.save("http://127.0.0.1:8081", "another-token")
        budgets.set_key_budget("team", 5.0)
        budgets.set_member_budget("mo@x.com", 2.5)
        identity.add("zed@x.com", "viewer", "Zed")
        identity.set_role("zed@x.com", "member")
        prompts.new_version("sentiment", PROJECT, note="the admin's")
        runs.cancel(world.run.id)
        identity.remove("zed@x.com")
        keys.remove("k2")
        connection.forget()
    assert [k.name for k in keys.all_keys() if k.source == "saved"] == ["team"]
    assert budgets.key_budget("team") == 5.0
    assert {m.email: (m.role, m.monthly_budget_usd) for m in identity.team()} == {
        "vera@x.com": ("viewer", None), "mo@x.com": ("member", 2.5), "bea@x.com": ("admin", None),
    }
    assert runs.get(world.run.id).status == "cancelled"
    assert connection.saved() is None and "gpt-4o-mini" not in pricing.saved_models()


# -- the team's admins -----------------------------------------------------------------------------------


def test_the_last_admin_can_neither_step_down_nor_be_removed():
    join("bea@x.com", "admin", "Bea")
    join("mo@x.com", "member", "Mo")
    before = database()
    with acting("bea@x.com"):
        for act in (lambda: identity.set_role("bea@x.com", "member"), lambda: identity.remove("bea@x.com")):
            with pytest.raises(ValueError) as refused:
                act()
            assert str(refused.value) == "bea@x.com is the last admin; make someone else an admin first."
    assert database() == before

    with acting("bea@x.com"):
        identity.set_role("mo@x.com", "admin")
        identity.set_role("bea@x.com", "member")  # two admins: one may step down
    assert identity.member("bea@x.com").role == "member"
    with acting("mo@x.com"):
        with pytest.raises(ValueError, match="mo@x.com is the last admin"):
            identity.remove("mo@x.com")


# -- signing in ---------------------------------------------------------------------------------------


def test_prompter_admins_become_admins_at_their_first_sign_in_and_strangers_are_refused(monkeypatch):
    team_mode(monkeypatch, admins="Boss@X.com")
    with pytest.raises(identity.NotSignedIn, match=r"^Nobody is signed in: this Prompter is shared by a team, so sign in first \(from the CLI: --as EMAIL, or PROMPTER_AS\)\.$"):
        identity.current()

    boss = identity.sign_in("BOSS@x.com", "The Boss", "proxy")
    assert boss == identity.User("boss@x.com", "The Boss", "admin")
    (row,) = identity.team()
    assert (row.email, row.role, row.added_by) == ("boss@x.com", "admin", "sign-in")

    before = database()
    with pytest.raises(identity.NotAllowed) as refused:
        identity.sign_in("stranger@y.com", "Stranger", "proxy")
    assert str(refused.value) == "stranger@y.com is not on this dashboard's team; ask an admin to add you on the Team page."
    assert database() == before  # no member row, no audit row


def test_an_admin_from_the_environment_demoted_on_the_team_page_stays_demoted(monkeypatch):
    team_mode(monkeypatch, admins="boss@x.com")
    identity.sign_in("boss@x.com", None, "proxy")
    join("ana@x.com", "admin")
    with acting("ana@x.com"):
        identity.set_role("boss@x.com", "viewer")
    assert identity.sign_in("boss@x.com", None, "proxy").role == "viewer"  # the table decides after the first time


def test_allowed_domains_let_anyone_there_in_as_a_viewer(monkeypatch):
    team_mode(monkeypatch)
    monkeypatch.setenv("PROMPTER_ALLOWED_DOMAINS", "@x.com, y.org")
    assert identity.sign_in("newcomer@x.com", "New", "oidc").role == "viewer"
    assert identity.sign_in("other@Y.org", None, "oidc").role == "viewer"
    for outside in ("someone@x.com.evil.example", "someone@sub.x.com", "someone@notx.com"):
        with pytest.raises(identity.NotAllowed, match="is not on this dashboard's team"):
            identity.sign_in(outside, None, "oidc")
    assert {m.email for m in identity.team()} == {"newcomer@x.com", "other@y.org"}

    join("boss@x.com", "admin")
    with acting("boss@x.com"):
        identity.set_role("newcomer@x.com", "member")
    assert identity.sign_in("newcomer@x.com", "New", "oidc").role == "member"  # a role given is kept


# -- the command line obeys the same rules ----------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_world(use_labelstudio, make_project, standin):
    """A real project (the CLI reads its config before saving a prompt), a key, and the team."""
    project, _ = make_project(CHOICES_CONFIG, [NewTask({"text": "I love it"}, [(choice("Positive"), True)])])
    keys.add("team", "openai-compatible", base_url=standin.base_url)
    join("vera@x.com", "viewer", "Vera")
    join("mo@x.com", "member", "Mo")
    return project


def test_the_cli_refuses_a_viewer_and_changes_nothing(cli_world, standin, tmp_path, capsys, monkeypatch):
    template = tmp_path / "template.txt"
    template.write_text(TEMPLATE)
    before = database()
    create = ("prompts", "create", "--project", str(cli_world.id), "--name", "intent", "--key", "team", "--model", "gpt-4o-mini", "--template-file", str(template))
    assert run_cli(capsys, "--as", "vera@x.com", *create) == (
        1, "", "error: Vera <vera@x.com> is a viewer, and only a member or an admin may save prompts; ask an admin (Team page) to change your role.\n",
    )
    add_key = ("keys", "add", "k2", "--provider", "openai-compatible", "--base-url", standin.base_url)
    assert run_cli(capsys, "--as", "VERA@x.com", *add_key) == (
        1, "", "error: Vera <vera@x.com> is a viewer, and only an admin may add keys; ask an admin (Team page) to change your role.\n",
    )
    monkeypatch.setenv("PROMPTER_AS", "mo@x.com")  # the environment names the user as --as does
    assert run_cli(capsys, "keys", "budget", "team", "--usd", "5") == (
        1, "", "error: Mo <mo@x.com> is a member, and only an admin may set budgets; ask an admin (Team page) to change your role.\n",
    )
    done = subprocess_cli("--as", "vera@x.com", *add_key)  # the real entry point exits non-zero too
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "error: Vera <vera@x.com> is a viewer, and only an admin may add keys; ask an admin (Team page) to change your role.\n"
    assert database() == before
    assert standin.counts == {}

    code, out, err = run_cli(capsys, *create)  # Mo, a member, may
    assert (code, err) == (0, "") and out.startswith("Saved intent v1 (intent@v1)")


def test_the_cli_refuses_someone_not_on_the_team(cli_world, capsys):
    before = database()
    assert run_cli(capsys, "--as", "nobody@x.com", "prompts", "archive", "intent") == (
        1, "", "error: nobody@x.com is not on the team; an admin adds them with `team add nobody@x.com --role member`.\n",
    )
    assert database() == before


def test_in_team_mode_the_cli_asks_who_is_acting(cli_world, standin, capsys, monkeypatch):
    team_mode(monkeypatch, admins="boss@x.com")
    before = database()
    code, out, err = run_cli(capsys, "keys", "add", "k2", "--provider", "openai-compatible", "--base-url", standin.base_url, "--no-test")
    assert (code, out) == (1, "")
    assert err == "error: Nobody is signed in: this Prompter is shared by a team, so sign in first (from the CLI: --as EMAIL, or PROMPTER_AS).\n"
    assert run_cli(capsys, "team", "add", "zed@x.com", "--role", "viewer")[2] == err
    assert database() == before

    join("boss@x.com", "admin", "Boss")
    code, out, err = run_cli(capsys, "--as", "boss@x.com", "keys", "add", "k2", "--provider", "openai-compatible", "--base-url", standin.base_url, "--no-test")
    assert (code, err) == (0, "")
    assert "k2" in {k.name for k in keys.all_keys()}
    code, out, err = run_cli(capsys, "--as", "mo@x.com", "team", "add", "zed@x.com", "--role", "viewer")
    assert (code, err) == (1, "error: Mo <mo@x.com> is a member, and only an admin may add people to the team; ask an admin (Team page) to change your role.\n")
