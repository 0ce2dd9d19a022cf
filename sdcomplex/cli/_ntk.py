"""``sdcomplex ntk``: the empirical NTK of a trained run's checkpoint, with a JSON sidecar."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdcomplex.cli._train import _parse_pairs

OUTPUT_FORMS = ("mean", "full", "diag")


def add_example_flags(p: argparse.ArgumentParser) -> None:
    """Flags choosing the examples and the form of a run's kernel (shared with complexity)."""
    p.add_argument(
        "--data",
        metavar="NAME",
        help="data set to take the examples from (default: the data the run trained on)",
    )
    p.add_argument("--data-dir", help="directory holding --data's files")
    p.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option of --data, VALUE parsed as JSON",
    )
    p.add_argument("--split", choices=("train", "test"), default="train", help="(default train)")
    p.add_argument(
        "--n-per-class", type=int, metavar="N", help="class-balanced subset (default: all)"
    )
    p.add_argument("--subset-seed", type=int, default=0, help="seed of that subset (default 0)")
    p.add_argument(
        "--outputs",
        choices=OUTPUT_FORMS,
        default="mean",
        help="mean (n, n), full (n, n, C, C) or diag (C, n, n) (default mean)",
    )
    p.add_argument(
        "--param-filter",
        metavar="REGEX",
        help="differentiate only parameters whose /-joined path matches, e.g. '^Dense_2/'",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ntk",
        help="empirical NTK of a trained run at an epoch, written as .npz with a JSON sidecar",
        description=(
            "Restores RUN's model at EPOCH (RUN@EPOCH; RUN@init: the initialisation of the "
            "run's seed; RUN: the last checkpoint), takes the examples the run trained on (or "
            "--data), normalised as in training, and writes their empirical NTK (BatchNorm in "
            "inference mode) to --out K.npz (array 'kernel') and K.json (run, epoch, config "
            "hash, data, split, subset indices and labels, versions)."
        ),
    )
    p.add_argument("spec", metavar="RUN[@EPOCH|@init]", help="run directory and epoch")
    add_example_flags(p)
    p.add_argument("--out", required=True, metavar="K.npz", help="kernel file (.npz)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.set_defaults(run=run)


def load_examples(args: argparse.Namespace, run_checkpoint):
    """The examples the flags of `add_example_flags` choose for a run."""
    from sdcomplex.data import load_dataset
    from sdcomplex.ntk import run_examples

    dataset = None
    if args.data is not None:
        options = _parse_pairs(args.data_option, "--data-option")
        if args.data_dir is not None:
            options["data_dir"] = args.data_dir
        dataset = load_dataset(args.data, binary=run_checkpoint.config.binary, **options)
    elif args.data_dir is not None or args.data_option:
        raise ValueError("--data-dir and --data-option need --data")
    return run_examples(
        run_checkpoint,
        split=args.split,
        n_per_class=args.n_per_class,
        subset_seed=args.subset_seed,
        dataset=dataset,
    )


def open_run(spec: str):
    """The `RunCheckpoint` of ``RUN[@EPOCH|@init]``."""
    from sdcomplex.ntk import load_run_checkpoint, parse_run_spec

    run_dir, epoch = parse_run_spec(spec)
    return load_run_checkpoint(run_dir, epoch)


def run(args: argparse.Namespace) -> int:
    from sdcomplex.ntk import compute_run_kernel, save_kernel
    from sdcomplex.ntk._kernel_files import sidecar_path

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {out}")
    for file in (out, sidecar_path(out)):
        if file.exists() and not args.force:
            raise FileExistsError(f"{file} exists; pass --force to overwrite it")
    checkpoint = open_run(args.spec)
    examples = load_examples(args, checkpoint)
    kernel, record = compute_run_kernel(
        checkpoint,
        examples,
        outputs=args.outputs,
        param_filter=args.param_filter,
        progress=False if args.quiet else None,
    )
    save_kernel(out, kernel, record, overwrite=args.force)
    print(
        f"{checkpoint.spec}: {args.outputs} kernel {tuple(kernel.shape)} {kernel.dtype} of "
        f"{len(examples.indices)} {args.split} examples ({record['implementation']}, "
        f"{record['seconds']:.1f} s); wrote {out} and {sidecar_path(out)}"
    )
    return 0
