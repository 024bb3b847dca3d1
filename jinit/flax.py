"""Flax adapters: jinit initializers as Flax ``(key, shape, dtype)`` initializers.

Flax layers call ``kernel_init(key, shape, dtype)`` with kernels laid out as
``(in, out)`` (Dense) or ``(*window, in, out)`` (Conv), and ``bias_init(key,
(out,), dtype)``: a bias init never sees the layer's fan_in. This module joins the
two worlds in one place:

* :func:`kernel_init` computes the fans from the shape with a named layout
  (default ``"flax"``: Dense and Conv kernels alike) and calls the jinit function.
* :func:`bias_init` binds fans you know (nnx layers know ``in_features``).
* :class:`Dense` (linen) gives its bias init the kernel's fan_in, so PyTorch's
  default ``nn.Linear`` init is one line (impossible with ``nn.Dense``, flax #3019).
* :func:`nnx_linear` builds a plain ``flax.nnx.Linear`` the same way.

Needs the ``flax`` package (``pip install jinit[flax]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes as flax_dtypes

from jinit._src import fans as fans_lib
from jinit._src import initializers as inits
from jinit._src import validation

FlaxInitializer = Callable[..., jax.Array]


def _check_init(init: Any, name: str) -> None:
  if not callable(init):
    raise TypeError(f"{name} must be a jinit initializer (callable), got {init!r}")


def kernel_init(init: inits.Initializer, *, layout: str | None = "flax",
                in_axis: Any = None, out_axis: Any = None, batch_axis: Any = (),
                **hyperparameters: Any) -> FlaxInitializer:
  """Wraps a jinit initializer as a Flax ``kernel_init``.

  Example::

    nn.Dense(50, kernel_init=jinit.flax.kernel_init(jinit.kaiming_normal,
                                                   nonlinearity="relu"))

  Args:
    init: a jinit initializer ``init(key, shape, fan_in, fan_out, *, ..., dtype)``.
    layout: how to read fans off the shape (see :func:`jinit.compute_fans`); the
      default ``"flax"`` reads Flax's ``(in, out)`` and ``(*window, in, out)``.
    in_axis, out_axis, batch_axis: explicit fan axes instead of a layout
      (pass ``layout=None``), e.g. for ``DenseGeneral``/einsum kernels.
    **hyperparameters: bound as keyword arguments of ``init`` (e.g. ``gain=2.0``).

  Returns:
    ``f(key, shape, dtype=jnp.float32) -> Array``.
  """
  _check_init(init, "init")
  if in_axis is not None or out_axis is not None:
    if layout not in (None, "flax"):
      raise ValueError("give either layout or in_axis/out_axis, not both")
    layout = None
  elif layout is None:
    raise ValueError(f"layout must be one of {', '.join(map(repr, fans_lib.LAYOUTS))}, or "
                     "in_axis and out_axis must be given")
  else:
    validation.check_choice(layout, "layout", fans_lib.LAYOUTS)

  def flax_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    fan_in, fan_out = fans_lib.compute_fans(shape, layout, in_axis=in_axis, out_axis=out_axis,
                                            batch_axis=batch_axis)
    return init(key, shape, fan_in, fan_out, dtype=dtype, **hyperparameters)

  flax_init.__name__ = f"{getattr(init, '__name__', 'init')}_flax"
  return flax_init


def bias_init(init: inits.Initializer, fan_in: int | None = None, fan_out: int | None = None,
              **hyperparameters: Any) -> FlaxInitializer:
  """Wraps a jinit initializer as a Flax ``bias_init`` with fans you know.

  Example (PyTorch's default Linear init in nnx)::

    nnx.Linear(784, 50, kernel_init=jinit.flax.kernel_init(jinit.torch_linear_default),
               bias_init=jinit.flax.bias_init(jinit.torch_linear_default, fan_in=784),
               rngs=rngs)
  """
  _check_init(init, "init")
  return _with_fans(init, fan_in, fan_out, hyperparameters)


def _with_fans(init: inits.Initializer, fan_in, fan_out, hyperparameters) -> FlaxInitializer:
  """``init`` with fixed fans and hyperparameters, in Flax's signature."""

  def flax_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return init(key, shape, fan_in, fan_out, dtype=dtype, **hyperparameters)

  flax_init.__name__ = f"{getattr(init, '__name__', 'init')}_flax"
  return flax_init


class Dense(nn.Module):
  """``nn.Dense`` whose initializers are jinit initializers and see the layer's fans.

  The kernel ``(in, out)`` gets ``kernel_init(key, shape, in, out, dtype=...)``
  and the bias ``(out,)`` gets ``bias_init(key, shape, in, out, dtype=...)``: the
  kernel's fans. Parameters are named ``kernel`` and ``bias`` like ``nn.Dense``,
  so the two are interchangeable. Example (PyTorch's ``nn.Linear`` default)::

    jinit.flax.Dense(50, kernel_init=jinit.torch_linear_default,
                     bias_init=jinit.torch_linear_default)

  Attributes:
    features: number of output features.
    use_bias: whether to add a bias.
    kernel_init, bias_init: jinit initializers (bind hyperparameters with
      ``functools.partial`` or :func:`jinit.get_initializer`). Defaults are
      Flax's: lecun_normal and zeros.
    dtype, param_dtype, precision: as in ``nn.Dense``.
  """

  features: int
  use_bias: bool = True
  kernel_init: inits.Initializer = inits.lecun_normal
  bias_init: inits.Initializer = inits.zeros
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    if isinstance(self.features, bool) or not isinstance(self.features, int) \
        or self.features <= 0:
      raise ValueError(f"features must be a positive int, got {self.features!r}")
    in_features = jnp.shape(inputs)[-1]
    kernel = self.param(
        "kernel",
        lambda key, shape, dtype: self.kernel_init(key, shape, in_features, self.features,
                                                   dtype=dtype),
        (in_features, self.features), self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param(
          "bias",
          lambda key, shape, dtype: self.bias_init(key, shape, in_features, self.features,
                                                   dtype=dtype),
          (self.features,), self.param_dtype)
    inputs, kernel, bias = flax_dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    y = jax.lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())),
                            precision=self.precision)
    if bias is not None:
      y = y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
    return y


def nnx_linear(in_features: int, out_features: int, *, rngs: Any,
               kernel_init: inits.Initializer = inits.lecun_normal,
               bias_init: inits.Initializer = inits.zeros, **kwargs: Any):
  """A ``flax.nnx.Linear`` whose kernel and bias inits are jinit initializers with its fans.

  Both inits receive ``(fan_in, fan_out) = (in_features, out_features)``. Extra
  keyword arguments go to ``nnx.Linear``. Example (PyTorch's default)::

    jinit.flax.nnx_linear(784, 50, kernel_init=jinit.torch_linear_default,
                          bias_init=jinit.torch_linear_default, rngs=nnx.Rngs(0))
  """
  from flax import nnx

  _check_init(kernel_init, "kernel_init")
  _check_init(bias_init, "bias_init")
  return nnx.Linear(in_features, out_features,
                    kernel_init=_with_fans(kernel_init, in_features, out_features, {}),
                    bias_init=_with_fans(bias_init, in_features, out_features, {}),
                    rngs=rngs, **kwargs)


__all__ = ["Dense", "bias_init", "kernel_init", "nnx_linear"]
