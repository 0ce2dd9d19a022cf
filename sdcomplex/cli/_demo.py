"""``sdcomplex demo``: supervision complexity on the embedded digits data set."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sdcomplex._io import atomic_write_json
from sdcomplex.cli._table import format_table

DESCRIPTION = (
    "Mean empirical NTK of a random MLP on 500 scikit-learn digits (embedded, no "
    "download) and the adjusted supervision complexity of true labels, random labels "
    "and a logistic-regression teacher's soft targets at several temperatures."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--per-class", type=int, default=50, help="training examples per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results as JSON to this file")


def run(args: argparse.Namespace) -> int:
    from sdcomplex.demo import DemoConfig, run_demo

    if args.per_class < 2:
        raise ValueError("--per-class must be at least 2")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.json and Path(args.json).exists():  # refused before the work, not after it
        raise FileExistsError(f"{args.json} exists; refusing to overwrite it")
    start = time.perf_counter()
    out = run_demo(DemoConfig(per_class=args.per_class, seed=args.seed))
    print(
        f"digits: n = {out['n']} training examples, 10 classes; mean NTK of a random MLP "
        f"(trace {out['kernel_trace']:.4g}); teacher train accuracy "
        f"{out['teacher_train_accuracy']:.3f}"
    )
    print(format_table(out["rows"], ("targets", "value", "adjusted", "jitter", "method")))
    print(f"adjusted = sqrt(s * tr K) / n; done in {time.perf_counter() - start:.1f} s")
    if args.json:
        atomic_write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0
