"""Kernels of runs on disk: ``K.npz`` with a JSON sidecar, written atomically, verified on
reading, and a cache keyed by what the kernel is (run, epoch, examples, outputs, filter).

``K.npz`` holds one array, ``kernel``, so ``sdcomplex complexity --kernel K.npz`` reads it
directly. The sidecar ``K.json`` records the request (``run``: directory, epoch, config hash,
digest of the variables; ``data``: data set, split, subset size and seed; ``indices``;
``inputs_sha256``: digest of the model inputs; ``outputs``; ``param_filter``),
the examples' labels, the kernel's shape, dtype and SHA-256, the implementation used and the
library versions.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from sdcomplex._io import atomic_write_bytes, atomic_write_json, to_jsonable
from sdcomplex.ntk._adapters import ntk_fn
from sdcomplex.ntk._api import compute_with_plan, plan_ntk
from sdcomplex.ntk._runs import RunCheckpoint, RunExamples, run_inputs
from sdcomplex.train._checkpoint import library_versions

KERNEL_KEY = "kernel"
_REQUEST_KEYS = ("run", "data", "indices", "inputs_sha256", "outputs", "param_filter")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a kernel file: ``K.npz`` -> ``K.json``."""
    return Path(path).with_suffix(".json")


def _digest(kernel: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(kernel).tobytes()).hexdigest()


def kernel_request(
    run: RunCheckpoint, examples: RunExamples, *, outputs: str, param_filter: str | None
) -> dict[str, Any]:
    """What a kernel is: the JSON-ready record that identifies it (and keys the cache): the
    run (with the digest of its variables), the examples (with the digest of the model inputs
    they give: data and normalisation), the form and the parameter filter."""
    x = run_inputs(run, examples.raw)
    return _request(run, examples, x, outputs=outputs, param_filter=param_filter)


def _request(
    run: RunCheckpoint,
    examples: RunExamples,
    x: np.ndarray,
    *,
    outputs: str,
    param_filter: str | None,
) -> dict[str, Any]:
    """`kernel_request`, given the model inputs ``x = run_inputs(run, examples.raw)``."""
    if param_filter is not None and not isinstance(param_filter, str):
        raise TypeError("only a regex param_filter (a string) can be recorded with a kernel")
    return to_jsonable(
        {
            "run": run.describe(),
            "data": examples.description,
            "indices": examples.indices,
            "inputs_sha256": _digest(x),
            "outputs": outputs,
            "param_filter": param_filter,
        }
    )


def request_key(request: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the request's canonical JSON."""
    text = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def compute_run_kernel(
    run: RunCheckpoint,
    examples: RunExamples,
    *,
    outputs: str = "mean",
    param_filter: str | None = None,
    implementation: str = "auto",
    progress: bool | None = None,
    mesh: Any = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The kernel of the run on the examples (as `run_ntk`) and its sidecar record.

    ``mesh``: the devices the kernel is computed on, as for `empirical_ntk` (None: every
    device); the kernel, hence the record's digest, is the same to round-off.
    """
    x = run_inputs(run, examples.raw)
    request = _request(run, examples, x, outputs=outputs, param_filter=param_filter)
    return _computed(run, examples, x, request, implementation, progress, mesh)


def _computed(
    run: RunCheckpoint,
    examples: RunExamples,
    x: np.ndarray,
    request: dict[str, Any],
    implementation: str,
    progress: bool | None,
    mesh: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """`compute_run_kernel` of the model inputs ``x`` and their ``request``."""
    fn, params = ntk_fn(run.model, run.variables, param_filter=request["param_filter"])
    plan = plan_ntk(fn, params, x, outputs=request["outputs"], implementation=implementation)
    started = time.perf_counter()
    kernel = compute_with_plan(plan, fn, params, x, progress=progress, mesh=mesh)
    record = {
        **request,
        "labels": examples.labels,
        "num_classes": run.info.num_classes,
        "shape": list(kernel.shape),
        "dtype": kernel.dtype.name,
        "sha256": _digest(kernel),
        "implementation": plan.implementation,
        "seconds": time.perf_counter() - started,
        "created": time.time(),
        "versions": library_versions(),
    }
    return kernel, to_jsonable(record)


def save_kernel(
    path: str | os.PathLike[str],
    kernel: np.ndarray,
    record: dict[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Writes ``K.npz`` (array ``kernel``) and its sidecar ``K.json``, each atomically.

    Raises:
        ValueError: ``path`` does not end in ``.npz`` or the record's digest is not the
            kernel's.
        FileExistsError: either file exists and ``overwrite`` is False (nothing is written).
    """
    target = Path(path)
    if target.suffix != ".npz":
        raise ValueError(f"a kernel file ends in .npz, got {target}")
    if record.get("sha256") != _digest(kernel):
        raise ValueError("the record's sha256 is not the kernel's")
    side = sidecar_path(target)
    for file in (target, side):
        if file.exists() and not overwrite:
            raise FileExistsError(f"{file} exists; pass --force to overwrite it")
    buffer = io.BytesIO()
    np.savez(buffer, kernel=kernel)  # KERNEL_KEY
    atomic_write_bytes(target, buffer.getvalue(), overwrite=overwrite)
    atomic_write_json(side, record, overwrite=overwrite)
    return target


def load_kernel(
    path: str | os.PathLike[str], *, expect: dict[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reads a kernel written by `save_kernel` and checks it against its sidecar.

    Args:
        path: the ``.npz`` file.
        expect: request entries (see `kernel_request`) the sidecar must hold, e.g. to make
            sure a cached kernel is the one wanted.

    Raises:
        ValueError: missing or unreadable files, a kernel whose shape or SHA-256 is not the
            sidecar's, or a sidecar that differs from ``expect``.
    """
    target, side = Path(path), sidecar_path(path)
    for file in (target, side):
        if not file.is_file():
            raise ValueError(f"no such file: {file}")
    try:
        record = json.loads(side.read_text("utf-8"))
        with np.load(target, allow_pickle=False) as data:
            kernel = np.asarray(data[KERNEL_KEY])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"cannot read the kernel {target}: {err}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{side} is not a kernel's sidecar (a JSON object)")
    if list(kernel.shape) != record.get("shape") or _digest(kernel) != record.get("sha256"):
        raise ValueError(f"{target} does not match its sidecar {side} (shape or sha256)")
    for key, value in (expect or {}).items():
        if record.get(key) != value:
            raise ValueError(f"{target} was computed for another {key} than asked")
    return kernel, record


def cached_run_kernel(
    run: RunCheckpoint,
    examples: RunExamples,
    cache_dir: str | os.PathLike[str] | None,
    *,
    outputs: str = "mean",
    param_filter: str | None = None,
    progress: bool | None = None,
    mesh: Any = None,
) -> tuple[np.ndarray, dict[str, Any], Path | None, bool]:
    """The run's kernel from the cache (verified) or computed (and cached).

    The cache file is ``cache_dir/ntk-<request_key>.npz`` with its sidecar. A cached kernel is
    used only if its sidecar holds the same request and its SHA-256 matches; otherwise it is
    computed again (on the devices of ``mesh``, as for `compute_run_kernel`) and the cache file
    replaced.

    Returns:
        ``(kernel, record, cache_file or None, reused)``.
    """
    x = run_inputs(run, examples.raw)
    request = _request(run, examples, x, outputs=outputs, param_filter=param_filter)
    file = None
    if cache_dir is not None:
        file = Path(cache_dir) / f"ntk-{request_key(request)}.npz"
        if file.is_file():
            try:
                kernel, record = load_kernel(file, expect=request)
                return kernel, record, file, True
            except ValueError:
                pass  # a damaged or foreign cache entry: computed again and replaced below
    kernel, record = _computed(run, examples, x, request, "auto", progress, mesh)
    if file is not None:
        save_kernel(file, kernel, record, overwrite=True)
    return kernel, record, file, False
