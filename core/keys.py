"""Model-provider keys: saved under a name the user picks, encrypted at rest, shown masked.

Keys also come from the environment (``OPENAI_API_KEY``; ``AZURE_OPENAI_API_KEY`` with
``AZURE_OPENAI_ENDPOINT``): those are listed as "from environment" and used as they are, never
copied into the database. A saved key may also name an environment variable to read its secret from
(``--api-key-env``), so that the secret itself is never saved.

A saved secret is bound to where it was saved for: an edit that changes the base URL, endpoint,
organization or extra headers must give the secret again, or it is refused before any request is made.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from sqlmodel import select

from core import audit, identity, store, vault
from core.checks import Check, missing_scheme

PROVIDERS = {"openai": "OpenAI", "azure": "Azure OpenAI", "openai-compatible": "OpenAI-compatible"}
DEFAULT_AZURE_API_VERSION = "2024-10-21"
ENVIRONMENT_PREFIX = "env:"
# The fields kept as they are (not secret), in the database, the forms and the command line alike.
PLAIN_FIELDS = ("api_key_env", "base_url", "organization", "endpoint", "deployment", "api_version")


class InvalidKey(ValueError):
    """A field the user gave is wrong; the message names the field and what it needs."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class KeyNotFound(LookupError):
    pass


class KeyTestFailed(ValueError):
    """A key was tested before saving and the test failed, so nothing was saved; the message is the
    test's one sentence."""

    def __init__(self, check: Check):
        super().__init__(check.message)
        self.check = check


@dataclass(frozen=True)
class Key:
    name: str
    provider: str
    source: str = "saved"  # "saved" | "environment"
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    base_url: str | None = None
    organization: str | None = None
    endpoint: str | None = None
    deployment: str | None = None
    api_version: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict, repr=False)
    problem: str | None = None  # why this key cannot be used now, if it cannot

    @property
    def label(self) -> str:
        return PROVIDERS.get(self.provider, self.provider)

    @property
    def masked(self) -> str:
        """Provider and the key's last four characters: all a page or a log may show."""
        origin = f" (from ${self.api_key_env})" if self.api_key_env else ""
        if self.api_key:
            tail = self.api_key[-4:] if len(self.api_key) >= 12 else ""  # a short key shows nothing
            return f"{self.label} …{tail}{origin}"
        return f"{self.label}{origin or ' (no key)'}"

    @property
    def address(self) -> str:
        if self.provider == "azure":
            return f"{self.endpoint} · deployment {self.deployment} · {self.api_version}"
        return self.base_url or "https://api.openai.com/v1"

    def summary(self) -> dict[str, Any]:
        """What `keys list --json` prints: everything but the secrets."""
        return {
            "name": self.name,
            "provider": self.provider,
            "source": self.source,
            "key": self.masked,
            "api_key_env": self.api_key_env,
            "base_url": self.base_url,
            "organization": self.organization,
            "endpoint": self.endpoint,
            "deployment": self.deployment,
            "api_version": self.api_version,
            "extra_headers": sorted(self.extra_headers),
            "problem": self.problem,
        }


def all_keys() -> list[Key]:
    """Saved keys (by name), then the environment's."""
    with store.session() as s:
        rows = s.exec(select(store.ProviderKey).order_by(store.ProviderKey.name)).all()
    return [_from_row(row) for row in rows] + environment_keys()


def get(name: str) -> Key:
    for key in all_keys():
        if key.name == name:
            return key
    known = ", ".join(k.name for k in all_keys()) or "none yet"
    raise KeyNotFound(f"No key is named {name!r} (known: {known}); add it on the Keys page or with `keys add`.")


def draft(name: str, provider: str, **fields: Any) -> Key:
    """A new key, checked but not saved (to test it before saving)."""
    key = validate(Key(name=name, provider=provider, **fields))
    if any(k.name == key.name for k in all_keys()):
        raise InvalidKey("name", f"a key named {key.name!r} already exists; pick another name or edit that one")
    return key


def edited(name: str, /, **changes: Any) -> Key:
    """A saved key with changes applied, checked but not saved; a missing api_key keeps the saved one,
    except where the change would send a saved secret somewhere new (see ``_refuse_moving_secrets``).

    The check happens here, before any test call, so a refused edit sends no request at all."""
    current = get(name)
    if current.source != "saved":
        raise KeyNotFound(f"Key {name!r} comes from the environment; change it there.")
    changes = {k: v for k, v in changes.items() if not (k in ("api_key", "api_key_env", "extra_headers") and v is None)}
    new_name = (changes.get("name") or name).strip()
    if new_name != name and any(k.name == new_name for k in all_keys()):
        raise InvalidKey("name", f"a key named {new_name!r} already exists; pick another name")
    if current.problem and "api_key" not in changes and not changes.get("api_key_env", current.api_key_env):
        raise InvalidKey("api_key", "the saved key cannot be read any more; paste it again")
    base = current
    if "api_key" in changes or "api_key_env" in changes:
        # A secret given now replaces the saved one, whichever way each was given.
        base = replace(base, api_key=None, api_key_env=None)
    elif current.api_key_env:
        # Its secret was read from the variable, not saved: keep naming the variable, not its value.
        base = replace(base, api_key=None)
    candidate = validate(replace(base, **changes, problem=None))
    _refuse_moving_secrets(current, candidate, changes)
    return candidate


# Where a key's secrets go, and as whom: a change to any of these sends the secrets to a new place.
BINDING_FIELDS = {"base_url": "base URL", "endpoint": "endpoint", "organization": "organization", "extra_headers": "extra headers"}


def _refuse_moving_secrets(current: Key, candidate: Key, changes: dict[str, Any]) -> None:
    """Refuse an edit that would send a saved secret to an address (or organization, or with headers)
    it was not saved for, unless the secret is typed again in the same edit.

    A key from ``api_key_env`` is held to the same rule: its variable holds a secret someone meant for
    the old address, so an edit that moves it must name the variable again (``api_key_env``, even the
    same one) or give the key itself. Saved extra headers are secret too (they may hold an
    Authorization header): an address change that keeps them is refused until they are typed again.
    A key with no secret at all (a local server without a key) moves freely."""
    moved = [label for field_name, label in BINDING_FIELDS.items() if getattr(candidate, field_name) != getattr(current, field_name)]
    if not moved:
        return
    what = " and ".join(moved)
    has_secret = bool(current.api_key or current.api_key_env)
    if has_secret and "api_key" not in changes and "api_key_env" not in changes:
        held = f"the key from ${current.api_key_env}" if current.api_key_env else "the saved key"
        again = "the key (or the variable's name)" if current.api_key_env else "the key"
        raise InvalidKey(
            "api_key",
            f"changing the {what} would send {held} somewhere it was not saved for; type {again} again to send it to the new address",
        )
    if current.extra_headers and "extra_headers" not in changes:
        raise InvalidKey(
            "extra_headers",
            f"changing the {what} would send the saved extra headers (kept secret) somewhere they were not saved for; "
            "type the headers again to send them to the new address",
        )


# The fields of BINDING_FIELDS each provider's form shows.
_FORM_BINDINGS = {"openai": ("base_url", "organization"), "azure": ("endpoint",), "openai-compatible": ("base_url", "extra_headers")}


def rebinding_note(key: Key) -> str:
    """What an edit form says next to the secret: which changes need it typed again (the rule of
    ``_refuse_moving_secrets``), in one sentence."""
    held = []
    if key.api_key or key.api_key_env:
        held.append(f"the key (or ${key.api_key_env})" if key.api_key_env else "the key")
    if key.extra_headers:
        held.append("the extra headers")
    if not held:
        return "This key holds no secret, so its address can change freely."
    fields = " or ".join(BINDING_FIELDS[f] for f in _FORM_BINDINGS.get(key.provider, tuple(BINDING_FIELDS)))
    return (
        f"Saved secrets are only sent to the address they were saved for: changing the {fields} needs "
        f"{' and '.join(held)} typed again in the same change."
    )


def test_and_add(name: str, provider: str, *, anyway: bool = False, **fields: Any) -> tuple[Key, Check | None]:
    """Save a new key once a test call succeeds: the rule the Keys page and `keys add` follow.

    A failed test raises KeyTestFailed and saves nothing; ``anyway`` ("Save anyway", ``--no-test``)
    saves without a test, and the check is then None.
    """
    identity.require_role("admin", "add keys")  # before the secret is sent anywhere
    return _test_and_save(draft(name, provider, **fields), lambda: add(name, provider, **fields), anyway)


def test_and_update(name: str, /, *, anyway: bool = False, **changes: Any) -> tuple[Key, Check | None]:
    """Change a saved key once the changed key passes a test; as ``test_and_add``."""
    identity.require_role("admin", "edit keys")
    return _test_and_save(edited(name, **changes), lambda: update(name, **changes), anyway)


def _test_and_save(drafted: Key, save, anyway: bool) -> tuple[Key, Check | None]:
    from core import providers  # it builds clients from a Key, so it imports this module

    check = None if anyway else providers.test(_with_environment(drafted))
    if check is not None and not check.ok:
        raise KeyTestFailed(check)
    return save(), check


def add(name: str, provider: str, **fields: Any) -> Key:
    """Save a new key without testing it (``test_and_add`` tests it first); admins only."""
    user = identity.require_role("admin", "add keys")
    key = draft(name, provider, **fields)
    with store.writing() as s:
        s.add(_to_row(key, store.ProviderKey(name=key.name, provider=key.provider)))
    audit.record("key added", target=key.name, by=user, detail=_audited(key))
    return get(key.name)


def update(name: str, /, **changes: Any) -> Key:
    """Change a saved key (admins only). An ``api_key`` of None (or absent) keeps the saved secret,
    unless the change moves it to another address (then InvalidKey asks for it again)."""
    user = identity.require_role("admin", "edit keys")
    key = edited(name, **changes)
    with store.writing() as s:
        row = s.exec(select(store.ProviderKey).where(store.ProviderKey.name == name)).one()
        _to_row(key, row)
        row.updated_at = store.utcnow()
        s.add(row)
    changed = sorted(field for field, value in changes.items() if value is not None and field != "api_key") + (["secret"] if changes.get("api_key") else [])
    audit.record("key edited", target=key.name, by=user, detail={"changed": ", ".join(changed)} | ({"renamed from": name} if key.name != name else {}))
    return get(key.name)


def remove(name: str) -> None:
    user = identity.require_role("admin", "remove keys")
    with store.writing() as s:
        row = s.exec(select(store.ProviderKey).where(store.ProviderKey.name == name)).first()
        if row is None:
            raise KeyNotFound(f"No saved key is named {name!r}; keys from the environment are removed there.")
        s.delete(row)
    audit.record("key removed", target=name, by=user)


def test(name: str) -> Check:
    """Send one small call with a key (admins only: it spends the key); the check, in one sentence."""
    from core import providers

    user = identity.require_role("admin", "test keys")
    check = providers.test(get(name))
    audit.record("key tested", target=name, by=user, detail={"result": check.outcome})
    return check


def _audited(key: Key) -> dict[str, Any]:
    """What the audit trail keeps of a key: where it points, never its secret."""
    return {"provider": key.provider} | {f: getattr(key, f) for f in ("base_url", "endpoint", "organization", "deployment") if getattr(key, f)}


def validate(key: Key) -> Key:
    """Return the key with its fields tidied, or raise InvalidKey naming the field at fault."""
    name = (key.name or "").strip()
    if not name:
        raise InvalidKey("name", "is empty; give the key a name, e.g. 'openai-team'")
    if name.startswith(ENVIRONMENT_PREFIX):
        raise InvalidKey("name", f"names starting with {ENVIRONMENT_PREFIX!r} are kept for keys from the environment")
    if key.provider not in PROVIDERS:
        raise InvalidKey("provider", f"must be one of {', '.join(PROVIDERS)}, not {key.provider!r}")
    tidy = {
        "api_key": _secret(key.api_key),
        "api_key_env": _optional(key.api_key_env),
        "base_url": _url("base_url", key.base_url),
        "organization": _optional(key.organization),
        "endpoint": _url("endpoint", key.endpoint),
        "deployment": _optional(key.deployment),
        "api_version": _optional(key.api_version),
        "extra_headers": _headers(key.extra_headers),
    }
    if tidy["api_key"] and tidy["api_key_env"]:
        raise InvalidKey("api_key", "give the key itself or the environment variable that holds it, not both")
    if tidy["api_key_env"] and not tidy["api_key_env"].replace("_", "").isalnum():
        # not shown: a key pasted into this field by mistake would be
        raise InvalidKey("api_key_env", "is not an environment variable name (letters, digits and _); give the variable's name, not the key")
    has_secret = bool(tidy["api_key"] or tidy["api_key_env"])
    if key.provider == "openai" and not has_secret:
        raise InvalidKey("api_key", "is empty; paste the OpenAI API key (it starts with 'sk-')")
    if key.provider == "openai-compatible" and not tidy["base_url"]:
        raise InvalidKey("base_url", "is required for an OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1")
    if key.provider == "azure":
        if not tidy["endpoint"]:
            raise InvalidKey("endpoint", "is required for Azure OpenAI, e.g. https://my-resource.openai.azure.com")
        if not tidy["deployment"]:
            raise InvalidKey("deployment", "an Azure endpoint needs the name of its deployment (Azure AI Foundry → Deployments)")
        if not has_secret:
            raise InvalidKey("api_key", "is empty; paste one of the Azure resource's keys")
        tidy["api_version"] = tidy["api_version"] or DEFAULT_AZURE_API_VERSION
    return replace(key, name=name, **tidy)


def environment_keys() -> list[Key]:
    keys = []
    openai_key = _optional(os.environ.get("OPENAI_API_KEY"))
    if openai_key:
        keys.append(
            Key(
                name=f"{ENVIRONMENT_PREFIX}openai",
                provider="openai",
                source="environment",
                api_key=openai_key,
                base_url=_optional(os.environ.get("OPENAI_BASE_URL")),
                organization=_optional(os.environ.get("OPENAI_ORG_ID")),
            )
        )
    azure_key = _optional(os.environ.get("AZURE_OPENAI_API_KEY"))
    if azure_key:
        endpoint = _optional(os.environ.get("AZURE_OPENAI_ENDPOINT"))
        deployment = _optional(os.environ.get("AZURE_OPENAI_DEPLOYMENT"))
        missing = [n for n, v in (("AZURE_OPENAI_ENDPOINT", endpoint), ("AZURE_OPENAI_DEPLOYMENT", deployment)) if not v]
        keys.append(
            Key(
                name=f"{ENVIRONMENT_PREFIX}azure",
                provider="azure",
                source="environment",
                api_key=azure_key,
                endpoint=endpoint,
                deployment=deployment,
                api_version=_optional(os.environ.get("OPENAI_API_VERSION")) or DEFAULT_AZURE_API_VERSION,
                problem=f"AZURE_OPENAI_API_KEY is set but {' and '.join(missing)} is not" if missing else None,
            )
        )
    return keys


def _from_row(row: store.ProviderKey) -> Key:
    key = Key(name=row.name, provider=row.provider, **{f: getattr(row, f) for f in PLAIN_FIELDS})
    try:
        api_key = vault.decrypt(row.api_key_encrypted) if row.api_key_encrypted else None
        headers = json.loads(vault.decrypt(row.extra_headers_encrypted)) if row.extra_headers_encrypted else {}
    except vault.SecretUnreadable as error:
        return replace(key, problem=str(error))
    return _with_environment(replace(key, api_key=api_key, extra_headers=headers))


def _with_environment(key: Key) -> Key:
    """The key with its secret read from ``api_key_env`` now, or with the problem that it is unset."""
    if not key.api_key_env:
        return key
    value = os.environ.get(key.api_key_env, "").strip()
    if not value:
        return replace(key, problem=f"the environment variable {key.api_key_env} is not set")
    return replace(key, api_key=value)


def _to_row(key: Key, row: store.ProviderKey) -> store.ProviderKey:
    row.name = key.name
    row.provider = key.provider
    for name in PLAIN_FIELDS:
        setattr(row, name, getattr(key, name))
    # A key read from the environment is never copied into the database.
    row.api_key_encrypted = vault.encrypt(key.api_key) if key.api_key and not key.api_key_env else None
    row.extra_headers_encrypted = vault.encrypt(json.dumps(key.extra_headers)) if key.extra_headers else None
    return row


def _optional(value: str | None) -> str | None:
    return (value or "").strip() or None


def _secret(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise InvalidKey("api_key", "is empty or only spaces; paste the key itself")
    if any(c.isspace() for c in value.strip()):
        raise InvalidKey("api_key", "contains spaces or line breaks; paste the key alone")
    return value.strip()


def _url(field_name: str, value: str | None) -> str | None:
    value = _optional(value)
    if value is None:
        return None
    problem = missing_scheme(value, f"https://{value.split('://')[-1] or 'host'}")
    if problem:
        raise InvalidKey(field_name, problem)
    return value.rstrip("/")


def _headers(value: dict[str, str] | None) -> dict[str, str]:
    headers = {}
    for name, content in (value or {}).items():
        name = (name or "").strip()
        if not name or any(c.isspace() or c == ":" for c in name):
            # only the name's first word is shown: the rest may be a secret typed without its colon
            words = name.split()
            shown = f"{words[0]}…" if len(words) > 1 else name
            raise InvalidKey("extra_headers", f"{shown!r} is not a header name; write headers as 'Name: value'")
        headers[name] = str(content).strip()
    return headers


def parse_headers(lines: Iterable[str]) -> dict[str, str] | None:
    """'Name: value' lines (blank ones skipped) -> headers; None when there are none, which on an edit
    keeps the saved headers (they are secret, so the form never shows them)."""
    headers = {}
    for number, line in enumerate(lines, start=1):
        if line.strip():
            name, content = parse_header(line, number)
            headers[name] = content
    return headers or None


def parse_header(text: str, number: int = 1) -> tuple[str, str]:
    """'X-Team: prompter' -> ('X-Team', 'prompter'). A malformed line is named by its number only: its
    text may be a secret typed without its colon."""
    name, colon, content = text.partition(":")
    if not colon or not name.strip():
        raise InvalidKey("extra_headers", f"line {number} is not 'Name: value'; write each header on a line of its own, e.g. X-Team: labels")
    return name.strip(), content.strip()
