"""`python -m core keys ...` and `labelstudio ...`: what scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core import connection, keys, settings
from core.local_labelstudio import free_port
from tests.listener import Listener
from tests.standin import StandIn

SECRET = "sk-cli-secret-abcdefghijklmnop4321"


def cli(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the command; ``stdin`` is piped to it (else its standard input is empty)."""
    done = subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=settings.REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120,
        input=stdin or "",
    )
    assert SECRET not in done.stdout + done.stderr, "a secret was printed"
    return done


@pytest.fixture
def server():
    with StandIn(models=("gpt-4o-mini",), api_key=SECRET) as s:
        yield s


def test_add_list_test_remove(server):
    added = cli("keys", "add", "team", "--provider", "openai", "--api-key", SECRET, "--base-url", server.base_url)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"Saved key 'team' (OpenAI …4321). OK: {server.base_url} answered and lists 1 model."

    listed = cli("keys", "list", "--json")
    assert listed.returncode == 0
    (entry,) = json.loads(listed.stdout)["keys"]
    assert entry == {
        "name": "team", "provider": "openai", "source": "saved", "key": "OpenAI …4321", "api_key_env": None,
        "base_url": server.base_url, "organization": None, "endpoint": None, "deployment": None,
        "api_version": None, "extra_headers": [], "problem": None,
    }

    tested = cli("keys", "test", "team")
    assert tested.returncode == 0 and tested.stdout.startswith("OK:") and "1 model" in tested.stdout
    as_json = json.loads(cli("keys", "test", "team", "--json").stdout)
    assert as_json == {"name": "team", "ok": True, "outcome": "ok", "message": as_json["message"], "models": ["gpt-4o-mini"]}

    assert cli("keys", "remove", "team").returncode == 0
    assert json.loads(cli("keys", "list", "--json").stdout) == {"keys": []}


def test_add_tests_the_key_and_saves_nothing_when_the_test_fails(server):
    wrong = cli("keys", "add", "wrong", "--provider", "openai", "--api-key", "sk-wrong-000000000000000", "--base-url", server.base_url)
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr == (
        f"error: Not saved. Key rejected (401): {server.base_url} did not accept this API key; check it and paste it again. "
        "(--no-test saves it without a test.)\n"
    )
    closed_url = f"http://127.0.0.1:{free_port()}/v1"
    closed = cli("keys", "add", "gone", "--provider", "openai-compatible", "--base-url", closed_url, "--json")
    assert closed.returncode == 1 and closed.stderr.startswith(f"error: Not saved. Unreachable: cannot connect to {closed_url}")
    unset = cli("keys", "add", "team", "--provider", "openai", "--api-key-env", "TEAM_KEY_UNSET", "--base-url", server.base_url)
    assert unset.returncode == 1 and "the environment variable TEAM_KEY_UNSET is not set" in unset.stderr
    assert json.loads(cli("keys", "list", "--json").stdout) == {"keys": []}

    anyway = cli("keys", "add", "gone", "--provider", "openai-compatible", "--base-url", closed_url, "--no-test", "--json")
    assert anyway.returncode == 0 and json.loads(anyway.stdout)["test"] is None
    assert [k["name"] for k in json.loads(cli("keys", "list", "--json").stdout)["keys"]] == ["gone"]


def test_failed_test_exits_non_zero_with_the_reason_on_stderr(server):
    cli("keys", "add", "wrong", "--provider", "openai", "--api-key", "sk-wrong-000000000000000", "--base-url", server.base_url, "--no-test")
    done = cli("keys", "test", "wrong")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: Key rejected (401)") and done.stderr.count("\n") == 1

    closed = cli("keys", "add", "gone", "--provider", "openai-compatible", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--no-test")
    assert closed.returncode == 0
    done = cli("keys", "test", "gone", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["outcome"] == "unreachable"


def test_api_key_env_is_read_at_use_and_never_saved(server):
    env = {"TEAM_KEY": SECRET}
    assert cli("keys", "add", "team", "--provider", "openai", "--api-key-env", "TEAM_KEY", "--base-url", server.base_url, env=env).returncode == 0
    assert cli("keys", "test", "team", env=env).returncode == 0
    unset = cli("keys", "test", "team")
    assert unset.returncode == 1 and "TEAM_KEY is not set" in unset.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["keys", "add", "x", "--provider", "openai", "--api-key", "  "], "error: api_key: is empty"),
        (["keys", "add", "x", "--provider", "openai-compatible", "--base-url", "localhost:1234/v1"], "error: base_url: 'localhost:1234/v1' has no http"),
        (["keys", "add", "x", "--provider", "azure", "--api-key", SECRET, "--endpoint", "https://r.openai.azure.com"], "error: deployment:"),
        (["keys", "test", "nobody"], "error: No key is named 'nobody'"),
        (["keys", "remove", "nobody"], "error: No saved key is named 'nobody'"),
        (["labelstudio", "set", "--url", "127.0.0.1:8080", "--api-key", "t"], "error: url: '127.0.0.1:8080' has no http"),
    ],
)
def test_bad_input_exits_non_zero_naming_the_field(args, message):
    done = cli(*args)
    assert done.returncode == 1 and done.stderr.startswith(message), done.stderr


def test_a_malformed_secret_key_is_one_error_line():
    assert cli("keys", "add", "x", "--provider", "openai", "--api-key", SECRET, "--no-test").returncode == 0
    for args in (["keys", "list"], ["keys", "test", "x"], ["keys", "add", "y", "--provider", "openai", "--api-key", SECRET, "--no-test"]):
        done = cli(*args, env={"PROMPTER_SECRET_KEY": "not-a-key"})
        assert done.returncode == 1 and done.stdout == "", done.stdout
        assert done.stderr.startswith("error: PROMPTER_SECRET_KEY is not a valid key: it must be 32 url-safe") and done.stderr.count("\n") == 1


def test_duplicate_name_is_refused():
    assert cli("keys", "add", "x", "--provider", "openai", "--api-key", SECRET, "--no-test").returncode == 0
    again = cli("keys", "add", "x", "--provider", "openai", "--api-key", SECRET, "--no-test")
    assert again.returncode == 1 and again.stderr.startswith("error: name: a key named 'x' already exists")


def test_labelstudio_set_and_test_against_the_real_server(labelstudio):
    token = labelstudio.credentials.token
    done = subprocess.run(
        [sys.executable, "-m", "core", "labelstudio", "set", "--url", labelstudio.url, "--api-key", token],
        cwd=settings.REPO_ROOT, capture_output=True, text=True, env=dict(os.environ),
    )
    assert done.returncode == 0 and token not in done.stdout + done.stderr
    ok = cli("labelstudio", "test")
    assert ok.returncode == 0 and ok.stdout.startswith("OK: Label Studio 1.")

    cli("labelstudio", "set", "--url", labelstudio.url, "--api-key", "bad-token-0000000000")
    bad = cli("labelstudio", "test", "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["outcome"] == "rejected"
    assert "rejected the API token" in bad.stderr and "bad-token-0000000000" not in bad.stdout + bad.stderr


# -- secrets kept off the command line ------------------------------------------------------------


def test_a_key_read_from_standard_input_or_a_variable_is_saved(server):
    piped = cli("keys", "add", "piped", "--provider", "openai", "--api-key", "-", "--base-url", server.base_url, stdin=f"{SECRET}\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("Saved key 'piped' (OpenAI …4321). OK:")
    from_env = cli("keys", "add", "from-env", "--provider", "openai", "--api-key", "env:SOME_SECRET", "--base-url", server.base_url, env={"SOME_SECRET": SECRET})
    assert from_env.returncode == 0, from_env.stderr
    # read once and saved encrypted, unlike --api-key-env, which reads the variable at each use
    assert keys.get("piped").api_key == SECRET and keys.get("from-env").api_key == SECRET
    assert keys.get("from-env").api_key_env is None
    assert cli("keys", "test", "from-env").returncode == 0


def test_headers_read_from_standard_input_or_a_variable():
    lines = "Authorization: Bearer header-secret-0000000007\nX-Team: labels\n"
    done = cli("keys", "add", "gw", "--provider", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1", "--header", "-", "--no-test", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert keys.get("gw").extra_headers == {"Authorization": "Bearer header-secret-0000000007", "X-Team": "labels"}
    done = cli("keys", "edit", "gw", "--header", "env:GW_HEADERS", "--header", "X-Plain: yes", "--no-test", env={"GW_HEADERS": "Authorization: Bearer other-0000000008"})
    assert done.returncode == 0, done.stderr
    assert keys.get("gw").extra_headers == {"Authorization": "Bearer other-0000000008", "X-Plain": "yes"}


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["--api-key", "-"], "", "error: --api-key -: standard input was empty; pipe the secret in"),
        (["--api-key", "-"], "  \n", "error: --api-key -: standard input was empty"),
        (["--api-key", "env:NOT_SET_ANYWHERE"], None, "error: --api-key env:NOT_SET_ANYWHERE: the environment variable NOT_SET_ANYWHERE is not set; export it first, or give the secret on standard input with --api-key -."),
        (["--api-key", "env:"], None, "error: --api-key env:: '' is not an environment variable name"),
        (["--api-key", "-", "--header", "-"], SECRET, "error: --header -: standard input is already read for --api-key; give only one secret as '-'"),
    ],
)
def test_a_secret_that_cannot_be_read_is_one_error_line(args, stdin, message):
    done = cli("keys", "add", "x", "--provider", "openai", "--no-test", *args, stdin=stdin)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert keys.all_keys() == []


def test_labelstudio_token_from_standard_input_or_a_variable(labelstudio):
    token = labelstudio.credentials.token
    done = cli("labelstudio", "set", "--url", labelstudio.url, "--api-key", "-", stdin=token + "\n")
    assert done.returncode == 0, done.stderr
    assert connection.saved().api_key == token and cli("labelstudio", "test").returncode == 0
    connection.forget()
    done = cli("labelstudio", "set", "--url", labelstudio.url, "--api-key", "env:TEAM_LS_TOKEN", env={"TEAM_LS_TOKEN": token})
    assert done.returncode == 0 and token not in done.stdout + done.stderr
    assert connection.saved().api_key == token


# -- keys edit --------------------------------------------------------------------------------------


def test_edit_changes_a_key_and_keeps_its_secret_where_it_was_saved(server):
    assert cli("keys", "add", "team", "--provider", "openai", "--api-key", "-", "--base-url", server.base_url, stdin=SECRET).returncode == 0
    renamed = cli("keys", "edit", "team", "--name", "labels-team")
    assert renamed.returncode == 0, renamed.stderr
    assert renamed.stdout.startswith("Saved key 'labels-team' (OpenAI …4321). OK:")
    assert keys.get("labels-team").api_key == SECRET
    nothing = cli("keys", "edit", "labels-team")
    assert nothing.returncode == 1 and nothing.stderr.startswith("error: keys edit: give at least one change")


def test_edit_to_a_new_address_needs_the_key_again(server):
    new_secret = "sk-cli-new-address-zyxwvutsrq0009"
    assert cli("keys", "add", "team", "--provider", "openai", "--api-key", "-", "--base-url", server.base_url, stdin=SECRET).returncode == 0
    with Listener() as elsewhere:
        refused = cli("keys", "edit", "team", "--base-url", elsewhere.base_url)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr == (
            "error: api_key: changing the base URL would send the saved key somewhere it was not saved for; "
            "type the key again to send it to the new address\n"
        )
        refused = cli("keys", "edit", "team", "--base-url", elsewhere.base_url, "--no-test")
        assert refused.returncode == 1 and "type the key again" in refused.stderr
        assert elsewhere.requests() == []
        assert keys.get("team").base_url == server.base_url

        moved = cli("keys", "edit", "team", "--base-url", elsewhere.base_url, "--api-key", "-", "--json", stdin=new_secret)
        assert moved.returncode == 0, moved.stderr
        assert json.loads(moved.stdout)["key"]["base_url"] == elsewhere.base_url
        assert {h.headers["authorization"] for h in elsewhere.requests()} == {f"Bearer {new_secret}"}
        assert SECRET not in " ".join(elsewhere.header_values())
