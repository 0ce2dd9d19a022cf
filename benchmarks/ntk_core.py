"""Benchmark of the core NTK implementations on LeNet-5x8 (PAPER.md section 5).

Times `empirical_ntk` for the mean NTK (C = 10) of LeNet-5x8 on 32x32x3 inputs, for every
registered implementation that fits the memory budget and for ``"auto"``, side by side in one
run. Each configuration is run once to compile and then timed (wall clock, best of ``--repeats``).

    python benchmarks/ntk_core.py --n 64
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

from sdcomplex.models import create_model, init_variables
from sdcomplex.ntk import available_implementations, empirical_ntk, flax_ntk_fn, plan_ntk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--model", default="lenet5x8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--implementations", nargs="*", default=None)
    args = parser.parse_args()

    model = create_model(args.model, num_classes=10)
    variables = init_variables(model, jax.random.key(0), (32, 32, 3))
    fn, params = flax_ntk_fn(model, variables)
    x = np.random.default_rng(0).normal(size=(args.n, 32, 32, 3)).astype(np.float32)
    machine = platform.processor() or platform.machine()
    print(f"{args.model}, n = {args.n}, mean NTK, C = 10; {machine}")
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    names = args.implementations or ["auto", *available_implementations()]
    reference = None
    for name in names:
        plan = plan_ntk(fn, params, x, implementation=name)
        if name == "ntvp" and plan.flops > 5e12:
            print(f"{name:>10}: skipped (estimated {plan.flops:.2g} flops)")
            continue
        times = []
        for _ in range(args.repeats + 1):
            start = time.perf_counter()
            k = empirical_ntk(fn, params, x, implementation=name)
            times.append(time.perf_counter() - start)
        if reference is None:
            reference = k
        err = float(np.max(np.abs(k - reference)) / np.max(np.abs(reference)))
        print(
            f"{name:>10} ({plan.implementation}, block {plan.block_size}): first call "
            f"{times[0]:.2f} s, best of {args.repeats} {min(times[1:]):.2f} s, "
            f"max rel. diff {err:.1e}"
        )


if __name__ == "__main__":
    main()
