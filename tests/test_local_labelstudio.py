"""The local Label Studio that `make run` and the tests start."""

from __future__ import annotations

import socket
import stat

import pytest

from core.local_labelstudio import LocalLabelStudio, LocalLabelStudioError, free_port, load_or_create_credentials


def test_credentials_are_made_once_and_kept_private(tmp_path):
    first = load_or_create_credentials(tmp_path)
    again = load_or_create_credentials(tmp_path)
    assert first == again
    assert len(first.token) == 40 and first.password
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600
    assert first.token not in repr(first) and first.password not in repr(first)


def test_a_running_server_with_our_token_is_reused(labelstudio):
    again = LocalLabelStudio(labelstudio.data_dir, labelstudio.port, labelstudio.venv)
    again.start()
    assert not again.started_here  # reused, so stopping it must leave the server up
    again.stop()
    assert labelstudio.is_healthy()


def test_a_port_taken_by_something_else_is_a_clear_error(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = LocalLabelStudio(tmp_path, port, tmp_path / "venv")
        with pytest.raises(LocalLabelStudioError, match=f"Port {port} is taken.*PROMPTER_LABEL_STUDIO_PORT"):
            server.start()


def test_a_missing_install_says_how_to_install_it(tmp_path):
    server = LocalLabelStudio(tmp_path, free_port(), tmp_path / "no-venv")
    with pytest.raises(LocalLabelStudioError, match="make setup"):
        server.start()
