"""Exit statuses of commands stopped by a signal: ``128 + signal number``.

A command that catches SIGINT or SIGTERM, saves its work and returns must still tell the shell
it was stopped, as if the signal had killed it: 130 for SIGINT, 143 for SIGTERM, so that
``sdcomplex train ... && sdcomplex distill ...`` does not carry on with an unfinished teacher.
One implementation for every command (``train``, ``distill``; ``reproduce`` should use it too).
"""

from __future__ import annotations

import signal
import sys
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
