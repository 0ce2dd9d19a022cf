"""Mean NTK of the same networks written as Flax linen (the zoo), pure JAX, Flax NNX, Equinox.

One command times, side by side and in alternating rounds (the machine is shared: every
configuration runs once per round, in the same order, so that slow periods hit all of them),
``empirical_ntk(fn, params, x)`` (``implementation="auto"``) for the mean NTK (C = 10) on
32x32x3 inputs of

* ``zoo``: the model zoo's Flax linen LeNet-5x8 / ResNet-20 through `flax_ntk_fn`;
* ``jax``: the same architecture written as a pure JAX function of the zoo's very parameters
  (``lax.conv_general_dilated``, ``reduce_window`` max pooling, BatchNorm written out);
* ``nnx``, ``equinox``: the same architectures as a Flax NNX module and as an Equinox module
  (``jax.vmap`` over examples), with their own initialisations (benchmarks/framework_models.py;
  ResNet-20 through `sdcomplex.ntk.ntk_fn`, BatchNorm on its running statistics);

and once, at the smallest size, the generic engine (``implementation="jacobian"``: vmapped
per-example reverse-mode gradients, one logit at a time, and their contraction). Kernels of the
``jax`` variant are compared with the zoo's. Each timed call records its wall time and the
process's CPU time (less sensitive to other jobs on a shared machine). Only public sdcomplex
tools are used.

    python benchmarks/ntk_any_model.py --rounds 2 --out /tmp/ntk_any_model.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from framework_models import lenet5_equinox, lenet5_nnx, resnet20_equinox, resnet20_nnx
from jax_models import lenet5, resnet

from sdcomplex.models import create_model, init_variables
from sdcomplex.ntk import empirical_ntk, flax_ntk_fn, plan_ntk

SHAPE = (32, 32, 3)
NUM_CLASSES = 10


def variant(model: str, kind: str):
    """(fn, params) of one model written one way."""
    zoo = create_model("lenet5x8" if model == "lenet5x8" else "resnet20", num_classes=NUM_CLASSES)
    variables = init_variables(zoo, jax.random.key(0), SHAPE)
    if kind == "zoo":
        return flax_ntk_fn(zoo, variables)
    if kind == "jax":
        params = variables["params"]
        if model == "lenet5x8":
            return lenet5, params
        stats = variables["batch_stats"]

        def fn(p, x):
            return resnet(p, stats, x)

        return fn, params
    builders = {
        ("lenet5x8", "nnx"): lenet5_nnx,
        ("lenet5x8", "equinox"): lenet5_equinox,
        ("resnet20", "nnx"): resnet20_nnx,
        ("resnet20", "equinox"): resnet20_equinox,
    }
    return builders[(model, kind)]()


# --- timing -----------------------------------------------------------------------------------


def _timed(thunk) -> tuple[float, np.ndarray, float]:
    """(wall seconds, result, CPU seconds of this process: robust to other jobs' load)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = thunk()
    return time.perf_counter() - start, out, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5x8", "resnet20"])
    parser.add_argument("--variants", nargs="+", default=["zoo", "jax", "nnx", "equinox"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-jacobian", action="store_true", help="skip the generic engine")
    parser.add_argument("--out", required=True, help="JSON file for the results (new file)")
    args = parser.parse_args()
    out_path = Path(args.out)
    if out_path.exists():
        raise SystemExit(f"{out_path} exists; results are never overwritten")

    x_all = np.random.default_rng(0).normal(size=(max(args.sizes), *SHAPE)).astype(np.float32)
    configs = []
    for model in args.models:
        for kind in args.variants:
            fn, params = variant(model, kind)
            for n in args.sizes:
                configs.append(
                    {"model": model, "variant": kind, "n": n, "fn": fn, "params": params}
                )
    results = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "jax": jax.__version__,
        "load_average_start": os.getloadavg()[0],
        "configs": [],
    }
    kernels = {}
    for cfg in configs:  # first (compiling) call
        x = x_all[: cfg["n"]]
        plan = plan_ntk(cfg["fn"], cfg["params"], x)
        first, kernel, _ = _timed(lambda cfg=cfg, x=x: empirical_ntk(cfg["fn"], cfg["params"], x))
        kernels[(cfg["model"], cfg["variant"], cfg["n"])] = kernel
        cfg["record"] = {
            "model": cfg["model"],
            "variant": cfg["variant"],
            "n": cfg["n"],
            "implementation": plan.implementation,
            "block_size": plan.block_size,
            "num_parts": plan.num_parts,
            "first_s": first,
            "rounds_s": [],
            "rounds_cpu_s": [],
        }
        print(f"{cfg['model']} {cfg['variant']} n={cfg['n']}: first {first:.2f} s", flush=True)
    for r in range(args.rounds):
        for cfg in configs:
            x = x_all[: cfg["n"]]
            t, _, cpu = _timed(lambda cfg=cfg, x=x: empirical_ntk(cfg["fn"], cfg["params"], x))
            cfg["record"]["rounds_s"].append(t)
            cfg["record"]["rounds_cpu_s"].append(cpu)
            print(
                f"round {r}: {cfg['model']} {cfg['variant']} n={cfg['n']}: {t:.2f} s "
                f"(CPU {cpu:.2f} s)",
                flush=True,
            )
    for cfg in configs:
        rec = cfg["record"]
        zoo = kernels.get((cfg["model"], "zoo", cfg["n"]))
        if cfg["variant"] == "jax" and zoo is not None:
            k = kernels[(cfg["model"], "jax", cfg["n"])]
            rec["max_rel_diff_vs_zoo"] = float(np.max(np.abs(k - zoo)) / np.max(np.abs(zoo)))
        results["configs"].append(rec)
    if not args.no_jacobian:
        n = min(args.sizes)
        for model in args.models:
            fn, params = variant(model, "jax")
            x = x_all[:n]
            t, k, _ = _timed(
                lambda fn=fn, params=params, x=x: empirical_ntk(
                    fn, params, x, implementation="jacobian"
                )
            )
            zoo = kernels.get((model, "jax", n))
            rec = {"model": model, "variant": "jax", "n": n, "implementation": "jacobian"}
            rec["first_s"] = t
            if zoo is not None:
                rec["max_rel_diff_vs_structured"] = float(
                    np.max(np.abs(k - zoo)) / np.max(np.abs(zoo))
                )
            results["configs"].append(rec)
            print(f"{model} jacobian n={n}: {t:.2f} s (compilation included)", flush=True)
    results["load_average_end"] = os.getloadavg()[0]
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main()
