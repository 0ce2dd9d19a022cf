"""CIFAR-10/100 loaders on small fixtures in the exact official format, checksums, downloads
and the restricted unpickler."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from sdcomplex.data import (
    RestrictedUnpickler,
    load_cifar10,
    load_cifar100,
    load_dataset,
    restricted_loads,
)


def _md5(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


def _batch(rng: np.random.Generator, n: int, label_keys: dict[str, int], name: bytes) -> dict:
    """A batch dict as in the official files: byte-string keys, uint8 (n, 3072), int lists."""
    batch = {
        b"batch_label": name,
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    for key, num in label_keys.items():
        batch[key.encode()] = [int(v) for v in rng.integers(0, num, size=n)]
    return batch


def _write_tar_gz(path: Path, members: dict[str, bytes], top: str) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(top)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_cifar10(folder: Path, protocol: int = 2, n: int = 3) -> dict:
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": _batch(rng, n, {"labels": 10}, b"training") for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, n + 1, {"labels": 10}, b"testing")
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    meta = {b"label_names": names, b"num_cases_per_batch": n, b"num_vis": 3072}
    members = {k: pickle.dumps(v, protocol=protocol) for k, v in batches.items()}
    members["batches.meta"] = pickle.dumps(meta, protocol=protocol)
    members["readme.html"] = b"<html></html>"
    _write_tar_gz(folder / "cifar-10-python.tar.gz", members, "cifar-10-batches-py")
    return batches


def make_cifar100(folder: Path) -> dict:
    rng = np.random.default_rng(1)
    batches = {
        "train": _batch(rng, 7, {"fine_labels": 100, "coarse_labels": 20}, b"training"),
        "test": _batch(rng, 5, {"fine_labels": 100, "coarse_labels": 20}, b"testing"),
    }
    meta = {
        b"fine_label_names": [f"fine{i:02d}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i:02d}".encode() for i in range(20)],
    }
    members = {k: pickle.dumps(v, protocol=2) for k, v in batches.items()}
    members["meta"] = pickle.dumps(meta, protocol=2)
    _write_tar_gz(folder / "cifar-100-python.tar.gz", members, "cifar-100-python")
    return batches


def _expected_images(batches: list[dict]) -> np.ndarray:
    """Independent reference: pixel (y, x, c) of a row is data[c * 1024 + y * 32 + x]."""
    data = np.concatenate([b[b"data"] for b in batches])
    out = np.zeros((len(data), 32, 32, 3), np.uint8)
    for c in range(3):
        for y in range(32):
            out[:, y, :, c] = data[:, c * 1024 + y * 32 : c * 1024 + y * 32 + 32]
    return out


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_fixture_reads_back_exactly(tmp_path: Path, protocol: int) -> None:
    batches = make_cifar10(tmp_path, protocol)
    archive = tmp_path / "cifar-10-python.tar.gz"
    ds = load_cifar10(data_dir=tmp_path, cache_dir=tmp_path / "cache", checksum=_md5(archive))
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    np.testing.assert_array_equal(ds.x_train, _expected_images(train))
    np.testing.assert_array_equal(ds.x_test, _expected_images([batches["test_batch"]]))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([b[b"labels"] for b in train]))
    np.testing.assert_array_equal(ds.y_test, batches["test_batch"][b"labels"])
    assert ds.y_train.dtype == np.int32 and ds.x_train.dtype == np.uint8
    info = ds.info
    assert info.class_names[0] == "airplane" and info.num_classes == 10
    assert (info.n_train, info.n_test, info.input_shape) == (15, 4, (32, 32, 3))
    assert info.checksum == _md5(archive)
    ref = ds.x_train.astype(np.float64) / 255
    np.testing.assert_allclose(info.mean, ref.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(info.std, ref.std(axis=(0, 1, 2)), rtol=1e-9)


@pytest.mark.parametrize("label_mode, count", [("fine", 100), ("coarse", 20)])
def test_cifar100_fine_and_coarse(tmp_path: Path, label_mode: str, count: int) -> None:
    batches = make_cifar100(tmp_path)
    archive = tmp_path / "cifar-100-python.tar.gz"
    ds = load_dataset(
        "cifar100",
        data_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        checksum=_md5(archive),
        label_mode=label_mode,
    )
    np.testing.assert_array_equal(ds.x_train, _expected_images([batches["train"]]))
    key = f"{label_mode}_labels".encode()
    np.testing.assert_array_equal(ds.y_train, batches["train"][key])
    np.testing.assert_array_equal(ds.y_test, batches["test"][key])
    assert ds.info.num_classes == count
    assert ds.info.class_names[3] == f"{label_mode}03"
    assert f"label_mode={label_mode!r}" in ds.info.provenance[0]


def test_cifar100_rejects_unknown_label_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label_mode"):
        load_cifar100(data_dir=tmp_path, label_mode="medium")


def test_checksum_mismatch_is_refused_and_nothing_cached(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="checksum mismatch.*expected md5 c58f3010"):
        load_cifar10(data_dir=tmp_path, cache_dir=cache)  # official checksum, fixture file
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_archive_names_path_and_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz not found") as err:
        load_cifar10(data_dir=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "download=True" in str(err.value)


class _FakeResponse(io.BytesIO):
    headers: dict[str, str] = {}


def test_download_when_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "src"
    source.mkdir()
    make_cifar10(source)
    payload = (source / "cifar-10-python.tar.gz").read_bytes()
    calls = []

    def fake_urlopen(url: str, timeout: float) -> _FakeResponse:
        calls.append((url, timeout))
        return _FakeResponse(payload)

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    data_dir = tmp_path / "data"
    checksum = "md5:" + hashlib.md5(payload).hexdigest()
    ds = load_cifar10(data_dir=data_dir, download=True, checksum=checksum, use_cache=False)
    assert calls[0][0] == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert ds.info.n_train == 15
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-python.tar.gz"]
    load_cifar10(data_dir=data_dir, download=True, checksum=checksum, use_cache=False)
    assert len(calls) == 1  # present now: not downloaded again


def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: _FakeResponse(b"junk"))
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_cifar10(data_dir=data_dir, download=True)
    assert not any(data_dir.iterdir())


def test_download_network_failure_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(ValueError, match="could not download .*by hand"):
        load_cifar10(data_dir=tmp_path, download=True)
    assert not any(tmp_path.iterdir())


class _Reduce:
    """Pickles as a call ``func(*args)``: what a malicious data file would contain."""

    def __init__(self, func, *args) -> None:
        self.call = (func, args)

    def __reduce__(self) -> tuple:
        return self.call


def _Evil(marker: Path) -> _Reduce:
    return _Reduce(os.system, f"touch {marker}")


@pytest.mark.parametrize(
    "payload",
    [
        lambda m: _Evil(m),
        lambda m: {b"data": _Evil(m)},
        lambda m: _Reduce(eval, f"open('{m}', 'w')"),
        lambda m: _Reduce(subprocess.Popen, ["touch", str(m)]),
    ],
    ids=["os.system", "nested os.system", "builtins.eval", "subprocess.Popen"],
)
def test_restricted_unpickler_refuses_code(tmp_path: Path, payload) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps(payload(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        restricted_loads(data)
    assert not marker.exists()
    result = pickle.loads(data)  # the payload is live: the plain unpickler runs it
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert marker.exists()


def test_malicious_batch_in_archive_is_refused(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}
    members["data_batch_3"] = pickle.dumps({b"data": _Evil(marker)}, protocol=2)
    _write_tar_gz(archive, members, "cifar-10-batches-py")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="data_batch_3.*refusing to load global posix.system"):
        load_cifar10(data_dir=tmp_path, cache_dir=cache, checksum=None)
    assert not marker.exists()
    assert not cache.exists() or not any(cache.iterdir())


def test_restricted_unpickler_loads_plain_numpy_dicts() -> None:
    obj = {b"a": np.arange(12, dtype=np.uint8).reshape(3, 4), "b": [1, 2], "c": b"x"}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        out = RestrictedUnpickler(io.BytesIO(pickle.dumps(obj, protocol=protocol))).load()
        np.testing.assert_array_equal(out[b"a"], obj[b"a"])
        assert out["b"] == [1, 2] and out["c"] == b"x"


def test_missing_member_is_reported(tmp_path: Path) -> None:
    _write_tar_gz(tmp_path / "cifar-10-python.tar.gz", {"readme.html": b""}, "cifar-10-batches-py")
    with pytest.raises(ValueError, match="no member 'cifar-10-batches-py/batches.meta'"):
        load_cifar10(data_dir=tmp_path, checksum=None, use_cache=False)
