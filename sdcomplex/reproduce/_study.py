"""The stages of the C3 study (:class:`~sdcomplex.reproduce.StudySpec`): teachers, students, C2.

* ``study/teacher/<recipe>``: each recipe with its own teacher config trains it into
  ``runs/study/teachers/<recipe>`` (a checkpoint every epoch); the recipe without one uses the
  experiment's ``teacher`` stage (``runs/teacher``).
* ``study/<capacity>/none`` and ``study/<capacity>/<recipe>/<offline|online>``: one group of
  students each, trained together by :func:`sdcomplex.train.train_students` (one compiled step
  per group: its members are the seeds, times the temperatures for KD). Member (seed s,
  temperature tau) follows the run :func:`sdcomplex.distill.distill` does for
  ``DistillConfig(student=capacity.student(...).replace(seed=s), mode=..., temperature=tau,
  alpha, stride)``: the same teacher forward pass on the same batches, the same schedule
  (:func:`sdcomplex.distill.online_schedule`), the same loss (``tests/reproduce/test_study.py``
  checks it). Each group writes ``runs/study/<capacity>/<group>.json``: every member's metrics
  per epoch, the schedule, the compilation count and the time.
* ``study/complexity``: the C2 curve of each recipe: adjusted complexity sqrt(s(Y) tr K) / n of
  each checkpoint's soft targets (every study temperature) and of the labels, w.r.t. the
  initial NTK (seed ``ntk_seed``) of every capacity the recipe teaches, on a class-balanced
  training subset; ``results/study_c2.csv``. A kernel of rank below n (a linear student has
  at most as many as its parameters) is projected onto the PSD cone (its round-off removed,
  ``psd_removed``) and solved with the pseudo-inverse: its complexity is that of the targets'
  part in the kernel's range (``rank`` < ``n`` in the row).

The analysis (paired intervals, verdicts, tables) is :mod:`._study_analysis`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sdcomplex import targets as tg
from sdcomplex.complexity import factorize_kernel
from sdcomplex.data import balanced_subset
from sdcomplex.reproduce._models import (
    build_model,
    checkpoint_logits,
    initial_student,
    kernel,
    model_inputs,
    trajectory,
)
from sdcomplex.reproduce._results import write_csv, write_json
from sdcomplex.reproduce._stage import Context, Layout, Stage, run_dir_outputs, stop_on_signal
from sdcomplex.reproduce._study_config import StudentCapacity, StudySpec, TeacherRecipe
from sdcomplex.train import (
    EnsembleResult,
    Supervision,
    TrainConfig,
    load_run_data,
    read_metrics,
    train,
    train_students,
)

KD_MODES = ("offline", "online")
C2_COLUMNS = (
    "recipe",
    "capacity",
    "targets",
    "temperature",
    "teacher_epoch",
    "teacher_test_acc",
    "adjusted",
    "value",
    "trace",
    "n",
    "jitter",
    "rank",
    "psd_removed",
)


def study_root(layout: Layout) -> Path:
    """``runs/study`` of an output directory: the study's teachers and student groups."""
    return layout.root / "runs" / "study"


def recipe_teacher_dir(layout: Layout, recipe: TeacherRecipe) -> Path:
    """The run directory of a recipe's teacher."""
    if recipe.teacher is None:
        return layout.teacher
    return study_root(layout) / "teachers" / recipe.name


def recipe_teacher(config: Any, recipe: TeacherRecipe) -> TrainConfig:
    """A recipe's teacher config (the experiment's own for a recipe without one)."""
    return config.teacher if recipe.teacher is None else recipe.teacher


def group_key(capacity: StudentCapacity, mode: str, recipe: TeacherRecipe | None) -> str:
    """``study/<capacity>/none`` or ``study/<capacity>/<recipe>/<mode>``."""
    if mode == "none":
        return f"study/{capacity.name}/none"
    assert recipe is not None
    return f"study/{capacity.name}/{recipe.name}/{mode}"


def group_file(layout: Layout, key: str) -> Path:
    """The result file of a student group (``runs/study/<capacity>/<group>.json``)."""
    parts = key.split("/")[1:]
    return study_root(layout).joinpath(parts[0], "_".join(parts[1:]) + ".json")


def members(spec: StudySpec, mode: str) -> tuple[list[int], list[float] | None]:
    """A group's member seeds and temperatures: the seeds (no KD), or every temperature times
    every seed (KD; temperature-major)."""
    if mode == "none":
        return list(spec.seeds), None
    seeds = [s for _ in spec.temperatures for s in spec.seeds]
    temps = [t for t in spec.temperatures for _ in spec.seeds]
    return seeds, temps


def train_group(
    student: TrainConfig,
    spec: StudySpec,
    mode: str,
    teacher_dir: str | Path | None,
) -> tuple[EnsembleResult, tuple[int, ...] | None]:
    """Trains one group of students together: ``(result, schedule)``.

    Args:
        student: the capacity's student config (its seed is replaced per member).
        spec: the study (seeds, temperatures, alpha, stride, batching).
        mode: ``"none"``, ``"offline"`` or ``"online"``.
        teacher_dir: the teacher's run directory (KD modes).

    Returns:
        The :class:`~sdcomplex.train.EnsembleResult` (members as :func:`members`) and the
        teacher checkpoint per student epoch (None without KD).
    """
    from sdcomplex.distill._teacher import (
        CheckpointCache,
        ScheduledTeacher,
        make_teacher_apply,
        open_teacher,
        teacher_input_map,
        teacher_schedule,
    )

    seeds, temps = members(spec, mode)
    if mode == "none":
        return train_students(student, seeds, batching=spec.batching), None
    if teacher_dir is None:
        raise ValueError(f"mode {mode!r} needs a teacher directory")
    teacher = open_teacher(teacher_dir)
    info = load_run_data(student).info
    schedule = teacher_schedule(teacher, student, info, mode, stride=spec.stride)
    assert schedule is not None  # (a KD mode)
    apply = make_teacher_apply(teacher.model, teacher_input_map(teacher, student, info))
    variables = ScheduledTeacher(CheckpointCache(teacher.run_dir), schedule)
    result = train_students(
        student,
        seeds,
        supervision=Supervision(apply=apply, variables=variables),
        temperatures=temps,
        alpha=spec.alpha,
        batching=spec.batching,
    )
    return result, schedule


def _pct(values: list[float]) -> str:
    return f"{100 * float(np.mean(values)):.2f} ± {100 * float(np.std(values, ddof=1)):.2f} %"


def make_group_runner(capacity: StudentCapacity, mode: str, recipe: TeacherRecipe | None):
    """The stage function of one student group (writes :func:`group_file`)."""

    def run_group(ctx: Context) -> dict[str, Any]:
        spec = ctx.config.study
        assert spec is not None
        student = capacity.student(ctx.config.student)
        teacher_dir = None if recipe is None else recipe_teacher_dir(ctx.layout, recipe)
        result, schedule = train_group(student, spec, mode, teacher_dir)
        key = group_key(capacity, mode, recipe)
        rows = [
            {"seed": seed, "temperature": tau, "metrics": metrics}
            for seed, tau, metrics in zip(
                result.seeds,
                result.temperatures or (None,) * len(result.seeds),
                result.metrics,
                strict=True,
            )
        ]
        write_json(
            group_file(ctx.layout, key),
            {
                "group": key,
                "capacity": capacity.to_dict(),
                "recipe": None if recipe is None else recipe.name,
                "mode": mode,
                "student": student.to_dict(),
                "schedule": None if schedule is None else list(schedule),
                "batching": spec.batching,
                "compilations": result.compilations,
                "train_time_s": result.train_time_s,
                "eval_time_s": result.eval_time_s,
                "members": rows,
            },
        )
        last = [m[-1]["test_acc"] for m in result.metrics]
        return {
            "members": len(rows),
            "compilations": result.compilations,
            "text": f"{len(rows)} students, test acc {_pct(last)}, "
            f"{result.compilations} compilation(s)",
        }

    return run_group


def make_teacher_runner(recipe: TeacherRecipe):
    """The stage function training a recipe's own teacher."""

    def run_recipe_teacher(ctx: Context) -> dict[str, Any]:
        assert recipe.teacher is not None
        run_dir = recipe_teacher_dir(ctx.layout, recipe)
        with ctx.training_output():
            result = train(recipe.teacher, run_dir, quiet=ctx.quiet)
        stop_on_signal(result, f"teacher of recipe {recipe.name}")
        last = read_metrics(run_dir)[-1]
        return {"test_acc": last["test_acc"], "text": f"test acc {last['test_acc']:.4f}"}

    return run_recipe_teacher


def capacity_groups(
    spec: StudySpec, capacity: StudentCapacity
) -> list[tuple[str, TeacherRecipe | None]]:
    """The (mode, recipe) groups of students of one capacity: no KD, then offline and online KD
    from each recipe that teaches it."""
    groups: list[tuple[str, TeacherRecipe | None]] = [("none", None)]
    groups += [
        (mode, r) for r in spec.recipes if capacity in spec.capacities_of(r) for mode in KD_MODES
    ]
    return groups


def _group_stage(
    config: Any,
    capacity: StudentCapacity,
    mode: str,
    recipe: TeacherRecipe | None,
    hashes: dict[str, str],
    version: int,
) -> Stage:
    spec: StudySpec = config.study
    seeds, temps = members(spec, mode)
    payload = {
        "version": version,
        "student": capacity.student(config.student).to_dict(),
        "seeds": seeds,
        "temperatures": temps,
        "mode": mode,
        "teacher": None if recipe is None else hashes[recipe.name],
        "alpha": spec.alpha,
        "stride": spec.stride,
        "batching": spec.batching,
    }
    where = "no KD" if recipe is None else f"{mode} KD from the {recipe.name} teacher"
    return Stage(
        group_key(capacity, mode, recipe),
        f"study students {capacity.name}, {where} ({len(seeds)} together)",
        payload,
        make_group_runner(capacity, mode, recipe),
    )


def study_stages(config: Any, version: int) -> list[Stage]:
    """The study's training and C2 stages, in order (the analysis stage is added by the plan).

    Payloads: each group's student config, members, mode, KD options and its teacher's config
    hash; the C2 stage's the spec and every recipe teacher's hash.
    """
    spec: StudySpec = config.study
    layout = Layout(Path())
    stages: list[Stage] = []
    hashes = {r.name: recipe_teacher(config, r).hash() for r in spec.recipes}
    for recipe in spec.recipes:
        if recipe.teacher is not None:
            stages.append(
                Stage(
                    f"study/teacher/{recipe.name}",
                    f"study teacher {recipe.teacher.model} ({recipe.name} recipe)",
                    {"teacher": recipe.teacher.to_dict()},
                    make_teacher_runner(recipe),
                    **run_dir_outputs(recipe_teacher_dir(layout, recipe)),
                )
            )
    for capacity in spec.capacities:
        stages += [
            _group_stage(config, capacity, mode, recipe, hashes, version)
            for mode, recipe in capacity_groups(spec, capacity)
        ]
    stages.append(
        Stage(
            "study/complexity",
            "study: C2 curve of each teacher recipe",
            {"version": version, "study": spec.to_dict(), "teachers": hashes},
            run_study_complexity,
        )
    )
    return stages


def _initial_kernel(config: Any, capacity: StudentCapacity, x: np.ndarray, subset: Any) -> Any:
    """The factorised initial NTK (seed ``ntk_seed``) of a capacity's student on ``x``."""
    spec = config.study
    model = build_model(capacity.student(config.student), subset.info.num_classes)
    variables = initial_student(model, spec.ntk_seed, subset.info.input_shape)
    k = kernel(
        model, variables, x, outputs=spec.ntk_outputs, implementation=spec.ntk_implementation
    )
    # a small student's NTK may be singular on n examples (a linear model's has rank <= its
    # input size + 1): the projection only sets its negative round-off eigenvalues to zero, so
    # the complexity of targets outside the kernel's range is set by the positive round-off
    # ones (huge and meaningless: the README's study section says so; ``rank`` counts them)
    return factorize_kernel(k, psd="project")


def _complexity_row(meta: dict[str, Any], r: Any) -> dict[str, Any]:
    return {
        "temperature": None,
        "teacher_epoch": None,
        "teacher_test_acc": None,
        **meta,
        "adjusted": r.adjusted,
        "value": r.value,
        "trace": r.trace,
        "n": r.n,
        "jitter": r.jitter,
        "rank": r.rank,
        "psd_removed": r.psd_removed,
    }


def run_study_complexity(ctx: Context) -> dict[str, Any]:
    """The C2 curves of the recipes (``results/study_c2.csv``; see the module docstring)."""
    config, spec = ctx.config, ctx.config.study
    assert spec is not None
    dataset = load_run_data(config.student)
    num_classes = dataset.info.num_classes
    subset = balanced_subset(dataset, spec.n_per_class, seed=spec.subset_seed)
    x, _ = model_inputs(subset, config.student)
    labels = tg.one_hot(subset.y_train, num_classes).values
    factorized: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for recipe in spec.recipes:
        run_dir = recipe_teacher_dir(ctx.layout, recipe)
        epochs = trajectory(run_dir, 1)
        teacher_model = build_model(recipe_teacher(config, recipe), num_classes)
        logits = checkpoint_logits(run_dir, teacher_model, epochs, {"x": x})
        test_acc = {m["epoch"]: m["test_acc"] for m in read_metrics(run_dir)}
        target_sets: list[tuple[dict[str, Any], np.ndarray]] = [({"targets": "labels"}, labels)]
        for epoch in epochs:
            for tau in spec.temperatures:
                meta = {
                    "targets": "teacher_checkpoint",
                    "temperature": tau,
                    "teacher_epoch": epoch,
                    "teacher_test_acc": test_acc.get(epoch),
                }
                target_sets.append((meta, tg.soft_targets(logits[epoch]["x"], tau).values))
        for capacity in spec.capacities_of(recipe):
            if capacity.name not in factorized:
                factorized[capacity.name] = _initial_kernel(config, capacity, x, subset)
            where = {"recipe": recipe.name, "capacity": capacity.name}
            for meta, values in target_sets:
                r = factorized[capacity.name].complexity(values)
                rows.append(_complexity_row({**where, **meta}, r))
    write_csv(ctx.layout.results / "study_c2.csv", rows, C2_COLUMNS)
    return {"rows": len(rows), "text": f"{len(rows)} complexities, n = {len(labels)}"}
