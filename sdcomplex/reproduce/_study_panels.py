"""The C3 study's figure: the paired gain against the capacity gap, and each teacher recipe's
trajectory (test accuracy and C2 curve) beside the gain it gives (``figures/study``)."""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sdcomplex.reproduce._panels import ADJ, KERNEL_COLORS, log_axis

_MARKERS = ("o", "s", "^", "D", "v")
_TAU_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple")


def panel_study_gains(ax: Axes, gains: list[dict[str, Any]]) -> None:
    """Gain online - offline (points, with its interval) against the capacity gap (teacher -
    no KD, points): colour = temperature, marker = teacher recipe, labels = capacities
    (``results/study_gains.csv``); the settings of one capacity are drawn slightly apart
    (by 1.2 % of the gaps' range each), the gap itself is the same for them."""
    temps = sorted({g["temperature"] for g in gains})
    recipes = list(dict.fromkeys(g["recipe"] for g in gains))
    span = max(g["gap"] for g in gains) - min(g["gap"] for g in gains) or 1.0
    for g in gains:
        i, j = temps.index(g["temperature"]), recipes.index(g["recipe"])
        color = _TAU_COLORS[i % len(_TAU_COLORS)]
        marker = _MARKERS[j % len(_MARKERS)]
        err = [[g["gain"] - g["ci_low"]], [g["ci_high"] - g["gain"]]]
        # the settings of one capacity share its gap: spread them a little to keep them apart
        shift = 0.012 * span * (i * len(recipes) + j - (len(temps) * len(recipes) - 1) / 2)
        ax.errorbar(
            g["gap"] + shift, g["gain"], yerr=err, fmt=marker, color=color, capsize=3, markersize=5
        )
        if g["temperature"] == temps[0] and g["recipe"] == recipes[0]:
            ax.annotate(
                g["capacity"],
                (g["gap"], g["ci_high"]),
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
                fontsize=7,
            )
    for i, tau in enumerate(temps):
        ax.plot([], [], "o", color=_TAU_COLORS[i % len(_TAU_COLORS)], label=f"τ={tau:g}")
    for i, recipe in enumerate(recipes):
        ax.plot([], [], _MARKERS[i % len(_MARKERS)], color="0.4", label=f"{recipe} teacher")
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xlabel("capacity gap: teacher − student without KD (points)")
    ax.set_ylabel("online − offline KD (points, 95 % CI)")
    ax.set_title("C3 study: paired gain of online KD")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _curves(c2: list[dict[str, Any]]) -> dict[str, str]:
    """The capacity of each recipe's C2 curve in the figure: the first capacity every recipe
    teaches, else the recipe's first."""
    recipes = list(dict.fromkeys(r["recipe"] for r in c2))
    taught = {
        p: list(dict.fromkeys(r["capacity"] for r in c2 if r["recipe"] == p)) for p in recipes
    }
    common = [c for c in taught[recipes[0]] if all(c in taught[p] for p in recipes)]
    return {p: common[0] if common else taught[p][0] for p in recipes}


def _points(c2: list[dict[str, Any]], recipe: str, capacity: str, tau: float) -> list[Any]:
    pts = (
        r
        for r in c2
        if (r["recipe"], r["capacity"], r["temperature"]) == (recipe, capacity, tau)
        and r["targets"] == "teacher_checkpoint"
    )
    return sorted(pts, key=lambda r: r["teacher_epoch"])


def _temperatures(c2: list[dict[str, Any]]) -> list[float]:
    return sorted({r["temperature"] for r in c2 if r["temperature"] is not None})


def panel_study_teachers(ax: Axes, c2: list[dict[str, Any]]) -> None:
    """Each recipe's teacher test accuracy per checkpoint epoch (``results/study_c2.csv``)."""
    tau = _temperatures(c2)[0]
    for i, (recipe, capacity) in enumerate(_curves(c2).items()):
        pts = _points(c2, recipe, capacity, tau)
        ax.plot(
            [r["teacher_epoch"] for r in pts],
            [100 * r["teacher_test_acc"] for r in pts],
            "-",
            color=KERNEL_COLORS[i % len(KERNEL_COLORS)],
            label=f"{recipe} teacher",
        )
    ax.set_xlabel("teacher checkpoint (epoch)")
    ax.set_ylabel("teacher test accuracy (%)")
    ax.set_title("teacher recipes: speed")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def panel_study_c2(ax: Axes, c2: list[dict[str, Any]], gains: list[dict[str, Any]]) -> None:
    """Each recipe's C2 curve w.r.t. the initial NTK of a student it teaches (line style =
    temperature), with its online KD gain for that student in the legend."""
    styles = ("-", "--", ":", "-.")
    shown = _curves(c2)
    for i, (recipe, capacity) in enumerate(shown.items()):
        color = KERNEL_COLORS[i % len(KERNEL_COLORS)]
        for j, tau in enumerate(_temperatures(c2)):
            pts = _points(c2, recipe, capacity, tau)
            label = f"{recipe} → {capacity}, τ={tau:g}"
            for g in gains:
                if (g["recipe"], g["capacity"], g["temperature"]) == (recipe, capacity, tau):
                    label += f", gain {g['gain']:+.2f} [{g['ci_low']:+.2f}, {g['ci_high']:+.2f}]"
            ax.plot(
                [r["teacher_epoch"] for r in pts],
                [r["adjusted"] for r in pts],
                styles[j % len(styles)],
                color=color,
                label=label,
            )
    for capacity in dict.fromkeys(shown.values()):
        labels = [r for r in c2 if r["targets"] == "labels" and r["capacity"] == capacity]
        ax.axhline(labels[0]["adjusted"], color="k", linestyle=":", linewidth=1)
        ax.plot([], [], "k:", linewidth=1, label=f"labels ({capacity})")
    log_axis(ax)
    ax.set_xlabel("teacher checkpoint (epoch)")
    ax.set_ylabel(ADJ)
    ax.set_title("C2 curve of each recipe (student's initial NTK)")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3, which="both")


def figure_study(gains: list[dict[str, Any]], c2: list[dict[str, Any]]) -> Figure:
    """The study's figure: gain vs capacity gap, the recipes' speed and their C2 curves."""
    fig = Figure(figsize=(17, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    panel_study_gains(axes[0], gains)
    panel_study_teachers(axes[1], c2)
    panel_study_c2(axes[2], c2, gains)
    return fig
