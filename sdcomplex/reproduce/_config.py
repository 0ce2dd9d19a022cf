"""Experiments as configs: one frozen dataclass holding every setting of a reproduction.

An :class:`ExperimentConfig` names a teacher and a student (two
:class:`~sdcomplex.train.TrainConfig`) and up to three analyses:

* :class:`ComplexitySpec` (claims C1 and C2): adjusted supervision complexity of soft targets
  against the temperature and against the teacher's checkpoint epoch, with labels and random
  labels for reference, with respect to the student's NTK at initialisation and after training;
* :class:`DistillationSpec` (claims C3 and C4): students trained without KD, with offline KD and
  with online KD at several temperatures, over several seeds, with per-epoch diagnostics;
* :class:`BoundSpec` (claim C5): the margin bound of a kernel student on a binary task across
  teacher checkpoints and temperatures;

and optionally a :class:`~sdcomplex.reproduce.StudySpec` (claim C3 as a study over student
capacities and teacher recipes, with paired confidence intervals and stated verdict rules).

Configs round-trip through JSON (:meth:`ExperimentConfig.to_dict` / ``from_dict``) and are
identified by :meth:`~ExperimentConfig.hash`; the runner records both with the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdcomplex._config_base import Config, json_hash, option
from sdcomplex._config_kinds import Bool, Choice, Int, Nested, Optional, Real, Text, Tuple
from sdcomplex.complexity._complexity import OUTPUTS
from sdcomplex.distill import MODES, DistillConfig
from sdcomplex.distill._config import DistillSettings
from sdcomplex.reproduce._study_config import StudySpec
from sdcomplex.train import TrainConfig
from sdcomplex.train._config import DATA_FIELDS

SCALES = ("smoke", "quick", "images", "paper")
"""The scales every experiment defines: seconds (tests, CI), minutes on a laptop, real images
(CIFAR-10) within an hour on a 2-core CPU, the paper."""

_POSITIVE = Real(low=0.0, low_open=True)
_SORTED_POSITIVE = Tuple(_POSITIVE, nonempty=True, sort_unique=True)
"""A set of positive numbers, e.g. temperatures: stored sorted, repeats removed."""


@dataclass(frozen=True)
class StudentMethod(Config):
    """One way of supervising the student: a row of the accuracy table.

    Attributes:
        mode: ``"none"`` (cross-entropy with the labels), ``"offline"`` (KD from the final
            teacher) or ``"online"`` (KD from the teacher's checkpoints replayed in order).
        temperature: the KD temperature tau (ignored by the loss in mode ``"none"``, where it
            only sets the temperature of the diagnostics' teacher targets).

    Example:
        >>> StudentMethod("online", 4.0).key, StudentMethod("online", 4.0).label
        ('online_t4', 'online KD (τ=4)')
    """

    mode: str = option(Choice(MODES))
    temperature: float = option(_POSITIVE, 1.0)

    @property
    def key(self) -> str:
        """File-name-safe identifier, e.g. ``none``, ``offline_t1``, ``online_t4``."""
        if self.mode == "none":
            return "none"
        return f"{self.mode}_t{self.temperature:g}".replace(".", "p")

    @property
    def label(self) -> str:
        """Human-readable name for tables and legends."""
        if self.mode == "none":
            return "no KD"
        return f"{self.mode} KD (τ={self.temperature:g})"


PAPER_METHODS = (
    StudentMethod("none"),
    StudentMethod("offline", 1.0),
    StudentMethod("offline", 4.0),
    StudentMethod("online", 1.0),
    StudentMethod("online", 4.0),
)
"""The methods of the paper's accuracy table (PAPER.md section 5)."""


@dataclass(frozen=True)
class DistillationSpec(DistillSettings):
    """Students for claims C3 (accuracy table) and C4 (diagnostics over training).

    Every method is trained once per seed with :func:`sdcomplex.distill.distill`, with the
    experiment's student config (its ``seed`` replaced by each seed) and the options below.

    The fields of :class:`~sdcomplex.distill.DistillSettings` (``alpha``, ``stride``,
    ``diagnostics_every``, ``probe_size``, ``probe_seed``, ``random_labels_seed``,
    ``fidelity_examples``; keyword-only) are passed on to every student's
    :class:`~sdcomplex.distill.DistillConfig` (:meth:`distill_config`); ``diagnostics_every=0``
    (no diagnostics) only suits the students of a C1/C2-only experiment, C4 needs them.

    Attributes:
        methods: the supervision methods (default: the paper's five).
        seeds: student seeds; the table reports mean +- sample std (ddof=1) over them.
    """

    methods: tuple[StudentMethod, ...] = option(
        Tuple(Nested(StudentMethod), nonempty=True), PAPER_METHODS
    )
    seeds: tuple[int, ...] = option(Tuple(Int(minimum=0)), (0, 1, 2))

    def validate(self) -> None:
        """Distinct methods; distinct seeds, at least one."""
        keys = [m.key for m in self.methods]
        if len(set(keys)) != len(keys):
            raise ValueError(f"DistillationSpec.methods repeats a method: {keys}")
        seeds = self.seeds
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"DistillationSpec.seeds must be distinct and non-empty: {seeds}")

    def run_options(self, method: StudentMethod) -> dict[str, Any]:
        """The :class:`~sdcomplex.distill.DistillConfig` fields of one student other than
        ``student`` and ``teacher_dir``: ``method``'s mode and temperature, the final teacher
        checkpoint (``teacher_epoch`` None) and this spec's settings."""
        return {
            "mode": method.mode,
            "teacher_epoch": None,
            "temperature": method.temperature,
            **self.settings(),
        }

    def distill_config(
        self, student: TrainConfig, teacher_dir: str | None, method: StudentMethod
    ) -> DistillConfig:
        """The :class:`~sdcomplex.distill.DistillConfig` of one student (see
        :meth:`run_options`)."""
        return DistillConfig(student=student, teacher_dir=teacher_dir, **self.run_options(method))

    def method(self, key: str) -> StudentMethod:
        """The method with this key (ValueError listing the keys otherwise)."""
        for m in self.methods:
            if m.key == key:
                return m
        raise ValueError(f"no method {key!r}; methods: {[m.key for m in self.methods]}")


@dataclass(frozen=True)
class ComplexitySpec(Config):
    """Complexity sweeps of claims C1 (temperature) and C2 (teacher trajectory).

    Targets on a class-balanced subset of the training split: one-hot labels, one-hot random
    labels, the final teacher's soft targets softmax(z / tau) for each of ``temperatures``, and
    the soft targets of each teacher checkpoint at each of ``trajectory_temperatures``; none is
    centred. Their adjusted complexity sqrt(s(Y) tr K) / n is computed with respect to the
    student's NTK (form ``ntk_outputs``, BatchNorm in inference mode) at initialisation and
    at the end of training of the ``trained_students`` (seed ``student_seed`` of each method).
    The keywords the spec passes on to :func:`sdcomplex.ntk.empirical_ntk` carry the prefix
    ``ntk_``: ``ntk_outputs`` is its ``outputs``, ``ntk_implementation`` its ``implementation``.

    Attributes:
        n_per_class: training examples per class in the complexity subset (n = C * this).
        subset_seed: seed of that subset.
        temperatures: tau of the final teacher's soft targets (C1).
        trajectory_temperatures: tau of the checkpoints' soft targets (C2).
        trajectory_stride: use every k-th teacher checkpoint (the last is always included).
        trained_students: method keys (of the distillation spec, or ``"none"``) whose final
            NTK is used; the student runs are shared with C3/C4 when both are configured.
        student_seed: seed of those students (and of the initial NTK).
        random_labels_seed: seed of the random labels.
        ntk_outputs: the NTK's ``outputs``: ``"mean"`` (n x n, logit-averaged; PAPER.md's
            default), ``"full"`` or ``"diag"``.
        residual: also report residual targets Y - f(theta_0, X) against the initial NTK.
        ntk_implementation: the NTK's ``implementation`` (``"auto"``).
    """

    n_per_class: int = option(Int(minimum=1), 100)
    subset_seed: int = option(Int(minimum=0), 0)
    temperatures: tuple[float, ...] = option(_SORTED_POSITIVE, (0.5, 1.0, 2.0, 4.0, 8.0, 16.0))
    trajectory_temperatures: tuple[float, ...] = option(_SORTED_POSITIVE, (1.0, 4.0))
    trajectory_stride: int = option(Int(minimum=1), 1)
    trained_students: tuple[str, ...] = option(Tuple(Text()), ("none",))
    student_seed: int = option(Int(minimum=0), 0)
    random_labels_seed: int = option(Int(minimum=0), 0)
    ntk_outputs: str = option(Choice(OUTPUTS), "mean")
    residual: bool = option(Bool(), True)
    ntk_implementation: str = option(Text(), "auto")


@dataclass(frozen=True)
class BoundSpec(Config):
    """The margin bound of claim C5 for a kernel student on a binary task.

    The binary task relabels the data: classes ``negative_classes`` (default: the first half)
    are -1, the others +1. The kernel student's kernel is the NTK at initialisation (seed
    ``student_seed``) of the student architecture with a single output. For each teacher
    checkpoint and temperature tau, the teacher's targets are
    y* = 2 P_tau(positive group | x) - 1 = tanh-like margins in (-1, 1), where P_tau is the sum
    of softmax(z / tau) over the positive classes; the kernel student is the minimum-norm
    interpolant f = K(., X) K^{-1} y*, and its measured test error is that of sign(f) on the
    test subset. The bound's terms come from :func:`sdcomplex.complexity.margin_bound` with B
    made data-dependent by a union over B_k = 2^k (``union_over_norm``) and gamma chosen from
    ``gammas`` with delta split evenly over them (a union bound over the grid).

    Attributes:
        n_per_class: training examples per binary class (n = 2 * this).
        n_test_per_class: test examples per binary class (``None``: the whole test split).
        subset_seed: seed of both subsets.
        negative_classes: original classes mapped to -1 (``None``: the first half).
        temperatures: teacher temperatures.
        teacher_stride: use every k-th teacher checkpoint (epoch 0 excluded, the last included).
        gammas: margin grid.
        delta: total failure probability.
        student_seed: seed of the kernel student's initialisation.
        ntk_implementation: :func:`sdcomplex.ntk.empirical_ntk` implementation.
    """

    n_per_class: int = option(Int(minimum=1), 250)
    n_test_per_class: int | None = option(Optional(Int(minimum=1)), None)
    subset_seed: int = option(Int(minimum=0), 0)
    negative_classes: tuple[int, ...] | None = option(Optional(Tuple(Int(minimum=0))), None)
    temperatures: tuple[float, ...] = option(_SORTED_POSITIVE, (1.0, 2.0, 4.0, 8.0))
    teacher_stride: int = option(Int(minimum=1), 1)
    gammas: tuple[float, ...] = option(_SORTED_POSITIVE, (0.05, 0.1, 0.2, 0.4))
    delta: float = option(Real(low=0.0, high=1.0, low_open=True, high_open=True), 0.05)
    student_seed: int = option(Int(minimum=0), 0)
    ntk_implementation: str = option(Text(), "auto")


@dataclass(frozen=True)
class ExperimentConfig(Config):
    """Every setting of one experiment at one scale (frozen; JSON round trip; stable hash).

    Attributes:
        name: experiment name (the config file's stem), e.g. ``"c3_c4_online_kd"``.
        scale: ``"smoke"``, ``"quick"``, ``"images"`` or ``"paper"``.
        description: one line for ``sdcomplex reproduce --list``.
        claims: the claims of PAPER.md section 4 the experiment addresses, e.g. ``("C3",)``.
        teacher: the teacher's training config (a checkpoint every epoch for online KD).
        student: the student's training config (its seed is replaced per student seed).
        complexity: C1/C2 sweeps, or None.
        distillation: C3/C4 students, or None.
        bound: C5 margin bound, or None.
        study: the C3 study (capacities x teacher recipes, paired intervals), or None; left
            out of the JSON form (and so of the hash) when None, so configs without a study keep
            the hashes they had before the field existed.
        notes: free text recorded with the results (e.g. what the scale leaves out).
    """

    _what = "experiment"

    name: str = option(Text(identifier=True))
    scale: str = option(Choice(SCALES))
    description: str = option(Text(nonempty=False))
    claims: tuple[str, ...] = option(Tuple(Text()))
    teacher: TrainConfig = option(Nested(TrainConfig))
    student: TrainConfig = option(Nested(TrainConfig))
    complexity: ComplexitySpec | None = option(Optional(Nested(ComplexitySpec)), None)
    distillation: DistillationSpec | None = option(Optional(Nested(DistillationSpec)), None)
    bound: BoundSpec | None = option(Optional(Nested(BoundSpec)), None)
    notes: str = option(Text(nonempty=False), "")
    study: StudySpec | None = option(Optional(Nested(StudySpec)), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (see :meth:`Config.to_dict`), without ``study`` when it is
        None."""
        out = super().to_dict()
        if out.get("study") is None:
            out.pop("study", None)
        return out

    def validate(self) -> None:
        """One analysis at least; teacher and student on the same data; a teacher whose
        checkpoints the analyses can replay; trained students that are methods."""
        if all(getattr(self, a) is None for a in ("complexity", "distillation", "bound", "study")):
            raise ValueError(f"experiment {self.name} configures no analysis")
        diffs = [f for f in DATA_FIELDS if getattr(self.teacher, f) != getattr(self.student, f)]
        if diffs:
            raise ValueError(
                f"teacher and student must train on the same data; they differ in {diffs}"
            )
        if self.distillation is not None and self.distillation.diagnostics_every == 0:
            raise ValueError("the C4 diagnostics need DistillationSpec.diagnostics_every >= 1")
        if self.teacher.checkpoint_every != 1 and self.distillation is not None:
            if any(m.mode == "online" for m in self.distillation.methods):
                raise ValueError("online KD replays every teacher epoch: set checkpoint_every=1")
        if self.teacher.keep_checkpoints is not None:
            raise ValueError("the teacher must keep every checkpoint (keep_checkpoints=None)")
        if self.study is not None:
            self._validate_study(self.study)
        if self.complexity is not None:
            known = {"none"} | (
                {m.key for m in self.distillation.methods} if self.distillation else set()
            )
            unknown = sorted(set(self.complexity.trained_students) - known)
            if unknown:
                raise ValueError(
                    f"ComplexitySpec.trained_students {unknown} are not methods of the "
                    f"distillation spec ({sorted(known)})"
                )

    def _validate_study(self, study: StudySpec) -> None:
        for recipe in study.recipes:
            teacher = recipe.teacher
            if teacher is None:
                teacher = self.teacher
            diffs = [f for f in DATA_FIELDS if getattr(teacher, f) != getattr(self.student, f)]
            if diffs:
                raise ValueError(
                    f"study recipe {recipe.name}: its teacher must train on the student's data; "
                    f"they differ in {diffs}"
                )
            if teacher.checkpoint_every != 1 or teacher.keep_checkpoints is not None:
                raise ValueError(
                    f"study recipe {recipe.name}: online KD replays every teacher epoch: set "
                    "checkpoint_every=1 and keep_checkpoints=None"
                )


def stage_hash(payload: Any) -> str:
    """16 hex digits identifying a stage's inputs (any JSON-serialisable payload; other values
    by their ``str``)."""
    return json_hash(payload, default=str, allow_nan=True)
