"""Odd inputs of the image loaders: 16- and 32-bit pixels, symbolic links, member names listed
twice, file names that are not UTF-8, and a split folder named twice.

Each expected answer is built independently of the loaders: PNG files written byte by byte
(``struct`` + ``zlib``), pixel values computed with NumPy, file trees laid out by hand.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import sdcomplex.data._decode as decode_module
from sdcomplex.data import load_image_folder
from sdcomplex.data._archives import iter_members
from sdcomplex.data._cache import cache_key, save_dataset, source_identity
from sdcomplex.data._dataset import make_dataset
from sdcomplex.data._decode import decode_images


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261206)


def _png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG written byte by byte: gray ``(H, W)`` or RGB ``(H, W, 3)`` uint16."""
    height, width = pixels.shape[:2]
    color_type = 2 if pixels.ndim == 3 else 0
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _tiff(pixels: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="TIFF")
    return buf.getvalue()


def test_16_bit_grayscale_keeps_its_high_byte(rng: np.random.Generator) -> None:
    """A 16-bit gray PNG scales to 8 bits like a 16-bit RGB PNG (high byte), not clipped."""
    gray = rng.integers(0, 1 << 16, size=(5, 7), dtype=np.uint16)
    expected = (gray >> 8).astype(np.uint8)
    items = [("gray16.png", _png16(gray))]
    _, as_gray = decode_images(items, mode="L", num_workers=1, quiet=True)
    _, as_rgb = decode_images(items, mode="RGB", num_workers=1, quiet=True)
    np.testing.assert_array_equal(as_gray[0, ..., 0], expected)
    np.testing.assert_array_equal(as_rgb[0], np.stack([expected] * 3, axis=-1))
    # the same values as a 16-bit RGB PNG decode to the same 8-bit pixels
    _, rgb16 = decode_images([("rgb16.png", _png16(np.stack([gray] * 3, -1)))], quiet=True)
    np.testing.assert_array_equal(rgb16, as_rgb)


def test_32_bit_pixels_outside_8_bits_are_refused(rng: np.random.Generator) -> None:
    small = rng.integers(0, 256, size=(4, 5)).astype(np.int32)
    for mode, pixels in (("I", small), ("F", small.astype(np.float32))):
        _, x = decode_images([("ok.tif", _tiff(pixels, mode))], mode="L", quiet=True)
        np.testing.assert_array_equal(x[0, ..., 0], small)
    wide = small.copy()
    wide[1, 2] = 300
    for mode, pixels in (("I", wide), ("F", wide.astype(np.float32)), ("F", small / 255.0)):
        blob = _tiff(pixels.astype(np.float32) if mode == "F" else pixels, mode)
        with pytest.raises(ValueError, match=r"cannot decode image 'wide.tif'.*0\.\.255"):
            decode_images([("wide.tif", blob)], quiet=True)


def _class_image(folder: Path, name: str, value: int) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.full((3, 4, 3), value, np.uint8)
    (folder / name).write_bytes(_png(pixels))
    return pixels


def test_symlinked_class_folders_are_read_and_their_changes_miss_the_cache(
    tmp_path: Path,
) -> None:
    data, elsewhere, cache = tmp_path / "data", tmp_path / "elsewhere", tmp_path / "cache"
    for split, base in (("train", 10), ("test", 20)):
        _class_image(data / split / "bird", "1.png", base + 1)
        _class_image(elsewhere / split / "cat", "1.png", base + 2)
        (data / split / "cat").symlink_to(elsewhere / split / "cat", target_is_directory=True)
    ds = load_image_folder(data, cache_dir=cache, quiet=True)
    assert ds.info.class_names == ("bird", "cat")
    assert ds.y_train.tolist() == [0, 1] and ds.x_train[:, 0, 0, 0].tolist() == [11, 12]
    assert ds.y_test.tolist() == [0, 1] and ds.x_test[:, 0, 0, 0].tolist() == [21, 22]
    _class_image(elsewhere / "train" / "cat", "2.png", 13)  # a new image behind the link
    again = load_image_folder(data, cache_dir=cache, quiet=True)
    assert again.y_train.tolist() == [0, 1, 1]
    assert again.x_train[:, 0, 0, 0].tolist() == [11, 12, 13]


def test_symlink_cycles_and_broken_links_are_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            _class_image(data / split / cls, "1.png", 1)
    broken = data / "train" / "a" / "2.png"
    broken.symlink_to(tmp_path / "missing.png")
    for use_cache in (True, False):
        with pytest.raises(ValueError, match="2.png is a broken symbolic link"):
            load_image_folder(data, cache_dir=tmp_path / "cache", use_cache=use_cache, quiet=True)
    broken.unlink()
    (data / "train" / "a" / "loop").symlink_to(data / "train", target_is_directory=True)
    with pytest.raises(ValueError, match="symbolic link cycle"):
        load_image_folder(data, cache_dir=tmp_path / "cache", quiet=True)


def _write_archive(path: Path, members: list[tuple[str, bytes]]) -> None:
    if path.suffix == ".zip":
        with warnings.catch_warnings():  # zipfile warns about the duplicate name
            warnings.simplefilter("ignore", UserWarning)
            with zipfile.ZipFile(path, "w") as zf:
                for name, data in members:
                    zf.writestr(name, data)
        return
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("suffix", [".zip", ".tar"])
def test_a_member_listed_twice_is_refused(tmp_path: Path, suffix: str) -> None:
    """``tar -r`` appends a newer copy under the same name: reading both would train on the
    old and the new image; which one is meant is not for the loader to guess."""
    image = {value: _png(np.full((3, 4, 3), value, np.uint8)) for value in (1, 2, 3, 4, 9)}
    members = [
        ("train/a/1.png", image[1]),
        ("train/b/1.png", image[2]),
        ("test/a/1.png", image[3]),
        ("test/b/1.png", image[4]),
        ("train/a/1.png", image[9]),
    ]
    path = tmp_path / f"data{suffix}"
    _write_archive(path, members)
    with pytest.raises(ValueError, match="'train/a/1.png' twice"):
        load_image_folder(path, use_cache=False, quiet=True)
    with pytest.raises(ValueError, match="'train/a/1.png' twice"):
        list(iter_members(path))


def test_file_names_that_are_not_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux file names are bytes: a Latin-1 ``caf\\xe9`` folder is a class like any other."""
    data = tmp_path / "data"
    cafe = os.fsdecode(b"caf\xe9")  # 'caf\udce9' (surrogate escape)
    for split, base in (("train", 10), ("test", 20)):
        _class_image(data / split / cafe, "1.png", base + 1)
        _class_image(data / split / "dog", "1.png", base + 2)
    ds = load_image_folder(data, cache_dir=tmp_path / "cache", quiet=True)
    assert ds.info.class_names == (cafe, "dog")
    assert ds.x_train[:, 0, 0, 0].tolist() == [11, 12] and ds.y_train.tolist() == [0, 1]
    cached = load_image_folder(data, cache_dir=tmp_path / "cache", quiet=True)
    assert cached.info == ds.info
    # the same names through the decoding worker processes
    monkeypatch.setattr(decode_module, "_CHUNK", 2)
    monkeypatch.setattr(decode_module, "_PARALLEL_MIN", 4)
    blob = _png(np.zeros((2, 2, 3), np.uint8))
    items = [(f"{cafe}/{i}.png", blob) for i in range(5)]
    names, images = decode_images(items, num_workers=2, quiet=True)
    assert names == [name for name, _ in items] and images.shape == (5, 2, 2, 3)


def test_one_folder_cannot_be_both_splits(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for cls in ("a", "b"):
        _class_image(data / "images" / cls, "1.png", 1)
    with pytest.raises(ValueError, match="train_dir and test_dir must differ"):
        load_image_folder(data, train_dir="images", test_dir="images", use_cache=False, quiet=True)


def test_a_cache_of_the_clipping_decoder_is_not_reused(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """Arrays cached before 16-bit images kept their high byte (all white) are decoded again."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    pixels = {}
    for split in ("train", "test"):
        for cls in ("a", "b"):
            gray = rng.integers(0, 1 << 16, size=(3, 4), dtype=np.uint16)
            (data / split / cls).mkdir(parents=True)
            (data / split / cls / "1.png").write_bytes(_png16(gray))
            pixels[split, cls] = (gray >> 8).astype(np.uint8)
    old_options = {  # the key of a cache written by the previous decoder
        "train_dir": "train",
        "test_dir": "test",
        "image_mode": "L",
        "image_size": None,
        "checksum": None,
        "reference": "",
    }
    old_key = cache_key(name="image_folder", source=source_identity(data), **old_options)
    white = np.full((2, 3, 4, 1), 255, np.uint8)
    labels = np.array([0, 1])
    clipped = make_dataset(
        white, labels, white, labels, name="image_folder", class_names=("a", "b"),
        pixel_max=255.0, source=str(data),
    )  # fmt: skip
    save_dataset(cache / f"image_folder-{old_key}.npz", clipped)
    ds = load_image_folder(data, image_mode="L", cache_dir=cache, quiet=True)
    np.testing.assert_array_equal(ds.x_train[..., 0], [pixels["train", "a"], pixels["train", "b"]])
    np.testing.assert_array_equal(ds.x_test[..., 0], [pixels["test", "a"], pixels["test", "b"]])


def test_an_unreadable_class_folder_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``os.walk`` skips a folder it cannot list (no read permission) without a word: the
    class would silently be missing (simulated, since tests may run as root)."""
    data = tmp_path / "data"
    for split in ("train", "test"):
        for cls in ("a", "b", "c"):
            _class_image(data / split / cls, "1.png", 1)
    locked = {data / "train" / "c", data / "test" / "c"}
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(os.fsdecode(path)) in locked:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    for use_cache in (True, False):
        with pytest.raises(ValueError, match=r"cannot list .*c: Permission denied"):
            load_image_folder(data, cache_dir=tmp_path / "cache", use_cache=use_cache, quiet=True)


def test_a_link_above_a_relative_root_is_a_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link to a folder above the working directory, found from a relative path, stops at
    once (it would walk that whole folder first)."""
    work = tmp_path / "outer" / "work"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            _class_image(work / "data" / split / cls, "1.png", 1)
    (work / "data" / "train" / "a" / "up").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.chdir(work)
    walked = []
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        walked.append(os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ValueError, match="up is a symbolic link cycle"):
        list(iter_members("data"))
    assert not any("up/" in p for p in walked)  # nothing under the link was listed


def test_a_cache_that_cannot_be_written_only_warns(tmp_path: Path) -> None:
    """The decoded arrays are returned (equal to an uncached load) when the cache root is not
    writable: here a file stands where the folder should be."""
    data = tmp_path / "data"
    for split, base in (("train", 10), ("test", 20)):
        for k, cls in enumerate("ab"):
            _class_image(data / split / cls, "1.png", base + k)
    blocked = tmp_path / "cache"
    blocked.write_bytes(b"a file, not a folder")
    with pytest.warns(UserWarning, match="cannot write cache file .*; continuing without it"):
        ds = load_image_folder(data, cache_dir=blocked, quiet=True)
    assert ds.x_train[:, 0, 0, 0].tolist() == [10, 11] and ds.y_test.tolist() == [0, 1]
    assert blocked.read_bytes() == b"a file, not a folder"
