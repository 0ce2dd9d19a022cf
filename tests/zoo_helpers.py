"""Small instances of the model zoo's deep models for tests that compile their derivatives.

A MobileNet-V3 of the zoo with three inverted-residual blocks instead of the eleven of the Small
table: the same module code, and a block of every kind the tables hold (squeeze-excite or not,
ReLU or hard-swish, 3x3 or 5x5 depthwise, stride 2 or a residual connection, with and without
the 1x1 expansion), so that every layer type is traced, differentiated and compiled, at a
fraction of the cost of the whole table.
"""

import pytest

from sdcomplex.models import _mobilenet as mobilenet
from sdcomplex.models import create_model

#: Three blocks of the paper's tables (unscaled channels; Small's first two, then a residual
#: squeeze-excite hard-swish 5x5 block with an expansion). At multiplier 0.35 on 8x8 inputs:
#: 8 -> 4x4 -> 2x2 -> 2x2.
SHALLOW_BLOCKS = (
    mobilenet.BlockSpec(16, 3, 16, 16, True, False, 2),  # SE, ReLU, no expansion, stride 2
    mobilenet.BlockSpec(16, 3, 72, 24, False, False, 2),  # expansion, ReLU, stride 2
    mobilenet.BlockSpec(24, 5, 96, 24, True, True, 1),  # expansion, SE, h-swish, 5x5, residual
)


def shallow_mobilenet(monkeypatch: pytest.MonkeyPatch, num_classes: int, **fields):
    """``create_model("mobilenet_v3_35", num_classes, variant="shallow", **fields)``, the
    variant ``"shallow"`` being :data:`SHALLOW_BLOCKS` (registered for the calling test only,
    through ``monkeypatch``)."""
    monkeypatch.setitem(mobilenet._VARIANTS, "shallow", (SHALLOW_BLOCKS, 1024))
    return create_model("mobilenet_v3_35", num_classes, variant="shallow", **fields)
