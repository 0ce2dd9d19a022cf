"""Students trained together (vmap over seeds and temperatures) equal the same students alone.

Equality is checked against two independent computations: the ensemble with one member, and the
library's solo trainer :func:`sdcomplex.train.train` (parameters from its last checkpoint,
metrics from its ``metrics.jsonl``). Initialisation, batch order, step keys and the update rule
are the same, but the batched kernels of the vmapped step (matrix products and means with a
member axis) may sum in another order than the unbatched ones, so the trajectories agree to
float32 rounding, not always bitwise: measured on this CPU, bitwise on some configs and up to
3e-7 relative per parameter after 12 steps on this one. The tests assert a norm-wise relative
difference of at most PARAM_RTOL per parameter array, losses to LOSS_RTOL and accuracies to one
example (a logit at a decision boundary may flip under a rounding-level change).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from run_helpers import mlp_config

from sdcomplex.data import EpochBatcher
from sdcomplex.distill import kd_loss
from sdcomplex.models import create_model, init_variables
from sdcomplex.train import (
    Supervision,
    TrainingDiverged,
    init_train_state,
    load_checkpoint,
    load_run_data,
    make_preprocess,
    train,
)
from sdcomplex.train._ensemble import (
    _make_epoch_keys,
    make_ensemble_step,
    traced_kd_loss,
    train_students,
)

CONFIG = mlp_config(
    8,
    dataset="digits",
    n_per_class=20,
    epochs=2,
    batch_size=32,
    learning_rate=0.05,
    augment=True,
    crop_padding=1,
    eval_batch_size=128,
    eval_train_examples=150,  # of 200: both trainers evaluate the same sample
)
EXACT = ("epoch", "step", "lr")
LOSSES = ("train_loss", "test_loss", "batch_loss")
ACCURACIES = ("train_acc", "test_acc", "batch_acc")
PARAM_RTOL = 1e-6
LOSS_RTOL = 1e-5


def _teacher(seed):
    """A fixed random MLP teacher on digits (8x8x1 inputs, 10 classes) and its forward pass."""
    model = create_model("mlp", 10, hidden_sizes=(12,))
    variables = init_variables(model, seed, (8, 8, 1))

    def apply(v, x):
        return model.apply(v, x, train=False)

    return variables, apply


def _assert_same_member(ens_variables, ens_metrics, variables, metrics):
    for a, b in zip(jax.tree.leaves(ens_variables), jax.tree.leaves(variables), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        rel = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert rel <= PARAM_RTOL, (
            f"relative difference {rel:.2e}, max abs {np.abs(a - b).max():.2e}"
        )
    _assert_same_metrics(ens_metrics, metrics)


def _assert_same_metrics(ens_metrics, metrics):
    n = {"train_acc": len_train(), "test_acc": len_test(), "batch_acc": 1}
    assert len(ens_metrics) == len(metrics)
    for mine, theirs in zip(ens_metrics, metrics, strict=True):
        assert {k: mine[k] for k in EXACT} == {k: theirs[k] for k in EXACT}
        for k in LOSSES + ACCURACIES:
            if theirs[k] is None:
                assert mine[k] is None
            elif k in LOSSES:
                np.testing.assert_allclose(mine[k], theirs[k], rtol=LOSS_RTOL, err_msg=k)
            else:  # batch_acc counts over the epoch's batches: one example of B * steps
                one = 1.0 / (n[k] if k != "batch_acc" else CONFIG.batch_size)
                assert abs(mine[k] - theirs[k]) <= one + 1e-12, k


@functools.cache
def _sizes():
    info = load_run_data(CONFIG).info
    return info.n_train, info.n_test


def len_train():
    return min(_sizes()[0], CONFIG.eval_train_examples)


def len_test():
    return _sizes()[1]


def test_epoch_keys_are_the_batchers_step_keys():
    seeds = (0, 3, 12345)
    keys = _make_epoch_keys(seeds, 4)(5)
    for m, seed in enumerate(seeds):
        batcher = EpochBatcher(100, 10, seed=seed)
        for s in range(4):
            np.testing.assert_array_equal(
                jax.random.key_data(keys[s, m]), jax.random.key_data(batcher.step_key(5, s))
            )


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_traced_kd_loss_equals_kd_loss(alpha):
    rng = np.random.default_rng(1)
    zs = jnp.asarray(rng.normal(size=(7, 5)), jnp.float32)
    zt = jnp.asarray(rng.normal(size=(7, 5)) * 3, jnp.float32)
    y = jnp.asarray(rng.integers(0, 5, 7), jnp.int32)
    for tau in (1.0, 2.5, 4.0):
        expected = jax.jit(lambda a, b, c, t=tau: kd_loss(a, b, c, temperature=t, alpha=alpha))
        traced = jax.jit(lambda a, b, c, t: traced_kd_loss(a, b, c, t, alpha))
        got = traced(zs, zt, y, jnp.float32(tau))
        np.testing.assert_allclose(got, expected(zs, zt, y), rtol=1e-6)
        grads = jax.grad(lambda z, t=tau: traced_kd_loss(z, zt, y, jnp.float32(t), alpha))(zs)
        solo = jax.grad(lambda z, t=tau: kd_loss(z, zt, y, temperature=t, alpha=alpha))(zs)
        np.testing.assert_allclose(grads, solo, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_step_traces_once_for_any_seeds_temperatures_and_supervision():
    model = create_model("mlp", 3, hidden_sizes=(4,))
    teacher = create_model("mlp", 3, hidden_sizes=(6,))
    tx = optax.sgd(0.1, momentum=0.9)
    plain = make_preprocess(mean=(0.0,), std=(1.0,), pixel_max=1.0, augment=False)
    supervision = Supervision(apply=lambda v, x: teacher.apply(v, x))
    ens = make_ensemble_step(model, tx, plain, supervision=supervision)
    rng = np.random.default_rng(2)
    x0 = jnp.zeros((1, 5))
    init = jax.jit(lambda key: model.init(key, x0))
    init_teacher = jax.jit(lambda key: teacher.init(key, x0))
    size = 4  # 2 seeds x 2 temperatures
    for call, seeds in enumerate([(0, 0, 1, 1), (5, 5, 9, 9), (2, 3, 4, 6)]):
        states = jax.tree.map(
            lambda *leaves: jnp.stack(leaves),
            *[init_train_state(init(jax.random.key(s)), tx) for s in seeds],
        )
        sup = init_teacher(jax.random.key(100 + call))  # another teacher each call
        x = rng.normal(size=(size, 6, 5)).astype(np.float32)
        y = rng.integers(0, 3, (size, 6)).astype(np.int32)
        keys = jax.vmap(jax.random.key)(jnp.arange(size))
        temps = jnp.asarray([1.0, 4.0, 1.0, 4.0], jnp.float32) * (call + 1)
        states, running, losses = ens.step(
            states, jnp.zeros((size, 3), jnp.float32), x, y, keys, sup, temps
        )
        assert losses.shape == (size,) and np.all(np.isfinite(losses))
    assert ens.traces() == 1


@pytest.mark.slow
def test_each_member_equals_its_ensemble_of_one():
    seeds = [0, 1, 2]
    together = train_students(CONFIG, seeds)
    assert together.compilations == 1 and together.seeds == tuple(seeds)
    assert together.temperatures is None
    assert len(together.metrics[0]) == CONFIG.epochs + 1
    for m in (0, 2):
        alone = train_students(CONFIG, [seeds[m]])
        _assert_same_member(
            together.variables[m], together.metrics[m], alone.variables[0], alone.metrics[0]
        )
    # independent members: different seeds give different students
    assert not np.array_equal(
        jax.tree.leaves(together.variables[0])[0], jax.tree.leaves(together.variables[1])[0]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("augment", "batching"), [(True, "vmap"), (False, "vmap"), (True, "unroll")]
)
def test_each_member_equals_the_solo_trainer(tmp_path, augment, batching):
    seeds = [0, 1]
    config = CONFIG.replace(augment=augment)
    together = train_students(config, seeds, batching=batching)
    assert together.compilations == 1
    for m, seed in enumerate(seeds):
        solo = train(config.replace(seed=seed), tmp_path / f"seed{seed}", quiet=True)
        variables = load_checkpoint(tmp_path / f"seed{seed}", CONFIG.epochs)
        _assert_same_member(together.variables[m], together.metrics[m], variables, solo.metrics)


@pytest.mark.slow
def test_kd_members_at_two_temperatures_equal_the_solo_trainer(tmp_path):
    teacher, teacher_apply = _teacher(7)
    seeds, temps = [0, 0, 1], [1.0, 4.0, 4.0]
    supervision = Supervision(apply=teacher_apply, variables=lambda epoch: teacher)
    together = train_students(CONFIG, seeds, supervision=supervision, temperatures=temps)
    assert together.compilations == 1
    for m, (seed, tau) in enumerate(zip(seeds, temps, strict=True)):
        run_dir = tmp_path / f"seed{seed}_tau{tau:g}"

        def loss_fn(logits, labels, teacher_logits, tau=tau):
            return kd_loss(logits, teacher_logits, labels, temperature=tau)

        solo_supervision = dataclasses.replace(supervision, loss=loss_fn)
        solo = train(CONFIG.replace(seed=seed), run_dir, quiet=True, supervision=solo_supervision)
        variables = load_checkpoint(run_dir, CONFIG.epochs)
        _assert_same_member(together.variables[m], together.metrics[m], variables, solo.metrics)
    # the temperature matters: same seed, tau 1 vs 4
    assert not np.array_equal(
        jax.tree.leaves(together.variables[0])[0], jax.tree.leaves(together.variables[1])[0]
    )


@pytest.mark.slow
def test_online_supervision_switches_per_epoch_without_recompiling():
    teachers = [_teacher(s) for s in (7, 8)]
    apply = teachers[0][1]
    seen = []

    def variables(epoch):
        seen.append(epoch)
        return teachers[epoch - 1][0]

    online = Supervision(apply=apply, variables=variables)
    together = train_students(CONFIG, [0, 1], supervision=online, temperatures=[4.0, 4.0])
    assert seen == [1, 2] and together.compilations == 1
    offline = Supervision(apply=apply, variables=lambda epoch: teachers[0][0])
    fixed = train_students(CONFIG, [0], supervision=offline, temperatures=[4.0])
    # epoch 1 had the same teacher, epoch 2 another one
    _assert_same_metrics(together.metrics[0][:2], fixed.metrics[0][:2])
    a, b = together.metrics[0][2]["train_loss"], fixed.metrics[0][2]["train_loss"]
    assert abs(a - b) > LOSS_RTOL * abs(b)


TEACHER = Supervision(variables=lambda epoch: None)
WITH_LOSS = dataclasses.replace(TEACHER, loss=kd_loss)
WITH_DIAG = dataclasses.replace(TEACHER, diagnostics=lambda info: {})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": []}, "non-empty sequence"),
        ({"seeds": [0, -1]}, r"integer in \[0, 2\*\*31\)"),
        ({"seeds": [0, True]}, "integer"),
        ({"seeds": [0, 1], "temperatures": [1.0]}, "one temperature per member"),
        ({"seeds": [0], "temperatures": [0.0]}, "finite number > 0"),
        ({"seeds": [0], "temperatures": [1.0], "alpha": 1.5}, r"alpha must lie in \[0, 1\]"),
        ({"seeds": [0], "alpha": 0.5}, r"alpha weighs .* no KD \(no temperatures\)"),
        ({"seeds": [0], "temperatures": [1.0]}, "KD needs a supervision"),
        ({"seeds": [0], "batching": "pmap"}, "batching must be one of"),
        ({"seeds": [0], "supervision": TEACHER}, "KD needs a supervision .* one temperature"),
        ({"seeds": [0], "temperatures": [1.0], "supervision": Supervision()}, "needs variables"),
        ({"seeds": [0], "temperatures": [1.0], "supervision": WITH_LOSS}, "no loss or diagn"),
        ({"seeds": [0], "temperatures": [1.0], "supervision": WITH_DIAG}, "no loss or diagn"),
    ],
)
def test_bad_members_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_students(CONFIG, **kwargs)


@pytest.mark.slow
def test_a_diverging_member_stops_the_run_naming_its_seed():
    config = CONFIG.replace(learning_rate=1e8, momentum=0.0, weight_decay=0.0, epochs=1)
    with pytest.raises(TrainingDiverged, match="seed 3 is nan") as info:
        train_students(config, [3])
    assert info.value.epoch == 1


def test_config_must_be_a_train_config():
    with pytest.raises(TypeError, match="TrainConfig"):
        train_students(CONFIG.to_dict(), [0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="temperatures must be a sequence"):
        train_students(CONFIG, [0], temperatures=4.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="supervision must be a Supervision"):
        train_students(CONFIG, [0], supervision=int, temperatures=[1.0])  # type: ignore[arg-type]
