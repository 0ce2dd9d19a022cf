"""The NTK and the matrix-free complexity over a device mesh (``mesh=``).

One subprocess with four simulated CPU devices (the device count is fixed when JAX starts) runs
every check and prints JSON: float64 kernels of every implementation and form, symmetric and
x1/x2, of a pure function (against the closed-form NTK of a one-hidden-layer tanh network) and
of a small Flax model with BatchNorm statistics (against its one-device kernel), with example
counts no block divides; that the features and Gram blocks really are split over the devices;
and the matrix-free solve (every CG iterate) and trace on four devices against one device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from device_helpers import run_on_devices, run_processes

from sdcomplex.ntk import empirical_ntk, ntk_vector_product, supervision_complexity_matfree
from sdcomplex.placement import make_placement

RTOL = 1e-6
"""Relative tolerance (of the largest entry) between mesh and one-device kernels, in float64."""


_MODELS = """
import numpy as np, jax, jax.numpy as jnp, flax.linen as nn

def tanh_net(p, x):
    return jnp.tanh(x @ p["w1"] + p["b"]) @ p["w2"]

def tanh_params(rng, d=5, h=6, c=3):
    return {"w1": jnp.asarray(rng.normal(size=(d, h)) / np.sqrt(d)),
            "b": jnp.asarray(rng.normal(size=(h,))),
            "w2": jnp.asarray(rng.normal(size=(h, c)) / np.sqrt(h))}

def closed_form(p, x1, x2):
    # Theta_cd(x, x') = delta_cd h.h' + sum_k W2_kc W2_kd s_k s'_k (x.x' + 1), s = 1 - h^2.
    w1, b, w2 = (np.asarray(p[k]) for k in ("w1", "b", "w2"))
    h1, h2 = np.tanh(x1 @ w1 + b), np.tanh(x2 @ w1 + b)
    s1, s2 = 1 - h1**2, 1 - h2**2
    first = np.einsum("ik,jk,kc,kd,ij->ijcd", s1, s2, w2, w2, x1 @ x2.T + 1)
    return first + (h1 @ h2.T)[:, :, None, None] * np.eye(w2.shape[1])

class Small(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(6)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(3)(jnp.tanh(x))

def exact_complexity(kernels, y, form, shift):
    n, c = y.shape
    if form == "full":
        theta = kernels["full"].transpose(0, 2, 1, 3).reshape(n * c, n * c)
        return float(y.reshape(-1) @ np.linalg.solve(theta + shift * np.eye(n * c), y.reshape(-1)))
    mats = [kernels["mean"]] * c if form == "mean" else list(kernels["diag"])
    return float(sum(y[:, k] @ np.linalg.solve(m + shift * np.eye(n), y[:, k])
                     for k, m in enumerate(mats)))

def forms(full):
    c = full.shape[-1]
    return {"full": full, "mean": np.trace(full, axis1=2, axis2=3) / c,
            "diag": np.moveaxis(np.diagonal(full, axis1=2, axis2=3), -1, 0)}
"""

_CHECKS = (
    """
import json, time
import numpy as np, jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
"""
    + _MODELS
    + """
import sdcomplex.ntk._api as api
import sdcomplex.ntk._matfree as matfree
from sdcomplex.ntk import (empirical_ntk, flax_ntk_fn, supervision_complexity_matfree,
                           ntk_vector_product)
from sdcomplex.placement import make_placement

p4, p1 = make_placement(), make_placement(num_devices=1)
rng = np.random.default_rng(0)
x1, x2 = rng.normal(size=(10, 5)), rng.normal(size=(7, 5))  # 10 and 7: padded blocks
result = {"devices": p4.num_devices, "kernels": {}}

# Record where the features and blocks of the real computation live.
seen = {"features": set(), "blocks": set(), "shards": set()}
features, contract = api.sharded_features, api.sharded_contract
def spy_features(*args):
    out = features(*args)
    for leaf in jax.tree.leaves(out):
        seen["features"].add((str(tuple(leaf.sharding.spec)[:1]), len(leaf.sharding.device_set)))
        seen["shards"].add(tuple(s.data.shape[0] for s in leaf.addressable_shards))
    return out
def spy_contract(*args):
    out = contract(*args)
    spec = tuple(out.sharding.spec) + (None,) * (out.ndim - len(out.sharding.spec))
    seen["blocks"].add((str(spec), len(out.sharding.device_set)))
    return out
api.sharded_features, api.sharded_contract = spy_features, spy_contract

tanh_p = tanh_params(rng)
model = Small()
variables = model.init(jax.random.key(0), jnp.asarray(x1[:2]))
variables = {"params": jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables["params"]),
             "batch_stats": jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape)),
                                         variables["batch_stats"])}
flax_fn, flax_p = flax_ntk_fn(model, variables)
refs = {
    ("tanh", True): forms(closed_form(tanh_p, x1, x1)),
    ("tanh", False): forms(closed_form(tanh_p, x1, x2)),
    ("flax", True): forms(empirical_ntk(flax_fn, flax_p, x1, outputs="full",
                                        implementation="jacobian", mesh=p1)),
    ("flax", False): forms(empirical_ntk(flax_fn, flax_p, x1, x2, outputs="full",
                                         implementation="jacobian", mesh=p1)),
}
t0 = time.perf_counter()
# The pure function: every form of every implementation, symmetric; x1/x2 (the ring with
# another column block) in one form per implementation. The Flax model (a callable pytree whose
# BatchNorm statistics are replicated with the parameters): every implementation in one form,
# symmetric and x1/x2. Every form is computed x1/x2 by two (model, implementation) pairs.
forms_of = {"tanh": ("mean", "full", "diag"), "flax": ("full", "diag", "mean")}
cross = {"tanh": {"jacobian": "mean", "ntvp": "diag", "structured": "full"},
         "flax": {"jacobian": "full", "ntvp": "mean", "structured": "diag"}}
for name, fn, params in (("tanh", tanh_net, tanh_p), ("flax", flax_fn, flax_p)):
    for impl in ("jacobian", "ntvp", "structured"):
        for out in forms_of[name] if name == "tanh" else (cross[name][impl],):
            for sym in (True, False) if cross[name][impl] == out else (True,):
                k = empirical_ntk(fn, params, x1, None if sym else x2, outputs=out,
                                  implementation=impl, block_size=2, mesh=p4)
                ref = refs[(name, sym)][out]
                err = float(np.max(np.abs(k - ref)) / np.max(np.abs(ref)))
                result["kernels"][f"{name}/{impl}/{out}/{'sym' if sym else 'x1x2'}"] = err
result["kernel_seconds"] = time.perf_counter() - t0
result["seen"] = {k: sorted(map(list, v)) for k, v in seen.items()}

# Matrix-free: record every vector CG multiplies by the kernel, on one and on four devices.
t0 = time.perf_counter()
y = rng.normal(size=(10, 3))
RIDGE = 1.0  # well conditioned: CG amplifies round-off ~10x per step on a poor condition
matvec = matfree._Operator.matvec
result["matfree"] = {}
for out in ("mean", "full", "diag"):
    runs = []
    # One device in 2 blocks of 5; four devices in 1 block of 4 x 3 (2 rows padded).
    for mesh, block in ((p1, 5), (p4, 3)):
        calls = []
        def spy(self, mode, v, calls=calls):
            calls.append(np.array(v))
            return matvec(self, mode, v)
        matfree._Operator.matvec = spy
        r = supervision_complexity_matfree(tanh_net, tanh_p, x1, y, outputs=out, ridge=RIDGE,
                                           block_size=block, trace_samples=4, tol=1e-6,
                                           mesh=mesh)
        matfree._Operator.matvec = matvec
        runs.append((r, calls))
    (a, ca), (b, cb) = runs
    scale = max(float(np.max(np.abs(u))) for u in ca)  # late directions are round-off sized
    steps = [float(np.max(np.abs(u - v))) / scale for u, v in zip(ca, cb)]
    result["matfree"][out] = {
        "iterations": [a.iterations, b.iterations], "calls": [len(ca), len(cb)],
        "iterate_err": max(steps),
        "value": [a.value, b.value], "trace": [a.trace, b.trace],
        "trace_exact": [a.trace_exact, b.trace_exact],
        "residual": [a.relative_residual, b.relative_residual],
        "exact": exact_complexity(forms(closed_form(tanh_p, x1, x1)), y, out, RIDGE * 10),
    }
v = rng.normal(size=(10, 3))
prods = [ntk_vector_product(tanh_net, tanh_p, x1, v, outputs="full", block_size=3, mesh=m)
         for m in (p1, p4)]
full = closed_form(tanh_p, x1, x1)
exact = np.einsum("ijcd,jd->ic", full, v)
result["product_err"] = [float(np.max(np.abs(p - exact)) / np.max(np.abs(exact))) for p in prods]
result["matfree_seconds"] = time.perf_counter() - t0
print(json.dumps(result))
"""
)


@pytest.mark.slow
def test_four_simulated_devices():
    """One subprocess for every check (a JAX start and the compilations are the cost)."""
    result = run_on_devices(_CHECKS, 4)
    assert result["devices"] == 4
    _check_kernels(result["kernels"])
    _check_split(result["seen"])
    _check_matrix_free(result)


def _check_kernels(kernels: dict) -> None:
    assert len(kernels) == 3 * (3 + 1) + 3 * 2  # tanh: forms + one x1/x2; flax: sym + x1/x2
    for form in ("mean", "full", "diag"):
        assert sum(name.endswith(f"{form}/x1x2") for name in kernels) == 2
    worst = {name: err for name, err in kernels.items() if not err <= RTOL}
    assert not worst, worst


def _check_split(seen: dict) -> None:
    # Every feature leaf carries a leading device axis split over "data" on all four devices,
    # one device's block per shard; every Gram block is row-sharded over the four devices.
    assert seen["features"] == [["('data',)", 4]]
    assert seen["shards"] == [[1, 1, 1, 1]]
    specs = {spec for spec, _ in seen["blocks"]}
    assert specs == {
        "('data', None)",  # mean (b1, b2)
        "('data', None, None, None)",  # full (b1, b2, C, C)
        "(None, 'data', None)",  # diag (C, b1, b2)
    }
    assert all(n == 4 for _, n in seen["blocks"])


def _check_matrix_free(result: dict) -> None:
    for form, r in result["matfree"].items():
        assert r["iterations"][0] == r["iterations"][1], form
        assert r["calls"][0] == r["calls"][1] > 1, form
        # Blocking and summation order differ only: every product's input (the CG directions,
        # then the solution) agrees to float64 round-off, relative to the largest. (On an
        # ill-conditioned system CG amplifies round-off about tenfold per iteration, on one
        # device with another block size as much as on four: the ridge keeps this one tame.)
        assert r["iterate_err"] <= 1e-12, form
        np.testing.assert_allclose(r["value"][1], r["value"][0], rtol=1e-12)
        np.testing.assert_allclose(r["trace"][1], r["trace"][0], rtol=1e-12)
        np.testing.assert_allclose(r["trace_exact"][1], r["trace_exact"][0], rtol=1e-12)
        assert r["residual"][1] <= 1e-6
        np.testing.assert_allclose(r["value"][1], r["exact"], rtol=1e-6)  # closed form
    assert max(result["product_err"]) <= 1e-9


def test_mesh_keyword_validates():
    fn = lambda w, x: x @ w  # noqa: E731
    w, x = jnp.ones((3, 2)), np.eye(3, dtype=np.float32)
    with pytest.raises(TypeError, match="mesh must be None, a sdcomplex.placement.Placement"):
        empirical_ntk(fn, w, x, mesh="cpu")
    with pytest.raises(TypeError, match="got int"):
        ntk_vector_product(fn, w, x, np.ones((3, 2)), mesh=4)
    with pytest.raises(TypeError, match="got list"):
        supervision_complexity_matfree(fn, w, x, np.ones((3, 2)), mesh=[jax.devices()[0]])
    two_axes = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("a", "b"))
    with pytest.raises(ValueError, match="one axis"):
        empirical_ntk(fn, w, x, mesh=two_axes)


def test_one_device_mesh_is_the_one_device_kernel():
    fn = lambda w, x: jnp.tanh(x @ w)  # noqa: E731
    w = jnp.asarray(np.linspace(-1.0, 1.0, 6, dtype=np.float32).reshape(3, 2))
    x = np.arange(15, dtype=np.float32).reshape(5, 3) / 10
    default = empirical_ntk(fn, w, x, block_size=2)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("rows",))
    for given in (make_placement(num_devices=1), mesh):
        np.testing.assert_array_equal(empirical_ntk(fn, w, x, block_size=2, mesh=given), default)


_TWO_PROCESS = (
    """
import json, sys
import numpy as np, jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from sdcomplex.placement import make_placement, start_distributed
port, pid = sys.argv[1], int(sys.argv[2])
start_distributed(f"127.0.0.1:{port}", 2, pid, timeout_s=60)
"""
    + _MODELS
    + """
from sdcomplex.ntk import empirical_ntk, supervision_complexity_matfree
rng = np.random.default_rng(0)  # the same full inputs on both processes
x1, x2, y = rng.normal(size=(10, 5)), rng.normal(size=(7, 5)), rng.normal(size=(10, 3))
p = tanh_params(rng)
mean = empirical_ntk(tanh_net, p, x1, outputs="mean", implementation="jacobian", block_size=2)
full = empirical_ntk(tanh_net, p, x1, x2, outputs="full", implementation="structured",
                     block_size=2)
r = supervision_complexity_matfree(tanh_net, p, x1, y, outputs="mean", ridge=1.0, block_size=2,
                                   trace_samples=0, tol=1e-8)
exact = forms(closed_form(p, x1, x1))
print(json.dumps({
    "pid": pid, "devices": make_placement().num_devices,
    "mean_err": float(np.max(np.abs(mean - exact["mean"])) / np.max(np.abs(exact["mean"]))),
    "full_err": float(np.max(np.abs(full - closed_form(p, x1, x2))) / np.max(np.abs(full))),
    "value": r.value, "exact": exact_complexity(exact, y, "mean", 10.0),
    "trace": r.trace, "exact_trace": float(np.trace(exact["mean"])),
    "digest": float(np.sum(mean * np.arange(mean.size).reshape(mean.shape))),
}))
jax.distributed.shutdown()
"""
)


@pytest.mark.slow
def test_two_processes_on_loopback(tmp_path):
    """Two processes of two devices each: every process gets the whole kernel and solve."""
    results = run_processes(_TWO_PROCESS, tmp_path)
    assert [r["devices"] for r in results] == [4, 4]
    assert results[0]["digest"] == results[1]["digest"]  # the same kernel on both processes
    for r in results:
        assert r["mean_err"] <= RTOL and r["full_err"] <= RTOL
        np.testing.assert_allclose(r["value"], r["exact"], rtol=1e-7)
        np.testing.assert_allclose(r["trace"], r["exact_trace"], rtol=1e-12)
