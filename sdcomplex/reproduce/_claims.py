"""Which claims of PAPER.md section 4 a run reproduces, decided from its result files.

Each check is a fixed rule on the numbers (stated in the ``rule`` of each entry), applied the
same way at every scale; nothing is tuned per run. Verdicts are ``"yes"``, ``"partly"`` (the
rule holds for some of the compared cases), ``"no"``, or ``"n/a"`` (the experiment does not
measure it, or the rule cannot be evaluated on its numbers, e.g. a Spearman correlation of two
checkpoints). Outputs: ``results/claims.json`` and ``tables/claims.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sdcomplex._io import atomic_write_text
from sdcomplex.reproduce._results import (
    markdown_table,
    read_csv,
    read_json,
    spearman,
    write_json,
)
from sdcomplex.reproduce._stage import Context

STATEMENTS = {
    "C1": "complexity of soft targets decreases as the temperature grows",
    "C2": "complexity grows along the teacher's training; labels are the most complex",
    "C3": "online KD beats offline KD at the same temperature",
    "C3 study": "online KD beats offline KD: over student capacities and teacher recipes",
    "C4": "online KD: higher train fidelity; NTK adapts (complexity lower w.r.t. final NTK)",
    "C5": "margin-bound terms computed and compared with the kernel student's test error",
}


def _difference(a: float, b: float) -> float:
    """``a - b``, 0.0 when the two differ by float rounding only (means of accuracies, which are
    multiples of 1 / n, equal in exact arithmetic, are a tie, not a win for either)."""
    return 0.0 if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else a - b


def _verdict(flags: list[bool]) -> str:
    if not flags:
        return "n/a"
    return "yes" if all(flags) else "partly" if any(flags) else "no"


def check_c1(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """C1 holds for a kernel when the adjusted complexity of the final teacher's soft targets
    strictly decreases from each temperature to the next (a kernel with fewer than two
    temperatures or a complexity NaN or infinite gives no verdict)."""
    parts, flags = [], []
    for kernel in dict.fromkeys(r["kernel"] for r in rows):
        soft = sorted(
            (r for r in rows if r["kernel"] == kernel and r["targets"] == "teacher_final"),
            key=lambda r: r["temperature"],
        )
        soft = [r for r in soft if not r["residual"]]
        values = [r["adjusted"] for r in soft]
        ok = all(b < a for a, b in zip(values, values[1:], strict=False))
        if len(values) >= 2 and all(math.isfinite(v) for v in values):
            flags.append(ok)
        parts.append(
            f"{kernel}: {values[0]:.3g} (τ={soft[0]['temperature']:g}) → {values[-1]:.3g} "
            f"(τ={soft[-1]['temperature']:g}), {'strictly decreasing' if ok else 'not monotone'}"
        )
    return {
        "verdict": _verdict(flags),
        "rule": "adjusted complexity strictly decreasing in τ, for each kernel",
        "evidence": "; ".join(parts),
    }


def check_c2(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """C2 holds for a kernel and temperature when the Spearman correlation between checkpoint
    epoch and adjusted complexity is positive and the labels are more complex than every
    checkpoint's soft targets; no verdict where the rule cannot be evaluated (fewer than three
    checkpoints, a complexity NaN or infinite)."""
    parts, flags = [], []
    plain = [r for r in rows if not r["residual"]]
    for kernel in dict.fromkeys(r["kernel"] for r in plain):
        mine = [r for r in plain if r["kernel"] == kernel]
        labels = next(r["adjusted"] for r in mine if r["targets"] == "labels")
        traj = [r for r in mine if r["targets"] == "teacher_checkpoint"]
        for tau in sorted({r["temperature"] for r in traj}):
            pts = sorted(
                (r for r in traj if r["temperature"] == tau), key=lambda r: r["teacher_epoch"]
            )
            rho = spearman([r["teacher_epoch"] for r in pts], [r["adjusted"] for r in pts])
            top = max(r["adjusted"] for r in pts)
            values = [labels] + [r["adjusted"] for r in pts]
            if len(pts) >= 3 and all(math.isfinite(v) for v in values):
                flags.append(rho is not None and rho > 0 and labels > top)
            parts.append(
                f"{kernel}, τ={tau:g}: epoch {pts[0]['teacher_epoch']} {pts[0]['adjusted']:.3g} → "
                f"epoch {pts[-1]['teacher_epoch']} {pts[-1]['adjusted']:.3g}, Spearman "
                + (f"{rho:.2f}" if rho is not None else "n/a")
                + f", labels {labels:.3g} {'>' if labels > top else '<='} max {top:.3g}"
            )
    return {
        "verdict": _verdict(flags),
        "rule": "Spearman(epoch, complexity) > 0 and labels > every checkpoint, per kernel and τ",
        "evidence": "; ".join(parts),
    }


def _mode_order(mode_tau: tuple[str, float | None]) -> tuple[str, float]:
    """Methods by mode, then by temperature as a number (τ=4 before τ=16)."""
    mode, tau = mode_tau
    return mode, -math.inf if tau is None else float(tau)


def check_c3(summary: list[dict[str, Any]]) -> dict[str, Any]:
    """C3 holds at a temperature when online KD's mean last-epoch test accuracy exceeds offline
    KD's (means equal up to float rounding are a tie); the evidence also gives best-epoch
    differences and the seeds' spread."""
    by = {(r["mode"], r["temperature"]): r for r in summary}
    parts, flags = [], []
    none = by.get(("none", None))
    for (mode, tau), online in sorted(by.items(), key=lambda kv: _mode_order(kv[0])):
        if mode != "online" or ("offline", tau) not in by:
            continue
        offline = by[("offline", tau)]
        d_last = _difference(online["last_test_acc_mean"], offline["last_test_acc_mean"])
        d_best = _difference(online["best_test_acc_mean"], offline["best_test_acc_mean"])
        spread = [s for s in (online["last_test_acc_std"], offline["last_test_acc_std"]) if s]
        noise = (sum(s * s for s in spread)) ** 0.5 if spread else None
        flags.append(d_last > 0)
        parts.append(
            f"τ={tau:g}: online − offline = {100 * d_last:+.2f} points last-epoch "
            f"({100 * d_best:+.2f} best-epoch)"
            + (f", seed spread ±{100 * noise:.2f}" if noise is not None else "")
        )
    if none is not None:
        best_kd = max(
            (r for r in summary if r["mode"] in ("offline", "online")),
            key=lambda r: r["last_test_acc_mean"],
            default=None,
        )
        if best_kd is not None:
            diff = best_kd["last_test_acc_mean"] - none["last_test_acc_mean"]
            parts.append(f"best KD ({best_kd['label']}) − no KD = {100 * diff:+.2f} points")
    return {
        "verdict": _verdict(flags),
        "rule": "mean last-epoch test accuracy: online > offline at the same τ",
        "evidence": "; ".join(parts),
    }


def check_c4(
    summary: list[dict[str, Any]], methods: list[tuple[str, str, float]]
) -> dict[str, Any]:
    """C4 has two checked parts: online KD's final train fidelity (with the final teacher)
    exceeds offline KD's at the same temperature, and for every student the complexity of the
    final teacher's targets is lower w.r.t. its final NTK than w.r.t. its initial NTK. NTK
    similarities after training are reported."""
    by = {r["method"]: r for r in summary}
    keys = {(mode, tau): key for key, mode, tau in methods}
    parts, flags = [], []
    for (mode, tau), key in sorted(keys.items(), key=lambda kv: _mode_order(kv[0])):
        if mode != "online" or ("offline", tau) not in keys:
            continue
        on, off = (
            by[key]["train_fidelity_final_last"],
            by[keys[("offline", tau)]]["train_fidelity_final_last"],
        )
        if on is None or off is None:
            continue
        flags.append(_difference(on, off) > 0)
        parts.append(
            f"τ={tau:g}: train fidelity online {100 * on:.1f}% vs offline {100 * off:.1f}%"
        )
    ratios = []
    for key, _, _ in methods:
        first, last = (
            by[key]["complexity_teacher_final_first"],
            by[key]["complexity_teacher_final_last"],
        )
        if first is None or last is None:
            continue
        flags.append(last < first)
        ratios.append(f"{key} {first:.3g}→{last:.3g} ({100 * (last / first - 1):+.0f}%)")
    if ratios:
        parts.append("complexity of final-teacher targets, init → final NTK: " + ", ".join(ratios))
    sims = [
        f"{key} {by[key]['ntk_similarity_last']:.3f}"
        for key, _, _ in methods
        if by[key].get("ntk_similarity_last") is not None
    ]
    if sims:
        parts.append("final NTK similarity: " + ", ".join(sims))
    return {
        "verdict": _verdict(flags),
        "rule": "online train fidelity > offline (same τ), and complexity w.r.t. final NTK < "
        "w.r.t. initial NTK for every student",
        "evidence": "; ".join(parts),
    }


def check_c5(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """C5: the bound (smallest total over the gamma grid) is computed for every teacher target;
    the check is a positive Spearman correlation between bound and measured test error."""
    best = [r for r in rows if r["best"] and r["targets"] == "teacher"]
    rho = spearman([r["bound"] for r in best], [r["test_error"] for r in best])
    errs = [r["test_error"] for r in best]
    rho_fixed = spearman([r["bound_fixed_norm"] for r in best], errs)
    rho_adj = spearman([r["adjusted_complexity"] for r in best], errs)
    vacuous = sum(r["bound"] >= 1 for r in best)
    comp = [r["complexity_term"] for r in best]
    errors = [r["test_error"] for r in best]
    evidence = (
        f"{len(best)} teacher targets (checkpoints × τ): test error {min(errors):.3f}–"
        f"{max(errors):.3f}, bound {min(r['bound'] for r in best):.3g}–"
        f"{max(r['bound'] for r in best):.3g} ({vacuous} of {len(best)} ≥ 1, i.e. vacuous), "
        f"complexity term {min(comp):.3g}–{max(comp):.3g}; Spearman with the test error: "
        f"bound {_fmt(rho)}, bound with B fixed in advance {_fmt(rho_fixed)}, adjusted "
        f"complexity of y* {_fmt(rho_adj)}"
    )
    return {
        "verdict": "n/a" if rho is None else ("yes" if rho > 0 else "no"),
        "rule": "Spearman(bound, measured test error) > 0 across teacher targets",
        "evidence": evidence,
    }


def check_c3_study(study: dict[str, Any]) -> dict[str, Any]:
    """The C3 study's summary: the settings where its stated rule (``study["rule"]``, fixed in
    the config) says C3 holds, fails or is undecided; ``yes`` when it holds in every setting,
    ``no`` when in none, ``partly`` otherwise; ``n/a`` when no setting is decided (nothing
    refutes C3 then either)."""
    from sdcomplex.reproduce._study_analysis import summary_text

    summary = study["summary"]
    total = sum(len(v) for v in summary.values())
    holds = len(summary.get("holds", []))
    decided = holds + len(summary.get("fails", []))
    return {
        "verdict": "n/a" if not decided else _verdict([True] * holds + [False] * (total - holds)),
        "rule": f"per setting, {study['rule'].removeprefix('per (recipe, capacity, τ): ')}",
        "evidence": summary_text(summary),
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def run_claims(ctx: Context) -> dict[str, Any]:
    """The claims stage: verdicts from the result files written before it."""
    config = ctx.config
    res = ctx.layout.results
    entries: dict[str, dict[str, Any]] = {}
    if config.complexity is not None:
        rows = read_csv(res / "complexity.csv")
        entries["C1"] = check_c1(rows)
        entries["C2"] = check_c2(rows)
    if config.distillation is not None:
        entries["C3"] = check_c3(read_csv(res / "accuracy.csv"))
        methods = [(m.key, m.mode, m.temperature) for m in config.distillation.methods]
        entries["C4"] = check_c4(read_csv(res / "diagnostics_summary.csv"), methods)
    if config.bound is not None:
        entries["C5"] = check_c5(read_csv(res / "bound.csv"))
    study_table = ""
    if config.study is not None:
        entries["C3 study"] = check_c3_study(read_json(res / "study.json"))
        study_table = "\n" + (Path(ctx.layout.tables) / "study.md").read_text(encoding="utf-8")
    claims = [
        {"claim": c, "statement": STATEMENTS[c], **entries[c]} for c in STATEMENTS if c in entries
    ]
    write_json(
        res / "claims.json",
        {"experiment": config.name, "scale": config.scale, "claims": claims},
    )
    table = markdown_table(
        ["claim", "reproduced?", "what this run shows"],
        [[f"{c['claim']}: {c['statement']}", c["verdict"], c["evidence"]] for c in claims],
        align="lll",
    )
    table += "\nRules: " + " ".join(f"{c['claim']}: {c['rule']}." for c in claims) + "\n"
    table += study_table
    atomic_write_text(Path(ctx.layout.tables) / "claims.md", table, overwrite=True)
    return {"text": ", ".join(f"{c['claim']} {c['verdict']}" for c in claims)}
