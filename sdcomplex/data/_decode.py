"""Decoding many small encoded images (JPEG, PNG, ...) into one uint8 array, on all cores.

Images are decoded with Pillow in chunks. Small inputs are decoded in this process; larger ones
in a pool of ``spawn`` worker processes (safe in a multi-threaded JAX process, unlike ``fork``)
that starts while the archive is still being read, so reading and decoding overlap. Scripts
that load large image sets should therefore keep the usual ``if __name__ == "__main__":``
guard. Output order always equals input order.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

_CHUNK = 1000  # images per task
_PARALLEL_MIN = 4 * _CHUNK  # fewer images than this are decoded in-process
_MODES = {"RGB": 3, "L": 1}


def _decode_one(name: str, blob: bytes, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(blob)) as opened:
            img: Image.Image = opened if opened.mode == mode else opened.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode image {name!r}: {err}") from None
    return arr[..., None] if arr.ndim == 2 else arr


def _decode_chunk(task: tuple[list[tuple[str, bytes]], str, tuple[int, int] | None]) -> np.ndarray:
    items, mode, size = task
    images = [_decode_one(name, blob, mode, size) for name, blob in items]
    for (name, _), img in zip(items, images, strict=True):
        if img.shape != images[0].shape:
            raise ValueError(
                f"image {name!r} has shape {img.shape}, expected {images[0].shape} like "
                f"{items[0][0]!r}; pass image_size=(H, W) to resize all images"
            )
    return np.stack(images)


def default_num_workers() -> int:
    """Usable CPU cores of this process (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def decode_images(
    items: Iterable[tuple[str, bytes]],
    *,
    mode: str = "RGB",
    size: tuple[int, int] | None = None,
    num_workers: int | None = None,
    quiet: bool = False,
    desc: str = "decoding images",
) -> tuple[list[str], np.ndarray]:
    """Decode ``(name, encoded bytes)`` pairs into one array, in input order.

    Args:
        items: pairs, e.g. from :func:`~sdcomplex.data.iter_members`; consumed lazily.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel); other modes are
            converted.
        size: ``(H, W)`` to resize every image to (bilinear); ``None`` requires all images to
            share one size.
        num_workers: worker processes; ``None`` uses every available core, 1 decodes here.
        quiet: hide the progress bar.
        desc: progress-bar label.

    Returns:
        ``(names, images)``: names in input order and uint8 ``(n, H, W, C)``.

    Raises:
        ValueError: an undecodable image or mixed sizes (the file is named), or no images.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    workers = default_num_workers() if num_workers is None else num_workers
    if workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    names: list[str] = []

    def chunks() -> Iterator[tuple[list[tuple[str, bytes]], str, tuple[int, int] | None]]:
        it = iter(items)
        while chunk := list(itertools.islice(it, _CHUNK)):
            names.extend(name for name, _ in chunk)
            yield chunk, mode, size

    tasks = chunks()
    head = list(itertools.islice(tasks, _PARALLEL_MIN // _CHUNK))
    results: list[np.ndarray] = []
    with tqdm(desc=desc, unit="img", disable=quiet) as bar:
        if workers == 1 or len(head) < _PARALLEL_MIN // _CHUNK:
            decoded: Iterator[np.ndarray] = map(_decode_chunk, itertools.chain(head, tasks))
            for arr in decoded:
                results.append(arr)
                bar.update(len(arr))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for arr in pool.imap(_decode_chunk, itertools.chain(head, tasks)):
                    results.append(arr)
                    bar.update(len(arr))
    if not results:
        raise ValueError("no images to decode")
    for i, arr in enumerate(results):
        if arr.shape[1:] != results[0].shape[1:]:
            raise ValueError(
                f"image {names[i * _CHUNK]!r} has shape {arr.shape[1:]}, expected "
                f"{results[0].shape[1:]} like {names[0]!r}; pass image_size=(H, W) to resize"
            )
    return names, np.concatenate(results)
