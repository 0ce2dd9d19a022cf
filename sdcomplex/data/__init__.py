"""Data layer of sdcomplex: data sets, safe archive reading, caching, augmentation, batching.

Typical use::

    from sdcomplex.data import load_dataset, normalised_arrays, EpochBatcher, augment_batch

    ds = load_dataset("cifar10_jpeg")            # ../shared/data/cifar10-jpeg.tar.gz, cached
    batcher = EpochBatcher(ds.info.n_train, batch_size=128, seed=0)
    for step, (xb, yb) in enumerate(batcher.batches(epoch, ds.x_train, ds.y_train)):
        xb = augment_batch(batcher.step_key(epoch, step), xb, ds.info.mean, ds.info.std)

Registered names: see :func:`available_datasets`. Decoded arrays are cached under
``$SDCOMPLEX_CACHE`` (default ``~/.cache/sdcomplex``); official archives are looked for in
``data_dir`` (default ``$SDCOMPLEX_DATA`` or ``~/.cache/sdcomplex/data``).

The loaders of each registered data set, archive readers and their checksums live in the
private modules; ``load_dataset`` and ``register_dataset`` are the way in.
"""

from ._augment import augment_batch, normalise
from ._batching import EpochBatcher
from ._cache import cache_root
from ._dataset import (
    Dataset,
    DatasetInfo,
    ModelArrays,
    input_statistics,
    make_dataset,
    normalise_array,
    normalised_arrays,
)
from ._image_folder import load_image_folder
from ._progress import quiet_loading
from ._registry import (
    AugmentationDefaults,
    augmentation_defaults,
    available_datasets,
    load_dataset,
    register_dataset,
)
from ._variants import balanced_indices, balanced_subset, binary_variant

__all__ = [
    "augment_batch",
    "augmentation_defaults",
    "AugmentationDefaults",
    "available_datasets",
    "balanced_indices",
    "balanced_subset",
    "binary_variant",
    "cache_root",
    "Dataset",
    "DatasetInfo",
    "EpochBatcher",
    "input_statistics",
    "load_dataset",
    "load_image_folder",
    "make_dataset",
    "ModelArrays",
    "normalise",
    "normalise_array",
    "normalised_arrays",
    "quiet_loading",
    "register_dataset",
]
