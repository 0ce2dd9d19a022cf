"""A one-minute tour: supervision complexity of labels, random labels and soft targets.

On scikit-learn's embedded digits (no download), computes the mean empirical NTK of a small
randomly initialised MLP on a class-balanced training subset, then the adjusted supervision
complexity of: the true labels, random labels, and soft targets softmax(z / tau) of a
multinomial logistic-regression "teacher" fitted with optax, at several temperatures.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdcomplex import targets as tg
from sdcomplex.complexity import factorize_kernel
from sdcomplex.ntk import empirical_ntk, flax_ntk_fn


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Every setting of the demo (recorded with its results)."""

    per_class: int = 50
    hidden: tuple[int, ...] = (256, 256)
    temperatures: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    teacher_steps: int = 300
    teacher_lr: float = 0.05
    seed: int = 0


class _MLP(nn.Module):
    hidden: tuple[int, ...]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


def _digits(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    counts = np.bincount(y, minlength=10)
    if per_class > counts.min():
        raise ValueError(
            f"per_class {per_class} exceeds the {counts.min()} examples of digit "
            f"{counts.argmin()}: at most {counts.min()} per class"
        )
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)]
    )
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    return x[chosen], y[chosen], x[rest], y[rest]


def _fit_teacher(x: np.ndarray, y: np.ndarray, steps: int, lr: float) -> tuple[Any, float]:
    w = {"w": jnp.zeros((x.shape[1], 10)), "b": jnp.zeros(10)}
    opt = optax.adam(lr)
    state = opt.init(w)

    def loss(p: Any) -> jax.Array:
        logits = x @ p["w"] + p["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p: Any, s: Any) -> tuple[Any, Any]:
        g = jax.grad(loss)(p)
        updates, s = opt.update(g, s)
        return optax.apply_updates(p, updates), s

    for _ in range(steps):
        w, state = step(w, state)
    return w, float(loss(w))


def run_demo(config: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Runs the demo and returns its configuration, the teacher's accuracy and a result row per
    target set (name, kind, value s, adjusted complexity, jitter, method)."""
    x_tr, y_tr, x_te, y_te = _digits(config.per_class, config.seed)
    model = _MLP(config.hidden, 10)
    variables = model.init(jax.random.key(config.seed), x_tr[:1])
    fn, params = flax_ntk_fn(model, variables)
    kernel = empirical_ntk(fn, params, x_tr, outputs="mean")
    factorized = factorize_kernel(kernel)
    teacher, _ = _fit_teacher(x_te, y_te, config.teacher_steps, config.teacher_lr)
    logits = np.asarray(x_tr @ teacher["w"] + teacher["b"])
    teacher_acc = float(np.mean(np.argmax(logits, 1) == y_tr))
    sets: list[tuple[str, tg.Targets]] = [
        ("labels", tg.one_hot(y_tr, 10)),
        ("random labels", tg.random_labels(len(y_tr), 10, seed=config.seed)),
    ]
    sets += [(f"teacher soft, tau={t:g}", tg.soft_targets(logits, t)) for t in config.temperatures]
    rows = []
    for name, targets in sets:
        r = factorized.complexity(targets)
        rows.append(
            {
                "targets": name,
                "kind": targets.kind,
                "value": r.value,
                "adjusted": r.adjusted,
                "jitter": r.jitter,
                "method": r.method,
            }
        )
    return {
        "config": dataclasses.asdict(config),
        "n": int(len(y_tr)),
        "kernel_trace": factorized.trace,
        "teacher_train_accuracy": teacher_acc,
        "rows": rows,
    }
