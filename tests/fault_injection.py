"""Damaging files the way disks and killed processes do, for the fault-injection tests."""

from pathlib import Path

import numpy as np

DAMAGE_MODES = ("flip", "truncate")


def damage_file(path: Path, mode: str, rng: np.random.Generator) -> None:
    """Changes one byte (XOR with a random non-zero value) or truncates at a random length."""
    data = bytearray(path.read_bytes())
    if mode == "flip":
        data[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
    elif mode == "truncate":
        del data[int(rng.integers(len(data))) :]
    else:
        raise ValueError(f"mode must be one of {DAMAGE_MODES}, got {mode!r}")
    path.write_bytes(bytes(data))
