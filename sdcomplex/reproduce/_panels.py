"""The panels of the claims' figures: each draws one claim's result rows (read with
:func:`sdcomplex.reproduce.read_csv`) on a given Axes; :mod:`._figures` composes them into the
figures of a run and its overview.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from sdcomplex.reproduce._results import spearman

_MODE_COLORS = {"none": "0.35", "offline": "tab:blue", "online": "tab:red", "teacher": "k"}
KERNEL_COLORS = ("tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink")
_STYLES = ("--", "-", ":", "-.")
ADJ = "adjusted complexity √(s·tr K)/n"


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
    return KERNEL_COLORS[list(kernels).index(kernel) % len(KERNEL_COLORS)]


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
    _complexity_axes(
        ax, "temperature τ of the final teacher's soft targets", "C1: complexity vs temperature"
    )


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
    _complexity_axes(
        ax, "teacher checkpoint (epoch)", "C2: complexity along the teacher's training"
    )


def _complexity_axes(ax: Axes, xlabel: str, title: str) -> None:
    """A log adjusted-complexity y axis, labels, title, legend and grid of the C1/C2 panels."""
    log_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ADJ)
    ax.set_title(title)
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
            color=KERNEL_COLORS[i % len(KERNEL_COLORS)],
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
