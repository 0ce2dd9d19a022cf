"""Figures of the claims, from the result files: one PNG (200 dpi) and one PDF each.

``figures/c1_temperature``, ``c2_trajectory``, ``c3_accuracy``, ``c4_diagnostics``,
``c5_bound``, ``study`` (the C3 study: :func:`figure_study`; those the experiment
measures) and ``overview``, a multi-panel summary. Each
figure function takes the rows of a result file (read with
:func:`sdcomplex.reproduce.read_csv`) and returns the figure :func:`write_figures` saves, so a
notebook shows the same figures. Figures are built with :class:`matplotlib.figure.Figure` (no
pyplot state, any backend).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sdcomplex._io import atomic_write_bytes
from sdcomplex.reproduce._panels import (
    KERNEL_COLORS,
    log_axis,
    panel_c1,
    panel_c2,
    panel_c3,
    panel_c4,
    panel_c5,
)
from sdcomplex.reproduce._results import read_csv
from sdcomplex.reproduce._study_panels import figure_study, panel_study_gains

DPI = 200


def save_figure(fig: Figure, base: str | os.PathLike[str], *, dpi: int = DPI) -> tuple[Path, Path]:
    """Writes ``base.png`` (at ``dpi``, >= 150) and ``base.pdf`` atomically (replacing)."""
    if dpi < 150:
        raise ValueError(f"dpi must be >= 150, got {dpi}")
    base = Path(base)
    paths = []
    for suffix in (".png", ".pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], dpi=dpi)
        fig.set_layout_engine("none")  # keep the positions of the first draw: one layout pass
        paths.append(
            atomic_write_bytes(base.with_suffix(suffix), buffer.getvalue(), overwrite=True)
        )
    return paths[0], paths[1]


C4_PANELS = (
    ("train_fidelity_final", "train fidelity with final teacher (%)", True),
    ("test_fidelity_final", "test fidelity with final teacher (%)", True),
    ("ntk_similarity", "NTK similarity to init (alignment)", False),
    ("complexity_labels", "complexity of labels", False),
    ("complexity_random_labels", "complexity of random labels", False),
    ("complexity_teacher_final", "complexity of final-teacher targets (method's τ)", False),
    ("complexity_current", "complexity of current supervision (method's τ)", False),
)


def figure_c1(rows: list[dict[str, Any]]) -> Figure:
    """C1: adjusted complexity of the final teacher's soft targets against the temperature, one
    line per student kernel (``results/complexity.csv``)."""
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    panel_c1(fig.add_subplot(), rows)
    return fig


def figure_c2(rows: list[dict[str, Any]]) -> Figure:
    """C2: adjusted complexity of each teacher checkpoint's soft targets, one panel per student
    kernel (``results/complexity.csv``)."""
    kernels = list(dict.fromkeys(r["kernel"] for r in rows))
    fig = Figure(figsize=(6.4 * len(kernels), 4.6), layout="constrained")
    for i, k in enumerate(kernels):
        panel_c2(fig.add_subplot(1, len(kernels), i + 1), rows, k)
    return fig


def figure_c3(summary: list[dict[str, Any]], runs: list[dict[str, Any]]) -> Figure:
    """C3: test accuracy per method (``results/accuracy.csv`` and ``accuracy_runs.csv``)."""
    fig = Figure(figsize=(7, 4.6), layout="constrained")
    panel_c3(fig.add_subplot(), summary, runs)
    return fig


def figure_c4(means: list[dict[str, Any]]) -> Figure:
    """C4: every diagnostic of :data:`C4_PANELS` against the student's epoch, mean +- std over
    seeds (``results/diagnostics_mean.csv``)."""
    fig = Figure(figsize=(16, 7.5), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    for ax, (field, ylabel, pct) in zip(axes, C4_PANELS, strict=False):
        panel_c4(ax, means, field, ylabel, pct=pct)
        if field.startswith("complexity"):
            log_axis(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].axis("off")
    axes[-1].legend(handles, labels, loc="center", title="student supervision")
    fig.suptitle("C4: diagnostics over the student's training (mean ± std over seeds)")
    return fig


def figure_c5(rows: list[dict[str, Any]]) -> Figure:
    """C5 in three panels: the bound's terms and the measured error against the teacher
    checkpoint (best gamma), and the bound against the error."""
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    best = [r for r in rows if r["best"] and r["targets"] == "teacher"]
    temps = sorted({r["temperature"] for r in best})
    for i, tau in enumerate(temps):
        pts = sorted((r for r in best if r["temperature"] == tau), key=lambda r: r["teacher_epoch"])
        color = KERNEL_COLORS[i % len(KERNEL_COLORS)]
        x = [r["teacher_epoch"] for r in pts]
        axes[0].plot(
            x, [r["margin_loss"] for r in pts], "-", color=color, label=f"margin loss, τ={tau:g}"
        )
        axes[0].plot(
            x,
            [r["complexity_term"] for r in pts],
            "--",
            color=color,
            label=f"complexity term, τ={tau:g}",
        )
        axes[1].plot(
            x,
            [100 * r["test_error"] for r in pts],
            "-",
            color=color,
            label=f"kernel student, τ={tau:g}",
        )
        axes[1].plot(x, [100 * r["teacher_test_error"] for r in pts], ":", color=color, linewidth=1)
    if best:
        axes[0].axhline(
            best[0]["confidence_term"],
            color="k",
            linestyle=":",
            linewidth=1,
            label="confidence term",
        )
    log_axis(axes[0])
    axes[0].set_xlabel("teacher checkpoint (epoch)")
    axes[0].set_ylabel("bound term (best γ per target)")
    axes[0].set_title("C5: terms of the margin bound")
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].plot([], [], "k:", linewidth=1, label="teacher itself (binary)")
    axes[1].set_xlabel("teacher checkpoint (epoch)")
    axes[1].set_ylabel("test error on the binary task (%)")
    axes[1].set_title("measured test error")
    axes[1].legend(fontsize=7)
    for ax in axes[:2]:
        ax.grid(alpha=0.3, which="both")
    panel_c5(axes[2], rows)
    return fig


def write_figures(out: str | os.PathLike[str]) -> list[Path]:
    """Draws every figure whose result files exist in output directory ``out``.

    Returns:
        The written paths (PNG and PDF of each figure, the overview last).
    """
    root = Path(out)
    res, figs = root / "results", root / "figures"
    written: list[Path] = []
    panels: list[tuple[str, Any]] = []
    if (res / "complexity.csv").is_file():
        rows = read_csv(res / "complexity.csv")
        written += save_figure(figure_c1(rows), figs / "c1_temperature")
        written += save_figure(figure_c2(rows), figs / "c2_trajectory")
        panels += [("c1", lambda ax, rows=rows: panel_c1(ax, rows))]
        panels += [("c2", lambda ax, rows=rows: panel_c2(ax, rows, "init"))]
    if (res / "accuracy.csv").is_file():
        summary, runs = read_csv(res / "accuracy.csv"), read_csv(res / "accuracy_runs.csv")
        written += save_figure(figure_c3(summary, runs), figs / "c3_accuracy")
        panels += [("c3", lambda ax, s=summary, r=runs: panel_c3(ax, s, r))]
    if (res / "diagnostics_mean.csv").is_file():
        means = read_csv(res / "diagnostics_mean.csv")
        written += save_figure(figure_c4(means), figs / "c4_diagnostics")

        def c4a(ax: Axes, means: list[dict[str, Any]] = means) -> None:
            panel_c4(
                ax, means, "train_fidelity_final", "train fidelity with final teacher (%)", pct=True
            )
            ax.set_title("C4: train fidelity")
            ax.legend(fontsize=7)

        def c4b(ax: Axes, means: list[dict[str, Any]] = means) -> None:
            panel_c4(ax, means, "complexity_teacher_final", "complexity of final-teacher targets")
            log_axis(ax)
            ax.set_title("C4: complexity w.r.t. the current NTK")

        panels += [("c4a", c4a), ("c4b", c4b)]
    if (res / "bound.csv").is_file():
        rows5 = read_csv(res / "bound.csv")
        written += save_figure(figure_c5(rows5), figs / "c5_bound")
        panels += [("c5", lambda ax, rows=rows5: panel_c5(ax, rows))]
    if (res / "study_gains.csv").is_file():
        gains = read_csv(res / "study_gains.csv")
        written += save_figure(figure_study(gains, read_csv(res / "study_c2.csv")), figs / "study")
        panels += [("study", lambda ax, g=gains: panel_study_gains(ax, g))]
    if panels:
        cols = 3 if len(panels) > 4 else min(len(panels), 2) or 1
        nrows = -(-len(panels) // cols)
        fig = Figure(figsize=(6 * cols, 4.6 * nrows), layout="constrained")
        for i, (_, draw) in enumerate(panels):
            draw(fig.add_subplot(nrows, cols, i + 1))
        fig.suptitle(_title(root))
        written += save_figure(fig, figs / "overview")
    return written


def _title(root: Path) -> str:
    config_file = root / "config.json"
    if not config_file.is_file():
        return "sdcomplex reproduction"
    cfg = json.loads(config_file.read_text(encoding="utf-8"))
    return (
        f"{cfg['name']} ({cfg['scale']} scale): teacher {cfg['teacher']['model']}, student "
        f"{cfg['student']['model']} on {cfg['student']['dataset']}"
    )
