"""The real shared CIFAR-10 JPEG archive (../shared/data/cifar10-jpeg.tar.gz from the repo root).

Decoding 60,000 JPEGs takes several seconds the first time; the cache directory is shared by
the whole pytest session.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from sdcomplex.data import load_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sdcomplex-cache")


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"shared data archive not found at {ARCHIVE}")
def test_shared_cifar10_jpeg(shared_cache: Path) -> None:
    ds = load_dataset("cifar10_jpeg", path=ARCHIVE, cache_dir=shared_cache, quiet=True)
    info = ds.info
    assert ds.x_train.shape == (50_000, 32, 32, 3) and ds.x_test.shape == (10_000, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert info.class_names == CLASSES and info.num_classes == 10
    assert ds.class_counts("train").tolist() == [5_000] * 10
    assert ds.class_counts("test").tolist() == [1_000] * 10
    assert info.checksum is not None and info.checksum.startswith("sha256:efac85c8")
    # JPEG pixels are close to the official arrays' well-known channel statistics
    np.testing.assert_allclose(info.mean, (0.4914, 0.4822, 0.4465), atol=3e-3)
    np.testing.assert_allclose(info.std, (0.2470, 0.2435, 0.2616), atol=5e-3)
    start = time.perf_counter()
    again = load_dataset("cifar10_jpeg", path=ARCHIVE, cache_dir=shared_cache, quiet=True)
    assert time.perf_counter() - start < 2.0  # the cache, not a second decode (~0.3 s)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    assert again.info == info
