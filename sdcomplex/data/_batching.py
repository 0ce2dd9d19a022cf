"""Deterministic epoch batching: the batches of an epoch depend only on (seed, epoch).

A training run that stops after epoch ``e`` and resumes at epoch ``e + 1`` (or mid-epoch at a
given step) sees exactly the batches it would have seen without stopping, with no iterator
state to checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import jax
import numpy as np


@dataclass(frozen=True)
class EpochBatcher:
    """Shuffled fixed-size mini-batches of ``num_examples`` indices, reproducible per epoch.

    Epoch ``e`` uses the permutation ``numpy.random.default_rng([seed, e]).permutation(n)``
    (PCG64 seeded through a SeedSequence, stable across platforms and numpy versions) cut into
    consecutive batches of ``batch_size``. With ``drop_last`` the incomplete last batch is
    dropped (every batch has the same shape, so a jitted step compiles once); otherwise it is
    yielded, smaller.

    Attributes:
        num_examples: size ``n`` of the data split.
        batch_size: examples per batch.
        seed: base seed of the permutations.
        drop_last: drop the incomplete last batch.

    Example:
        >>> import numpy as np
        >>> batcher = EpochBatcher(num_examples=10, batch_size=4, seed=0)
        >>> batcher.batches_per_epoch
        2
        >>> x, y = np.arange(10) * 10, np.arange(10)
        >>> [xb.shape for xb, yb in batcher.batches(3, x, y)]
        [(4,), (4,)]
    """

    num_examples: int
    batch_size: int
    seed: int = 0
    drop_last: bool = True

    def __post_init__(self) -> None:
        for name in ("num_examples", "batch_size", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if self.num_examples < 1 or self.batch_size < 1 or self.seed < 0:
            raise ValueError("need num_examples >= 1, batch_size >= 1 and seed >= 0")
        if self.drop_last and self.batch_size > self.num_examples:
            raise ValueError(
                f"batch_size {self.batch_size} > num_examples {self.num_examples} with "
                "drop_last=True leaves no batch"
            )

    @property
    def batches_per_epoch(self) -> int:
        """Number of batches in every epoch."""
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _check(self, epoch: int, start: int = 0) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if not 0 <= start <= self.batches_per_epoch:
            raise ValueError(f"start must be in [0, {self.batches_per_epoch}], got {start}")

    def permutation(self, epoch: int) -> np.ndarray:
        """The epoch's order of all ``num_examples`` indices, int64 ``(n,)``."""
        self._check(epoch)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def batch_indices(self, epoch: int, start: int = 0) -> Iterator[np.ndarray]:
        """Index arrays of the epoch's batches, beginning at batch ``start`` (to resume)."""
        self._check(epoch, start)
        order = self.permutation(epoch)
        for step in range(start, self.batches_per_epoch):
            yield order[step * self.batch_size : (step + 1) * self.batch_size]

    def batches(
        self, epoch: int, *arrays: np.ndarray, start: int = 0, rows: slice | None = None
    ) -> Iterator[tuple[np.ndarray, ...]]:
        """Yield ``tuple(a[idx] for a in arrays)`` for each batch of the epoch.

        Args:
            epoch: epoch number (>= 0).
            *arrays: arrays with ``num_examples`` rows (e.g. ``x_train, y_train``).
            start: first batch to yield (to resume mid-epoch).
            rows: only these rows of every batch (``idx[rows]``), e.g. the rows of a global
                batch that one process of a multi-process run holds
                (:meth:`~sdcomplex.placement.Placement.local_rows`); only they are gathered.
                The batches and their order are those of the whole batches.

        Example:
            >>> batcher = EpochBatcher(num_examples=8, batch_size=4, seed=0)
            >>> x = np.arange(8)
            >>> whole = [b for (b,) in batcher.batches(1, x)]
            >>> halves = [b for (b,) in batcher.batches(1, x, rows=slice(2, 4))]
            >>> all((h == w[2:4]).all() for h, w in zip(halves, whole))
            True
        """
        for a in arrays:
            if len(a) != self.num_examples:
                raise ValueError(f"array with {len(a)} rows, batcher has {self.num_examples}")
        for idx in self.batch_indices(epoch, start):
            if rows is not None:
                idx = idx[rows]
            yield tuple(a[idx] for a in arrays)

    def step_key(self, epoch: int, step: int) -> jax.Array:
        """PRNG key for batch ``step`` of ``epoch`` (e.g. for :func:`augment_batch`).

        ``fold_in(fold_in(key(seed), epoch), step)``: a function of (seed, epoch, step) only.
        """
        self._check(epoch)
        return jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), epoch), step)
