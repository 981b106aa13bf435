"""Overview: detector quality (mAP, per-class AP), flagged samples per issue, worst classes."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from audit.ui import cache, charts, competence
from audit.ui.common import require_dataset, shown_errors

name = require_dataset()
st.title("Overview")
token = cache.version(name)
table = cache.table(name)

st.subheader("Detector quality")
with shown_errors("Evaluating the predictions"):
    ev = cache.evaluation(name, token)
    cols = st.columns(3)
    cols[0].metric("mAP50", f"{ev.get('mAP50', float('nan')):.3f}")
    cols[1].metric("mAP50-95", f"{ev.get('mAP', float('nan')):.3f}")
    per_class = {str(k): float(v) for k, v in (ev.get("per_class_AP") or ev.get("per_class")
                                                or {}).items()}
    cols[2].metric("Classes evaluated", len(per_class))
    if per_class:
        left, right = st.columns([2, 1])
        left.altair_chart(charts.ap_bars(per_class), width="stretch")
        worst = sorted(per_class.items(), key=lambda kv: kv[1])[:5]
        right.markdown("**Worst classes**")
        right.dataframe(pd.DataFrame(worst, columns=["class", "AP"]), hide_index=True,
                        key="overview_worst")

st.subheader("Model competence per class")
with shown_errors("Reading the model's competence"):
    competence.show_table(name)

st.subheader("Flagged samples per issue")
flags = table["flagged"].explode().dropna()
n_flagged = int(table["flagged"].map(bool).sum())
st.metric("Flagged samples", f"{n_flagged:,} of {len(table):,}")
if flags.empty:
    st.info("No sample is flagged (or the dataset is not scored yet).")
else:
    counts = flags.value_counts().rename_axis("issue").reset_index(name="samples")
    st.altair_chart(charts.bar_chart(counts, x="issue", y="samples"), width="stretch")
    by_split = (table.loc[table["flagged"].map(bool)].explode("flagged")
                .groupby(["flagged", "split"]).size().unstack(fill_value=0))
    st.dataframe(by_split, key="overview_by_split")
