"""The processes of a distributed reproduction (``sdcomplex reproduce --distributed``): who runs
what, and how the others wait.

Every process runs the runner over the same plan. The training stages (the teacher and the
students, ``Stage.every_process``) run in every process together, data-parallel on the run's
placement; every other stage (kernels, sweeps, bound, tables, claims, figures, the C3 study's
one-device groups) runs in process 0 alone, on its own devices
(:func:`~sdcomplex.placement.this_process_only`), while the others wait. Process 0 alone reads
and writes the output directory's bookkeeping (config, markers, results) and decides whether a
training stage runs; the others follow its decision (:func:`~sdcomplex.placement.share_json`).
The output directory must be on a file system every process sees (checked first, by
:func:`join`).

Waiting. An analysis stage may take hours while the others wait, and a collective waits at
most 30 minutes on CPUs (XLA's collectives time out), so the others do not wait in one: at each
point where the processes meet, process 0 first writes a token file
``DIR/processes/<session>/<point>.json`` and the others wait for it (polling the shared file
system), then they agree on process 0's decision in a short collective. When process 0 fails
with an error of its own (in a stage it runs alone), it writes the error in the session's end
token and every other process stops with that error. A process that dies (``kill -9``, a lost
node) stops the others through JAX's distributed runtime: its heartbeats stop (or process 0's
coordinator goes away) and JAX ends each survivor with "Terminating process because the JAX
distributed service detected fatal errors" within the heartbeat timeout of
:func:`~sdcomplex.placement.start_distributed` (immediately when process 0 dies). A survivor
inside a training stage sees its collective fail first and raises :class:`ProcessStopped`
(:func:`collective_failed`) before JAX ends it.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import jax

from sdcomplex._io import atomic_write_json, read_json_file
from sdcomplex.placement import gather_json, share_json

PROCESSES_DIR = "processes"
"""The output directory's folder of the tokens of distributed runs (bookkeeping)."""

SEE_SECONDS = 60.0
"""How long the other processes look for process 0's first token before calling the output
directory unshared (a network file system may show a new file late)."""

POLL_SECONDS = 0.5
"""How often a waiting process looks for the next token."""

END = "end"


class ProcessStopped(ConnectionError):
    """Another process of a distributed reproduction stopped: process 0 with an error (the
    others stop with it), or a process whose collective with this one failed."""


@dataclasses.dataclass(frozen=True)
class Processes:
    """The processes of one invocation of the runner.

    Attributes:
        index: this process's index (0 writes the files and decides).
        count: the number of processes (1: nothing to coordinate).
        session: ``DIR/processes/<id>``, this invocation's token folder (None with one
            process).

    Example:
        >>> one = Processes()  # a one-process run: nothing to wait for or agree on
        >>> one.first, one.meet("0001", "run")
        (True, 'run')
    """

    index: int = 0
    count: int = 1
    session: Path | None = None

    @property
    def first(self) -> bool:
        """True in process 0, which writes the output directory's files and decides."""
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.count > 1

    def meet(self, point: str, value: Any) -> Any:
        """Process 0's ``value`` on every process, once every process has reached ``point``
        (a name unique within the invocation); ``value`` itself with one process.

        Raises:
            ProcessStopped: process 0 stopped with an error before reaching ``point``.
        """
        if not self.distributed:
            return value
        self._post_or_wait(point)
        return share_json(value)

    def finish(self, error: BaseException | None) -> None:
        """The end of the invocation: process 0 posts how it ended (``error``: what it stopped
        with, if it stopped in a stage it ran alone) and, after a clean end, removes the
        session's tokens once every process has seen them; the others wait for it.

        Raises:
            ProcessStopped: in the other processes, when process 0 ended with an error.
        """
        if not self.distributed:
            return
        assert self.session is not None
        if self.first:
            message = None if error is None else _error_text(error)
            atomic_write_json(self.session / f"{END}.json", {"error": message})
            if error is not None:
                return  # the others read the end token and stop; process 0 raises its error
        else:
            self._wait_for(END)
        share_json(None)  # every process has seen the end token
        if self.first:
            shutil.rmtree(self.session, ignore_errors=True)
            _remove_if_empty(self.session.parent)

    def _post_or_wait(self, point: str) -> None:
        assert self.session is not None
        if self.first:
            atomic_write_json(self.session / f"{point}.json", {"point": point})
        else:
            self._wait_for(point)

    def _wait_for(self, point: str) -> None:
        """Waits for process 0's token ``point`` (no time limit: JAX's runtime ends this process
        if process 0 dies); raises when process 0 posted an error instead."""
        assert self.session is not None
        token, end = self.session / f"{point}.json", self.session / f"{END}.json"
        while not token.is_file():
            if end.is_file():
                _raise_if_stopped(end)
                if point != END:
                    raise ProcessStopped(f"process 0 ended before reaching {point}")
            time.sleep(POLL_SECONDS)
        if point == END:
            _raise_if_stopped(end)


def collective_failed(stage: str, error: BaseException) -> ProcessStopped:
    """The error of a process whose stage, run by every process together, failed in JAX's
    runtime (a collective with a process that has stopped, typically)."""
    return ProcessStopped(
        f"stage {stage} failed in JAX's runtime; has another process of the run stopped? "
        f"{_error_text(error)}"
    )


def _error_text(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _raise_if_stopped(end: Path) -> None:
    message = read_json_file(end, "end token").get("error")
    if message is not None:
        raise ProcessStopped(f"process 0 stopped: {message}")


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:  # not empty (another session's tokens) or already gone
        pass


def join(root: Path, *, first_error: str | None) -> Processes:
    """The processes of this invocation, after checking that they all see ``root``.

    Process 0 has prepared ``root`` (or failed to: ``first_error``, which every process then
    raises); it writes a new session's first token in ``root/processes/``, removing the tokens
    of earlier invocations, and every other process looks for that token in its own view of
    ``root`` for up to :data:`SEE_SECONDS`.

    Args:
        root: the output directory as this process names it (absolute).
        first_error: process 0's error preparing ``root`` (ignored in the other processes).

    Returns:
        :class:`Processes` (one process: nothing checked).

    Raises:
        ValueError: process 0's ``first_error``, or some process does not see process 0's
            token (the output directory is not on a shared file system), on every process.
    """
    if jax.process_count() == 1:
        if first_error is not None:
            raise ValueError(first_error)
        return Processes()
    index, count = jax.process_index(), jax.process_count()
    session_id = None
    if index == 0 and first_error is None:
        folder = root / PROCESSES_DIR
        if folder.is_dir():  # the tokens of earlier (ended or killed) invocations
            shutil.rmtree(folder)
        session_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        atomic_write_json(folder / session_id / "start.json", {"root": str(root)})
    shared = share_json({"error": first_error, "session": session_id})
    if shared["error"] is not None:
        raise ValueError(shared["error"])
    session = root / PROCESSES_DIR / shared["session"]
    seen = index == 0 or _appears(session / "start.json", SEE_SECONDS)
    blind = [i for i, ok in enumerate(gather_json(seen)) if not ok]
    if blind:
        raise ValueError(
            f"process(es) {', '.join(map(str, blind))} of {count} do not see the output "
            f"directory {root} of process 0: --distributed needs an output directory on a file "
            "system every process shares (e.g. the cluster's shared home or scratch)"
        )
    return Processes(index=index, count=count, session=session)


def _appears(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if os.path.isfile(path):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
