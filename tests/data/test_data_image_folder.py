"""Image-folder data sets from directories, zip and tar archives; decoding; the on-disk cache."""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sdcomplex.data._decode as decode_module
import sdcomplex.data._image_folder as image_folder_module
from sdcomplex.data import load_dataset, load_image_folder
from sdcomplex.data._cache import CACHE_ENV
from sdcomplex.data._decode import decode_images

CLASSES = ["zebra", "ant", "Bee"]  # sorted (Python string order): Bee, ant, zebra


def _encode(img: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(buf, format=fmt)
    return buf.getvalue()


def make_tree(rng: np.random.Generator, root: str = "", per_class: int = 3) -> dict:
    """``{member name: (pixels, encoded PNG)}`` of a two-split image folder."""
    files = {}
    for cls in CLASSES:
        for split, count in (("train", per_class), ("test", 2)):
            for i in range(count):
                img = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
                files[f"{root}{split}/{cls}/{i:04d}.png"] = (img, _encode(img))
    return files


def write_source(kind: str, path: Path, files: dict) -> Path:
    extra = {"README.txt": b"not an image", "train/.DS_Store": b"junk"}
    members = {name: data for name, (_, data) in files.items()} | extra
    if kind == "dir":
        for name, data in members.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
        return path
    if kind == "zip":
        path = path.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in reversed(members.items()):  # archive order is not sorted order
                zf.writestr(name, data)
        return path
    path = path.with_suffix(".tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        for name, data in reversed(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _expected(files: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference order: labels from sorted class names, then file names."""
    names = sorted(CLASSES)
    rows = sorted((names.index(n.split("/")[-2]), n) for n in files if n.split("/")[-3] == split)
    return np.stack([files[n][0] for _, n in rows]), np.array([c for c, _ in rows])


@pytest.mark.parametrize("kind", ["dir", "zip", "tar"])
@pytest.mark.parametrize("root", ["", "mydata/"])
def test_image_folder_reads_back_exactly(tmp_path: Path, kind: str, root: str) -> None:
    files = make_tree(np.random.default_rng(0), root)
    source = write_source(kind, tmp_path / "src", files)
    ds = load_image_folder(source, cache_dir=tmp_path / "cache", quiet=True)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        x_ref, y_ref = _expected(files, split)
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
    assert ds.info.class_names == ("Bee", "ant", "zebra")
    assert (ds.info.n_train, ds.info.n_test, ds.info.input_shape) == (9, 6, (5, 6, 3))
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32


def test_jpeg_matches_an_independent_decode(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    files = {}
    for cls in ("a", "b"):
        for split in ("train", "test"):
            img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            files[f"{split}/{cls}/x.jpg"] = (img, _encode(img, "JPEG"))
    gray = rng.integers(0, 256, size=(8, 8, 1), dtype=np.uint8)
    files["train/b/y.jpg"] = (gray, _encode(gray, "JPEG"))
    source = write_source("zip", tmp_path / "src", files)
    ds = load_image_folder(source, use_cache=False, quiet=True)
    decoded = np.asarray(Image.open(io.BytesIO(files["train/b/y.jpg"][1])).convert("RGB"))
    np.testing.assert_array_equal(ds.x_train[2], decoded)  # grayscale JPEG -> RGB
    first = np.asarray(Image.open(io.BytesIO(files["train/a/x.jpg"][1])))
    np.testing.assert_array_equal(ds.x_train[0], first)


def test_grayscale_mode_and_resize(tmp_path: Path) -> None:
    files = make_tree(np.random.default_rng(2))
    source = write_source("dir", tmp_path / "src", files)
    ds = load_image_folder(source, image_mode="L", image_size=(4, 3), use_cache=False, quiet=True)
    assert ds.info.input_shape == (4, 3, 1) and ds.info.num_channels == 1
    name = "train/Bee/0000.png"
    ref = Image.fromarray(files[name][0]).convert("L").resize((3, 4), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(ds.x_train[0, ..., 0], np.asarray(ref))


def test_mixed_sizes_name_the_file(tmp_path: Path) -> None:
    files = make_tree(np.random.default_rng(3))
    odd = np.zeros((7, 7, 3), np.uint8)
    files["train/ant/0001.png"] = (odd, _encode(odd))
    source = write_source("dir", tmp_path / "src", files)
    with pytest.raises(ValueError, match="train/ant/0001.png.*image_size"):
        load_image_folder(source, use_cache=False, quiet=True)


def test_layout_errors(tmp_path: Path) -> None:
    files = make_tree(np.random.default_rng(4))
    no_test = {k: v for k, v in files.items() if not k.startswith("test/")}
    with pytest.raises(ValueError, match="test/<class>/"):
        load_image_folder(write_source("dir", tmp_path / "a", no_test), use_cache=False)
    extra = files | {"test/wasp/0.png": files["test/ant/0000.png"]}
    with pytest.raises(ValueError, match=r"test classes \['wasp'\] have no training images"):
        load_image_folder(write_source("dir", tmp_path / "b", extra), use_cache=False)
    broken = files | {"train/ant/9.png": (None, b"not a png")}
    with pytest.raises(ValueError, match="cannot decode image 'train/ant/9.png'"):
        load_image_folder(write_source("dir", tmp_path / "c", broken), use_cache=False)
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "missing.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("notes/readme.txt", b"no images here")
    with pytest.raises(ValueError, match="no images in .*empty.zip: expected train/<class>"):
        load_image_folder(tmp_path / "empty.zip", use_cache=False)
    with pytest.raises(ValueError, match="checksum applies to an archive"):
        load_image_folder(tmp_path / "a", checksum="md5:" + "0" * 32)


def test_second_load_hits_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_tree(np.random.default_rng(5))
    source = write_source("tar", tmp_path / "src", files)
    cache = tmp_path / "cache"
    first = load_image_folder(source, cache_dir=cache, quiet=True)
    cached = list(cache.iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("image_folder-")
    assert cached[0].suffix == ".npz"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(image_folder_module, "decode_images", no_decoding)
    start = time.perf_counter()
    second = load_image_folder(source, cache_dir=cache, quiet=True)
    assert time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert first.info == second.info
    # a changed source (new mtime) misses the cache
    os.utime(source, ns=(0, source.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_image_folder(source, cache_dir=cache, quiet=True)


def test_cache_location_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_source("dir", tmp_path / "src", make_tree(np.random.default_rng(6)))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env-cache"))
    load_dataset("image_folder", path=source, quiet=True)
    assert len(list((tmp_path / "env-cache").glob("image_folder-*.npz"))) == 1


def test_unreadable_cache_file_is_rebuilt(tmp_path: Path) -> None:
    source = write_source("dir", tmp_path / "src", make_tree(np.random.default_rng(7)))
    cache = tmp_path / "cache"
    good = load_image_folder(source, cache_dir=cache, quiet=True)
    (cache_file,) = cache.iterdir()
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cache file"):
        again = load_image_folder(source, cache_dir=cache, quiet=True)
    np.testing.assert_array_equal(good.x_train, again.x_train)
    assert sorted(p.name for p in cache.iterdir()) == [cache_file.name]  # no temp files left


def test_default_workers_follow_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for load, expected in ((0.0, 4), (1.2, 3), (3.6, 1), (9.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert decode_module.default_num_workers() == expected


def test_parallel_decoding_matches_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    items = [
        (f"img{i}.png", _encode(rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)))
        for i in range(45)
    ]
    monkeypatch.setattr(decode_module, "_CHUNK", 10)
    monkeypatch.setattr(decode_module, "_PARALLEL_MIN", 20)
    names_1, serial = decode_images(items, num_workers=1, quiet=True)
    names_2, parallel = decode_images(iter(items), num_workers=2, quiet=True)
    assert names_1 == names_2 == [n for n, _ in items]
    np.testing.assert_array_equal(serial, parallel)
    assert serial.shape == (45, 3, 4, 3)
    # errors inside a worker and while reading the input reach the caller
    broken = items[:33] + [("broken.png", b"not an image")] + items[33:]
    with pytest.raises(ValueError, match="cannot decode image 'broken.png'"):
        decode_images(broken, num_workers=2, quiet=True)

    def failing_reader():
        yield from items[:35]
        raise ValueError("archive ended early")

    with pytest.raises(ValueError, match="archive ended early"):
        decode_images(failing_reader(), num_workers=2, quiet=True)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"image_size": -3}, "image size must be a pair"),
        ({"image_size": (8, 0)}, "image size must be a pair"),
        ({"image_size": ("a", "b")}, "image size must be a pair"),
        ({"image_size": (8, 8, 3)}, "image size must be a pair"),
        ({"num_workers": "x"}, "num_workers must be an integer >= 1, got 'x'"),
        ({"num_workers": True}, "num_workers must be an integer >= 1"),
        ({"num_workers": 0}, "num_workers must be an integer >= 1"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict, match: str) -> None:
    source = write_source("dir", tmp_path / "src", make_tree(np.random.default_rng(8)))
    with pytest.raises(ValueError, match=match):
        load_image_folder(source, use_cache=False, quiet=True, **options)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "a\\b", "", "x\0y", None])
def test_a_name_that_is_not_a_file_name_is_refused(tmp_path: Path, name: object) -> None:
    source = write_source("dir", tmp_path / "src", make_tree(np.random.default_rng(9)))
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(ValueError, match=f"data set name {re.escape(repr(name))} cannot name"):
        load_image_folder(source, name=name, cache_dir=cache, quiet=True)  # type: ignore[arg-type]
    assert [p for p in tmp_path.rglob("*") if p.suffix == ".npz"] == []  # nothing written
    ds = load_image_folder(source, name="my-set.v2+1", cache_dir=cache, quiet=True)
    assert ds.info.name == "my-set.v2+1"
    assert [p.name[:12] for p in tmp_path.rglob("*.npz")] == ["my-set.v2+1-"]
    assert next(tmp_path.rglob("*.npz")).parent == cache


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("blob", [b"not an image", b"GIF89a\0\0\0", b"\x89PNG\r\n\x1a\n"])
def test_an_undecodable_image_is_named_with_the_reason_only(
    monkeypatch: pytest.MonkeyPatch, workers: int, blob: bytes
) -> None:
    monkeypatch.setattr(decode_module, "_CHUNK", 2)
    monkeypatch.setattr(decode_module, "_PARALLEL_MIN", 4)  # two workers decode 3 chunks
    good = ("ok.png", _encode(np.zeros((3, 4, 3), np.uint8)))
    items = [good, good, good, ("train/ant/bad.png", blob), good]
    with pytest.raises(ValueError) as caught:
        decode_images(items, num_workers=workers, quiet=True)
    message = str(caught.value)
    assert message.startswith("cannot decode image 'train/ant/bad.png': "), message
    assert "0x" not in message and "BytesIO" not in message and "\n" not in message, message
