"""CIFAR-10/100 loaders on small fixtures in the exact official format, checksums, downloads
and the restricted unpickler."""

from __future__ import annotations

import gzip
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

from sdcomplex.data import load_dataset
from sdcomplex.data._cifar import RestrictedUnpickler, load_cifar10, load_cifar100, restricted_loads


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


# ------------------------------------------------------------------ malformed pickles, every kind


def _members_of(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}


def _deep_list(depth: int) -> bytes:
    """A pickle of ``depth`` nested lists, written opcode by opcode."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


_HUGE = (1 << 40, 1 << 20)  # 2**60 bytes declared
_BAD_BATCHES = {
    "top-level list": lambda b: [b],
    "top-level int": lambda b: 7,
    "top-level None": lambda b: None,
    "no data key": lambda b: {k: v for k, v in b.items() if k != b"data"},
    "no labels key": lambda b: {k: v for k, v in b.items() if k != b"labels"},
    "data is a list": lambda b: {**b, b"data": b[b"data"].tolist()},
    "data is float32": lambda b: {**b, b"data": b[b"data"].astype(np.float32)},
    "data rows too short": lambda b: {**b, b"data": b[b"data"][:, :100].copy()},
    "data is 1-D": lambda b: {**b, b"data": b[b"data"].ravel()},
    "data is 3-D": lambda b: {**b, b"data": b[b"data"].reshape(3, 3, -1)},
    "data of objects": lambda b: {**b, b"data": np.array([object()] * 3, dtype=object)},
    "structured data": lambda b: {**b, b"data": np.zeros(3, dtype=[("a", "u1"), ("b", "f4")])},
    "labels is a dict": lambda b: {**b, b"labels": {1: 2}},
    "labels is a string": lambda b: {**b, b"labels": "012"},
    "labels are strings": lambda b: {**b, b"labels": ["a", "b", "c"]},
    "labels are floats": lambda b: {**b, b"labels": [0.5, 1.0, 2.0]},
    "labels are bools": lambda b: {**b, b"labels": [True, False, True]},
    "labels out of range": lambda b: {**b, b"labels": [0, 1, 10]},
    "labels negative": lambda b: {**b, b"labels": [0, -1, 2]},
    "labels too few": lambda b: {**b, b"labels": [0, 1]},
    "labels ragged": lambda b: {**b, b"labels": [[0], [1, 2], 3]},
    "labels beyond int64": lambda b: {**b, b"labels": [2**70, 1, 2]},
    "str and bytes key twice": lambda b: {**b, "data": b[b"data"]},
    "non-text key": lambda b: {**b, 3: b"x"},
}
_BAD_PICKLES = {
    "empty member": lambda: b"",
    "not a pickle": lambda: b"this is a text file\n",
    "truncated pickle": lambda: pickle.dumps({b"data": np.zeros((3, 3072), np.uint8)})[:-100],
    "huge reconstruct shape": lambda: pickle.dumps(
        _Reduce(np.array(0).__reduce__()[0], np.ndarray, _HUGE, b"b"), protocol=2
    ),
    "huge shape, little data": lambda: pickle.dumps(
        _State(
            np.array(0).__reduce__()[0],
            (np.ndarray, (0,), b"b"),
            (1, _HUGE, np.dtype("u1"), False, b"abc"),
        ),
        protocol=2,
    ),
    "bare ndarray call": lambda: pickle.dumps(_Reduce(np.ndarray, _HUGE, np.uint8), protocol=2),
    "huge protocol-5 buffer shape": lambda: pickle.dumps(
        _Reduce(np.array(0).__reduce_ex__(5)[0], b"abc", np.dtype("u1"), _HUGE, "C"), protocol=5
    ),
    "unknown codec (LookupError)": lambda: pickle.dumps(
        _Reduce(__import__("codecs").encode, "x", "no-such-codec"), protocol=2
    ),
    "state on bytes (AttributeError)": lambda: pickle.dumps(
        _State(__import__("codecs").encode, ("x", "latin1"), {"a": 1}), protocol=2
    ),
    "object dtype": lambda: pickle.dumps(np.array([1, None], dtype=object), protocol=2),
    "nested 100000 deep (RecursionError)": lambda: _deep_list(100_000),
    "invalid UTF-8 text": lambda: b"\x80\x02X\x02\x00\x00\x00\xff\xfe.",
    "huge BINBYTES8 length": lambda: b"\x80\x04\x8e" + (1 << 62).to_bytes(8, "little") + b"ab.",
    "BINBYTES8 beyond the data": lambda: b"\x80\x04\x8e" + (1 << 34).to_bytes(8, "little") + b"ab.",
    "BINUNICODE8 beyond the data": lambda: b"\x80\x04\x8d" + (1 << 34).to_bytes(8, "little") + b".",
}


class _State:
    """Pickles as ``func(*args)`` followed by BUILD with ``state``."""

    def __init__(self, func, args, state) -> None:
        self.reduced = (func, args, state)

    def __reduce__(self) -> tuple:
        return self.reduced


def _cifar10_with(tmp_path: Path, member: str, data: bytes) -> Path:
    make_cifar10(tmp_path)
    archive = tmp_path / "cifar-10-python.tar.gz"
    members = _members_of(archive)
    members[member] = data
    _write_tar_gz(archive, members, "cifar-10-batches-py")
    return archive


def _refused(archive: Path, member: str) -> str:
    before = archive.read_bytes()
    with pytest.raises(ValueError) as err:
        load_cifar10(data_dir=archive.parent, checksum=None, use_cache=False)
    message = str(err.value)
    assert "\n" not in message and str(archive) in message and member in message
    assert "allow_pickle" not in message and archive.read_bytes() == before
    return message


@pytest.mark.parametrize("kind", sorted(_BAD_BATCHES))
def test_malformed_batch_is_one_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(0)
    batch = _BAD_BATCHES[kind](_batch(rng, 3, {"labels": 10}, b"training"))
    _refused(_cifar10_with(tmp_path, "data_batch_2", pickle.dumps(batch, protocol=2)), "batch_2")


@pytest.mark.parametrize("kind", sorted(_BAD_PICKLES))
def test_malformed_pickle_is_refused_before_allocating(tmp_path: Path, kind: str) -> None:
    message = _refused(_cifar10_with(tmp_path, "test_batch", _BAD_PICKLES[kind]()), "test_batch")
    assert "pickle" in message or "array" in message or "'data'" in message


@pytest.mark.parametrize(
    ("kind", "meta"),
    [
        ("names not a list", {b"label_names": 5}),
        ("names missing", {}),
        ("too few names", {b"label_names": [b"a", b"b"]}),
        ("names not UTF-8", {b"label_names": [b"\xff"] * 10}),
        ("names of numbers", {b"label_names": list(range(10))}),
        ("meta is a list", [b"airplane"]),
    ],
)
def test_malformed_meta_is_one_error(tmp_path: Path, kind: str, meta) -> None:
    _refused(_cifar10_with(tmp_path, "batches.meta", pickle.dumps(meta, protocol=2)), "meta")


def _raw_tar_gz(path: Path, name: str, declared: int, data: bytes) -> None:
    """A tar.gz whose one member's header declares ``declared`` bytes and holds ``data``."""
    info = tarfile.TarInfo(name)
    info.size = declared
    header = info.tobuf(format=tarfile.GNU_FORMAT)  # base-256 sizes beyond 8 GiB
    padded = data + bytes(-len(data) % tarfile.BLOCKSIZE)
    with gzip.open(path, "wb") as fh:
        fh.write(header + padded + bytes(2 * tarfile.BLOCKSIZE))


@pytest.mark.parametrize(
    ("declared", "match"),
    [
        (1 << 60, "declares 1152921504606846976 bytes, more than this machine's memory"),
        (1 << 20, "truncated"),
        (5, "not a valid pickle"),
    ],
)
def test_tar_member_lying_about_its_size(tmp_path: Path, declared: int, match: str) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    data = pickle.dumps({b"label_names": [b"x"] * 10}, protocol=2)
    _raw_tar_gz(archive, "cifar-10-batches-py/batches.meta", declared, data)
    with pytest.raises(ValueError, match=match) as err:
        load_cifar10(data_dir=tmp_path, checksum=None, use_cache=False)
    assert str(archive) in str(err.value) and "\n" not in str(err.value)
