"""Reading config files: a JSON object, or a Python file whose ``get_config()`` returns one."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sdcomplex._io import read_json_file


def _line_in(file: Path, err: BaseException) -> int | None:
    """The line of ``file`` where ``err`` was raised (its deepest frame in that file)."""
    if isinstance(err, SyntaxError) and err.filename and Path(err.filename) == file:
        return err.lineno
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == file]
    return lines[-1] if lines else None


def config_error(file: Path, err: Exception | SystemExit) -> ValueError:
    """A one-line ``ValueError`` for an exception raised by the code of config file ``file``,
    naming the file and line (``config file F, line N: SyntaxError: ...``)."""
    line = _line_in(file.resolve(), err)
    where = f"config file {file}" + (f", line {line}" if line is not None else "")
    if isinstance(err, SyntaxError):
        detail = f"SyntaxError: {err.msg}"
    else:
        text = str(err).strip().splitlines()
        detail = type(err).__name__ + (f": {text[0]}" if text else "")
    return ValueError(f"{where}: {detail}")


def call_config(file: Path, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` (code of config file ``file``), any exception it raises turned into
    :func:`config_error`; a ``sys.exit()`` in it too (the command would otherwise end with that
    status, 0 included, having done nothing and said nothing)."""
    try:
        return function(*args)
    except (Exception, SystemExit) as err:  # the config file's own code: an input error
        raise config_error(file, err) from None


def import_file(file: Path, name: str, *, keep: bool) -> types.ModuleType:
    """Imports the Python file ``file`` as the module ``name``.

    The module is in ``sys.modules`` while it runs (so dataclasses and relative imports work);
    afterwards it stays there only with ``keep=True`` and only if it ran without error.

    Raises:
      ValueError: the file cannot be imported as a module, or running it raised (a syntax
        error, a failed import, ...: see :func:`config_error`, naming file and line).
    """
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    ok = False
    try:
        call_config(file, spec.loader.exec_module, module)
        ok = True
    finally:
        if not (keep and ok):
            sys.modules.pop(name, None)
    return module


def read_config_file(path: str | os.PathLike[str]) -> Any:
    """The raw contents of a config file.

    A ``.json`` file gives its decoded value; a ``.py`` file is imported (under a private module
    name, removed again from ``sys.modules``) and gives what its ``get_config()`` returns. The
    caller checks the type (a config object or a dict of fields).

    Args:
      path: the config file.

    Returns:
      The decoded JSON value or the return value of ``get_config()``.

    Raises:
      ValueError: missing file, an extension other than ``.json``/``.py``, malformed JSON
        (naming line and column), or a Python file that does not run (naming the line) or has
        no ``get_config`` function.
    """
    file = Path(path)
    if not file.is_file():
        state = "is not a file" if file.exists() else "does not exist"
        raise ValueError(f"config file {file} {state}")
    if file.suffix == ".json":
        return read_json_file(file, "config file")
    if file.suffix != ".py":
        raise ValueError(f"config file {file}: expected a .json or a .py file")
    name = f"_sdcomplex_config_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:8]}"
    module = import_file(file, name, keep=False)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ValueError(f"config file {file} defines no get_config() function")
    return call_config(file, get_config)


def read_config_object(path: str | os.PathLike[str], cls: type) -> Any:
    """What a config file holds for config class ``cls``: an instance of ``cls`` (returned by a
    Python file's ``get_config()``) or a dict of its fields (a JSON object, or a dict returned
    by ``get_config()``), not yet validated.

    Raises:
      ValueError: see :func:`read_config_file`.
      TypeError: the file holds something else (another config class, a list, ...).
    """
    file = Path(path)
    data = read_config_file(file)
    if isinstance(data, cls):
        return data
    if isinstance(data, Mapping):
        return dict(data)
    raise TypeError(
        f"{file}: expected a {cls.__name__} or a dict of its fields, got {type(data).__name__}"
    )
