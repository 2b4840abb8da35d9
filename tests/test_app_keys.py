"""The Keys page through AppTest: add, test, mask, edit, delete; the full key is never rendered."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core import connection, keys, pricing
from core.local_labelstudio import free_port
from tests.helpers import open_page
from tests.listener import Listener
from tests.standin import StandIn

SECRET = "sk-page-secret-0123456789abcdefXYZ7"




def _rendered_text(app: AppTest) -> str:
    """Everything the page sent to the browser: every element's protobuf, as text."""
    texts = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            texts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(app._tree)
    return "\n".join(texts)


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


@pytest.fixture
def server():
    with StandIn(models=("gpt-4o-mini", "gpt-4o"), api_key=SECRET) as s:
        yield s


def test_add_test_mask_edit_delete(server):
    app = open_page("views/1_Keys.py", timeout=60)
    app.selectbox(key="new_provider").set_value("openai").run()
    app.text_input(key="new_0_name").input("team")
    app.text_input(key="new_0_api_key").input(SECRET)
    app.text_input(key="new_0_base_url").input(server.base_url)
    app.button(key="new_save").click().run()
    assert not app.exception, app.exception

    assert "Saved 'team'. OK:" in " ".join(_texts(app.success)) and "lists 2 models" in " ".join(_texts(app.success))
    assert keys.get("team").api_key == SECRET
    assert app.text_input(key="new_1_api_key").value == ""  # the typed key is cleared after saving
    assert any("**team** · OpenAI …XYZ7" in m.value for m in app.markdown)
    rendered = _rendered_text(app)
    assert "OpenAI …XYZ7" in rendered and server.base_url in rendered  # the walk sees the page
    assert SECRET not in rendered

    app.button(key="test_team").click().run()
    assert any("lists 2 models" in s for s in _texts(app.success))

    app.button(key="edit_team").click().run()
    app.text_input(key="edit_0_organization").input("org-labels")
    app.text_input(key="edit_0_api_key").input(SECRET)  # another organization needs the key again
    app.button(key="edit_save").click().run()
    assert keys.get("team").organization == "org-labels" and keys.get("team").api_key == SECRET
    assert SECRET not in _rendered_text(app)

    app.button(key="delete_team").click().run()
    app.button(key="confirm_delete_team").click().run()
    assert keys.all_keys() == []
    assert "Deleted 'team'." in _texts(app.success)


def test_a_failed_test_does_not_save_unless_confirmed(server):
    app = open_page("views/1_Keys.py", timeout=60)
    app.selectbox(key="new_provider").set_value("openai").run()
    app.text_input(key="new_0_name").input("wrong")
    app.text_input(key="new_0_api_key").input("sk-not-the-right-key-000000000")
    app.text_input(key="new_0_base_url").input(server.base_url)
    app.button(key="new_save").click().run()

    assert any(e.startswith("Not saved. Key rejected (401)") for e in _texts(app.error))
    assert keys.all_keys() == []
    app.button(key="new_save_anyway").click().run()
    assert [k.name for k in keys.all_keys()] == ["wrong"]
    assert "sk-not-the-right-key-000000000" not in _rendered_text(app)


def test_an_edit_whose_test_fails_is_saved_only_when_confirmed(server):
    keys.add("team", "openai", api_key=SECRET, base_url=server.base_url)
    app = open_page("views/1_Keys.py", timeout=60)
    app.button(key="edit_team").click().run()
    app.text_input(key="edit_0_api_key").input("sk-not-the-right-key-000000000")
    app.button(key="edit_save").click().run()
    assert any(e.startswith("Not saved. Key rejected (401)") for e in _texts(app.error))
    assert keys.get("team").api_key == SECRET
    app.button(key="edit_save_anyway").click().run()
    assert not app.exception, app.exception
    assert "Saved 'team' without a successful test." in _texts(app.success)
    assert keys.get("team").api_key == "sk-not-the-right-key-000000000"


def test_a_key_read_from_a_variable_can_be_edited(server, monkeypatch):
    monkeypatch.setenv("TEAM_KEY", SECRET)
    keys.add("team", "openai", api_key_env="TEAM_KEY", base_url=server.base_url)
    app = open_page("views/1_Keys.py", timeout=60)
    app.button(key="edit_team").click().run()
    assert "changing the base URL or organization needs the key (or $TEAM_KEY) typed again" in " ".join(_texts(app.caption))
    app.text_input(key="edit_0_organization").input("org-labels")
    app.text_input(key="edit_0_api_key_env").input("TEAM_KEY")  # another organization needs the variable named again
    app.button(key="edit_save").click().run()
    assert not app.error, _texts(app.error)
    assert any(s.startswith("Saved 'team'. OK:") for s in _texts(app.success))
    assert (keys.get("team").organization, keys.get("team").api_key_env) == ("org-labels", "TEAM_KEY")
    assert SECRET not in _rendered_text(app)


def test_a_new_address_without_the_key_is_refused_keeping_what_was_typed(server):
    keys.add("team", "openai", api_key=SECRET, base_url=server.base_url)
    with Listener() as elsewhere:
        app = open_page("views/1_Keys.py", timeout=60)
        app.button(key="edit_team").click().run()
        assert any(
            c.startswith("Saved secrets are only sent to the address they were saved for: changing the base URL or organization needs the key typed again")
            for c in _texts(app.caption)
        )
        app.text_input(key="edit_0_base_url").input(elsewhere.base_url)
        app.text_input(key="edit_0_organization").input("org-elsewhere")
        app.button(key="edit_save").click().run()
        assert not app.exception, app.exception
        assert _texts(app.error) == [
            "api_key: changing the base URL and organization would send the saved key somewhere it was not saved for; "
            "type the key again to send it to the new address"
        ]
        assert elsewhere.requests() == []
        assert (keys.get("team").base_url, keys.get("team").organization) == (server.base_url, None)
        # what was typed is still there: the key alone completes the change
        assert (app.text_input(key="edit_0_base_url").value, app.text_input(key="edit_0_organization").value) == (elsewhere.base_url, "org-elsewhere")
        app.text_input(key="edit_0_api_key").input("sk-for-the-new-address-00009999")
        app.button(key="edit_save").click().run()
        assert any(s.startswith("Saved 'team'. OK:") for s in _texts(app.success))
        assert {h.headers["authorization"] for h in elsewhere.requests()} == {"Bearer sk-for-the-new-address-00009999"}
        assert SECRET not in " ".join(elsewhere.header_values())
        assert (keys.get("team").base_url, keys.get("team").api_key) == (elsewhere.base_url, "sk-for-the-new-address-00009999")


def test_bad_input_is_refused_naming_the_field():
    app = open_page("views/1_Keys.py", timeout=60)
    app.selectbox(key="new_provider").set_value("azure").run()
    app.text_input(key="new_0_name").input("az")
    app.text_input(key="new_0_api_key").input(SECRET)
    app.text_input(key="new_0_endpoint").input("https://res.openai.azure.com")
    app.button(key="new_save").click().run()
    assert any(e.startswith("deployment: an Azure endpoint needs") for e in _texts(app.error))
    assert keys.all_keys() == []


def test_label_studio_connection_saved_and_environment_wins(use_labelstudio, monkeypatch):
    token = use_labelstudio.credentials.token
    monkeypatch.delenv("LABEL_STUDIO_URL")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    app = open_page("views/1_Keys.py", timeout=60)
    app.text_input(key="ls_url_0").input(use_labelstudio.url)
    app.text_input(key="ls_token_0").input(token)
    app.button(key="ls_save").click().run()
    assert any("Saved the Label Studio connection. OK: Label Studio" in s for s in _texts(app.success))
    assert connection.current().source == "saved"
    assert token not in _rendered_text(app)

    closed = f"http://127.0.0.1:{free_port()}"
    app.text_input(key="ls_url_1").input(closed)
    app.text_input(key="ls_token_1").input("other-token-0000000000")
    app.button(key="ls_save").click().run()
    assert any(e.startswith(f"Not saved. Cannot reach Label Studio at {closed}") for e in _texts(app.error))
    assert connection.saved().url == use_labelstudio.url
    app.button(key="ls_save_anyway").click().run()
    assert "Saved the Label Studio connection without a successful test." in _texts(app.success)
    assert connection.saved().url == closed
    assert "other-token-0000000000" not in _rendered_text(app)

    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "env-token-0000000000000")
    app = open_page("views/1_Keys.py", timeout=60)
    assert any("set in the environment" in i.value for i in app.info)
    app.button(key="ls_test").click().run()
    assert any("Cannot reach Label Studio" in e for e in _texts(app.error))


def test_a_team_sets_and_removes_a_model_price():
    app = open_page("views/1_Keys.py", timeout=60)
    app.text_input(key="price_model").input("my-azure-gpt4o")
    app.number_input(key="price_input").set_value(2.5)
    app.number_input(key="price_output").set_value(10.0)
    app.number_input(key="price_batch_input").set_value(1.25)
    app.number_input(key="price_batch_output").set_value(5.0)
    app.button(key="price_save").click().run()
    assert not app.exception, app.exception
    assert "Saved the price of my-azure-gpt4o." in _texts(app.success)
    assert pricing.cost("my-azure-gpt4o", 1_000_000, 100_000) == pytest.approx(2.5 + 1.0)
    assert pricing.cost("my-azure-gpt4o", 1_000_000, 100_000, batch=True) == pytest.approx(1.25 + 0.5)
    prices = app.dataframe[0].value
    assert prices[prices["model"] == "my-azure-gpt4o"].to_dict("records") == [
        {"model": "my-azure-gpt4o", "input $/M": 2.5, "cached input $/M": "as input", "output $/M": 10.0, "batch input $/M": 1.25, "batch output $/M": 5.0, "source": "yours"}
    ]
    listed = prices[prices["model"] == "gpt-4o-mini"].to_dict("records")  # genai-prices' figures for OpenAI's model
    assert listed == [
        {"model": "gpt-4o-mini", "input $/M": 0.15, "cached input $/M": "0.075", "output $/M": 0.6, "batch input $/M": 0.075, "batch output $/M": 0.3, "source": "list price"}
    ]
    app.text_input(key="price_model").input("my-azure-gpt4o").run()
    app.button(key="price_remove").click().run()
    assert pricing.price("my-azure-gpt4o") is None
