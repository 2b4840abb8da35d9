"""core.keys and core.vault: saving, validating, masking and encrypting provider keys; testing a key
(or the Label Studio connection) before it is saved."""

from __future__ import annotations

import base64
import stat

import pytest

from core import connection, keys, store, vault
from core.local_labelstudio import free_port
from tests.standin import StandIn

SECRET = "sk-proj-Zq8xT3stK3yThatMustNeverLeak9931"


def _raw_database_bytes(home) -> bytes:
    store.forget_engines()  # flush and close, so the WAL is checkpointed into the file
    return b"".join(p.read_bytes() for p in home.glob("prompter.db*"))


def _forms_of(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode(), secret.encode("utf-16-le"), raw[-16:]]


def test_add_list_update_remove_round_trip():
    added = keys.add("team", "openai", api_key=SECRET, organization="org-1")
    assert (added.name, added.provider, added.source, added.api_key) == ("team", "openai", "saved", SECRET)
    assert added.masked == "OpenAI …9931"

    (listed,) = keys.all_keys()
    assert listed.api_key == SECRET and listed.organization == "org-1"

    keys.update("team", name="team")  # no api_key: the saved one is kept
    with pytest.raises(keys.InvalidKey, match="^api_key: changing the organization would send the saved key"):
        keys.update("team", organization="org-2")  # ... but not for another organization (see test_key_leak)
    keys.update("team", organization="org-2", api_key=SECRET)
    assert keys.get("team").api_key == SECRET and keys.get("team").organization == "org-2"
    keys.update("team", api_key="sk-another-key-0000000042", name="renamed")
    assert keys.get("renamed").api_key.endswith("0042")
    with pytest.raises(keys.KeyNotFound):
        keys.get("team")

    keys.remove("renamed")
    assert keys.all_keys() == []


def test_every_provider_type_keeps_its_fields():
    keys.add("az", "azure", api_key=SECRET, endpoint="https://res.openai.azure.com/", deployment="gpt4o")
    keys.add("local", "openai-compatible", base_url="http://127.0.0.1:11434/v1", extra_headers={"X-Team": "labels"})
    azure, local = keys.get("az"), keys.get("local")
    assert (azure.endpoint, azure.deployment, azure.api_version) == ("https://res.openai.azure.com", "gpt4o", keys.DEFAULT_AZURE_API_VERSION)
    assert (local.base_url, local.api_key, local.extra_headers) == ("http://127.0.0.1:11434/v1", None, {"X-Team": "labels"})
    assert local.masked == "OpenAI-compatible (no key)"


@pytest.mark.parametrize(
    "provider, fields, field_name, words",
    [
        ("openai", {"api_key": ""}, "api_key", "empty"),
        ("openai", {"api_key": "   "}, "api_key", "empty"),
        ("openai", {}, "api_key", "empty"),
        ("openai", {"api_key": "sk-abc def"}, "api_key", "spaces"),
        ("openai", {"api_key": SECRET, "base_url": "api.openai.com/v1"}, "base_url", "no http:// or https:// scheme"),
        ("openai-compatible", {"base_url": "localhost:11434/v1"}, "base_url", "no http:// or https:// scheme"),
        ("openai-compatible", {}, "base_url", "required"),
        ("azure", {"api_key": SECRET, "endpoint": "https://res.openai.azure.com"}, "deployment", "deployment"),
        ("azure", {"api_key": SECRET, "deployment": "gpt4o"}, "endpoint", "required"),
        ("azure", {"api_key": SECRET, "endpoint": "res.openai.azure.com", "deployment": "x"}, "endpoint", "scheme"),
        ("openai", {"api_key": SECRET, "api_key_env": "OPENAI_API_KEY"}, "api_key", "not both"),
        ("openai-compatible", {"base_url": "http://h/v1", "extra_headers": {"Bad Header": "x"}}, "extra_headers", "not a header name"),
        ("anthropic", {"api_key": SECRET}, "provider", "must be one of"),
    ],
)
def test_bad_input_names_the_field_and_what_it_needs(provider, fields, field_name, words):
    with pytest.raises(keys.InvalidKey) as caught:
        keys.add("k", provider, **fields)
    assert caught.value.field == field_name
    assert str(caught.value).startswith(f"{field_name}: ") and words in str(caught.value)
    assert SECRET not in str(caught.value)
    assert keys.all_keys() == []


def test_names_must_be_given_and_unique():
    with pytest.raises(keys.InvalidKey, match="name: is empty"):
        keys.add("  ", "openai", api_key=SECRET)
    keys.add("team", "openai", api_key=SECRET)
    with pytest.raises(keys.InvalidKey, match="name: a key named 'team' already exists"):
        keys.add("team", "openai", api_key=SECRET)
    with pytest.raises(keys.InvalidKey, match="name: a key named 'team' already exists"):
        keys.draft(" team ", "openai", api_key=SECRET)
    with pytest.raises(keys.InvalidKey, match="kept for keys from the environment"):
        keys.add("env:openai", "openai", api_key=SECRET)


def test_environment_keys_are_listed_and_never_copied(monkeypatch, prompter_home):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-secret-value-77777777")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt4o")
    listed = {k.name: k for k in keys.all_keys()}
    assert listed["env:openai"].source == "environment" and listed["env:openai"].api_key == SECRET
    assert listed["env:azure"].deployment == "gpt4o" and listed["env:azure"].problem is None
    keys.add("saved-one", "openai-compatible", base_url="http://127.0.0.1:9/v1")
    raw = _raw_database_bytes(prompter_home)
    assert all(form not in raw for form in _forms_of(SECRET) + _forms_of("azure-secret-value-77777777"))


def test_environment_azure_key_without_endpoint_says_what_is_missing(monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-secret-value-77777777")
    (azure,) = keys.environment_keys()
    assert azure.problem == "AZURE_OPENAI_API_KEY is set but AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT is not"


def test_a_key_may_read_its_secret_from_a_variable(monkeypatch, prompter_home):
    monkeypatch.setenv("TEAM_OPENAI_KEY", SECRET)
    keys.add("team", "openai", api_key_env="TEAM_OPENAI_KEY")
    assert keys.get("team").api_key == SECRET
    assert keys.get("team").masked == "OpenAI …9931 (from $TEAM_OPENAI_KEY)"
    assert all(form not in _raw_database_bytes(prompter_home) for form in _forms_of(SECRET))
    monkeypatch.delenv("TEAM_OPENAI_KEY")
    assert keys.get("team").problem == "the environment variable TEAM_OPENAI_KEY is not set"
    assert keys.get("team").masked == "OpenAI (from $TEAM_OPENAI_KEY)"


def test_no_secret_reaches_the_database_file_in_any_form(prompter_home):
    headers_secret = "Bearer header-secret-5555555555"
    ls_token = "ls-token-abcdef0123456789abcdef0123456789"
    keys.add("team", "openai", api_key=SECRET)
    keys.add("local", "openai-compatible", base_url="http://127.0.0.1:9/v1", extra_headers={"Authorization": headers_secret})
    connection.save("http://127.0.0.1:8080", ls_token)
    raw = _raw_database_bytes(prompter_home)
    for secret in (SECRET, headers_secret, ls_token):
        assert all(form not in raw for form in _forms_of(secret)), secret
    assert b"team" in raw  # the file was read, and holds the names
    key_file = prompter_home / vault.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert keys.get("team").api_key == SECRET and connection.saved().api_key == ls_token


def test_a_lost_key_file_is_a_clear_message_not_a_crash(prompter_home):
    keys.add("team", "openai", api_key=SECRET)
    connection.save("http://127.0.0.1:8080", "ls-token-abcdef0123456789")
    (prompter_home / vault.KEY_FILE).unlink()

    (team,) = keys.all_keys()
    assert team.api_key is None
    assert team.problem.startswith("saved keys cannot be read; add them again")
    assert connection.saved().problem.startswith("saved keys cannot be read; add them again")
    with pytest.raises(keys.InvalidKey, match="paste it again"):
        keys.update("team", organization="x")
    keys.update("team", api_key="sk-new-key-value-000000001234")  # adding it again fixes it
    assert keys.get("team").problem is None and keys.get("team").api_key.endswith("1234")


def test_secret_key_from_the_environment(monkeypatch, prompter_home):
    monkeypatch.setenv("PROMPTER_SECRET_KEY", vault.new_key())
    keys.add("team", "openai", api_key=SECRET)
    assert keys.get("team").api_key == SECRET
    assert not (prompter_home / vault.KEY_FILE).exists()
    monkeypatch.setenv("PROMPTER_SECRET_KEY", vault.new_key())  # another key: unreadable, said clearly
    assert keys.get("team").problem.startswith("saved keys cannot be read")
    monkeypatch.setenv("PROMPTER_SECRET_KEY", "not-a-fernet-key")
    with pytest.raises(ValueError, match="PROMPTER_SECRET_KEY is not a valid key"):
        keys.add("other", "openai", api_key=SECRET)


def test_a_malformed_secret_key_is_said_as_such_not_as_keys_to_add_again(monkeypatch, prompter_home):
    keys.add("team", "openai", api_key=SECRET)
    connection.save("http://127.0.0.1:8080", "ls-token-abcdef0123456789")
    vault.check()  # a well-formed key passes

    monkeypatch.setenv("PROMPTER_SECRET_KEY", "not-a-fernet-key")
    for read in (keys.all_keys, lambda: keys.get("team"), connection.saved, vault.check):
        with pytest.raises(vault.SecretKeyInvalid, match=r"^PROMPTER_SECRET_KEY is not a valid key: it must be 32 url-safe"):
            read()

    monkeypatch.delenv("PROMPTER_SECRET_KEY")
    (prompter_home / vault.KEY_FILE).write_text("truncated-key\n")
    with pytest.raises(vault.SecretKeyInvalid, match=f"^{prompter_home / vault.KEY_FILE} does not hold a valid key"):
        keys.all_keys()
    with pytest.raises(vault.SecretKeyInvalid):
        vault.check()


def test_a_missing_key_file_is_made_when_needed_not_by_a_check(prompter_home):
    vault.check()
    assert not (prompter_home / vault.KEY_FILE).exists()


def test_reprs_and_summaries_hold_no_secret(monkeypatch):
    key = keys.add("team", "openai", api_key=SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key.summary())
    assert key.summary()["key"] == "OpenAI …9931"


def test_a_key_is_saved_only_when_its_test_passes():
    with StandIn(models=("gpt-4o-mini",), api_key=SECRET) as server:
        with pytest.raises(keys.KeyTestFailed, match=r"^Key rejected \(401\)") as failed:
            keys.test_and_add("team", "openai", api_key="sk-wrong-0000000000000000", base_url=server.base_url)
        assert failed.value.check.outcome == "rejected"
        assert keys.all_keys() == []

        key, check = keys.test_and_add("team", "openai", api_key=SECRET, base_url=server.base_url)
        assert key.api_key == SECRET and check.ok and check.message.endswith("lists 1 model.")

        with pytest.raises(keys.KeyTestFailed, match="Key rejected"):
            keys.test_and_update("team", api_key="sk-wrong-0000000000000000")
        assert keys.get("team").api_key == SECRET
        updated, check = keys.test_and_update("team", name="team-7")
        assert updated.name == "team-7" and updated.api_key == SECRET and check.ok

    closed = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(keys.KeyTestFailed, match="^Unreachable"):
        keys.test_and_add("local", "openai-compatible", base_url=closed)
    key, check = keys.test_and_add("local", "openai-compatible", base_url=closed, anyway=True)  # "save anyway"
    assert check is None and keys.get("local").base_url == closed


def test_a_key_from_a_variable_is_tested_with_the_variables_value(monkeypatch):
    with StandIn(models=("gpt-4o-mini",), api_key=SECRET) as server:
        with pytest.raises(keys.KeyTestFailed, match="the environment variable TEAM_KEY is not set"):
            keys.test_and_add("team", "openai", api_key_env="TEAM_KEY", base_url=server.base_url)
        monkeypatch.setenv("TEAM_KEY", SECRET)
        key, check = keys.test_and_add("team", "openai", api_key_env="TEAM_KEY", base_url=server.base_url)
        assert check.ok and key.api_key_env == "TEAM_KEY"


def test_a_key_from_a_variable_can_be_edited(monkeypatch):
    monkeypatch.setenv("TEAM_KEY", SECRET)
    keys.add("team", "openai", api_key_env="TEAM_KEY")
    assert keys.update("team", name="renamed").api_key_env == "TEAM_KEY"
    assert keys.update("renamed", name="team", organization="org-1", api_key_env="TEAM_KEY").organization == "org-1"
    pasted = keys.update("team", api_key="sk-pasted-key-0000000001234")  # a pasted key replaces the variable
    assert (pasted.api_key_env, pasted.api_key) == (None, "sk-pasted-key-0000000001234")


def test_header_lines_are_parsed_and_none_keeps_the_saved_ones():
    assert keys.parse_headers(["X-Team: labels", "  ", "Authorization: Bearer t"]) == {"X-Team": "labels", "Authorization": "Bearer t"}
    assert keys.parse_headers(["", " "]) is None
    with pytest.raises(keys.InvalidKey, match="^extra_headers: line 2 is not 'Name: value'; write each header") as malformed:
        keys.parse_headers(["X-Team: labels", "Authorization Bearer header-secret-6666"])
    assert "header-secret-6666" not in str(malformed.value)
    with pytest.raises(keys.InvalidKey, match="^extra_headers: 'Authorization…' is not a header name") as malformed:
        keys.add("k", "openai-compatible", base_url="http://h/v1", extra_headers=keys.parse_headers(["Authorization Bearer header-secret-6666:x"]))
    assert "header-secret-6666" not in str(malformed.value)
    with pytest.raises(keys.InvalidKey, match="^api_key_env: is not an environment variable name") as malformed:
        keys.add("k", "openai", api_key_env="sk-pasted-here-by-mistake-77")
    assert "sk-pasted" not in str(malformed.value)
    keys.add("local", "openai-compatible", base_url="http://127.0.0.1:9/v1", extra_headers=keys.parse_headers(["X-Team: labels"]))
    keys.update("local", name="renamed", extra_headers=keys.parse_headers([]))
    assert keys.get("renamed").extra_headers == {"X-Team": "labels"}
    with pytest.raises(keys.InvalidKey, match="^extra_headers: changing the base URL would send the saved extra headers"):
        keys.update("renamed", base_url="http://127.0.0.1:10/v1", extra_headers=keys.parse_headers([]))  # see test_key_leak


def test_the_label_studio_connection_is_saved_only_when_its_test_passes(labelstudio):
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(connection.ConnectionTestFailed, match=f"^Cannot reach Label Studio at {closed}"):
        connection.test_and_save(closed, "some-token-0000000000")
    assert connection.saved() is None
    with pytest.raises(ValueError, match="^url: "):
        connection.test_and_save("127.0.0.1:8080", "some-token-0000000000")

    saved, check = connection.test_and_save(labelstudio.url, labelstudio.credentials.token)
    assert check.ok and connection.saved().url == labelstudio.url
    assert saved.masked_token == f"…{labelstudio.credentials.token[-4:]}"
    _, check = connection.test_and_save(closed, "short", anyway=True)
    assert check is None and connection.saved().url == closed and connection.saved().masked_token == "(hidden)"
