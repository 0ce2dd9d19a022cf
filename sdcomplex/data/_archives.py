"""Safe reading of archives and directories, checksums and one-file downloads.

Archives (tar, tar.gz/bz2/xz, zip) are read member by member into memory and never extracted
to disk. Every member name is checked before anything is read: absolute paths, ``..``
components, backslashes, and members that are not regular files or directories (symbolic or
hard links, devices, FIFOs) make the whole archive rejected with a ``ValueError``. A corrupt or
truncated archive also gives a ``ValueError`` that names the file.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import re
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm.auto import tqdm

from sdcomplex._io import atomic_write, check_declared_bytes, read_up_to

from ._progress import hide_progress

DATA_ENV = "SDCOMPLEX_DATA"
"""Environment variable naming the default directory of official archives."""

DEFAULT_DATA_DIR = Path("~/.cache/sdcomplex/data")
"""Directory of official archives when neither ``data_dir`` nor ``$SDCOMPLEX_DATA`` is set."""

_IN_MEMORY_GZIP_LIMIT = 1 << 29  # .tar.gz up to 512 MiB: decompressed in one go (faster)
_READ_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
    RuntimeError,
    NotImplementedError,
)
_DIGEST_SIZES = {32: "md5", 64: "sha256"}


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Directory of official archives: argument, else ``$SDCOMPLEX_DATA``, else the default."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR.expanduser()


def safe_member_name(name: str, archive: Path) -> str:
    """Normalised relative POSIX name of an archive member, or ``ValueError`` if unsafe.

    ``./a//b`` becomes ``a/b``; absolute names, drive letters, backslashes, NUL bytes and ``..``
    components are refused.
    """
    if "\\" in name or "\0" in name:
        raise ValueError(f"unsafe member name {name!r} in {archive}: backslash or NUL byte")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ValueError(f"unsafe member name {name!r} in {archive}: absolute path")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise ValueError(f"unsafe member name {name!r} in {archive}: '..' component")
    return "/".join(parts)


class _LastRead:
    """Read-only file wrapper that remembers the last block read (see :func:`_tar_members`)."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self.raw = raw
        self.last = b""

    def read(self, size: int = -1) -> bytes:
        self.last = self.raw.read(size)
        return self.last

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


def _open_tar_stream(path: Path) -> io.BufferedIOBase:
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic[:2] == b"\x1f\x8b":
        if path.stat().st_size <= _IN_MEMORY_GZIP_LIMIT:
            # tarfile reads a gzip stream in small pieces; one decompress is about 2x faster
            return io.BytesIO(gzip.decompress(path.read_bytes()))
        return gzip.open(path, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")
    if magic == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")
    return open(path, "rb")


def _tar_members(path: Path, select: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    with _open_tar_stream(path) as raw:
        stream = _LastRead(raw)
        with tarfile.open(fileobj=stream, mode="r:") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = safe_member_name(member.name, path)
                if member.isdir():
                    continue
                if not member.isreg():
                    kind = "link" if member.issym() or member.islnk() else "special file"
                    raise ValueError(f"refusing {kind} member {member.name!r} in archive {path}")
                if name and select(name):
                    check_declared_bytes(member.size, f"member {name!r} of {path}")
                    content = tar.extractfile(member)
                    assert content is not None  # regular members always have data
                    data = read_up_to(content, member.size)
                    if len(data) != member.size:
                        raise EOFError(
                            f"member {name!r} is truncated ({len(data)} of {member.size} bytes)"
                        )
                    yield name, data
        # tarfile silently stops at a truncated or garbled header; a complete archive ends
        # with a zero block, which must be the last block tarfile read.
        if stream.last != bytes(tarfile.BLOCKSIZE):
            raise EOFError("no end-of-archive marker after the last complete member")


def _zip_members(path: Path, select: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        for info in infos:  # check every name before reading anything
            safe_member_name(info.filename, path)
            mode = info.external_attr >> 16
            if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise ValueError(f"refusing non-regular member {info.filename!r} in {path}")
        for info in infos:
            name = safe_member_name(info.filename, path)
            if not info.is_dir() and name and select(name):
                check_declared_bytes(info.file_size, f"member {name!r} of {path}")
                yield name, zf.read(info)  # zipfile checks the size and CRC it reads


def _unlistable(err: OSError) -> None:
    """``os.walk`` would skip the folder in silence."""
    raise ValueError(f"cannot list {err.filename}: {err.strerror}")


def walk_files(path: Path) -> Iterator[tuple[str, Path]]:
    """``(relative POSIX name, path)`` of every file under a directory, in sorted walk order.

    Symbolic links are followed (a linked class folder is part of the tree); a folder that
    cannot be listed, a broken link or a link back to a folder it lies in is a ``ValueError``
    naming it.
    """
    for root, dirs, files in os.walk(path, onerror=_unlistable, followlinks=True):
        dirs.sort()
        here = Path(root)
        absolute = Path(os.path.abspath(here))  # a relative path's parents end at "."
        ancestors = {os.path.realpath(p) for p in (absolute, *absolute.parents)}
        for folder in dirs:
            if os.path.realpath(here / folder) in ancestors:
                raise ValueError(f"{here / folder} is a symbolic link cycle (it leads back up)")
        for fname in sorted(files):
            full = here / fname
            if not full.exists():
                raise ValueError(f"{full} is a broken symbolic link")
            yield full.relative_to(path).as_posix(), full


def _dir_members(path: Path, select: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    for name, full in walk_files(path):
        if full.is_file() and select(name):
            yield name, full.read_bytes()


def archive_kind(path: Path) -> str:
    """``"dir"``, ``"zip"`` or ``"tar"`` (by extension, else by content); ValueError otherwise."""
    if path.is_dir():
        return "dir"
    if not path.is_file():
        raise ValueError(f"{path} does not exist (expected a directory, .zip or .tar[.gz] file)")
    lower = path.name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ValueError(f"{path} is neither a directory nor a zip or tar archive")


def iter_members(
    path: str | os.PathLike[str], select: Callable[[str], bool] | None = None
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, content)`` of the regular files of a directory or archive, in order.

    Args:
        path: a directory, ``.zip`` or ``.tar[.gz|.bz2|.xz]`` file.
        select: keep only names for which it returns True (all are still safety-checked).

    Yields:
        ``(relative POSIX name, bytes)``; archive order for archives, sorted walk for
        directories (symbolic links inside a directory are followed: it is the user's tree).

    Raises:
        ValueError: unsafe member, a selected member name listed twice, or corrupt /
            truncated archive (named in the message).
    """
    path = Path(path)
    keep = select or (lambda name: True)
    kind = archive_kind(path)
    reader = {"dir": _dir_members, "zip": _zip_members, "tar": _tar_members}[kind]
    seen: set[str] = set()
    try:
        for name, data in reader(path, keep):
            if name in seen:  # e.g. a newer copy appended with ``tar -r``: which one is meant?
                raise ValueError(f"{path} holds member {name!r} twice")
            seen.add(name)
            yield name, data
    except _READ_ERRORS as err:
        raise ValueError(
            f"cannot read {path}: corrupt or truncated {kind} archive ({type(err).__name__}: {err})"
        ) from err


def read_members(
    path: str | os.PathLike[str], select: Callable[[str], bool] | None = None
) -> dict[str, bytes]:
    """All selected members of :func:`iter_members` as a ``{name: bytes}`` dict."""
    return dict(iter_members(path, select))


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"md5:<hex>"`` / ``"sha256:<hex>"`` (or bare hex, by length) into its parts."""
    algorithm, _, digest = checksum.rpartition(":")
    digest = digest.lower()
    algorithm = algorithm.lower() or _DIGEST_SIZES.get(len(digest), "")
    if algorithm not in ("md5", "sha256") or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ValueError(f"checksum must be 'md5:<32 hex>' or 'sha256:<64 hex>', got {checksum!r}")
    if len(digest) != {"md5": 32, "sha256": 64}[algorithm]:
        raise ValueError(f"{algorithm} checksum {digest!r} has the wrong length")
    return algorithm, digest


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path, checksum: str | None) -> str | None:
    """Check a file against ``checksum``; return ``"<algorithm>:<hex>"`` or None if not given.

    Raises:
        ValueError: the digests differ (the message names the file and both digests).
    """
    if checksum is None:
        return None
    algorithm, expected = parse_checksum(checksum)
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ValueError(
            f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}. The "
            "file is corrupt, truncated or not the official one: delete it and fetch it again "
            "(or pass checksum=None for a file you trust)."
        )
    return f"{algorithm}:{actual}"


def download_file(
    url: str,
    dest: Path,
    *,
    checksum: str | None,
    timeout: float = 30.0,
    quiet: bool = False,
) -> None:
    """Download ``url`` to ``dest`` atomically, verifying ``checksum`` before the rename.

    Raises:
        ValueError: network failure (with the manual fallback in the message) or checksum
            mismatch; in both cases ``dest`` is not created.
    """

    def write(fh: IO[bytes]) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=hide_progress(quiet)
            ) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    fh.write(block)
                    bar.update(len(block))

    try:
        atomic_write(dest, write, overwrite=True, verify=lambda tmp: verify_checksum(tmp, checksum))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise ValueError(
            f"could not download {url} ({err}); download it by hand and place it at {dest}"
        ) from err


def ensure_file(
    data_dir: Path,
    filename: str,
    *,
    url: str,
    checksum: str | None,
    download: bool,
    quiet: bool = False,
) -> Path:
    """Path of ``data_dir / filename``, downloading it from ``url`` only if it is missing.

    Raises:
        ValueError: the file is missing and ``download`` is False (the message names the
            expected path and the official URL), or the download fails.
    """
    path = data_dir / filename
    if path.is_file():
        return path
    if not download:
        raise ValueError(
            f"{filename} not found in data directory {data_dir} (expected {path}); place the "
            f"official file there ({url}) or pass download=True (command line: "
            "--data-option download=true)"
        )
    download_file(url, path, checksum=checksum, quiet=quiet)
    return path
