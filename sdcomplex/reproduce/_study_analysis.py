"""The C3 study's analysis: paired gains with Student-t intervals, verdicts, tables.

For each setting (teacher recipe r, student capacity c, temperature tau) and seed s, the paired
gain is d_s = acc(online, s) - acc(offline, s) in percentage points (the two students share the
initialisation and the batch order of seed s). With n seeds, mean d, sample standard deviation
sd (ddof = 1) and t = the (1 + confidence) / 2 quantile of Student's t with n - 1 degrees of
freedom, the interval is d +- t sd / sqrt(n); :meth:`StudySpec.verdict` decides. The capacity
gap of a setting is the teacher's test accuracy minus the mean no-KD test accuracy of c.

Outputs: ``results/study_runs.csv`` (every student), ``results/study_gains.csv`` (every
setting), ``results/study.json`` (both, the rule, the recipes' reasons, the summary),
``tables/study.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from sdcomplex._io import atomic_write_text
from sdcomplex.reproduce._results import markdown_table, read_csv, read_json, spearman, write_csv
from sdcomplex.reproduce._results import write_json as write_result
from sdcomplex.reproduce._stage import Context, Layout
from sdcomplex.reproduce._study import (
    capacity_groups,
    group_file,
    group_key,
    recipe_teacher_dir,
)
from sdcomplex.reproduce._study_config import VERDICTS, StudySpec
from sdcomplex.reproduce._tables import run_accuracy
from sdcomplex.train import read_metrics

RUN_COLUMNS = ("recipe", "capacity", "params", "mode", "temperature", "seed", "test_acc")
GAIN_COLUMNS = (
    "recipe",
    "capacity",
    "params",
    "temperature",
    "seeds",
    "teacher_test_acc",
    "none_acc",
    "offline_acc",
    "online_acc",
    "gap",
    "gain",
    "gain_sd",
    "ci_low",
    "ci_high",
    "verdict",
)
"""Accuracies and gains in percentage points (gap = teacher - no KD; gain = online - offline)."""


def paired_interval(
    differences: list[float], confidence: float
) -> tuple[float, float, float, float]:
    """``(mean, sd, low, high)`` of the Student-t interval of the mean of paired differences.

    Raises:
        ValueError: fewer than two differences.
    """
    n = len(differences)
    if n < 2:
        raise ValueError(f"a paired interval needs at least 2 differences, got {n}")
    values = np.asarray(differences, np.float64)
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def _params(config: Any, capacity: Any) -> int:
    import jax

    from sdcomplex.reproduce._models import build_model, initial_student
    from sdcomplex.train import load_run_data

    student = capacity.student(config.student)
    info = load_run_data(student).info
    variables = initial_student(build_model(student, info.num_classes), 0, info.input_shape)
    return int(sum(leaf.size for leaf in jax.tree.leaves(variables["params"])))


def _accuracy(metrics: list[dict[str, Any]], measure: str) -> float:
    acc = run_accuracy(metrics)
    return 100 * (acc["last_test_acc"] if measure == "last" else acc["best_test_acc"])


def study_runs(config: Any, layout: Layout) -> list[dict[str, Any]]:
    """Every study student's accuracy (``RUN_COLUMNS``) from the group files."""
    spec: StudySpec = config.study
    rows = []
    for capacity in spec.capacities:
        params = _params(config, capacity)
        for mode, recipe in capacity_groups(spec, capacity):
            data = read_json(group_file(layout, group_key(capacity, mode, recipe)))
            for member in data["members"]:
                rows.append(
                    {
                        "recipe": None if recipe is None else recipe.name,
                        "capacity": capacity.name,
                        "params": params,
                        "mode": mode,
                        "temperature": member["temperature"],
                        "seed": member["seed"],
                        "test_acc": _accuracy(member["metrics"], spec.measure),
                    }
                )
    return rows


def _by_seed(runs: list[dict[str, Any]], mode: str, recipe: str, tau: float) -> dict[int, float]:
    return {
        r["seed"]: r["test_acc"]
        for r in runs
        if r["mode"] == mode and r["recipe"] == recipe and r["temperature"] == tau
    }


def study_gains(
    spec: StudySpec, runs: list[dict[str, Any]], teacher_acc: dict[str, float]
) -> list[dict[str, Any]]:
    """One row per (recipe, capacity, tau) with the paired interval and its verdict."""
    out = []
    for recipe in spec.recipes:
        for capacity in spec.capacities_of(recipe):
            mine = [r for r in runs if r["capacity"] == capacity.name]
            none = [r["test_acc"] for r in mine if r["mode"] == "none"]
            none_mean = float(np.mean(none))
            for tau in spec.temperatures:
                off = _by_seed(mine, "offline", recipe.name, tau)
                on = _by_seed(mine, "online", recipe.name, tau)
                seeds = sorted(set(off) & set(on))
                mean, sd, low, high = paired_interval(
                    [on[s] - off[s] for s in seeds], spec.confidence
                )
                out.append(
                    {
                        "recipe": recipe.name,
                        "capacity": capacity.name,
                        "params": mine[0]["params"],
                        "temperature": tau,
                        "seeds": len(seeds),
                        "teacher_test_acc": teacher_acc[recipe.name],
                        "none_acc": none_mean,
                        "offline_acc": float(np.mean([off[s] for s in seeds])),
                        "online_acc": float(np.mean([on[s] for s in seeds])),
                        "gap": teacher_acc[recipe.name] - none_mean,
                        "gain": mean,
                        "gain_sd": sd,
                        "ci_low": low,
                        "ci_high": high,
                        "verdict": spec.verdict(low, high),
                    }
                )
    return out


def setting_name(row: dict[str, Any]) -> str:
    """``"cosine/mlp32/τ=4"``: a setting of the study."""
    return f"{row['recipe']}/{row['capacity']}/τ={row['temperature']:g}"


def summarize(gains: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The settings where C3 holds, fails and is undecided."""
    return {v: [setting_name(g) for g in gains if g["verdict"] == v] for v in VERDICTS}


def summary_text(summary: dict[str, list[str]]) -> str:
    """``"holds in 1 of 10 (a), fails in 0, undecided in 9"``-style text."""
    total = sum(len(v) for v in summary.values())
    parts: list[str] = []
    for verdict in VERDICTS:
        names = summary.get(verdict, [])
        listed = f" ({', '.join(names)})" if names and verdict != "undecided" else ""
        parts.append(f"{verdict} in {len(names)}" + (f" of {total}" if not parts else "") + listed)
    return ", ".join(parts)


def recipe_rows(
    spec: StudySpec, c2: list[dict[str, Any]], layout: Layout, gains: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per recipe and capacity: the teacher's speed and C2 curve beside its gains."""
    out = []
    for recipe in spec.recipes:
        metrics = [m for m in read_metrics(recipe_teacher_dir(layout, recipe)) if m["epoch"] >= 1]
        final = metrics[-1]["test_acc"]
        # speed: the first epoch whose test accuracy is within 1 point of the final one (1 point
        # included: the 1e-9 absorbs the rounding of final - 0.01, accuracies being k / n_test)
        settled = next(m["epoch"] for m in metrics if m["test_acc"] >= final - 0.01 - 1e-9)
        for capacity in spec.capacities_of(recipe):
            row: dict[str, Any] = {
                "recipe": recipe.name,
                "capacity": capacity.name,
                "teacher_test_acc": 100 * final,
                "settled_epoch": settled,
                "epochs": metrics[-1]["epoch"],
            }
            mine = [r for r in c2 if r["recipe"] == recipe.name and r["capacity"] == capacity.name]
            for tau in spec.temperatures:
                pts = sorted(
                    (r for r in mine if r["temperature"] == tau), key=lambda r: r["teacher_epoch"]
                )
                g = next(
                    x
                    for x in gains
                    if x["recipe"] == recipe.name
                    and x["capacity"] == capacity.name
                    and x["temperature"] == tau
                )
                row[f"c2_t{tau:g}"] = (
                    pts[0]["adjusted"],
                    pts[-1]["adjusted"],
                    spearman([r["teacher_epoch"] for r in pts], [r["adjusted"] for r in pts]),
                )
                row[f"gain_t{tau:g}"] = (g["gain"], g["ci_low"], g["ci_high"], g["verdict"])
            out.append(row)
    return out


def _ci(gain: float, low: float, high: float) -> str:
    return f"{gain:+.2f} [{low:+.2f}, {high:+.2f}]"


def study_markdown(spec: StudySpec, gains: list[dict[str, Any]], recipes: list[dict[str, Any]]):
    """``tables/study.md``: the gains table, the recipes table, the rule and the summary."""
    level = f"{100 * spec.confidence:g} %"
    table = markdown_table(
        [
            "recipe",
            "student (params)",
            "τ",
            "no KD",
            "offline",
            "online",
            "gap",
            f"online − offline [{level} CI]",
            "verdict",
        ],
        [
            [
                g["recipe"],
                f"{g['capacity']} ({g['params']:,})",
                f"{g['temperature']:g}",
                f"{g['none_acc']:.2f}",
                f"{g['offline_acc']:.2f}",
                f"{g['online_acc']:.2f}",
                f"{g['gap']:.2f}",
                _ci(g["gain"], g["ci_low"], g["ci_high"]),
                g["verdict"],
            ]
            for g in gains
        ],
        align="llrrrrrrl",
    )
    cols = ["recipe", "student", "teacher acc.", "within 1 pt of final at epoch"]
    for tau in spec.temperatures:
        cols += [f"C2 τ={tau:g}: epoch 1 → last (Spearman)", f"gain τ={tau:g}"]
    lines = []
    for r in recipes:
        line = [r["recipe"], r["capacity"], f"{r['teacher_test_acc']:.2f}", str(r["settled_epoch"])]
        for tau in spec.temperatures:
            first, last, rho = r[f"c2_t{tau:g}"]
            gain, low, high, verdict = r[f"gain_t{tau:g}"]
            rho_text = "n/a" if rho is None else f"{rho:.2f}"
            line += [f"{first:.3g} → {last:.3g} ({rho_text})", f"{_ci(gain, low, high)} {verdict}"]
        lines.append(line)
    recipes_table = markdown_table(cols, lines, align="l" * 2 + "r" * (len(cols) - 2))
    seeds = f"{len(spec.seeds)} seeds"
    return (
        f"C3 study: test accuracy (%, {spec.measure} epoch, mean over {seeds}) and the paired "
        f"gain online − offline (points, same seed)\n\n{table}\n"
        f"Teacher recipes: speed, C2 curve (adjusted complexity of the checkpoints' soft targets "
        f"w.r.t. the student's initial NTK) and the online KD gain\n\n{recipes_table}\n"
        f"Rule (fixed before the run): {spec.rule}.\n\n"
        f"C3 study: {summary_text(summarize(gains))}\n"
    )


def run_study(ctx: Context) -> dict[str, Any]:
    """The study's analysis stage (see the module docstring)."""
    config, layout = ctx.config, ctx.layout
    spec = config.study
    assert spec is not None
    runs = study_runs(config, layout)
    teacher_acc = {
        r.name: 100 * read_metrics(recipe_teacher_dir(layout, r))[-1]["test_acc"]
        for r in spec.recipes
    }
    gains = study_gains(spec, runs, teacher_acc)
    c2 = read_csv(layout.results / "study_c2.csv")
    recipes = recipe_rows(spec, c2, layout, gains)
    summary = summarize(gains)
    res = layout.results
    write_csv(res / "study_runs.csv", runs, RUN_COLUMNS)
    write_csv(res / "study_gains.csv", gains, GAIN_COLUMNS)
    write_result(
        res / "study.json",
        {
            "rule": spec.rule,
            "confidence": spec.confidence,
            "measure": spec.measure,
            "units": "percentage points",
            "recipes": [
                {"name": r.name, "reason": r.reason, "capacities": r.capacities}
                for r in spec.recipes
            ],
            "gains": gains,
            "recipe_summary": recipes,
            "summary": summary,
            "runs": runs,
        },
    )
    text = study_markdown(spec, gains, recipes)
    atomic_write_text(Path(layout.tables) / "study.md", text, overwrite=True)
    return {"text": "C3 " + summary_text(summary)}
