"""The C3 study as a config: online vs offline KD over student capacities and teacher recipes.

A :class:`StudySpec` turns claim C3 from one setting into a grid of settings: every student
capacity (:class:`StudentCapacity`) learns, over several seeds, without KD, with offline KD and
with online KD at each temperature, from the teacher of each :class:`TeacherRecipe` that covers
it. For each (recipe, capacity, temperature) the paired gain online - offline (same seed, same
batches, same initialisation) gets a Student-t confidence interval, and a verdict from a rule
fixed in the config before anything runs (:meth:`StudySpec.verdict`):

* ``holds``: the whole interval lies above ``+margin`` percentage points;
* ``fails``: the whole interval lies below ``-margin`` points;
* ``undecided``: otherwise.

Each recipe also gets its C2 curve: the adjusted complexity sqrt(s(Y) tr K) / n of its
checkpoints' soft targets w.r.t. the initial NTK of each student capacity it teaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdcomplex._config_base import Config, option
from sdcomplex._config_kinds import Choice, Int, Nested, Optional, Options, Real, Text, Tuple
from sdcomplex.complexity._complexity import OUTPUTS
from sdcomplex.train import TrainConfig
from sdcomplex.train._ensemble import BATCHINGS

VERDICTS = ("holds", "fails", "undecided")
"""The verdicts of one setting of the study, in the order the summary lists them."""


@dataclass(frozen=True)
class StudentCapacity(Config):
    """One student size of the study: the experiment's student with another model.

    Attributes:
        name: identifier used in stage keys, tables and figures (e.g. ``"linear"``).
        model_options: replaces the student config's ``model_options`` (e.g.
            ``{"hidden_sizes": []}``: the MLP without a hidden layer, a linear model).
        model: replaces the student config's ``model`` (``None``: keep it), e.g.
            ``"lenet5x2"``.

    Example:
        >>> StudentCapacity("linear", {"hidden_sizes": []}).model_options
        {'hidden_sizes': []}
    """

    name: str = option(Text(identifier=True))
    model_options: dict[str, Any] = option(Options(), default_factory=dict)
    model: str | None = option(Optional(Text()), None)

    def student(self, student: TrainConfig) -> TrainConfig:
        """The student's training config at this capacity."""
        model = student.model if self.model is None else self.model
        return student.replace(model=model, model_options=self.model_options)


@dataclass(frozen=True)
class TeacherRecipe(Config):
    """One way of training the teacher: a factor of the study (its trajectory, for C2 and C3).

    Attributes:
        name: identifier (stage keys, tables).
        reason: why the recipe was chosen, written before its results were seen.
        teacher: the teacher's training config; ``None``: the experiment's own teacher (its
            ``teacher`` stage, shared with the single-setting analyses).
        capacities: names of the capacities whose KD students learn from this teacher
            (``None``: every capacity of the study).
    """

    name: str = option(Text(identifier=True))
    reason: str = option(Text())
    teacher: TrainConfig | None = option(Optional(Nested(TrainConfig)), None)
    capacities: tuple[str, ...] | None = option(Optional(Tuple(Text(), nonempty=True)), None)


@dataclass(frozen=True)
class StudySpec(Config):
    """The C3 study: capacities x recipes x temperatures x seeds, with a verdict rule.

    Every (capacity, mode, recipe) group of students trains in one compiled step with
    :func:`sdcomplex.train.train_students` (seeds and temperatures are members of one vmapped
    ensemble); member (seed s, temperature tau) follows the run :func:`sdcomplex.distill.distill`
    would do with ``DistillConfig(student=capacity's student with seed s, mode, temperature=tau,
    alpha, stride)``.

    Attributes:
        capacities: the student sizes, smallest first.
        recipes: the teacher recipes (the first is the reference of the figure).
        seeds: student seeds (at least 2: an interval needs a spread).
        temperatures: KD temperatures (offline and online at each).
        alpha: weight of the label cross-entropy in the KD loss (0: pure KD).
        stride: online KD replays every ``stride``-th teacher checkpoint (and the last).
        measure: the accuracy compared: ``"last"`` (test accuracy after the last epoch) or
            ``"best"`` (best test accuracy over epochs >= 1, selected on the test set).
        confidence: level of the two-sided Student-t interval of the mean paired gain.
        margin: the rule's threshold in percentage points (0: the sign of the interval).
        batching: ``"vmap"`` (batched kernels) or ``"unroll"`` (each member's solo arithmetic);
            see :func:`sdcomplex.train.train_students`.
        n_per_class: training examples per class of the C2 curves' subset.
        subset_seed: seed of that subset.
        ntk_seed: initialisation seed of the student NTK of the C2 curves.
        ntk_outputs: the form of the NTK of the C2 curves (``"mean"``, ``"full"``,
            ``"diag"``): :func:`sdcomplex.ntk.empirical_ntk`'s ``outputs``.
        ntk_implementation: its ``implementation`` (the NTK keywords the spec passes on carry
            the prefix ``ntk_``).
    """

    capacities: tuple[StudentCapacity, ...] = option(Tuple(Nested(StudentCapacity), nonempty=True))
    recipes: tuple[TeacherRecipe, ...] = option(Tuple(Nested(TeacherRecipe), nonempty=True))
    seeds: tuple[int, ...] = option(Tuple(Int(minimum=0)), (0, 1, 2, 3, 4))
    temperatures: tuple[float, ...] = option(
        Tuple(Real(low=0.0, low_open=True), nonempty=True, sort_unique=True), (1.0, 4.0)
    )
    alpha: float = option(Real(low=0.0, high=1.0), 0.0)
    stride: int = option(Int(minimum=1), 1)
    measure: str = option(Choice(("last", "best")), "last")
    confidence: float = option(Real(low=0.0, high=1.0, low_open=True, high_open=True), 0.95)
    margin: float = option(Real(low=0.0), 0.0)
    batching: str = option(Choice(BATCHINGS), "vmap")
    n_per_class: int = option(Int(minimum=1), 100)
    subset_seed: int = option(Int(minimum=0), 0)
    ntk_seed: int = option(Int(minimum=0), 0)
    ntk_outputs: str = option(Choice(OUTPUTS), "mean")
    ntk_implementation: str = option(Text(), "auto")

    def validate(self) -> None:
        """Distinct names and seeds (two at least); recipes name known capacities; one recipe
        at most uses the experiment's teacher."""
        names = [c.name for c in self.capacities]
        if len(set(names)) != len(names):
            raise ValueError(f"StudySpec.capacities repeats a name: {names}")
        recipes = [r.name for r in self.recipes]
        if len(set(recipes)) != len(recipes):
            raise ValueError(f"StudySpec.recipes repeats a name: {recipes}")
        if sum(r.teacher is None for r in self.recipes) > 1:
            raise ValueError("at most one StudySpec recipe can use the experiment's teacher")
        for recipe in self.recipes:
            unknown = sorted(set(recipe.capacities or ()) - set(names))
            if unknown:
                raise ValueError(
                    f"recipe {recipe.name} names unknown capacities {unknown}; capacities: {names}"
                )
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(
                f"StudySpec.seeds must be at least 2 distinct seeds (an interval needs a "
                f"spread), got {self.seeds}"
            )

    def capacities_of(self, recipe: TeacherRecipe) -> tuple[StudentCapacity, ...]:
        """The capacities whose KD students learn from ``recipe``'s teacher, in study order."""
        chosen = recipe.capacities
        return tuple(c for c in self.capacities if chosen is None or c.name in chosen)

    @property
    def rule(self) -> str:
        """The verdict rule in words (recorded with the results and printed in the tables)."""
        level = f"{100 * self.confidence:g} %"
        bound = f"{self.margin:g} points" if self.margin else "0"
        return (
            f"per (recipe, capacity, τ): the {level} Student-t interval of the mean paired gain "
            f"online − offline ({self.measure}-epoch test accuracy, same seed) lies above "
            f"{bound}: holds; below {'-' + bound if self.margin else '0'}: fails; "
            "otherwise undecided"
        )

    def verdict(self, low: float, high: float) -> str:
        """``holds``, ``fails`` or ``undecided`` for an interval ``[low, high]`` in points."""
        if low > self.margin:
            return "holds"
        if high < -self.margin:
            return "fails"
        return "undecided"
