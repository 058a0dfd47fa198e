"""sagalens dashboard: routing only. Run with `sagalens dashboard` or `sagalens up`."""

import streamlit as st

# The tab's icon, inline: a Material icon as favicon would be fetched from a font CDN, which
# a dashboard on a closed network cannot reach.
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">'
    '<circle cx="10" cy="10" r="7" fill="#fff" stroke="#3b5bdb" stroke-width="2.4"/>'
    '<path d="M15.2 15.2 21 21" stroke="#3b5bdb" stroke-width="3" stroke-linecap="round"/>'
    '<path d="M5.8 11.6 8.3 8.2l2.4 2.8 3-4.2" fill="none" stroke="#e8590c" stroke-width="1.7"'
    ' stroke-linecap="round" stroke-linejoin="round"/></svg>'
)
st.set_page_config(page_title="sagalens", page_icon=ICON, layout="wide")
OVERVIEW = st.Page(
    "views/overview.py", title="Overview", icon=":material/dashboard:", url_path="", default=True
)


def _overview_path() -> None:
    # Streamlit serves the default page only at "/": /overview is a hidden entry that moves on
    # to the root page, so the sidebar marks "Overview" as the page shown, as it does at "/".
    st.switch_page(OVERVIEW, query_params=st.query_params.to_dict())


st.navigation(
    [
        OVERVIEW,
        st.Page(_overview_path, title="Overview", url_path="overview", visibility="hidden"),
        st.Page("views/sagas.py", title="Sagas", icon=":material/list:", url_path="sagas"),
        st.Page("views/saga.py", title="Saga detail", icon=":material/timeline:", url_path="saga"),
        st.Page("views/flow.py", title="Flow", icon=":material/account_tree:", url_path="flow"),
        st.Page(
            "views/findings.py", title="Findings", icon=":material/report:", url_path="findings"
        ),
        st.Page(
            "views/audit.py", title="Audit log", icon=":material/verified_user:", url_path="audit"
        ),
    ]
).run()
