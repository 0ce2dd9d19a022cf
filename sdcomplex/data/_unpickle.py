"""The restricted unpickler of data files: pickled dicts of numpy arrays, and nothing else.

Only the handful of globals numpy arrays need are resolved, each to a checked stand-in, so a
crafted pickle can neither run code nor make the unpickler allocate a size it only declares:
every counted length is checked against the data first (:func:`check_pickle_lengths`), and an
array is built only from bytes the pickle holds, of a plain numeric dtype.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from typing import Any, Literal

import numpy as np

from sdcomplex._io import check_declared_bytes

PICKLE_ERRORS = (Exception,)
"""Every exception of unpickling a data file is an input error (malformed pickle): the
restricted unpickler runs no code, so nothing else can raise."""


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: only :func:`_reconstruct` accepts it."""


_NDARRAY = _NdarrayType()


class _PendingDtype:
    """A numeric dtype being unpickled (``numpy.dtype(code, align, copy)`` then BUILD)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[1] not in "<>|=":
            raise pickle.UnpicklingError(f"unexpected dtype state {state!r:.80}")
        if any(v is not None for v in state[2:5]) or state[7] != 0:
            raise pickle.UnpicklingError("only plain numeric dtypes are allowed in a data file")
        if state[1] in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype(code: Any, align: Any = False, copy: Any = True) -> _PendingDtype:
    dtype = np.dtype(code) if isinstance(code, str) else None
    if dtype is None or dtype.kind not in "biufc" or dtype.fields or dtype.subdtype:
        raise pickle.UnpicklingError(f"dtype {code!r:.40} is not allowed in a data file")
    return _PendingDtype(dtype)


def _array(data: Any, dtype: Any, shape: Any, order: Literal["C", "F"]) -> np.ndarray:
    """The array of ``shape`` and ``dtype`` over the bytes ``data``: sizes are checked against
    the bytes the pickle actually holds before anything is allocated."""
    if not isinstance(dtype, _PendingDtype):
        raise pickle.UnpicklingError(f"array dtype {type(dtype).__name__} is not a dtype")
    shape = tuple(shape) if isinstance(shape, tuple | list) else (shape,)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise pickle.UnpicklingError(f"array shape {shape!r:.80} is not a tuple of sizes")
    if not isinstance(data, bytes | bytearray | memoryview | pickle.PickleBuffer):
        raise pickle.UnpicklingError(f"array data is a {type(data).__name__}, not bytes")
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.dtype.itemsize
    check_declared_bytes(n_bytes, "pickled array")
    buffer = memoryview(data).cast("B")
    if buffer.nbytes != n_bytes:
        raise pickle.UnpicklingError(
            f"array of shape {shape} needs {n_bytes} bytes, the pickle holds {buffer.nbytes}"
        )
    return np.frombuffer(buffer, dtype=dtype.dtype).reshape(shape, order=order)


class _PendingArray:
    """An ndarray being unpickled (``_reconstruct(ndarray, (0,), b"b")`` then BUILD)."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # the version number
        if not isinstance(state, tuple) or len(state) != 4:
            raise pickle.UnpicklingError(f"unexpected array state {type(state).__name__}")
        shape, dtype, fortran, data = state
        self.array = _array(data, dtype, shape, "F" if fortran else "C")


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _PendingArray:
    if subtype is not _NDARRAY or shape != (0,):
        raise pickle.UnpicklingError("unexpected array reconstruction in a data file")
    return _PendingArray()


def _frombuffer(data: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"unexpected array order {order!r:.20}")
    return _array(data, dtype, shape, order)


def _latin1(text: Any, encoding: Any) -> bytes:
    # Python 3 pickles bytes as _codecs.encode(text, "latin1") under protocol 2
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed for latin-1 text")
    return text.encode("latin-1")


# The only globals a pickled dict of numpy arrays refers to (numpy 1.x pickles name numpy.core,
# numpy 2.x pickles numpy._core), each mapped to a checked stand-in: sizes are compared with the
# data the pickle holds before any array is allocated.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1,
}


def _resolve(obj: Any, seen: dict[int, Any]) -> Any:
    """``obj`` with the stand-ins replaced by the arrays and dtypes they built."""
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise pickle.UnpicklingError("an array without data")
        return obj.array
    if isinstance(obj, _PendingDtype):
        return obj.dtype
    if isinstance(obj, _NdarrayType):
        raise pickle.UnpicklingError("a bare numpy.ndarray reference")
    if isinstance(obj, dict | list | tuple):
        if id(obj) in seen:
            raise pickle.UnpicklingError("a self-referencing container")
        seen[id(obj)] = obj
        if isinstance(obj, dict):
            out: Any = {_resolve(k, seen): _resolve(v, seen) for k, v in obj.items()}
        else:
            out = type(obj)(_resolve(v, seen) for v in obj)
        del seen[id(obj)]
        return out
    return obj


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed for dicts of numpy arrays.

    Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises
    ``pickle.UnpicklingError`` before it is called. Arrays are built by checked stand-ins:
    only plain numeric dtypes, and a declared shape must match the bytes the pickle holds (no
    array is allocated from a declared size alone).
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: not allowed in a data file"
            ) from None

    def load(self) -> Any:
        return _resolve(super().load(), {})


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (Python 2 strings kept as bytes).

    The opcodes are first scanned (:func:`check_pickle_lengths`), so the unpickler never
    allocates a length the data only declares.
    """
    check_pickle_lengths(data)
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
_LENGTH_FIELDS = {  # argument kind -> (bytes of its length field, signed)
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}


def check_pickle_lengths(data: bytes) -> None:
    """Walks the opcodes of a pickle without building anything and checks that every declared
    length (of a string, bytes or long) fits in the data that follows it: the C unpickler
    allocates a declared length before reading it.

    Raises:
        pickle.UnpicklingError: an unknown opcode, or a length beyond the end of the data.
    """
    pos, end = 0, len(data)
    while pos < end:
        op = _OPCODES.get(data[pos : pos + 1])
        if op is None:
            raise pickle.UnpicklingError(f"unknown opcode {data[pos : pos + 1]!r} at byte {pos}")
        pos += 1
        if op.name == "STOP":
            return
        arg = op.arg
        if arg is None:
            continue
        if arg.n >= 0:
            pos += arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:
            newline = data.find(b"\n", pos)
            pos = end + 1 if newline < 0 else newline + 1
            if op.name == "GLOBAL" or op.name == "INST":  # two lines: module and name
                newline = data.find(b"\n", pos)
                pos = end + 1 if newline < 0 else newline + 1
        else:
            width, signed = _LENGTH_FIELDS[arg.n]
            length = int.from_bytes(data[pos : pos + width], "little", signed=signed)
            pos += width
            if length < 0 or pos + length > end:
                raise pickle.UnpicklingError(
                    f"{op.name} at byte {pos - width - 1} declares {length} bytes, "
                    f"{max(end - pos, 0)} remain"
                )
            pos += length
        if pos > end:
            raise pickle.UnpicklingError(f"pickle data was truncated ({op.name})")
    raise pickle.UnpicklingError("pickle data was truncated (no STOP opcode)")
