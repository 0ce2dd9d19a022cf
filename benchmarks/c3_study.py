"""Wall time of the C3 study's students trained in groups vs the same students one by one.

The students are those of ``experiments/c3_study.py`` at the quick scale (MNIST-1D, MLP
students of several capacities, no KD / offline KD / online KD at tau = 1 and 4, 5 seeds),
taught by a finished teacher run (``--teacher DIR``, e.g. ``OUT/runs/teacher`` of a quick run).
Two ways, alternating within each round (the machine may be busy: compare side by side):

* ``groups``: what the study's stages do, :func:`sdcomplex.reproduce._study.train_group` per
  (capacity, mode): one :func:`sdcomplex.train.train_students` call, one compiled step, for
  all the seeds (times the temperatures with KD);
* ``solo``: :func:`sdcomplex.distill.distill` for each student alone (``diagnostics_every=0``,
  as the study's students: the trainer's metrics and checkpoints, one compilation each).

Every time is the whole call, compilation and evaluation included, with no persistent
compilation cache (the process's in-memory caches stay warm across calls, as in a run).

    python benchmarks/c3_study.py --teacher OUT/runs/teacher --capacities mlp32 --rounds 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdcomplex.distill import DistillConfig, distill  # noqa: E402
from sdcomplex.reproduce import load_experiment  # noqa: E402
from sdcomplex.reproduce._study import KD_MODES, members, train_group  # noqa: E402


def time_groups(config, capacity, teacher: Path) -> dict[str, float]:
    """Seconds of each (mode) group of one capacity trained together."""
    spec, out = config.study, {}
    student = capacity.student(config.student)
    for mode in ("none", *KD_MODES):
        t0 = time.perf_counter()
        train_group(student, spec, mode, None if mode == "none" else teacher)
        out[mode] = time.perf_counter() - t0
    return out


def time_solo(config, capacity, teacher: Path) -> dict[str, float]:
    """Seconds of the same students, each alone with distill(), summed per mode."""
    spec, out = config.study, {}
    student = capacity.student(config.student)
    for mode in ("none", *KD_MODES):
        seeds, temps = members(spec, mode)
        total = 0.0
        for seed, tau in zip(seeds, temps or [1.0] * len(seeds), strict=True):
            dcfg = DistillConfig(
                student=student.replace(seed=seed),
                teacher_dir=None if mode == "none" else str(teacher.resolve()),
                mode=mode,
                temperature=tau,
                alpha=spec.alpha,
                stride=spec.stride,
                diagnostics_every=0,
            )
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                distill(dcfg, Path(tmp) / "run", quiet=True)
                total += time.perf_counter() - t0
        out[mode] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", type=Path, required=True, help="a finished teacher run")
    parser.add_argument("--capacities", nargs="+", help="capacity names (default: all)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the measurements here (new file)")
    args = parser.parse_args()
    config = load_experiment("c3_study", "quick")
    chosen = [
        c for c in config.study.capacities if args.capacities is None or c.name in args.capacities
    ]
    if not chosen:
        parser.error(f"no capacity among {[c.name for c in config.study.capacities]}")
    rows = []
    for r in range(args.rounds):
        for capacity in chosen:
            groups = time_groups(config, capacity, args.teacher)
            solo = time_solo(config, capacity, args.teacher)
            for mode in groups:
                rows.append(
                    {
                        "round": r + 1,
                        "capacity": capacity.name,
                        "mode": mode,
                        "students": len(members(config.study, mode)[0]),
                        "groups_s": groups[mode],
                        "solo_s": solo[mode],
                    }
                )
                print(
                    f"round {r + 1} {capacity.name:>8} {mode:>8} "
                    f"{rows[-1]['students']:>3} students: together {groups[mode]:7.1f} s, "
                    f"one by one {solo[mode]:7.1f} s, {solo[mode] / groups[mode]:.2f}x",
                    flush=True,
                )
    total_g, total_s = sum(r["groups_s"] for r in rows), sum(r["solo_s"] for r in rows)
    print(f"total: together {total_g:.1f} s, one by one {total_s:.1f} s, {total_s / total_g:.2f}x")
    if args.json is not None:
        record = {
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "rows": rows,
        }
        with open(args.json, "x", encoding="utf-8") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
