"""Chart builders of the pages (audit.ui.charts): encodings, not pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from audit.ui import charts


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n),
                         "loss": rng.uniform(1, 5, n), "split": ["train", "val"] * (n // 2),
                         "cluster": np.arange(n) % 3},
                        index=pd.Index([f"s{i}" for i in range(n)], name="sample_id"))


def test_point_size_shrinks_as_points_grow() -> None:
    sizes = [charts.point_size(n) for n in (10, 1_000, 1_001, 5_000, 5_001, 20_000)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_latent_scatter_encodes_continuous_and_categorical_colours() -> None:
    frame = _frame(300)
    spec = charts.latent_scatter(frame, x="x", y="y", color="loss").chart.to_dict()
    points = spec["layer"][0]
    assert points["mark"]["size"] == charts.point_size(300)
    assert points["encoding"]["color"]["type"] == "quantitative"
    assert points["encoding"]["color"]["scale"]["scheme"] == "viridis"  # no white end
    spec = charts.latent_scatter(frame, x="x", y="y", color="split", outlines=False)
    assert spec.chart.to_dict()["encoding"]["color"]["type"] == "nominal"


def test_latent_scatter_subsamples_and_checks_columns() -> None:
    result = charts.latent_scatter(_frame(400), x="x", y="y", color="loss", max_points=100)
    assert (result.n_points, result.n_drawn) == (400, 100)
    with pytest.raises(ValueError, match="column 'nope' not in frame"):
        charts.latent_scatter(_frame(10), x="x", y="y", color="nope")


def test_bar_chart_keeps_the_data_order_on_request() -> None:
    data = pd.DataFrame({"cluster": ["3", "1", "0"], "median_ratio": [1.6, 1.1, 1.0]})
    kept = charts.bar_chart(data, x="cluster", y="median_ratio", keep_order=True).to_dict()
    assert kept["encoding"]["x"]["sort"] is None
    assert "sort" not in charts.bar_chart(data, x="cluster", y="median_ratio").to_dict()[
        "encoding"]["x"]


def test_ap_bars_give_every_class_its_own_row_height() -> None:
    spec = charts.ap_bars({"book": 0.35, "ball": 0.58, "cone": 0.42}).to_dict()
    assert spec["height"] == {"step": 26}
    assert spec["encoding"]["y"]["sort"] == ["book", "cone", "ball"]  # worst class on top
