"""``sdcomplex complexity``: supervision complexity of targets w.r.t. a saved kernel or the
kernel of a trained run (``--run RUN[@EPOCH]``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from sdcomplex import targets as tg
from sdcomplex._io import atomic_write_json, load_arrays
from sdcomplex.cli._devices import add_device_flags
from sdcomplex.cli._ntk import (
    add_example_flags,
    complexity_kernel,
    is_target_spec,
    parse_target_spec,
    run_target_set,
)
from sdcomplex.cli._table import format_table
from sdcomplex.complexity import factorize_kernel
from sdcomplex.targets import as_labels

COLUMNS = ("targets", "kind", "value", "adjusted", "trace", "n", "jitter", "cond", "method")


DESCRIPTION = (
    "Supervision complexity s(Y) = vec(Y)^T K^-1 vec(Y) (float64 solves) and the adjusted "
    "value sqrt(s tr K)/n of each target set. The kernel's shape selects the form: "
    "(n, n) mean, (C, n, n) per-logit, (n, n, C, C) full. With --run RUN[@EPOCH] the "
    "kernel is that run's NTK on its examples (as `sdcomplex ntk`), computed once for "
    "every target set and cached (--cache), and --targets also takes 'labels', "
    "'random:SEED' and 'teacher=RUN[@EPOCH]:TAU' (soft targets of a teacher run's "
    "checkpoint on the same examples)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--kernel", help="kernel .npy, or .npz (see --kernel-key)")
    source.add_argument(
        "--run", dest="run_spec", metavar="RUN[@EPOCH|@init]", help="a trained run's NTK"
    )
    p.add_argument("--kernel-key", help="array name inside a kernel .npz (default: the only one)")
    p.add_argument(
        "--targets",
        action="append",
        default=[],
        help=(
            "targets (n,) or (n, C): a .npy, or a .npz whose every array is a target set; "
            "with --run also labels, random:SEED or teacher=RUN[@EPOCH]:TAU"
        ),
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
    p.add_argument(
        "--psd",
        choices=("error", "project"),
        default="error",
        help="a kernel with eigenvalues below zero beyond round-off: refuse it (default), or "
        "project it onto the PSD cone (reported as psd_removed in the JSON)",
    )
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    run_flags = p.add_argument_group("kernel of a run (with --run)")
    add_example_flags(run_flags)
    run_flags.add_argument(
        "--cache", metavar="DIR", help="kernel cache directory (default: that of --json)"
    )
    run_flags.add_argument("--no-cache", action="store_true", help="never read or write a cache")
    add_device_flags(p)


def _load(path: str, key: str | None = None) -> dict[str, np.ndarray]:
    arrays = load_arrays(path)
    if key is not None and Path(path).suffix == ".npz":
        if key not in arrays:
            raise ValueError(f"{path} has no array {key!r}; it has {', '.join(arrays)}")
        return {key: arrays[key]}
    return arrays


def _target_sets(args: argparse.Namespace, n: int, context: Any = None) -> list[tuple[str, Any]]:
    sets: list[tuple[str, Any]] = []
    for path in args.targets:
        if is_target_spec(path):
            sets.append(run_target_set(path, args.parsed_targets[path], *context))
        else:
            sets += list(_load(path).items())
    num_classes = args.num_classes
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"--num-classes must be >= 1, got {num_classes}")
    if context is not None and num_classes is None:
        num_classes = context[0].info.num_classes
    if args.labels:
        labels = as_labels(next(iter(_load(args.labels).values())))
        num_classes = num_classes or int(np.max(labels)) + 1
        sets.append(("labels", tg.one_hot(labels, num_classes)))
    if args.logits:
        logits = next(iter(_load(args.logits).values()))
        for tau in args.temperature:
            sets.append((f"soft(tau={tau:g})", tg.soft_targets(logits, tau)))
        num_classes = num_classes or sets[-1][1].values.shape[1]
    if args.random_labels is not None:
        if not num_classes:
            raise ValueError("--random-labels needs --num-classes, --labels or --logits")
        sets.append(("random labels", tg.random_labels(n, num_classes, seed=args.random_labels)))
    if not sets:
        raise ValueError("give at least one of --targets, --labels, --logits, --random-labels")
    return sets


def _saved_kernel(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any]]:
    kernels = _load(args.kernel, args.kernel_key)
    if len(kernels) != 1:
        raise ValueError(f"{args.kernel} holds {len(kernels)} arrays; choose one with --kernel-key")
    return next(iter(kernels.values())), f"kernel {args.kernel}", {"kernel": args.kernel}


def _run_kernel(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any], Any]:
    kernel, record, checkpoint, examples, file, reused = complexity_kernel(args)
    how = f"cached in {file}" if file is not None else "not cached"
    if reused:
        how = f"reused from {file}"
    header = f"kernel of {checkpoint.spec} on {len(examples.indices)} examples ({how})"
    request = {k: record[k] for k in ("run", "data", "outputs", "param_filter", "sha256")}
    described = {"kernel": None if file is None else str(file), "run_kernel": request}
    return kernel, header, described, (checkpoint, examples)


def run(args: argparse.Namespace) -> int:
    if args.json and Path(args.json).exists() and not args.force:
        raise FileExistsError(f"{args.json} exists; pass --force to overwrite it")
    args.parsed_targets = {}
    for spec in filter(is_target_spec, args.targets):  # checked before any kernel is computed
        if args.run_spec is None:
            raise ValueError(f"--targets {spec} needs --run (the examples of a run)")
        args.parsed_targets[spec] = parse_target_spec(spec)
    if args.run_spec is None:
        kernel, header, described = _saved_kernel(args)
        context = None
    else:
        kernel, header, described, context = _run_kernel(args)
    factorized = factorize_kernel(kernel, ridge=args.ridge, psd=args.psd)
    offset = next(iter(_load(args.offset).values())) if args.offset else None
    rows, results = [], []
    for name, targets in _target_sets(args, factorized.n, context):
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
    print(f"{header}: outputs {factorized.outputs}, n = {factorized.n}, ridge = {args.ridge}")
    print(format_table(rows, COLUMNS))
    if args.json:
        atomic_write_json(args.json, {**described, "results": results}, overwrite=True)
        print(f"wrote {args.json}")
    return 0
