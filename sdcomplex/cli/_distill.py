"""``sdcomplex distill``: train a student with no KD, offline KD or online KD from a teacher run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sdcomplex.cli._config_flags import add_config_flags, flag_values, parse_set, split_pairs
from sdcomplex.cli._train import PREFIX as STUDENT_PREFIX
from sdcomplex.cli._train import add_run_flags, add_train_flags, report_run, run_config

PREFIX = "distill_"
"""Namespace prefix of the DistillConfig flags (see `sdcomplex.cli._config_flags`)."""
STUDENT_FLAGS = {"model": "student", "model_options": "student-option"}
"""The student's TrainConfig flags named otherwise than in ``sdcomplex train``."""
TEACHER_PREPROCESSING = ("num_classes", "augment", "crop_padding", "flip")
"""Student fields whose default is the teacher's, besides its data (``DATA_FIELDS``)."""


DESCRIPTION = (
    "Train --student into --out DIR with no KD (labels), offline KD (one teacher "
    "checkpoint: the final one or --teacher-epoch) or online KD (the teacher's "
    "checkpoint trajectory replayed at the student's pace), logging test accuracy, "
    "fidelity, NTK similarity and supervision complexities every --diagnostics-every "
    "epochs. The student's data set, subset and preprocessing default to the teacher "
    "run's; then come --config FILE (a DistillConfig as JSON, or Python with "
    "get_config()) and the flags. Re-running an interrupted run resumes it; a "
    "finished run is not trained again."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_flags(p, "the student's run directory", lambda: _add_flags(p))


def _add_flags(p: argparse.ArgumentParser) -> None:
    from sdcomplex.distill import DistillConfig

    add_config_flags(p, DistillConfig, prefix=PREFIX)
    s = p.add_argument_group("student (flags of `sdcomplex train`)")
    helps = {
        "model": "student model, e.g. lenet5x8",
        "dataset": "data set (default: the teacher's)",
    }
    add_train_flags(s, subject="student or distillation ", flags=STUDENT_FLAGS, helps=helps)


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
    from sdcomplex.train._config import DATA_FIELDS

    return {k: data[k] for k in (*DATA_FIELDS, *TEACHER_PREPROCESSING) if k in data}


def _split_set(pairs: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` items as (DistillConfig fields, student TrainConfig fields); a student field
    may be written ``student.FIELD``."""
    from sdcomplex.distill import DistillConfig
    from sdcomplex.train import TrainConfig

    texts = split_pairs(pairs)
    own = {k: v for k, v in texts.items() if k in DistillConfig.field_names() and k != "student"}
    student = {k.removeprefix("student."): v for k, v in texts.items() if k not in own}
    return parse_set(own, DistillConfig), parse_set(student, TrainConfig, what="student config")


def resolve_config(args: argparse.Namespace):
    """The config of the command line: defaults < the teacher's data < --config file < --set <
    flags."""
    from sdcomplex.distill import DistillConfig
    from sdcomplex.distill._config import read_config_data
    from sdcomplex.train import TrainConfig

    base: dict[str, Any] = {}
    if args.config:
        raw = read_config_data(args.config)
        base = raw.to_dict() if isinstance(raw, DistillConfig) else dict(raw)
    own_set, student_set = _split_set(args.set)
    base.update(own_set)
    base.update(flag_values(args, DistillConfig, base, prefix=PREFIX))
    file_student = base.get("student", {})
    if isinstance(file_student, TrainConfig):
        file_student = file_student.to_dict()
    if not isinstance(file_student, dict):
        raise TypeError("the config's 'student' must be an object of TrainConfig fields")
    student = {**_teacher_data_defaults(base.get("teacher_dir")), **file_student}
    changes = {
        **student_set,
        **flag_values(args, TrainConfig, student, prefix=STUDENT_PREFIX, flags=STUDENT_FLAGS),
    }
    base["student"] = {**student, **changes}
    return DistillConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    from sdcomplex.distill import distill

    ran = run_config(args, "distill", resolve_config, distill)
    if ran is None:
        return 0
    config, result, seconds = ran
    student = config.student
    how = "no KD" if config.mode == "none" else f"{config.mode} KD, tau {config.temperature:g}"
    trained = f"distilled {student.model} on {student.dataset} ({how})"
    return report_run(args.out, result, seconds, trained)
