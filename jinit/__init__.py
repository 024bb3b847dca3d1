"""jinit: weight initializers for JAX as pure functions, with Flax adapters.

Every initializer is ``init(key, shape, fan_in, fan_out, *, hyper..., dtype)``;
see :mod:`jinit._src.initializers`. ``jinit.linen`` and ``jinit.nnx`` (need flax)
adapt them to Flax's ``(key, shape, dtype)`` signature and re-initialize whole
models with each layer's true fans (``jinit.flax`` is kept as an alias).
"""

from jinit._src.einsum import einsum_fans as einsum_fans
from jinit._src.fans import LAYOUTS as LAYOUTS
from jinit._src.fans import compute_fans as compute_fans
from jinit._src.gains import NONLINEARITIES as NONLINEARITIES
from jinit._src.gains import calculate_gain as calculate_gain
from jinit._src.gains import gain_for as gain_for
from jinit._src.gains import second_moment as second_moment
from jinit._src.initializers import Initializer as Initializer
from jinit._src.initializers import complex_truncated_std as complex_truncated_std
from jinit._src.initializers import constant as constant
from jinit._src.initializers import delta_orthogonal as delta_orthogonal
from jinit._src.initializers import dirac as dirac
from jinit._src.initializers import eye as eye
from jinit._src.initializers import glorot_normal as glorot_normal
from jinit._src.initializers import glorot_uniform as glorot_uniform
from jinit._src.initializers import he_normal as he_normal
from jinit._src.initializers import he_uniform as he_uniform
from jinit._src.initializers import kaiming_normal as kaiming_normal
from jinit._src.initializers import kaiming_uniform as kaiming_uniform
from jinit._src.initializers import lecun_normal as lecun_normal
from jinit._src.initializers import lecun_uniform as lecun_uniform
from jinit._src.initializers import normal as normal
from jinit._src.initializers import ones as ones
from jinit._src.initializers import orthogonal as orthogonal
from jinit._src.initializers import sparse as sparse
from jinit._src.initializers import torch_linear_default as torch_linear_default
from jinit._src.initializers import truncated_normal as truncated_normal
from jinit._src.initializers import truncated_std as truncated_std
from jinit._src.initializers import uniform as uniform
from jinit._src.initializers import variance_scaling as variance_scaling
from jinit._src.initializers import xavier_normal as xavier_normal
from jinit._src.initializers import xavier_uniform as xavier_uniform
from jinit._src.initializers import zeros as zeros
from jinit._src.registry import INITIALIZERS as INITIALIZERS
from jinit._src.registry import get_initializer as get_initializer

__version__ = "0.1.0"

# Imported on first use: flax, linen, nnx, diagnostics, lsuv, residual and mup need the flax
# package.
_LAZY_SUBMODULES = ("flax", "linen", "nnx", "sharding", "diagnostics", "lsuv", "residual", "mup",
                    "theory", "equinox", "haiku", "recipes", "learned")


# The optional packages a lazy submodule may need, and the extra that installs each.
_EXTRAS = {"flax": "flax", "optax": "experiments", "matplotlib": "experiments",
           "equinox": "equinox", "haiku": "haiku"}


def __getattr__(name):
  if name in _LAZY_SUBMODULES:
    import importlib
    try:
      return importlib.import_module(f"jinit.{name}")
    except ModuleNotFoundError as e:
      missing = (e.name or "").partition(".")[0]
      if missing not in _EXTRAS:
        raise
      raise ModuleNotFoundError(
          f"jinit.{name} needs the {missing} package: pip install 'jinit[{_EXTRAS[missing]}]'",
          name=e.name) from None
  raise AttributeError(f"module 'jinit' has no attribute {name!r}")


__all__ = [
    "INITIALIZERS", "Initializer", "LAYOUTS", "NONLINEARITIES", "calculate_gain",
    "complex_truncated_std", "compute_fans", "constant", "delta_orthogonal", "dirac", "einsum_fans",
    "eye", "gain_for",
    "get_initializer", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform",
    "kaiming_normal", "kaiming_uniform", "lecun_normal", "lecun_uniform", "normal", "ones",
    "orthogonal", "second_moment", "sparse", "torch_linear_default", "truncated_normal",
    "truncated_std", "uniform", "variance_scaling", "xavier_normal", "xavier_uniform", "zeros",
]
