"""C1/C2 complexities against an explicit-Jacobian float64 recomputation, and the C5 bound rows
against a feature-space interpolant (their terms are those of
:func:`sdcomplex.complexity.margin_bound`, tested in tests/complexity)."""

import math

import jax
import numpy as np
import pytest
from flax import traverse_util

from sdcomplex.data import balanced_subset, normalised_arrays
from sdcomplex.models import create_model
from sdcomplex.reproduce import read_csv
from sdcomplex.reproduce._margin import bound_rows
from sdcomplex.train import load_checkpoint, load_run_data

pytest_plugins = ["reproduce_helpers"]  # the shared tiny run and its fixtures


def _explicit_mean_ntk(model, variables, x):
    """(1/C) sum_c J_c J_c^T from the full Jacobian, in float64."""
    params = variables["params"]

    def f(p):
        return model.apply({**variables, "params": p}, x, train=False)

    jac = jax.jacobian(f)(params)  # leaves (n, C, *shape)
    flat = traverse_util.flatten_dict(jac)
    n, c = x.shape[0], f(params).shape[1]
    j = np.concatenate([np.asarray(v, np.float64).reshape(n, c, -1) for v in flat.values()], -1)
    return np.einsum("icp,jcp->ij", j, j) / c


def test_label_complexity_matches_explicit_jacobian(tiny_run, tiny_config):
    spec = tiny_config.complexity
    data = balanced_subset(load_run_data(tiny_config.student), spec.n_per_class, seed=0)
    x = normalised_arrays(data).x_train
    model = create_model("mlp", 10, hidden_sizes=(16,))
    variables = load_checkpoint(tiny_run / "runs/students/none/seed0", 0)
    k = _explicit_mean_ntk(model, variables, x)
    y = np.eye(10)[data.y_train]
    s = float(np.trace(y.T @ np.linalg.solve(k, y)))
    rows = read_csv(tiny_run / "results" / "complexity.csv")
    row = next(
        r for r in rows if r["kernel"] == "init" and r["targets"] == "labels" and not r["residual"]
    )
    assert row["n"] == len(x) == 10 * spec.n_per_class
    assert row["value"] == pytest.approx(s, rel=1e-3)
    assert row["adjusted"] == pytest.approx(math.sqrt(s * np.trace(k)) / len(x), rel=1e-3)
    # every configured target appears for every kernel, residual only for the initial NTK
    kernels = {r["kernel"] for r in rows}
    assert kernels == {"init", "trained_none", "trained_online_t4"}
    assert {r["kernel"] for r in rows if r["residual"]} == {"init"}
    final = [r for r in rows if r["targets"] == "teacher_final" and r["kernel"] == "init"]
    assert sorted({r["temperature"] for r in final}) == list(spec.temperatures)
    traj = {r["teacher_epoch"] for r in rows if r["targets"] == "teacher_checkpoint"}
    assert traj == set(range(1, tiny_config.teacher.epochs + 1))


def test_initial_student_is_the_trainers_initialisation(tiny_run):
    from sdcomplex.reproduce._models import initial_student

    model = create_model("mlp", 10, hidden_sizes=(16,))
    for seed in (0, 1):
        saved = load_checkpoint(tiny_run / "runs/students/online_t4" / f"seed{seed}", 0)
        fresh = initial_student(model, seed, (40,))
        leaves = zip(jax.tree.leaves(saved), jax.tree.leaves(fresh), strict=True)
        assert all(np.array_equal(a, b) for a, b in leaves)


def _problem(seed=0, n=40, n_test=30, d=60):
    rng = np.random.default_rng(seed)
    feats, feats_test = rng.normal(size=(n, d)), rng.normal(size=(n_test, d))
    w = rng.normal(size=d)
    y = np.where(feats @ w > 0, 1.0, -1.0)
    y_test = np.where(feats_test @ w > 0, 1.0, -1.0)
    y_star = np.tanh(feats @ w / 4 + 0.3 * rng.normal(size=n))
    return feats, feats_test, y, y_test, y_star


def test_bound_rows_are_the_feature_space_interpolants_errors_and_margins():
    # the terms are margin_bound's (tests/complexity); the interpolant and its errors are the
    # runner's: the min-norm interpolant in feature space, w = pinv(Phi) y*
    feats, feats_test, y, y_test, y_star = _problem()
    k, k_test = feats @ feats.T, feats_test @ feats.T
    gammas = (0.05, 0.2, 0.5)
    rows = bound_rows(k, k_test, y_star, y, y_test, gammas=gammas, delta=0.05)
    w = np.linalg.lstsq(feats, y_star, rcond=None)[0]
    f_train, f_test = feats @ w, feats_test @ w
    for row, gamma in zip(rows, gammas, strict=True):
        assert row["gamma"] == gamma and row["delta_per_gamma"] == pytest.approx(0.05 / 3)
        assert row["margin_loss"] == np.mean(y * f_train <= gamma)
        assert row["test_error"] == np.mean(y_test * f_test <= 0)
        assert row["train_error"] == np.mean(y * f_train <= 0)
        # s(y*) = y*^T (Phi Phi^T)^-1 y* = |w|^2; B is sqrt(s) rounded up to a power of 2
        assert row["supervision_complexity"] == pytest.approx(w @ w, rel=1e-9)
        assert math.sqrt(w @ w) <= row["rkhs_norm"] < 2 * math.sqrt(w @ w)
    assert sum(r["best"] for r in rows) == 1
    assert next(r for r in rows if r["best"])["bound"] == min(r["bound"] for r in rows)


def test_bound_stage_rows_are_consistent(tiny_run, tiny_config):
    rows = read_csv(tiny_run / "results" / "bound.csv")
    spec = tiny_config.bound
    teacher = [r for r in rows if r["targets"] == "teacher"]
    points = {(r["teacher_epoch"], r["temperature"]) for r in teacher}
    epochs = range(1, tiny_config.teacher.epochs + 1)
    assert points == {(e, t) for e in epochs for t in spec.temperatures}
    for point in points:
        mine = [r for r in teacher if (r["teacher_epoch"], r["temperature"]) == point]
        assert [r["gamma"] for r in mine] == list(spec.gammas)
        assert sum(r["best"] for r in mine) == 1
        for r in mine:
            total = r["margin_loss"] + r["complexity_term"] + r["confidence_term"]
            assert r["bound"] == pytest.approx(total, rel=1e-12)
            assert r["complexity_term"] * r["gamma"] == pytest.approx(
                2 * r["rkhs_norm"] * math.sqrt(r["trace"]) / r["n"], rel=1e-12
            )
            assert r["delta_per_gamma"] == pytest.approx(spec.delta / len(spec.gammas))
            assert r["n"] == 2 * spec.n_per_class and r["n_test"] == 2 * spec.n_test_per_class
    labels = [r for r in rows if r["targets"] == "labels"]
    assert all(r["margin_loss"] == 0.0 and r["train_error"] == 0.0 for r in labels)
