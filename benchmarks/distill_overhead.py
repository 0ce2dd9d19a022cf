"""Wall time per epoch of offline KD, online KD, and online KD with diagnostics.

A LeNet-5x8 student distilled from a ResNet-20 teacher on the shared CIFAR-10 archive at the
quick scale (by default the README's CPU-sized CIFAR-10 setting: a class-balanced subset of
1,000 training images per class, ``--n-per-class``, and the whole 10,000-image test set; random
crops and flips, batch 128; student learning rate ``--student-lr`` 0.05, cosine), run with
``sdcomplex distill`` exactly as a user runs it. Three variants of the same student (same seed,
same steps):

* ``offline``: KD from the final teacher checkpoint, no diagnostics;
* ``online``: KD from the teacher's checkpoint trajectory (the supervising checkpoint changes
  with the student epoch), no diagnostics;
* ``online+diag``: the same with the diagnostics every epoch at the default probe size (256):
  fidelity on 1,000-example subsets with the final and the current teacher, the student's NTK
  on the probe, NTK similarity and four supervision complexities.

The three runs are separate processes that take turns epoch by epoch (the others are held with
SIGSTOP), in a rotating order, so that the load of other jobs on a shared machine hits every
variant alike. A turn's wall time is one epoch of that run: the previous epoch's checkpoint
save, the teacher checkpoint read, the training steps, the trainer's evaluation (every training
and test image) and the diagnostics. Epochs 0 and 1 (start-up, compilation) are left out; the
figures are medians over the remaining epochs of every round. Two readings of the diagnostics'
cost are printed: the ratio of the median epoch wall times (online+diag / online), and the
diagnostics phase alone (median evaluation-and-diagnostics time of online+diag minus the
median evaluation time of online) as a fraction of the median online epoch; the training steps
of the two variants are the same program, so the second is less exposed to the machine's noise.

The teacher is trained first (``--teacher-epochs``, a checkpoint every epoch) unless
``--teacher`` names an existing run trained on the same data.

    python benchmarks/distill_overhead.py --out /tmp/bench_distill --rounds 3   # ~40 min idle
    python benchmarks/distill_overhead.py --out /tmp/bench_distill --teacher /tmp/t --json r.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("offline", "online", "online+diag")


def _machine() -> dict:
    import jax

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    return info


def _lines(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def _turns(procs: dict, dirs: dict, epochs: int, poll: float = 0.02) -> list[dict]:
    """Runs the processes one at a time, one epoch per turn; returns the timed turns."""
    turns = []
    for p in procs.values():
        p.send_signal(signal.SIGSTOP)
    for epoch in range(epochs + 1):
        k = epoch % len(VARIANTS)
        for variant in VARIANTS[k:] + VARIANTS[:k]:
            proc, run_dir = procs[variant], dirs[variant]
            load = os.getloadavg()[0]
            start = time.perf_counter()
            proc.send_signal(signal.SIGCONT)
            while _lines(run_dir) < epoch + 1:
                if proc.poll() is not None:
                    raise RuntimeError(f"{variant} ended early: {proc.communicate()}")
                time.sleep(poll)
            wall = time.perf_counter() - start
            if epoch < epochs:
                proc.send_signal(signal.SIGSTOP)
            turns.append({"variant": variant, "epoch": epoch, "wall_s": wall, "load": load})
            print(f"  epoch {epoch} {variant:12s} {wall:7.1f} s (load {load:.1f})", flush=True)
    for variant, proc in procs.items():
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{variant} failed: {err.decode()[-2000:]}")
    return turns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="scratch directory")
    parser.add_argument("--teacher", type=Path, help="an existing teacher run to reuse")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--n-per-class", type=int, default=1000)
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="student epochs per run (>= 2)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--probe-size", type=int, default=256)
    parser.add_argument(
        "--student-lr",
        type=float,
        default=0.05,
        help="student learning rate (at 0.1, LeNet-5x8 under online KD from a 1-epoch teacher"
        " collapsed to one class at 1,000 images per class)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (epochs 0 and 1 compile and are left out)")

    from sdcomplex.distill import DistillConfig, online_schedule
    from sdcomplex.train import TrainConfig, read_metrics, train

    common = {
        "dataset": "cifar10_jpeg",
        "data_dir": str(Path(args.data_dir).resolve()),
        "n_per_class": args.n_per_class,
        "augment": True,
        "batch_size": 128,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    print(json.dumps(machine), flush=True)
    teacher_dir, teacher_s = args.teacher, None
    if teacher_dir is None:
        teacher_dir = args.out / "teacher"
        teacher = TrainConfig(model="resnet20", epochs=args.teacher_epochs, **common)
        start = time.perf_counter()
        train(teacher, teacher_dir, quiet=True)
        teacher_s = time.perf_counter() - start
        print(f"teacher: {teacher_dir} ({teacher_s:.0f} s)", flush=True)
    teacher_dir = teacher_dir.resolve()
    teacher_config = TrainConfig.from_dict(json.loads((teacher_dir / "config.json").read_text()))
    schedule = online_schedule(args.epochs, teacher_config.epochs)
    student = TrainConfig(
        model="lenet5x8", epochs=args.epochs, learning_rate=args.student_lr, **common
    )
    options = {"student": student, "teacher_dir": str(teacher_dir)}
    configs = {
        "offline": DistillConfig(mode="offline", diagnostics_every=0, **options),
        "online": DistillConfig(mode="online", diagnostics_every=0, **options),
        "online+diag": DistillConfig(
            mode="online", diagnostics_every=1, probe_size=args.probe_size, **options
        ),
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    turns, breakdown, final_acc = [], [], []
    for r in range(args.rounds):
        print(f"round {r}: online schedule {schedule}", flush=True)
        procs, dirs = {}, {}
        for variant, config in configs.items():
            name = f"round{r}_{variant.replace('+', '_')}"
            dirs[variant] = args.out / "runs" / name
            shutil.rmtree(dirs[variant], ignore_errors=True)
            cfg_file = args.out / f"{name}.json"
            cfg_file.write_text(config.to_json())
            cmd = [sys.executable, "-m", "sdcomplex", "distill", "--config", str(cfg_file)]
            cmd += ["--out", str(dirs[variant]), "--quiet"]
            procs[variant] = subprocess.Popen(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        for turn in _turns(procs, dirs, args.epochs):
            turns.append({"round": r, **turn})
        for variant, run_dir in dirs.items():
            final_acc.append(
                {"round": r, "variant": variant, "test_acc": read_metrics(run_dir)[-1]["test_acc"]}
            )
            for m in read_metrics(run_dir):
                if m["epoch"] >= 2:
                    breakdown.append(
                        {
                            "round": r,
                            "variant": variant,
                            "epoch": m["epoch"],
                            "train_s": m["epoch_time_s"],
                            "eval_s": m["eval_time_s"],
                        }
                    )

    def median(rows: list[dict], variant: str, key: str) -> float:
        return statistics.median(
            row[key] for row in rows if row["variant"] == variant and row["epoch"] >= 2
        )

    summary = {
        v: {
            "wall_s": median(turns, v, "wall_s"),
            "train_s": median(breakdown, v, "train_s"),
            "eval_s": median(breakdown, v, "eval_s"),
            "n": sum(1 for t in turns if t["variant"] == v and t["epoch"] >= 2),
        }
        for v in VARIANTS
    }
    online_overhead = summary["online"]["wall_s"] / summary["offline"]["wall_s"] - 1
    diag_overhead = summary["online+diag"]["wall_s"] / summary["online"]["wall_s"] - 1
    diag_phase_s = summary["online+diag"]["eval_s"] - summary["online"]["eval_s"]
    diag_phase = diag_phase_s / summary["online"]["wall_s"]
    print("\nmedian seconds per epoch (epochs >= 2)")
    print(f"{'variant':12s} {'wall':>8s} {'train':>8s} {'eval+diag':>10s}  n")
    for v in VARIANTS:
        s = summary[v]
        print(f"{v:12s} {s['wall_s']:8.1f} {s['train_s']:8.1f} {s['eval_s']:10.1f}  {s['n']}")
    print(f"online KD vs offline KD: {100 * online_overhead:+.1f}% wall time per epoch")
    print(f"diagnostics (probe {args.probe_size}): {100 * diag_overhead:+.1f}% per epoch")
    print(f"diagnostics phase: {diag_phase_s:.1f} s = {100 * diag_phase:+.1f}% of an online epoch")
    print(
        "final test accuracy: "
        + ", ".join(f"{a['variant']} {a['test_acc']:.3f}" for a in final_acc)
    )
    if args.json:
        result = {
            "command": " ".join(["python", "benchmarks/distill_overhead.py", *sys.argv[1:]]),
            "machine": machine,
            "settings": {
                "teacher": str(teacher_dir),
                "teacher_train_s": teacher_s,
                "n_per_class": args.n_per_class,
                "student_epochs": args.epochs,
                "online_schedule": schedule,
                "rounds": args.rounds,
                "probe_size": args.probe_size,
                "student_lr": args.student_lr,
            },
            "final_test_acc": final_acc,
            "turns": turns,
            "breakdown": breakdown,
            "median": summary,
            "online_overhead": online_overhead,
            "diagnostics_overhead": diag_overhead,
            "diagnostics_phase_s": diag_phase_s,
            "diagnostics_phase_overhead": diag_phase,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
