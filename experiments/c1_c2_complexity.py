"""C1 and C2: supervision complexity of soft targets against temperature and teacher epoch.

Adjusted supervision complexity sqrt(s(Y) tr K) / n (PAPER.md section 2) of the final teacher's
soft targets softmax(z / tau) over a range of temperatures (C1) and of every teacher
checkpoint's soft targets (C2), with one-hot labels and random labels for reference, with
respect to the student's mean NTK at initialisation and after training without KD (and, where
the students exist, after offline and online KD at tau = 4).
"""

from __future__ import annotations

from sdcomplex.reproduce import ComplexitySpec, ExperimentConfig

from ._base import experiment

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
    # the same sweep at the other scales, on n = 1,000 training signals (quick), 500 training
    # images (images: the student's NTK in mean form is 500 x 500) or 1,000 CIFAR-100 images
    # (paper), at tau = 1 and 4 along every teacher checkpoint (paper: every 10th)
    return ComplexitySpec(
        n_per_class={"quick": 100, "images": 50, "paper": 10}[scale],
        temperatures=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
        trajectory_temperatures=(1.0, 4.0),
        trajectory_stride=10 if scale == "paper" else 1,
        trained_students=trained,
    )


def get_config(scale: str) -> ExperimentConfig:
    return experiment(
        "c1_c2_complexity",
        scale,
        DESCRIPTION,
        ("C1", "C2"),
        complexity=complexity_spec(scale),
        notes="The trained-student kernel comes from a no-KD student (seed 0) trained here.",
    )
