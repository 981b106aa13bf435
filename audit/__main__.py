"""Command line: ``python -m audit <command>``: ingest, score, export, reviews, demo, bench, ...

Every subcommand runs headless with a tqdm progress bar; a bad input ends the command with one
clear line on stderr (``error: ...``, a list of input problems joined with ``;``) and exit code 2,
not a traceback. Warnings print as one ``warning: ...`` line each.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from audit import constants as C


def _parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    prog = "yolo-audit" if Path(sys.argv[0]).name == "yolo-audit" else "python -m audit"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("demo-world", help="write the synthetic demo world (COCO JSON + images)")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--images", type=int, default=None, help="number of images (default: small)")
    w.add_argument("--seed", type=int, default=C.SEED)
    w.add_argument("--noise-rate", type=float, default=None, help="share of boxes given an error")

    r = sub.add_parser("real-world", help="write the tree world: human-annotated aerial tree "
                       "crowns (the deepforest wheel's images), tiled, with injected errors")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--source", type=Path, default=None,
                   help="deepforest wheel or package folder (default: found automatically)")
    r.add_argument("--seed", type=int, default=C.SEED)
    r.add_argument("--noise-rate", type=float, default=None, help="share of boxes given an error")

    sh = sub.add_parser("shapes-world", help="write a world drawn by scikit-image's "
                        "random_shapes generator, with injected errors")
    sh.add_argument("--out", type=Path, required=True)
    sh.add_argument("--images", type=int, default=None, help="number of images (default 400)")
    sh.add_argument("--seed", type=int, default=C.SEED)
    sh.add_argument("--noise-rate", type=float, default=None, help="share of boxes given an error")

    t = sub.add_parser("train-demo", help="train the demo YOLO11 checkpoint on a demo world")
    t.add_argument("--world", type=Path, required=True)
    t.add_argument("--out", type=Path, default=C.DEMO_CHECKPOINT)
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--imgsz", type=int, default=320)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    t.add_argument("--val-every-epoch", action="store_true", help="validate after each epoch")
    t.add_argument("--nbs", type=int, default=None,
                   help="ultralytics' nominal batch size (default 64: one optimizer step per "
                        "64 images; a tiny world wants its own batch size)")
    t.add_argument("--flipud", type=float, default=None, help="vertical flip probability "
                   "(aerial images look the same upside down)")

    d = sub.add_parser("demo", help="build the demo world and ingest + score it (idempotent)")
    d.add_argument("--name", default=C.DEMO_DATASET_NAME)
    d.add_argument("--force", action="store_true", help="rebuild even if the dataset exists")

    i = sub.add_parser("ingest", help="ingest images + COCO JSON (or data.yaml) + YOLO11 .pt")
    i.add_argument("--name", required=True)
    i.add_argument("--images", type=Path, help="image root that COCO file_name is relative to")
    i.add_argument("--train-json", type=Path)
    i.add_argument("--val-json", type=Path)
    i.add_argument("--data-yaml", type=Path, help="an ultralytics data.yaml instead of COCO JSON")
    i.add_argument("--model", type=Path, required=True)
    i.add_argument("--imgsz", type=int, default=C.IMGSZ)
    i.add_argument("--batch", type=int, default=C.INGEST_BATCH)
    i.add_argument("--device", default="cpu", help="torch device: cpu, cuda:0, ..., mps")
    i.add_argument("--layers", default=",".join(map(str, C.EMBED_LAYERS)),
                   help="comma-separated model layer indices pooled into the embedding")

    s = sub.add_parser("score", help="run every audit on an ingested dataset and store the scores")
    s.add_argument("--name", required=True)
    s.add_argument("--projection", action="append", choices=C.PROJECTION_METHODS,
                   help="2-D projections to compute (repeatable; default: all)")
    s.add_argument("--clusters", type=int, default=None, help="k for k-means (default: chosen)")
    s.add_argument("--config", type=Path, default=None,
                   help="a TOML file of scoring settings (`python -m audit config --show` "
                        "writes one to start from); default: the defaults")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one scoring setting, over the file or the defaults (repeatable), "
                        "e.g. --set wrong_class_flag=0.4")
    s.add_argument("--full", action="store_true",
                   help="re-score even when only flag thresholds changed (default: re-flag)")

    c = sub.add_parser("config", help="print scoring settings as TOML (defaults or a dataset's)")
    c.add_argument("--show", action="store_true", help="print the settings (the default action)")
    c.add_argument("--name", default=None, help="a scored dataset: the settings stored with it")

    e = sub.add_parser("export", help="export corrected labels or the relabel list")
    e.add_argument("--name", required=True)
    e.add_argument("--format", required=True, choices=("coco", "yolo", "relabel-csv"))
    e.add_argument("--out", type=Path, required=True,
                   help="folder to write into, or the file itself when it ends in .json "
                        "(coco) or .csv (relabel-csv)")
    e.add_argument("--split", choices=C.SPLITS, default=None)

    rv = sub.add_parser("reviews", help="a dataset's review decisions by state; --reapply "
                        "re-applies those of samples no longer in it (ingested again)")
    rv.add_argument("--name", required=True)
    rv.add_argument("--reapply", action="store_true",
                    help="re-apply orphaned decisions to the samples now at their file paths, "
                         "matching boxes by label and place")

    b = sub.add_parser("bench", help="benchmarks: finding power, speed, train/val leaks")
    b.add_argument("which", choices=("findings", "speed", "ingest", "app", "leaks",
                                     "concurrent-ingest"))
    b.add_argument("--size", default="full", choices=("small", "full"))
    b.add_argument("--out", type=Path, default=None, help="also write the table here (CSV/JSON)")
    b.add_argument("--world", default=None,
                   help="findings only: demo, clean (demo images, no injected error), shapes "
                        "(scikit-image's generator), trees (real aerial images) or all "
                        "(default: demo)")
    b.add_argument("--seed", type=int, default=None,
                   help="findings and leaks: draw the world with this seed; any seed but "
                        "the demo's gives a world the demo checkpoint never saw (a held-out check)")
    return p


def _layers(text: str) -> tuple[int, ...]:
    """``--layers 16,19,22`` -> ``(16, 19, 22)``; ValueError naming the option otherwise."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--layers must be comma-separated layer indices, got {text!r}") from None


def _score(args: argparse.Namespace) -> str:
    """Run ``score``; a one-line summary: re-scored or re-flagged, and the config's source."""
    from audit.config import FROM_CONFIG, resolve, with_given
    from audit.data.scoring import score_dataset

    config, source = resolve(args.config, args.set)  # a bad file or setting fails here, early
    config = with_given(config, projections=tuple(args.projection or ()) or FROM_CONFIG,
                        n_clusters=FROM_CONFIG if args.clusters is None else args.clusters)
    result = score_dataset(args.name, config=config, full=args.full)
    if hasattr(result, "per_issue"):  # a ReflagResult
        n_flagged, n, how = result.n_flagged, result.n_samples, "re-flagged from its stored scores"
    else:
        flagged = result.samples["flagged"]
        n_flagged, n, how = int(flagged.map(bool).sum()), len(flagged), "scored (every audit ran)"
    seconds = sum(result.timings.values())
    return (f"{args.name}: {how} in {seconds:.1f} s with config from {source}; "
            f"{n_flagged} of {n} samples flagged")


def _show_config(name: str | None) -> str:
    """The defaults, or the settings stored with dataset ``name``, as a TOML file."""
    from audit.config import DEFAULT

    if name is None:
        return DEFAULT.to_toml("scoring settings: the defaults (audit/constants.py)\n"
                               "edit, then: python -m audit score --name N --config FILE")
    from audit.data import store

    stored = store.stored_scoring_config(store.load_dataset(name))
    what = "the settings it was scored with" if stored else "none stored: the defaults"
    return (stored or DEFAULT).to_toml(f"scoring settings of dataset {name!r}: {what}")


def _reviews(name: str, reapply: bool) -> str:
    """Run ``reviews``: the log's decisions by state, after re-applying orphans if asked."""
    from audit.data import store
    from audit.data.review_log import list_decisions, reapply_orphaned

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the orphan warning: this command is its answer
        ds = store.load_dataset(name)
    lines = [reapply_orphaned(ds).summary(name)] if reapply else []
    counts = list_decisions(ds)["state"].value_counts()
    states = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no decision"
    lines.append(f"dataset {name!r}: review log holds {states}")
    if not reapply and counts.get("sample_missing", 0):
        lines.append("re-apply the sample_missing ones with "
                     f"`python -m audit reviews --name {name} --reapply`")
    return "\n".join(lines)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line: a multi-line problem list joined with ``; ``."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    head, rest = lines[0], "; ".join(lines[1:])
    return head if not rest else f"{head} {rest}" if head.endswith(":") else f"{head}; {rest}"


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the command line: ``warning: <message>`` on one line."""
    print(f"warning: {one_line(Exception(message))}", file=file or sys.stderr)


def _run(args: argparse.Namespace) -> int:
    """Dispatch one parsed command; imports lazily so --help stays fast."""
    if args.command == "demo-world":
        from audit.world.generate import generate_world

        kw = {k: v for k, v in (("n_images", args.images), ("noise_rate", args.noise_rate))
              if v is not None}
        summary = generate_world(args.out, seed=args.seed, **kw)
        print(summary)
    elif args.command == "real-world":
        from audit.world.trees import generate_tree_world

        kw = {} if args.noise_rate is None else {"noise_rate": args.noise_rate}
        print(generate_tree_world(args.out, source=args.source, seed=args.seed, **kw))
    elif args.command == "shapes-world":
        from audit.world.shapes import generate_shapes_world

        kw = {k: v for k, v in (("n_images", args.images), ("noise_rate", args.noise_rate))
              if v is not None}
        print(generate_shapes_world(args.out, seed=args.seed, **kw))
    elif args.command == "train-demo":
        from audit.world.train import train_demo_checkpoint

        metrics = train_demo_checkpoint(args.world, args.out, epochs=args.epochs,
                                        imgsz=args.imgsz, batch=args.batch,
                                        threads=args.threads,
                                        val_every_epoch=args.val_every_epoch,
                                        **{k: v for k, v in (("nbs", args.nbs),
                                                             ("flipud", args.flipud))
                                           if v is not None})
        print(metrics)
    elif args.command == "demo":
        from audit.data.demo import build_demo

        build_demo(args.name, force=args.force)
    elif args.command == "ingest":
        from audit.data.ingest import ingest

        layers = _layers(args.layers)
        ingest(args.name, images=args.images, train_json=args.train_json,
               val_json=args.val_json, data_yaml=args.data_yaml, model=args.model,
               imgsz=args.imgsz, batch=args.batch, device=args.device, layers=layers)
    elif args.command == "score":
        print(_score(args))
    elif args.command == "config":
        print(_show_config(args.name), end="")
    elif args.command == "export":
        from audit.data.exports import run_export

        print(run_export(args.name, args.format, args.out, split=args.split).summary)
    elif args.command == "reviews":
        print(_reviews(args.name, args.reapply))
    elif args.command == "bench":
        try:  # the benchmarks live beside the package in a checkout, not in the installed package
            from benchmarks import run_bench
        except ModuleNotFoundError as exc:
            raise ValueError("bench: the benchmarks live in the repository's benchmarks/ folder; "
                             "run this from a checkout of the repository") from exc

        for flag, value in (("--seed", args.seed), ("--world", args.world)):
            allowed = ("findings", "leaks") if flag == "--seed" else ("findings",)
            if value is not None and args.which not in allowed:
                raise ValueError(f"bench {args.which}: {flag} applies to "
                                 f"{' and '.join(allowed)} only")
        options = {k: v for k, v in (("seed", args.seed), ("world", args.world))
                   if v is not None}
        run_bench(args.which, size=args.size, out=args.out, **options)
    return 0


def _failed(exc: Exception) -> int:
    """Exit code 2 and one ``error:`` line for a bad input, a missing / unwritable file, a full
    disk or a lost database (naming it); any other exception is a bug and goes on up."""
    from audit.data.database import database_lost

    message = database_lost(exc)  # a pymongo error, or FiftyOne's ConnectionError from one
    if message is None and not isinstance(exc, ValueError | OSError):
        raise exc
    print(f"error: {message or one_line(exc)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _run(args)
    except Exception as exc:
        return _failed(exc)
    except KeyboardInterrupt:
        print("interrupted: what was written so far is kept; run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
