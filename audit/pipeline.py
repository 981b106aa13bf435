"""Every audit over the frames of one dataset, in one call (pure).

:func:`run_all` takes the samples frame, the image embeddings, the boxes frame and the per-box
features (docs/ARCHITECTURE.md) and runs mistakenness, label inconsistency, 2-D projections,
clustering, per-cluster statistics and every insight. The data layer reads the frames and writes
the :class:`AuditResult` back; nothing here touches FiftyOne, torch or ultralytics. Every
threshold and weight comes from one :class:`audit.config.ScoringConfig`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm.auto import tqdm

from audit import boxes as B
from audit import clusters as CL
from audit import constants as C
from audit.calibration import CALIBRATED_ISSUES, CalibrationSummary, calibrated_box_scores
from audit.competence import Competence, model_competence
from audit.config import FROM_CONFIG, FromConfig, ScoringConfig, with_given
from audit.correlations import curve_insights, metadata_insights
from audit.frames import check_boxes, check_features, require_columns, xyxy
from audit.generalisation import neighbour_loss_ratio
from audit.inconsistency import convention_insights, score_inconsistency
from audit.insights import (
    Insight,
    imbalance_insights,
    link_neighbour_clusters,
    low_performance_insights,
    overfit_insights,
)
from audit.leaks import duplicate_insights, find_duplicates, shallow_block
from audit.mistakenness import score_boxes
from audit.rollup import score_samples


@dataclass
class AuditResult:
    """Everything one scoring run produces.

    Attributes:
        samples: indexed by ``sample_id``: ``<issue>_score`` per issue, ``mistakenness_score``
            (:func:`audit.rollup.score_samples`; higher = more likely to hold a label error, NaN =
            nothing applies), ``flagged`` (list of issue names), ``cluster`` (int),
            ``neighbour_loss_ratio`` (:mod:`audit.generalisation`), ``proj_<method>_x`` / ``_y``.
        boxes: one row per box with ``box_id``, ``sample_id``, ``source``, ``label``,
            ``<issue>_score``, ``is_<issue>_issue`` and ``suggested_label``.
        insights: the findings, most severe first.
        clusters: per-cluster statistics (:func:`audit.clusters.cluster_stats`).
        classes: per-class labelling conventions (:mod:`audit.inconsistency`).
        timings: seconds per stage.
        config: the settings every scorer ran with (:class:`audit.config.ScoringConfig`).
        competence: the model measured against the labels (:mod:`audit.competence`): how far
            its disagreement with them can be trusted, with plain warnings; None if not measured.
        calibration: per box issue and class, how the evidence became a probability and how
            findable that issue is here (:mod:`audit.calibration`); None if not calibrated.
    """

    samples: pd.DataFrame
    boxes: pd.DataFrame
    insights: list[Insight]
    clusters: pd.DataFrame
    classes: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    config: ScoringConfig = field(default_factory=ScoringConfig)
    competence: Competence | None = None
    calibration: CalibrationSummary | None = None


def class_recall(boxes: pd.DataFrame, labels: pd.Series, *, split: pd.Series | None = None,
                 conf: float = C.RECALL_CONF, match_iou: float = C.MATCH_IOU) -> pd.DataFrame:
    """Per cluster and class, the share of ground-truth boxes found by the model.

    A gt box is found when a same-class prediction with confidence >= ``conf`` has IoU >=
    ``match_iou`` with it. Crowd boxes are left out.

    Args:
        boxes: boxes frame (absolute ``xyxy``, gt and pred rows).
        labels: cluster per sample, indexed by ``sample_id``.
        split: split per sample (same index); when given only ``val`` samples count.

    Returns:
        Frame indexed by cluster, one column per class, recall in [0, 1] (NaN: no such box).
    """
    check_boxes(boxes)
    keep = boxes["sample_id"].map(labels).notna().to_numpy().copy()
    if split is not None:
        keep &= (boxes["sample_id"].map(split) == "val").to_numpy()
    b = boxes[keep]
    crowd = b["iscrowd"].fillna(False).astype(bool).to_numpy() if "iscrowd" in b else False
    gt = b[(b["source"].to_numpy() == "gt") & ~crowd]
    pred = b[(b["source"].to_numpy() == "pred")
             & (np.nan_to_num(b["confidence"].to_numpy(float)) >= conf)]
    if gt.empty:
        return pd.DataFrame()
    codes, _ = pd.factorize(pd.concat([gt["sample_id"], pred["sample_id"]]), sort=False)
    pairs = B.overlapping_pairs(xyxy(gt), codes[: len(gt)], xyxy(pred), codes[len(gt):])
    same = gt["label"].to_numpy()[pairs.ia] == pred["label"].to_numpy()[pairs.ib]
    found = np.zeros(len(gt), bool)
    found[pairs.ia[same & (pairs.iou >= match_iou)]] = True
    frame = pd.DataFrame({"cluster": gt["sample_id"].map(labels).to_numpy(),
                          "label": gt["label"].astype(str).to_numpy(), "found": found})
    return frame.pivot_table(index="cluster", columns="label", values="found", aggfunc="mean")


def _check(samples: pd.DataFrame, embeddings: NDArray, boxes: pd.DataFrame,
           box_features: NDArray | None) -> NDArray[np.float32]:
    """Validate the frames once, at the entry point."""
    require_columns(samples, ("split", "loss"), "samples")
    check_boxes(boxes)
    check_features(box_features, len(boxes))
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(samples):
        raise ValueError(f"embeddings: expected shape ({len(samples)}, D), got {emb.shape}")
    unknown = set(boxes["sample_id"].astype(str)) - set(samples.index.astype(str))
    if unknown:
        raise ValueError(f"boxes: sample_id {sorted(unknown)[0]!r} is not in the samples frame")
    return emb


def _box_scores(boxes, box_features, samples, timings, config: ScoringConfig, probes=None):
    """Mistakenness and inconsistency per box, and the per-sample partial-labelling frame."""
    t = time.perf_counter()
    kwargs = config.scorer_kwargs("mistakenness")
    raw, _ = score_boxes(boxes, box_features, samples, **kwargs)
    timings["mistakenness_s"] = time.perf_counter() - t
    t = time.perf_counter()
    inc_kwargs = config.scorer_kwargs("inconsistency")
    inc = score_inconsistency(boxes, **inc_kwargs)
    timings["inconsistency_s"] = time.perf_counter() - t
    t = time.perf_counter()
    raw = raw.join(inc.boxes[["group_box_score", "is_group_box_issue"]], how="left")
    thr = config.flag_thresholds()
    scores, calibration = calibrated_box_scores(
        boxes, box_features, samples, raw, scorer_kwargs=kwargs,
        thresholds={i: thr[i] for i in CALIBRATED_ISSUES},
        missing_flag_conf=config.missing_flag_conf, probes=probes,
        inconsistency_kwargs=inc_kwargs, **config.scorer_kwargs("calibration"))
    timings["calibration_s"] = time.perf_counter() - t
    scores = scores.join(inc.boxes[["n_members"]], how="left")
    scores["is_group_box_issue"] = scores["is_group_box_issue"].astype("boolean").fillna(False)
    partial = inc.samples.reindex(samples.index.astype(str))
    return scores, partial, inc, calibration


def run_all(
    samples: pd.DataFrame,
    embeddings: NDArray,
    boxes: pd.DataFrame,
    box_features: NDArray | None = None,
    *,
    config: ScoringConfig | None = None,
    projections: Sequence[str] | FromConfig = FROM_CONFIG,
    n_clusters: int | FromConfig | None = FROM_CONFIG,
    seed: int | FromConfig = FROM_CONFIG,
    probes: tuple[pd.DataFrame, NDArray | None] | None = None,
    progress: bool = False,
) -> AuditResult:
    """Run every audit.

    Args:
        samples: samples frame indexed by ``sample_id`` (``split``, ``loss``, loss components,
            metadata, ``count_<class>``).
        embeddings: ``(n_samples, D)`` image embeddings, rows aligned with ``samples``.
        boxes: boxes frame, absolute ``xyxy``; gt and pred rows.
        box_features: ``(n_boxes, F)`` per-box features aligned with ``boxes`` (NaN rows where
            missing), or None.
        config: every threshold and weight (default: :class:`ScoringConfig`'s defaults, the
            ``audit.constants`` values).
        projections: 2-D projections to compute ("pca", "tsne", "umap"); n_clusters: k for
            k-means, None to choose it by silhouette; seed: random seed. Each, when given,
            replaces the config's value (``C.PROJECTION_METHODS``, ``C.N_CLUSTERS``, ``C.SEED``
            by default).
        probes: background boxes drawn at ingest and their features (``source`` "probe"
            frame, ``(K, F)``; :func:`audit.data.store.probes_frame`), the sites of the
            calibration's decoy spurious labels; None: decoys go on faint predictions.
        progress: show a tqdm bar over the stages.

    Returns:
        An :class:`AuditResult` (its ``config`` the settings used); all scores are higher = more
        likely wrong.

    Raises:
        ValueError: bad frames, or an override out of range (e.g. ``n_clusters=1``).

    Example:
        >>> result = run_all(samples, embeddings, boxes, box_features)  # doctest: +SKIP
        >>> [i.sentence for i in result.insights][:2]  # doctest: +SKIP
    """
    emb = _check(samples, embeddings, boxes, box_features)
    cfg = with_given(config, projections=projections, n_clusters=n_clusters, seed=seed)
    stale = [c for c in samples.columns if str(c).endswith("_score") or str(c).startswith(
        ("is_", "proj_")) or c in ("cluster", "flagged", "mistakenness", "neighbour_loss_ratio")]
    samples = samples.drop(columns=stale)  # a re-score starts from the inputs, not old scores
    samples.index = samples.index.astype(str)
    timings: dict[str, float] = {}
    stages = tqdm(total=3 + len(cfg.projections), desc="audit", disable=not progress,
                  unit="stage")
    scores, partial, inc, calibration = _box_scores(boxes, box_features, samples, timings, cfg,
                                                    probes)
    stages.update(1)
    per_sample = score_samples(scores, samples.join(
        partial[["partial_labels_score", "is_partial_labels_issue"]]))
    out = per_sample.rename(columns={"flagged_issues": "flagged"})
    t = time.perf_counter()
    reduced = CL.reduce(emb, seed=cfg.seed)  # once for every projection and the clustering
    timings["reduce_s"] = time.perf_counter() - t
    for method in cfg.projections:
        stages.set_postfix_str(method)
        t = time.perf_counter()
        xy = CL.project(emb, method, seed=cfg.seed, reduced=reduced)
        timings[f"projection_{method}_s"] = time.perf_counter() - t
        out[f"proj_{method}_x"], out[f"proj_{method}_y"] = xy[:, 0], xy[:, 1]
        stages.update(1)
    t = time.perf_counter()
    ratio = neighbour_loss_ratio(reduced, samples["loss"], samples["split"], seed=cfg.seed)
    out["neighbour_loss_ratio"] = ratio
    samples = samples.assign(neighbour_loss_ratio=ratio)
    timings["neighbour_loss_ratio_s"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = CL.cluster(emb, n_clusters=cfg.n_clusters, seed=cfg.seed, reduced=reduced)
    out["cluster"] = labels
    stats = CL.cluster_stats(samples, labels)
    timings["clusters_s"] = time.perf_counter() - t
    stages.update(1)
    t = time.perf_counter()
    found = _insights(samples, labels, boxes, inc, reduced)
    found = sorted(found + _duplicate_insights(samples, emb, labels), key=lambda i: -i.severity)
    timings["insights_s"] = time.perf_counter() - t
    stages.update(1)
    stages.close()
    box_frame = scores.reset_index().rename(columns={"index": "box_id"})
    return AuditResult(samples=out, boxes=box_frame, insights=found, clusters=stats,
                       classes=inc.classes, timings=timings, config=cfg,
                       competence=model_competence(boxes, samples), calibration=calibration)


def _insights(samples: pd.DataFrame, labels: NDArray, boxes: pd.DataFrame, inc,
              reduced: NDArray) -> list[Insight]:
    """Every insight, most severe first; metadata insights for the clusters others flagged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lab = pd.Series(labels, index=samples.index)
        recall = class_recall(boxes, lab, split=samples["split"])
        found = [*imbalance_insights(samples, labels), *overfit_insights(samples, labels),
                 *low_performance_insights(samples, labels,
                                           class_recall=recall if len(recall) else None)]
        found = link_neighbour_clusters(found, reduced, labels)
        flagged = sorted({i.cluster for i in found if i.cluster is not None})
        found += metadata_insights(samples, labels, flagged)
        found += curve_insights(samples)
        found += convention_insights(inc.classes, inc.boxes)
    return sorted(found, key=lambda i: -i.severity)


def _duplicate_insights(samples: pd.DataFrame, emb: NDArray, clusters: NDArray) -> list[Insight]:
    """Leaks across splits and near-duplicates within one (:mod:`audit.leaks`), searched in the
    shallowest layer's block of the image embeddings; above ``C.DUPLICATE_EXACT_MAX`` images
    within each cluster only (a near-copy lands in its original's cluster)."""
    groups = clusters if len(samples) > C.DUPLICATE_EXACT_MAX else None
    pairs, summary = find_duplicates(shallow_block(emb), samples["split"], samples.index,
                                     groups=groups)
    return duplicate_insights(pairs, summary, n_val=int((samples["split"] != "train").sum()))
