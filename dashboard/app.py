"""sagalens dashboard: routing only. Run with `sagalens dashboard` or `sagalens up`."""

import streamlit as st

st.set_page_config(page_title="sagalens", page_icon=":material/troubleshoot:", layout="wide")
st.navigation(
    [
        st.Page(
            "views/overview.py",
            title="Overview",
            icon=":material/dashboard:",
            url_path="overview",
            default=True,
        ),
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
