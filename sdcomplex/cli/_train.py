"""``sdcomplex train``: train a model on a data set into a resumable run directory."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdcomplex.cli._config_flags import (
    add_config_flags,
    add_on_use,
    flag_values,
    parse_set,
    split_pairs,
)
from sdcomplex.cli._devices import add_device_flags, placement_from_args
from sdcomplex.cli._signals import report_stopped
from sdcomplex.cli._warnings import one_line_warnings

PREFIX = "train_"
"""Namespace prefix of the TrainConfig flags (see `sdcomplex.cli._config_flags`)."""
SUMMARY = {"test_acc": "test accuracy", "train_fidelity_final": "train fidelity"}
"""The metrics of a run's last epoch that `report_run` prints (those the run logs)."""


DESCRIPTION = (
    "Train --model on --data into --out DIR (config.json, metrics.jsonl, Orbax "
    "checkpoints). Values come from the defaults (the standard CIFAR recipe: SGD, "
    "momentum 0.9, lr 0.1 cosine, weight decay 5e-4, batch 128, random crops with "
    "padding image_size/8 and, for mirror-invariant classes, flips), then "
    "--config FILE (JSON, or Python with get_config()), then the flags. Re-running "
    "an interrupted run resumes it; a finished run is not trained again; a directory "
    "holding a different config is refused. SIGTERM/Ctrl-C save and exit with status "
    "143/130; a diverging loss stops the run with an error."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_flags(p, "run directory", lambda: add_train_flags(p, subject=""))


def add_run_flags(p: argparse.ArgumentParser, out_help: str, add_flags: Callable[[], None]) -> None:
    """The flags of a command that trains one run directory (``train``, ``distill``): ``--out``
    (help ``out_help``), ``--config``, its config's flags (``add_flags``, run on use: see
    `add_on_use`), ``--print-config``, ``--quiet`` and the device flags."""
    p.add_argument("--out", required=True, metavar="DIR", help=out_help)
    p.add_argument("--config", metavar="FILE", help="config file: .json or .py with get_config()")
    add_on_use(p, add_flags)
    p.add_argument("--print-config", action="store_true", help="print the config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    add_device_flags(p)


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


def run_config(
    args: argparse.Namespace,
    command: str,
    resolve: Callable[[argparse.Namespace], Any],
    fit: Callable[..., Any],
) -> tuple[Any, Any, float] | None:
    """Runs the flags of `add_run_flags`: with ``--print-config`` prints ``resolve(args)`` and
    returns None, else returns ``(config, result, seconds)`` of ``fit(config, args.out, ...)``
    on the devices of the flags, its warnings one line each."""
    if args.print_config:
        print(resolve(args).to_json(), end="")
        return None
    placement = placement_from_args(args)  # (--distributed: before any other JAX call)
    config = resolve(args)
    start = time.perf_counter()
    with one_line_warnings(command):
        result = fit(config, args.out, quiet=args.quiet, placement=placement)
    return config, result, time.perf_counter() - start


def report_run(out: str | Path, result: Any, seconds: float, trained: str) -> int:
    """Prints how the run ``out`` ended (already complete, or ``trained`` in ``seconds``, unless
    a signal stopped it) with its last epoch's `SUMMARY` metrics; returns the exit status (see
    `report_stopped`)."""
    last = result.metrics[-1] if result.metrics else {}
    values = [(name, last.get(key)) for key, name in SUMMARY.items()]
    summary = ", ".join(f"{name} {value:.4f}" for name, value in values if isinstance(value, float))
    if result.status == "already_complete":
        print(f"{out}: run already complete ({result.epoch} epochs, {summary}); nothing to do")
    elif result.status != "preempted":
        print(f"{out}: {trained} to epoch {result.epoch} in {seconds:.1f} s; {summary}")
    return report_stopped(out, result)


def run(args: argparse.Namespace) -> int:
    from sdcomplex.train import train

    ran = run_config(args, "train", resolve_config, train)
    if ran is None:
        return 0
    config, result, seconds = ran
    return report_run(args.out, result, seconds, f"trained {config.model} on {config.dataset}")
