"""``sdcomplex train``: train a model on a data set into a resumable run directory."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sdcomplex.cli._signals import report_stopped
from sdcomplex.cli._warnings import one_line_warnings

# flag -> TrainConfig field, for the flags that map one to one
_FIELDS = {
    "model": "model",
    "data": "dataset",
    "data_dir": "data_dir",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "optimizer": "optimizer",
    "lr": "learning_rate",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "schedule": "schedule",
    "milestones": "lr_milestones",
    "warmup_epochs": "warmup_epochs",
    "seed": "seed",
    "n_per_class": "n_per_class",
    "n_test_per_class": "n_test_per_class",
    "num_classes": "num_classes",
    "checkpoint_every": "checkpoint_every",
    "keep_checkpoints": "keep_checkpoints",
    "eval_batch_size": "eval_batch_size",
    "eval_train_examples": "eval_train_examples",
}


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
    add_train_flags(
        p,
        model_flag="--model",
        model_help="model name, e.g. resnet20, lenet5x8, mlp",
        data_help="data set name, e.g. cifar10, cifar10_jpeg, digits",
        subject="",
    )
    p.add_argument("--print-config", action="store_true", help="print the config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(run=run)


def add_train_flags(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    model_flag: str,
    model_help: str,
    data_help: str,
    subject: str,
) -> None:
    """Adds the `TrainConfig` flags that `train` and `distill` share (see `_FIELDS`).

    ``model_flag`` names the model (``--model``; ``--student`` for distill, whose model
    overrides then come from ``--student-option``); ``subject`` prefixes the help of the
    model options and of ``--set`` ("" or "student ").
    """
    option_flag = f"{model_flag}-option"
    p.add_argument(model_flag, metavar="MODEL", help=model_help)
    p.add_argument("--data", help=data_help)
    p.add_argument("--data-dir", help="directory holding the data set's files")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=("cosine", "step", "constant"))
    p.add_argument("--milestones", type=int, nargs="+", help="epochs of the step schedule")
    p.add_argument("--warmup-epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--n-per-class", type=int, help="class-balanced training subset size")
    p.add_argument("--n-test-per-class", type=int, help="class-balanced test subset size")
    p.add_argument("--num-classes", type=int, help="expected number of classes (checked)")
    p.add_argument("--checkpoint-every", type=int, metavar="K")
    p.add_argument("--keep-checkpoints", type=int, metavar="N", help="keep the latest N only")
    p.add_argument("--eval-batch-size", type=int)
    p.add_argument("--eval-train-examples", type=int, help="train metrics on the first N")
    aug = p.add_mutually_exclusive_group()
    aug.add_argument("--augment", dest="augment", action="store_true", default=None)
    aug.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument(
        option_flag,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{subject}model constructor override, VALUE parsed as JSON (e.g. width=2)",
    )
    p.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="data loader option, VALUE parsed as JSON (e.g. n_train=500)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"any {subject}TrainConfig field, VALUE parsed as JSON (e.g. nesterov=true)",
    )


def _parse_pairs(pairs: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text  # a bare string
    return out


def resolve_config(args: argparse.Namespace):
    """The config of the command line: defaults < --config file < flags."""
    from sdcomplex.train import TrainConfig, load_config

    base = load_config(args.config) if args.config else TrainConfig()
    changes: dict[str, Any] = _parse_pairs(args.set, "--set")
    for flag, field in _FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            changes[field] = value
    if args.augment is not None:
        changes["augment"] = args.augment
    if args.model_option:
        changes["model_options"] = {
            **base.model_options,
            **_parse_pairs(args.model_option, "--model-option"),
        }
    if args.data_option:
        changes["data_options"] = {
            **base.data_options,
            **_parse_pairs(args.data_option, "--data-option"),
        }
    base_dict = base.to_dict()
    unknown = sorted(set(changes) - set(base_dict))
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(base_dict)}")
    return base.replace(**changes)  # augmentation the base took from its data set: again


def run(args: argparse.Namespace) -> int:
    from sdcomplex.train import train

    config = resolve_config(args)
    if args.print_config:
        print(config.to_json(), end="")
        return 0
    start = time.perf_counter()
    with one_line_warnings("train"):
        result = train(config, args.out, quiet=args.quiet)
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
