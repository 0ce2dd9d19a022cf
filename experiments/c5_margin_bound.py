"""C5: the margin bound of a kernel (linearised) student against its measured test error.

Binary task: the first half of the classes vs the rest. Kernel: the NTK at initialisation of the
student architecture with one output. For every teacher checkpoint and temperature, the kernel
student interpolates the teacher's margins y* = 2 P_tau(positive group | x) - 1 with minimum
RKHS norm; the bound's three terms (margin loss, complexity term, confidence term; PAPER.md
section 3) are compared with the student's measured test error.
"""

from __future__ import annotations

from sdcomplex.reproduce import BoundSpec, ExperimentConfig

from ._base import experiment

DESCRIPTION = "margin bound terms vs measured test error of a kernel student (C5)"


def bound_spec(scale: str) -> BoundSpec:
    """The C5 sweep at a scale."""
    if scale == "smoke":
        return BoundSpec(
            n_per_class=20, n_test_per_class=20, temperatures=(1.0, 4.0), gammas=(0.1, 0.5)
        )
    # the same sweep at the other scales, on the whole test split and n = 1,000 training
    # signals (quick: 500 per binary class), 500 training images (images: CIFAR-10 classes 0-4,
    # airplane, automobile, bird, cat, deer, vs 5-9) or 2,000 (paper: CIFAR-100 classes 0-49 vs
    # 50-99), along every teacher checkpoint (paper: every 10th)
    return BoundSpec(
        n_per_class={"quick": 500, "images": 250, "paper": 1000}[scale],
        temperatures=(1.0, 2.0, 4.0, 8.0),
        gammas=(0.05, 0.1, 0.2, 0.4, 0.8),
        teacher_stride=10 if scale == "paper" else 1,
    )


def get_config(scale: str) -> ExperimentConfig:
    return experiment("c5_margin_bound", scale, DESCRIPTION, ("C5",), bound=bound_spec(scale))
