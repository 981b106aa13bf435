"""Writing a benchmark's tables: one atomic JSON or CSV file (``--out``) for every benchmark."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

SUFFIXES = (".json", ".csv")


def check_out(out: str | Path | None, bench: str) -> None:
    """Raise ValueError unless ``out`` is None or ends in .json / .csv (checked before running)."""
    if out is not None and Path(out).suffix.lower() not in SUFFIXES:
        raise ValueError(f"bench {bench}: --out must end in .json or .csv, got {out}")


def write_tables(out: str | Path, tables: dict[str, pd.DataFrame],
                 extra: dict[str, Any] | None = None) -> None:
    """Write the tables to ``out`` through a temporary file renamed into place.

    Args:
        out: ``.json``: one object with a list of records per table plus ``extra`` (NaN floats
            become null); ``.csv``: the one table, or every non-empty table stacked with a
            ``table`` column naming it.
        tables: name -> frame, in output order.
        extra: JSON only: more top-level keys (ratio, info, ...).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        if out.suffix.lower() == ".json":
            payload = {k: json.loads(v.to_json(orient="records")) for k, v in tables.items()}
            payload |= {k: _plain(v) for k, v in (extra or {}).items()}
            tmp.write_text(json.dumps(payload, indent=2))
        elif len(tables) == 1:
            next(iter(tables.values())).to_csv(tmp, index=False)
        else:
            frames = [v.assign(table=k) for k, v in tables.items() if len(v)]
            pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    """NaN floats -> None (JSON has no NaN)."""
    return None if isinstance(value, float) and math.isnan(value) else value
