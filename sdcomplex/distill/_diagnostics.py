"""Per-epoch diagnostics of a distillation run: fidelity, NTK similarity, supervision complexity.

Logged into the run's ``metrics.jsonl`` on diagnostic epochs (0, k, 2k, ... and the last):

* ``train_fidelity_final`` / ``test_fidelity_final``: fraction of examples where the student's
  argmax equals the final teacher's, on fixed class-balanced random subsets of
  ``fidelity_examples`` training and test examples (the whole splits if ``None``); inputs
  without augmentation, both networks in inference mode;
* ``train_fidelity_current`` / ``test_fidelity_current``: the same with the checkpoint that
  supervised the epoch (``None`` in mode ``"none"``);
* ``train_kd_loss``: the KD objective of the student (inference mode) against the current
  checkpoint on the training fidelity subset (``None`` in mode ``"none"``);
* ``ntk_similarity``: kernel alignment between the student's mean NTK on the probe at
  initialisation (``ntk_init.npy`` in the run directory) and now;
* ``complexity_labels``, ``complexity_random_labels``, ``complexity_teacher_final``,
  ``complexity_current``: adjusted supervision complexity sqrt(s(Y) tr K) / n with respect to
  the student's current mean NTK K on the probe, of one-hot labels, one-hot random labels, the
  final teacher's soft targets softmax(z / tau) and the targets currently supervising (soft
  targets of the current checkpoint; one-hot labels in mode ``"none"``). The kernel is
  factorised once per epoch (float64) for all four; ``complexity_jitter`` is the jitter the
  solve added and ``ntk_condition_number`` the condition-number estimate of the kernel solved
  (a nearly singular kernel makes every complexity large: read them together).

At epoch 0 the "current" checkpoint is the one that supervises epoch 1. Every value is a
deterministic function of the saved state, so a resumed run logs exactly the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex import targets as tg
from sdcomplex._io import atomic_save_npy
from sdcomplex.complexity import factorize_kernel, kernel_alignment
from sdcomplex.data import DatasetInfo, normalise_array
from sdcomplex.distill._config import DistillConfig
from sdcomplex.distill._loss import kd_loss
from sdcomplex.distill._teacher import CheckpointCache, TeacherRun, load_teacher_variables
from sdcomplex.models import init_variables
from sdcomplex.ntk import empirical_ntk, flax_ntk_fn
from sdcomplex.train import EpochInfo, batched_apply

NTK_INIT_FILE = "ntk_init.npy"
DIAGNOSTIC_KEYS = (
    "train_fidelity_final",
    "test_fidelity_final",
    "train_fidelity_current",
    "test_fidelity_current",
    "train_kd_loss",
    "ntk_similarity",
    "complexity_labels",
    "complexity_random_labels",
    "complexity_teacher_final",
    "complexity_current",
    "complexity_jitter",
    "ntk_condition_number",
)
"""Metric keys added on diagnostic epochs (besides ``teacher_epoch``, logged every epoch)."""


def probe_indices(
    labels: np.ndarray, size: int, num_classes: int, seed: int | Sequence[int]
) -> np.ndarray:
    """A class-balanced random subset of the training set, as sorted indices.

    Classes are visited round-robin in a random order, each contributing its examples in a
    random order, so class counts differ by at most one (unless a class runs out).

    Args:
        labels: (n,) int training labels.
        size: number of examples to pick, ``2 <= size <= n``.
        num_classes: C.
        seed: numpy PCG64 seed (an integer or a sequence of integers).

    Returns:
        (size,) int64 sorted indices.

    Raises:
        ValueError: ``size`` larger than the training set.

    Example:
        >>> probe_indices(np.array([0, 0, 0, 1, 1, 1]), 4, 2, seed=0).shape
        (4,)
    """
    labels = np.asarray(labels)
    if size > len(labels):
        raise ValueError(
            f"probe_size {size} exceeds the {len(labels)} training examples; use a smaller probe"
        )
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    order = rng.permutation(num_classes)
    picked: list[int] = []
    depth = 0
    while len(picked) < size:
        for c in order:
            if depth < len(pools[c]) and len(picked) < size:
                picked.append(int(pools[c][depth]))
        depth += 1
    return np.sort(np.asarray(picked, np.int64))


def diagnostic_epochs(epochs: int, every: int) -> tuple[int, ...]:
    """Epochs with diagnostics: 0, k, 2k, ... and the last (none when ``every == 0``)."""
    if every == 0:
        return ()
    return tuple(sorted(set(range(0, epochs + 1, every)) | {epochs}))


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def positions_in(rows: np.ndarray | None, indices: np.ndarray) -> np.ndarray | None:
    """Where each of ``indices`` stands in ``rows`` (increasing; ``None``: every example, so
    the positions are the indices), or ``None`` if one of them is not in ``rows``.

    Example:
        >>> positions_in(np.array([2, 5, 7]), np.array([5, 7])).tolist()
        [1, 2]
        >>> positions_in(np.array([2, 5, 7]), np.array([5, 6])) is None
        True
    """
    if rows is None:
        return indices
    if len(rows) == 0:
        return indices[:0] if len(indices) == 0 else None
    at = np.minimum(np.searchsorted(rows, indices), len(rows) - 1)
    return at if np.array_equal(rows[at], indices) else None


class Diagnostics:
    """The :attr:`~sdcomplex.train.Supervision.diagnostics` of a distillation run (see the
    module docstring).

    On the first diagnostic epoch (0) it saves the student's initial NTK on the probe to
    ``ntk_init.npy`` (atomic), recomputed when a run is resumed (and the file rewritten if it
    was damaged).

    Args:
        config: the distillation config.
        student_model: the student's Flax module.
        student_preprocess: raw inputs -> the student's normalised inputs (no augmentation).
        input_info: the data's metadata with the statistics the student normalises with (the
            probe inputs of the NTK are normalised with it in NumPy).
        teacher: the opened teacher run, or None (mode none without a teacher).
        teacher_apply: ``(teacher_variables, student_inputs) -> logits``.
        cache: the checkpoint cache shared with the supervision (None without a teacher).
        schedule: teacher epoch per student epoch 1..T (None in mode none).
        probe: (m,) sorted probe indices into the training set.
        fidelity_train: indices of the training examples of the train fidelity.
        fidelity_test: indices of the test examples of the test fidelity.
        batch_size: evaluation batch size.
    """

    def __init__(
        self,
        *,
        config: DistillConfig,
        student_model: nn.Module,
        student_preprocess: Callable[[jax.Array], jax.Array],
        input_info: DatasetInfo,
        teacher: TeacherRun | None,
        teacher_apply: Callable[[Any, jax.Array], jax.Array] | None,
        cache: CheckpointCache | None,
        schedule: tuple[int, ...] | None,
        probe: np.ndarray,
        fidelity_train: np.ndarray,
        fidelity_test: np.ndarray,
        batch_size: int,
    ) -> None:
        self.config = config
        self.student_model = student_model
        self.teacher = teacher
        self.cache = cache
        self.schedule = schedule
        self.probe = probe
        self.fidelity_train = fidelity_train
        self.fidelity_test = fidelity_test
        self.batch_size = batch_size
        self.epochs = set(diagnostic_epochs(config.student.epochs, config.diagnostics_every))
        self._ntk_init: np.ndarray | None = None
        self._final: dict[str, np.ndarray] | None = None
        self._current: tuple[int, dict[str, np.ndarray]] | None = None
        self._data: dict[str, Any] | None = None

        def student_logits(variables: Any, raw: jax.Array) -> jax.Array:
            return student_model.apply(variables, student_preprocess(raw), train=False)  # type: ignore[return-value]

        self._student_logits = jax.jit(student_logits)
        self.input_info = input_info
        tau, alpha = config.temperature, config.alpha

        def train_kd_loss(student: jax.Array, teacher: jax.Array, labels: jax.Array):
            return kd_loss(student, teacher, labels, temperature=tau, alpha=alpha)

        self._kd_loss = jax.jit(train_kd_loss)
        self._teacher_logits = None
        if teacher_apply is not None:

            def teacher_logits(variables: Any, raw: jax.Array) -> jax.Array:
                return teacher_apply(variables, student_preprocess(raw))

            self._teacher_logits = jax.jit(teacher_logits)

    def teacher_epoch(self, epoch: int) -> int | None:
        """The checkpoint supervising student epoch ``epoch`` (epoch 0: the first one)."""
        if self.schedule is None:
            return None
        return self.schedule[max(epoch, 1) - 1]

    def __call__(self, info: EpochInfo) -> dict[str, Any]:
        run_dir = Path(info.run_dir)
        out: dict[str, Any] = {"teacher_epoch": self.teacher_epoch(info.epoch)}
        if info.epoch not in self.epochs:
            return out
        # The student's variables on this process's default device (uncommitted), whatever
        # placement training used: the forward passes (fidelity, KD loss) run on that device,
        # while the NTKs on the probe (`empirical_ntk`'s default mesh, `make_placement()`)
        # are split over every device of every process (this process's inside
        # `this_process_only`).
        local = jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf)), info.variables)
        info = info._replace(variables=local)
        data = self._arrays(info)
        out.update(self._fidelity(info, data))
        out.update(self._complexity(info, data, run_dir))
        return out

    # --- pieces ----------------------------------------------------------------------------

    def _arrays(self, info: EpochInfo) -> dict[str, Any]:
        if self._data is None:
            ds = info.dataset
            x_probe_raw = ds.x_train[self.probe]
            self._data = {
                "x_train": ds.x_train[self.fidelity_train],
                "y_train": ds.y_train[self.fidelity_train],
                "x_test": ds.x_test[self.fidelity_test],
                "x_probe_raw": x_probe_raw,
                "x_probe": normalise_array(x_probe_raw, self.input_info),
                "y_probe": ds.y_train[self.probe],
            }
        return self._data

    def _teacher_outputs(self, variables: Any, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        assert self._teacher_logits is not None
        fn, bs = self._teacher_logits, self.batch_size
        return {
            name: batched_apply(fn, variables, data[key], bs).astype(np.float32)
            for name, key in (("train", "x_train"), ("test", "x_test"), ("probe", "x_probe_raw"))
        }

    def _final_outputs(self, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        assert self.teacher is not None
        if self._final is None:
            final = self.teacher.final_epoch
            if self.cache is not None and self.cache.epoch == final:
                variables = self.cache.get(final)
            else:
                variables = load_teacher_variables(self.teacher.run_dir, final)
            self._final = self._teacher_outputs(variables, data)
        return self._final

    def _current_outputs(self, info: EpochInfo, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        assert self.teacher is not None and self.cache is not None
        epoch = self.teacher_epoch(info.epoch)
        assert epoch is not None
        if epoch == self.teacher.final_epoch:
            return self._final_outputs(data)
        if self._current is None or self._current[0] != epoch:
            variables = info.supervision if info.supervision is not None else None
            if variables is None:
                variables = self.cache.get(epoch)
            self._current = (epoch, self._teacher_outputs(variables, data))
        return self._current[1]

    def _student_outputs(
        self,
        info: EpochInfo,
        evaluated: np.ndarray | None,
        evaluated_rows: np.ndarray | None,
        indices: np.ndarray,
        data: Mapping[str, Any],
        key: str,
    ) -> np.ndarray:
        """The student's logits on a fidelity subset: from the trainer's evaluation (of the
        examples ``evaluated_rows``, increasing; ``None``: all) if it covered the subset (the
        same inference-mode forward pass), else computed here."""
        if evaluated is not None:
            at = positions_in(evaluated_rows, indices)
            if at is not None:
                return np.asarray(evaluated, np.float32)[at]
        outputs = batched_apply(self._student_logits, info.variables, data[key], self.batch_size)
        return outputs.astype(np.float32)

    def _fidelity(self, info: EpochInfo, data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(DIAGNOSTIC_KEYS[:5])
        if self.teacher is None:
            return out
        s_train = self._student_outputs(
            info, info.train_logits, info.train_indices, self.fidelity_train, data, "x_train"
        )
        s_test = self._student_outputs(
            info, info.test_logits, None, self.fidelity_test, data, "x_test"
        )
        final = self._final_outputs(data)
        out["train_fidelity_final"] = _agreement(s_train, final["train"])
        out["test_fidelity_final"] = _agreement(s_test, final["test"])
        if self.config.mode != "none":
            current = self._current_outputs(info, data)
            out["train_fidelity_current"] = _agreement(s_train, current["train"])
            out["test_fidelity_current"] = _agreement(s_test, current["test"])
            loss = self._kd_loss(s_train, current["train"], data["y_train"])
            out["train_kd_loss"] = float(loss)
        return out

    def _initial_kernel(self, info: EpochInfo, x_probe: np.ndarray, run_dir: Path) -> np.ndarray:
        """The student's NTK at initialisation on the probe, recomputed on resume (the initial
        variables are a deterministic function of the seed, so it equals the kernel of epoch
        0); ``ntk_init.npy`` is rewritten, with a warning, if it is missing or differs."""
        shape = info.dataset.info.input_shape
        variables = init_variables(self.student_model, self.config.student.seed, shape)
        fn, params = flax_ntk_fn(self.student_model, variables)
        kernel = empirical_ntk(fn, params, x_probe, outputs="mean", progress=False)
        path = run_dir / NTK_INIT_FILE
        try:
            stored = np.load(path, allow_pickle=False)
            intact = stored.shape == kernel.shape and np.array_equal(stored, kernel)
        except (OSError, ValueError, EOFError):
            intact = False
        if not intact and jax.process_index() == 0:  # (process 0 writes a run's files)
            warnings.warn(
                f"{path} was missing or damaged; rewritten from the student's initial variables",
                stacklevel=2,
            )
            atomic_save_npy(path, kernel, overwrite=True)
        return kernel

    def _complexity(
        self, info: EpochInfo, data: Mapping[str, Any], run_dir: Path
    ) -> dict[str, Any]:
        fn, params = flax_ntk_fn(self.student_model, info.variables)
        kernel = empirical_ntk(fn, params, data["x_probe"], outputs="mean", progress=False)
        if info.epoch == 0:
            if jax.process_index() == 0:  # (process 0 writes a run's files)
                atomic_save_npy(run_dir / NTK_INIT_FILE, kernel, overwrite=True)
            self._ntk_init = kernel
        elif self._ntk_init is None:
            self._ntk_init = self._initial_kernel(info, data["x_probe"], run_dir)
        factorized = factorize_kernel(kernel)
        num_classes = info.dataset.info.num_classes
        tau = self.config.temperature
        y = data["y_probe"]
        labels = tg.one_hot(y, num_classes)
        results = {
            "complexity_labels": factorized.complexity(labels),
            "complexity_random_labels": factorized.complexity(
                tg.random_labels(len(y), num_classes, seed=self.config.random_labels_seed)
            ),
        }
        if self.teacher is not None:
            final = self._final_outputs(data)["probe"]
            results["complexity_teacher_final"] = factorized.complexity(tg.soft_targets(final, tau))
        if self.config.mode == "none":
            results["complexity_current"] = results["complexity_labels"]
        else:
            current = self._current_outputs(info, data)["probe"]
            results["complexity_current"] = factorized.complexity(tg.soft_targets(current, tau))
        out: dict[str, Any] = {
            "ntk_similarity": kernel_alignment(self._ntk_init, kernel),
            "complexity_teacher_final": None,
        }
        out.update({k: r.adjusted for k, r in results.items()})
        out["complexity_jitter"] = max(r.jitter for r in results.values())
        out["ntk_condition_number"] = max(r.condition_number for r in results.values())
        return out
