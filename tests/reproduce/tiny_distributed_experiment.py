"""The tiny experiment with global batches that one, two and four devices divide, for the
distributed reproduction test (two processes of two devices against one process).

Its batches hold 20 of the 100 training examples (``tiny_experiment.py``: 25), its students
train 2 epochs with one seed; everything else is the tiny experiment's.
"""

from .tiny_experiment import get_config as tiny_config


def get_config(scale: str = "smoke"):
    config = tiny_config(scale)
    assert config.distillation is not None
    return config.replace(
        teacher=config.teacher.replace(batch_size=20),
        student=config.student.replace(batch_size=20, epochs=2),
        distillation=config.distillation.replace(seeds=(0,)),
    )
