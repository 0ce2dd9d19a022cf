"""Claims C3 and C4 from the students' metrics: the accuracy table and the diagnostics.

C3 (``results/accuracy_runs.csv``, ``results/accuracy.csv``, ``results/accuracy.json``,
``tables/accuracy.md``): for each method and seed, the test accuracy after the last epoch and
the best test accuracy over epochs >= 1 (selected on the test set, hence optimistic, as is
customary in KD tables); per method their mean and sample standard deviation (ddof = 1) over
seeds; the teacher's own accuracies as the last row.

C4 (``results/diagnostics.csv``, ``results/diagnostics_mean.csv``,
``results/diagnostics_summary.csv``, ``tables/diagnostics.md``): the per-epoch diagnostics
the distillation runs record (fidelity with the final and the current teacher, NTK similarity
to the initial NTK, adjusted complexities of labels, random labels, the final teacher's targets
and the current supervision w.r.t. the student's current NTK on a probe set), per run, their
mean and std over seeds per epoch, and the values at initialisation and after the last epoch.
"""

from __future__ import annotations

import math
from typing import Any

from sdcomplex._io import atomic_write_text
from sdcomplex.reproduce._results import markdown_table, mean_std, write_csv, write_json
from sdcomplex.reproduce._stage import Context
from sdcomplex.reproduce._training import distillation_spec
from sdcomplex.train import read_metrics

DIAGNOSTICS = (
    "train_fidelity_final",
    "test_fidelity_final",
    "train_fidelity_current",
    "test_fidelity_current",
    "ntk_similarity",
    "complexity_labels",
    "complexity_random_labels",
    "complexity_teacher_final",
    "complexity_current",
)
"""Diagnostic fields of :func:`sdcomplex.distill.distill`'s metrics lines."""

_ACC_COLUMNS = (
    "method",
    "label",
    "mode",
    "temperature",
    "seed",
    "epochs",
    "last_test_acc",
    "best_test_acc",
    "best_epoch",
    "last_train_acc",
)


def run_accuracy(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Last-epoch and best-epoch accuracies of one run's metrics lines."""
    trained = [m for m in metrics if m.get("epoch", 0) >= 1]
    if not trained:
        raise ValueError("the run has no trained epoch")
    if not all(math.isfinite(m["test_acc"]) for m in trained):
        raise ValueError("the run's metrics hold a test_acc that is NaN or infinite")
    last = trained[-1]
    best = max(trained, key=lambda m: (m["test_acc"], -m["epoch"]))
    return {
        "epochs": last["epoch"],
        "last_test_acc": last["test_acc"],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "last_train_acc": last["train_acc"],
    }


def _pct(mean: float, std: float | None) -> str:
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def run_c3_table(ctx: Context) -> dict[str, Any]:
    """The C3 stage: accuracy table over methods and seeds, plus the teacher."""
    config = ctx.config
    spec = distillation_spec(config)
    runs: list[dict[str, Any]] = []
    for method in spec.methods:
        for seed in spec.seeds:
            acc = run_accuracy(read_metrics(ctx.layout.student(method.key, seed)))
            runs.append(
                {
                    "method": method.key,
                    "label": method.label,
                    "mode": method.mode,
                    "temperature": None if method.mode == "none" else method.temperature,
                    "seed": seed,
                    **acc,
                }
            )
    teacher = run_accuracy(read_metrics(ctx.layout.teacher))
    runs.append(
        {
            "method": "teacher",
            "label": f"teacher ({config.teacher.model})",
            "mode": "teacher",
            "temperature": None,
            "seed": config.teacher.seed,
            **teacher,
        }
    )
    summary = []
    for key in [m.key for m in spec.methods] + ["teacher"]:
        mine = [r for r in runs if r["method"] == key]
        last_mean, last_std = mean_std([r["last_test_acc"] for r in mine])
        best_mean, best_std = mean_std([r["best_test_acc"] for r in mine])
        summary.append(
            {
                "method": key,
                "label": mine[0]["label"],
                "mode": mine[0]["mode"],
                "temperature": mine[0]["temperature"],
                "seeds": len(mine),
                "last_test_acc_mean": last_mean,
                "last_test_acc_std": last_std,
                "best_test_acc_mean": best_mean,
                "best_test_acc_std": best_std,
            }
        )
    results = ctx.layout.results
    write_csv(results / "accuracy_runs.csv", runs, _ACC_COLUMNS)
    columns = tuple(summary[0])
    write_csv(results / "accuracy.csv", summary, columns)
    write_json(results / "accuracy.json", {"runs": runs, "summary": summary})
    table = markdown_table(
        ["method", "last-epoch test acc. (%)", "best-epoch test acc. (%)", "seeds"],
        [
            [
                s["label"],
                _pct(s["last_test_acc_mean"], s["last_test_acc_std"]),
                _pct(s["best_test_acc_mean"], s["best_test_acc_std"]),
                s["seeds"],
            ]
            for s in summary
        ],
    )
    ds = config.student.dataset
    table += (
        f"\nStudent {config.student.model} ({_options(config.student.model_options)}), teacher "
        f"{config.teacher.model} ({_options(config.teacher.model_options)}) on {ds}, "
        f"{config.student.epochs} student epochs. Mean ± sample std (ddof = 1) over seeds; "
        "best-epoch accuracy is selected on the test set.\n"
    )
    atomic_write_text(ctx.layout.tables / "accuracy.md", table, overwrite=True)
    text = ", ".join(
        f"{s['method']} {100 * s['last_test_acc_mean']:.1f}%" for s in summary if s["seeds"]
    )
    return {"text": f"last-epoch test acc: {text}"}


def _options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "defaults"


def run_c4_diagnostics(ctx: Context) -> dict[str, Any]:
    """The C4 stage: per-epoch diagnostics of every student, their means, and a summary."""
    spec = distillation_spec(ctx.config)
    rows: list[dict[str, Any]] = []
    for method in spec.methods:
        for seed in spec.seeds:
            for m in read_metrics(ctx.layout.student(method.key, seed)):
                if not any(m.get(f) is not None for f in DIAGNOSTICS):
                    continue  # not a diagnostics epoch
                rows.append(
                    {
                        "method": method.key,
                        "label": method.label,
                        "seed": seed,
                        "epoch": m["epoch"],
                        "teacher_epoch": m.get("teacher_epoch"),
                        "train_acc": m["train_acc"],
                        "test_acc": m["test_acc"],
                        **{f: m.get(f) for f in DIAGNOSTICS},
                    }
                )
    fields = ("train_acc", "test_acc", *DIAGNOSTICS)
    means: list[dict[str, Any]] = []
    for method in spec.methods:
        mine = [r for r in rows if r["method"] == method.key]
        for epoch in sorted({r["epoch"] for r in mine}):
            at = [r for r in mine if r["epoch"] == epoch]
            row: dict[str, Any] = {"method": method.key, "label": method.label, "epoch": epoch}
            row["seeds"] = len(at)
            for f in fields:
                values = [r[f] for r in at if r[f] is not None]
                mean, std = mean_std(values) if values else (None, None)
                row[f"{f}_mean"], row[f"{f}_std"] = mean, std
            means.append(row)
    summary: list[dict[str, Any]] = []
    for method in spec.methods:
        mine = [r for r in means if r["method"] == method.key]
        first, last = mine[0], mine[-1]
        entry: dict[str, Any] = {
            "method": method.key,
            "label": method.label,
            "first_epoch": first["epoch"],
            "last_epoch": last["epoch"],
        }
        for f in fields:
            entry[f"{f}_first"] = first[f"{f}_mean"]
            entry[f"{f}_last"] = last[f"{f}_mean"]
        summary.append(entry)
    results = ctx.layout.results
    base = ("method", "label", "seed", "epoch", "teacher_epoch")
    write_csv(results / "diagnostics.csv", rows, (*base, *fields))
    write_csv(results / "diagnostics_mean.csv", means, tuple(means[0]))
    write_csv(results / "diagnostics_summary.csv", summary, tuple(summary[0]))
    write_json(results / "diagnostics.json", {"summary": summary, "mean": means})

    def cell(v: Any, pct: bool = False) -> str:
        if v is None:
            return "—"
        return f"{100 * v:.1f}" if pct else f"{v:.3g}"

    table = markdown_table(
        [
            "method",
            "train fidelity (%)",
            "test fidelity (%)",
            "NTK similarity",
            "compl. teacher targets: init → final NTK",
            "compl. labels: init → final NTK",
        ],
        [
            [
                s["label"],
                cell(s["train_fidelity_final_last"], True),
                cell(s["test_fidelity_final_last"], True),
                cell(s["ntk_similarity_last"]),
                f"{cell(s['complexity_teacher_final_first'])} → "
                f"{cell(s['complexity_teacher_final_last'])}",
                f"{cell(s['complexity_labels_first'])} → {cell(s['complexity_labels_last'])}",
            ]
            for s in summary
        ],
    )
    table += (
        "\nAfter the last epoch, mean over seeds. Fidelity: agreement of the student's and the "
        "final teacher's argmax. NTK similarity: kernel alignment of the student's NTK with its "
        "initial NTK on the probe set. Complexities: adjusted supervision complexity on the "
        "probe set w.r.t. the student's NTK at initialisation (epoch 0) and after training.\n"
    )
    atomic_write_text(ctx.layout.tables / "diagnostics.md", table, overwrite=True)
    return {"rows": len(rows), "text": f"{len(rows)} diagnostic epochs"}
