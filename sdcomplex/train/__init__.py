"""Training of teachers and students: configs as code, a jitted step, resumable runs.

``train(config, run_dir)`` trains the model and data set a :class:`TrainConfig` names (SGD with
momentum and weight decay on a cosine or step schedule, or Adam/AdamW; BatchNorm statistics
handled), evaluates train and test loss and accuracy after every epoch (and at epoch 0), appends
them to ``run_dir/metrics.jsonl`` and writes Orbax checkpoints with manifests. A run killed at
any moment resumes from its last complete checkpoint and ends bit-identical (on CPU) to an
uninterrupted run; SIGTERM finishes the current step, saves and returns. A non-finite loss
stops the run with :class:`TrainingDiverged` (nothing non-finite is saved). Every checkpoint
carries checksums of its files and every read verifies them; a resumed run falls back to its
newest intact checkpoint (:class:`DamagedCheckpointWarning`), and other damaged files are a
:class:`DamagedFile` error naming them.

``train(..., placement=make_placement())`` trains data-parallel on every device of a
:class:`~sdcomplex.placement.Placement`: each global batch split over the devices, the state
replicated, the same run (up to float reordering) on any device count, which is not part of
the config; checkpoints restore on any device count. (:func:`train_students`, the ensemble
trainer, runs on one device.)

Distillation plugs in through one :class:`Supervision` given to :func:`train`: its ``loss``
(student logits, labels, outputs -> scalar), ``apply`` (the outputs, computed inside the jitted
step, e.g. a teacher's forward pass), ``variables`` (epoch -> pytree, e.g. a teacher checkpoint
from :func:`load_checkpoint`) and ``diagnostics`` (extra per-epoch metrics).

Example:
    >>> from sdcomplex.train import TrainConfig, train, load_checkpoint, list_checkpoints
    >>> cfg = TrainConfig(model="mlp", dataset="digits", epochs=3, augment=False)
    >>> result = train(cfg, "/tmp/runs/mlp_digits", quiet=True)  # doctest: +SKIP
    >>> list_checkpoints("/tmp/runs/mlp_digits")  # doctest: +SKIP
    [0, 1, 2, 3]
"""

from sdcomplex.train._checkpoint import (
    DamagedCheckpointWarning,
    list_checkpoints,
    load_checkpoint,
    verify_checkpoint,
)
from sdcomplex.train._config import (
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    load_config,
)
from sdcomplex.train._divergence import TrainingDiverged
from sdcomplex.train._ensemble import (
    BATCHINGS,
    EnsembleResult,
    train_students,
)
from sdcomplex.train._inference import batched_apply
from sdcomplex.train._integrity import DamagedFile
from sdcomplex.train._metrics import read_metrics
from sdcomplex.train._optim import make_optimizer, make_schedule
from sdcomplex.train._plot import plot_learning_curves
from sdcomplex.train._rundir import RunDirectory
from sdcomplex.train._setup import build_model, load_run_data, setup_run
from sdcomplex.train._step import (
    TrainState,
    init_train_state,
    make_eval_step,
    make_preprocess,
    make_train_step,
)
from sdcomplex.train._supervision import EpochInfo, Supervision, cross_entropy_loss
from sdcomplex.train._trainer import TrainResult, train

__all__ = [
    "BATCHINGS",
    "EnsembleResult",
    "train_students",
    "OPTIMIZERS",
    "SCHEDULES",
    "RunDirectory",
    "DamagedCheckpointWarning",
    "DamagedFile",
    "EpochInfo",
    "Supervision",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingDiverged",
    "batched_apply",
    "build_model",
    "cross_entropy_loss",
    "init_train_state",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "load_run_data",
    "make_eval_step",
    "make_optimizer",
    "make_preprocess",
    "make_schedule",
    "make_train_step",
    "plot_learning_curves",
    "read_metrics",
    "setup_run",
    "train",
    "verify_checkpoint",
]
