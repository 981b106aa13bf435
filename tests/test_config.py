"""audit.issues (the registry) and audit.config.ScoringConfig: defaults, round trips, CLI."""

from __future__ import annotations

import inspect
import tomllib

import pytest

from audit import constants as C
from audit import issues as I
from audit.__main__ import main
from audit.config import (
    DEFAULT,
    FIELD_NAMES,
    FLAG_ONLY_FIELDS,
    SCORE_FIELDS,
    ScoringConfig,
    resolve,
)
from audit.inconsistency import score_inconsistency
from audit.mistakenness import BOX_ISSUES, score_boxes

# --- the registry -------------------------------------------------------------------------------


def test_registry_names_each_issue_once_with_its_columns_and_threshold():
    assert I.NAMES == ("wrong_class", "bad_box", "spurious", "missing", "group_box",
                       "partial_labels")
    for issue in I.REGISTRY:
        assert issue.scope in I.SCOPES and issue.title and issue.suggestion
        assert (issue.score_column, issue.flag_column) == (f"{issue.name}_score",
                                                           f"is_{issue.name}_issue")
        assert issue.threshold_field in FIELD_NAMES
        assert getattr(DEFAULT, issue.threshold_field) == getattr(C, issue.default_constant) \
            == C.FLAG_SCORES[issue.name]
    with pytest.raises(ValueError, match=r"unknown issue 'typo'; expected one of"):
        I.get("typo")


def test_old_names_are_aliases_of_the_registry():
    from audit import frames
    from audit.data import views

    assert BOX_ISSUES == I.MISTAKENNESS_ISSUES == ("wrong_class", "bad_box", "spurious", "missing")
    assert frames.ISSUES == views.ISSUES == I.NAMES
    assert set(views.BOX_ISSUES) == set(I.GT_ISSUES) | set(I.PRED_ISSUES)
    assert C.FLAG_SCORES == DEFAULT.flag_thresholds()


# --- defaults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("scorer", "function"), [("mistakenness", score_boxes),
                                                  ("inconsistency", score_inconsistency)])
def test_defaults_are_the_scorers_own(scorer, function):
    params = inspect.signature(function).parameters
    for keyword, value in DEFAULT.scorer_kwargs(scorer).items():
        default = params[keyword].default
        if keyword == "thresholds":  # None there: C.FLAG_SCORES
            assert value == {i: C.FLAG_SCORES[i] for i in I.MISTAKENNESS_ISSUES}
        else:
            assert value == default, keyword


def test_run_defaults_and_field_groups():
    assert (DEFAULT.n_clusters, DEFAULT.projections, DEFAULT.seed) == (
        C.N_CLUSTERS, C.PROJECTION_METHODS, C.SEED)
    assert set(FLAG_ONLY_FIELDS) == {"wrong_class_flag", "bad_box_flag", "spurious_flag",
                                     "missing_flag", "group_box_flag", "partial_labels_flag",
                                     "missing_flag_conf"}
    assert "group_convention_score" in SCORE_FIELDS  # it feeds partial labels and conventions
    assert set(FLAG_ONLY_FIELDS) | set(SCORE_FIELDS) == set(FIELD_NAMES)


# --- round trips --------------------------------------------------------------------------------

CHANGED = ScoringConfig(wrong_class_flag=0.4, k=5, n_clusters=6, projections=("pca", "umap"),
                        group_evidence_conf=0.1, seed=3)


@pytest.mark.parametrize("config", [DEFAULT, CHANGED], ids=["defaults", "changed"])
def test_dict_and_toml_round_trips(config, tmp_path):
    assert ScoringConfig.from_dict(config.to_dict()) == config
    path = tmp_path / "audit.toml"
    path.write_text(config.to_toml("a header\nof two lines"), encoding="utf-8")
    assert ScoringConfig.from_toml(path) == config
    assert tomllib.loads(path.read_text(encoding="utf-8"))  # plain TOML


def test_a_partial_file_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "audit.toml"
    path.write_text("wrong_class_flag = 0.4\nk = 5\n", encoding="utf-8")
    assert ScoringConfig.from_toml(path).non_default() == {"wrong_class_flag": 0.4, "k": 5}


def test_overrides_parse_each_type():
    cfg = DEFAULT.with_overrides(["wrong_class_flag=0.4", "k=5", "match_iou=1",
                                  "projections=pca,umap", "n_clusters=7", " seed = 2 "])
    assert (cfg.wrong_class_flag, cfg.k, cfg.match_iou, cfg.projections, cfg.n_clusters,
            cfg.seed) == (0.4, 5, 1.0, ("pca", "umap"), 7, 2)
    assert isinstance(cfg.match_iou, float) and isinstance(cfg.k, int)
    assert cfg.with_overrides(["n_clusters=auto"]).n_clusters is None
    assert cfg.with_overrides(['projections=["tsne"]']).projections == ("tsne",)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["nope=1"], r"unknown scoring setting 'nope' \(in 'nope=1'\); valid: wrong_class_flag"),
        (["k"], r"setting 'k' is not key=value"),
        (["match_iou=abc"], r"match_iou must be a number, got 'abc'"),
        (["match_iou=1.5"], r"match_iou must be in \(0, 1\], got 1.5"),
        (["wrong_class_flag=0"], r"wrong_class_flag must be in \(0, 1\], got 0"),
        (["gt_knn_weight=-0.1"], r"gt_knn_weight must be in \[0, 1\], got -0.1"),
        (["k=0"], r"k must be >= 1, got 0"),
        (["k=2.5"], r"k must be an integer, got 2.5"),
        (["k=true"], r"k must be an integer, got True"),
        (["n_clusters=1"], r"n_clusters must be >= 2, got 1"),
        (["projections=pca,mds"], r"unknown projection method\(s\) \['mds'\]"),
        (["projections=pca,pca"], r"listed twice"),
        (["seed=-1"], r"seed must be >= 0, got -1"),
    ],
)
def test_bad_overrides_name_the_setting(items, message):
    with pytest.raises(ValueError, match=message):
        DEFAULT.with_overrides(items)


def test_bad_dict_and_file_name_the_key_and_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"unknown scoring setting 'kk'; valid: .*\bk\b"):
        ScoringConfig.from_dict({"kk": 3})
    with pytest.raises(ValueError, match=r"near_iou must be a number, got 'x'"):
        ScoringConfig.from_dict({"near_iou": "x"})
    path = tmp_path / "mine.toml"
    for text, message in [("kk = 3\n", r"mine.toml: unknown scoring setting 'kk'"),
                          ('k = "five"\n', r"mine.toml: k must be an integer, got 'five'"),
                          ("k = \n", r"mine.toml: not valid TOML")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            ScoringConfig.from_toml(path)
    with pytest.raises(ValueError, match=r"config file .*absent.toml does not exist"):
        ScoringConfig.from_toml(tmp_path / "absent.toml")


# --- what the pipeline and the data layer read --------------------------------------------------


def test_flag_thresholds_and_flag_only_comparison():
    cfg = DEFAULT.with_overrides(["missing_flag=0.7", "missing_flag_conf=0.4"])
    assert cfg.flag_thresholds()["missing"] == 0.7
    assert cfg.score_fields_equal(DEFAULT) and cfg.differences(DEFAULT) == [
        "missing_flag", "missing_flag_conf"]
    for field in ("group_convention_score", "k", "n_clusters", "projections"):
        value = {"group_convention_score": "0.2", "k": "3", "n_clusters": "4",
                 "projections": "pca"}
        assert not DEFAULT.with_overrides([f"{field}={value[field]}"]).score_fields_equal(DEFAULT)


def test_resolve_says_where_the_config_came_from(tmp_path):
    assert resolve() == (DEFAULT, "defaults")
    path = tmp_path / "audit.toml"
    path.write_text("k = 5\n", encoding="utf-8")
    cfg, source = resolve(path, ["wrong_class_flag=0.4"])
    assert (cfg.k, cfg.wrong_class_flag) == (5, 0.4)
    assert source == "audit.toml + --set wrong_class_flag=0.4"


# --- command line (no dataset is opened: the settings fail first) ---------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--set", "nope=1"], "'nope'"),
        (["--set", "match_iou=abc"], "match_iou"),
        (["--set", "k=5", "--set", "near_iou=2"], "near_iou"),
        (["--config", "absent.toml"], "absent.toml"),
    ],
)
def test_score_with_a_bad_setting_exits_2_naming_it(args, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["score", "--name", "never-opened", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err


def test_config_show_prints_the_defaults_as_toml(capsys):
    assert main(["config", "--show"]) == 0
    out = capsys.readouterr().out
    assert ScoringConfig.from_dict(tomllib.loads(out)) == DEFAULT
    assert f"wrong_class_flag = {C.WRONG_CLASS_SCORE!r}" in out
