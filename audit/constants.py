"""Every threshold and default of the auditor, one comment each."""

from __future__ import annotations

import os
from pathlib import Path

from audit.issues import REGISTRY as _ISSUE_REGISTRY

# --- where things live -------------------------------------------------------------------------
# review logs, demo world
AUDIT_HOME = Path(os.environ.get("AUDIT_HOME", Path.home() / ".yolo-audit"))
DEMO_DATASET_NAME = "yolo-audit-demo"  # FiftyOne dataset name the demo is ingested under
# committed demo model
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "world" / "demo_yolo11n.pt"
SPLITS = ("train", "val")  # the splits the auditor knows

# --- ingest ------------------------------------------------------------------------------------
IMGSZ = 640  # inference size (letterboxed square side), as ultralytics' default
PRED_CONF = 0.001  # keep low-confidence predictions so audits see what the model almost said
PRED_IOU = 0.7  # NMS IoU threshold, as ultralytics' val
MAX_DET = 100  # predictions kept per image after NMS
FEATURE_CONF = 0.05  # predictions below this confidence get no per-box feature (storage)
BOX_FEATURE_DIM = 64  # per-box RoI features are reduced to this by a fixed seeded random projection
BOX_FEATURE_SEED = 1234  # seed of that projection, so features of one dataset stay comparable
EMBED_LAYERS = (16, 19, 22)  # YOLO11 neck outputs (P3/8, P4/16, P5/32) pooled into the embedding
INGEST_BATCH = 8  # images per forward pass and per bulk write
INGEST_VERSION = 2  # what ingest stores (2: background probes); benchmarks re-ingest older data

# --- box matching ------------------------------------------------------------------------------
MATCH_IOU = 0.5  # IoU at which a prediction counts as covering a ground-truth box
LOCALIZATION_IOU = 0.75  # a class-matched pair below this IoU is a localisation suspect
SIZE_BINS = 6  # gt size classes (log-area quantiles) whose typical localisation IoU is measured
SIZE_IOU_QUANTILE = 0.25  # a size class's bad-box IoU threshold: this quantile of its matched IoU
SIZE_MIN_MATCHES = 30  # confident matches a size class needs to set its own bad-box threshold
NEAR_IOU = 0.1  # below this IoU two boxes are unrelated

# --- mistakenness ------------------------------------------------------------------------------
# a prediction is flagged "possibly missing" only from this confidence on; fainter ones are still
# ranked by the missing score (look-alike evidence lifts book-like stripes of confidence 0.1-0.2
# to ~0.76). Demo world precision / recall of the missing flag 0.39 / 0.76 without the floor,
# 0.78 / 0.60 at 0.25 (held-out world 0.35 / 0.69 -> 0.76 / 0.56)
MISSING_FLAG_CONF = 0.25
KNN_K = 10  # neighbours (cosine, per-box features, other images only) behind the kNN evidence
KNN_REFERENCE_MAX = 4000  # labelled boxes kept (seeded subsample) as the kNN reference set
KNN_REFERENCE_PER_CLASS = 300  # of which at most this many per class (rare classes keep theirs)
REFERENCE_CONF = 0.5  # a gt box confirmed by a same-class prediction this confident is "clean"
FAR_Z_LOW = 2.0  # robust z of kNN distance where "looks unlike any labelled object" starts
FAR_Z_HIGH = 6.0  # robust z of kNN distance where that evidence is full
# weight of kNN evidence on labelled boxes (bad box, spurious). At 1.0 it ranked clean but unusual
# boxes high on the demo world (val AP shift 0.06, spawn 0.23; 0.17 and 0.98 at 0.25). The kNN
# look-alike evidence for missing labels keeps full weight.
GT_KNN_WEIGHT = 0.25
# the same weight in wrong class. The model's class margin max(0, q_other - q_same) ranks flips
# better than the neighbours' labels do: demo world val flip AP 0.89 at 0, 0.88 at 0.1, 0.84 at
# 0.25 (train 0.85, 0.85, 0.86: there the model memorised some flipped labels)
CLASS_KNN_WEIGHT = 0.1
ATYPICAL_WEIGHT = 0.45  # weight of box-feature atypicality in bad-box (< 0.5: never flags alone)
LOSS_BOOST = 0.3  # at most this share of the remaining gap is added for a high-loss image
LOSS_Z_HIGH = 3.0  # robust z of the image loss (within its split) giving the full loss boost
MISSING_LOOK_WEIGHT = 0.8  # weight of "looks like labelled objects" for an unlabelled prediction
MISSING_LOOK_CONF = 0.1  # prediction confidence from which that look-alike evidence counts fully

# --- calibration: evidence -> P(label wrong), planted decoys (audit/calibration.py) ------------
# prior share of labels wrong for each of the four box issues before any evidence. Published
# audits of human labels find a few per cent wrong (Northcutt et al. 2021: 3.3 % of test labels
# across ten datasets); 2 % per issue is ~8 % of boxes with some box error, within that range.
# Not fitted to any world; a user who knows their rate sets it (`prior_error_rate`)
PRIOR_ERROR_RATE = 0.02
PROBES_PER_IMAGE = 4  # label-sized background boxes per image whose features ingest stores
DECOYS_PER_TYPE = 400  # decoy errors planted per kind (enough for a per-class fit; bounded cost)
DECOYS_MAX_PER_IMAGE = 4  # at most this many decoys of one kind per image copy
DECOY_SHIFT_IOU = (0.3, 0.75)  # IoU of a decoy shifted label with its object: the bad-box range
CALIBRATION_MIN_FIT = 300  # rows the shrinkage of a class toward the shared fit weighs as
# a calibrated issue flags a box from this probability that its label is wrong: a triage queue,
# where a look costs seconds and a wrong label stays in training. The probabilities are
# conservative where the decoys are harder to find than the real errors (precision at 0.5 was
# 1.00 on every synthetic world); checked on four worlds (`bench findings`, both splits), 0.5 ->
# 0.3: shapes recall shift 0.09 -> 0.82 (precision 0.82-0.89), flip 0.30 -> 0.45 / 0.27 -> 0.55,
# precision >= 0.93 elsewhere; demo flip 0.66 -> 0.73, drop and spawn unchanged at precision 1.00;
# trees (a weak model) near unchanged; the world with no injected error: val images flagged
# 2.4 % -> 4.0 % (target <= 5 %; 0.2 gave 6.3 %). Not fitted to one world: one value for all.
FLAG_PROBABILITY = 0.3
# the five box issues' scores are calibrated probabilities (above): one threshold for all. (Before
# calibration each had its own raw-score threshold, chosen on the demo world: spurious 0.9, wrong
# class 0.3, bad box 0.5, missing 0.5, group box 0.05.)
SPURIOUS_SCORE = WRONG_CLASS_SCORE = BAD_BOX_SCORE = MISSING_SCORE = FLAG_PROBABILITY

# --- label inconsistency -----------------------------------------------------------------------
GROUP_CONTAIN = 0.8  # a prediction counts as inside a box when this fraction of it is covered
# a box enclosing at least this many confident same-class predictions is a group box
GROUP_MIN_MEMBERS = 2
GROUP_MEMBER_CONF = 0.25  # predictions above this confidence count as objects inside a box
# predictions above this confidence enter the group-box score (the product of the two best
# members): a weak second member still ranks a merged box above one with no member at all. At
# 0.25 merged boxes with a hesitant second member scored 0 (merge AUROC 0.74 val on the demo)
GROUP_EVIDENCE_CONF = 0.03
# confident prediction of a class labelled elsewhere in the image, but unlabelled
PARTIAL_CONF = 0.5
# group-box evidence (product of the two best member confidences) from which a box counts as the
# group convention (a shelf labelled as one box: it covers its members for the partial-labels
# score and the class conventions). Merged boxes' members are often hesitant: on the demo world
# 0.3 found 5 % of the non-crowd boxes that truly enclose several books, 0.05 finds 98 % at
# precision 0.99. Not a flag threshold: the group-box flag reads the calibrated probability.
GROUP_CONVENTION_SCORE = 0.05
# the group-box score is a calibrated probability like the four box issues' (audit/calibration.py:
# decoy merges of two neighbouring labels); before calibration it flagged at evidence 0.05
GROUP_SCORE = FLAG_PROBABILITY
PARTIAL_SCORE = 0.5  # partial-labelling score above which a sample is flagged
# issue -> score at or above which a box (or image) is flagged for it: each issue's default_constant
# in the registry (audit/issues.py), one of the *_SCORE constants above
FLAG_SCORES = {i.name: globals()[i.default_constant] for i in _ISSUE_REGISTRY}
MIXED_CONVENTION_MIN = 0.05  # a class mixes conventions when each one covers at least this share
# a member of a group box has at most this share of the box's area (two adjacent objects that
# overlap by a half each cover up to three quarters of the box around both)
GROUP_MEMBER_MAX_AREA = 0.75

# --- clusters and insights ---------------------------------------------------------------------
PROJECTION_METHODS = ("pca", "tsne", "umap")  # 2-D projections offered
N_CLUSTERS = None  # None: choose k by silhouette over CLUSTER_K_RANGE
CLUSTER_K_RANGE = (4, 12)  # candidate k; 2-3 clusters mirror the biggest factor, hide small groups
TSNE_MAX_POINTS = 2_000  # t-SNE fits a subsample this big and places the rest by kNN (speed)
UMAP_MAX_POINTS = 10_000  # UMAP fits a subsample this big and places the rest by kNN
UMAP_EPOCHS = 200  # UMAP's optimisation epochs (its own default above 10,000 rows)
SEED = 0  # default random seed everywhere
ALPHA = 0.05  # family-wise significance level (Holm-corrected over clusters)
# val loss / train loss in a cluster, over the dataset's ratio, that counts as overfit
OVERFIT_RATIO = 1.5
LOW_PERF_RATIO = 1.25  # cluster val loss over dataset val loss that counts as low performance
MIN_CLUSTER_SIZE = 5  # clusters smaller than this give no insight
EFFECT_SIZE_MIN = 0.5  # |standardised mean difference| for a metadata field to be named
CURVE_BINS = 10  # quantile bins in loss-vs-metadata curves
CURVE_RHO_MIN = 0.3  # |Spearman rho| of loss vs a metadata field that makes a curve insight
CLUSTER_PCA_DIMS = 50  # embeddings are standardised and PCA-reduced to this before k-means / t-SNE
CLUSTER_SILHOUETTE_MAX = 4000  # points (seeded subsample) on which k is chosen by silhouette
PROJECTION_KNN = 5  # neighbours (PCA space) that place points left out of a t-SNE fit
RECALL_CONF = 0.25  # a prediction at least this confident counts when measuring recall
INSIGHT_MAX_SAMPLES = 1000  # sample ids kept per insight (highest loss first)
GAP_NEIGHBOURS = 10  # nearest train images (PCA space) an image's loss is read against
GAP_MAX_REFERENCE = 20_000  # train images searched for look-alikes (seeded subsample beyond, speed)
# near-duplicates (audit/leaks.py): a pair whose distance over the image's distance to its
# DUPLICATE_NEIGHBOURS-th nearest image is this many robust SDs (log scale) below the median is a
# near-copy; 5 SDs is a 3e-7 tail under a normal. Demo world + 10 altered copies: 3.5-6 all find
# the 10; false pairs 3 at 3.5, 2 at 4, none at 5 and 6
DUPLICATE_SPREAD = 5.0
DUPLICATE_NEIGHBOURS = 3  # the yardstick neighbour: an image with up to two copies still has one
DUPLICATE_SHOWN = 50  # near-duplicate pairs kept in an insight's evidence
DUPLICATE_EXACT_MAX = 20_000  # above this many images, near-copies are searched per cluster
# FiftyOne App opened from the auditor: predictions below this confidence are filtered out of the
# view it shows (ultralytics' predict default; thumbnails with every box down to 0.001 are
# unreadable); the filter is a view stage the reviewer can remove in the App
APP_MIN_CONFIDENCE = MISSING_FLAG_CONF
# a click waits at most this long for an App still starting (it goes on as soon as the App is up
# or has failed); the App starts in 10-20 s on 2 busy cores
APP_WAIT_S = 30.0
# pages start the App in the background when they show an "Open in FiftyOne App" button (0: not;
# the tests turn it off so that rendering a page never starts a server)
APP_WARM_UP = os.environ.get("AUDIT_APP_WARM_UP", "1") != "0"
APP_CONNECT_S = 10.0  # a new App's session may take this long to connect before it takes a view

# --- model competence (audit/competence.py) ----------------------------------------------------
# The verdicts are majority rules, not fits to any dataset: at or below each, the model's
# disagreement with a label is no better than a coin flip as evidence against the label.
# working confidence at which recall and precision are read: the missing-flag floor and
# ultralytics' predict default
COMPETENCE_CONF = MISSING_FLAG_CONF
# a class is weak when the model finds at most half its labelled objects: a label with no
# confident prediction is then at least as likely a model miss as a label error
COMPETENCE_MIN_RECALL = 0.5
# ... or when at most half its confident detections match a label: an unlabelled detection is
# then at least as likely a false alarm as a missing label
COMPETENCE_MIN_PRECISION = 0.5
# ... or when its matched pairs' median IoU is at most the localisation-suspect IoU: the typical
# match would itself look like a bad box
COMPETENCE_MIN_IOU = LOCALIZATION_IOU
# labels a class needs in the measured split for a verdict: at 20 a class of true recall 0.3
# measures > 0.5 with probability 0.02, one of 0.8 measures <= 0.5 with probability 0.003
COMPETENCE_MIN_BOXES = 20

# --- review ------------------------------------------------------------------------------------
REVIEW_ACTIONS = ("confirm", "fix_class", "delete", "accept_prediction", "dismiss", "relabel",
                  "undo")
