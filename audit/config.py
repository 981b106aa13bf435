"""ScoringConfig: every threshold and weight the scoring uses, in one frozen record (pure).

Each field defaults to its constant in :mod:`audit.constants` (where a comment says how it was
chosen). Fields are of two kinds:

* **flag-only** (:data:`FLAG_ONLY_FIELDS`): thresholds that only turn stored scores into flags.
  Changing only these re-flags a scored dataset in seconds
  (:func:`audit.data.scoring.reflag_dataset`);
* **score** (:data:`SCORE_FIELDS`): everything that changes a score, a cluster, a projection or
  an insight; changing one of these needs a full re-score.

``group_convention_score`` is a score field: it decides which boxes count as the group
convention, and that feeds the partial-labels score and the class conventions.

The config a dataset was scored with is stored in ``dataset.info["audit"]["scoring_config"]``
(:meth:`ScoringConfig.to_dict`) and read back by the views and exports that flag at view time.

Example:
    >>> cfg = ScoringConfig().with_overrides(["wrong_class_flag=0.4", "k=5"])
    >>> cfg.flag_thresholds()["wrong_class"], cfg.k
    (0.4, 5)
    >>> ScoringConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from audit import constants as C
from audit import issues as I
from audit.config_values import checked as _checked
from audit.config_values import parse as _parse
from audit.config_values import toml_value as _toml_value

_UNIT = (0.0, 1.0, False)  # [0, 1]
_OPEN_UNIT = (0.0, 1.0, True)  # (0, 1]


def _knob(default: Any, help: str, *, kind: str = "float", bounds: tuple = _UNIT,
          flag_only: bool = False, section: str, args: tuple[tuple[str, str], ...] = ()) -> Any:
    """A dataclass field with its kind, range, section, help and the scorer arguments it feeds
    (``(scorer, keyword)`` pairs; scorer ``"mistakenness"`` or ``"inconsistency"``)."""
    return field(default=default, metadata={
        "kind": kind, "bounds": bounds, "flag_only": flag_only, "section": section,
        "help": help, "args": args})


def _m(name: str) -> tuple[tuple[str, str], ...]:
    """The ``score_boxes`` keyword ``name``."""
    return (("mistakenness", name),)


def _i(name: str) -> tuple[tuple[str, str], ...]:
    """The ``score_inconsistency`` keyword ``name``."""
    return (("inconsistency", name),)


_INT_1 = (1, None, False)  # integers >= 1
FLAGS, MIST, INC, CAL, RUN = "flags", "mistakenness", "inconsistency", "calibration", "run"
SECTIONS = {
    FLAGS: "flag-only: thresholds that turn stored scores into flags (changing only these "
           "re-flags in seconds)",
    MIST: "mistakenness scores (audit.mistakenness.score_boxes): changing these re-scores",
    INC: "label inconsistency (audit.inconsistency.score_inconsistency): changing these re-scores",
    CAL: "calibration of the box issues' evidence into probabilities (audit.calibration): "
         "changing these re-scores",
    RUN: "clusters and projections (audit.pipeline.run_all): changing these re-scores",
}


@dataclass(frozen=True)
class ScoringConfig:
    """Every scoring knob, each defaulting to its ``audit.constants`` value.

    Attributes:
        wrong_class_flag, bad_box_flag, spurious_flag, missing_flag, partial_labels_flag: score
            at or above which an item is flagged for that issue (flag-only).
        missing_flag_conf: a prediction is flagged missing only at this confidence (flag-only).
        group_box_flag: group-box flag threshold, also the group-convention threshold (score).
        match_iou ... seed: the keyword knobs of :func:`audit.mistakenness.score_boxes`
            (``match_iou`` also of the inconsistency scorer; ``seed`` also of clustering and
            projections).
        group_contain ... mixed_convention_min: the knobs of
            :func:`audit.inconsistency.score_inconsistency` (mistakenness' own uses of the
            group rule, in its missing and bad-box evidence, still read the constants).
        n_clusters: k for k-means, None to choose it by silhouette; projections: the 2-D
            projections computed.

    Raises:
        ValueError: a value of the wrong type or out of its range, naming the field.
    """

    # --- flag-only -------------------------------------------------------------------------
    wrong_class_flag: float = _knob(C.WRONG_CLASS_SCORE, "wrong-class score that flags a label",
                                    bounds=_OPEN_UNIT, flag_only=True, section=FLAGS)
    bad_box_flag: float = _knob(C.BAD_BOX_SCORE, "bad-box score that flags a label",
                                bounds=_OPEN_UNIT, flag_only=True, section=FLAGS)
    spurious_flag: float = _knob(C.SPURIOUS_SCORE, "spurious score that flags a label",
                                 bounds=_OPEN_UNIT, flag_only=True, section=FLAGS)
    missing_flag: float = _knob(C.MISSING_SCORE, "missing score that flags a prediction",
                                bounds=_OPEN_UNIT, flag_only=True, section=FLAGS)
    group_box_flag: float = _knob(C.GROUP_SCORE, "group-box score that flags a label",
                                  bounds=_OPEN_UNIT, flag_only=True, section=FLAGS)
    partial_labels_flag: float = _knob(C.PARTIAL_SCORE, "partial-labels score that flags an image",
                                       bounds=_OPEN_UNIT, flag_only=True, section=FLAGS)
    missing_flag_conf: float = _knob(
        C.MISSING_FLAG_CONF, "a prediction is flagged missing only from this confidence on",
        flag_only=True, section=FLAGS)
    # --- score: mistakenness ----------------------------------------------------------------
    match_iou: float = _knob(C.MATCH_IOU, "IoU at which a prediction covers a label",
                             bounds=_OPEN_UNIT, section=MIST,
                             args=(*_m("match_iou"), *_i("match_iou")))
    localization_iou: float = _knob(C.LOCALIZATION_IOU, "class-matched IoU below which a box is "
                                    "a localisation suspect", bounds=_OPEN_UNIT, section=MIST,
                                    args=_m("localization_iou"))
    size_bins: int = _knob(C.SIZE_BINS, "size classes with their own bad-box IoU", kind="int",
                           bounds=_INT_1, section=MIST, args=_m("size_bins"))
    size_iou_quantile: float = _knob(C.SIZE_IOU_QUANTILE, "quantile of a size class's matched "
                                     "IoU that sets its bad-box threshold", section=MIST,
                                     args=_m("size_iou_quantile"))
    near_iou: float = _knob(C.NEAR_IOU, "IoU below which two boxes are unrelated",
                            bounds=_OPEN_UNIT, section=MIST, args=_m("near_iou"))
    k: int = _knob(C.KNN_K, "neighbours behind the kNN evidence", kind="int", bounds=_INT_1,
                   section=MIST, args=_m("k"))
    reference_max: int = _knob(C.KNN_REFERENCE_MAX, "labelled boxes kept as the kNN reference",
                               kind="int", bounds=_INT_1, section=MIST, args=_m("reference_max"))
    reference_per_class: int = _knob(C.KNN_REFERENCE_PER_CLASS, "of which at most this many per "
                                     "class", kind="int", bounds=_INT_1, section=MIST,
                                     args=_m("reference_per_class"))
    reference_conf: float = _knob(C.REFERENCE_CONF, "confidence of a same-class prediction that "
                                  "confirms a label as a kNN reference", section=MIST,
                                  args=_m("reference_conf"))
    atypical_weight: float = _knob(C.ATYPICAL_WEIGHT, "weight of box-feature atypicality in bad "
                                   "box", section=MIST, args=_m("atypical_weight"))
    gt_knn_weight: float = _knob(C.GT_KNN_WEIGHT, "weight of kNN evidence in bad box and "
                                 "spurious", section=MIST, args=_m("gt_knn_weight"))
    class_knn_weight: float = _knob(C.CLASS_KNN_WEIGHT, "weight of kNN evidence in wrong class",
                                    section=MIST, args=_m("class_knn_weight"))
    loss_boost: float = _knob(C.LOSS_BOOST, "share of the gap to 1 a high-loss image adds",
                              section=MIST, args=_m("loss_boost"))
    look_weight: float = _knob(C.MISSING_LOOK_WEIGHT, "weight of 'looks like labelled objects' "
                               "in missing", section=MIST, args=_m("look_weight"))
    look_conf: float = _knob(C.MISSING_LOOK_CONF, "confidence from which that look-alike "
                             "evidence counts fully", bounds=_OPEN_UNIT, section=MIST,
                             args=_m("look_conf"))
    # --- score: label inconsistency ---------------------------------------------------------
    group_convention_score: float = _knob(
        C.GROUP_CONVENTION_SCORE, "group-box evidence from which a box counts as the group "
        "convention", bounds=_OPEN_UNIT, section=INC, args=_i("convention_threshold"))
    group_contain: float = _knob(C.GROUP_CONTAIN, "share of a prediction inside a box that makes "
                                 "it a member", bounds=_OPEN_UNIT, section=INC,
                                 args=_i("contain"))
    group_min_members: int = _knob(C.GROUP_MIN_MEMBERS, "members that make a group box",
                                   kind="int", bounds=_INT_1, section=INC,
                                   args=_i("min_members"))
    group_member_conf: float = _knob(C.GROUP_MEMBER_CONF, "confidence from which a member is "
                                     "counted as an object", section=INC, args=_i("member_conf"))
    group_evidence_conf: float = _knob(C.GROUP_EVIDENCE_CONF, "confidence from which a member "
                                       "enters the group-box score", section=INC,
                                       args=_i("evidence_conf"))
    group_member_max_area: float = _knob(C.GROUP_MEMBER_MAX_AREA, "largest share of the box's "
                                         "area a member may cover", bounds=_OPEN_UNIT,
                                         section=INC, args=_i("max_area"))
    partial_conf: float = _knob(C.PARTIAL_CONF, "confidence from which an unlabelled prediction "
                                "counts as an unlabelled object", section=INC,
                                args=_i("partial_conf"))
    mixed_convention_min: float = _knob(C.MIXED_CONVENTION_MIN, "share each convention needs for "
                                        "a class to mix them", section=INC, args=_i("mixed_min"))
    # --- score: calibration (evidence -> P(label wrong) by planted decoys) --------------------
    prior_error_rate: float = _knob(C.PRIOR_ERROR_RATE, "share of labels wrong for each box issue "
                                    "before any evidence", bounds=(0.0, 0.5, True), section=CAL,
                                    args=(("calibration", "prior"),))
    decoys_per_type: int = _knob(C.DECOYS_PER_TYPE, "decoy errors planted per kind to calibrate "
                                 "on", kind="int", bounds=_INT_1, section=CAL,
                                 args=(("calibration", "per_type"),))
    decoys_max_per_image: int = _knob(C.DECOYS_MAX_PER_IMAGE, "decoys of one kind per image copy",
                                      kind="int", bounds=_INT_1, section=CAL,
                                      args=(("calibration", "max_per_image"),))
    calibration_shrink: int = _knob(C.CALIBRATION_MIN_FIT, "rows the pull of a class toward the "
                                    "shared calibration weighs as", kind="int",
                                    bounds=(0, None, False), section=CAL,
                                    args=(("calibration", "min_fit"),))
    # --- score: clusters and projections ----------------------------------------------------
    n_clusters: int | None = _knob(C.N_CLUSTERS, "k for k-means (unset: chosen by silhouette)",
                                   kind="optional_int", bounds=(2, None, False), section=RUN)
    projections: tuple[str, ...] = _knob(C.PROJECTION_METHODS, "2-D projections computed",
                                         kind="methods", section=RUN)
    seed: int = _knob(C.SEED, "random seed (kNN reference subsample, clusters, projections)",
                      kind="int", bounds=(0, None, False), section=RUN,
                      args=(*_m("seed"), ("calibration", "seed")))

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _checked(f.name, f.metadata, getattr(self, f.name)))

    # --- conversions -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{field: value}`` of plain Python values (``projections`` as a list)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoringConfig:
        """A config from ``{field: value}``; fields left out keep their defaults.

        Raises:
            ValueError: an unknown key (naming it and listing the valid ones) or a bad value.
        """
        unknown = [str(k) for k in values if k not in FIELD_NAMES]
        if unknown:
            raise ValueError(f"unknown scoring setting {unknown[0]!r}; valid: "
                             f"{', '.join(FIELD_NAMES)}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> ScoringConfig:
        """A config from a TOML file of ``key = value`` lines (:meth:`to_toml` writes one).

        Raises:
            ValueError: a missing or unreadable file, invalid TOML, an unknown key or a bad
                value; the message names the file (and the key).
        """
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"config file {path} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        try:
            return cls.from_dict(values)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def with_overrides(self, items: list[str] | tuple[str, ...]) -> ScoringConfig:
        """A copy with ``key=value`` overrides (the CLI's ``--set``); values are parsed to the
        field's type (``projections=pca,umap``, ``n_clusters=auto``).

        Raises:
            ValueError: an item without ``=``, an unknown key or a bad value, naming them.
        """
        changes: dict[str, Any] = {}
        for item in items:
            key, sep, text = str(item).partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"setting {item!r} is not key=value")
            if key not in FIELD_NAMES:
                raise ValueError(f"unknown scoring setting {key!r} (in {item!r}); valid: "
                                 f"{', '.join(FIELD_NAMES)}")
            changes[key] = _parse(text.strip())
        try:
            return replace(self, **changes)
        except ValueError as exc:
            raise ValueError(f"setting {', '.join(map(repr, items))}: {exc}") from None

    def to_toml(self, header: str = "") -> str:
        """The config as a commented TOML file that :meth:`from_toml` reads back."""
        lines = [f"# {ln}" for ln in header.splitlines()]
        for section, title in SECTIONS.items():
            lines += ["", f"# --- {title}"]
            for f in fields(self):
                if f.metadata["section"] != section:
                    continue
                value = getattr(self, f.name)
                text = f"{f.name} = {_toml_value(value)}" if value is not None \
                    else f"# {f.name} = 8"
                lines.append(f"{text}  # {f.metadata['help']}")
        return "\n".join(lines).lstrip("\n") + "\n"

    # --- what the scorers and flags read -----------------------------------------------------
    def flag_thresholds(self) -> dict[str, float]:
        """``{issue: threshold}`` for every registered issue (:mod:`audit.issues`)."""
        return {i.name: getattr(self, i.threshold_field) for i in I.REGISTRY}

    def scorer_kwargs(self, scorer: str) -> dict[str, Any]:
        """Keyword arguments of one scorer (``"mistakenness"``: ``score_boxes``, with its flag
        ``thresholds``; ``"inconsistency"``: ``score_inconsistency``)."""
        out = {kw: getattr(self, f.name) for f in fields(self)
               for s, kw in f.metadata["args"] if s == scorer}
        if scorer == "mistakenness":
            out["missing_flag_conf"] = self.missing_flag_conf
            thr = self.flag_thresholds()
            out["thresholds"] = {i: thr[i] for i in I.MISTAKENNESS_ISSUES}
        elif scorer == "inconsistency":
            out["partial_threshold"] = self.partial_labels_flag
            out["group_threshold"] = self.group_box_flag
        return out

    def score_fields_equal(self, other: ScoringConfig) -> bool:
        """True when ``other`` differs from this config in flag-only fields at most."""
        return all(getattr(self, n) == getattr(other, n) for n in SCORE_FIELDS)

    def differences(self, other: ScoringConfig) -> list[str]:
        """Names of the fields whose values differ between the two configs."""
        return [n for n in FIELD_NAMES if getattr(self, n) != getattr(other, n)]

    def non_default(self) -> dict[str, Any]:
        """``{field: value}`` of the fields that differ from their defaults."""
        return {n: getattr(self, n) for n in self.differences(DEFAULT)}


class FromConfig(enum.Enum):
    """The default of a keyword that, when given, replaces one config field (``run_all``'s and
    ``score_dataset``'s ``projections``, ``n_clusters``, ``seed``)."""

    VALUE = "the config's value"


FROM_CONFIG = FromConfig.VALUE


def with_given(config: ScoringConfig | None, **given: Any) -> ScoringConfig:
    """``config`` (default: the defaults) with the keywords that are not ``FROM_CONFIG``.

    Example:
        >>> with_given(None, n_clusters=3, seed=FROM_CONFIG).n_clusters
        3
    """
    changes = {k: v for k, v in given.items() if v is not FROM_CONFIG}
    return replace(config or DEFAULT, **changes) if changes else config or DEFAULT


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ScoringConfig))
FLAG_ONLY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ScoringConfig)
                                          if f.metadata["flag_only"])
SCORE_FIELDS: tuple[str, ...] = tuple(n for n in FIELD_NAMES if n not in FLAG_ONLY_FIELDS)
FIELD_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in fields(ScoringConfig)}
DEFAULT = ScoringConfig()


def resolve(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), *,
            base: ScoringConfig | None = None) -> tuple[ScoringConfig, str]:
    """The config of a command: ``path`` (TOML) or ``base`` (default: the defaults), then the
    ``key=value`` overrides; and a few words on where it came from.

    Example:
        >>> resolve(None, ["k=5"])[1]
        'defaults + --set k=5'
    """
    if path is not None:
        cfg, source = ScoringConfig.from_toml(path), Path(path).name
    else:
        cfg, source = base or DEFAULT, "defaults"
    if overrides:
        cfg = cfg.with_overrides(list(overrides))
        source += " + --set " + ", ".join(str(o).strip() for o in overrides)
    return cfg, source
