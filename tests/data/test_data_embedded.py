"""Embedded data sets (digits, MNIST-1D, synthetic) and their splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sdcomplex.data._embedded as embedded_module
from sdcomplex.data import load_dataset
from sdcomplex.data._embedded import load_digits, load_mnist1d, load_synthetic


def test_digits_split_is_stratified_and_deterministic() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    ds = load_digits()
    ref = sklearn_digits()
    assert (ds.info.n_train, ds.info.n_test) == (1438, 359)
    assert ds.info.input_shape == (8, 8, 1) and ds.info.pixel_max == 16.0
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 16
    total = np.bincount(ref.target)
    np.testing.assert_array_equal(ds.class_counts("test"), np.round(0.2 * total))
    # the two splits partition the original examples exactly
    both = np.concatenate([ds.x_train, ds.x_test])[..., 0].reshape(len(ref.target), -1)
    key = lambda rows: sorted(map(bytes, rows.astype(np.uint8)))  # noqa: E731
    assert key(both) == key(ref.data)
    again = load_digits()
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    other = load_digits(seed=1)
    assert not np.array_equal(ds.y_test, other.y_test) or not np.array_equal(
        ds.x_test, other.x_test
    )


def test_digits_bad_fraction() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)
    with pytest.raises(ValueError, match="empty split"):
        load_digits(test_fraction=0.001)


def test_mnist1d_is_built_offline_cached_and_keeps_numpy_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mnist1d.data

    def no_network(*args, **kwargs):
        raise AssertionError("get_dataset may download: never call it")

    monkeypatch.setattr(mnist1d.data, "get_dataset", no_network)
    np.random.seed(123)  # noqa: NPY002 - the legacy global state must survive
    expected_next = np.random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    ds = load_mnist1d(cache_dir=tmp_path, num_samples=500)
    assert np.random.random() == expected_next  # noqa: NPY002
    assert (ds.info.n_train, ds.info.n_test, ds.info.input_shape) == (400, 100, (40,))
    assert ds.x_train.dtype == np.float32 and ds.info.num_classes == 10
    raw = mnist1d.data.get_dataset_args()
    raw.num_samples = 500
    ref = mnist1d.data.make_dataset(raw)
    np.testing.assert_allclose(ds.x_train, ref["x"], rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])
    monkeypatch.setattr(mnist1d.data, "make_dataset", no_network)  # second load: the cache
    again = load_dataset("mnist1d", cache_dir=tmp_path, num_samples=500)
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_synthetic_is_seeded_and_balanced() -> None:
    a = load_synthetic(n_train=60, n_test=30, dim=7, num_classes=3, seed=5)
    b = load_synthetic(n_train=60, n_test=30, dim=7, num_classes=3, seed=5)
    c = load_synthetic(n_train=60, n_test=30, dim=7, num_classes=3, seed=6)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.class_counts("train").tolist() == [20, 20, 20]
    assert a.x_train.dtype == np.float32 and a.info.input_shape == (7,)
    # well-separated clusters: nearest class mean (estimated on train) classifies test well
    far = load_synthetic(n_train=300, n_test=300, dim=10, num_classes=4, separation=20.0)
    means = np.stack([far.x_train[far.y_train == k].mean(0) for k in range(4)])
    pred = np.argmin(((far.x_test[:, None] - means) ** 2).sum(-1), axis=1)
    assert (pred == far.y_test).mean() > 0.95
    for bad, match in [
        ({"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
        ({"n_train": 0}, "n_train must be an integer >= 1, got 0"),
        ({"n_test": "abc"}, "n_test must be an integer >= 1, got 'abc'"),
        ({"dim": 2.5}, "dim must be an integer >= 1, got 2.5"),
        ({"dim": True}, "dim must be an integer >= 1, got True"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"noise": 0.0}, "noise must be a finite number > 0"),
        ({"separation": float("nan")}, "separation must be a finite number >= 0"),
        ({"noise": "loud"}, "noise must be a finite number > 0, got 'loud'"),
    ]:
        with pytest.raises(ValueError, match=match):
            load_synthetic(**bad)


def test_stratified_split_is_nested_per_class_order() -> None:
    labels = np.repeat(np.arange(3), 10)
    train, test = embedded_module.stratified_split(labels, 0.3, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 30
    assert np.bincount(labels[test]).tolist() == [3, 3, 3]
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
