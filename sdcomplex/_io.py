"""Atomic writes that never silently overwrite results."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], None],
    *,
    overwrite: bool,
    verify: Callable[[Path], object] | None = None,
) -> Path:
    """Calls ``write(fileobj)`` on a temporary file next to ``path``, then renames it into place.

    ``verify(temp_path)``, if given, runs on the complete temporary file before the rename. On
    any error the temporary file is removed and ``path`` is left untouched. The file gets the
    permissions of a file ``open()`` creates (0o666 less the umask), like the files written
    in place beside it.

    Raises:
      FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temporary(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _new_temporary(target: Path) -> tuple[int, str]:
    """A new file ``.<name>.<random>.tmp`` beside ``target``, open for writing: ``(fd, path)``.

    Unlike :func:`tempfile.mkstemp` (mode 0o600, which the rename would give the result) its
    mode is 0o666 less the process's umask, as for any file the user creates."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name beside {target}")


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False
) -> Path:
    """Writes ``data`` to ``path`` through a temporary file and a rename.

    Raises:
      FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """

    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    return atomic_write(path, write, overwrite=overwrite)


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


def parse_csv_value(text: str) -> Any:
    """A CSV cell as the value it was written from: ``""`` is None, ``true``/``false`` a bool,
    then an int, a float (``nan`` and ``inf`` too), else the text itself.

    Example:
        >>> [parse_csv_value(t) for t in ("", "true", "3", "0.5", "mlp32")]
        [None, True, 3, 0.5, 'mlp32']
    """
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, overwrite: bool = False) -> Path:
    """Atomic JSON write with numpy values converted (see `atomic_write_bytes`)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True, allow_nan=True) + "\n"
    return atomic_write_text(path, text, overwrite=overwrite)


def atomic_save_npy(path: str | os.PathLike[str], array: Any, *, overwrite: bool = False) -> Path:
    """Atomic ``np.save`` (see `atomic_write_bytes`)."""
    return atomic_write(path, lambda fh: np.save(fh, np.asarray(array)), overwrite=overwrite)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class _RepeatedKey(Exception):
    """A key written twice in one JSON object (``args[0]``: the key)."""


def _object_of_unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def read_json_file(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """The decoded contents of a JSON file.

    Args:
        path: the file.
        what: what the file is, for messages (``"stage marker"``, ``"config file"``).

    Raises:
        ValueError: the file is missing, not a file, unreadable, not UTF-8 or not valid JSON
            (with line and column), or an object holds a key twice; the message names the
            file.
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
        return json.loads(text, object_pairs_hook=_object_of_unique_keys)
    except _RepeatedKey as err:
        raise ValueError(
            f"{what} {file}: the key {err.args[0]!r} appears twice in one object (JSON keeps "
            "the last silently; remove the one not meant)"
        ) from None
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


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say): the cap on
    the size an input file may declare before anything of that size is allocated."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_declared_bytes(n_bytes: int, what: str) -> None:
    """Refuses a declared size larger than this machine's memory, before allocating it.

    Raises:
        ValueError: naming ``what`` and both sizes.
    """
    limit = memory_bytes()
    if limit is not None and n_bytes > limit:
        raise ValueError(f"{what} declares {n_bytes} bytes, more than this machine's memory")


def _npy_header(fh: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Reads a ``.npy`` header: ``(shape, fortran_order, dtype, data_bytes)``."""
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fh)
        else:  # 2.0 and 3.0 share the layout (3.0 only allows UTF-8 field names)
            shape, fortran, dtype = npformat.read_array_header_2_0(fh)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, UnicodeDecodeError) as err:
        reason = _first_line(err)
        if "magic" in reason.lower():
            reason = "no NumPy header; is it a text or other file?"
        raise ValueError(f"{name}: not a valid .npy file ({reason})") from None
    if dtype.hasobject:
        raise ValueError(
            f"{name}: not a valid .npy file (it holds Python objects, which are not loaded: "
            "save a numeric array)"
        )
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ValueError(f"{name}: not a valid .npy file (shape {shape})")
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    check_declared_bytes(n_bytes, name)
    return tuple(shape), bool(fortran), dtype, n_bytes


def read_up_to(fh: IO[bytes], n_bytes: int) -> bytes:
    """At most ``n_bytes`` from ``fh``, read in blocks: a stream that declares a size it does
    not hold never makes this allocate more than what arrives."""
    chunks, got = [], 0
    while got < n_bytes:
        block = fh.read(min(1 << 24, n_bytes - got))
        if not block:
            break
        chunks.append(block)
        got += len(block)
    return b"".join(chunks)


def _read_exact(fh: IO[bytes], n_bytes: int, name: str) -> bytes:
    data = read_up_to(fh, n_bytes)
    if len(data) != n_bytes or fh.read(1):
        state = f"{len(data)} bytes of data" if len(data) != n_bytes else "more data"
        raise ValueError(
            f"{name}: not a valid .npy file (header declares {n_bytes} bytes, found {state})"
        )
    return data


def _read_npy(fh: IO[bytes], name: str) -> np.ndarray:
    shape, fortran, dtype, n_bytes = _npy_header(fh, name)
    data = _read_exact(fh, n_bytes, name)
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of a ``.npy`` file (one, named by the file's stem) or a ``.npz`` archive.

    Every malformed input is a ``ValueError`` naming the file: an empty, text or truncated
    file, an archive that is not a zip file or has corrupt members, pickled Python objects
    (never loaded), or a declared size larger than this machine's memory (refused before
    anything is allocated; arrays are read block by block, never beyond what the file holds).

    Args:
        path: a ``.npy`` or ``.npz`` file.

    Returns:
        ``{name: array}`` in file order.

    Raises:
        ValueError: a missing file, a directory, another extension, or a malformed file.
    """
    import zipfile
    import zlib

    file = Path(path)
    if not file.exists():
        raise ValueError(f"no such file: {file}")
    if not file.is_file():
        raise ValueError(f"{file} is not a file")
    if file.suffix not in (".npy", ".npz"):
        raise ValueError(f"{file}: expected a .npy or .npz file")
    if file.suffix == ".npy":
        with open(file, "rb") as fh:
            return {file.stem: _read_npy(fh, str(file))}
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                check_declared_bytes(info.file_size, f"{file}: member {info.filename}")
                with archive.open(info) as member:
                    key = info.filename.removesuffix(".npy")
                    arrays[key] = _read_npy(member, f"{file}: member {info.filename}")
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
        raise ValueError(f"{file}: not a valid .npz file ({_first_line(err)})") from None
    if not arrays:
        raise ValueError(f"{file}: the .npz archive holds no arrays")
    return arrays
