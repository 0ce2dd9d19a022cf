"""Run specs, balanced subsets and kernel files with verified sidecars (no training needed)."""

import json

import numpy as np
import pytest

from sdcomplex.data import balanced_indices, balanced_subset, load_dataset
from sdcomplex.ntk import load_kernel, save_kernel
from sdcomplex.ntk._kernel_files import _digest, request_key
from sdcomplex.ntk._runs import parse_run_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("runs/a", ("runs/a", "last")),
        ("runs/a@0", ("runs/a", 0)),
        ("runs/a@12", ("runs/a", 12)),
        ("runs/a@init", ("runs/a", "init")),
        ("runs/a@last", ("runs/a", "last")),
        ("runs/user@host/a@3", ("runs/user@host/a", 3)),  # the last '@' names the epoch
    ],
)
def test_parse_run_spec(spec, expected):
    assert parse_run_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [("runs/a@", "bad epoch ''"), ("runs/a@-1", "bad epoch '-1'"), ("@3", "no run directory")],
)
def test_parse_run_spec_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_run_spec(spec)


def test_balanced_indices_are_balanced_subsets_selection():
    dataset = load_dataset("digits")
    for n, seed in ((3, 0), (7, 2)):
        indices = balanced_indices(dataset.y_train, n, seed=seed)
        subset = balanced_subset(dataset, n, seed=seed)
        np.testing.assert_array_equal(dataset.x_train[indices], subset.x_train)
        assert np.bincount(dataset.y_train[indices]).tolist() == [n] * 10
    small, large = (set(balanced_indices(dataset.y_train, n, seed=1)) for n in (2, 5))
    assert small < large  # nested for one seed


def test_balanced_indices_errors():
    with pytest.raises(ValueError, match="asked for 3"):
        balanced_indices(np.array([0, 0, 1, 1, 1]), 3)
    with pytest.raises(ValueError, match="positive integer"):
        balanced_indices(np.array([0, 1]), 0)
    with pytest.raises(ValueError, match="1-D integer"):
        balanced_indices(np.array([0.5, 1.0]), 1)


@pytest.fixture
def kernel_and_record():
    a = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    kernel = a @ a.T
    record = {"outputs": "mean", "shape": [5, 5], "sha256": _digest(kernel), "indices": [1, 2]}
    return kernel, record


def test_save_and_load_round_trip(tmp_path, kernel_and_record):
    kernel, record = kernel_and_record
    path = save_kernel(tmp_path / "K.npz", kernel, record)
    loaded, sidecar = load_kernel(path, expect={"outputs": "mean", "indices": [1, 2]})
    np.testing.assert_array_equal(loaded, kernel)
    assert sidecar == record
    with pytest.raises(ValueError, match="another outputs"):
        load_kernel(path, expect={"outputs": "full"})
    with pytest.raises(FileExistsError, match="exists"):
        save_kernel(path, kernel, record)
    save_kernel(path, 2 * kernel, {**record, "sha256": _digest(2 * kernel)}, overwrite=True)
    np.testing.assert_array_equal(load_kernel(path)[0], 2 * kernel)


def test_a_tampered_kernel_or_sidecar_is_refused(tmp_path, kernel_and_record):
    kernel, record = kernel_and_record
    path = save_kernel(tmp_path / "K.npz", kernel, record)
    np.savez(path, kernel=kernel + 1)  # another kernel under the same sidecar
    with pytest.raises(ValueError, match="does not match its sidecar"):
        load_kernel(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ValueError, match="no such file"):
        load_kernel(path)


def test_a_damaged_kernel_or_sidecar_is_a_value_error(tmp_path, kernel_and_record):
    # (`cached_run_kernel` recomputes a cache entry whose load raises ValueError)
    kernel, record = kernel_and_record
    path = save_kernel(tmp_path / "K.npz", kernel, record)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut off, e.g. by a full disk
    with pytest.raises(ValueError, match="cannot read the kernel"):
        load_kernel(path)
    path.write_bytes(data)
    path.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a kernel's sidecar"):
        load_kernel(path)


def test_save_kernel_errors(tmp_path, kernel_and_record):
    kernel, record = kernel_and_record
    with pytest.raises(ValueError, match=r"ends in \.npz"):
        save_kernel(tmp_path / "K.npy", kernel, record)
    with pytest.raises(ValueError, match="sha256"):
        save_kernel(tmp_path / "K.npz", kernel + 1, record)
    assert not (tmp_path / "K.npz").exists()


def test_request_key_is_canonical():
    a = {"outputs": "mean", "indices": [1, 2], "run": {"epoch": 3, "run": "r"}}
    reordered = {"run": {"run": "r", "epoch": 3}, "indices": [1, 2], "outputs": "mean"}
    b = json.loads(json.dumps(reordered))
    assert request_key(a) == request_key(b) and len(request_key(a)) == 16
    assert request_key(a) != request_key({**a, "indices": [1, 3]})
