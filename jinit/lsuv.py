"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas 2016) for Flax.

A data-dependent init: start from orthonormal weights, then, layer by layer in
forward order, run a batch through the model and divide the layer's kernel by the
std of the layer's output until that output has unit variance::

  for each Dense/Conv layer L (in call order):
    while |Var(z_L) - 1| >= tol and iterations < max_iters:
      W_L <- W_L / sqrt(Var(z_L))

``z_L`` is the layer's output (its pre-activation; biases are left as they are)
and ``Var`` is taken over all entries of the batch. Any linen model built from
Dense/Conv layers works unchanged: layers are found with
``flax.linen.intercept_methods`` (see :mod:`jinit.diagnostics`).

Example::

  variables = model.init(key, x)
  variables = jinit.lsuv.lsuv(model, variables, x_batch, key)

Reference: D. Mishkin and J. Matas, "All you need is a good init", ICLR 2016.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import warnings
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from jinit import diagnostics
from jinit import flax as jinit_flax
from jinit._src import initializers as inits

# Layers LSUV rescales: their weights are the param "kernel" laid out (..., in, out).
LAYER_TYPES: tuple[type, ...] = (nn.Dense, nn.Conv, nn.ConvTranspose, jinit_flax.Dense)


@dataclasses.dataclass(frozen=True)
class LayerInfo:
  """What LSUV did to one layer: scalings applied and output variance before/after."""
  name: str
  iterations: int  # number of rescalings (<= max_iters)
  variance_before: float  # after the orthogonal pre-init, before any rescaling
  variance: float  # after the last rescaling
  converged: bool  # |variance - 1| < tol

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _check_number(value, name, *, integer=False):
  kind = numbers.Integral if integer else numbers.Real
  if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) \
      or value <= 0:
    raise ValueError(f"{name} must be a positive {'int' if integer else 'number'}, "
                     f"got {value!r}")


def _replace(tree: Any, path: tuple[str, ...], leaf: str, value: Any) -> dict:
  """A copy of the nested dict ``tree`` with ``tree[path...][leaf] = value`` (no mutation)."""
  if not path:
    return {**tree, leaf: value}
  return {**tree, path[0]: _replace(tree[path[0]], path[1:], leaf, value)}


@functools.partial(jax.jit, static_argnames=("model", "layer_types"))
def _output_variances(model, variables, x, *, layer_types):
  """Variance of every layer call's output: one compiled forward pass per model and shape."""
  _, calls = diagnostics.capture_layers(model, variables, x, layer_types=layer_types)
  return jnp.stack([jnp.var(c.outputs.astype(jnp.float32)) for c in calls])


def lsuv(model: nn.Module, variables: Any, x: Any, key: jax.Array, *, tol: float = 0.1,
         max_iters: int = 10, orthogonal: bool = True,
         layer_types: tuple[type, ...] = LAYER_TYPES, return_info: bool = False):
  """LSUV-initialized variables for ``model`` (the input ``variables`` are not modified).

  Args:
    model: a linen module built from ``layer_types`` layers.
    variables: its variables, ``{"params": ...}`` (from ``model.init``).
    x: a batch of real inputs (leading axis = examples); the paper uses one
      mini-batch.
    key: PRNG key of the orthogonal pre-initialization.
    tol: stop rescaling a layer once ``|Var(z) - 1| < tol`` (paper: 0.1).
    max_iters: at most this many rescalings per layer (paper: 10).
    orthogonal: replace every kernel by an orthonormal one first (the paper's
      step 1; ``jinit.orthogonal`` over the kernel's last axis). ``False`` keeps
      the given kernels (LSUV on top of any init).
    layer_types: module classes treated as layers.
    return_info: also return a list of :class:`LayerInfo`, one per layer.

  Returns:
    New variables (same structure and dtypes), or ``(variables, info)``.

  Raises:
    TypeError: not a linen module, or called under ``jit``/``vmap`` (LSUV's loop
      depends on measured variances: call it eagerly).
    ValueError: an empty batch, a batch with zero variance, a model without
      Dense/Conv layers, a layer whose output has zero or non-finite variance
      (e.g. every unit dead), bad ``tol``/``max_iters``.

  Warns:
    UserWarning: a layer that did not converge in ``max_iters`` rescalings.
  """
  x = diagnostics.check_inputs(model, x, layer_types)
  _check_number(tol, "tol")
  _check_number(max_iters, "max_iters", integer=True)
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((variables, x, key))):
    raise TypeError("lsuv runs a data-dependent Python loop: call it outside jit/vmap "
                    "(it compiles its own forward pass)")
  x = jnp.asarray(x)
  x_var = float(jnp.var(x.astype(jnp.float32)))
  if not math.isfinite(x_var) or x_var == 0.0:
    raise ValueError(f"x must have non-zero, finite variance (got variance {x_var}); "
                     "LSUV scales each layer by its output variance, which a constant or "
                     "all-zero batch makes zero")

  meta = diagnostics.layer_metadata(model, variables, x, layer_types)
  frozen = isinstance(variables, flax.core.FrozenDict)
  variables = flax.core.unfreeze(variables) if frozen else dict(variables)
  if "params" not in variables:
    raise ValueError("variables must contain 'params' (what model.init returns)")
  order: list[tuple[int, tuple[str, ...]]] = []  # first call of each layer (shared ones once)
  for k, m in enumerate(meta):
    if m["path"] not in [p for _, p in order]:
      order.append((k, m["path"]))

  params = variables["params"]
  keys = jax.random.split(key, len(order))
  for (_, path), k in zip(order, keys):
    kernel = diagnostics._lookup(params, path, "kernel")
    if kernel is None:
      raise ValueError(f"layer {'/'.join(path)} has no 'kernel' param to rescale")
    if orthogonal:
      kernel = inits.orthogonal(k, kernel.shape, dtype=kernel.dtype)
      params = _replace(params, path, "kernel", kernel)

  def output_variances(params, x):
    return _output_variances(model, {**variables, "params": params}, x,
                             layer_types=layer_types)

  info = []
  for index, path in order:
    name = "/".join(path)
    variance = before = float(output_variances(params, x)[index])
    iterations = 0
    while True:
      if not math.isfinite(variance) or variance == 0.0:
        raise ValueError(f"layer {name}: output variance is {variance} on this batch, so LSUV "
                         "cannot rescale it (dead units or a degenerate input)")
      if abs(variance - 1.0) < tol or iterations == max_iters:
        break
      kernel = diagnostics._lookup(params, path, "kernel")
      kernel = (kernel / jnp.sqrt(jnp.asarray(variance, jnp.float32))).astype(kernel.dtype)
      params = _replace(params, path, "kernel", kernel)
      iterations += 1
      variance = float(output_variances(params, x)[index])
    converged = abs(variance - 1.0) < tol
    if not converged:
      warnings.warn(f"LSUV: layer {name} did not reach |Var - 1| < {tol} in {max_iters} "
                    f"rescalings (variance {variance:.4g}); its output variance does not "
                    "follow its weights (e.g. dominated by the bias, or dead inputs)",
                    stacklevel=2)
    info.append(LayerInfo(name, iterations, before, variance, converged))

  out = {**variables, "params": params}
  out = flax.core.freeze(out) if frozen else out
  return (out, info) if return_info else out


__all__ = ["LAYER_TYPES", "LayerInfo", "lsuv"]
