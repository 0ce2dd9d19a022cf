"""Figures of the claims, from the result files: one PNG (200 dpi) and one PDF each.

``figures/c1_temperature``, ``c2_trajectory``, ``c3_accuracy``, ``c4_diagnostics``,
``c5_bound`` (those the experiment measures) and ``overview``, a multi-panel summary. Every
panel function draws on a given Axes from rows read with
:func:`sdcomplex.reproduce.read_csv`, so notebooks can compose their own figures.
Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state, any backend).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from sdcomplex._io import atomic_write_bytes
from sdcomplex.reproduce._results import read_csv, spearman

DPI = 200
_MODE_COLORS = {"none": "0.35", "offline": "tab:blue", "online": "tab:red", "teacher": "k"}
_KERNEL_COLORS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink")
_STYLES = ("--", "-", ":", "-.")
ADJ = "adjusted complexity √(s·tr K)/n"


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


def log_axis(ax: Axes, which: str = "y", base: float = 10) -> None:
    """Log scale with plain-number tick labels (1, 2, 5 x 10^k; no mathtext, which is slow)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log", base=base)
    if base == 10:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        axis.set_major_locator(LogLocator(base=base))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _kernel_color(kernels: Sequence[str], kernel: str) -> str:
    return _KERNEL_COLORS[list(kernels).index(kernel) % len(_KERNEL_COLORS)]


def _method_style(row: dict[str, Any], temps: Sequence[float]) -> dict[str, Any]:
    mode = row.get("mode") or str(row["method"]).split("_")[0]
    color = _MODE_COLORS.get(mode, "tab:green")
    tau = row.get("temperature")
    style = "-" if tau is None or not temps else _STYLES[list(temps).index(tau) % len(_STYLES)]
    return {"color": color, "linestyle": style}


def panel_c1(ax: Axes, rows: list[dict[str, Any]]) -> None:
    """C1: adjusted complexity of the final teacher's soft targets against tau, per kernel,
    with labels (dashed) and random labels (dotted) as horizontal references."""
    plain = [r for r in rows if not r["residual"]]
    kernels = list(dict.fromkeys(r["kernel"] for r in plain))
    for kernel in kernels:
        color = _kernel_color(kernels, kernel)
        mine = [r for r in plain if r["kernel"] == kernel]
        soft = sorted(
            (r for r in mine if r["targets"] == "teacher_final"), key=lambda r: r["temperature"]
        )
        label = mine[0]["kernel_label"].replace("student NTK ", "")
        ax.plot(
            [r["temperature"] for r in soft],
            [r["adjusted"] for r in soft],
            "o-",
            color=color,
            label=f"soft targets, {label}",
        )
        for name, style in (("labels", "--"), ("random_labels", ":")):
            ref = next(r for r in mine if r["targets"] == name)
            ax.axhline(ref["adjusted"], color=color, linestyle=style, linewidth=1)
    ax.plot([], [], "k--", linewidth=1, label="true labels")
    ax.plot([], [], "k:", linewidth=1, label="random labels")
    log_axis(ax, "x", base=2)
    log_axis(ax)
    ax.set_xlabel("temperature τ of the final teacher's soft targets")
    ax.set_ylabel(ADJ)
    ax.set_title("C1: complexity vs temperature")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def panel_c2(ax: Axes, rows: list[dict[str, Any]], kernel: str | None = None) -> None:
    """C2: adjusted complexity of each teacher checkpoint's soft targets against its epoch
    (one line per kernel and tau), with the labels' complexity as horizontal references."""
    plain = [r for r in rows if not r["residual"]]
    kernels = list(dict.fromkeys(r["kernel"] for r in plain))
    shown = [kernel] if kernel is not None else kernels
    traj = [r for r in plain if r["targets"] == "teacher_checkpoint"]
    temps = sorted({r["temperature"] for r in traj})
    for k in shown:
        color = _kernel_color(kernels, k)
        label = next(r["kernel_label"] for r in plain if r["kernel"] == k)
        label = label.replace("student NTK ", "")
        for i, tau in enumerate(temps):
            pts = sorted(
                (r for r in traj if r["kernel"] == k and r["temperature"] == tau),
                key=lambda r: r["teacher_epoch"],
            )
            ax.plot(
                [r["teacher_epoch"] for r in pts],
                [r["adjusted"] for r in pts],
                marker="." if len(pts) < 40 else None,
                linestyle=_STYLES[(i + 1) % len(_STYLES)],
                color=color,
                label=f"τ={tau:g}, {label}",
            )
        ref = next(r for r in plain if r["kernel"] == k and r["targets"] == "labels")
        ax.axhline(ref["adjusted"], color=color, linestyle=":", linewidth=1)
    ax.plot([], [], "k:", linewidth=1, label="true labels")
    log_axis(ax)
    ax.set_xlabel("teacher checkpoint (epoch)")
    ax.set_ylabel(ADJ)
    ax.set_title("C2: complexity along the teacher's training")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def panel_c3(ax: Axes, summary: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    """C3: test accuracy per method: last-epoch mean +- std over seeds (circle with error bar;
    hollow for the first temperature), each seed's last-epoch accuracy (dots, left) and the
    best-epoch mean (diamond, right). The axis spans the students' accuracies; the teacher's is
    drawn when it falls inside, and given in the legend either way."""
    students = [s for s in summary if s["mode"] != "teacher"]
    temps = sorted({s["temperature"] for s in students if s["temperature"] is not None})
    values: list[float] = []
    for i, s in enumerate(students):
        style = _method_style(s, temps)
        hollow = style["linestyle"] == "--"
        mean = 100 * s["last_test_acc_mean"]
        ax.errorbar(
            i,
            mean,
            yerr=100 * (s["last_test_acc_std"] or 0),
            fmt="o",
            color=style["color"],
            markerfacecolor="white" if hollow else style["color"],
            markersize=8,
            capsize=4,
        )
        seeds = [100 * r["last_test_acc"] for r in runs if r["method"] == s["method"]]
        ax.plot([i - 0.2] * len(seeds), seeds, ".", color="0.4", markersize=5)
        best = 100 * s["best_test_acc_mean"]
        ax.plot(i + 0.2, best, "d", color=style["color"], markersize=6, fillstyle="none")
        values += [*seeds, best, mean]
    low, high = (min(values), max(values)) if values else (0.0, 100.0)
    pad = max(1.0, 0.15 * (high - low))
    ax.set_ylim(low - pad, high + pad)
    teacher = next((s for s in summary if s["mode"] == "teacher"), None)
    if teacher is not None:
        acc = 100 * teacher["last_test_acc_mean"]
        inside = low - pad <= acc <= high + pad
        if inside:
            ax.axhline(acc, color="k", linestyle="--", linewidth=1)
        where = "" if inside else (" (above the axis)" if acc > high else " (below the axis)")
        ax.plot([], [], "k--", linewidth=1, label=f"teacher: {acc:.1f}%{where}")
    ax.plot([], [], "ko", label="last epoch: mean ± std")
    ax.plot([], [], ".", color="0.4", label="last epoch: each seed")
    ax.plot([], [], "kd", fillstyle="none", label="best epoch: mean")
    ax.set_xticks(range(len(students)))
    ax.set_xticklabels([s["label"].replace(" KD ", "\n") for s in students], fontsize=7)
    ax.set_xlim(-0.6, len(students) - 0.4)
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title("C3: accuracy by supervision")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, axis="y")


def panel_c4(
    ax: Axes, means: list[dict[str, Any]], field: str, ylabel: str, *, pct: bool = False
) -> None:
    """C4: one diagnostic (mean over seeds, band = +- std) against the student epoch, one line
    per method."""
    methods = list(dict.fromkeys(r["method"] for r in means))
    temps = sorted({t for t in (_tau(str(m)) for m in methods) if t is not None})
    scale = 100.0 if pct else 1.0
    for method in methods:
        pts = [r for r in means if r["method"] == method and r.get(f"{field}_mean") is not None]
        if not pts:
            continue
        row = {"method": method, "temperature": _tau(method)}
        style = _method_style(row, temps)
        x = [r["epoch"] for r in pts]
        y = [scale * r[f"{field}_mean"] for r in pts]
        ax.plot(x, y, label=pts[0]["label"], **style)
        sd = [scale * (r.get(f"{field}_std") or 0.0) for r in pts]
        ax.fill_between(
            x,
            [a - b for a, b in zip(y, sd, strict=True)],
            [a + b for a, b in zip(y, sd, strict=True)],
            color=style["color"],
            alpha=0.1,
        )
    ax.set_xlabel("student epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _tau(method: str) -> float | None:
    if "_t" not in method:
        return None
    return float(method.split("_t")[1].replace("p", "."))


def panel_c5(ax: Axes, rows: list[dict[str, Any]]) -> None:
    """C5: bound (smallest total over the gamma grid) against the kernel student's measured
    test error, one marker colour per temperature, marker size growing with the checkpoint."""
    best = [r for r in rows if r["best"] and r["targets"] == "teacher"]
    temps = sorted({r["temperature"] for r in best})
    epochs = [r["teacher_epoch"] for r in best]
    top = max(epochs)
    for i, tau in enumerate(temps):
        pts = [r for r in best if r["temperature"] == tau]
        ax.scatter(
            [100 * r["test_error"] for r in pts],
            [r["bound"] for r in pts],
            s=[8 + 40 * r["teacher_epoch"] / top for r in pts],
            color=_KERNEL_COLORS[i % len(_KERNEL_COLORS)],
            label=f"τ={tau:g}",
            alpha=0.8,
        )
    labels = [r for r in rows if r["best"] and r["targets"] == "labels"]
    if labels:
        ax.scatter(
            [100 * labels[0]["test_error"]],
            [labels[0]["bound"]],
            marker="*",
            s=80,
            color="k",
            label="true ±1 labels",
        )
    ax.set_xlabel("kernel student's test error (%)")
    ax.set_ylabel("margin bound (best γ; B rounded up to 2^k)")
    rho = spearman([r["bound"] for r in best], [r["test_error"] for r in best])
    ax.set_title(
        "C5: bound vs measured error" + (f" (Spearman {rho:.2f})" if rho is not None else "")
    )
    ax.legend(fontsize=7, title="teacher targets (size ∝ epoch)", title_fontsize=7)
    ax.grid(alpha=0.3)


def figure_c5(rows: list[dict[str, Any]]) -> Figure:
    """C5 in three panels: the bound's terms and the measured error against the teacher
    checkpoint (best gamma), and the bound against the error."""
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    best = [r for r in rows if r["best"] and r["targets"] == "teacher"]
    temps = sorted({r["temperature"] for r in best})
    for i, tau in enumerate(temps):
        pts = sorted((r for r in best if r["temperature"] == tau), key=lambda r: r["teacher_epoch"])
        color = _KERNEL_COLORS[i % len(_KERNEL_COLORS)]
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


C4_PANELS = (
    ("train_fidelity_final", "train fidelity with final teacher (%)", True),
    ("test_fidelity_final", "test fidelity with final teacher (%)", True),
    ("ntk_similarity", "NTK similarity to init (alignment)", False),
    ("complexity_labels", "complexity of labels", False),
    ("complexity_random_labels", "complexity of random labels", False),
    ("complexity_teacher_final", "complexity of final-teacher targets (method's τ)", False),
    ("complexity_current", "complexity of current supervision (method's τ)", False),
)


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
        fig = Figure(figsize=(6.4, 4.6), layout="constrained")
        panel_c1(fig.add_subplot(), rows)
        written += save_figure(fig, figs / "c1_temperature")
        kernels = list(dict.fromkeys(r["kernel"] for r in rows))
        fig = Figure(figsize=(6.4 * len(kernels), 4.6), layout="constrained")
        for i, k in enumerate(kernels):
            panel_c2(fig.add_subplot(1, len(kernels), i + 1), rows, k)
        written += save_figure(fig, figs / "c2_trajectory")
        panels += [("c1", lambda ax, rows=rows: panel_c1(ax, rows))]
        panels += [("c2", lambda ax, rows=rows: panel_c2(ax, rows, "init"))]
    if (res / "accuracy.csv").is_file():
        summary, runs = read_csv(res / "accuracy.csv"), read_csv(res / "accuracy_runs.csv")
        fig = Figure(figsize=(7, 4.6), layout="constrained")
        panel_c3(fig.add_subplot(), summary, runs)
        written += save_figure(fig, figs / "c3_accuracy")
        panels += [("c3", lambda ax, s=summary, r=runs: panel_c3(ax, s, r))]
    if (res / "diagnostics_mean.csv").is_file():
        means = read_csv(res / "diagnostics_mean.csv")
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
        written += save_figure(fig, figs / "c4_diagnostics")

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
    meta_file = root / "experiment.json"
    if not meta_file.is_file():
        return "sdcomplex reproduction"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
    return (
        f"{meta['name']} ({meta['scale']} scale): teacher {cfg['teacher']['model']}, student "
        f"{cfg['student']['model']} on {cfg['student']['dataset']}"
    )
