"""Library warnings on the command line: one line each, ``sdcomplex <command>: warning: ...``."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def one_line_warnings(command: str) -> Iterator[None]:
    """Within the block, every warning is printed as one line on stderr (no source line).

    Example:
        >>> with one_line_warnings("train"):  # doctest: +SKIP
        ...     warnings.warn("checkpoint epoch_3 not used: ...")
        sdcomplex train: warning: checkpoint epoch_3 not used: ...
    """

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        text = " ".join(str(message).split())
        print(f"sdcomplex {command}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
