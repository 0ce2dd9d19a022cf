"""Safe archive reading: unsafe members refused, corrupt or truncated archives reported, and no
half-written cache file left behind."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcomplex.data import load_image_folder
from sdcomplex.data._archives import (
    iter_members,
    parse_checksum,
    read_members,
    safe_member_name,
    verify_checksum,
)


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz"):
    with tarfile.open(path, mode) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return path


def _folder_entries() -> list[tuple[str, bytes]]:
    return [
        (f"{split}/{cls}/{i}.png", _png(10 * i + j))
        for j, cls in enumerate(["cat", "dog"])
        for split in ("train", "test")
        for i in range(3)
    ]


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    "entry, message",
    [
        (("../evil.png", b"x"), "'..' component"),
        (("train/../../evil.png", b"x"), "'..' component"),
        (("/etc/evil.png", b"x"), "absolute path"),
        (("C:/evil.png", b"x"), "absolute path"),
        (("train\\..\\evil.png", b"x"), "backslash"),
        (_special("train/cat/link.png", tarfile.SYMTYPE, "/etc/passwd"), "refusing link"),
        (_special("train/cat/hard.png", tarfile.LNKTYPE, "train/cat/0.png"), "refusing link"),
        (_special("train/cat/dev", tarfile.CHRTYPE), "refusing special file"),
        (_special("train/cat/fifo", tarfile.FIFOTYPE), "refusing special file"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path: Path, entry, message: str) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [*_folder_entries(), entry])
    with pytest.raises(ValueError, match=message):
        read_members(archive)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=message):
        load_image_folder(archive, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())
    assert not (tmp_path / "evil.png").exists()


def _zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def test_unsafe_zip_members_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("train/cat/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    cases = [
        (("../evil.png", b"x"), "'..' component"),
        (("/abs/evil.png", b"x"), "absolute path"),
        ((link, b"/etc/passwd"), "non-regular member"),
    ]
    for entry, message in cases:
        archive = _zip(tmp_path / "bad.zip", [*_folder_entries(), entry])
        with pytest.raises(ValueError, match=message):
            load_image_folder(archive, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar", ".zip"])
def test_truncated_archive_is_a_clear_error_and_leaves_no_cache(
    tmp_path: Path, suffix: str
) -> None:
    entries = _folder_entries()
    good = tmp_path / f"good{suffix}"
    if suffix == ".zip":
        _zip(good, list(entries))
    else:
        _tar(good, list(entries), "w:gz" if suffix == ".tar.gz" else "w")
    data = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=f"cannot read .*bad{suffix}.*corrupt or truncated"):
        load_image_folder(bad, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())
    assert load_image_folder(good, cache_dir=cache).info.n_train == 6  # the intact one works


@pytest.mark.parametrize("damage", ["cut at a header", "garbled header"])
@pytest.mark.parametrize("compress", [False, True])
def test_tar_damaged_at_a_block_boundary_is_detected(
    tmp_path: Path, damage: str, compress: bool
) -> None:
    """tarfile alone stops silently here and would return a partial data set."""
    good = _tar(tmp_path / "good.tar", _folder_entries(), "w")
    with tarfile.open(good) as tar:
        offset = tar.getmembers()[5].offset  # header of the 6th member, a block boundary
    data = good.read_bytes()
    if damage == "cut at a header":
        data = data[:offset]
    else:
        data = data[:offset] + bytes(range(256)) * 2 + data[offset + 512 :]
    bad = tmp_path / ("bad.tar.gz" if compress else "bad.tar")
    bad.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match="corrupt or truncated tar archive"):
        read_members(bad)


def test_member_names_are_normalised() -> None:
    assert safe_member_name("./a//b/./c.png", Path("x")) == "a/b/c.png"
    assert safe_member_name("dir/", Path("x")) == "dir"


def test_iter_members_is_the_same_for_dir_zip_and_tar(tmp_path: Path) -> None:
    entries = dict(_folder_entries())
    root = tmp_path / "tree"
    for name, data in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    sources = [
        root,
        _zip(tmp_path / "a.zip", list(entries.items())),
        _tar(tmp_path / "a.tar.gz", list(entries.items())),
        _tar(tmp_path / "a.tar.bz2", list(entries.items()), "w:bz2"),
    ]
    for source in sources:
        assert read_members(source) == entries
        assert [n for n, _ in iter_members(source, lambda n: "dog" in n)] == sorted(
            n for n in entries if "dog" in n
        ) or source != root


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a directory nor a zip or tar"):
        read_members(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="does not exist"):
        read_members(tmp_path / "missing.tar.gz")


def test_checksums(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert verify_checksum(f, f"sha256:{sha}") == f"sha256:{sha}"
    assert verify_checksum(f, "900150983cd24fb0d6963f7d28e17f72") == (
        "md5:900150983cd24fb0d6963f7d28e17f72"
    )
    assert verify_checksum(f, None) is None
    with pytest.raises(ValueError, match=f"checksum mismatch for {f}"):
        verify_checksum(f, "sha256:" + "0" * 64)
    for bad in ("md5:xyz", "sha1:" + "0" * 40, "0" * 31, "md5:" + "0" * 64):
        with pytest.raises(ValueError):
            parse_checksum(bad)
