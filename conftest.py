"""Pytest configuration shared by the tests and the doctests of the package.

``python -m pytest`` runs ``tests/`` and the ``Example:`` sections of every module of
``sdcomplex`` (``--doctest-modules``; flags in pyproject.toml: ``NUMBER`` compares a float to the
digits the example writes, so ``1.414214`` stands for ``sqrt(2)`` whatever the last bits). Every
test and doctest runs with NumPy's default print options set explicitly, so an example prints what a
reader sees in a fresh interpreter, whatever an earlier test or module changed.
"""

import os

import numpy as np
import pytest

# figures drawn by examples (and tests) need no display
os.environ.setdefault("MPLBACKEND", "Agg")

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
