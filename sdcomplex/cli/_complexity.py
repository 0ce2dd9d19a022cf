"""``sdcomplex complexity``: supervision complexity of saved targets w.r.t. a saved kernel."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from sdcomplex import targets as tg
from sdcomplex._io import atomic_write_json, load_arrays
from sdcomplex.cli._table import format_table
from sdcomplex.complexity import factorize_kernel

COLUMNS = ("targets", "kind", "value", "adjusted", "trace", "n", "jitter", "cond", "method")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "complexity",
        help="supervision complexity of targets w.r.t. a kernel saved as .npy/.npz",
        description=(
            "Supervision complexity s(Y) = vec(Y)^T K^-1 vec(Y) (float64 solves) and the adjusted "
            "value sqrt(s tr K)/n of each target set. The kernel's shape selects the form: "
            "(n, n) mean, (C, n, n) per-logit, (n, n, C, C) full."
        ),
    )
    p.add_argument("--kernel", required=True, help="kernel .npy, or .npz (see --kernel-key)")
    p.add_argument("--kernel-key", help="array name inside a kernel .npz (default: the only one)")
    p.add_argument(
        "--targets",
        action="append",
        default=[],
        help="targets (n,) or (n, C): a .npy, or a .npz whose every array is a target set",
    )
    p.add_argument("--labels", help="integer labels .npy: adds one-hot label targets")
    p.add_argument("--num-classes", type=int, help="classes for --labels (default: max + 1)")
    p.add_argument("--logits", help="teacher logits (n, C) .npy: adds soft targets")
    p.add_argument(
        "--temperature",
        type=float,
        nargs="+",
        default=[1.0],
        help="temperatures for --logits soft targets (default: 1)",
    )
    p.add_argument("--random-labels", type=int, metavar="SEED", help="adds random labels (seed)")
    p.add_argument("--offset", help="(n, C) outputs f0 .npy: residual targets Y - f0")
    p.add_argument("--ridge", type=float, default=0.0, help="lambda: solve K + lambda n I")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.set_defaults(run=run)


def _load(path: str, key: str | None = None) -> dict[str, np.ndarray]:
    arrays = load_arrays(path)
    if key is not None and Path(path).suffix == ".npz":
        if key not in arrays:
            raise ValueError(f"{path} has no array {key!r}; it has {', '.join(arrays)}")
        return {key: arrays[key]}
    return arrays


def _target_sets(args: argparse.Namespace, n: int) -> list[tuple[str, Any]]:
    sets: list[tuple[str, Any]] = []
    for path in args.targets:
        sets += list(_load(path).items())
    num_classes = args.num_classes
    if args.labels:
        labels = next(iter(_load(args.labels).values()))
        num_classes = num_classes or int(np.max(labels)) + 1
        sets.append(("labels", tg.one_hot(labels, num_classes)))
    if args.logits:
        logits = next(iter(_load(args.logits).values()))
        num_classes = num_classes or logits.shape[1]
        for tau in args.temperature:
            sets.append((f"soft(tau={tau:g})", tg.soft_targets(logits, tau)))
    if args.random_labels is not None:
        if not num_classes:
            raise ValueError("--random-labels needs --num-classes, --labels or --logits")
        sets.append(("random labels", tg.random_labels(n, num_classes, seed=args.random_labels)))
    if not sets:
        raise ValueError("give at least one of --targets, --labels, --logits, --random-labels")
    return sets


def run(args: argparse.Namespace) -> int:
    kernels = _load(args.kernel, args.kernel_key)
    if len(kernels) != 1:
        raise ValueError(f"{args.kernel} holds {len(kernels)} arrays; choose one with --kernel-key")
    if args.json and Path(args.json).exists() and not args.force:
        raise FileExistsError(f"{args.json} exists; pass --force to overwrite it")
    kernel = next(iter(kernels.values()))
    factorized = factorize_kernel(kernel, ridge=args.ridge)
    offset = next(iter(_load(args.offset).values())) if args.offset else None
    rows, results = [], []
    for name, targets in _target_sets(args, factorized.n):
        res = factorized.complexity(targets, offset=offset)
        kind = (res.targets or {}).get("kind", "array")
        rows.append(
            {
                "targets": name,
                "kind": kind,
                "value": res.value,
                "adjusted": res.adjusted,
                "trace": res.trace,
                "n": res.n,
                "jitter": res.jitter,
                "cond": res.condition_number,
                "method": res.method,
            }
        )
        results.append({"name": name, **res.to_dict()})
    print(f"kernel {args.kernel}: form {factorized.form}, n = {factorized.n}, ridge = {args.ridge}")
    print(format_table(rows, COLUMNS))
    if args.json:
        atomic_write_json(args.json, {"kernel": args.kernel, "results": results}, overwrite=True)
        print(f"wrote {args.json}")
    return 0
