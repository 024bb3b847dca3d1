"""Implementation of the Flax-model parts of :mod:`jinit.residual`; re-exported there."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from jinit._src import validation


def _check_add(residual: jax.Array, branch: jax.Array) -> None:
  if jnp.shape(residual) != jnp.shape(branch):
    raise ValueError(f"residual and branch must have the same shape, got "
                     f"{jnp.shape(residual)} and {jnp.shape(branch)}")


class ResidualGate(nnx.Module):
  r"""A learned scalar gate on a residual branch: ``residual + alpha * branch`` (nnx).

  .. math:: x_{l+1} = x_l + \alpha_l F_l(x_l)

  * ReZero (Bachlechner et al. 2020, https://arxiv.org/abs/2003.04887) and SkipInit
    (De & Smith 2020, https://arxiv.org/abs/2002.10444): ``init_value=0``, so every
    block is the identity at init and the signal (and gradient) passes unchanged
    through any depth; without normalization.
  * Fixup's multiplier (Zhang et al. 2019, https://arxiv.org/abs/1901.09321):
    ``init_value=1``.

  Args:
    init_value: alpha at init (0 for ReZero/SkipInit, 1 for Fixup).
    param_dtype: dtype of alpha.

  The parameter is ``alpha`` (shape ``()``); :func:`rezero_rules` re-initializes it.
  """

  def __init__(self, init_value: float = 0.0, *, param_dtype: DTypeLike = jnp.float32):
    init_value = validation.check_real(init_value, "init_value")
    param_dtype = validation.check_float_dtype(param_dtype)
    self.alpha = nnx.Param(jnp.asarray(init_value, param_dtype))

  def __call__(self, residual: jax.Array, branch: jax.Array) -> jax.Array:
    """``residual + alpha * branch`` (same shapes)."""
    _check_add(residual, branch)
    return residual + self.alpha[...] * branch


class ScalarBias(nnx.Module):
  """Fixup's scalar bias ``x + b``, b initialized to 0 (nnx).

  Fixup inserts one before each convolution, linear layer and activation of a branch
  (Zhang et al. 2019, https://arxiv.org/abs/1901.09321, section 3).

  Args:
    param_dtype: dtype of b.
  """

  def __init__(self, *, param_dtype: DTypeLike = jnp.float32):
    self.bias = nnx.Param(jnp.zeros((), validation.check_float_dtype(param_dtype)))

  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.bias[...]


class LinenResidualGate(nn.Module):
  r"""``residual + alpha * branch`` with a learned scalar alpha (linen).

  Same as :class:`ResidualGate`: ``init_value=0`` is ReZero/SkipInit, ``init_value=1``
  Fixup's multiplier. The parameter is ``alpha`` (shape ``()``).

  .. math:: x_{l+1} = x_l + \alpha_l F_l(x_l)

  References: https://arxiv.org/abs/2003.04887, https://arxiv.org/abs/2002.10444
  """

  init_value: float = 0.0
  param_dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, residual: jax.Array, branch: jax.Array) -> jax.Array:
    """``residual + alpha * branch`` (same shapes)."""
    value = validation.check_real(self.init_value, "init_value")
    _check_add(residual, branch)
    alpha = self.param("alpha", lambda _, dtype: jnp.asarray(value, dtype),
                       validation.check_float_dtype(self.param_dtype))
    return residual + alpha * branch


class LinenScalarBias(nn.Module):
  """Fixup's scalar bias ``x + b``, b initialized to 0 (linen). The parameter is ``bias``."""

  param_dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b = self.param("bias", lambda _, dtype: jnp.zeros((), dtype),
                   validation.check_float_dtype(self.param_dtype))
    return x + b
