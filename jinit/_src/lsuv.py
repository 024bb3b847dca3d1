"""Implementation of :mod:`jinit.lsuv`; its public names are re-exported there."""

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
from flax import nnx

from jinit._src import capture as cap
from jinit._src import diagnostics
from jinit._src import initializers as inits
from jinit._src import linen as jinit_linen

# The layer classes LSUV used to handle; the default (``layer_types=None``) is now every
# module that owns a ``kernel``.
LAYER_TYPES: tuple[type, ...] = (nn.Dense, nn.Conv, nn.ConvTranspose, jinit_linen.Dense)


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


def grouped_orthogonal(key: jax.Array, shape: tuple[int, ...], axes, dtype) -> jax.Array:
  """A kernel that is orthonormal as its ``(prod in axes, prod out axes)`` matrix.

  ``axes = (batch, in, out)`` axis indices; a batched kernel gets one independent
  (semi-)orthogonal matrix per batch index (Saxe et al. 2014,
  https://arxiv.org/abs/1312.6120, via :func:`jinit.orthogonal`).
  """
  b, r, c = cap.grouped_matrix_shape(tuple(shape), axes)
  keys = jax.random.split(key, b)
  # jinit.orthogonal's sign correction broadcasts (rows, cols) * (cols,) implicitly (in
  # jinit/_src/initializers.py, not ours): allow it here until that is written explicitly.
  with jax.numpy_rank_promotion("allow"):
    mats = jnp.stack([inits.orthogonal(k, (r, c), dtype=jnp.float32) for k in keys])
  return cap.from_matrices(mats, tuple(shape), axes).astype(dtype)


@functools.partial(jax.jit, static_argnames=("model", "layer_types"))
def _linen_variances(model, variables, x, *, layer_types):
  c = cap.capture_linen(model, variables, x, layer_types=layer_types, norm_types=())
  return jnp.stack([jnp.var(call.outputs.astype(jnp.float32)) for call in c.calls])


@functools.partial(jax.jit, static_argnames=("graphdef", "layer_types"))
def _nnx_variances(graphdef, state, x, *, layer_types):
  c = cap.capture_nnx(nnx.merge(graphdef, state), x, layer_types=layer_types, norm_types=())
  return jnp.stack([jnp.var(call.outputs.astype(jnp.float32)) for call in c.calls])


class _Linen:
  """Kernels of a linen model's variables (functional updates)."""

  def __init__(self, model, variables, layer_types):
    self.model, self.layer_types = model, layer_types
    self.frozen = isinstance(variables, flax.core.FrozenDict)
    variables = flax.core.unfreeze(variables) if self.frozen else dict(variables)
    self.variables = variables
    self.params = variables.get("params", {})

  def get(self, path):
    return cap.lookup(self.params, path, "kernel")

  def set(self, path, value):
    self.params = cap.replace(self.params, path, "kernel", value)

  def variances(self, x):
    return _linen_variances(self.model, {**self.variables, "params": self.params}, x,
                            layer_types=self.layer_types)

  def result(self):
    out = {**self.variables, "params": self.params}
    return flax.core.freeze(out) if self.frozen else out


class _Nnx:
  """Kernels of an nnx model (updated in place)."""

  def __init__(self, model, layer_types):
    self.model, self.layer_types = model, layer_types
    self.modules = dict(cap.nnx_modules(model))

  def _kernel(self, path):
    k = getattr(self.modules.get(path), "kernel", None)
    return k if isinstance(k, nnx.Variable) else None

  def get(self, path):
    k = self._kernel(path)
    return None if k is None else k[...]

  def set(self, path, value):
    self._kernel(path)[...] = value

  def variances(self, x):
    graphdef, state = nnx.split(self.model)
    return _nnx_variances(graphdef, state, x, layer_types=self.layer_types)

  def result(self):
    return self.model


def lsuv(model: Any, *args: Any, tol: float = 0.1, max_iters: int = 10,
         orthogonal: bool = True, layer_types: tuple[type, ...] | None = None,
         return_info: bool = False, **named: Any):
  """LSUV initialization of every kernel layer of a linen or nnx model.

  Call shapes: ``lsuv(model, variables, x, key)`` for a linen model returns new
  variables (the given ones are not modified); ``lsuv(model, x, key)`` for an nnx
  model rescales its kernels in place and returns the model.

  Args:
    model: a ``flax.linen.Module`` or a ``flax.nnx.Module``.
    variables: (linen only) its variables, ``{"params": ...}`` (from ``model.init``).
    x: a batch of real inputs (leading axis = examples); the paper uses one
      mini-batch.
    key: PRNG key of the orthogonal pre-initialization.
    tol: stop rescaling a layer once ``|Var(z) - 1| < tol`` (paper: 0.1).
    max_iters: at most this many rescalings per layer (paper: 10).
    orthogonal: replace every kernel by a grouped orthonormal one first (the paper's
      step 1; :func:`grouped_orthogonal`). ``False`` keeps the given kernels (LSUV on
      top of any init).
    layer_types: module classes treated as layers; ``None`` (default): every module
      owning a ``kernel``.
    return_info: also return a list of :class:`LayerInfo`, one per layer.

  Returns:
    linen: new variables (same structure and dtypes); nnx: the model. With
    ``return_info``, ``(that, info)``.

  Raises:
    TypeError: not a linen/nnx module, wrong arguments, or called under
      ``jit``/``vmap`` (LSUV's loop depends on measured variances: call it eagerly).
    ValueError: an empty batch, a batch with zero variance, a model without kernel
      layers, a layer whose output has zero or non-finite variance (e.g. every unit
      dead), bad ``tol``/``max_iters``.

  Warns:
    UserWarning: a layer that did not converge in ``max_iters`` rescalings; kernels
      LSUV leaves alone (named, with the reason).
  """
  is_nnx = cap.is_nnx(model)
  a = diagnostics.split_args("lsuv", model, args, ("variables", "x", "key"), ("x", "key"),
                             2 if is_nnx else 3, named)
  x, key, variables = a["x"], a["key"], a.get("variables")
  x = diagnostics.check_inputs(model, x, layer_types)
  _check_number(tol, "tol")
  _check_number(max_iters, "max_iters", integer=True)
  state = nnx.state(model) if is_nnx else variables
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((state, x, key))):
    raise TypeError("lsuv runs a data-dependent Python loop: call it outside jit/vmap "
                    "(it compiles its own forward pass)")
  if not isinstance(key, jax.Array):
    raise TypeError(f"key must be a jax PRNG key (jax.random.key(seed)), got "
                    f"{type(key).__name__}")
  x = jnp.asarray(x)
  x_var = float(jnp.var(x.astype(jnp.float32)))
  if not math.isfinite(x_var) or x_var == 0.0:
    raise ValueError(f"x must have non-zero, finite variance (got variance {x_var}); "
                     "LSUV scales each layer by its output variance, which a constant or "
                     "all-zero batch makes zero")

  if not is_nnx and not hasattr(variables, "get"):
    raise TypeError(f"variables must be a mapping such as model.init returns, got "
                    f"{type(variables).__name__}")
  runner = diagnostics._Runner(model, variables, layer_types, ())
  meta = runner.metadata(x)
  kernels = _Nnx(model, layer_types) if is_nnx else _Linen(model, variables, layer_types)

  order: list[tuple[int, tuple, Any]] = []  # first call of each layer (shared ones once)
  seen, left_alone = set(), []
  for k, c in enumerate(meta.calls):
    if c.path in seen:
      continue
    seen.add(c.path)
    if kernels.get(c.path) is None:
      left_alone.append((diagnostics._name(c.path, c.kind), "no 'kernel' param to rescale"))
      continue
    order.append((k, c.path, c.kernel_axes))
  recorded = {c.path for c in meta.calls}
  for path in meta.kernel_paths:
    if path not in recorded:
      why = ("called inside a lifted transform (scan/vmap/remat)" if path in meta.in_transform
             else "no recorded __call__ used it (another method, a transform, or not in "
             "layer_types)")
      left_alone.append((diagnostics._name(path, "kernel"), why))
  if not order:
    raise ValueError(f"model {type(model).__name__} calls no kernel layer (Dense/Conv/"
                     "Einsum/attention...) that LSUV could rescale")
  if left_alone:
    warnings.warn("LSUV leaves these kernels alone: "
                  + "; ".join(f"{n} ({why})" for n, why in left_alone), stacklevel=2)

  if orthogonal:
    for (_, path, axes), k in zip(order, jax.random.split(key, len(order))):
      kernel = kernels.get(path)
      if axes is None:
        axes = cap.kernel_axes(None, kernel.ndim)
      kernels.set(path, grouped_orthogonal(k, kernel.shape, axes, kernel.dtype))

  info = []
  for index, path, _ in order:
    name = diagnostics._name(path, meta.calls[index].kind)
    variance = before = float(kernels.variances(x)[index])
    iterations = 0
    while True:
      if not math.isfinite(variance) or variance == 0.0:
        raise ValueError(f"layer {name}: output variance is {variance} on this batch, so LSUV "
                         "cannot rescale it (dead units or a degenerate input)")
      if abs(variance - 1.0) < tol or iterations == max_iters:
        break
      kernel = kernels.get(path)
      kernels.set(path, (kernel / jnp.sqrt(jnp.asarray(variance, jnp.float32))
                         ).astype(kernel.dtype))
      iterations += 1
      variance = float(kernels.variances(x)[index])
    converged = abs(variance - 1.0) < tol
    if not converged:
      warnings.warn(f"LSUV: layer {name} did not reach |Var - 1| < {tol} in {max_iters} "
                    f"rescalings (variance {variance:.4g}); its output variance does not "
                    "follow its weights (e.g. dominated by the bias, or dead inputs)",
                    stacklevel=2)
    info.append(LayerInfo(name, iterations, before, variance, converged))

  out = kernels.result()
  return (out, info) if return_info else out


