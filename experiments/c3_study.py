"""C3 as a study: online vs offline KD over student capacities and teacher recipes.

Claim C3 (PAPER.md section 4) is conditional: online KD should help most when the capacity gap
is large, because the student replays a teacher whose targets grow in complexity gradually
(C2). One setting cannot test that, so this experiment trains, for every student capacity and
several seeds, no KD, offline KD and online KD at τ = 1 and 4 (pure KD loss, α = 0), and
reports per (teacher recipe, capacity, τ) the paired gain online − offline (same seed: same
initialisation and batches) with a 95 % Student-t interval. The verdict rule is fixed here,
before any run: C3 **holds** for a setting when the whole interval lies above 0, **fails**
when it lies below 0, and is **undecided** otherwise; the summary lists the settings of each.

Capacities (quick scale, MNIST-1D, the 1-D CNN teacher has 89,674 parameters): the MLP student
with no hidden layer (a linear model, 410 parameters), 32 hidden units (the single-setting
student of ``c3_c4_online_kd``, 1,642), 256 (13,066) and 1,760 (89,770: the teacher's
parameter count).

Teacher recipes, chosen before seeing any result (and every one run is reported):

* ``cosine``: the experiment's teacher (SGD with momentum, rate 0.05 with cosine decay over 30
  epochs), the teacher of every single-setting experiment: the reference.
* ``step``: the same teacher with a step schedule, rate 0.05 divided by 10 after epochs 5 and
  10 (a fast teacher). Reason: it should reach a final accuracy close to the cosine teacher's,
  but settle much earlier, so that two thirds of its trajectory are nearly the final teacher;
  if online KD helps through a gradual trajectory (C2), it should help less with this teacher
  than with the cosine one. Its C2 curve (complexity of its checkpoints w.r.t. the student's
  initial NTK) is shown beside the gain it gives.

Budget: the README's main command (``all`` at the quick scale, which includes this study) must
finish within 15 minutes on a 2-core CPU; the KD students' cost is dominated by the teacher's
forward pass on every batch, so the full grid (every capacity x method x τ x seed) runs for the
cosine teacher and the ``step`` recipe runs at one capacity, the 32-unit student of the
single-setting table (stated in the results). Smoke scale: a tiny grid for the tests. The paper
scale defines the same study with LeNet-5 students of widths 1, 2, 4, 8 for a GPU (not run).
"""

from __future__ import annotations

from sdcomplex.reproduce import ExperimentConfig, StudentCapacity, StudySpec, TeacherRecipe

from ._base import experiment, scale_pair, step_teacher

DESCRIPTION = "C3 as a study: paired online - offline gains over capacities and teacher recipes"

COSINE_REASON = (
    "the experiment's own teacher (SGD, cosine decay), that of the single-setting table: "
    "the reference"
)
STEP_REASON = (
    "the same teacher with a step schedule that drops the rate tenfold early: it settles "
    "sooner, so most of its trajectory is nearly the final teacher; if online KD helps through "
    "a gradual trajectory (C2), it should help less here"
)


def study_spec(scale: str) -> StudySpec:
    """The study at a scale (the experiment's teacher is the ``cosine`` recipe)."""
    teacher, _ = scale_pair(scale)
    if scale == "smoke":
        capacities = (
            StudentCapacity("linear", {"hidden_sizes": []}),
            StudentCapacity("mlp16", {"hidden_sizes": [16]}),
        )
        step = step_teacher(teacher, (1,))
        return StudySpec(
            capacities=capacities,
            recipes=(
                TeacherRecipe("cosine", COSINE_REASON),
                TeacherRecipe("step", STEP_REASON, teacher=step, capacities=("mlp16",)),
            ),
            seeds=(0, 1),
            n_per_class=3,
        )
    if scale == "quick":
        capacities = (
            StudentCapacity("linear", {"hidden_sizes": []}),
            StudentCapacity("mlp32", {"hidden_sizes": [32]}),
            StudentCapacity("mlp256", {"hidden_sizes": [256]}),
            StudentCapacity("mlp1760", {"hidden_sizes": [1760]}),
        )
        recipes = (
            TeacherRecipe("cosine", COSINE_REASON),
            TeacherRecipe(
                "step", STEP_REASON, teacher=step_teacher(teacher, (5, 10)), capacities=("mlp32",)
            ),
        )
        return StudySpec(capacities=capacities, recipes=recipes, seeds=(0, 1, 2, 3, 4))
    # images and paper (defined, not run by the project): LeNet-5 widths; the step recipe's rate
    # drops after 1/2 and 3/4 of the teacher's epochs (100 and 150 of the paper's 200)
    widths = (1, 2, 4) if scale == "images" else (1, 2, 4, 8)
    capacities = tuple(StudentCapacity(f"lenet5x{k}", model=f"lenet5x{k}") for k in widths)
    milestones = (teacher.epochs // 2, 3 * teacher.epochs // 4)
    recipes = (
        TeacherRecipe("cosine", COSINE_REASON),
        TeacherRecipe("step", STEP_REASON, teacher=step_teacher(teacher, milestones)),
    )
    return StudySpec(capacities=capacities, recipes=recipes, seeds=(0, 1, 2, 3, 4))


def get_config(scale: str) -> ExperimentConfig:
    return experiment("c3_study", scale, DESCRIPTION, ("C3",), study=study_spec(scale))
