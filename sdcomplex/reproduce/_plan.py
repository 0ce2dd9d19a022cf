"""From an experiment config to its ordered list of stages (run by :mod:`._runner`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from sdcomplex.reproduce._claims import run_claims
from sdcomplex.reproduce._config import ExperimentConfig
from sdcomplex.reproduce._figures import write_figures
from sdcomplex.reproduce._margin import run_bound
from sdcomplex.reproduce._stage import Context, Layout, Stage, run_dir_outputs
from sdcomplex.reproduce._study import study_stages
from sdcomplex.reproduce._study_analysis import run_study
from sdcomplex.reproduce._sweeps import run_complexity
from sdcomplex.reproduce._tables import run_c3_table, run_c4_diagnostics
from sdcomplex.reproduce._training import (
    distill_options,
    make_student_runner,
    run_teacher,
    student_config,
    student_runs,
)

ANALYSIS_VERSION = 1
"""Bumped when an analysis stage's outputs change meaning, so old markers are not reused."""


ANALYSES = (
    (
        "complexity",
        "C1/C2 complexity sweeps (temperature, teacher trajectory)",
        "complexity",
        run_complexity,
    ),
    ("bound", "C5 margin bound of the kernel student", "bound", run_bound),
    ("accuracy", "C3 accuracy table", "distillation", run_c3_table),
    ("diagnostics", "C4 diagnostics over training", "distillation", run_c4_diagnostics),
)
"""The analysis stages in order: (key, title, the config's spec field they need, function);
each runs when its spec is set, its payload the teacher, the students and that spec."""


def _teacher_payload(config: ExperimentConfig) -> dict[str, Any]:
    return {"teacher": config.teacher.to_dict()}


def plan_stages(config: ExperimentConfig) -> list[Stage]:
    """The stages of ``config`` in execution order.

    1. ``teacher``: train the teacher (checkpoint every epoch).
    2. ``student/<method>/seed<k>``: each student (:func:`sdcomplex.distill.distill`).
    3. ``complexity`` (C1/C2), ``bound`` (C5), ``accuracy`` (C3), ``diagnostics`` (C4), as
       configured.
    4. with a study: its recipes' teachers, its student groups, their C2 curves and ``study``
       (paired gains and verdicts; :mod:`._study`, :mod:`._study_analysis`).
    5. ``claims``: verdicts from the numbers; ``figures``: every figure and the overview.

    Every stage's payload holds what its results depend on: the teacher's config hash for all
    later stages, each student's config, and the spec of each analysis.
    """
    teacher_hash = config.teacher.hash()
    relative = Layout(Path())
    # every process of a distributed run trains the teacher and the students together
    teacher = Stage(
        "teacher",
        f"teacher {config.teacher.model}",
        _teacher_payload(config),
        run_teacher,
        **run_dir_outputs(relative.teacher),
        every_process=True,
    )
    stages = [teacher]
    students: dict[str, Any] = {}
    for method, seed in student_runs(config):
        payload = {
            "teacher": teacher_hash,
            "student": student_config(config, seed).to_dict(),
            **distill_options(config, method),
        }
        key = f"student/{method.key}/seed{seed}"
        students[key] = payload
        title = f"student {config.student.model}, {method.label}, seed {seed}"
        runner = make_student_runner(method, seed)
        run_dir = run_dir_outputs(relative.student(method.key, seed))
        stages.append(Stage(key, title, payload, runner, **run_dir, every_process=True))

    for key, title, field, run in ANALYSES:
        spec = getattr(config, field)
        if spec is not None:
            payload = {
                "version": ANALYSIS_VERSION,
                "teacher": teacher_hash,
                "students": students,
                field: asdict(spec),
            }
            stages.append(Stage(key, title, payload, run))
    if config.study is not None:
        stages += study_stages(config, ANALYSIS_VERSION)
        stages.append(
            Stage(
                "study",
                "C3 study: paired gains, intervals and verdicts",
                {"version": ANALYSIS_VERSION, "study": config.study.to_dict()},
                run_study,
            )
        )
    whole = {"version": ANALYSIS_VERSION, "experiment": config.hash()}
    stages.append(Stage("claims", "claims check", whole, run_claims))
    stages.append(Stage("figures", "figures (PNG + PDF) and overview", whole, _run_figures))
    return stages


def _run_figures(ctx: Context) -> dict[str, Any]:
    paths = write_figures(ctx.layout.root)
    return {"files": len(paths), "text": f"{len(paths) // 2} figures in {ctx.layout.figures}"}
