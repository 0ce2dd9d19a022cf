"""The device flags every training command shares: ``--devices N`` and ``--distributed``.

Device options are not config fields: the device count never changes a run's config (or its
hash); the run directory records it (``run.json``, checkpoint manifests). By default a command
uses every local device; ``--devices N`` the first ``N``. ``--distributed`` starts one process
per host (:func:`~sdcomplex.placement.start_distributed`, before any other JAX call): with
``--coordinator HOST:PORT --num-processes N --process-id I``, or without them JAX's detection
of the cluster (SLURM, Open MPI, TPU pods); the mesh then spans every process's devices.
``--cpu-devices N`` runs on ``N`` simulated CPU devices (JAX's ``jax_num_cpu_devices``), so
that the multi-device path can be tried on a laptop: the devices share its cores and are no
faster than one.
"""

from __future__ import annotations

import argparse
from typing import Any

_PROCESS_FLAGS = ("coordinator", "num_processes", "process_id")

MAX_CPU_DEVICES = 1024
"""Most simulated CPU devices ``--cpu-devices`` accepts. They only let the multi-device code
path be tried on one machine, which a few devices already do; they share its cores, and every
one costs memory and compile time before any work (one tiny jitted sum over 1024 of them took
about 20 s and 1.5 GB on two cores, growing with the count), so a larger count is a typo that
would run for many minutes and exhaust the memory rather than a useful setting."""


def add_device_flags(p: argparse.ArgumentParser) -> None:
    """Adds ``--devices``, ``--distributed``, ``--coordinator``, ``--num-processes`` and
    ``--process-id`` (one argument group)."""
    g = p.add_argument_group("devices (not part of the config)")
    g.add_argument(
        "--devices",
        type=int,
        metavar="N",
        help="use the first N local devices (default: all); the batch is split over them",
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="one process per host: with --coordinator, --num-processes, --process-id, or "
        "without them JAX's cluster detection (SLURM, Open MPI, TPU)",
    )
    g.add_argument(
        "--cpu-devices",
        type=int,
        metavar="N",
        help="run on N simulated CPU devices (to try the multi-device path on one machine; "
        "they share its cores)",
    )
    g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    g.add_argument("--num-processes", type=int, metavar="N", help="processes in the run")
    g.add_argument("--process-id", type=int, metavar="I", help="this process's index")


def placement_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~sdcomplex.placement.Placement` the flags ask for; call it before any other
    JAX computation (``--distributed`` must start the processes first).

    Raises:
        ValueError: process flags without ``--distributed``, an incomplete process
            specification, or more devices than exist (one line each).
    """
    from sdcomplex.placement import make_placement, start_distributed

    if getattr(args, "cpu_devices", None) is not None:
        simulate_cpu_devices(args.cpu_devices)
    given = [f"--{name.replace('_', '-')}" for name in _PROCESS_FLAGS if getattr(args, name)]
    if given and not args.distributed:
        raise ValueError(f"{', '.join(given)} need --distributed")
    if args.devices is not None and args.devices < 1:
        raise ValueError(f"--devices must be at least 1, got {args.devices}")
    if args.distributed:
        start_distributed(args.coordinator, args.num_processes, args.process_id)
    if args.distributed and args.devices is not None:
        import jax

        if args.devices != jax.local_device_count():
            raise ValueError(
                f"--devices {args.devices} with --distributed: every process uses all of its "
                f"{jax.local_device_count()} local devices (limit them per host, e.g. with "
                "CUDA_VISIBLE_DEVICES)"
            )
        return make_placement()
    try:
        return make_placement(num_devices=args.devices)
    except ValueError as err:
        raise ValueError(f"--devices: {err}") from None


def simulate_cpu_devices(count: int) -> None:
    """Makes JAX run on ``count`` simulated CPU devices (before any JAX computation).

    Raises:
        ValueError: ``count`` below 1 or above `MAX_CPU_DEVICES`, or JAX's devices already
            initialised in this process.
    """
    import jax

    if count < 1:
        raise ValueError(f"--cpu-devices must be at least 1, got {count}")
    if count > MAX_CPU_DEVICES:
        raise ValueError(
            f"--cpu-devices must be at most {MAX_CPU_DEVICES}, got {count} (simulated devices "
            "share this machine's cores; a few are enough to try the multi-device path)"
        )
    try:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError as err:  # JAX refuses once its backends exist
        raise ValueError(f"--cpu-devices: {err}") from None
