"""Shared settings of the experiment configs: data, teacher and student at each scale.

Every experiment file builds its :class:`~sdcomplex.reproduce.ExperimentConfig` from these, so
that experiments run at the same scale share one teacher/student pair (and ``all`` runs exactly
the union of the others). Every hyperparameter is spelled out here or in the experiment file and
is recorded with the results (``DIR/config.json``).

Scales:

* ``smoke``: a few seconds per stage: 200 MNIST-1D training examples, tiny models, 2 epochs.
* ``quick``: the full MNIST-1D (4,000 / 1,000 signals of length 40, embedded: no download) with a
  real capacity gap: a 1-D CNN teacher (about 93 % test accuracy) and a one-hidden-layer MLP
  student with 32 units (about 55 % without KD). Minutes on a 2-core CPU.
* ``paper``: PAPER.md section 5: CIFAR-100, ResNet-56 teacher and LeNet-5x8 student, SGD with
  momentum 0.9, batch 128, learning rate 0.1 with cosine decay, weight decay 5e-4, random crops
  (4-pixel padding) and flips, 200 epochs, a teacher checkpoint every epoch. Needs the official
  ``cifar-100-python.tar.gz`` in ``$SDCOMPLEX_DATA`` (default ``~/.cache/sdcomplex/data``).
"""

from __future__ import annotations

from sdcomplex.train import TrainConfig


def mnist1d_pair(scale: str) -> tuple[TrainConfig, TrainConfig]:
    """(teacher, student) on MNIST-1D at the smoke or quick scale."""
    if scale == "smoke":
        data = {"dataset": "mnist1d", "n_per_class": 20, "n_test_per_class": 20}
        common = {**data, "augment": False, "batch_size": 50, "epochs": 2, "eval_batch_size": 200}
        teacher = TrainConfig(
            model="cnn",
            model_options={"channels": [4], "dense_width": 16},
            learning_rate=0.05,
            **common,
        )
        student = TrainConfig(
            model="mlp", model_options={"hidden_sizes": [16]}, learning_rate=0.05, **common
        )
        return teacher, student
    if scale == "quick":
        common = {
            "dataset": "mnist1d",
            "augment": False,
            "batch_size": 128,
            "optimizer": "sgd",
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "schedule": "cosine",
            "eval_batch_size": 1000,
        }
        teacher = TrainConfig(
            model="cnn",
            model_options={"channels": [32, 64], "dense_width": 128},
            epochs=30,
            learning_rate=0.05,
            **common,
        )
        student = TrainConfig(
            model="mlp",
            model_options={"hidden_sizes": [32]},
            epochs=30,
            learning_rate=0.05,
            **common,
        )
        return teacher, student
    raise ValueError(f"MNIST-1D pairs exist at the smoke and quick scales, not {scale!r}")


def paper_pair() -> tuple[TrainConfig, TrainConfig]:
    """(teacher, student) of the paper: ResNet-56 -> LeNet-5x8 on CIFAR-100 (PAPER.md s. 5)."""
    common = {
        "dataset": "cifar100",
        "augment": True,
        "crop_padding": 4,
        "flip": True,
        "batch_size": 128,
        "optimizer": "sgd",
        "momentum": 0.9,
        "learning_rate": 0.1,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "epochs": 200,
        "checkpoint_every": 1,
    }
    teacher = TrainConfig(model="resnet56", **common)
    # a LeNet-5x8 checkpoint with its optimiser state is about 31 MB: students keep only their
    # two latest (every 10 epochs; the analyses need only the final one)
    student = TrainConfig(
        model="lenet5x8", **{**common, "checkpoint_every": 10}, keep_checkpoints=2
    )
    return teacher, student


def step_teacher(teacher: TrainConfig, milestones: tuple[int, ...]) -> TrainConfig:
    """A teacher recipe of the C3 study: ``teacher`` with its learning rate kept constant and
    multiplied by ``lr_decay_factor`` (0.1) after each of ``milestones`` (a step schedule)
    instead of its own schedule; everything else (model, data, optimiser, epochs, a checkpoint
    every epoch) unchanged."""
    return teacher.replace(schedule="step", lr_milestones=milestones)
