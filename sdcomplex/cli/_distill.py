"""``sdcomplex distill``: train a student with no KD, offline KD or online KD from a teacher run."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sdcomplex.cli._signals import report_stopped
from sdcomplex.cli._train import _FIELDS as _TRAIN_FIELDS
from sdcomplex.cli._train import _parse_pairs, add_train_flags
from sdcomplex.cli._warnings import one_line_warnings

# flag -> DistillConfig field
_DISTILL_FIELDS = {
    "mode": "mode",
    "teacher": "teacher_dir",
    "teacher_epoch": "teacher_epoch",
    "temperature": "temperature",
    "alpha": "alpha",
    "stride": "stride",
    "diagnostics_every": "diagnostics_every",
    "probe_size": "probe_size",
    "probe_seed": "probe_seed",
    "random_labels_seed": "random_labels_seed",
}
# flag -> student TrainConfig field (the train command's flags, --student for --model)
_STUDENT_FIELDS = {k: v for k, v in _TRAIN_FIELDS.items() if k != "model"} | {"student": "model"}
# student fields whose default is the teacher's: the same data, subset and preprocessing
TEACHER_DATA_FIELDS = (
    "dataset",
    "data_dir",
    "data_options",
    "binary",
    "n_per_class",
    "n_test_per_class",
    "subset_seed",
    "num_classes",
    "normalise",
    "augment",
    "crop_padding",
    "flip",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="train a student by knowledge distillation (modes: none, offline, online)",
        description=(
            "Train --student into --out DIR with no KD (labels), offline KD (one teacher "
            "checkpoint: the final one or --teacher-epoch) or online KD (the teacher's "
            "checkpoint trajectory replayed at the student's pace), logging test accuracy, "
            "fidelity, NTK similarity and supervision complexities every --diagnostics-every "
            "epochs. The student's data set, subset and preprocessing default to the teacher "
            "run's; then come --config FILE (a DistillConfig as JSON, or Python with "
            "get_config()) and the flags. Re-running an interrupted run resumes it; a "
            "finished run is not trained again."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the student's run directory")
    p.add_argument("--config", metavar="FILE", help="config file: .json or .py with get_config()")
    p.add_argument("--teacher", metavar="RUN_DIR", help="teacher run directory (sdcomplex train)")
    p.add_argument("--mode", help="none | offline | online (default: online)")
    p.add_argument("--teacher-epoch", type=int, help="offline KD from this checkpoint epoch")
    p.add_argument("--temperature", type=float, help="tau > 0 (default 4)")
    p.add_argument("--alpha", type=float, help="weight of the label cross-entropy (default 0)")
    p.add_argument("--stride", type=int, help="online KD: every k-th teacher checkpoint")
    p.add_argument("--diagnostics-every", type=int, metavar="K", help="0: no diagnostics")
    p.add_argument("--probe-size", type=int, help="probe examples for NTK and complexity")
    p.add_argument("--probe-seed", type=int)
    p.add_argument("--random-labels-seed", type=int)
    s = p.add_argument_group("student (flags of `sdcomplex train`)")
    add_train_flags(
        s,
        model_flag="--student",
        model_help="student model, e.g. lenet5x8",
        data_help="data set (default: the teacher's)",
        subject="student ",
    )
    p.add_argument("--print-config", action="store_true", help="print the config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(run=run)


def _teacher_data_defaults(teacher_dir: str | None) -> dict[str, Any]:
    """The data fields of the teacher run's config (empty if it cannot be read: the library
    then reports the problem with the teacher directory)."""
    if teacher_dir is None:
        return {}
    file = Path(teacher_dir) / "config.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in TEACHER_DATA_FIELDS if k in data}


def resolve_config(args: argparse.Namespace):
    """The config of the command line: defaults < the teacher's data < --config file < flags."""
    from sdcomplex.distill import DistillConfig
    from sdcomplex.distill._config import read_config_data
    from sdcomplex.train import TrainConfig

    base: dict[str, Any] = {}
    if args.config:
        raw = read_config_data(args.config)
        base = raw.to_dict() if isinstance(raw, DistillConfig) else dict(raw)
    for flag, field in _DISTILL_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            base[field] = value
    file_student = base.get("student", {})
    if isinstance(file_student, TrainConfig):
        file_student = file_student.to_dict()
    if not isinstance(file_student, dict):
        raise TypeError("the config's 'student' must be an object of TrainConfig fields")
    changes: dict[str, Any] = _parse_pairs(args.set, "--set")
    for flag, field in _STUDENT_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            changes[field] = value
    if args.augment is not None:
        changes["augment"] = args.augment
    student = {**_teacher_data_defaults(base.get("teacher_dir")), **file_student}
    if args.student_option:
        changes["model_options"] = {
            **student.get("model_options", {}),
            **_parse_pairs(args.student_option, "--student-option"),
        }
    if args.data_option:
        changes["data_options"] = {
            **student.get("data_options", {}),
            **_parse_pairs(args.data_option, "--data-option"),
        }
    valid = TrainConfig().to_dict()
    unknown = sorted(set(changes) - set(valid))
    if unknown:
        raise ValueError(f"unknown student config field(s) {unknown}; valid: {sorted(valid)}")
    base["student"] = {**student, **changes}
    return DistillConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    from sdcomplex.distill import distill

    config = resolve_config(args)
    if args.print_config:
        print(config.to_json(), end="")
        return 0
    start = time.perf_counter()
    with one_line_warnings("distill"):
        result = distill(config, args.out, quiet=args.quiet)
    last = result.metrics[-1] if result.metrics else {}
    parts = []
    if isinstance(last.get("test_acc"), float):
        parts.append(f"test accuracy {last['test_acc']:.4f}")
    if isinstance(last.get("train_fidelity_final"), float):
        parts.append(f"train fidelity {last['train_fidelity_final']:.4f}")
    summary = ", ".join(parts)
    student = config.student
    if result.status == "already_complete":
        print(f"{args.out}: run already complete ({result.epoch} epochs, {summary}); nothing to do")
    elif result.status != "preempted":
        how = "no KD" if config.mode == "none" else f"{config.mode} KD, tau {config.temperature:g}"
        print(
            f"{args.out}: distilled {student.model} on {student.dataset} ({how}) to epoch "
            f"{result.epoch} in {time.perf_counter() - start:.1f} s; {summary}"
        )
    return report_stopped(args.out, result)
