"""A tiny experiment for the reproduction tests: every analysis, a few seconds per stage.

Loaded from its path (``sdcomplex reproduce tests/reproduce/tiny_experiment.py --scale smoke``),
so the in-process runs and the killed subprocess run use exactly the same config.
"""

from sdcomplex.reproduce import (
    BoundSpec,
    ComplexitySpec,
    DistillationSpec,
    ExperimentConfig,
    StudentMethod,
)
from sdcomplex.train import TrainConfig

METHODS = (StudentMethod("none"), StudentMethod("offline", 4.0), StudentMethod("online", 4.0))


def get_config(scale: str = "smoke") -> ExperimentConfig:
    data = {"dataset": "mnist1d", "n_per_class": 10, "n_test_per_class": 10, "augment": False}
    common = {**data, "batch_size": 25, "epochs": 3, "learning_rate": 0.05, "eval_batch_size": 100}
    return ExperimentConfig(
        name="tiny",
        scale=scale,
        description="tiny test experiment",
        claims=("C1", "C2", "C3", "C4", "C5"),
        teacher=TrainConfig(
            model="cnn", model_options={"channels": [4], "dense_width": 16}, **common
        ),
        student=TrainConfig(model="mlp", model_options={"hidden_sizes": [16]}, **common),
        complexity=ComplexitySpec(
            n_per_class=3,
            temperatures=(1.0, 4.0),
            trajectory_temperatures=(1.0,),
            trained_students=("none", "online_t4"),
        ),
        distillation=DistillationSpec(methods=METHODS, seeds=(0, 1), probe_size=16),
        bound=BoundSpec(
            n_per_class=10, n_test_per_class=10, temperatures=(1.0, 4.0), gammas=(0.1, 0.5)
        ),
    )
