import pandas as pd
import streamlit as st

import widgets
from core import budgets, connection, deployment, identity
from core.formatting import usd

st.title("Team")
widgets.show_flash()
user = identity.current()
serving = deployment.load(address=st.get_option("server.address"), port=st.get_option("server.port"))
st.caption(serving.describe())

members = identity.team()
if members:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "email": m.email,
                    "name": m.name or "",
                    "role": m.role,
                    "spent this month": usd(budgets.member_spend(m.email)),
                    "monthly budget": usd(m.monthly_budget_usd) if m.monthly_budget_usd is not None else "none",
                    "own Label Studio token": "yes" if m.has_labelstudio_token else "no",
                    "last seen": m.last_seen_at,
                }
                for m in members
            ]
        ),
        hide_index=True,
        column_config={"last seen": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
    )
elif serving.personal:
    st.info("Nobody is on the team yet. In personal mode you are the admin; add people here before sharing the dashboard.")
st.caption(" · ".join(f"**{role}**: {duties}" for role, duties in identity.ROLE_DUTIES.items()))

if user.may("admin"):
    st.subheader("Add someone")
    a1, a2, a3 = st.columns([3, 2, 1])
    email = a1.text_input("Email", key="team_new_email", placeholder="ana@example.com")
    name = a2.text_input("Name (optional)", key="team_new_name")
    role = a3.selectbox("Role", identity.ROLES, index=1, key="team_new_role")
    if st.button("Add to the team", key="team_add", type="primary"):
        try:
            added = identity.add(email, role, name or None)
            widgets.flash("ok", f"Added {added.label} as {role}; they sign in with that email.")
            st.rerun()
        except ValueError as error:
            st.error(str(error))

    if members:
        st.subheader("Change a member")
        chosen = st.selectbox("Member", [m.email for m in members], key="team_member")
        member = next(m for m in members if m.email == chosen)
        c1, c2 = st.columns(2)
        new_role = c1.selectbox("Role", identity.ROLES, index=identity.ROLES.index(member.role), key=f"team_role_{chosen}")
        amount = c2.number_input(
            "Monthly budget, US dollars (0: none)", min_value=0.0, step=5.0, value=member.monthly_budget_usd or 0.0, key=f"team_budget_{chosen}"
        )
        b1, b2, b3 = st.columns(3)
        if b1.button("Save role", key="team_save_role", disabled=new_role == member.role):
            try:
                identity.set_role(chosen, new_role)
                widgets.flash("ok", f"{chosen} is now {new_role}.")
                st.rerun()
            except ValueError as error:
                st.error(str(error))
        if b2.button("Save budget", key="team_save_budget"):
            budgets.set_member_budget(chosen, amount or None)
            widgets.flash("ok", f"Budget of {chosen}: {usd(amount) + ' a month' if amount else 'none'}.")
            st.rerun()
        if b3.button("Remove from the team", key="team_remove"):
            try:
                identity.remove(chosen)
                widgets.flash("ok", f"Removed {chosen}; their runs and activity are kept.")
                st.rerun()
            except ValueError as error:
                st.error(str(error))

if not serving.personal and user.may("member"):
    st.subheader("Your Label Studio token")
    st.caption(
        "With your own token, annotations Prompter makes for you in Label Studio carry your name; without one, "
        "the team's connection makes them and the Activity page records that you asked."
    )
    mine = next((m for m in members if m.email == user.email), None)
    if mine is not None and mine.has_labelstudio_token:
        st.write("Your own token is saved (encrypted).")
        if st.button("Remove my token", key="own_token_remove"):
            connection.forget_own_token()
            widgets.flash("ok", "Removed your Label Studio token; the team's connection is used again.")
            st.rerun()
    generation = st.session_state.get("own_token_generation", 0)  # a new field after a save: the token is not kept on the page
    token = st.text_input("Personal access token", type="password", key=f"own_token_{generation}", help="Label Studio: Account & Settings → Access Token.")
    if st.button("Test and save my token", key="own_token_save"):
        try:
            check = connection.save_own_token(token)
        except ValueError as error:
            st.error(str(error))
        else:
            if check.ok:
                st.session_state["own_token_generation"] = generation + 1
                widgets.flash("ok", f"Saved your token. {check.message}")
                st.rerun()
            st.error(f"Not saved. {check.message}")
