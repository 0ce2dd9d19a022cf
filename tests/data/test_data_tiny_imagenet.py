"""Tiny ImageNet from a fixture in the official tiny-imagenet-200 layout (directory and zip)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdcomplex.data import load_dataset
from sdcomplex.data._tiny_imagenet import load_tiny_imagenet

WNIDS = ["n09256479", "n01443537", "n02124075"]  # wnids.txt order is not sorted


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG")
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def make_tiny_imagenet(per_class: int = 2, val_per_class: int = 2) -> dict[str, bytes]:
    """Members of the official layout (relative to tiny-imagenet-200/)."""
    rng = np.random.default_rng(0)
    members: dict[str, bytes] = {
        "wnids.txt": "\n".join(WNIDS).encode() + b"\n",
        "words.txt": b"n01443537\tgoldfish, Carassius auratus\n",
    }
    for wnid in WNIDS:
        members[f"train/{wnid}/{wnid}_boxes.txt"] = b"x\t0\t0\t8\t8\n"
        for k in range(per_class):
            img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            members[f"train/{wnid}/images/{wnid}_{k}.JPEG"] = _jpeg(img)
    gray = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)  # Tiny ImageNet has some
    members[f"train/{WNIDS[1]}/images/{WNIDS[1]}_{per_class}.JPEG"] = _jpeg(gray)
    lines = []
    for k in range(val_per_class * len(WNIDS)):
        wnid = WNIDS[(k * 2) % len(WNIDS)]
        members[f"val/images/val_{k}.JPEG"] = _jpeg(
            rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        )
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t8\t8")
    members["val/val_annotations.txt"] = ("\n".join(lines) + "\n").encode()
    members["test/images/test_0.JPEG"] = members["val/images/val_0.JPEG"]  # unlabelled
    return members


def _expected(members: dict[str, bytes]) -> tuple[np.ndarray, ...]:
    order = sorted(WNIDS)
    train = sorted(
        (order.index(n.split("/")[1]), n) for n in members if n.endswith(".JPEG") and "train" in n
    )
    ann = dict(
        line.split("\t")[:2] for line in members["val/val_annotations.txt"].decode().splitlines()
    )
    val = [n for n in members if n.startswith("val/images/")]
    test = sorted((order.index(ann[n.split("/")[-1]]), n) for n in val)
    return (
        np.stack([_decode(members[n]) for _, n in train]),
        np.array([c for c, _ in train]),
        np.stack([_decode(members[n]) for _, n in test]),
        np.array([c for c, _ in test]),
    )


def _check(ds, members: dict[str, bytes]) -> None:
    x_train, y_train, x_test, y_test = _expected(members)
    np.testing.assert_array_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.x_test, x_test)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.info.class_names == tuple(sorted(WNIDS))
    assert (ds.info.n_train, ds.info.n_test, ds.info.input_shape) == (7, 6, (8, 8, 3))
    assert "val" in ds.info.split


def test_directory_layout(tmp_path: Path) -> None:
    members = make_tiny_imagenet()
    for name, data in members.items():
        path = tmp_path / "tiny-imagenet-200" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    ds = load_dataset("tiny_imagenet", data_dir=tmp_path, cache_dir=tmp_path / "cache", quiet=True)
    _check(ds, members)
    assert ds.info.checksum is None


def test_official_zip(tmp_path: Path) -> None:
    members = make_tiny_imagenet()
    archive = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny-imagenet-200/", b"")
        for name, data in members.items():
            zf.writestr(f"tiny-imagenet-200/{name}", data)
    md5 = "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()
    ds = load_tiny_imagenet(data_dir=tmp_path, cache_dir=tmp_path / "cache", checksum=md5)
    _check(ds, members)
    assert ds.info.checksum == md5
    with pytest.raises(ValueError, match="checksum mismatch"):  # the official md5 by default
        load_tiny_imagenet(data_dir=tmp_path, cache_dir=tmp_path / "cache2")


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tiny-imagenet-200.zip not found"):
        load_tiny_imagenet(data_dir=tmp_path)
    members = make_tiny_imagenet()
    members["val/val_annotations.txt"] += b"val_99.JPEG\tn00000000\t0\t0\t1\t1\n"
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError, match="line 7: unknown or missing wnid"):
        load_tiny_imagenet(path=archive, checksum=None, use_cache=False)


@pytest.mark.parametrize(
    ("member", "content", "match"),
    [
        ("wnids.txt", b"\xff\xfe\x00n0\n", r"wnids.txt is not UTF-8 text \(invalid start byte"),
        ("val/val_annotations.txt", b"\xc3\x28\n", "val_annotations.txt is not UTF-8 text"),
        ("val/val_annotations.txt", b"no tabs here\n", "line 1: unknown or missing wnid"),
        ("train/n01443537/images/n01443537_0.JPEG", b"not a jpeg", "cannot decode image"),
    ],
)
def test_malformed_members_are_one_error_naming_the_file(
    tmp_path: Path, member: str, content: bytes, match: str
) -> None:
    members = make_tiny_imagenet()
    assert member in members or member.endswith(".txt")
    members[member] = content
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ValueError, match=match) as err:
        load_tiny_imagenet(path=archive, checksum=None, use_cache=False, num_workers=1)
    assert "\n" not in str(err.value)


def _write_dir(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        path = root / "tiny-imagenet-200" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root / "tiny-imagenet-200"


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    """macOS leaves ``._<name>`` AppleDouble files beside each image on foreign disks."""
    members = make_tiny_imagenet()
    expected = dict(members)
    for name in list(members):
        if name.endswith(".JPEG"):
            folder, _, base = name.rpartition("/")
            members[f"{folder}/._{base}"] = b"\x00\x05\x16\x07 AppleDouble"
    members["train/.DS_Store"] = b"junk"
    ds = load_tiny_imagenet(path=_write_dir(tmp_path, members), use_cache=False, quiet=True)
    _check(ds, expected)


def test_missing_validation_images_are_an_error(tmp_path: Path) -> None:
    """val_annotations.txt lists every validation image: a partial copy is not a test split."""
    members = make_tiny_imagenet()
    del members["val/images/val_3.JPEG"]
    source = _write_dir(tmp_path, members)
    with pytest.raises(ValueError, match=r"1 image\(s\) listed in .*annotations.txt are missing"):
        load_tiny_imagenet(path=source, use_cache=False, quiet=True)
