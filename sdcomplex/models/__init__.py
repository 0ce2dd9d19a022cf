"""Model zoo: the teachers and students of the distillation experiments, in flax.linen.

Registry names (``available_models()``): ``lenet5`` / ``lenet5x<k>`` (``lenet5x8`` is the
paper's student), ``resnet20`` / ``resnet56`` / ``resnet110`` (CIFAR ResNets, option-A
shortcuts), ``mobilenet_v3`` / ``mobilenet_v3_35`` / ``mobilenet_v3_125`` (MobileNet-V3 Large,
stem stride 1 for small images), and the small ``mlp`` and ``cnn`` for fast tests.

Conventions every model follows (the NTK code and the trainer rely on them):

* ``model.apply(variables, x, train=False) -> logits (batch, num_classes)`` float32 (for
  float32 inputs; float64 under ``jax_enable_x64`` with float64 inputs and parameters).
  Inputs are float NHWC images or ``(batch, length[, channels])`` 1-D signals.
* ``train=False`` is a pure function of ``(variables, x)``: BatchNorm uses its running
  averages, there is no dropout and no mutable collection; an example's logits do not depend
  on the rest of the batch. ``train=True`` normalises with batch statistics and needs
  ``mutable=['batch_stats']``, returning ``(logits, {'batch_stats': ...})``.
* Parameters live only in ``nn.Dense``, ``nn.Conv`` and ``nn.BatchNorm`` layers; activations
  are ``jax.nn`` functions, pooling a non-overlapping max over a reshaped view (same values
  as ``nn.max_pool``, cheaper gradient) or means.
* Initialisation is a deterministic function of the PRNG key.
* LeNet-5's convolutions are ``nn.Conv(..., conv_general_dilated=patch_conv)``: on CPU the
  output and weight gradient are patch-matrix products (faster than XLA's CPU convolution
  gradients for these shapes), elsewhere ``lax.conv_general_dilated``; same parameters.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from sdcomplex.models import abstract_variables, create_model, count_params
    >>> model = create_model("resnet20", num_classes=10)
    >>> # shapes only, instantly; init_variables(model, jax.random.PRNGKey(0), (32, 32, 3))
    >>> # computes the values (slower on a CPU: XLA compiles each initialiser)
    >>> variables = abstract_variables(model, (32, 32, 3))
    >>> count_params(variables["params"])
    269722
    >>> x = jnp.zeros((2, 32, 32, 3))
    >>> logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    >>> logits.shape, logits.dtype
    ((2, 10), dtype('float32'))
    >>> jac = jax.jacrev(lambda p, x: model.apply({**variables, "params": p}, x))
"""

from sdcomplex.models._conv import patch_conv
from sdcomplex.models._lenet import LeNet5
from sdcomplex.models._mobilenet import MobileNetV3
from sdcomplex.models._registry import (
    ModelSpec,
    abstract_variables,
    available_models,
    count_params,
    create_model,
    init_variables,
    model_spec,
)
from sdcomplex.models._resnet import BasicBlock, CifarResNet
from sdcomplex.models._small import MLP, SmallCNN

__all__ = [
    "MLP",
    "BasicBlock",
    "CifarResNet",
    "LeNet5",
    "MobileNetV3",
    "ModelSpec",
    "SmallCNN",
    "abstract_variables",
    "available_models",
    "count_params",
    "create_model",
    "init_variables",
    "model_spec",
    "patch_conv",
]
