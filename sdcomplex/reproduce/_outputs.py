"""What a stage wrote, as recorded in its marker, and the check that it is still there.

A stage's outputs are the files of the output directory that the stage created or changed
(found by comparing the tree before and after it ran) plus every file under the directories it
owns (a training run directory, whose earlier epochs may come from an interrupted invocation).
Each is recorded with its size and SHA-256, except the files of checkpoint directories, which
are recorded by size: a training run's checkpoints can be gigabytes, and the trainer checks
their contents itself when it loads them. The bookkeeping files of the output directory
(``stages/``, ``logs/``, ``replaced/``, ``processes/``, ``config.json``, ``experiment.json``)
are nobody's output.

A stage is done when its marker is readable, its recorded outputs are all present and
unchanged, and the outputs of the stages before it are those it was run after (the marker
records their digest): a teacher trained again makes its students run again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from sdcomplex._io import read_json_file

BOOKKEEPING = ("stages", "logs", "replaced", "processes", "config.json", "experiment.json")
"""Top-level entries of an output directory that belong to no stage."""

REPLACED_DIR = "replaced"

Signature = tuple[int, int, int]
"""``(size, mtime_ns, inode)`` of a file: any write, atomic replacement included, changes it."""


def _walk(root: Path) -> Iterable[Path]:
    for top in sorted(root.iterdir()) if root.is_dir() else ():
        if top.name in BOOKKEEPING:
            continue
        if top.is_file():
            yield top
        elif top.is_dir():
            yield from (p for p in sorted(top.rglob("*")) if p.is_file())


def snapshot(root: Path) -> dict[str, Signature]:
    """Every stage-owned file under ``root``: relative POSIX path -> :data:`Signature`."""
    out = {}
    for path in _walk(root):
        st = path.stat()
        out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's contents (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _under(path: str, directories: Sequence[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in directories)


def record_outputs(
    root: Path,
    before: Mapping[str, Signature],
    *,
    owns: Sequence[str] = (),
    size_only: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The outputs of a stage that has just run: files new or changed since ``before`` and every
    file under ``owns``; each ``{"path", "size", "sha256"}`` (``sha256`` None under
    ``size_only``)."""
    after = snapshot(root)
    paths = {p for p, sig in after.items() if before.get(p) != sig or _under(p, owns)}
    return [
        {
            "path": p,
            "size": after[p][0],
            "sha256": None if _under(p, size_only) else sha256_file(root / p),
        }
        for p in sorted(paths)
    ]


def _relative(path: Any, marker_file: Path) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError(f"{marker_file}: corrupt stage marker (output path {path!r})")
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).is_absolute() or ".." in parts or parts[0] in BOOKKEEPING:
        raise ValueError(f"{marker_file}: corrupt stage marker (output path {path!r})")
    return path


def validate_marker(data: Any, marker_file: Path) -> dict[str, Any]:
    """``data`` (a decoded marker) checked field by field.

    Raises:
        ValueError: naming ``marker_file`` and the first malformed field.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{marker_file}: corrupt stage marker (not a JSON object)")
    if not isinstance(data.get("seconds", 0.0), int | float):
        raise ValueError(f"{marker_file}: corrupt stage marker ('seconds' is not a number)")
    if not isinstance(data.get("hash"), str):
        raise ValueError(f"{marker_file}: corrupt stage marker (no 'hash' string)")
    outputs = data.get("outputs")
    if outputs is None:
        return data  # written before outputs were recorded: the stage runs again
    if not isinstance(outputs, list):
        raise ValueError(f"{marker_file}: corrupt stage marker ('outputs' is not a list)")
    for entry in outputs:
        if not isinstance(entry, dict):
            raise ValueError(f"{marker_file}: corrupt stage marker (output entry {entry!r})")
        _relative(entry.get("path"), marker_file)
        size, sha = entry.get("size"), entry.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"{marker_file}: corrupt stage marker (size {size!r})")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
            raise ValueError(f"{marker_file}: corrupt stage marker (sha256 {sha!r})")
    if not isinstance(data.get("upstream"), str):
        raise ValueError(f"{marker_file}: corrupt stage marker (no 'upstream' digest)")
    return data


def read_marker_file(path: Path) -> dict[str, Any] | None:
    """A stage marker, validated, or None if there is none.

    Raises:
        ValueError: the marker exists but cannot be read or is malformed (naming the file).
    """
    if not path.exists():
        return None
    try:
        data = read_json_file(path, "stage marker")
    except ValueError as err:
        raise ValueError(f"{err}; delete it to run the stage again") from None
    return validate_marker(data, path)


def output_problem(root: Path, outputs: Sequence[Mapping[str, Any]]) -> str | None:
    """Why recorded ``outputs`` are no longer there (``"output P missing"``, ``"output P
    changed"``, with the number of other such files), or None if all are present and
    unchanged."""
    problems = []
    for entry in outputs:
        path = root / entry["path"]
        if not path.is_file():
            problems.append(f"output {entry['path']} missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"output {entry['path']} changed (size)")
        elif entry["sha256"] is not None and sha256_file(path) != entry["sha256"]:
            problems.append(f"output {entry['path']} changed (checksum)")
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


class Upstream:
    """The running digest of the outputs of the stages so far, in plan order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, key: str, outputs: Sequence[Mapping[str, Any]] | None) -> None:
        """Adds one stage: its outputs, or None when it is not done."""
        self._digest.update(json.dumps([key, outputs], sort_keys=True).encode() + b"\n")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def move_aside(
    root: Path, key: str, outputs: Sequence[Mapping[str, Any]], owns: Sequence[str] = ()
) -> Path | None:
    """Moves a stage's outputs that still exist (and everything under ``owns``) to
    ``root/replaced/<time>-<key>/`` keeping their relative paths, so that a stage run again
    starts from nothing and no earlier result is lost; returns that directory (None if nothing
    was there)."""
    paths = {e["path"] for e in outputs if (root / e["path"]).is_file()}
    paths |= {p for p in snapshot(root) if _under(p, owns)}
    if not paths:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = root / REPLACED_DIR / f"{stamp}-{key.replace('/', '__')}"
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{stamp}-{key.replace('/', '__')}-{n}")
    for rel in sorted(paths):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / rel, dest)
    for directory in owns:  # the emptied directory trees of the run directories
        _remove_empty_dirs(root / directory)
    return target


def _remove_empty_dirs(directory: Path) -> None:
    if not directory.is_dir() or directory.is_symlink():
        return
    for child in directory.iterdir():
        _remove_empty_dirs(child)
    with contextlib.suppress(OSError):  # not empty: something other than a file is left
        directory.rmdir()


def stage_problem(
    root: Path, stage_hash: str, marker: dict[str, Any] | None, upstream: str
) -> str | None:
    """Why a stage is not done (None if it is): no marker, other inputs (``stage_hash``), a
    recorded output missing or changed, or earlier stages changed since it ran.

    Args:
        root: the output directory.
        stage_hash: the stage's input hash now.
        marker: its marker (:func:`read_marker_file`).
        upstream: the digest of the outputs of the stages before it (:class:`Upstream`).
    """
    if marker is None:
        return "not run yet"
    if marker["hash"] != stage_hash:
        return "its inputs changed"
    if marker.get("outputs") is None:
        return "its marker records no outputs (written by an earlier version)"
    problem = output_problem(root, marker["outputs"])
    if problem is not None:
        return problem
    if marker["upstream"] != upstream:
        return "an earlier stage's outputs changed since it ran"
    return None


def set_aside(root: Path, key: str, marker: dict[str, Any], owns: Sequence[str]) -> str:
    """Moves what is left of a stage's recorded outputs aside (:func:`move_aside`) before it runs
    again (nothing when its marker recorded none); the text to append to the progress line."""
    if marker.get("outputs") is None:
        return ""
    moved = move_aside(root, key, marker["outputs"], owns)
    return f" (earlier outputs moved to {moved.relative_to(root)})" if moved else ""
