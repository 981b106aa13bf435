"""Benchmarks: finding power against peer tools, and speed (``python -m audit bench ...`` or
``python -m benchmarks ...``). They sit beside the package, not in it: the installed package holds
the product.

Each benchmark lives in its own module and is imported only when asked for, so ``--help`` and
the other benchmarks do not pay for FiftyOne, torch or cleanlab.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

BENCHMARKS = {
    "findings": ("benchmarks.findings", "bench_findings"),
    "speed": ("benchmarks.speed", "bench_speed"),
    "ingest": ("benchmarks.ingest_speed", "bench_ingest"),
    "app": ("benchmarks.app_speed", "bench_app"),
    "leaks": ("benchmarks.leaks", "bench_leaks"),
    "concurrent-ingest": ("benchmarks.concurrent_ingest", "bench_concurrent_ingest"),
}  # name -> (module, function), each called as function(size=..., out=...)
SIZES = ("small", "full")  # benchmark sizes every benchmark accepts


def run_bench(which: str, *, size: str = "full", out: str | Path | None = None,
              **options: Any) -> Any:
    """Run one benchmark by name.

    Args:
        which: one of ``BENCHMARKS`` ("findings", "speed", "ingest", "app", "leaks").
        size: "small" (seconds to minutes, for tests) or "full".
        out: optional file the benchmark also writes its table to.
        **options: further keyword arguments of that benchmark's function (``seed`` for
            findings).

    Returns:
        Whatever the benchmark returns (its tables).

    Raises:
        ValueError: unknown benchmark or size.

    Example:
        >>> run_bench("findings", size="small")  # doctest: +SKIP
    """
    if which not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {which!r}; expected one of {tuple(BENCHMARKS)}")
    if size not in SIZES:
        raise ValueError(f"unknown benchmark size {size!r}; expected one of {SIZES}")
    module, function = BENCHMARKS[which]
    bench = getattr(import_module(module), function)
    return bench(size=size, out=None if out is None else Path(out), **options)
