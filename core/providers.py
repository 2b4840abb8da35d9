"""A saved key -> a configured OpenAI-SDK client, the models it offers, and a connection test.

The SDK does the HTTP: its retries (429, 5xx, connection errors, Retry-After) and timeouts are used
as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.checks import Check
from core.keys import Key
from core.later import Later

if TYPE_CHECKING:
    import openai
else:
    openai = Later("openai")  # half a second to import: only once a model is called

TEST_TIMEOUT = 15.0


class KeyUnusable(ValueError):
    """The key cannot make a client now (its secret is unreadable, or its variable is unset)."""


def client(key: Key, *, timeout: float = 60.0, max_retries: int = 2) -> openai.OpenAI:
    return _make(key, asynchronous=False, timeout=timeout, max_retries=max_retries)


def async_client(key: Key, *, timeout: float = 60.0, max_retries: int = 2) -> openai.AsyncOpenAI:
    return _make(key, asynchronous=True, timeout=timeout, max_retries=max_retries)


def models(key: Key) -> list[str]:
    """The model names the provider lists; for Azure, the key's deployment.

    Raises the SDK's errors; a server without a model list answers NotFoundError, in which case the
    user types the model name.
    """
    if key.provider == "azure":
        return [key.deployment] if key.deployment else []
    listed = client(key, timeout=TEST_TIMEOUT, max_retries=0).models.list()
    return sorted(model.id for model in listed)


def model_choices(key: Key) -> tuple[list[str], str | None]:
    """The models to offer in a picker, or none and a sentence asking the user to type the name.

    Servers without a model list (some llama.cpp builds, gateways) are common, so a failed listing is
    a fallback, not an error.
    """
    try:
        found = models(key)
    except openai.NotFoundError:
        return [], f"{key.address} has no model list; type the model name."
    except (openai.APIError, KeyUnusable) as error:
        return [], f"Could not list the models of {key.name!r} ({type(error).__name__}); type the model name."
    return found, None if found else f"{key.address} lists no models; type the model name."


def test(key: Key) -> Check:
    """Try the key once, without retries; say in one sentence what happened."""
    if key.problem:
        return Check("unreadable", f"Key {key.name!r} cannot be used: {key.problem}.")
    where = key.address
    try:
        if key.provider == "azure":
            # Azure has no cheap call that checks a deployment, so ask it for one token.
            client(key, timeout=TEST_TIMEOUT, max_retries=0).chat.completions.create(
                model=key.deployment or "",
                messages=[{"role": "user", "content": "ping"}],
                max_completion_tokens=1,
            )
            return Check("ok", f"OK: deployment {key.deployment!r} at {key.endpoint} answered.", (key.deployment or "",))
        found = models(key)
    except openai.AuthenticationError:
        return Check("rejected", f"Key rejected (401): {where} did not accept this API key; check it and paste it again.")
    except openai.PermissionDeniedError:
        return Check("rejected", f"Key rejected (403): the key is valid but not allowed to use {where}.")
    except openai.NotFoundError:
        if key.provider == "azure":
            return Check("not_found", f"Not found (404): {key.endpoint} has no deployment {key.deployment!r}; check the deployment name and endpoint.")
        return Check(
            "not_found",
            f"Not found (404): {where}/models does not exist; check the base URL (it usually ends in /v1), "
            "or, if this server has no model list, type the model name in the prompt.",
        )
    except openai.RateLimitError as error:
        wait = error.response.headers.get("retry-after")
        after = f"; it asks to retry after {wait} s" if wait else ""
        return Check("rate_limited", f"Rate limited (429): {where} accepted the key but is refusing requests for now{after}.")
    except openai.APITimeoutError:
        return Check("unreachable", f"Unreachable: {where} did not answer within {TEST_TIMEOUT:.0f} s.")
    except openai.APIConnectionError as error:
        return Check("unreachable", f"Unreachable: cannot connect to {where} ({_cause(error)}); check the address and that the server is running.")
    except openai.APIStatusError as error:
        return Check("error", f"{where} answered HTTP {error.status_code}; the server reported an error, try again later.")
    return Check("ok", f"OK: {where} answered and lists {len(found)} model{'s' if len(found) != 1 else ''}.", tuple(found))


def _make(key: Key, *, asynchronous: bool, timeout: float, max_retries: int):
    if key.problem:
        raise KeyUnusable(f"Key {key.name!r} cannot be used: {key.problem}.")
    common = dict(timeout=timeout, max_retries=max_retries, default_headers=key.extra_headers or None)
    if key.provider == "azure":
        cls = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
        return cls(
            azure_endpoint=key.endpoint,
            azure_deployment=key.deployment,
            api_version=key.api_version,
            api_key=key.api_key,
            **common,
        )
    cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    return cls(
        api_key=key.api_key or "not-needed",  # local servers (Ollama, vLLM) take any key
        base_url=key.base_url,
        organization=key.organization,
        **common,
    )


def _cause(error: Exception) -> str:
    cause = error.__cause__ or error.__context__
    text = str(cause or error)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "unknown host name"
    return text[:100] or type(error).__name__
