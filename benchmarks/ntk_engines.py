"""Benchmark of the NTK engine against neural-tangents 0.6.5 and the machine's matmul rate.

One command runs, side by side on the same machine, model, parameters and inputs:

* sdcomplex's ``empirical_ntk`` (``"auto"``, i.e. the layer-structured engine for these models)
  for the mean NTK (C = 10) of LeNet-5x8 and ResNet-20 on 32x32x3 inputs, with the time of its
  feature and contraction phases and their XLA-counted floating-point operations as a fraction
  of the measured fp32 matrix-multiply rate (``Precision.HIGHEST``);
* the core's generic ``"jacobian"`` implementation at the smallest size;
* neural-tangents 0.6.5 implementations 1 and 2 (``nt.empirical_ntk_fn(..., trace_axes=(-1,),
  vmap_axes=0)``, with ``nt.batch`` where unbatched does not fit the memory limit), each in its own
  process in the environment of ``benchmarks/neural_tangents_env.sh``, limited to
  ``--nt-memory-gb`` of data memory; its kernels are compared with ours;
* the n = 1024 mean Gram of LeNet-5x8 in a separate process, to measure its peak memory.

Results go to benchmarks/README.md (the section between this benchmark's markers; the rest of
the file is kept) and to a JSON file under benchmarks/results/.

    python benchmarks/ntk_engines.py                      # CPU, everything (about 30 minutes)
    python benchmarks/ntk_engines.py --no-nt --sizes 64   # quick
    bash benchmarks/gpu_ntk.sh                            # GPU: n = 4096, see that script
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sdcomplex.models import count_params, create_model, init_variables
from sdcomplex.ntk import (
    compute_with_plan,
    default_memory_budget,
    empirical_ntk,
    flax_ntk_fn,
    plan_ntk,
)
from sdcomplex.ntk._api import _contract, _features
from sdcomplex.ntk._engine import partition_callable

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
SHAPE = (32, 32, 3)
NUM_CLASSES = 10


# --- machine -----------------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "device": f"{device.platform}: {getattr(device, 'device_kind', device)}",
        "jax": jax.__version__,
        "load_average_start": os.getloadavg()[0],
    }


def matmul_rate(size: int, repeats: int = 5) -> float:
    """Best fp32 (Precision.HIGHEST) square matrix-multiply rate in FLOP/s."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)), jnp.float32)
    f = jax.jit(lambda m: jnp.matmul(m, m, precision=jax.lax.Precision.HIGHEST))
    f(a).block_until_ready()
    best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(repeats))
    return 2.0 * size**3 / best


def _timed(thunk) -> float:
    start = time.perf_counter()
    thunk()
    return time.perf_counter() - start


# --- models ----------------------------------------------------------------------------------


def model_and_data(name: str, n: int):
    model = create_model(name, num_classes=NUM_CLASSES)
    variables = init_variables(model, jax.random.key(0), SHAPE)
    x = np.random.default_rng(0).normal(size=(n, *SHAPE)).astype(np.float32)
    return model, variables, x


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return float(cost.get("flops", 0.0)) if cost else 0.0


def phases(plan, fn, params, x) -> dict:
    """Time and XLA-counted flops of the feature and contraction phases of one block (pair)."""
    impl, spec = plan.prepared, plan.size.spec
    dynamic, static = partition_callable(fn)
    xb = jnp.asarray(x[: plan.block_size])
    feat_s = contract_s = feat_flops = contract_flops = 0.0
    for part in range(plan.num_parts):
        p = jnp.asarray(part, jnp.int32)
        args = (impl, static, spec, dynamic, params, xb, p)
        f = jax.block_until_ready(_features(*args))
        feat_s += min(_timed(lambda a=args: jax.block_until_ready(_features(*a))) for _ in range(2))
        cargs = (impl, static, spec, dynamic, params, f, f, p)
        jax.block_until_ready(_contract(*cargs))
        contract_s += min(
            _timed(lambda a=cargs: jax.block_until_ready(_contract(*a))) for _ in range(2)
        )
        feat_flops += _flops(_features.lower(*args).compile())
        contract_flops += _flops(_contract.lower(*cargs).compile())
        del f
    return {
        "features_s": feat_s,
        "features_flops": feat_flops,
        "contract_s": contract_s,
        "contract_flops": contract_flops,
        "block_pairs": plan.num_blocks,
    }


def time_ours(fn, params, x, implementation: str, repeats: int, budget: float) -> dict:
    plan = plan_ntk(fn, params, x, implementation=implementation, memory_budget=budget)
    first = _timed(lambda: compute_with_plan(plan, fn, params, x))
    times = []
    kernel = None
    for _ in range(repeats):
        start = time.perf_counter()
        kernel = compute_with_plan(plan, fn, params, x)
        times.append(time.perf_counter() - start)
    return {
        "implementation": plan.implementation,
        "block_size": plan.block_size,
        "num_parts": plan.num_parts,
        "estimated_flops": plan.flops,
        "first_s": first,
        "best_s": min(times),
        "kernel": kernel,
    }


# --- neural-tangents ------------------------------------------------------------------------


def nt_python() -> str | None:
    script = HERE / "neural_tangents_env.sh"
    try:
        out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    except (subprocess.CalledProcessError, OSError) as err:
        print(f"neural-tangents environment unavailable: {err}", file=sys.stderr)
        return None
    return out.stdout.strip().splitlines()[-1]


def export(variables, x, path: Path) -> None:
    arrays = {"x": x}
    for collection, tree in variables.items():
        for key, value in traverse_util.flatten_dict(tree).items():
            arrays[collection + "/" + "/".join(key)] = np.asarray(value)
    np.savez(path, **arrays)


def _limit_data(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    return apply


def run_nt(python, data, model, implementation, batch_size, limit_gb, timeout, repeats) -> dict:
    """One neural-tangents configuration in its own process, with a data-memory limit."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kernel.npz"
        cmd = [python, str(HERE / "nt_reference.py"), "--data", str(data), "--model", model]
        cmd += ["--implementation", str(implementation), "--batch-size", str(batch_size)]
        cmd += ["--repeats", str(repeats), "--out", str(out)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"}
        peak = [0]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=_limit_data(int(limit_gb * 2**30)),
        )
        stop = threading.Event()

        def watch() -> None:  # second guard: kill on resident memory above the limit
            while not stop.wait(0.05):
                try:
                    status = Path(f"/proc/{proc.pid}/status").read_text()
                except OSError:
                    return
                for line in status.splitlines():
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
                        peak[0] = max(peak[0], rss)
                        if rss > limit_gb * 2**30:
                            proc.kill()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            stop.set()
            return {"status": f"timed out after {timeout} s"}
        stop.set()
        if proc.returncode != 0 or not out.exists():
            text = stderr.strip().splitlines()
            oom = any("memory" in line.lower() for line in text[-30:]) or proc.returncode < 0
            why = f"out of memory (limit {limit_gb:g} GB)" if oom else "failed"
            return {"status": why, "detail": text[-1][:200] if text else str(proc.returncode)}
        with np.load(out) as saved:
            result = json.loads(str(saved["result"]))
            result["kernel"] = saved["kernel"]
        result["status"] = "ok"
        result["peak_rss_bytes"] = max(result["peak_rss_bytes"], peak[0])
        return result


def nt_configs(model: str, n: int, num_params: int, limit_gb: float) -> list[tuple[int, int]]:
    """(implementation, batch size) to run: unbatched where a rough estimate fits, else nt.batch
    with the largest power-of-two batch whose two Jacobian blocks fit 3/4 of the limit."""
    configs = []
    for implementation in (1, 2):
        jac_bytes = lambda b: 2 * b * NUM_CLASSES * num_params * 4  # noqa: E731
        if jac_bytes(n) <= 0.75 * limit_gb * 2**30:
            configs.append((implementation, 0))
            continue
        batch = n // 2
        while batch > 8 and jac_bytes(batch) > 0.75 * limit_gb * 2**30:
            batch //= 2
        configs.append((implementation, batch))
    return configs


# --- memory check (child process) --------------------------------------------------------------


def memory_child(model_name: str, n: int, budget: float) -> None:
    model, variables, x = model_and_data(model_name, n)
    fn, params = flax_ntk_fn(model, variables)
    plan = plan_ntk(fn, params, x, memory_budget=budget)
    start = time.perf_counter()
    kernel = empirical_ntk(fn, params, x, memory_budget=budget)
    seconds = time.perf_counter() - start
    result = {
        "n": n,
        "seconds": seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "memory_budget": budget,
        "block_size": plan.block_size,
        "num_blocks": plan.num_blocks,
        "implementation": plan.implementation,
        "finite": bool(np.all(np.isfinite(kernel))),
    }
    print(json.dumps(result))


def memory_check(model_name: str, n: int, budget: float) -> dict:
    cmd = [sys.executable, __file__, "--child-memory", model_name, str(n), str(budget)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return {"status": "failed", "detail": out.stderr.strip().splitlines()[-1:]}
    return {"status": "ok", **json.loads(out.stdout.strip().splitlines()[-1])}


# --- report ----------------------------------------------------------------------------------


def _rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else (f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s")


def table(results: dict) -> list[str]:
    rate = results["matmul_flops"]
    lines = [
        "| model | n | sdcomplex auto (best / first) | method | phases: features, contraction "
        "(fraction of matmul rate) | core `jacobian` | NT impl. 1 | NT impl. 2 | speed-up vs "
        "fastest NT | max rel. diff vs NT |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        ours = row["ours"]
        ph = row.get("phases") or {}
        if ph:
            phase = (
                f"{ph['features_s']:.2f} s ({ph['features_flops'] / ph['features_s'] / rate:.0%}), "
                f"{ph['contract_s']:.2f} s ({ph['contract_flops'] / ph['contract_s'] / rate:.0%})"
            )
        else:
            phase = "-"
        jac = row.get("jacobian")
        nts, diffs, best_nt = [], [], None
        for impl in (1, 2):
            r = row.get(f"nt{impl}")
            if r is None:
                nts.append("not run")
                continue
            label = f"bs {r['batch_size']}" if r.get("batch_size") else "unbatched"
            if r["status"] != "ok":
                nts.append(f"{r['status']} ({label})")
                continue
            t = r["best_s"]
            nts.append(f"{_fmt_s(t)} ({label})")
            best_nt = t if best_nt is None else min(best_nt, t)
            diffs.append(f"{r['max_rel_diff']:.1e}")
        if best_nt:
            speed = f"{best_nt / ours['best_s']:.1f}x"
        elif any(row.get(f"nt{i}", {}).get("status", "").startswith("timed out") for i in (1, 2)):
            speed = f"> {results['nt_timeout'] / ours['best_s']:.0f}x"
        else:
            speed = "-"
        lines.append(
            f"| {row['model']} | {row['n']} | {_fmt_s(ours['best_s'])} / {_fmt_s(ours['first_s'])}"
            f" | {ours['implementation']} (block {ours['block_size']}, {ours['num_parts']} part"
            f"{'s' if ours['num_parts'] > 1 else ''}) | {phase} | "
            f"{_fmt_s(jac['best_s']) if jac else '-'} | {nts[0]} | {nts[1]} | {speed} | "
            f"{', '.join(diffs) or '-'} |"
        )
    return lines


def section(results: dict, command: str) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gb']} GB), device "
        f"{m['device']}, jax {m['jax']}; load average {m['load_average_start']:.1f} at the start "
        f"and {results['load_average_end']:.1f} at the end (the machine is shared: other "
        "people's jobs slow every number here). Command:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"fp32 matrix-multiply rate (Precision.HIGHEST, {results['matmul_size']}^2): "
        f"**{results['matmul_flops'] / 1e9:.0f} GFLOP/s**. Mean NTK (C = 10) on 32x32x3 inputs, "
        "same parameters and inputs for every engine; times are wall clock of the whole "
        "kernel (best of the repeats after a first, compiling call; neural-tangents "
        "configurations slower than 60 s are timed once, compilation included). Phases: "
        "XLA-counted flops / time as a fraction of the matmul rate."
        + (
            f" sdcomplex's memory budget: {results['memory_budget'] / 2**30:.1f} GiB."
            if results.get("memory_budget")
            else ""
        ),
        "",
        *table(results),
    ]
    mem = results.get("memory")
    if mem:
        if mem.get("status") == "ok":
            lines += [
                "",
                f"Memory: LeNet-5x8 mean Gram at n = {mem['n']} with memory_budget = "
                f"{mem['memory_budget'] / 2**30:.2f} GiB ({mem['num_blocks']} block pairs of "
                f"{mem['block_size']}): {_fmt_s(mem['seconds'])}, peak resident memory of the "
                f"whole process **{mem['peak_rss_bytes'] / 2**30:.2f} GiB**.",
            ]
        else:
            lines += ["", f"Memory check failed: {mem.get('detail')}"]
    return "\n".join(lines)


def write_readme(text: str, key: str) -> None:
    begin, end = f"<!-- ntk-engines:{key}:begin -->", f"<!-- ntk-engines:{key}:end -->"
    header = (
        "## NTK engine\n\n"
        "`python benchmarks/ntk_engines.py` (CPU) and `bash benchmarks/gpu_ntk.sh` (GPU) write "
        "the tables below; see the docstring of benchmarks/ntk_engines.py for what is measured. "
        "neural-tangents runs in its own environment, made by "
        "`benchmarks/neural_tangents_env.sh` outside the repository.\n\n"
        "### CPU\n\n<!-- ntk-engines:cpu:begin -->\n(not run yet)\n<!-- ntk-engines:cpu:end -->\n\n"
        "### GPU\n\n<!-- ntk-engines:gpu:begin -->\n(not run yet)\n<!-- ntk-engines:gpu:end -->\n"
    )
    old = README.read_text() if README.exists() else "# Benchmarks\n"
    if begin not in old:
        old = old.rstrip("\n") + "\n\n" + header
    head, rest = old.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{begin}\n{text}\n{end}{tail}"
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(new)
    os.replace(tmp, README)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5x8", "resnet20"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--allow-cpu", action="store_true", help="--device gpu on a CPU (tests)")
    parser.add_argument("--memory-budget-gb", type=float, default=None)
    parser.add_argument("--no-nt", action="store_true", help="skip neural-tangents")
    parser.add_argument("--nt-memory-gb", type=float, default=16.0)
    parser.add_argument("--nt-timeout", type=int, default=1200)
    parser.add_argument("--jacobian-max-n", type=int, default=64)
    parser.add_argument("--memory-n", type=int, default=1024, help="0 skips the memory check")
    parser.add_argument("--memory-check-budget-gb", type=float, default=1.5)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--child-memory", nargs=3, metavar=("MODEL", "N", "BUDGET"))
    parser.add_argument("--render", metavar="JSON", help="rewrite the README from saved results")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        saved.setdefault("nt_timeout", args.nt_timeout)
        write_readme(section(saved, saved["command"]), saved.get("device", "cpu"))
        return
    if args.child_memory:
        memory_child(args.child_memory[0], int(args.child_memory[1]), float(args.child_memory[2]))
        return
    if args.device == "gpu" and jax.default_backend() != "gpu" and not args.allow_cpu:
        raise SystemExit(f"--device gpu but JAX runs on {jax.default_backend()}")
    jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 for kernels
    # the library's default (a quarter of the device's memory) unless --memory-budget-gb
    budget = args.memory_budget_gb * 2**30 if args.memory_budget_gb else default_memory_budget()
    command = "python " + " ".join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])

    results = {
        "machine": machine(),
        "rows": [],
        "command": command,
        "device": args.device,
        "nt_timeout": args.nt_timeout,
        "memory_budget": budget,
    }
    size = 8192 if jax.default_backend() == "gpu" else 2048
    results["matmul_size"] = size
    results["matmul_flops"] = matmul_rate(size)
    print(f"matmul: {results['matmul_flops'] / 1e9:.0f} GFLOP/s", flush=True)
    python = None if args.no_nt else nt_python()
    for name in args.models:
        model, variables, x_all = model_and_data(name, max(args.sizes))
        fn, params = flax_ntk_fn(model, variables)
        num_params = count_params(variables["params"])
        for n in args.sizes:
            x = x_all[:n]
            row = {"model": name, "n": n, "num_params": num_params}
            ours = time_ours(fn, params, x, "auto", args.repeats, budget)
            plan = plan_ntk(fn, params, x, memory_budget=budget)
            row["phases"] = phases(plan, fn, params, x)
            kernel = ours.pop("kernel")
            row["ours"] = ours
            print(name, n, ours, row["phases"], flush=True)
            if n <= args.jacobian_max_n:
                jac = time_ours(fn, params, x, "jacobian", 1, budget)
                jac["max_rel_diff"] = _rel(jac.pop("kernel"), kernel)
                row["jacobian"] = jac
                print("  jacobian", jac, flush=True)
            if python:
                with tempfile.TemporaryDirectory() as tmp:
                    data = Path(tmp) / "data.npz"
                    export(variables, x, data)
                    model_arg = "lenet5" if name.startswith("lenet5") else name
                    for impl, batch in nt_configs(name, n, num_params, args.nt_memory_gb):
                        r = run_nt(
                            python,
                            data,
                            model_arg,
                            impl,
                            batch,
                            args.nt_memory_gb,
                            args.nt_timeout,
                            1,
                        )
                        if r["status"] != "ok" and batch == 0:  # fall back to nt.batch
                            r = run_nt(
                                python,
                                data,
                                model_arg,
                                impl,
                                max(8, n // 4),
                                args.nt_memory_gb,
                                args.nt_timeout,
                                1,
                            )
                            batch = max(8, n // 4)
                        r["batch_size"] = batch
                        r["repeats"] = 1
                        if r["status"] == "ok":
                            r["max_rel_diff"] = _rel(r.pop("kernel"), kernel)
                        row[f"nt{impl}"] = r
                        print(f"  NT impl {impl}", r, flush=True)
            results["rows"].append(row)
    if args.memory_n and args.device == "cpu":
        results["memory"] = memory_check(
            "lenet5x8", args.memory_n, args.memory_check_budget_gb * 2**30
        )
        print("memory", results["memory"], flush=True)
    results["load_average_end"] = os.getloadavg()[0]
    text = section(results, command)
    print(text)
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    (out_dir / f"ntk_engines-{args.device}-{stamp}.json").write_text(
        json.dumps(results, indent=1, default=float)
    )
    if not args.no_readme:
        write_readme(text, args.device)


if __name__ == "__main__":
    main()
