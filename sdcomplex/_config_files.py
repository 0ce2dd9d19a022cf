"""Reading config files: a JSON object, or a Python file whose ``get_config()`` returns one."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any


def import_file(file: Path, name: str, *, keep: bool) -> types.ModuleType:
    """Imports the Python file ``file`` as the module ``name``.

    The module is in ``sys.modules`` while it runs (so dataclasses and relative imports work);
    afterwards it stays there only with ``keep=True`` and only if it ran without error.

    Raises:
      ValueError: the file cannot be imported as a module.
    """
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    ok = False
    try:
        spec.loader.exec_module(module)
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
      ValueError: missing file, an extension other than ``.json``/``.py``, malformed JSON, or a
        Python file without a ``get_config`` function.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"config file {file} does not exist")
    if file.suffix == ".json":
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"config file {file} is not valid JSON: {err}") from None
    if file.suffix != ".py":
        raise ValueError(f"config file {file}: expected a .json or a .py file")
    name = f"_sdcomplex_config_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:8]}"
    module = import_file(file, name, keep=False)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ValueError(f"config file {file} defines no get_config() function")
    return get_config()
