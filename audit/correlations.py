"""What sets a cluster apart, and how loss moves with metadata (pure).

* :func:`metadata_insights`: for each cluster already named by another insight (imbalance,
  overfit, low performance), the metadata columns whose mean differs from the rest of the dataset
  by a standardised mean difference (Cohen's d, pooled SD) of at least ``effect_min``.
* :func:`loss_curves` / :func:`curve_insights`: loss against a metadata column in quantile bins,
  per split, with Spearman's rho; an insight when |rho| reaches ``rho_min`` and the correlation is
  significant (Holm over the columns, losses and splits tested), on val first.

Higher loss = worse everywhere; metadata columns are as in :mod:`audit.metadata`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from audit import constants as C
from audit.frames import require_columns
from audit.insight import Insight, holm
from audit.metadata import METADATA_COLUMNS

WORDS = {  # column -> (noun phrase, "more" word, "less" word) for sentences
    "n_objects": ("objects per image", "more", "fewer"),
    "median_box_area": ("median box area", "larger", "smaller"),
    "min_box_area": ("smallest box area", "larger", "smaller"),
    "occlusion_mean_iou": ("occlusion (mean IoU between boxes)", "more", "less"),
    "occlusion_max_ios": ("occlusion (max overlap of two boxes)", "more", "less"),
    "crowd_fraction": ("share of crowd boxes", "higher", "lower"),
}
CURVE_COLUMNS = ("median_box_area", "n_objects")  # always tried; count_<class> columns are added


def metadata_columns(samples: pd.DataFrame) -> list[str]:
    """Numeric metadata columns of a samples frame (``METADATA_COLUMNS`` then ``count_*``)."""
    cols = [c for c in METADATA_COLUMNS if c in samples.columns]
    cols += sorted(c for c in samples.columns if str(c).startswith("count_"))
    return [c for c in cols if pd.api.types.is_numeric_dtype(samples[c])]


def _describe(col: str) -> tuple[str, str, str]:
    """Noun, more-word and less-word for a metadata column."""
    if col.startswith("count_"):
        return f"{col.removeprefix('count_')} objects per image", "more", "fewer"
    return WORDS.get(col, (col, "higher", "lower"))


def effect_sizes(samples: pd.DataFrame, labels: ArrayLike, cluster: int) -> pd.DataFrame:
    """Cohen's d of each metadata column, the cluster against the rest.

    Args:
        samples: samples frame with metadata columns.
        labels: ``(n_samples,)`` cluster per sample.
        cluster: the cluster to describe.

    Returns:
        Frame indexed by column: ``mean_in``, ``mean_out``, ``d`` (positive = higher in the
        cluster; NaN where a side has fewer than two finite values or no spread).
    """
    lab = np.asarray(labels)
    if lab.shape != (len(samples),):
        raise ValueError(f"labels: expected shape ({len(samples)},), got {lab.shape}")
    inside = lab == cluster
    rows = {}
    for col in metadata_columns(samples):
        x = samples[col].to_numpy(np.float64)
        a, b = x[inside & np.isfinite(x)], x[~inside & np.isfinite(x)]
        d = np.nan
        if len(a) >= 2 and len(b) >= 2:
            pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                             / (len(a) + len(b) - 2))
            d = (a.mean() - b.mean()) / pooled if pooled > 0 else np.nan
        rows[col] = {"mean_in": a.mean() if len(a) else np.nan,
                     "mean_out": b.mean() if len(b) else np.nan, "d": d}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["mean_in", "mean_out", "d"])


def metadata_insights(
    samples: pd.DataFrame, labels: ArrayLike, clusters: ArrayLike, *,
    effect_min: float = C.EFFECT_SIZE_MIN, max_named: int = 3,
) -> list[Insight]:
    """For each given cluster, the metadata that sets it apart (|Cohen's d| >= ``effect_min``).

    Args:
        samples: samples frame with metadata columns (``loss`` orders the sample ids).
        labels: ``(n_samples,)`` cluster per sample.
        clusters: the clusters to describe (those other insights flagged).
        effect_min: smallest |d| named; max_named: at most this many columns in the sentence.

    Returns:
        Insights of kind ``metadata``; severity = min(1, max |d| / 3).

    Example:
        >>> metadata_insights(samples, labels, [2])  # doctest: +SKIP
    """
    lab = np.asarray(labels)
    out = []
    for c in sorted({int(c) for c in np.asarray(clusters).ravel()}):
        eff = effect_sizes(samples, lab, c).dropna(subset=["d"])
        eff = eff[eff["d"].abs() >= effect_min]
        if eff.empty:
            continue
        eff = eff.reindex(eff["d"].abs().sort_values(ascending=False).index)
        parts = []
        for col, r in eff.head(max_named).iterrows():
            noun, more, less = _describe(str(col))
            parts.append(f"{more if r.d > 0 else less} {noun} ({r.mean_in:.3g} vs "
                         f"{r.mean_out:.3g}, d = {r.d:+.1f})")
        sentence = (f"Cluster {c} differs from the rest of the dataset in its metadata: "
                    + "; ".join(parts) + ". Images like these are what the cluster's other "
                    "findings are about.")
        inside = lab == c
        loss = pd.to_numeric(samples.get("loss", pd.Series(0.0, index=samples.index)),
                             errors="coerce")
        ids = samples.index[inside][np.argsort(-loss.to_numpy(float)[inside], kind="stable")]
        # Cohen's d, not the means: columns on different scales (box area ~0.05, objects ~8)
        data = [{"metadata": str(col), "cohens_d": float(r.d), f"mean in cluster {c}":
                 float(r.mean_in), "mean in the rest": float(r.mean_out)}
                for col, r in eff.head(max_named).iterrows()]
        out.append(Insight(
            kind="metadata", title=f"Cluster {c}: what sets it apart", sentence=sentence,
            cluster=c, severity=float(min(1.0, eff["d"].abs().max() / 3)),
            sample_ids=tuple(ids.astype(str)),
            evidence={"plot": "metadata_bar", "x": "metadata", "y": "cohens_d", "data": data},
            stats={"effect_sizes": eff.reset_index(names="column").to_dict(orient="records")},
        ))
    return out


LOSS_NAMES = {"loss": "loss", "loss_box": "box loss", "loss_cls": "class loss",
              "loss_dfl": "DFL loss"}  # loss column -> words
CURVE_LOSSES = ("loss", "loss_box", "loss_cls")  # DFL grows with box size in stride units, so it
# is left out of size curves by default (it would read as "large boxes are hard")


def loss_curve(samples: pd.DataFrame, column: str, *, loss: str = "loss",
               bins: int = C.CURVE_BINS) -> pd.DataFrame:
    """Median ``loss`` per quantile bin of ``column``, per split.

    Equal values share a bin (a count column with many zeros gives one bin at 0, not several
    stacked at the same x); a column with at most ``bins`` distinct values gets a bin per value.

    Returns:
        Long frame: ``split``, ``bin``, ``<column>`` (median of the bin), ``median_loss``,
        ``n`` (samples in the bin). Empty when nothing is finite.
    """
    require_columns(samples, ("split", loss, column), "samples")
    f = pd.DataFrame({"split": samples["split"].astype(str),
                      "x": pd.to_numeric(samples[column], errors="coerce"),
                      "loss": pd.to_numeric(samples[loss], errors="coerce")}).dropna()
    rows = []
    for split, part in f.groupby("split", sort=True):
        if part["x"].nunique() < 2:
            continue
        q = part["x"] if part["x"].nunique() <= bins else pd.qcut(
            part["x"], bins, labels=False, duplicates="drop")
        g = part.groupby(q, sort=True)
        rows.append(pd.DataFrame({"split": split, "bin": g.ngroup().unique(),
                                  column: g["x"].median().to_numpy(),
                                  "median_loss": g["loss"].median().to_numpy(),
                                  "n": g.size().to_numpy()}))
    cols = ["split", "bin", column, "median_loss", "n"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def _spearman(samples: pd.DataFrame, column: str, loss: str,
              split: str | None) -> tuple[float, float, int]:
    """Spearman rho, p and n of ``loss`` vs ``column`` (one split or all)."""
    f = samples if split is None else samples[samples["split"].astype(str) == split]
    x = pd.to_numeric(f[column], errors="coerce").to_numpy(float)
    y = pd.to_numeric(f[loss], errors="coerce").to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 5 or np.unique(x[ok]).size < 2 or np.unique(y[ok]).size < 2:
        return np.nan, np.nan, int(ok.sum())
    res = stats.spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue), int(ok.sum())


def _curve_tests(samples, columns, losses, splits) -> pd.DataFrame:
    """Spearman of every (column, loss, split) triple, Holm-adjusted within its family.

    Two families: the curves the tool always draws (``CURVE_COLUMNS``: box area, objects per
    image) are the primary hypotheses; the per-class count columns are exploratory. Pooling them
    would let the number of classes dilute the primary curves. ``splits``: split names, None for
    all samples together.
    """
    rows = [(c, lo, sp, *_spearman(samples, c, lo, sp))
            for c in columns for lo in losses for sp in splits]
    frame = pd.DataFrame(rows, columns=["column", "loss", "split", "rho", "p", "n"]) \
        .dropna(subset=["rho"])
    frame["family"] = np.where(frame["column"].isin(CURVE_COLUMNS), "primary", "exploratory")
    frame["p_holm"] = np.nan
    for _, part in frame.groupby("family"):
        frame.loc[part.index, "p_holm"] = holm(part["p"])
    return frame


def curve_insights(
    samples: pd.DataFrame, *, columns: tuple[str, ...] | None = None,
    losses: tuple[str, ...] = CURVE_LOSSES, bins: int = C.CURVE_BINS,
    rho_min: float = C.CURVE_RHO_MIN, alpha: float = C.ALPHA, min_samples: int = 30,
) -> list[Insight]:
    """Loss-vs-metadata curves whose Spearman |rho| reaches ``rho_min`` (Holm per family).

    Every metadata column is tested against every loss in ``losses`` that the frame has (the
    total and its components: a component can move with a column while the total does not), on
    val and on train separately (each split with at least ``min_samples`` samples; on all samples
    together when neither has them). Per column the loss with the largest significant |rho| on
    val makes the insight (what the model did not train on); train speaks only where val shows
    no such trend: a trend the model shows even on the images it trained on (small objects it
    cannot fit at this image size) can be diluted on val by a handful of images that fail for
    another reason, and the sentence then quotes val's rho beside it. The evidence holds the
    binned curve per split.

    Args:
        samples: samples frame with ``split``, ``loss`` and metadata columns.
        columns: metadata columns to test (default ``CURVE_COLUMNS`` plus every ``count_*``).
        losses: loss columns to test. bins: quantile bins per curve; rho_min: smallest |rho|
            reported; alpha: Holm level; min_samples: val size needed to test on val alone.

    Returns:
        Insights of kind ``curve``, most severe first; severity = |rho|.

    Example:
        >>> curve_insights(samples)[0].sentence  # doctest: +SKIP
        'Box loss rises with smaller median box area ...'
    """
    require_columns(samples, ("split", "loss"), "samples")
    if columns is None:
        columns = tuple(c for c in (*CURVE_COLUMNS, *sorted(
            c for c in samples.columns if str(c).startswith("count_"))) if c in samples.columns)
    losses = tuple(lo for lo in losses if lo in samples.columns) or ("loss",)
    sizes = samples["split"].astype(str).value_counts()
    splits = [sp for sp in ("val", "train") if sizes.get(sp, 0) >= min_samples] or [None]
    tests = _curve_tests(samples, columns, losses, splits)
    hits = tests[(tests["rho"].abs() >= rho_min) & (tests["p_holm"] < alpha)]
    out = []
    for column, part in hits.groupby("column", sort=False):
        on = "val" if (part["split"] == "val").any() else part["split"].iloc[0]
        mine = part[part["split"] == on] if on is not None else part
        r = mine.loc[mine["rho"].abs().idxmax()]
        val = tests[(tests["column"] == column) & (tests["loss"] == r["loss"])
                    & (tests["split"] == "val")]
        out.append(_curve_insight(samples, r, on, bins,
                                  val=None if on == "val" or val.empty else val.iloc[0]))
    return sorted(out, key=lambda i: -i.severity)


def _curve_insight(samples: pd.DataFrame, r, on: str | None, bins: int,
                   val: pd.Series | None = None) -> Insight:
    """One curve insight from a row of the tests frame (``val``: the same curve's val row, quoted
    when the insight is measured on train)."""
    col, loss, rho = str(r.column), str(r.loss), float(r.rho)
    noun, more, less = _describe(col)
    what = LOSS_NAMES.get(loss, loss)
    sentence = (f"{what.capitalize()} rises with {more if rho > 0 else less} {noun}: Spearman "
                f"rho = {rho:+.2f} between {noun} and {what} on {on or 'all'} images "
                f"(n = {r.n}, Holm p = {r.p_holm:.2g})")
    if val is not None:
        sentence += f"; on val rho = {float(val.rho):+.2f} (n = {int(val.n)})"
    sentence += "."
    if col in ("median_box_area", "min_box_area") and rho < 0:
        sentence += (" Small objects are the weak spot: train at a larger image size, add "
                     "small-object images, or check that small objects are labelled.")
    elif (col.startswith("count_") or col == "n_objects") and rho > 0:
        sentence += (" Crowded images are the weak spot: check how crowded scenes are "
                     "labelled and add more of them.")
    elif col.startswith("count_") or col == "n_objects":
        sentence += (f" Images with few {noun.removesuffix(' per image')} are the weak spot: "
                     "open the images this card lists to see what else they hold.")
    x = pd.to_numeric(samples[col], errors="coerce").to_numpy(float)
    worst = np.argsort(x if rho < 0 else -x, kind="stable")
    worst = worst[np.isfinite(x[worst])]
    return Insight(
        kind="curve", title=f"{what.capitalize()} vs {noun}", sentence=sentence,
        label=col.removeprefix("count_") if col.startswith("count_") else None,
        severity=float(min(1.0, abs(rho))), sample_ids=tuple(samples.index[worst].astype(str)),
        evidence={"plot": "loss_curve", "column": col, "loss": loss, "x": col,
                  "y": "median_loss", "color": "split",
                  "data": loss_curve(samples, col, loss=loss, bins=bins).to_dict("records")},
        stats={"rho": rho, "p": float(r.p), "p_holm": float(r.p_holm), "n": int(r.n),
               "split": on or "all", "loss": loss,
               "val_rho": float(val.rho) if val is not None else None},
    )
