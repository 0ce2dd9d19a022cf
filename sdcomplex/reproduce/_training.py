"""Training stages: the teacher (with a checkpoint every epoch) and the students."""

from __future__ import annotations

from typing import Any

from sdcomplex.reproduce._config import DistillationSpec, ExperimentConfig, StudentMethod
from sdcomplex.reproduce._stage import Context, stop_on_signal
from sdcomplex.train import TrainConfig, read_metrics, train


def student_config(config: ExperimentConfig, seed: int) -> TrainConfig:
    """The student's training config for one seed."""
    return config.student.replace(seed=seed)


def distillation_spec(config: ExperimentConfig) -> DistillationSpec:
    """The experiment's distillation spec; without one (a C1/C2-only experiment), the no-KD
    student whose final NTK the complexity sweep uses, trained without diagnostics."""
    if config.distillation is not None:
        return config.distillation
    assert config.complexity is not None
    return DistillationSpec(
        methods=(StudentMethod("none"),),
        seeds=(config.complexity.student_seed,),
        diagnostics_every=0,
    )


def student_runs(config: ExperimentConfig) -> list[tuple[StudentMethod, int]]:
    """Every (method, seed) student the experiment trains, in training order."""
    if config.distillation is None and config.complexity is None:
        return []  # a C5-only experiment: the kernel student needs no training
    spec = distillation_spec(config)
    runs = [(m, s) for m in spec.methods for s in spec.seeds]
    if config.complexity is not None:
        for key in config.complexity.trained_students:
            pair = (spec.method(key), config.complexity.student_seed)
            if pair not in runs:
                runs.append(pair)
    return runs


def distill_options(config: ExperimentConfig, method: StudentMethod) -> dict[str, Any]:
    """The :class:`sdcomplex.distill.DistillConfig` fields other than ``student`` and
    ``teacher_dir``."""
    spec = distillation_spec(config)
    return {
        "mode": method.mode,
        "teacher_epoch": None,
        "temperature": method.temperature,
        "alpha": spec.alpha,
        "stride": spec.stride,
        "diagnostics_every": spec.diagnostics_every,
        "probe_size": spec.probe_size,
        "probe_seed": spec.probe_seed,
        "random_labels_seed": spec.random_labels_seed,
        "fidelity_examples": spec.fidelity_examples,
    }


def _accuracy_summary(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    trained = [m for m in metrics if m.get("epoch", 0) >= 1] or metrics
    last = trained[-1]
    best = max(trained, key=lambda m: m["test_acc"])
    return {
        "epochs": last["epoch"],
        "test_acc": last["test_acc"],
        "train_acc": last["train_acc"],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "text": f"test acc {last['test_acc']:.4f} (best {best['test_acc']:.4f})",
    }


def run_teacher(ctx: Context) -> dict[str, Any]:
    """Trains (or resumes) the teacher into ``runs/teacher``."""
    with ctx.training_output():
        result = train(
            ctx.config.teacher, ctx.layout.teacher, quiet=ctx.quiet, placement=ctx.placement
        )
    stop_on_signal(result, "teacher")
    return _accuracy_summary(read_metrics(ctx.layout.teacher)) if ctx.writes_files else {}


def make_student_runner(method: StudentMethod, seed: int):
    """The stage function training one student with :func:`sdcomplex.distill.distill`."""

    def run_student(ctx: Context) -> dict[str, Any]:
        from sdcomplex.distill import DistillConfig, distill

        run_dir = ctx.layout.student(method.key, seed)
        dcfg = DistillConfig(
            student=student_config(ctx.config, seed),
            teacher_dir=str(ctx.layout.teacher.resolve()),
            **distill_options(ctx.config, method),
        )
        with ctx.training_output():
            result = distill(dcfg, run_dir, quiet=ctx.quiet, placement=ctx.placement)
        stop_on_signal(result, f"student {method.key} seed {seed}")
        return _accuracy_summary(read_metrics(run_dir)) if ctx.writes_files else {}

    return run_student
