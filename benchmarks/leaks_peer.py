"""FiftyOne Brain's ``compute_leaky_splits`` on the leak benchmark's images, as a peer reading.

Brain compares the stored image embeddings (all hooked layers, as ingest stores them) with a
cosine-distance threshold that is a constant (0.2 by default, "values in [0.1, 0.25] work well");
the benchmark counts its pairs the way it counts this auditor's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

BRAIN_THRESHOLD = 0.2  # compute_leaky_splits' default


def brain_leak_pairs(paths: Sequence[str], split: Sequence[str], embeddings: np.ndarray, *,
                     threshold: float = BRAIN_THRESHOLD) -> pd.DataFrame:
    """Brain's train/val leak pairs: ``sample_a`` (the val image's path), ``sample_b`` (the
    train image's), ``leak`` (True), in a temporary, non-persistent dataset."""
    import fiftyone as fo
    import fiftyone.brain as fob

    ds = fo.Dataset()
    try:
        ds.add_samples([fo.Sample(filepath=str(p), tags=[s]) for p, s in zip(
            paths, split, strict=True)], progress=False)
        index = fob.compute_leaky_splits(ds, splits=["train", "val"], threshold=threshold,
                                         embeddings=np.asarray(embeddings), progress=False)
        path_of = dict(zip(ds.values("id"), ds.values("filepath"), strict=True))
        rows = []
        for sample in index.leaks_view().match_tags("val"):
            for other in index.leaks_for_sample(sample).match_tags("train"):
                rows.append((path_of[sample.id], path_of[other.id]))
    finally:
        ds.delete()
    return pd.DataFrame(rows, columns=["sample_a", "sample_b"]).assign(leak=True)
