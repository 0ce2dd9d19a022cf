"""Whether data loading shows progress bars: a loader's own ``quiet``, or a quiet caller's.

A quiet run (``train(..., quiet=True)``, ``sdcomplex train --quiet``, ...) loads its data
through :func:`~sdcomplex.data.load_dataset` and the loaders, whose ``quiet`` flags it does not
set one by one: it loads inside :func:`quiet_loading`, and every progress bar of data loading
(decoding images, downloading an archive) asks :func:`hide_progress`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("sdcomplex_quiet_loading")


@contextlib.contextmanager
def quiet_loading(quiet: bool = True) -> Iterator[None]:
    """Inside the block (in this thread or task), data loading shows no progress bar if
    ``quiet``; ``quiet=False`` changes nothing (an enclosing quiet block stays quiet).

    Example:
        >>> with quiet_loading():
        ...     hide_progress(False)
        True
        >>> hide_progress(False)
        False
    """
    token = _QUIET.set(bool(quiet) or _QUIET.get(False))
    try:
        yield
    finally:
        _QUIET.reset(token)


def hide_progress(quiet: bool) -> bool:
    """Whether a progress bar of data loading is hidden: its own ``quiet``, or inside
    :func:`quiet_loading`."""
    return bool(quiet) or _QUIET.get(False)
