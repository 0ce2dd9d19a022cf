"""Reproductions of the paper's claims C1-C5 (PAPER.md section 4) as resumable experiments.

An experiment is a config file ``experiments/<name>.py`` (``get_config(scale)`` returning an
:class:`ExperimentConfig`) at one of three scales: ``smoke`` (seconds, for tests and CI),
``quick`` (minutes on a 2-core CPU, real data, a real capacity gap) and ``paper`` (PAPER.md
section 5, for a GPU). :func:`run_experiment` runs its stages (teacher, students in each mode and
seed, complexity sweeps, the margin bound, tables, claims, figures) into an output directory,
skipping stages whose results exist and resuming interrupted training.

Example:
    >>> from sdcomplex.reproduce import load_experiment, run_experiment
    >>> config = load_experiment("all", "smoke")  # doctest: +SKIP
    >>> report = run_experiment(config, "runs/all-smoke")  # doctest: +SKIP
    >>> sorted(p.name for p in (report.out / "tables").iterdir())  # doctest: +SKIP
    ['accuracy.md', 'claims.md', 'diagnostics.md']

Command line: ``sdcomplex reproduce EXPERIMENT --scale quick --out DIR`` and
``sdcomplex reproduce --list``.
"""

from sdcomplex.reproduce._claims import STATEMENTS, check_c1, check_c2, check_c3, check_c4, check_c5
from sdcomplex.reproduce._config import (
    MODES,
    PAPER_METHODS,
    SCALES,
    BoundSpec,
    ComplexitySpec,
    DistillationSpec,
    ExperimentConfig,
    StudentMethod,
    experiment_hash,
)
from sdcomplex.reproduce._figures import (
    C4_PANELS,
    figure_c5,
    log_axis,
    panel_c1,
    panel_c2,
    panel_c3,
    panel_c4,
    panel_c5,
    save_figure,
    write_figures,
)
from sdcomplex.reproduce._margin import bound_rows
from sdcomplex.reproduce._plan import plan_stages
from sdcomplex.reproduce._registry import (
    available_experiments,
    experiments_dir,
    format_runtime,
    load_experiment,
    read_runtimes,
    record_runtime,
)
from sdcomplex.reproduce._results import mean_std, read_csv, read_json, spearman
from sdcomplex.reproduce._runner import (
    RunReport,
    enable_compilation_cache,
    prepare_out_dir,
    read_status,
    run_experiment,
)
from sdcomplex.reproduce._stage import Interrupted, Layout, Stage

__all__ = [
    "C4_PANELS",
    "MODES",
    "PAPER_METHODS",
    "SCALES",
    "STATEMENTS",
    "BoundSpec",
    "ComplexitySpec",
    "DistillationSpec",
    "ExperimentConfig",
    "Interrupted",
    "Layout",
    "RunReport",
    "Stage",
    "StudentMethod",
    "available_experiments",
    "bound_rows",
    "check_c1",
    "check_c2",
    "check_c3",
    "check_c4",
    "check_c5",
    "enable_compilation_cache",
    "experiment_hash",
    "experiments_dir",
    "figure_c5",
    "format_runtime",
    "load_experiment",
    "log_axis",
    "mean_std",
    "panel_c1",
    "panel_c2",
    "panel_c3",
    "panel_c4",
    "panel_c5",
    "plan_stages",
    "prepare_out_dir",
    "read_csv",
    "read_json",
    "read_runtimes",
    "read_status",
    "record_runtime",
    "run_experiment",
    "save_figure",
    "spearman",
    "write_figures",
]
