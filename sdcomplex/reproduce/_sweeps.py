"""Claims C1 and C2: supervision complexity against temperature and teacher checkpoint.

On a class-balanced subset X (n examples) of the training split, for each kernel (the student's
NTK at initialisation and after training), the stage computes the supervision complexity of:

* ``labels``: one-hot true labels;
* ``random_labels``: one-hot labels drawn uniformly at random;
* ``teacher_final``: soft targets softmax(z_T / tau) of the final teacher, for every tau of
  ``ComplexitySpec.temperatures`` (C1);
* ``teacher_checkpoint``: soft targets of every teacher checkpoint e >= 1 (with the stride) at
  every tau of ``ComplexitySpec.trajectory_temperatures`` (C2).

Targets are not centred. Each row records s(Y), the adjusted complexity sqrt(s tr K) / n, the
trace, the jitter added and the solve method; with ``residual`` the rows against the initial NTK
are repeated for residual targets Y - f(theta_0, X).

Outputs: ``results/complexity.csv`` (one row per kernel, target set and residual flag) and
``results/complexity.json`` (the same rows plus the kernels' descriptions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sdcomplex import targets as tg
from sdcomplex.complexity import factorize_kernel
from sdcomplex.data import balanced_subset
from sdcomplex.reproduce._models import (
    build_model,
    checkpoint_logits,
    initial_student,
    kernel,
    logits_fn,
    model_inputs,
    trajectory,
)
from sdcomplex.reproduce._results import write_csv, write_json
from sdcomplex.reproduce._stage import Context
from sdcomplex.reproduce._training import distillation_spec
from sdcomplex.train import list_checkpoints, load_checkpoint, load_run_data, read_metrics

COLUMNS = (
    "kernel",
    "kernel_label",
    "targets",
    "temperature",
    "teacher_epoch",
    "residual",
    "value",
    "adjusted",
    "trace",
    "n",
    "jitter",
    "condition_number",
    "solve_method",
    "teacher_subset_acc",
    "teacher_test_acc",
)


def kernel_label(name: str, config: Any) -> str:
    """Legend text of a kernel name (``init`` or ``trained_<method>``)."""
    if name == "init":
        return "student NTK at init"
    key = name.removeprefix("trained_")
    label = distillation_spec(config).method(key).label
    return f"student NTK after training ({label})"


def run_complexity(ctx: Context) -> dict[str, Any]:
    """The C1/C2 stage (see the module docstring)."""
    config = ctx.config
    spec = config.complexity
    assert spec is not None
    dataset = load_run_data(config.student)
    num_classes = dataset.info.num_classes
    subset = balanced_subset(dataset, spec.n_per_class, seed=spec.subset_seed)
    x, _ = model_inputs(subset, config.student)
    y = subset.y_train
    n = len(y)

    teacher_model = build_model(config.teacher, num_classes)
    epochs = trajectory(ctx.layout.teacher, spec.trajectory_stride)
    logits = checkpoint_logits(ctx.layout.teacher, teacher_model, epochs, {"x": x})
    test_acc = {m["epoch"]: m["test_acc"] for m in read_metrics(ctx.layout.teacher)}
    final = epochs[-1]

    target_sets: list[tuple[dict[str, Any], np.ndarray]] = [
        ({"targets": "labels"}, tg.one_hot(y, num_classes).values),
        (
            {"targets": "random_labels"},
            tg.random_labels(n, num_classes, seed=spec.random_labels_seed).values,
        ),
    ]

    def teacher_row(epoch: int) -> dict[str, Any]:
        z = logits[epoch]["x"]
        return {
            "teacher_epoch": epoch,
            "teacher_subset_acc": float(np.mean(np.argmax(z, 1) == y)),
            "teacher_test_acc": test_acc.get(epoch),
        }

    for tau in spec.temperatures:
        meta = {"targets": "teacher_final", "temperature": tau, **teacher_row(final)}
        target_sets.append((meta, tg.soft_targets(logits[final]["x"], tau).values))
    for epoch in epochs:
        for tau in spec.trajectory_temperatures:
            meta = {"targets": "teacher_checkpoint", "temperature": tau, **teacher_row(epoch)}
            target_sets.append((meta, tg.soft_targets(logits[epoch]["x"], tau).values))

    student_model = build_model(config.student, num_classes)
    seed = spec.student_seed
    # the initial NTK: the students' initialisation for this seed (the same for every method),
    # recomputed exactly as the trainer does, so students may keep only their last checkpoints
    kernels: dict[str, Any] = {"init": None}
    for key in spec.trained_students:
        kernels[f"trained_{key}"] = key

    rows: list[dict[str, Any]] = []
    described: dict[str, Any] = {}
    bar = tqdm(total=len(kernels), desc="student kernels", unit="kernel", disable=ctx.quiet)
    for name, method_key in kernels.items():
        if method_key is None:
            run, epoch = None, 0
            variables = initial_student(student_model, seed, subset.info.input_shape)
        else:
            run_dir = ctx.layout.student(method_key, seed)
            run, epoch = str(run_dir.relative_to(ctx.layout.root)), list_checkpoints(run_dir)[-1]
            variables = load_checkpoint(run_dir, epoch)
        k = kernel(
            student_model,
            variables,
            x,
            outputs=spec.ntk_outputs,
            implementation=spec.ntk_implementation,
        )
        factorized = factorize_kernel(k)
        label = kernel_label(name, config)
        described[name] = {
            "label": label,
            "run": run,
            "epoch": epoch,
            "outputs": spec.ntk_outputs,
            "trace": factorized.trace,
            "n": n,
        }
        offsets: list[np.ndarray | None] = [None]
        if spec.residual and name == "init":
            offsets.append(logits_fn(student_model)(variables, x))
        for offset in offsets:
            for meta, values in target_sets:
                r = factorized.complexity(values, offset=offset)
                rows.append(
                    {
                        "kernel": name,
                        "kernel_label": label,
                        "temperature": None,
                        "teacher_epoch": None,
                        "teacher_subset_acc": None,
                        "teacher_test_acc": None,
                        **meta,
                        "residual": offset is not None,
                        "value": r.value,
                        "adjusted": r.adjusted,
                        "trace": r.trace,
                        "n": r.n,
                        "jitter": r.jitter,
                        "condition_number": r.condition_number,
                        "solve_method": r.method,
                    }
                )
        bar.update(1)
    bar.close()

    results = ctx.layout.results
    write_csv(results / "complexity.csv", rows, COLUMNS)
    write_json(
        results / "complexity.json",
        {
            "description": (
                "adjusted supervision complexity sqrt(s(Y) tr K) / n of labels, random labels "
                "and teacher soft targets softmax(z / tau) (not centred) w.r.t. the student's "
                f"{spec.ntk_outputs} NTK"
            ),
            "n": n,
            "num_classes": num_classes,
            "subset": {"n_per_class": spec.n_per_class, "seed": spec.subset_seed},
            "teacher_epochs": epochs,
            "kernels": described,
            "rows": rows,
        },
    )
    init_soft = [
        r
        for r in rows
        if r["kernel"] == "init" and r["targets"] == "teacher_final" and not r["residual"]
    ]
    return {
        "rows": len(rows),
        "text": (
            f"{len(rows)} complexities, n = {n}; init NTK: tau {init_soft[0]['temperature']:g} "
            f"-> {init_soft[0]['adjusted']:.3g}, tau {init_soft[-1]['temperature']:g} -> "
            f"{init_soft[-1]['adjusted']:.3g}"
        ),
    }
