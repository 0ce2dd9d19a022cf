"""Configs shared by the distillation tests (imported by conftest.py and the test modules).

One teacher for everything: an MLP on the embedded digits (8x8x1, 10 classes), trained with
random crops and flips for 4 epochs; MLP students, so that a whole run takes a few seconds.
"""

from sdcomplex.distill import DistillConfig
from sdcomplex.train import TrainConfig

TEACHER = TrainConfig(
    model="mlp",
    model_options={"hidden_sizes": [64]},
    dataset="digits",
    crop_padding=1,
    flip=True,  # (the digits' default is no flips: exercise them anyway)
    epochs=4,
    batch_size=128,
    learning_rate=0.05,
    eval_batch_size=512,
)
STUDENT = TEACHER.replace(model_options={"hidden_sizes": [32]}, epochs=3, eval_train_examples=500)
PROBE = 64


def student_config(teacher_dir, mode, **changes):
    changes = {"student": STUDENT, "probe_size": PROBE, **changes}
    return DistillConfig(mode=mode, teacher_dir=str(teacher_dir), **changes)
