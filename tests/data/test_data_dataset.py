"""Dataset / DatasetInfo, normalisation, the registry, binary variants and balanced subsets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdcomplex.data import (
    Dataset,
    DatasetInfo,
    available_datasets,
    balanced_indices,
    balanced_subset,
    binary_variant,
    load_dataset,
    make_dataset,
    normalised_arrays,
    register_dataset,
)
from sdcomplex.data._dataset import channel_stats


def _images(n_train: int = 40, n_test: int = 12, classes: int = 4, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return make_dataset(
        rng.integers(0, 256, size=(n_train, 5, 5, 3), dtype=np.uint8),
        np.arange(n_train) % classes,
        rng.integers(0, 256, size=(n_test, 5, 5, 3), dtype=np.uint8),
        np.arange(n_test) % classes,
        name="toy",
        class_names=tuple(f"c{k}" for k in range(classes)),
        pixel_max=255.0,
        source="test",
        provenance=("toy()",),
    )


def test_info_derives_from_arrays_and_round_trips_json() -> None:
    ds = _images()
    info = ds.info
    assert (info.n_train, info.n_test, info.input_shape, info.num_classes) == (40, 12, (5, 5, 3), 4)
    ref = ds.x_train.astype(np.float64) / 255.0
    np.testing.assert_allclose(info.mean, ref.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(info.std, ref.std(axis=(0, 1, 2)), rtol=1e-10)
    again = DatasetInfo.from_json(info.to_json())
    assert json.loads(info.to_json())["class_names"] == ["c0", "c1", "c2", "c3"]
    assert again == info and hash(again) == hash(info)
    with pytest.raises(ValueError, match="unknown DatasetInfo fields"):
        DatasetInfo.from_dict({**info.to_dict(), "colour": "blue"})


def test_channel_stats_float_data_one_channel() -> None:
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(10_000, 6)).astype(np.float32)
    mean, std = channel_stats(x, 1.0)
    assert len(mean) == 1
    np.testing.assert_allclose(mean[0], x.astype(np.float64).mean(), rtol=1e-9)
    np.testing.assert_allclose(std[0], x.astype(np.float64).std(), rtol=1e-9)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("class_names", ("a",), "at least 2 classes"),
        ("class_names", ("a", "a"), "unique"),
        ("mean", (0.5,), "one value per channel"),
        ("std", (0.1, 0.0, 0.2), "must be positive"),
    ],
)
def test_info_validation(field: str, value: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _images().info.replace(**{field: value})


def test_dataset_validation() -> None:
    ds = _images()
    parts = (ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    with pytest.raises(ValueError, match="x_train has shape"):
        Dataset(ds.x_train[:-1], *parts[1:], ds.info)
    with pytest.raises(ValueError, match="dtype float32, expected uint8"):
        Dataset(ds.x_train.astype(np.float32), *parts[1:], ds.info)
    with pytest.raises(ValueError, match="y_test must be int32"):
        Dataset(*parts[:3], ds.y_test.astype(np.int64), ds.info)
    with pytest.raises(ValueError, match="labels outside"):
        Dataset(ds.x_train, ds.y_train + 1, *parts[2:], ds.info)
    with pytest.raises(TypeError, match="numpy arrays"):
        Dataset(list(ds.x_train), *parts[1:], ds.info)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split must be"):
        ds.class_counts("val")


def test_normalised_arrays_standardise_the_training_split() -> None:
    ds = _images(n_train=400)
    arrays = normalised_arrays(ds)
    assert arrays.x_train.dtype == np.float32 and arrays.x_train.shape == ds.x_train.shape
    np.testing.assert_allclose(arrays.x_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(arrays.x_train.std(axis=(0, 1, 2)), 1.0, atol=1e-5)
    ref = (ds.x_test / 255.0 - np.array(ds.info.mean)) / np.array(ds.info.std)
    np.testing.assert_allclose(arrays.x_test, ref, rtol=1e-5, atol=1e-5)
    assert arrays.y_train is ds.y_train
    raw = normalised_arrays(ds, normalise=False)
    np.testing.assert_allclose(raw.x_test, ds.x_test / 255.0, rtol=1e-6)


def test_registry_errors() -> None:
    names = available_datasets()
    assert {"cifar10", "cifar100", "cifar10_jpeg", "tiny_imagenet", "image_folder"} <= set(names)
    assert {"digits", "mnist1d", "synthetic"} <= set(names)
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'; available: cifar10, "):
        load_dataset("cifar11")
    with pytest.raises(ValueError, match=r"has no option\(s\) \['colour'\]; valid options: "):
        load_dataset("synthetic", colour="red")
    with pytest.raises(ValueError, match="'synthetic' does not take data_dir"):
        load_dataset("synthetic", data_dir="/tmp")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", lambda: _images(), "again")
    with pytest.raises(ValueError, match="lower case"):
        register_dataset("My Data", lambda: _images(), "bad name")
    with pytest.raises(ValueError, match="needs path"):
        load_dataset("image_folder")


def test_binary_variant_default_halves() -> None:
    ds = _images(classes=5)
    binary = binary_variant(ds)
    assert binary.info.class_names == ("c0+c1", "c2+c3+c4")
    np.testing.assert_array_equal(binary.y_train, (ds.y_train >= 2).astype(np.int32))
    np.testing.assert_array_equal(binary.x_train, ds.x_train)
    assert binary.info.n_train == ds.info.n_train and binary.info.mean == ds.info.mean
    assert binary.info.provenance[-1] == "binary_variant(negative=0-1 -> 0, positive=2-4 -> 1)"


def test_binary_variant_with_chosen_groups_drops_the_rest() -> None:
    ds = _images(classes=4)
    binary = binary_variant(ds, negative_classes=[3], positive_classes=[1])
    keep = np.isin(ds.y_train, [1, 3])
    np.testing.assert_array_equal(binary.x_train, ds.x_train[keep])
    np.testing.assert_array_equal(binary.y_train, (ds.y_train[keep] == 1).astype(np.int32))
    assert binary.info.n_train == keep.sum() and binary.info.class_names == ("c3", "c1")
    assert binary.info.n_test == np.isin(ds.y_test, [1, 3]).sum()
    with pytest.raises(ValueError, match="disjoint"):
        binary_variant(ds, [0, 1], [1, 2])
    with pytest.raises(ValueError, match="class indices in"):
        binary_variant(ds, [7])
    with pytest.raises(ValueError, match="lists a class twice"):
        binary_variant(ds, [0, 0])


@pytest.mark.parametrize(
    ("negative", "positive", "match"),
    [
        ([0], [0.7], r"positive_classes\[0\] must be an integer, got 0.7"),
        ([1.0], [2], r"negative_classes\[0\] must be an integer, got 1.0"),
        (np.array([0.0, 1.5]), None, r"negative_classes\[0\] must be an integer, got .*0\.0"),
        ([0], [2, True], r"positive_classes\[1\] must be an integer, got True"),
        ([0], ["1"], r"positive_classes\[0\] must be an integer, got '1'"),
        ([0], 1, "positive_classes must be a sequence of class indices, got 1"),
        ("01", None, "negative_classes must be a sequence of class indices, got '01'"),
    ],
)
def test_binary_variant_refuses_classes_that_are_not_integers(negative, positive, match) -> None:
    ds = _images(classes=4)
    with pytest.raises(TypeError, match=match):
        binary_variant(ds, negative, positive)
    with pytest.raises(TypeError, match=match):
        load_dataset("synthetic", num_classes=4, binary=(negative, positive))


def test_binary_variant_takes_numpy_integer_classes() -> None:
    ds = _images(classes=4)
    numpy = binary_variant(ds, np.array([3]), (np.int64(1),))
    plain = binary_variant(ds, [3], [1])
    assert numpy.info == plain.info
    np.testing.assert_array_equal(numpy.y_train, plain.y_train)
    np.testing.assert_array_equal(numpy.x_test, plain.x_test)


def test_binary_variant_of_a_hundred_classes_names_ranges() -> None:
    ds = load_dataset("synthetic", n_train=200, n_test=100, dim=2, num_classes=100)
    binary = binary_variant(ds)
    assert binary.info.class_names == ("classes 0-49", "classes 50-99")
    assert binary.class_counts().tolist() == [100, 100]


def test_balanced_subset_is_balanced_deterministic_and_nested() -> None:
    ds = _images(n_train=200, classes=4)
    sub = balanced_subset(ds, 10, seed=3)
    assert sub.class_counts().tolist() == [10] * 4 and sub.info.n_train == 40
    assert sub.info.n_test == ds.info.n_test
    same = balanced_subset(ds, 10, seed=3)
    np.testing.assert_array_equal(sub.x_train, same.x_train)
    rows = {bytes(r) for r in ds.x_train.reshape(200, -1)}
    assert all(bytes(r) in rows for r in sub.x_train.reshape(40, -1))  # real examples
    small, large = balanced_subset(ds, 5, seed=3), balanced_subset(ds, 20, seed=3)
    large_rows = {bytes(r) for r in large.x_train.reshape(len(large.x_train), -1)}
    assert all(bytes(r) in large_rows for r in small.x_train.reshape(20, -1))  # nested
    other = balanced_subset(ds, 10, seed=4)
    assert not np.array_equal(sub.x_train, other.x_train)
    both = balanced_subset(ds, 10, seed=3, n_test_per_class=2)
    assert both.class_counts("test").tolist() == [2] * 4 and both.info.n_test == 8
    assert "balanced_subset(n_per_class=10, seed=3" in both.info.provenance[-1]
    with pytest.raises(ValueError, match="class 0 has only 50 examples, asked for 51"):
        balanced_subset(ds, 51)


@pytest.mark.parametrize("num_classes", [None, 3, 4])
def test_balanced_indices_pick_n_of_each_of_the_c_classes(num_classes) -> None:
    # Counted by brute force: C * n distinct indices, n of each class 0..C-1.
    labels = np.array([2, 0, 1, 2, 0, 1, 1, 2, 0, 3, 3, 3])[: 12 if num_classes != 3 else 9]
    classes = num_classes or 4
    picked = balanced_indices(labels, 2, seed=5, num_classes=num_classes)
    assert len(set(picked.tolist())) == len(picked) == 2 * classes
    assert [int(np.sum(labels[picked] == c)) for c in range(classes)] == [2] * classes


@pytest.mark.parametrize(
    ("labels", "num_classes", "match"),
    [
        ([0, 0, 1, 1], 1, r"labels must lie in \[0, 1\), found 1"),  # gave 2 indices for C = 1
        ([0, 0, 2, 2, 5], 3, r"labels must lie in \[0, 3\), found 5"),
        ([0, 0, -1, 1, 1], None, "found -1"),  # numpy's bincount message named no labels
        ([0, 0, 1, 1], 0, "num_classes must be a positive integer"),  # 0 read as "not given"
        ([0, 0, 1, 1], -2, "num_classes must be a positive integer"),
    ],
)
def test_balanced_indices_refuse_labels_outside_the_classes(labels, num_classes, match) -> None:
    with pytest.raises(ValueError, match=match):
        balanced_indices(np.array(labels), 1, num_classes=num_classes)


def test_load_dataset_applies_binary_then_subset() -> None:
    ds = load_dataset("digits", binary=True, n_per_class=50, subset_seed=2)
    assert ds.info.class_names == ("classes 0-4", "classes 5-9")
    assert ds.class_counts().tolist() == [50, 50]
    steps = ds.info.provenance
    assert steps[1].startswith("binary_variant") and steps[2].startswith("balanced_subset")
    picked = load_dataset("digits", binary=([3], [8]))
    assert picked.info.class_names == ("3", "8")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_statistics_of_non_finite_inputs_are_refused(bad: float) -> None:
    """One NaN made the mean NaN and the std silently 1: every normalised input NaN."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    x[2, 1] = bad
    y = np.arange(6) % 2
    with pytest.raises(ValueError, match="must be finite"):
        make_dataset(x, y, x, y, name="t", class_names=("a", "b"), pixel_max=1.0, source="s")
    with pytest.raises(ValueError, match="must be finite"):
        _images().info.replace(mean=(0.5, bad, 0.5))


@pytest.mark.parametrize("binary", [0, 1, None, "yes", ([0], [1], [2])])
def test_binary_must_be_a_bool_or_a_pair(binary: object) -> None:
    with pytest.raises(ValueError, match="binary must be True, False or a pair"):
        load_dataset("synthetic", n_train=20, n_test=20, dim=2, num_classes=4, binary=binary)
    both = load_dataset("synthetic", n_train=20, n_test=20, dim=2, num_classes=4, binary=np.True_)
    assert both.info.class_names == ("class_0+class_1", "class_2+class_3")
