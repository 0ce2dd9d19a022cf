"""Where arrays live: the device mesh, multi-process start-up, and how batches, parameters and
kernels are placed on it.

Every module that runs on several devices asks this one; none builds shardings of its own. The
mesh has one axis, ``"data"``, over which examples (batches, kernel rows, data sets) are split;
parameters and optimiser states are replicated. With several processes (one per host) the mesh
spans every process's devices and each process materialises only its own rows of a global batch.

Example:
    >>> import numpy as np
    >>> from sdcomplex.placement import make_placement
    >>> placement = make_placement(num_devices=1)
    >>> placement.num_devices, placement.axis
    (1, 'data')
    >>> batch = placement.put_batch(np.ones((4, 3), np.float32))
    >>> batch.shape, batch.sharding.spec
    ((4, 3), P('data', None))
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import json
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

__all__ = [
    "DATA_AXIS",
    "Placement",
    "active_processes",
    "as_placement",
    "gather_json",
    "make_placement",
    "share_json",
    "start_distributed",
    "this_process_only",
]

_THIS_PROCESS_ONLY = contextvars.ContextVar("sdcomplex_this_process_only", default=False)


@dataclasses.dataclass(frozen=True)
class Placement:
    """A one-axis device mesh and the shardings every computation uses.

    Attributes:
      mesh: a ``jax.sharding.Mesh`` with the single axis ``axis`` over the devices in use.
      axis: the name of the data axis (``"data"``).
    """

    mesh: Mesh
    axis: str = DATA_AXIS

    def __post_init__(self) -> None:
        if not isinstance(self.mesh, Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(self.mesh).__name__}")
        if tuple(self.mesh.axis_names) != (self.axis,):
            raise ValueError(
                f"a Placement's mesh has the one axis {self.axis!r}, got axes "
                f"{tuple(self.mesh.axis_names)}"
            )
        if self.mesh.devices.size == 0:
            raise ValueError("a Placement's mesh has no devices")

    @property
    def devices(self) -> tuple[Any, ...]:
        """The devices of the mesh, in mesh order."""
        return tuple(self.mesh.devices.flat)

    @property
    def num_devices(self) -> int:
        """Number of devices in the mesh (over every process)."""
        return int(self.mesh.devices.size)

    @property
    def num_processes(self) -> int:
        """Number of processes whose devices the mesh holds."""
        return len({d.process_index for d in self.devices})

    @property
    def is_multi_process(self) -> bool:
        return self.num_processes > 1

    def batch_sharding(self, ndim: int = 1) -> NamedSharding:
        """Leading (example) axis split over the data axis, the other ``ndim - 1`` replicated."""
        return NamedSharding(self.mesh, PartitionSpec(self.axis, *([None] * (ndim - 1))))

    def replicated(self) -> NamedSharding:
        """Every device holds the whole array (parameters, optimiser state, small results)."""
        return NamedSharding(self.mesh, PartitionSpec())

    def check_divides(self, size: int, what: str = "global batch size") -> None:
        """Raise ``ValueError`` naming both numbers unless the device count divides ``size``."""
        if isinstance(size, bool) or not isinstance(size, int | np.integer):
            raise TypeError(f"{what} must be an integer, got {size!r}")
        if int(size) % self.num_devices:
            raise ValueError(
                f"{what} {int(size)} is not divisible by the number of devices "
                f"{self.num_devices}; choose a multiple of {self.num_devices} or use --devices"
            )

    def local_rows(self, global_size: int) -> slice:
        """The rows of a global batch of ``global_size`` examples that this process holds.

        Raises:
          ValueError: when the device count does not divide ``global_size``.
        """
        self.check_divides(global_size)
        sharding = self.batch_sharding(1)
        index_map = sharding.addressable_devices_indices_map((int(global_size),))
        starts = sorted(
            idx[0].indices(int(global_size))[:2] for idx in index_map.values() if idx is not None
        )
        begin, end = starts[0][0], starts[-1][1]
        covered = sum(stop - start for start, stop in starts)
        if covered != end - begin:  # pragma: no cover - JAX's device order keeps rows contiguous
            raise ValueError("this process's devices do not hold contiguous rows of the batch")
        return slice(begin, end)

    def put_batch(self, local: Any, global_size: int | None = None) -> Any:
        """Place a pytree of per-example arrays on the mesh, split along the leading axis.

        Args:
          local: pytree of arrays whose leading axis is this process's rows of the global batch
            (with one process: the whole batch).
          global_size: number of examples in the global batch (default: the local leading size
            times the number of processes).

        Returns:
          The same pytree of global ``jax.Array`` values sharded with :meth:`batch_sharding`.
        """

        def put(leaf: Any) -> jax.Array:
            leaf = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
            rows = int(leaf.shape[0]) if leaf.ndim else 0
            total = rows * self.num_processes if global_size is None else int(global_size)
            self.check_divides(total)
            sharding = self.batch_sharding(leaf.ndim)
            if not self.is_multi_process:
                return jax.device_put(leaf, sharding)
            shape = (total, *leaf.shape[1:])
            return jax.make_array_from_process_local_data(sharding, leaf, shape)

        return jax.tree_util.tree_map(put, local)

    def replicate(self, tree: Any) -> Any:
        """Place a pytree (parameters, optimiser state) on every device of the mesh."""
        sharding = self.replicated()
        if not self.is_multi_process:
            return jax.device_put(tree, sharding)

        def put(leaf: Any) -> jax.Array:
            value = np.asarray(leaf)
            return jax.make_array_from_process_local_data(sharding, value, value.shape)

        return jax.tree_util.tree_map(put, tree)

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of where a run ran: device count, kinds and process count."""
        kinds = sorted({d.device_kind for d in self.devices})
        return {
            "num_devices": self.num_devices,
            "device_kinds": kinds,
            "platform": self.devices[0].platform,
            "num_processes": self.num_processes,
        }

    # --- rows of a full host copy, gathers and per-device programs (kernels, matrix-free) --------

    def data_spec(self, ndim: int = 1, axis: int = 0) -> PartitionSpec:
        """The partition spec of an ``ndim``-axis array whose axis ``axis`` is split over the
        data axis (the others replicated); ``ndim=0`` gives the replicated spec ``P()``."""
        if ndim == 0:
            return PartitionSpec()
        if not 0 <= axis < ndim:
            raise ValueError(f"axis {axis} out of range for an array of {ndim} axes")
        return PartitionSpec(*[self.axis if a == axis else None for a in range(ndim)])

    def put_rows(self, full: Any, axis: int = 0) -> Any:
        """Place a pytree of host arrays, the SAME full copy on every process, split along
        ``axis`` over the mesh: each process materialises only the rows its devices hold.

        Args:
          full: pytree of arrays (numpy or jax) whose axis ``axis`` the device count divides.
          axis: the split axis.

        Returns:
          The pytree of global ``jax.Array`` values with spec :meth:`data_spec`.

        Raises:
          ValueError: when the device count does not divide the split axis.
        """

        def put(leaf: Any) -> jax.Array:
            host = np.asarray(leaf)
            host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
            self.check_divides(int(host.shape[axis]), f"axis {axis} of size")
            sharding = NamedSharding(self.mesh, self.data_spec(host.ndim, axis))
            if not self.is_multi_process:
                return jax.device_put(host, sharding)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

        return jax.tree_util.tree_map(put, full)

    def gather(self, tree: Any) -> Any:
        """The whole value of every (sharded or replicated) global array of ``tree`` as numpy, on
        every process (``process_allgather`` across processes)."""
        if not self.is_multi_process:
            return jax.tree_util.tree_map(np.asarray, tree)
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)

    def shard_map(self, fn: Any, in_specs: Any, out_specs: Any) -> Any:
        """``fn`` run once per device of the mesh on its local pieces (``jax.shard_map``); inside,
        collectives name :attr:`axis` (``psum``, ``ppermute``, ``axis_index``).

        Values are not checked for being varying or replicated over the axis (``check_vma``
        off), so that functions written for one device (autodiff of a model on its local
        examples) run unchanged; outputs with a replicated spec must be made equal with a
        collective (``psum``)."""
        return jax.shard_map(
            fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
        )

    # --- data-parallel training (sdcomplex.train, sdcomplex.distill) ----------------------------

    @property
    def writes_files(self) -> bool:
        """True in the process that writes a run's files (process 0; every one-process run)."""
        return jax.process_index() == 0

    def abstract_replicated(self, tree: Any) -> Any:
        """``jax.ShapeDtypeStruct`` leaves of ``tree`` (arrays or structs) with the replicated
        sharding: the target an Orbax checkpoint is restored into, on any device count."""
        sharding = self.replicated()
        return jax.tree_util.tree_map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), tree
        )

    def replicate_key(self, key: jax.Array) -> jax.Array:
        """A PRNG key for a computation on the mesh: with one process the key itself (an
        uncommitted array, which the computation replicates without a transfer call of its
        own), with several its raw ``uint32`` data replicated (wrap it again with
        ``jax.random.wrap_key_data`` inside the computation: the same key, the same bits)."""
        if not self.is_multi_process:
            return key  # uncommitted: a computation on the mesh takes it as replicated
        return self.replicate(np.asarray(jax.random.key_data(key)))

    def put_step_batch(self, local: Any, global_size: int) -> Any:
        """:meth:`put_batch` of a training step's batch (a pytree of NumPy arrays) with one
        transfer call for all its leaves when one process holds the whole batch, and none on a
        one-device mesh (the arrays as they are: the step's own transfer of its NumPy
        arguments puts them on its one device, which costs no extra dispatch)."""
        if self.is_multi_process:
            return self.put_batch(local, global_size=global_size)
        if self.num_devices == 1:
            return local
        leaves, treedef = jax.tree_util.tree_flatten(local)
        for leaf in leaves:
            self.check_divides(int(np.shape(leaf)[0]))
        shardings = [self.batch_sharding(np.ndim(leaf)) for leaf in leaves]
        return jax.tree_util.tree_unflatten(treedef, jax.device_put(leaves, shardings))

    def sync(self, name: str) -> None:
        """Waits until every process reached this point (no-op with one process)."""
        if self.is_multi_process:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)


def make_placement(
    num_devices: int | None = None, devices: Sequence[Any] | None = None
) -> Placement:
    """The placement over the devices a computation may use.

    Args:
      num_devices: use the first ``num_devices`` devices (default: every device of every
        process, i.e. every local device in a one-process run). With several processes it must
        be ``None`` or the global device count (limit each host's devices when starting the
        processes instead: :func:`start_distributed` ``local_device_ids``).
      devices: explicit devices (overrides ``num_devices``).

    Returns:
      A :class:`Placement` with a one-axis mesh named ``"data"``.

    Raises:
      TypeError: ``devices`` holding something other than ``jax.Device`` objects.
      ValueError: when more devices are asked for than exist, a subset in a multi-process run,
        a device named twice, or processes with different numbers of devices (JAX's
        multi-process collectives need the same number on each).
    """
    if devices is not None:
        available = list(devices)
    else:
        available = list(jax.local_devices() if _THIS_PROCESS_ONLY.get() else jax.devices())
    if not available:
        raise ValueError("no devices to place on")
    for device in available:
        if not isinstance(device, jax.Device):
            raise TypeError(f"devices must be jax.Device objects, got {device!r}")
    if len(set(available)) != len(available):
        raise ValueError(f"devices must be distinct, got {available}")
    if num_devices is not None and devices is None:
        if isinstance(num_devices, bool) or not isinstance(num_devices, int | np.integer):
            raise TypeError(f"num_devices must be an integer, got {num_devices!r}")
        if not 1 <= int(num_devices) <= len(available):
            raise ValueError(
                f"num_devices={int(num_devices)} but {len(available)} device(s) are available"
            )
        processes = len({d.process_index for d in available})
        if processes > 1 and int(num_devices) != len(available):
            raise ValueError(
                f"num_devices={int(num_devices)} in a {processes}-process run with "
                f"{len(available)} devices: every process's devices take part"
            )
        available = available[: int(num_devices)]
    per_process = collections.Counter(d.process_index for d in available)
    if len(set(per_process.values())) > 1:
        raise ValueError(
            "every process must bring the same number of devices to the mesh, got "
            + ", ".join(f"{n} on process {i}" for i, n in sorted(per_process.items()))
        )
    mesh = Mesh(np.asarray(available, dtype=object), (DATA_AXIS,))
    return Placement(mesh=mesh)


def start_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Sequence[int] | None = None,
    timeout_s: int = 300,
) -> None:
    """Start a multi-process run (one process per host) before any other JAX call.

    With ``coordinator``, ``num_processes`` and ``process_id`` all ``None``, JAX detects the
    cluster itself (SLURM, Open MPI, TPU pods); otherwise all three must be given.

    Args:
      coordinator: ``host:port`` of process 0's coordinator service.
      num_processes: number of processes in the run.
      process_id: this process's index, ``0 <= process_id < num_processes``.
      local_device_ids: the local devices this process uses (default: all).
      timeout_s: seconds to wait for every process to join (and for shutdown).

    Raises:
      ValueError: on a partial or inconsistent specification.
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError(
            "give coordinator, num_processes and process_id together, or none of them for "
            "automatic cluster detection (SLURM, Open MPI, TPU)"
        )
    if all(given):
        assert num_processes is not None and process_id is not None
        if int(num_processes) < 1:
            raise ValueError(f"num_processes must be at least 1, got {int(num_processes)}")
        if not 0 <= int(process_id) < int(num_processes):
            raise ValueError(
                f"process_id must be in [0, {int(num_processes)}), got {int(process_id)}"
            )
        host, _, port = str(coordinator).rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"coordinator must be host:port with a port in 1..65535, got {coordinator!r}"
            )
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=None if num_processes is None else int(num_processes),
        process_id=None if process_id is None else int(process_id),
        local_device_ids=None if local_device_ids is None else list(local_device_ids),
        initialization_timeout=int(timeout_s),
        heartbeat_timeout_seconds=max(10, min(100, int(timeout_s))),
        shutdown_timeout_seconds=int(timeout_s),
    )


@contextlib.contextmanager
def this_process_only() -> Iterator[None]:
    """Within the block, work runs in this process alone, on its own devices, while the other
    processes of a multi-process run do something else (wait).

    Inside it the defaults name this process's devices: :func:`make_placement` (hence
    ``mesh=None`` of the kernels and ``placement=None`` of training, one local device) uses
    ``jax.local_devices()`` instead of every process's devices, and checkpoints are written
    and read without waiting for the other processes (:func:`active_processes`). In a
    one-process run it changes nothing.

    Example:
        >>> from sdcomplex.placement import active_processes, make_placement
        >>> with this_process_only():
        ...     make_placement().num_processes, active_processes()
        (1, None)
    """
    token = _THIS_PROCESS_ONLY.set(True)
    try:
        yield
    finally:
        _THIS_PROCESS_ONLY.reset(token)


def active_processes() -> frozenset[int] | None:
    """The processes that take part in the work at hand: None for every process (always in a
    one-process run), or this process alone inside :func:`this_process_only` of a
    multi-process run (Orbax's ``active_processes``)."""
    if _THIS_PROCESS_ONLY.get() and jax.process_count() > 1:
        return frozenset({jax.process_index()})
    return None


def _json_bytes(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, sort_keys=True).encode(), dtype=np.uint8)


def _from_bytes(data: Any) -> Any:
    return json.loads(bytes(np.asarray(data, dtype=np.uint8)).decode())


def share_json(value: Any) -> Any:
    """Process 0's ``value`` (anything ``json.dumps`` writes) on every process.

    A collective: every process of a multi-process run calls it at the same point (the others'
    ``value`` is ignored). In a one-process run it returns ``value`` itself.

    Example:
        >>> share_json({"stage": "teacher", "action": "run"})
        {'stage': 'teacher', 'action': 'run'}
    """
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = _json_bytes(value) if jax.process_index() == 0 else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    if jax.process_index() != 0:
        data = np.zeros(size, np.uint8)
    return _from_bytes(multihost_utils.broadcast_one_to_all(data))


def gather_json(value: Any) -> list[Any]:
    """Every process's ``value`` (anything ``json.dumps`` writes), in process order, on every
    process: a collective as :func:`share_json`; ``[value]`` in a one-process run.

    Example:
        >>> gather_json(True)
        [True]
    """
    if jax.process_count() == 1:
        return [json.loads(json.dumps(value))]
    from jax.experimental import multihost_utils

    data = _json_bytes(value)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(data.size))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [_from_bytes(row[: int(n)]) for row, n in zip(rows, sizes, strict=True)]


def as_placement(mesh: Any = None, what: str = "mesh") -> Placement:
    """The placement a ``mesh=`` keyword names.

    Args:
      mesh: None (every device: :func:`make_placement`), a :class:`Placement`, or a
        one-axis ``jax.sharding.Mesh`` (its axis becomes the data axis).
      what: the keyword's name, for error messages.

    Returns:
      A :class:`Placement`.

    Raises:
      TypeError: for any other type.
      ValueError: for a mesh with more than one axis.
    """
    if mesh is None:
        return make_placement()
    if isinstance(mesh, Placement):
        return mesh
    if isinstance(mesh, Mesh):
        if len(mesh.axis_names) != 1:
            raise ValueError(
                f"{what} must have one axis (the data axis), got axes {tuple(mesh.axis_names)}"
            )
        return Placement(mesh=mesh, axis=str(mesh.axis_names[0]))
    raise TypeError(
        f"{what} must be None, a sdcomplex.placement.Placement or a jax.sharding.Mesh, "
        f"got {type(mesh).__name__}"
    )
