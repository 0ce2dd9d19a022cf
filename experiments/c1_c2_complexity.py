"""C1 and C2: supervision complexity of soft targets against temperature and teacher epoch.

Adjusted supervision complexity sqrt(s(Y) tr K) / n (PAPER.md section 2) of the final teacher's
soft targets softmax(z / tau) over a range of temperatures (C1) and of every teacher
checkpoint's soft targets (C2), with one-hot labels and random labels for reference, with
respect to the student's mean NTK at initialisation and after training without KD (and, where
the students exist, after offline and online KD at tau = 4).
"""

from __future__ import annotations

from sdcomplex.reproduce import ComplexitySpec, ExperimentConfig

from ._base import scale_pair

DESCRIPTION = "complexity of soft targets vs temperature (C1) and vs teacher checkpoint (C2)"


def complexity_spec(scale: str, trained: tuple[str, ...] = ("none",)) -> ComplexitySpec:
    """The C1/C2 sweep at a scale; ``trained`` names the students whose final NTK is used."""
    if scale == "smoke":
        return ComplexitySpec(
            n_per_class=5,
            temperatures=(1.0, 4.0, 16.0),
            trajectory_temperatures=(1.0,),
            trained_students=trained,
        )
    if scale == "quick":
        # n = 1,000 training signals; every teacher checkpoint at tau = 1 and 4
        return ComplexitySpec(
            n_per_class=100,
            temperatures=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
            trajectory_temperatures=(1.0, 4.0),
            trained_students=trained,
        )
    if scale == "images":
        # n = 500 training images (50 per class): the student's NTK (mean form, 500 x 500)
        # at init and after training; every one of the 10 teacher checkpoints at tau = 1 and 4
        return ComplexitySpec(
            n_per_class=50,
            temperatures=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
            trajectory_temperatures=(1.0, 4.0),
            trained_students=trained,
        )
    # paper: n = 1,000 CIFAR-100 images (10 per class); every 10th teacher checkpoint
    return ComplexitySpec(
        n_per_class=10,
        temperatures=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
        trajectory_temperatures=(1.0, 4.0),
        trajectory_stride=10,
        trained_students=trained,
    )


def get_config(scale: str) -> ExperimentConfig:
    teacher, student = scale_pair(scale)
    return ExperimentConfig(
        name="c1_c2_complexity",
        scale=scale,
        description=DESCRIPTION,
        claims=("C1", "C2"),
        teacher=teacher,
        student=student,
        complexity=complexity_spec(scale),
        notes="The trained-student kernel comes from a no-KD student (seed 0) trained here.",
    )
