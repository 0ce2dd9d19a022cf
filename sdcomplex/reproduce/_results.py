"""Result files: CSV and JSON written atomically, read back, and Markdown tables."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdcomplex._io import atomic_write_json, atomic_write_text, parse_csv_value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def write_csv(
    path: str | os.PathLike[str], rows: Sequence[dict[str, Any]], columns: Sequence[str]
) -> Path:
    """Writes ``rows`` (dicts) as CSV with a header; floats at full precision (``repr``).

    The file belongs to a stage that has not finished, so an existing (partial) file of an
    interrupted run is replaced.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return atomic_write_text(path, buffer.getvalue(), overwrite=True)


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a CSV written by :func:`write_csv`, numbers and booleans parsed."""
    with open(path, encoding="utf-8", newline="") as fh:
        return [{k: parse_csv_value(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomic JSON write of a stage's result (replacing a partial file of an interrupted run)."""
    return atomic_write_json(path, obj, overwrite=True)


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON result file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        header: column titles.
        rows: cells (converted with ``str``).
        align: one letter per column, ``l``, ``r`` or ``c`` (default: first column left, the
            others right).
    """
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std of no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when undefined (fewer than three
    points, a constant sequence, or a value that is NaN or infinite).

    Raises:
        ValueError: ``x`` and ``y`` of different lengths.
    """
    if len(x) != len(y):
        raise ValueError(f"spearman needs sequences of one length, got {len(x)} and {len(y)}")
    if len(x) < 3 or not all(math.isfinite(v) for v in (*x, *y)):
        return None

    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2.0
            i = j + 1
        return out

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)
