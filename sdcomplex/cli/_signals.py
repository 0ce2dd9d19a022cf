"""Exit statuses of commands stopped by a signal: ``128 + signal number``.

A command that catches SIGINT or SIGTERM, saves its work and returns must still tell the shell
it was stopped, as if the signal had killed it: 130 for SIGINT, 143 for SIGTERM, so that
``sdcomplex train ... && sdcomplex distill ...`` does not carry on with an unfinished teacher.
One implementation for every command (``train``, ``distill``; ``reproduce`` should use it too).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def signal_exit_status(signum: int) -> int:
    """``128 + signum``: 130 for SIGINT, 143 for SIGTERM (the shell's convention).

    Example:
        >>> signal_exit_status(signal.SIGTERM)
        143
    """
    return 128 + int(signum)


def report_stopped(out: str | Path, result: Any) -> int:
    """The exit status of a run that returned a ``TrainResult``, with a line on stderr if a
    signal stopped it: 0 when no signal came, else ``128 + signal``.

    Args:
        out: the run directory, named in the message.
        result: a :class:`~sdcomplex.train.TrainResult` (``status``, ``epoch``, ``signal``).
    """
    signum = result.signal
    if signum is None:
        return 0
    name = signal.Signals(signum).name
    if result.status == "preempted":
        print(
            f"{out}: stopped by {name} after epoch {result.epoch} (checkpoint saved); run the "
            "same command again to resume",
            file=sys.stderr,
        )
    else:  # the signal came during the last epoch, which finished
        message = f"{out}: {name} received; the run had finished (epoch {result.epoch})"
        print(message, file=sys.stderr)
    return signal_exit_status(signum)


@contextmanager
def redelivered_interrupts() -> Iterator[None]:
    """Within the block, a Ctrl-C that Python raised where it cannot propagate is delivered
    again.

    Python raises ``KeyboardInterrupt`` in whatever code runs when SIGINT arrives; in a garbage
    collector callback (JAX registers one) or a ``__del__`` it is printed as "Exception ignored
    in ..." with a traceback and dropped, and the command ran on to its end and exited 0. The
    hook of unraisable exceptions has SIGINT sent again instead, a moment later from another
    thread (sent at once, its handler would run in the hook), so that the main thread raises it
    in ordinary code (or the training loop's handler records it).
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
