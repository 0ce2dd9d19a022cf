"""Writes the notebooks of this folder (without outputs) with nbformat.

Run from the repository root after changing a notebook's text here:

    python notebooks/make_notebooks.py

Every notebook imports the library (never copies it), runs its experiment at the scale given by
``$SDCOMPLEX_SCALE`` (default ``smoke``: seconds) into ``$SDCOMPLEX_OUT`` (default
``notebooks/runs``), skipping stages that are already done, or shows the finished run in
``$SDCOMPLEX_RUN`` (any experiment covering the notebook's claims), then shows the library's
figures (those the runner saves as files), the tables and the claims check. CI executes them at
the smoke scale (tests/notebooks): ``all`` into a new directory (with the tests' tiny experiment
as its ``all``), the others on that finished run.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from sdcomplex.reproduce import load_experiment

HERE = Path(__file__).resolve().parent

SETUP = """\
%matplotlib inline
import os
from pathlib import Path

from IPython.display import Markdown, display

from sdcomplex.reproduce import (
    ExperimentConfig,
    load_experiment,
    read_csv,
    read_json,
    run_experiment,
)

EXPERIMENT = "{name}"
CLAIMS = {claims}
# "smoke" takes seconds and only checks that everything runs; "quick" gives the README's numbers
SCALE = os.environ.get("SDCOMPLEX_SCALE", "smoke")
OUT = Path(os.environ.get("SDCOMPLEX_OUT", "runs")) / f"{{EXPERIMENT}}-{{SCALE}}"
# or show a run made elsewhere, of any experiment covering CLAIMS (for example
# `sdcomplex reproduce all --scale quick --out DIR`): set $SDCOMPLEX_RUN to DIR
RUN_DIR = os.environ.get("SDCOMPLEX_RUN")
"""

RUN = """\
if RUN_DIR:  # the run's own config, whichever experiment it is
    OUT = Path(RUN_DIR)
    config = ExperimentConfig.from_dict(read_json(OUT / "config.json"))
    missing = sorted(set(CLAIMS) - set(config.claims))
    if missing:
        raise ValueError(f"{OUT} is a run of {config.name}, which has no claim {missing}")
else:
    config = load_experiment(EXPERIMENT, SCALE)
# resumes, skips stages already done; figures are shown below (the CLI also writes PNG/PDF files)
report = run_experiment(config, OUT, quiet=True, figures=False)
print(f"{len(report.ran)} stages run, {len(report.skipped)} done before; results in {OUT}")
print(f"teacher {config.teacher.model}, student {config.student.model} on {config.student.dataset}")
"""

CLAIMS = """\
display(Markdown((OUT / "tables" / "claims.md").read_text()))
"""

SCALE_NOTE = (
    "At the **smoke** scale (tiny models, 2 epochs) the numbers mean nothing: the point is that "
    "every stage runs. Set `SDCOMPLEX_SCALE=quick` (minutes on a laptop CPU) for the numbers the "
    "README reports, or run `sdcomplex reproduce {name} --scale quick --out DIR` and point "
    "`OUT` at `DIR`."
)

C1_C2 = [
    new_markdown_cell(
        "## C1: complexity against temperature\n\n"
        "Adjusted supervision complexity √(s(Y)·tr K)/n of the final teacher's soft targets "
        "softmax(z/τ), w.r.t. the student's NTK at initialisation and after training. Dashed: "
        "true labels; dotted: random labels. The claim: the curve falls as τ grows (softer "
        "targets are simpler for the student's kernel)."
    ),
    new_code_cell(
        "from sdcomplex.reproduce import figure_c1, figure_c2\n\n"
        'rows = read_csv(OUT / "results" / "complexity.csv")\n'
        "figure_c1(rows)"
    ),
    new_markdown_cell(
        "## C2: complexity along the teacher's training\n\n"
        "The same quantity for the soft targets of every teacher checkpoint. The claim: early "
        "checkpoints give simpler targets, later ones more complex, and the true labels are the "
        "most complex of all (dotted line above every curve)."
    ),
    new_code_cell("figure_c2(rows)  # one panel per student kernel"),
]

C3_C4 = [
    new_markdown_cell(
        "## C3: accuracy of no KD, offline KD and online KD\n\n"
        "Mean ± sample std over seeds of the test accuracy after the last epoch and at the best "
        "epoch. The claim: online KD (the teacher's checkpoints replayed at the student's pace) "
        "beats offline KD from the final teacher, most when the capacity gap is large."
    ),
    new_code_cell(
        "from sdcomplex.reproduce import figure_c3, figure_c4\n\n"
        'display(Markdown((OUT / "tables" / "accuracy.md").read_text()))\n'
        'figure_c3(read_csv(OUT / "results" / "accuracy.csv"), '
        'read_csv(OUT / "results" / "accuracy_runs.csv"))'
    ),
    new_markdown_cell(
        "## C4: the mechanism\n\n"
        "Per-epoch diagnostics (mean over seeds, band ± std): fidelity with the final teacher, "
        "NTK similarity (alignment of the student's NTK with its initial NTK on a probe set), "
        "and adjusted complexities of labels, random labels, the final teacher's targets "
        "(offline targets) and the current supervision (online targets) w.r.t. the student's "
        "current NTK. The claim: online students reach higher train fidelity, and the targets "
        "become much simpler w.r.t. the trained NTK than w.r.t. the initial one."
    ),
    new_code_cell(
        'display(Markdown((OUT / "tables" / "diagnostics.md").read_text()))\n'
        'figure_c4(read_csv(OUT / "results" / "diagnostics_mean.csv"))'
    ),
]

C5 = [
    new_markdown_cell(
        "## C5: the margin bound of a kernel student\n\n"
        "Binary task (first half of the classes vs the rest); the student is the minimum-norm "
        "interpolant, in the RKHS of its NTK at initialisation, of the teacher's margins "
        "y* = 2 P_τ(positive | x) − 1. For each teacher checkpoint and τ: the bound's terms "
        "(margin loss, complexity term (2/γ)·√(s(y*)·tr K)/n, confidence term) with γ the best of "
        "a grid (δ split over it), against the kernel student's measured test error. The "
        "complexity term of an NTK bound at this sample size is usually far above 1 (vacuous): "
        "what matters is whether the bound ranks the teachers' targets like the test error does."
    ),
    new_code_cell(
        "from sdcomplex.reproduce import figure_c5\n\n"
        'bound = read_csv(OUT / "results" / "bound.csv")\n'
        "figure_c5(bound)"
    ),
    new_code_cell(
        "best = [r for r in bound if r['best']]\n"
        "print(f\"{'targets':<9}{'epoch':>6}{'tau':>5}{'gamma':>7}{'margin':>8}{'complexity':>12}\"\n"
        "      f\"{'bound':>10}{'test err':>10}\")\n"
        "for r in best:\n"
        "    epoch = r['teacher_epoch'] if r['teacher_epoch'] is not None else '-'\n"
        "    tau = f\"{r['temperature']:g}\" if r['temperature'] is not None else '-'\n"
        "    print(f\"{r['targets']:<9}{epoch:>6}{tau:>5}{r['gamma']:>7.2f}{r['margin_loss']:>8.3f}\"\n"
        "          f\"{r['complexity_term']:>12.4g}{r['bound']:>10.4g}{r['test_error']:>10.3f}\")"
    ),
]

C3_STUDY = [
    new_markdown_cell(
        "## C3 as a study: when does online KD help?\n\n"
        "Students of several capacities, over seeds, without KD and with offline and online KD "
        "at each temperature, from one or more teacher recipes. Per (recipe, capacity, τ): the "
        "paired gain online − offline (same seed) with its Student-t confidence interval, and "
        "the verdict of the rule fixed in the config before the run: C3 holds when the whole "
        "interval lies above 0, fails when it lies below 0, and is undecided otherwise. The "
        "recipes table puts each teacher's C2 curve (its checkpoints' adjusted complexity "
        "w.r.t. the student's initial NTK) beside the online KD gain it gives."
    ),
    new_code_cell('display(Markdown((OUT / "tables" / "study.md").read_text()))'),
    new_markdown_cell(
        "Left: the gain against the capacity gap (teacher accuracy minus the student's no-KD "
        "accuracy); middle: each recipe's teacher accuracy per epoch; right: the recipes' C2 "
        "curves."
    ),
    new_code_cell(
        "from sdcomplex.reproduce import figure_study\n\n"
        'figure_study(read_csv(OUT / "results" / "study_gains.csv"), '
        'read_csv(OUT / "results" / "study_c2.csv"))'
    ),
]

NOTEBOOKS = {
    "all": (
        "All claims C1–C5 with one teacher",
        "The union of the three claim experiments: one teacher (a checkpoint every epoch), the "
        "students of the accuracy table, the complexity sweeps, the diagnostics and the margin "
        "bound. The README's main command runs this experiment at the quick scale.",
        C1_C2 + C3_C4 + C5,
    ),
    "c1_c2_complexity": (
        "C1 and C2: supervision complexity against temperature and teacher checkpoint",
        "A teacher is trained with a checkpoint every epoch and a student without KD; the "
        "complexity of labels, random labels and the teacher's soft targets is computed w.r.t. "
        "the student's NTK at initialisation and after training.",
        C1_C2,
    ),
    "c3_c4_online_kd": (
        "C3 and C4: online versus offline distillation",
        "Students trained with no KD, offline KD (τ = 1, 4) and online KD (τ = 1, 4) over "
        "several seeds, with per-epoch diagnostics.",
        C3_C4,
    ),
    "c3_study": (
        "C3 as a study: paired online − offline gains over capacities and teacher recipes",
        "Students of several capacities trained together per group (one compiled step over "
        "their seeds and temperatures), from the experiment's teacher and a second teacher "
        "recipe, with verdict rules stated in the config.",
        C3_STUDY,
    ),
    "c5_margin_bound": (
        "C5: the margin bound against the measured test error",
        "A kernel (linearised) student on a binary task, supervised by each teacher checkpoint "
        "at several temperatures.",
        C5,
    ),
}


def build(name: str) -> nbformat.NotebookNode:
    title, intro, cells = NOTEBOOKS[name]
    claims = load_experiment(name, "smoke", directory=HERE.parent / "experiments").claims
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        new_markdown_cell(
            f"# {title}\n\n{intro} Claims: see `../shared/docs/PAPER.md` section 4 in the "
            f"project, and the README's *Reproducing the paper*.\n\n{SCALE_NOTE.format(name=name)}"
        ),
        new_code_cell(SETUP.format(name=name, claims=repr(claims).replace("'", '"'))),
        new_code_cell(RUN),
        *[nbformat.from_dict(c) for c in cells],
        new_markdown_cell(
            "## Which claims this run reproduces\n\nVerdicts come from fixed rules applied to "
            "the numbers (listed under the table), the same at every scale."
        ),
        new_code_cell(CLAIMS),
    ]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name.replace('_', '-')}-{i}"
    return nb


def main() -> None:
    for name in NOTEBOOKS:
        path = HERE / f"{name}.ipynb"
        nbformat.validate(build(name))
        nbformat.write(build(name), path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
