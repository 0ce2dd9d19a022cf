"""Experiments as configs: one frozen dataclass holding every setting of a reproduction.

An :class:`ExperimentConfig` names a teacher and a student (two
:class:`~sdcomplex.train.TrainConfig`) and up to three analyses:

* :class:`ComplexitySpec` (claims C1 and C2): adjusted supervision complexity of soft targets
  against the temperature and against the teacher's checkpoint epoch, with labels and random
  labels for reference, with respect to the student's NTK at initialisation and after training;
* :class:`DistillationSpec` (claims C3 and C4): students trained without KD, with offline KD and
  with online KD at several temperatures, over several seeds, with per-epoch diagnostics;
* :class:`BoundSpec` (claim C5): the margin bound of a kernel student on a binary task across
  teacher checkpoints and temperatures.

Configs round-trip through JSON (:meth:`ExperimentConfig.to_dict` / ``from_dict``) and are
identified by :func:`experiment_hash`; the runner records both with the results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdcomplex._checks import check_int_field
from sdcomplex.distill import MODES
from sdcomplex.train import TrainConfig

SCALES = ("smoke", "quick", "paper")
"""The scales every experiment defines: seconds (tests, CI), minutes on a laptop, the paper."""

_DATA_FIELDS = (
    "dataset",
    "data_dir",
    "data_options",
    "binary",
    "n_per_class",
    "n_test_per_class",
    "subset_seed",
    "normalise",
)
"""TrainConfig fields that must agree between teacher and student (they see the same data)."""


def _floats(name: str, values: Sequence[Any], *, positive: bool = True) -> tuple[float, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of numbers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise TypeError(f"{name} must hold finite numbers, got {v!r}")
        if positive and v <= 0:
            raise ValueError(f"{name} must hold numbers > 0, got {v!r}")
        out.append(float(v))
    return tuple(out)


def _ints(name: str, values: Sequence[Any], *, minimum: int = 0) -> tuple[int, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of integers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must hold integers, got {v!r}")
        if v < minimum:
            raise ValueError(f"{name} must hold integers >= {minimum}, got {v}")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class StudentMethod:
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

    mode: str
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"StudentMethod.mode must be one of {list(MODES)}, got {self.mode!r}")
        object.__setattr__(self, "temperature", _floats("temperature", [self.temperature])[0])

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
class DistillationSpec:
    """Students for claims C3 (accuracy table) and C4 (diagnostics over training).

    Every method is trained once per seed with :func:`sdcomplex.distill.distill`, with the
    experiment's student config (its ``seed`` replaced by each seed) and the options below.

    Attributes:
        methods: the supervision methods (default: the paper's five).
        seeds: student seeds; the table reports mean +- sample std (ddof=1) over them.
        alpha: weight of the label cross-entropy mixed into the KD loss (0: pure KD).
        stride: online KD replays every ``stride``-th teacher checkpoint (and the last).
        diagnostics_every: diagnostics (fidelity, NTK similarity, complexities) every k epochs
            (0: none; only for the students of a C1/C2-only experiment, C4 needs them).
        probe_size: examples of the probe set on which the student's NTK is computed.
        probe_seed: seed choosing the probe set.
        random_labels_seed: seed of the random labels whose complexity is tracked.
        fidelity_examples: fidelity is measured on fixed class-balanced subsets of this many
            training and test examples (``None``: the whole splits).
    """

    methods: tuple[StudentMethod, ...] = PAPER_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    alpha: float = 0.0
    stride: int = 1
    diagnostics_every: int = 1
    probe_size: int = 256
    probe_seed: int = 0
    random_labels_seed: int = 0
    fidelity_examples: int | None = 1000

    def __post_init__(self) -> None:
        methods = tuple(
            m if isinstance(m, StudentMethod) else StudentMethod(**m) for m in self.methods
        )
        if not methods:
            raise ValueError("DistillationSpec.methods is empty")
        keys = [m.key for m in methods]
        if len(set(keys)) != len(keys):
            raise ValueError(f"DistillationSpec.methods repeats a method: {keys}")
        object.__setattr__(self, "methods", methods)
        seeds = _ints("DistillationSpec.seeds", self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"DistillationSpec.seeds must be distinct and non-empty: {seeds}")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "alpha", _floats("alpha", [self.alpha], positive=False)[0])
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"DistillationSpec.alpha must lie in [0, 1], got {self.alpha}")
        for name in ("stride", "probe_size"):
            check_int_field("DistillationSpec", name, getattr(self, name), minimum=1)
        for name in ("diagnostics_every", "probe_seed", "random_labels_seed"):
            check_int_field("DistillationSpec", name, getattr(self, name), minimum=0)
        examples = self.fidelity_examples
        check_int_field("DistillationSpec", "fidelity_examples", examples, minimum=1, optional=True)

    def method(self, key: str) -> StudentMethod:
        """The method with this key (ValueError listing the keys otherwise)."""
        for m in self.methods:
            if m.key == key:
                return m
        raise ValueError(f"no method {key!r}; methods: {[m.key for m in self.methods]}")


@dataclass(frozen=True)
class ComplexitySpec:
    """Complexity sweeps of claims C1 (temperature) and C2 (teacher trajectory).

    Targets on a class-balanced subset of the training split: one-hot labels, one-hot random
    labels, the final teacher's soft targets softmax(z / tau) for each of ``temperatures``, and
    the soft targets of each teacher checkpoint at each of ``trajectory_temperatures``; none is
    centred. Their adjusted complexity sqrt(s(Y) tr K) / n is computed with respect to the
    student's NTK (``kernel_outputs`` form, BatchNorm in inference mode) at initialisation and
    at the end of training of the ``trained_students`` (seed ``student_seed`` of each method).

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
        kernel_outputs: ``"mean"`` (n x n, logit-averaged; PAPER.md's default), ``"diag"``
            or ``"full"``.
        residual: also report residual targets Y - f(theta_0, X) against the initial NTK.
        ntk_implementation: :func:`sdcomplex.ntk.empirical_ntk` implementation (``"auto"``).
    """

    n_per_class: int = 100
    subset_seed: int = 0
    temperatures: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    trajectory_temperatures: tuple[float, ...] = (1.0, 4.0)
    trajectory_stride: int = 1
    trained_students: tuple[str, ...] = ("none",)
    student_seed: int = 0
    random_labels_seed: int = 0
    kernel_outputs: str = "mean"
    residual: bool = True
    ntk_implementation: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n_per_class", "trajectory_stride"):
            check_int_field("ComplexitySpec", name, getattr(self, name), minimum=1)
        for name in ("subset_seed", "student_seed", "random_labels_seed"):
            check_int_field("ComplexitySpec", name, getattr(self, name), minimum=0)
        for name in ("temperatures", "trajectory_temperatures"):
            values = _floats(f"ComplexitySpec.{name}", getattr(self, name))
            if not values:
                raise ValueError(f"ComplexitySpec.{name} is empty")
            object.__setattr__(self, name, tuple(sorted(set(values))))
        students = self.trained_students
        if isinstance(students, str):
            raise TypeError("ComplexitySpec.trained_students must be a list of method keys")
        object.__setattr__(self, "trained_students", tuple(str(s) for s in students))
        if self.kernel_outputs not in ("mean", "diag", "full"):
            raise ValueError(
                f"ComplexitySpec.kernel_outputs must be mean, diag or full, "
                f"got {self.kernel_outputs!r}"
            )
        if not isinstance(self.residual, bool):
            raise TypeError("ComplexitySpec.residual must be true or false")


@dataclass(frozen=True)
class BoundSpec:
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

    n_per_class: int = 250
    n_test_per_class: int | None = None
    subset_seed: int = 0
    negative_classes: tuple[int, ...] | None = None
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    teacher_stride: int = 1
    gammas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    delta: float = 0.05
    student_seed: int = 0
    ntk_implementation: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n_per_class", "teacher_stride"):
            check_int_field("BoundSpec", name, getattr(self, name), minimum=1)
        if self.n_test_per_class is not None:
            check_int_field("BoundSpec", "n_test_per_class", self.n_test_per_class, minimum=1)
        for name in ("subset_seed", "student_seed"):
            check_int_field("BoundSpec", name, getattr(self, name), minimum=0)
        if self.negative_classes is not None:
            neg = _ints("BoundSpec.negative_classes", self.negative_classes)
            object.__setattr__(self, "negative_classes", neg)
        for name in ("temperatures", "gammas"):
            values = _floats(f"BoundSpec.{name}", getattr(self, name))
            if not values:
                raise ValueError(f"BoundSpec.{name} is empty")
            object.__setattr__(self, name, tuple(sorted(set(values))))
        object.__setattr__(self, "delta", _floats("delta", [self.delta])[0])
        if not 0 < self.delta < 1:
            raise ValueError(f"BoundSpec.delta must lie in (0, 1), got {self.delta}")


@dataclass(frozen=True)
class ExperimentConfig:
    """Every setting of one experiment at one scale (frozen; JSON round trip; stable hash).

    Attributes:
        name: experiment name (the config file's stem), e.g. ``"c3_c4_online_kd"``.
        scale: ``"smoke"``, ``"quick"`` or ``"paper"``.
        description: one line for ``sdcomplex reproduce --list``.
        claims: the claims of PAPER.md section 4 the experiment addresses, e.g. ``("C3",)``.
        teacher: the teacher's training config (a checkpoint every epoch for online KD).
        student: the student's training config (its seed is replaced per student seed).
        complexity: C1/C2 sweeps, or None.
        distillation: C3/C4 students, or None.
        bound: C5 margin bound, or None.
        notes: free text recorded with the results (e.g. what the scale leaves out).
    """

    name: str
    scale: str
    description: str
    claims: tuple[str, ...]
    teacher: TrainConfig
    student: TrainConfig
    complexity: ComplexitySpec | None = None
    distillation: DistillationSpec | None = None
    bound: BoundSpec | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"experiment name must be an identifier, got {self.name!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {list(SCALES)}, got {self.scale!r}")
        object.__setattr__(self, "claims", tuple(str(c) for c in self.claims))
        for name, cls in (
            ("teacher", TrainConfig),
            ("student", TrainConfig),
            ("complexity", ComplexitySpec),
            ("distillation", DistillationSpec),
            ("bound", BoundSpec),
        ):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                value = cls.from_dict(value) if cls is TrainConfig else cls(**value)
                object.__setattr__(self, name, value)
            if value is None and name in ("teacher", "student"):
                raise ValueError(f"ExperimentConfig.{name} is required")
            if value is not None and not isinstance(value, cls):
                raise TypeError(f"ExperimentConfig.{name} must be a {cls.__name__}")
        if self.complexity is None and self.distillation is None and self.bound is None:
            raise ValueError(f"experiment {self.name} configures no analysis")
        diffs = [f for f in _DATA_FIELDS if getattr(self.teacher, f) != getattr(self.student, f)]
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

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict; inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, TrainConfig):
                out[f.name] = value.to_dict()
            elif dataclasses.is_dataclass(value):
                out[f.name] = json.loads(json.dumps(dataclasses.asdict(value)))  # type: ignore[arg-type]
            else:
                out[f.name] = json.loads(json.dumps(value))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Builds a config from :meth:`to_dict` output.

        Raises:
            ValueError: unknown fields (the message lists the valid ones).
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown experiment field(s) {unknown}; valid fields: {names}")
        return cls(**dict(data))

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, indented)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def experiment_hash(config: ExperimentConfig | Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the config's canonical JSON form."""
    data = config.to_dict() if isinstance(config, ExperimentConfig) else dict(config)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def stage_hash(payload: Any) -> str:
    """16 hex digits identifying a stage's inputs (any JSON-serialisable payload)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
