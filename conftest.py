"""Pytest configuration shared by the tests and the doctests of the package.

``python -m pytest`` runs ``tests/`` and the ``Example:`` sections of every module of
``sdcomplex`` (``--doctest-modules``; flags in pyproject.toml: ``NUMBER`` compares a float to the
digits the example writes, so ``1.414214`` stands for ``sqrt(2)`` whatever the last bits). Every
test and doctest runs with NumPy's default print options set explicitly, so an example prints what a
reader sees in a fresh interpreter, whatever an earlier test or module changed.

Every compilation of the session goes through one persistent JAX compilation cache, in a
temporary folder removed at the end (unless ``$JAX_COMPILATION_CACHE_DIR`` names one already):
the tests build the same tiny models many times, in this process and in the CLI subprocesses,
which inherit the environment (one cache per worker under pytest-xdist's ``-n``). A cached
executable is the one XLA would compile again, so
results are the same with and without it.

Decoded data sets are cached in ``$SDCOMPLEX_TEST_SESSION/cache`` (``$SDCOMPLEX_CACHE``), shared
by the workers (cache files are written atomically), so no test writes to the user's cache.

Work that several xdist workers need (the tiny experiment's finished run,
``tests/reproduce_helpers.py``) is done once in the session's folder ``$SDCOMPLEX_TEST_SESSION``,
a temporary folder made by the controlling process (inherited by the workers) and removed at the
end.
"""

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

# figures drawn by examples (and tests) need no display
os.environ.setdefault("MPLBACKEND", "Agg")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # set before JAX is first imported
    _cache = tempfile.mkdtemp(prefix="sdcomplex-test-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["SDCOMPLEX_TEST_JAX_CACHE"] = _cache
    # cache every compilation, however small or quick
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
if "SDCOMPLEX_TEST_SESSION" not in os.environ:  # the controlling process: before the workers
    _session = tempfile.mkdtemp(prefix="sdcomplex-test-session-")
    atexit.register(shutil.rmtree, _session, ignore_errors=True)
    os.environ["SDCOMPLEX_TEST_SESSION"] = _session
# decoded data sets (``mnist1d-*.npz``, image folders, ...) go to the session's folder, never to
# the user's ~/.cache/sdcomplex, for every test, doctest and CLI subprocess (which inherit it);
# a test of the cache's location sets or removes the variable itself
os.environ["SDCOMPLEX_CACHE"] = os.path.join(os.environ["SDCOMPLEX_TEST_SESSION"], "cache")
if "SDCOMPLEX_TEST_JAX_CACHE" in os.environ and "PYTEST_XDIST_WORKER" in os.environ:
    # one cache per pytest-xdist worker: JAX writes entries in place, so a worker must never
    # read an entry another one is still writing
    _worker_cache = os.path.join(
        os.environ["SDCOMPLEX_TEST_JAX_CACHE"], os.environ["PYTEST_XDIST_WORKER"]
    )
    os.makedirs(_worker_cache, exist_ok=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _worker_cache


# experiment files that import a sibling experiment relatively: the experiment loader imports
# them as a package (sdcomplex.reproduce.load_experiment), --doctest-modules cannot
collect_ignore = ["tests/reproduce/tiny_distributed_experiment.py"]


NUMPY_DEFAULT_PRINT_OPTIONS = {
    "precision": 8,
    "threshold": 1000,
    "edgeitems": 3,
    "linewidth": 75,
    "suppress": False,
    "nanstr": "nan",
    "infstr": "inf",
    "sign": "-",
    "floatmode": "maxprec",
    "legacy": False,
}


@pytest.fixture(autouse=True)
def _default_print_options():
    """NumPy's default print options (JAX arrays print through them) around each test and
    doctest."""
    with np.printoptions(**NUMPY_DEFAULT_PRINT_OPTIONS):
        yield
