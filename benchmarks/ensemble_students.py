"""Wall time of S students trained together (vmap over seeds) vs the same students one by one.

The students are the quick scale's (experiments/_base.py): MLPs on MNIST-1D (4,000 training
signals of length 40), batch 128, SGD with momentum 0.9, weight decay 5e-4, cosine schedule,
evaluation of train and test loss/accuracy after every epoch. Three ways to train S seeds:

* ``together``: ``train_students(config, seeds)`` (one vmapped, jitted step for all S);
* ``unrolled`` (not run by default): ``train_students(config, seeds, batching="unroll")``
  (one jitted program holding S copies of the solo step);
* ``alone``: ``train_students(config, [seed])`` for each seed (the same code, S = 1: one
  compilation each, one student per dispatch);
* ``trainer``: the library's solo trainer ``sdcomplex.train.train`` for each seed (what
  ``sdcomplex train`` runs: also writes metrics and an Orbax checkpoint every epoch).

Every time is the whole call, compilation and evaluation included. The ways alternate within
each round (the machine may be busy; compare side by side), and the table gives every round.

    python benchmarks/ensemble_students.py --hidden 32 128 --seeds 5 --rounds 2
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

from sdcomplex.train import TrainConfig, train  # noqa: E402
from sdcomplex.train._ensemble import train_students  # noqa: E402

WAYS = ("together", "unrolled", "alone", "trainer")
DEFAULT_WAYS = ("together", "alone", "trainer")


def quick_student(hidden: list[int], epochs: int) -> TrainConfig:
    """The quick scale's student (experiments/_base.py) with other hidden sizes."""
    return TrainConfig(
        model="mlp",
        model_options={"hidden_sizes": hidden},
        dataset="mnist1d",
        augment=False,
        batch_size=128,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        eval_batch_size=1000,
        epochs=epochs,
        learning_rate=0.05,
    )


def run_way(way: str, config: TrainConfig, seeds: list[int]) -> tuple[float, list[float]]:
    """Seconds to train every seed the given way, and each seed's final test accuracy."""
    t0 = time.perf_counter()
    if way in ("together", "unrolled"):
        result = train_students(config, seeds, batching="vmap" if way == "together" else "unroll")
        accs = [m[-1]["test_acc"] for m in result.metrics]
    elif way == "alone":
        accs = [train_students(config, [s]).metrics[0][-1]["test_acc"] for s in seeds]
    else:
        accs = []
        with tempfile.TemporaryDirectory() as tmp:
            for s in seeds:
                res = train(config.replace(seed=s), Path(tmp) / f"seed{s}", quiet=True)
                accs.append(res.metrics[-1]["test_acc"])
    return time.perf_counter() - t0, accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(DEFAULT_WAYS))
    parser.add_argument("--json", type=Path, help="also write the measurements here (new file)")
    args = parser.parse_args()
    if args.json is not None and args.json.exists():
        parser.error(f"{args.json} exists; not overwriting it")
    seeds = list(range(args.seeds))
    rows = []
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()}"
    )
    for hidden in args.hidden:
        config = quick_student([hidden], args.epochs)
        for r in range(args.rounds):
            ways = args.ways if r % 2 == 0 else args.ways[::-1]  # alternate the order
            for way in ways:
                seconds, accs = run_way(way, config, seeds)
                rows.append(
                    {
                        "hidden": hidden,
                        "round": r,
                        "way": way,
                        "seconds": seconds,
                        "test_acc": accs,
                        "load": os.getloadavg()[0],
                    }
                )
                print(
                    f"mlp[{hidden}] round {r} {way:>8}: {seconds:7.1f} s  "
                    f"(S = {len(seeds)}, {args.epochs} epochs; test acc "
                    f"{', '.join(f'{a:.3f}' for a in accs)}; load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    if args.json is not None:
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
