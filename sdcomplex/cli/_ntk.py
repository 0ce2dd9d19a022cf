"""``sdcomplex ntk``: the empirical NTK of a trained run's checkpoint, with a JSON sidecar."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sdcomplex.cli._config_flags import parse_pairs
from sdcomplex.cli._devices import add_device_flags, placement_from_args
from sdcomplex.complexity._complexity import OUTPUTS


def add_example_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
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
        choices=OUTPUTS,
        default="mean",
        help="mean (n, n), full (n, n, C, C) or diag (C, n, n) (default mean)",
    )
    p.add_argument(
        "--param-filter",
        metavar="REGEX",
        help="differentiate only parameters whose /-joined path matches, e.g. '^Dense_2/'",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


DESCRIPTION = (
    "Restores RUN's model at EPOCH (RUN@EPOCH; RUN@init: the initialisation of the "
    "run's seed; RUN: the last checkpoint), takes the examples the run trained on (or "
    "--data), normalised as in training, and writes their empirical NTK (BatchNorm in "
    "inference mode) to --out K.npz (array 'kernel') and K.json (run, epoch, config "
    "hash, data, split, subset indices and labels, versions)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="RUN[@EPOCH|@init]", help="run directory and epoch")
    add_example_flags(p)
    p.add_argument("--out", required=True, metavar="K.npz", help="kernel file (.npz)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    add_device_flags(p)


def load_examples(args: argparse.Namespace, run_checkpoint):
    """The examples the flags of `add_example_flags` choose for a run."""
    from sdcomplex.data import load_dataset
    from sdcomplex.ntk import run_examples

    dataset = None
    if args.data is not None:
        options = parse_pairs(args.data_option, "--data-option")
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
    from sdcomplex.ntk import load_run_checkpoint
    from sdcomplex.ntk._runs import parse_run_spec

    run_dir, epoch = parse_run_spec(spec)
    return load_run_checkpoint(run_dir, epoch)


def run_kernel(
    args: argparse.Namespace, spec: str, placement: Any, cache: str | Path | None = None
):
    """The kernel the flags of `add_example_flags` choose of the run ``RUN[@EPOCH|@init]``, on
    the devices of ``placement``: ``(kernel, record, checkpoint, examples, cache_file,
    reused)``, from the cache directory ``cache`` when it holds a verified entry (see
    `cached_run_kernel`)."""
    from sdcomplex.data import quiet_loading
    from sdcomplex.ntk._kernel_files import cached_run_kernel

    checkpoint = open_run(spec)
    with quiet_loading(args.quiet):
        examples = load_examples(args, checkpoint)
    kernel, record, file, reused = cached_run_kernel(
        checkpoint,
        examples,
        cache,
        outputs=args.outputs,
        param_filter=args.param_filter,
        progress=False if args.quiet else None,
        mesh=placement,
    )
    return kernel, record, checkpoint, examples, file, reused


def run(args: argparse.Namespace) -> int:
    from sdcomplex.ntk import save_kernel
    from sdcomplex.ntk._kernel_files import sidecar_path

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {out}")
    for file in (out, sidecar_path(out)):
        if file.exists() and not args.force:
            raise FileExistsError(f"{file} exists; pass --force to overwrite it")
    placement = placement_from_args(args)  # (--distributed: before any other JAX call)
    kernel, record, checkpoint, examples, _, _ = run_kernel(args, args.spec, placement)
    if not placement.writes_files:  # every process holds the kernel; process 0 writes it
        return 0
    save_kernel(out, kernel, record, overwrite=args.force)
    print(
        f"{checkpoint.spec}: {args.outputs} kernel {tuple(kernel.shape)} {kernel.dtype} of "
        f"{len(examples.indices)} {args.split} examples ({record['implementation']}, "
        f"{record['seconds']:.1f} s); wrote {out} and {sidecar_path(out)}"
    )
    return 0


TARGET_SPECS = ("labels", "random:SEED", "teacher=RUN[@EPOCH]:TAU")


def is_target_spec(text: str) -> bool:
    """Whether a ``--targets`` value names targets of a run's examples (not a file)."""
    return text == "labels" or text.startswith(("random:", "teacher="))


def _temperature(text: str, spec: str) -> float:
    try:
        tau = float(text)
    except ValueError:
        tau = float("nan")
    if not tau > 0 or tau == float("inf"):
        raise ValueError(f"bad temperature {text!r} in {spec!r}: expected a number > 0")
    return tau


def parse_target_spec(spec: str) -> tuple[str, Any]:
    """``(kind, value)`` of a target spec: ``("labels", None)``, ``("random", seed)`` or
    ``("teacher", (RunCheckpoint, tau))`` (the teacher's checkpoint is opened, so a missing
    run or epoch is reported before any kernel is computed).

    Raises:
        ValueError: a bad seed, a bad temperature, or a teacher run or epoch that is missing.
    """
    if spec == "labels":
        return "labels", None
    if spec.startswith("random:"):
        seed = spec.removeprefix("random:")
        if not seed.isdigit():
            raise ValueError(f"bad seed in {spec!r}: expected random:SEED with an integer >= 0")
        return "random", int(seed)
    if spec.startswith("teacher="):
        teacher_spec, sep, tau = spec.removeprefix("teacher=").rpartition(":")
        if not sep or not teacher_spec:
            raise ValueError(f"{spec!r}: expected teacher=RUN[@EPOCH]:TAU")
        temperature = _temperature(tau, spec)
        return "teacher", (open_run(teacher_spec), temperature)
    raise ValueError(
        f"unknown targets {spec!r}; expected a file or one of {', '.join(TARGET_SPECS)}"
    )


def run_target_set(spec: str, parsed: tuple[str, Any], checkpoint, examples):
    """``(name, Targets)`` of a parsed target spec on a run's examples.

    ``labels``: one-hot labels; ``random:SEED``: `sdcomplex.targets.random_labels` with that
    seed; ``teacher=RUN[@EPOCH]:TAU``: softmax(z / TAU) of that run's logits on the same
    examples (normalised as the teacher was trained).
    """
    from sdcomplex import targets as tg
    from sdcomplex.ntk import run_logits
    from sdcomplex.ntk._runs import teacher_fits

    kind, value = parsed
    num_classes = checkpoint.info.num_classes
    if kind == "labels":
        return spec, tg.one_hot(examples.labels, num_classes)
    if kind == "random":
        return spec, tg.random_labels(len(examples.labels), num_classes, seed=value)
    teacher, temperature = value
    teacher_fits(teacher, checkpoint)
    return spec, tg.soft_targets(run_logits(teacher, examples.raw), temperature)


def complexity_kernel(args: argparse.Namespace):
    """The kernel ``sdcomplex complexity --run`` works on: ``(kernel, record, checkpoint,
    examples, cache_file, reused)``, from the cache when a verified entry exists.

    The cache directory is ``--cache`` or, by default, the directory of ``--json`` (none
    without ``--json``; ``--no-cache`` disables it).
    """
    placement = placement_from_args(args)  # (--distributed: before any other JAX call)
    if placement.is_multi_process and not args.no_cache:
        raise ValueError(
            "complexity --run --distributed needs --no-cache (the kernel cache is read and "
            "written by one process)"
        )
    cache = args.cache
    if cache is None and args.json and not args.no_cache:
        cache = Path(args.json).parent
    if args.no_cache:
        cache = None
    return run_kernel(args, args.run_spec, placement, cache)
