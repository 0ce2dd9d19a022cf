"""Decoding many small encoded images (JPEG, PNG, ...) into one uint8 array, on idle cores.

Images are decoded with Pillow in chunks of 1,000. Fewer than 4,000 images are decoded in this
process, and so are larger inputs when no core is idle (:func:`default_num_workers`). Otherwise
they go to worker processes, one feeding thread each: a worker is a fresh
Python interpreter that loads only this file (numpy, Pillow and tqdm; not the sdcomplex
package, JAX or the caller's ``__main__``), so it starts in a fraction of a second, needs no
``if __name__ == "__main__":`` guard, and is safe in a multi-threaded JAX process (no
``fork``). The archive is read by the feeding threads while the workers decode, so reading
and decoding overlap. Requests and replies are length-prefixed binary frames on the worker's
stdin / stdout (no pickle). Output order always equals input order.

This module must keep importing nothing from the sdcomplex package.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

DECODER_VERSION = 2
"""Part of the cache key of decoded images: raised whenever the same bytes decode to other
pixels (2: 16-bit grayscale keeps its high byte instead of clipping), so no cache of the old
decoding is reused."""

_CHUNK = 1000  # images per task
_PARALLEL_MIN = 4 * _CHUNK  # fewer images than this are decoded in-process
_MODES = {"RGB": 3, "L": 1}
_GRAY16 = ("I;16", "I;16L", "I;16B", "I;16N")  # Pillow's 16-bit grayscale modes
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('sdcomplex_decode_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module._worker_main(sys.argv[2], sys.argv[3])\n"
)

_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
"""An object's default repr in an error message (Pillow names its ``<_io.BytesIO object at
0x...>``): a memory address, which says nothing about the file."""

Chunk = list[tuple[str, bytes]]


def _eight_bit(img: Image.Image) -> Image.Image:
    """``img`` with 8-bit pixels: 16-bit gray keeps its high byte (as Pillow reads 16-bit RGB
    PNGs; its own conversion clips everything above 255 to white), and 32-bit integer or float
    pixels are accepted only as whole numbers in 0..255 (no standard 8-bit scale is known)."""
    if img.mode in _GRAY16:
        return Image.fromarray((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8))
    if img.mode in ("I", "F"):
        wide = np.asarray(img)
        if wide.size and (wide.min() < 0 or wide.max() > 255 or (wide != np.round(wide)).any()):
            raise ValueError(
                f"{img.mode} (32-bit) pixels span {wide.min():g}..{wide.max():g}, not whole "
                "numbers in 0..255; convert the image to 8 bits"
            )
        return Image.fromarray(wide.astype(np.uint8))
    return img


def _decode_one(name: str, blob: bytes, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(blob)) as opened:
            img = _eight_bit(opened)
            img = img if img.mode == mode else img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except Exception as err:  # Pillow on malformed bytes: SyntaxError, struct.error, ...
        text = _OBJECT_REPR.sub("", str(err)).strip().splitlines()
        detail = type(err).__name__ + (f": {text[0].strip()}" if text else "")
        raise ValueError(f"cannot decode image {name!r}: {detail}") from None
    return arr[..., None] if arr.ndim == 2 else arr


def _decode_chunk(items: Chunk, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    images = [_decode_one(name, blob, mode, size) for name, blob in items]
    for (name, _), img in zip(items, images, strict=True):
        if img.shape != images[0].shape:
            raise ValueError(
                f"image {name!r} has shape {img.shape}, expected {images[0].shape} like "
                f"{items[0][0]!r}; pass image_size=(H, W) to resize all images"
            )
    return np.stack(images)


# ----------------------------------------------------------------------------- worker protocol


def _write_frame(stream: BinaryIO, parts: list[bytes]) -> None:
    stream.write(_U64.pack(sum(len(p) for p in parts)))
    for part in parts:
        stream.write(part)
    stream.flush()


def _read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(_U64.size)
    if not header:
        return None
    data = stream.read(_U64.unpack(header)[0]) if len(header) == _U64.size else b""
    if len(header) != _U64.size or len(data) != _U64.unpack(header)[0]:
        raise EOFError("truncated frame")
    return data


def _pack_chunk(items: Chunk) -> list[bytes]:
    parts = [_U32.pack(len(items))]
    for name, blob in items:
        encoded = name.encode("utf-8", "surrogateescape")  # file names need not be UTF-8
        parts += [_U32.pack(len(encoded)), encoded, _U32.pack(len(blob)), blob]
    return parts


def _unpack_chunk(data: bytes) -> Chunk:
    view, pos, items = memoryview(data), _U32.size, []
    for _ in range(_U32.unpack_from(data, 0)[0]):
        fields = []
        for _ in range(2):
            (length,) = _U32.unpack_from(data, pos)
            fields.append(bytes(view[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        items.append((fields[0].decode("utf-8", "surrogateescape"), fields[1]))
    return items


def _worker_main(mode: str, size_arg: str) -> None:
    """Loop of a worker process: decode chunks from stdin, reply on stdout."""
    size = tuple(int(v) for v in size_arg.split("x")) if size_arg else None
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while (request := _read_frame(inp)) is not None:
        try:
            arr = _decode_chunk(_unpack_chunk(request), mode, size)  # type: ignore[arg-type]
            _write_frame(out, [b"\x01", struct.pack("<4I", *arr.shape), arr.tobytes()])
        except ValueError as err:
            _write_frame(out, [b"\x00", str(err).encode()])


class _Worker:
    """One decoding subprocess; :meth:`decode` sends a chunk and waits for its array."""

    def __init__(self, mode: str, size: tuple[int, int] | None) -> None:
        size_arg = f"{size[0]}x{size[1]}" if size is not None else ""
        args = [sys.executable, "-c", _BOOTSTRAP, os.path.abspath(__file__), mode, size_arg]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def decode(self, items: Chunk) -> np.ndarray:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            _write_frame(self.proc.stdin, _pack_chunk(items))  # type: ignore[arg-type]
            reply = _read_frame(self.proc.stdout)  # type: ignore[arg-type]
        except (OSError, EOFError):
            reply = None
        if reply is None:
            code = self.proc.poll()
            raise RuntimeError(f"image decoding worker exited unexpectedly (exit code {code})")
        if reply[:1] == b"\x00":
            raise ValueError(reply[1:].decode())
        shape = struct.unpack_from("<4I", reply, 1)
        return np.frombuffer(reply, np.uint8, offset=17).reshape(shape)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _decode_parallel(
    tasks: Iterator[Chunk], mode: str, size: tuple[int, int] | None, workers: int, bar: tqdm
) -> list[np.ndarray]:
    numbered = enumerate(tasks)
    lock = threading.Lock()
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def feed(worker: _Worker) -> None:
        while not errors:
            with lock:  # the archive is read here, one thread at a time
                try:
                    index, chunk = next(numbered)
                except StopIteration:
                    return
                except BaseException as err:
                    errors.append(err)
                    return
            try:
                arr = worker.decode(chunk)
            except BaseException as err:
                errors.append(err)
                return
            with lock:
                results[index] = arr
                bar.update(len(arr))

    pool = [_Worker(mode, size) for _ in range(workers)]
    try:
        threads = [threading.Thread(target=feed, args=(w,), daemon=True) for w in pool]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for worker in pool:
            worker.close()
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(results))]


def default_num_workers() -> int:
    """Idle cores: usable cores minus the 1-minute load average, rounded, at least 1.

    Extra processes only help when cores are free: on a busy machine (measured on a shared
    2-core VM with a load of 4) two workers were slower than decoding in one process.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        idle = cores - os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        idle = cores
    return max(1, min(cores, round(idle)))


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_image_size(size: object) -> tuple[int, int] | None:
    """``size`` as an ``(H, W)`` pair of ints (None stays None).

    Raises:
        ValueError: not a pair of positive integers.
    """
    if size is None:
        return None
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(_is_int(d) and d >= 1 for d in size)
    ):
        raise ValueError(f"image size must be a pair (H, W) of positive integers, got {size!r}")
    height, width = size
    return (int(height), int(width))


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
        items: pairs, e.g. from :func:`~sdcomplex.data._archives.iter_members`; consumed lazily.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel); other modes are
            converted (16-bit pixels keep their high byte; 32-bit ones must be whole numbers
            in 0..255).
        size: ``(H, W)`` to resize every image to (bilinear); ``None`` requires all images to
            share one size.
        num_workers: worker processes; ``None`` uses the idle cores
            (:func:`default_num_workers`); 1 decodes in this process.
        quiet: hide the progress bar.
        desc: progress-bar label.

    Returns:
        ``(names, images)``: names in input order and uint8 ``(n, H, W, C)`` (shape
        ``(0, 0, 0, C)`` when there are no items).

    Raises:
        ValueError: an undecodable image or mixed sizes (the file is named), an unknown mode,
            a size that is not two positive integers, or fewer than one worker.

    Example:
        >>> import io, numpy as np
        >>> from PIL import Image
        >>> buf = io.BytesIO()
        >>> Image.new("RGB", (4, 3), (255, 0, 0)).save(buf, format="PNG")
        >>> names, x = decode_images([("red.png", buf.getvalue())], quiet=True)
        >>> x.shape, x[0, 0, 0].tolist()
        ((1, 3, 4, 3), [255, 0, 0])
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    size = check_image_size(size)
    if num_workers is not None and not (_is_int(num_workers) and num_workers >= 1):
        raise ValueError(f"num_workers must be an integer >= 1, got {num_workers!r}")
    workers = default_num_workers() if num_workers is None else int(num_workers)
    names: list[str] = []

    def chunks() -> Iterator[Chunk]:
        it = iter(items)
        while chunk := list(itertools.islice(it, _CHUNK)):
            names.extend(name for name, _ in chunk)
            yield chunk

    # (imported here: the decoding workers load this file alone, outside its package)
    from sdcomplex.data._progress import hide_progress

    tasks = chunks()
    head = list(itertools.islice(tasks, _PARALLEL_MIN // _CHUNK))
    with tqdm(desc=desc, unit="img", disable=hide_progress(quiet)) as bar:
        if workers == 1 or len(head) < _PARALLEL_MIN // _CHUNK or not sys.executable:
            results = []
            for chunk in itertools.chain(head, tasks):
                results.append(_decode_chunk(chunk, mode, size))
                bar.update(len(chunk))
        else:
            results = _decode_parallel(itertools.chain(head, tasks), mode, size, workers, bar)
    if not results:
        return names, np.zeros((0, 0, 0, _MODES[mode]), np.uint8)
    for i, arr in enumerate(results):
        if arr.shape[1:] != results[0].shape[1:]:
            raise ValueError(
                f"image {names[i * _CHUNK]!r} has shape {arr.shape[1:]}, expected "
                f"{results[0].shape[1:]} like {names[0]!r}; pass image_size=(H, W) to resize"
            )
    return names, np.concatenate(results)
