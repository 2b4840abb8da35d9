import pandas as pd
import streamlit as st

import widgets
from core import connection, guide, identity, keys, pricing

st.title("Keys")
st.caption("Model providers and the Label Studio connection. Secrets are encrypted at rest and only ever shown masked.")
widgets.require_settings()

state = st.session_state
widgets.show_flash()
user = identity.current()
is_admin = user.may("admin")
if not is_admin:
    st.info(f"Keys, prices, budgets and the Label Studio connection are managed by admins; as a {user.role} you see them here.", icon=":material/visibility:")


def show(check) -> None:
    (st.success if check.ok else st.error)(check.message)


def saved(message: str, form: str) -> None:
    """Report success after the rerun, with the form's fields (and the typed secret) cleared."""
    widgets.flash("ok", message)
    state[f"{form}_generation"] = state.get(f"{form}_generation", 0) + 1
    state.pop(f"{form}_pending", None)
    st.rerun()


def generation(form: str) -> int:
    return state.get(f"{form}_generation", 0)


# -- Label Studio ---------------------------------------------------------------------------------

st.subheader("Label Studio")
current = connection.current()
if current is not None and current.source == "environment":
    st.info("LABEL_STUDIO_URL is set in the environment, so it is used and wins over any connection saved here.")
if current is None:
    st.warning(connection.NOT_CONFIGURED)
else:
    origin = {"environment": "from the environment", "saved": "saved here", "local": "the local one `make run` started"}
    st.write(f"In use: **{current.url}** ({origin[current.source]}), token {current.masked_token}")
    if current.problem:
        st.error(f"The saved token cannot be used: {current.problem}.")
    if is_admin and st.button("Test connection", key="ls_test"):
        show(connection.test())

if is_admin:
    with st.expander("Set the Label Studio connection", expanded=current is None):
        g = generation("ls")
        ls_url = st.text_input("URL", key=f"ls_url_{g}", placeholder="http://127.0.0.1:8080")
        ls_token = st.text_input("API token", key=f"ls_token_{g}", type="password", help="Account & Settings → Access Token (legacy or personal).")
        if st.button("Test and save", key="ls_save"):
            try:
                _, check = connection.test_and_save(ls_url, ls_token)
            except connection.ConnectionTestFailed as error:
                st.error(f"Not saved. {error}")
                state["ls_pending"] = (ls_url, ls_token)
            except ValueError as error:  # a field is malformed: draft's message names it
                st.error(str(error))
            else:
                saved(f"Saved the Label Studio connection. {check.message}", "ls")
        if state.get("ls_pending") and st.button("Save anyway", key="ls_save_anyway"):
            connection.test_and_save(*state["ls_pending"], anyway=True)
            saved("Saved the Label Studio connection without a successful test.", "ls")

# -- Model providers ------------------------------------------------------------------------------

st.subheader("Model providers")
all_keys = keys.all_keys()
if not all_keys:
    st.info("No provider keys yet: add one below, or set OPENAI_API_KEY in the environment.")
else:
    widgets.next_step(guide.after_key_saved())

for key in all_keys:
    with st.container(border=True):
        left, right = st.columns([3, 2])
        left.markdown(f"**{key.name}** · {key.masked}" + (" · from environment" if key.source == "environment" else ""))
        left.caption(key.address)
        if key.problem:
            left.warning(key.problem)
        widgets.key_budget(key.name, left, can_set=is_admin and key.source == "saved")
        if not is_admin:
            continue
        test_col, edit_col, delete_col = right.columns(3)
        if test_col.button("Test", key=f"test_{key.name}"):
            show(keys.test(key.name))
        if key.source != "saved":
            continue
        if edit_col.button("Edit", key=f"edit_{key.name}"):
            state["editing"] = key.name
        if delete_col.button("Delete", key=f"delete_{key.name}"):
            state["deleting"] = key.name
        if state.get("deleting") == key.name:
            st.warning(f"Delete the key {key.name!r}? Prompts that use it will need another key.")
            if st.button("Yes, delete", key=f"confirm_delete_{key.name}"):
                keys.remove(key.name)
                state.pop("deleting")
                widgets.flash("ok", f"Deleted {key.name!r}.")
                st.rerun()


def key_fields(form: str, provider: str, existing: keys.Key | None = None) -> dict:
    """The inputs for one provider type; returns the fields for core.keys."""
    e = existing or keys.Key(name="", provider=provider)
    p = f"{form}_{generation(form)}"
    keep = " (leave empty to keep the saved one)" if existing else ""
    fields: dict = {"api_key": st.text_input(f"API key{keep}", key=f"{p}_api_key", type="password") or None}
    if existing and existing.api_key_env:
        fields["api_key_env"] = st.text_input(
            f"Or the environment variable that holds it (leave empty to keep ${existing.api_key_env})", key=f"{p}_api_key_env"
        ) or None
    if existing:
        st.caption(keys.rebinding_note(existing))
    if provider == "openai":
        fields["organization"] = st.text_input("Organization (optional)", value=e.organization or "", key=f"{p}_organization")
        fields["base_url"] = st.text_input("Base URL (optional)", value=e.base_url or "", key=f"{p}_base_url", placeholder="https://api.openai.com/v1")
    elif provider == "azure":
        fields["endpoint"] = st.text_input("Endpoint", value=e.endpoint or "", key=f"{p}_endpoint", placeholder="https://my-resource.openai.azure.com")
        fields["deployment"] = st.text_input("Deployment name", value=e.deployment or "", key=f"{p}_deployment")
        fields["api_version"] = st.text_input("API version", value=e.api_version or keys.DEFAULT_AZURE_API_VERSION, key=f"{p}_api_version")
    else:
        fields["base_url"] = st.text_input("Base URL", value=e.base_url or "", key=f"{p}_base_url", placeholder="http://127.0.0.1:11434/v1")
        headers = st.text_area(f"Extra headers (optional, one 'Name: value' per line){keep}", key=f"{p}_headers")
        fields["extra_headers"] = keys.parse_headers(headers.splitlines())
    return fields


def test_then_save(form: str, save) -> None:
    """Save the key once its test passes (core's rule); when it fails, offer to save it anyway."""
    try:
        key, check = save(anyway=False)
    except keys.KeyTestFailed as error:
        st.error(f"Not saved. {error}")
        state[f"{form}_pending"] = lambda: save(anyway=True)
    except (keys.InvalidKey, keys.KeyNotFound) as error:
        st.error(str(error))
    else:
        saved(f"Saved {key.name!r}. {check.message}", form)


if is_admin:
    editing = state.get("editing")
    if editing and any(k.name == editing and k.source == "saved" for k in all_keys):
        existing = keys.get(editing)
        st.subheader(f"Edit {editing}")
        try:
            changes = {"name": st.text_input("Name", value=existing.name, key=f"edit_{generation('edit')}_name")}
            changes |= key_fields("edit", existing.provider, existing)
        except keys.InvalidKey as error:
            st.error(str(error))
            st.stop()
        if st.button("Test and save changes", key="edit_save"):
            test_then_save("edit", lambda anyway: keys.test_and_update(editing, anyway=anyway, **changes))
        if state.get("edit_pending") and st.button("Save anyway", key="edit_save_anyway"):
            state["edit_pending"]()
            state.pop("editing")
            saved(f"Saved {changes['name']!r} without a successful test.", "edit")
        if st.button("Cancel", key="edit_cancel"):
            state.pop("editing")
            st.rerun()

    st.subheader("Add a provider")
    provider = st.selectbox("Provider", list(keys.PROVIDERS), format_func=keys.PROVIDERS.get, key="new_provider")
    name = st.text_input("Name", key=f"new_{generation('new')}_name", placeholder="e.g. openai-team, local-ollama")
    try:
        fields = key_fields("new", provider)
    except keys.InvalidKey as error:
        st.error(str(error))
        st.stop()
    if st.button("Test and save", key="new_save", type="primary"):
        test_then_save("new", lambda anyway: keys.test_and_add(name, provider, anyway=anyway, **fields))
    if state.get("new_pending") and st.button("Save anyway", key="new_save_anyway"):
        try:
            state["new_pending"]()
            saved(f"Saved {name.strip()!r} without a successful test.", "new")
        except keys.InvalidKey as error:
            st.error(str(error))

# -- Model prices ---------------------------------------------------------------------------------

st.subheader("Model prices")
st.caption(
    "Costs are tokens times these prices (USD per million tokens). List prices are OpenAI's, from genai-prices, for every "
    "model it knows (the common ones are shown), with cached input tokens and Batch API calls at their own price. Set a price for a "
    "model that has none (an Azure deployment's name, a local model at 0), or correct a list price; give its Batch API price too, "
    "or batch calls cost the same. Models without a price show tokens and \"no price\"."
)
own = pricing.saved_models()
st.dataframe(
    pd.DataFrame(
        [
            {
                "model": row["model"],
                "input $/M": row["input_per_million"],
                "cached input $/M": "as input" if row["cached_input_per_million"] is None else f"{row['cached_input_per_million']:g}",
                "output $/M": row["output_per_million"],
                "batch input $/M": row["batch_input_per_million"],
                "batch output $/M": row["batch_output_per_million"],
                "source": row["source"],
            }
            for row in pricing.table()
        ]
    ),
    hide_index=True,
)
if is_admin:
    p1, p2, p3 = st.columns([2, 1, 1])
    price_model = p1.text_input("Model", key="price_model", placeholder="e.g. my-azure-gpt4o or llama3.1:8b")
    price_in = p2.number_input("Input $ per million", min_value=0.0, step=0.05, key="price_input")
    price_out = p3.number_input("Output $ per million", min_value=0.0, step=0.05, key="price_output")
    b1, b2, b3 = st.columns([2, 1, 1])
    b1.caption("Batch API calls (optional): their own price, else the one above.")
    batch_in = b2.number_input("Batch input $ per million", min_value=0.0, step=0.05, value=None, key="price_batch_input", placeholder="as input")
    batch_out = b3.number_input("Batch output $ per million", min_value=0.0, step=0.05, value=None, key="price_batch_output", placeholder="as output")
    s1, s2 = st.columns(2)
    if s1.button("Save price", key="price_save"):
        try:
            pricing.save(price_model, price_in, price_out, batch_input_per_million=batch_in, batch_output_per_million=batch_out)
            widgets.flash("ok", f"Saved the price of {price_model.strip()}.")
            st.rerun()
        except ValueError as error:
            st.error(str(error))
    if own and s2.button("Remove my price for this model", key="price_remove", disabled=price_model.strip() not in own):
        pricing.remove(price_model.strip())
        widgets.flash("ok", f"Removed your price for {price_model.strip()}.")
        st.rerun()
