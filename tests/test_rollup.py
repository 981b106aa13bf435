"""Per-sample roll-up of box scores (audit.rollup)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.mistakenness import BOX_ISSUES
from audit.rollup import score_samples
from tests.builders import samples_frame

BOX_ISSUES_ALL = (*BOX_ISSUES, "group_box")  # every issue score a box can carry


def _box_scores(rows: list[tuple[str, str, float, float, bool]]) -> pd.DataFrame:
    """box_id, sample_id, bad_box_score, missing_score, is_bad_box_issue."""
    frame = pd.DataFrame(rows, columns=["box_id", "sample_id", "bad_box_score", "missing_score",
                                        "is_bad_box_issue"]).set_index("box_id")
    frame["is_missing_issue"] = frame["missing_score"].fillna(0) >= 0.5
    return frame


@pytest.mark.parametrize(
    ("rows", "ids", "expected_score", "expected_flags"),
    [
        ([], [], [], []),
        ([], ["s0"], [np.nan], [[]]),
        ([("b0", "s0", 0.2, np.nan, False), ("b1", "s0", 0.7, np.nan, True),
          ("b2", "s0", np.nan, 0.6, False), ("b3", "s1", 0.1, np.nan, False)],
         # s0: noisy-or of its worst bad box and its worst missing prediction, 1 - 0.3 * 0.4
         ["s0", "s1", "s2"], [0.88, 0.1, np.nan], [["bad_box", "missing"], [], []]),
    ],
)
def test_score_samples_rolls_up_box_issues_by_noisy_or(rows, ids, expected_score,
                                                        expected_flags):
    out = score_samples(_box_scores(rows), samples_frame(ids))
    assert list(out.index) == ids
    np.testing.assert_allclose(out["mistakenness_score"].to_numpy(float), expected_score)
    assert [list(f) for f in out["flagged_issues"]] == expected_flags
    if rows:
        assert out.loc["s0", "bad_box_score"] == 0.7 and out.loc["s0", "missing_score"] == 0.6


@settings(max_examples=25, deadline=None)
@given(scores=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(BOX_ISSUES_ALL),
                                  st.floats(0, 1)), max_size=20))
def test_sample_score_bounds_every_issue_score_and_never_exceeds_one(scores):
    """The roll-up is at least each issue's worst box and at most 1; raising one box's score never
    lowers it."""
    rows = [{"sample_id": f"s{s}", f"{issue}_score": v} for s, issue, v in scores]
    frame = pd.DataFrame(rows, columns=["sample_id", *(f"{i}_score" for i in BOX_ISSUES_ALL)])
    frame.index = [f"b{i}" for i in range(len(frame))]
    samples = samples_frame([f"s{i}" for i in range(4)])
    out = score_samples(frame, samples)
    issue_max = out[[f"{i}_score" for i in BOX_ISSUES_ALL]].max(axis=1)
    has = issue_max.notna()
    assert (out.loc[has, "mistakenness_score"] >= issue_max[has] - 1e-12).all()
    assert (out.loc[has, "mistakenness_score"] <= 1.0).all()
    assert out.loc[~has, "mistakenness_score"].isna().all()
    if len(frame):
        raised = frame.copy()
        col = f"{scores[0][1]}_score"
        raised.iloc[0, raised.columns.get_loc(col)] = 1.0
        again = score_samples(raised, samples)["mistakenness_score"].fillna(-1)
        assert (again >= out["mistakenness_score"].fillna(-1) - 1e-12).all()


def test_score_samples_uses_partial_labels_from_the_samples_frame():
    scores = _box_scores([("b0", "s0", 0.2, np.nan, False)])
    samples = samples_frame(["s0", "s1"], partial_labels_score=[0.1, 0.9],
                            is_partial_labels_issue=[False, True])
    out = score_samples(scores, samples)
    assert out["partial_labels_score"].tolist() == [0.1, 0.9]
    np.testing.assert_allclose(out["mistakenness_score"], [0.2, 0.9])  # the larger of the two
    assert out["flagged_issues"].tolist() == [[], ["partial_labels"]]


def test_score_samples_requires_sample_ids():
    with pytest.raises(ValueError, match=r"box_scores: missing columns \['sample_id'\]"):
        score_samples(pd.DataFrame({"bad_box_score": [0.1]}), samples_frame(["s0"]))
