"""The issue registry: every issue type the auditor scores, in one table (pure).

Each :class:`Issue` says where it is scored (a ground-truth box, a prediction box or a whole
sample), which scorer produces it, its score and flag columns, the :class:`audit.config.
ScoringConfig` field holding its flag threshold (whose default is the ``audit.constants``
constant named by ``default_constant``), and what a reviewer is told about it. Scorers, the roll
up, the views, the exports and the pages read these names from here; a new issue type is one
entry in :data:`REGISTRY`.

This module imports nothing from the project, so every other module (``audit.constants``
included) may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = ("gt", "pred", "sample")  # a ground-truth box, a prediction box, a whole image


@dataclass(frozen=True)
class Issue:
    """One issue type.

    Attributes:
        name: the issue's name (``wrong_class``, ...), used in ``flagged`` lists and file names.
        scope: where it is scored: ``"gt"`` (a label), ``"pred"`` (a prediction) or
            ``"sample"`` (an image).
        scorer: the pure module that scores it (``"mistakenness"`` or ``"inconsistency"``).
        threshold_field: the :class:`audit.config.ScoringConfig` field with its flag threshold.
        default_constant: the ``audit.constants`` name of that threshold's default.
        title: a short human title.
        suggestion: what a reviewer should do about a flagged item.
    """

    name: str
    scope: str
    scorer: str
    threshold_field: str
    default_constant: str
    title: str
    suggestion: str

    @property
    def score_column(self) -> str:
        """``<name>_score``: higher = more likely wrong, NaN = does not apply."""
        return f"{self.name}_score"

    @property
    def flag_column(self) -> str:
        """``is_<name>_issue``: whether the score reaches the flag threshold."""
        return f"is_{self.name}_issue"


REGISTRY: tuple[Issue, ...] = (
    Issue("wrong_class", "gt", "mistakenness", "wrong_class_flag", "WRONG_CLASS_SCORE",
          "Wrong class",
          "The label's class looks wrong: change it to the suggested class, or confirm it."),
    Issue("bad_box", "gt", "mistakenness", "bad_box_flag", "BAD_BOX_SCORE", "Bad box",
          "The box does not fit its object: redraw it tightly around one object."),
    Issue("spurious", "gt", "mistakenness", "spurious_flag", "SPURIOUS_SCORE", "Spurious label",
          "Nothing the label could name is there: delete it, or confirm it if the object is "
          "real."),
    Issue("missing", "pred", "mistakenness", "missing_flag", "MISSING_SCORE", "Missing label",
          "The model sees an object that no label covers: add a label (accept the prediction), "
          "or dismiss it."),
    Issue("group_box", "gt", "inconsistency", "group_box_flag", "GROUP_SCORE", "Group box",
          "One box encloses several objects of its class: box each object, or mark it iscrowd "
          "if your dataset labels groups."),
    Issue("partial_labels", "sample", "inconsistency", "partial_labels_flag", "PARTIAL_SCORE",
          "Partly labelled image",
          "Objects of a class labelled elsewhere in this image are unlabelled: label them all."),
)
BY_NAME: dict[str, Issue] = {i.name: i for i in REGISTRY}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def get(name: str) -> Issue:
    """The registered issue ``name``; ValueError listing the known ones otherwise.

    Example:
        >>> get("missing").scope
        'pred'
    """
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown issue {name!r}; expected one of {list(NAMES)}") from None


def names(*, scope: str | tuple[str, ...] | None = None,
          scorer: str | None = None) -> tuple[str, ...]:
    """Issue names in registry order, optionally only those of a scope (or scopes) / scorer.

    Example:
        >>> names(scope="pred")
        ('missing',)
    """
    scopes = (scope,) if isinstance(scope, str) else scope
    return tuple(i.name for i in REGISTRY if (scopes is None or i.scope in scopes)
                 and (scorer is None or i.scorer == scorer))


GT_ISSUES = names(scope="gt")  # scored on ground-truth boxes
PRED_ISSUES = names(scope="pred")  # scored on prediction boxes
DETECTION_ISSUES = names(scope=("gt", "pred"))  # carried by a detection (box)
SAMPLE_ISSUES = names(scope="sample")  # scored on a whole image
MISTAKENNESS_ISSUES = names(scorer="mistakenness")  # the four of audit.mistakenness
