"""Encryption at rest for saved API keys and tokens (cryptography's Fernet).

The encryption key never sits in the database: it comes from ``PROMPTER_SECRET_KEY``, or from
``PROMPTER_HOME/secret.key``, generated once with mode 0600 (and tightened to it if found looser). A
copy of the database alone reveals no secret; a lost key file means the saved secrets cannot be read,
and the user is told to add them again.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from core import private, settings

KEY_FILE = "secret.key"


class SecretUnreadable(Exception):
    """A saved secret was encrypted with another key than the one in use now."""


class SecretKeyInvalid(ValueError):
    """The encryption key itself (PROMPTER_SECRET_KEY, or the key file) is malformed, so no secret can
    be read or saved until it is fixed; the message says which and how."""


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    fernet = _fernet()  # a malformed key is its own error, not "saved keys cannot be read"
    try:
        return fernet.decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretUnreadable(
            "saved keys cannot be read; add them again (the encryption key in PROMPTER_SECRET_KEY or "
            f"{_key_path()} is not the one they were saved with)"
        ) from None


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def check() -> None:
    """Raise SecretKeyInvalid when the encryption key in use is malformed (a missing key file is fine:
    it is made when first needed)."""
    if _configured() or _key_path().exists():
        _fernet()


def _configured() -> str:
    return os.environ.get("PROMPTER_SECRET_KEY", "").strip()


def _fernet() -> Fernet:
    configured = _configured()
    if configured:
        try:
            return Fernet(configured.encode("ascii"))
        except ValueError:  # UnicodeEncodeError and binascii.Error are ValueErrors
            raise SecretKeyInvalid(
                "PROMPTER_SECRET_KEY is not a valid key: it must be 32 url-safe base64-encoded bytes; "
                "make one with Fernet.generate_key() (see the README's Settings)."
            ) from None
    path = _key_path()
    try:
        return Fernet(_key_from_file(path))
    except ValueError:
        raise SecretKeyInvalid(
            f"{path} does not hold a valid key (32 url-safe base64-encoded bytes); put back the file it was "
            "saved with, or delete it to have a new one made (saved keys must then be added again)."
        ) from None


def _key_path() -> Path:
    return settings.load().home / KEY_FILE


def _key_from_file(path: Path) -> bytes:
    if not path.exists():
        private.in_home()
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        with os.fdopen(private.open_file(draft, os.O_WRONLY | os.O_TRUNC), "w") as handle:
            handle.write(new_key())
        try:
            os.link(draft, path)  # atomic: if another process got there first, theirs wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    private.tighten(path)  # a key file copied in with a looser mode is made the owner's alone
    return path.read_text().strip().encode("ascii")
