"""``sdcomplex train``: train a model on a data set into a resumable run directory."""

from __future__ import annotations

import argparse
import time

from sdcomplex.cli._config_flags import (
    add_config_flags,
    add_on_use,
    flag_values,
    parse_pairs,
    parse_set,
    split_pairs,
)
from sdcomplex.cli._devices import add_device_flags, placement_from_args
from sdcomplex.cli._signals import report_stopped
from sdcomplex.cli._warnings import one_line_warnings

PREFIX = "train_"
"""Namespace prefix of the TrainConfig flags (see `sdcomplex.cli._config_flags`)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (resumable; checkpoints every k epochs)",
        description=(
            "Train --model on --data into --out DIR (config.json, metrics.jsonl, Orbax "
            "checkpoints). Values come from the defaults (the standard CIFAR recipe: SGD, "
            "momentum 0.9, lr 0.1 cosine, weight decay 5e-4, batch 128, random crops with "
            "padding image_size/8 and, for mirror-invariant classes, flips), then "
            "--config FILE (JSON, or Python with get_config()), then the flags. Re-running "
            "an interrupted run resumes it; a finished run is not trained again; a directory "
            "holding a different config is refused. SIGTERM/Ctrl-C save and exit with status "
            "143/130; a diverging loss stops the run with an error."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--config", metavar="FILE", help="config file: .json or .py with get_config()")
    add_on_use(p, lambda: add_train_flags(p, subject=""))
    p.add_argument("--print-config", action="store_true", help="print the config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    add_device_flags(p)
    p.set_defaults(run=run)


def add_train_flags(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    subject: str,
    flags: dict[str, str] | None = None,
    helps: dict[str, str] | None = None,
) -> None:
    """Adds a flag for every `TrainConfig` field (the flags `train` and `distill` share) and
    ``--set``; ``subject`` prefixes the help of ``--set`` ("" or "student "), ``flags`` and
    ``helps`` rename flags and override their help (see `add_config_flags`)."""
    from sdcomplex.train import TrainConfig

    add_config_flags(p, TrainConfig, prefix=PREFIX, flags=flags, helps=helps)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"any {subject}config field, VALUE parsed as JSON (e.g. nesterov=true)",
    )


def resolve_config(args: argparse.Namespace):
    """The config of the command line: defaults < --config file < --set < flags."""
    from sdcomplex.train import TrainConfig, load_config

    base = load_config(args.config) if args.config else TrainConfig()
    changes = parse_set(split_pairs(args.set), TrainConfig)
    changes.update(flag_values(args, TrainConfig, base.to_dict(), prefix=PREFIX))
    return base.replace(**changes)  # augmentation the base took from its data set: again


_parse_pairs = parse_pairs  # the name `sdcomplex.cli._ntk` imports


def run(args: argparse.Namespace) -> int:
    from sdcomplex.train import train

    if args.print_config:
        print(resolve_config(args).to_json(), end="")
        return 0
    placement = placement_from_args(args)  # (--distributed: before any other JAX call)
    config = resolve_config(args)
    start = time.perf_counter()
    with one_line_warnings("train"):
        result = train(config, args.out, quiet=args.quiet, placement=placement)
    last = result.metrics[-1] if result.metrics else {}
    acc = f"test accuracy {last['test_acc']:.4f}" if "test_acc" in last else ""
    if result.status == "already_complete":
        print(f"{args.out}: run already complete ({result.epoch} epochs, {acc}); nothing to do")
    elif result.status != "preempted":
        print(
            f"{args.out}: trained {config.model} on {config.dataset} to epoch {result.epoch} "
            f"in {time.perf_counter() - start:.1f} s; {acc}"
        )
    return report_stopped(args.out, result)
