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
"""

from ._archives import (
    DATA_ENV,
    iter_members,
    parse_checksum,
    read_members,
    safe_member_name,
    verify_checksum,
)
from ._augment import augment_batch, normalise, random_crop, random_flip
from ._batching import EpochBatcher
from ._cache import CACHE_ENV, cache_root, cached_dataset
from ._cifar import (
    CIFAR10_MD5,
    CIFAR10_URL,
    CIFAR100_MD5,
    CIFAR100_URL,
    RestrictedUnpickler,
    load_cifar10,
    load_cifar100,
    restricted_loads,
)
from ._dataset import (
    Dataset,
    DatasetInfo,
    ModelArrays,
    channel_stats,
    input_statistics,
    make_dataset,
    normalise_array,
    normalised_arrays,
)
from ._decode import decode_images
from ._embedded import load_digits, load_mnist1d, load_synthetic, stratified_split
from ._image_folder import (
    CIFAR10_JPEG_SHA256,
    DEFAULT_SHARED_DATA_DIR,
    load_cifar10_jpeg,
    load_image_folder,
)
from ._registry import (
    AugmentationDefaults,
    augmentation_defaults,
    available_datasets,
    load_dataset,
    register_dataset,
)
from ._tiny_imagenet import TINY_IMAGENET_MD5, TINY_IMAGENET_URL, load_tiny_imagenet
from ._variants import balanced_indices, balanced_subset, binary_variant

__all__ = [
    "AugmentationDefaults",
    "augmentation_defaults",
    "CACHE_ENV",
    "CIFAR10_JPEG_SHA256",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CIFAR100_MD5",
    "CIFAR100_URL",
    "DATA_ENV",
    "DEFAULT_SHARED_DATA_DIR",
    "TINY_IMAGENET_MD5",
    "TINY_IMAGENET_URL",
    "Dataset",
    "DatasetInfo",
    "EpochBatcher",
    "ModelArrays",
    "RestrictedUnpickler",
    "augment_batch",
    "available_datasets",
    "balanced_indices",
    "balanced_subset",
    "binary_variant",
    "cache_root",
    "cached_dataset",
    "channel_stats",
    "decode_images",
    "input_statistics",
    "iter_members",
    "load_cifar10",
    "load_cifar10_jpeg",
    "load_cifar100",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_mnist1d",
    "load_synthetic",
    "load_tiny_imagenet",
    "make_dataset",
    "normalise",
    "normalise_array",
    "normalised_arrays",
    "parse_checksum",
    "random_crop",
    "random_flip",
    "read_members",
    "register_dataset",
    "restricted_loads",
    "safe_member_name",
    "stratified_split",
    "verify_checksum",
]
