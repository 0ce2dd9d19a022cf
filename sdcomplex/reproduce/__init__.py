"""Reproductions of the paper's claims C1-C5 (PAPER.md section 4) as resumable experiments.

An experiment is a config file ``experiments/<name>.py`` (``get_config(scale)`` returning an
:class:`ExperimentConfig`) at one of four scales: ``smoke`` (seconds, for tests and CI),
``quick`` (minutes on a 2-core CPU, real data, a real capacity gap), ``images`` (CIFAR-10 images
within an hour on a 2-core CPU) and ``paper`` (PAPER.md section 5, for a GPU).
:func:`run_experiment` runs its stages (teacher, students in each mode and seed, complexity
sweeps, the margin bound, tables, claims, figures) into an output directory, skipping stages
whose results exist and resuming interrupted training.

Example:
    >>> from sdcomplex.reproduce import load_experiment, run_experiment
    >>> config = load_experiment("all", "smoke")  # doctest: +SKIP
    >>> report = run_experiment(config, "runs/all-smoke")  # doctest: +SKIP
    >>> sorted(p.name for p in (report.out / "tables").iterdir())  # doctest: +SKIP
    ['accuracy.md', 'claims.md', 'diagnostics.md']

What a researcher calls: the configs (:class:`ExperimentConfig` and its specs, the C3 study's
:class:`StudySpec` with :class:`StudentCapacity` and :class:`TeacherRecipe`,
:func:`load_experiment`, :func:`available_experiments`), the runner (:func:`run_experiment`,
:func:`plan_stages`, :func:`read_status`), the results (:func:`read_csv`, :func:`read_json`
on ``DIR/results``) and the figures, each whole (:func:`figure_c1` ... :func:`figure_c5`,
:func:`figure_study`, :func:`write_figures`). The analyses, the panels and the claim rules
are private modules.

Command line: ``sdcomplex reproduce EXPERIMENT --scale quick --out DIR`` and
``sdcomplex reproduce --list``; ``--distributed`` runs one process per host (the training
stages on every host's devices, the analyses in process 0: :func:`run_experiment`).
"""

from sdcomplex.reproduce._config import (
    PAPER_METHODS,
    SCALES,
    BoundSpec,
    ComplexitySpec,
    DistillationSpec,
    ExperimentConfig,
    StudentMethod,
)
from sdcomplex.reproduce._figures import (
    figure_c1,
    figure_c2,
    figure_c3,
    figure_c4,
    figure_c5,
    write_figures,
)
from sdcomplex.reproduce._plan import plan_stages
from sdcomplex.reproduce._processes import ProcessStopped
from sdcomplex.reproduce._registry import available_experiments, load_experiment
from sdcomplex.reproduce._results import read_csv, read_json
from sdcomplex.reproduce._runner import (
    RunReport,
    enable_compilation_cache,
    read_status,
    run_experiment,
)
from sdcomplex.reproduce._stage import Interrupted, Layout, Stage
from sdcomplex.reproduce._study_config import StudentCapacity, StudySpec, TeacherRecipe
from sdcomplex.reproduce._study_panels import figure_study

__all__ = [
    "PAPER_METHODS",
    "SCALES",
    "BoundSpec",
    "ComplexitySpec",
    "DistillationSpec",
    "ExperimentConfig",
    "Interrupted",
    "Layout",
    "ProcessStopped",
    "RunReport",
    "Stage",
    "StudentCapacity",
    "StudentMethod",
    "StudySpec",
    "TeacherRecipe",
    "available_experiments",
    "enable_compilation_cache",
    "figure_c1",
    "figure_c2",
    "figure_c3",
    "figure_c4",
    "figure_c5",
    "figure_study",
    "load_experiment",
    "plan_stages",
    "read_csv",
    "read_json",
    "read_status",
    "run_experiment",
    "write_figures",
]
