"""C5: the margin bound of a kernel (linearised) student against its measured test error.

Binary task: the first half of the classes vs the rest. Kernel: the NTK at initialisation of the
student architecture with one output. For every teacher checkpoint and temperature, the kernel
student interpolates the teacher's margins y* = 2 P_tau(positive group | x) - 1 with minimum
RKHS norm; the bound's three terms (margin loss, complexity term, confidence term; PAPER.md
section 3) are compared with the student's measured test error.
"""

from __future__ import annotations

from sdcomplex.reproduce import BoundSpec, ExperimentConfig

from ._base import scale_pair

DESCRIPTION = "margin bound terms vs measured test error of a kernel student (C5)"


def bound_spec(scale: str) -> BoundSpec:
    """The C5 sweep at a scale."""
    if scale == "smoke":
        return BoundSpec(
            n_per_class=20, n_test_per_class=20, temperatures=(1.0, 4.0), gammas=(0.1, 0.5)
        )
    if scale == "quick":
        # n = 1,000 training signals (500 per binary class), the whole 1,000-signal test split
        return BoundSpec(
            n_per_class=500,
            temperatures=(1.0, 2.0, 4.0, 8.0),
            gammas=(0.05, 0.1, 0.2, 0.4, 0.8),
        )
    if scale == "images":
        # CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer) vs 5-9, n = 500 training
        # images (250 per binary class), the whole 1,000-image test subset, every checkpoint
        return BoundSpec(
            n_per_class=250,
            temperatures=(1.0, 2.0, 4.0, 8.0),
            gammas=(0.05, 0.1, 0.2, 0.4, 0.8),
        )
    # paper: CIFAR-100 classes 0-49 vs 50-99, n = 2,000, the whole test split, every 10th
    # teacher checkpoint
    return BoundSpec(
        n_per_class=1000,
        temperatures=(1.0, 2.0, 4.0, 8.0),
        gammas=(0.05, 0.1, 0.2, 0.4, 0.8),
        teacher_stride=10,
    )


def get_config(scale: str) -> ExperimentConfig:
    teacher, student = scale_pair(scale)
    return ExperimentConfig(
        name="c5_margin_bound",
        scale=scale,
        description=DESCRIPTION,
        claims=("C5",),
        teacher=teacher,
        student=student,
        bound=bound_spec(scale),
    )
