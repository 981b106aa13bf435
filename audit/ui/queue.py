"""The triage queue: which flagged samples to review, in which order (pure pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.ui.state import TriageFilter

QUEUE_COLUMNS = ["filepath", "split", "cluster", "score", "flagged"]
QUEUE_EXTRAS = ("loss", "neighbour_loss_ratio")  # carried along where the table has them


def build_queue(table: pd.DataFrame, flt: TriageFilter) -> pd.DataFrame:
    """Flagged samples matching ``flt``, most suspicious first.

    Args:
        table: the samples table (``views.samples_table``): index ``sample_id``, columns
            ``split``, ``cluster``, ``flagged`` (tuple of issue names), ``mistakenness``,
            ``<issue>_score`` and ``count_<class>``.
        flt: the filter. With an ``issue``, only samples flagged for it are kept and ordered by
            ``<issue>_score``; otherwise every flagged sample, ordered by ``mistakenness``.
            With ``order_by`` the samples kept are ordered by ``<order_by>_score`` instead (the
            issue an insight is about: its samples come most affected first). With
            ``sample_ids`` (an insight's evidence) unflagged samples among them are kept too;
            ``skip_ids`` are left out.

    Returns:
        Frame indexed by ``sample_id`` with ``QUEUE_COLUMNS`` (and those of ``QUEUE_EXTRAS`` the
        table has); ``score`` is descending (higher =
        more likely wrong; NaN last); ties keep the table's order.
    """
    if table.empty:
        return pd.DataFrame(columns=QUEUE_COLUMNS, index=pd.Index([], name="sample_id"))
    flagged = table["flagged"]
    if flt.sample_ids is not None:
        keep = np.asarray(table.index.isin(list(flt.sample_ids)), dtype=bool).copy()
    else:  # a writable copy: pandas' copy-on-write hands out read-only arrays
        keep = flagged.map(bool).to_numpy(dtype=bool, copy=True)
    if flt.issue:
        keep &= flagged.map(lambda issues: flt.issue in issues).to_numpy()
    if flt.skip_ids:
        keep &= ~np.asarray(table.index.isin(list(flt.skip_ids)), dtype=bool)
    if flt.split:
        keep &= (table["split"] == flt.split).to_numpy()
    if flt.cluster is not None:
        keep &= (table["cluster"] == flt.cluster).to_numpy()
    if flt.label:
        column = f"count_{flt.label}"
        has = table[column].to_numpy() > 0 if column in table else np.zeros(len(table), bool)
        keep &= has
    sub = table.loc[keep]
    score_col = next((f"{o}_score" for o in (flt.order_by, flt.issue)
                      if o and f"{o}_score" in sub), None)
    score = sub[score_col] if score_col else sub["mistakenness"]
    out = sub.assign(score=score.astype(float))[
        [*QUEUE_COLUMNS, *(c for c in QUEUE_EXTRAS if c in sub)]]
    return out.sort_values("score", ascending=False, na_position="last", kind="stable")


def facets(table: pd.DataFrame) -> dict[str, list]:
    """Filter options: the ``issues``, ``labels``, ``splits`` and ``clusters`` present."""
    issues = sorted({i for flags in table["flagged"] for i in flags}) if len(table) else []
    labels = sorted(c.removeprefix("count_") for c in table.columns if c.startswith("count_"))
    splits = sorted(table["split"].dropna().unique().tolist()) if "split" in table else []
    clusters = sorted(int(c) for c in table["cluster"].unique() if c >= 0) if len(table) else []
    return {"issues": issues, "labels": labels, "splits": splits, "clusters": clusters}
