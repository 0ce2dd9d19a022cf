"""All claims C1-C5 with one teacher: the union of the three experiments at the same scale.

The README's main command runs its quick scale (MNIST-1D, CNN teacher, MLP student). The
complexity sweep also uses the final NTK of the offline- and online-KD students (tau = 4),
which the C3/C4 students provide. At the smoke and quick scales it also runs the C3 study of
``c3_study`` (student capacities x teacher recipes, paired intervals, verdict rules stated
there), whose cosine recipe is this teacher; at the images and paper scales the study is left
out (None): it multiplies those students by the capacities and recipes (run ``c3_study``).
"""

from __future__ import annotations

from sdcomplex.reproduce import ExperimentConfig

from ._base import experiment
from .c1_c2_complexity import complexity_spec
from .c3_c4_online_kd import distillation_spec
from .c3_study import study_spec
from .c5_margin_bound import bound_spec

DESCRIPTION = "every claim (C1-C5) with one teacher: sweeps, accuracy table, diagnostics, bound"


def get_config(scale: str) -> ExperimentConfig:
    return experiment(
        "all",
        scale,
        DESCRIPTION,
        ("C1", "C2", "C3", "C4", "C5"),
        complexity=complexity_spec(scale, trained=("none", "offline_t4", "online_t4")),
        distillation=distillation_spec(scale),
        bound=bound_spec(scale),
        study=study_spec(scale) if scale in ("smoke", "quick") else None,
    )
