"""Atomic writes that never silently overwrite results."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def _atomic(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], None], *, overwrite: bool
) -> Path:
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False
) -> Path:
    """Writes ``data`` to ``path`` through a temporary file and a rename.

    Raises:
      FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """

    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    return _atomic(path, write, overwrite=overwrite)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Atomic UTF-8 text write (see `atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def to_jsonable(obj: Any) -> Any:
    """Converts numpy scalars and arrays (recursively) to plain Python for ``json``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, overwrite: bool = False) -> Path:
    """Atomic JSON write with numpy values converted (see `atomic_write_bytes`)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=True) + "\n"
    return atomic_write_text(path, text, overwrite=overwrite)


def atomic_save_npy(path: str | os.PathLike[str], array: Any, *, overwrite: bool = False) -> Path:
    """Atomic ``np.save`` (see `atomic_write_bytes`)."""
    return _atomic(path, lambda fh: np.save(fh, np.asarray(array)), overwrite=overwrite)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def read_json_file(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """The decoded contents of a JSON file.

    Args:
        path: the file.
        what: what the file is, for messages (``"stage marker"``, ``"config file"``).

    Raises:
        ValueError: the file is missing, not a file, unreadable, not UTF-8 or not valid JSON
            (with line and column); the message names the file.
    """
    file = Path(path)
    if not file.is_file():
        state = "is not a file" if file.exists() else "does not exist"
        raise ValueError(f"{what} {file} {state}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        detail = _first_line(err)
        raise ValueError(f"{what} {file} cannot be read as UTF-8 text: {detail}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{what} {file}, line {err.lineno} column {err.colno}: invalid JSON ({err.msg})"
        ) from None
    except RecursionError:
        raise ValueError(f"{what} {file}: invalid JSON (nested too deeply)") from None


def read_json_object(path: str | os.PathLike[str], what: str = "JSON file") -> dict[str, Any]:
    """:func:`read_json_file` of a file that must hold a JSON object.

    Raises:
        ValueError: as :func:`read_json_file`, or the value is not an object.
    """
    value = read_json_file(path, what)
    if not isinstance(value, dict):
        raise ValueError(f"{what} {path}: expected a JSON object, got {type(value).__name__}")
    return value
