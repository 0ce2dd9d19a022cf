"""``sdcomplex plot``: learning curves of a run directory (PNG and PDF)."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Train and test loss and accuracy per epoch from RUN_DIR/metrics.jsonl, written as "
    "a PNG (200 dpi) and a PDF, atomically."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by sdcomplex train")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="output path; .png and .pdf are written (default RUN_DIR/learning_curves)",
    )
    p.add_argument("--dpi", type=int, default=200, help="PNG resolution (>= 150)")
    p.add_argument("--force", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    from sdcomplex.train import plot_learning_curves

    png, pdf = plot_learning_curves(args.run_dir, args.out, dpi=args.dpi, overwrite=args.force)
    print(f"wrote {png} and {pdf}")
    return 0
