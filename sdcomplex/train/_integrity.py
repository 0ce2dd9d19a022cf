"""Integrity of the files of a run directory: sha256 checksums, checked before anything is used.

Two mechanisms cover every file a run directory holds:

* a **checksum file** (:data:`CHECKSUM_FILE`) inside a directory written once, e.g. an Orbax
  checkpoint ``checkpoints/epoch_<e>/``: the size and sha256 of every other file in it, as
  compact JSON sealed with its own sha256 (so that any changed byte of it is detected too),
  written atomically after the directory is complete (:func:`write_checksums`) and checked
  before it is read (:func:`verify_checksums`);
* a **sealed JSON record** (``run.json``, ``distill.json``): the object's own sha256 (of its
  canonical JSON form without the :data:`SEAL_KEY` entry) stored in it
  (:func:`sealed_json_text`), checked when it is read (:func:`read_sealed_json`), which also
  requires the text to be exactly the one written (a changed blank is damage too).

A damaged file (one changed byte, a truncation, a missing file) is then reported as a
:class:`DamagedFile` (a ``ValueError``, one line naming the file) instead of being used. Files
written before these mechanisms existed (no checksum file or seal) are accepted unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from sdcomplex._io import atomic_write_text, to_jsonable

CHECKSUM_FILE = "checksums.json"
SEAL_KEY = "sha256"
_CHUNK = 1 << 20


class DamagedFile(ValueError):
    """A file of a run directory does not match its recorded checksum, or cannot be read.

    Attributes:
        path: the damaged file (or directory).
        reason: what is wrong, e.g. ``"sha256 mismatch"``.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is damaged ({reason})")
        self.path = path
        self.reason = reason


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def directory_digests(directory: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": size, "sha256": hex}}`` of every file below ``directory``
    except its :data:`CHECKSUM_FILE`, in sorted order (POSIX separators)."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if name != CHECKSUM_FILE:
            out[name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    return out


def write_checksums(directory: str | os.PathLike[str]) -> Path:
    """Writes ``directory/checksums.json`` (atomic) for the directory's current files."""
    directory = Path(directory)
    record = _sealed({"algorithm": "sha256", "files": directory_digests(directory)})
    return atomic_write_text(directory / CHECKSUM_FILE, _canonical(record) + "\n", overwrite=True)


def has_checksums(directory: str | os.PathLike[str]) -> bool:
    """Whether the directory holds a checksum file (possibly damaged)."""
    return (Path(directory) / CHECKSUM_FILE).exists()


def verify_checksums(directory: str | os.PathLike[str]) -> None:
    """Checks every file recorded in ``directory/checksums.json`` (size, then sha256).

    Files not recorded are ignored (nothing of a finished checkpoint is written later).

    Raises:
        DamagedFile: the checksum file is missing or unreadable, or a recorded file is
            missing, has another size or another sha256; the message names the file.
    """
    directory = Path(directory)
    index = directory / CHECKSUM_FILE
    try:
        record = json.loads(index.read_text(encoding="utf-8"))
        if record.pop(SEAL_KEY) != text_sha256(_canonical(record)):
            raise ValueError("sha256 seal mismatch")
        files = record["files"]
        if record["algorithm"] != "sha256" or not isinstance(files, dict) or not files:
            raise ValueError("no sha256 checksums recorded")
        expected = {name: (int(e["bytes"]), str(e["sha256"])) for name, e in files.items()}
    except FileNotFoundError:
        raise DamagedFile(directory, f"no {CHECKSUM_FILE}: the write did not finish") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise DamagedFile(index, f"unreadable checksum file: {err}") from None
    for name, (size, sha) in expected.items():
        path = directory / name
        if not path.is_file():
            raise DamagedFile(path, "missing")
        if path.stat().st_size != size:
            raise DamagedFile(path, f"{path.stat().st_size} bytes, {size} recorded")
        if file_sha256(path) != sha:
            raise DamagedFile(path, "sha256 mismatch")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _sealed(obj: dict[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in to_jsonable(obj).items() if k != SEAL_KEY}
    plain[SEAL_KEY] = text_sha256(_canonical(plain))
    return plain


def sealed_json_text(obj: dict[str, Any]) -> str:
    """Strict, indented JSON text of ``obj`` with its seal ``"sha256"`` added (see module)."""
    return json.dumps(_sealed(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_sealed_json(path: str | os.PathLike[str], obj: dict[str, Any]) -> Path:
    """Atomic write of :func:`sealed_json_text` (refuses to overwrite an existing file)."""
    return atomic_write_text(path, sealed_json_text(obj))


def read_sealed_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a JSON object and checks its seal (a record without a seal is returned as is).

    Raises:
        DamagedFile: not valid JSON, not an object, or the seal does not match.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        record = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DamagedFile(path, f"not valid JSON: {err}") from None
    if not isinstance(record, dict):
        raise DamagedFile(path, "not a JSON object")
    seal = record.pop(SEAL_KEY, None)
    if seal is not None and seal != text_sha256(_canonical(record)):
        raise DamagedFile(path, "sha256 seal mismatch: changed after it was written")
    if seal is not None and text != sealed_json_text(record):  # e.g. a changed blank
        raise DamagedFile(path, "text differs from its sealed record: changed after it was written")
    return record
