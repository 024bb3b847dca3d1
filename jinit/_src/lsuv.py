"""Implementation of :mod:`jinit.lsuv`; its public names are re-exported there."""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
from flax import nnx

from jinit._src import capture as cap
from jinit._src import diagnostics
from jinit._src import initializers as inits
from jinit._src import model as model_lib
from jinit._src import validation


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


def _variances(model: model_lib.Model, x) -> jax.Array:
  """Every recorded layer call's output variance, from the kernels set so far."""
  if model.nnx:
    graphdef, state = model.current()
    return _nnx_variances(graphdef, state, x, layer_types=model.layer_types)
  return _linen_variances(model.model, model.current(), x, layer_types=model.layer_types)


def _rescale(kernels: model_lib.Model, meta, order, x, key, *, orthogonal, tol,
             max_iters) -> list[LayerInfo]:
  """LSUV's steps on ``kernels`` (orthogonal draws, then the rescaling loop); its records."""
  if orthogonal:
    for (_, path, axes), k in zip(order, jax.random.split(key, len(order))):
      kernel = kernels.kernel(path)
      assert kernel is not None  # order holds layers that own a kernel
      if axes is None:
        axes = cap.kernel_axes(None, kernel.ndim)
      kernels.set_kernel(path, grouped_orthogonal(k, kernel.shape, axes, kernel.dtype))

  info = []
  for index, path, _ in order:
    name = model_lib.layer_name(path, meta.calls[index].kind)
    variance = before = float(_variances(kernels, x)[index])
    iterations = 0
    while True:
      if not math.isfinite(variance) or variance == 0.0:
        raise ValueError(f"layer {name}: output variance is {variance} on this batch, so LSUV "
                         "cannot rescale it (dead units or a degenerate input)")
      if abs(variance - 1.0) < tol or iterations == max_iters:
        break
      kernel = kernels.kernel(path)
      assert kernel is not None  # order holds layers that own a kernel
      # In float32 (float64 for float64 kernels), cast explicitly: strict promotion.
      wide = jnp.float64 if kernel.dtype == jnp.float64 else jnp.float32
      kernels.set_kernel(path, (kernel.astype(wide) / jnp.sqrt(jnp.asarray(variance, wide))
                                ).astype(kernel.dtype))
      iterations += 1
      variance = float(_variances(kernels, x)[index])
    converged = abs(variance - 1.0) < tol
    if not converged:
      warnings.warn(f"LSUV: layer {name} did not reach |Var - 1| < {tol} in {max_iters} "
                    f"rescalings (variance {variance:.4g}); its output variance does not "
                    "follow its weights (e.g. dominated by the bias, or dead inputs)",
                    stacklevel=3)
    info.append(LayerInfo(name, iterations, before, variance, converged))
  return info


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

  Examples:
    >>> import jax, jinit.lsuv
    >>> from flax import nnx
    >>> rngs = nnx.Rngs(0)
    >>> model = nnx.Sequential(nnx.Linear(16, 32, rngs=rngs), jax.nn.tanh,
    ...                        nnx.Linear(32, 4, rngs=rngs))
    >>> x = jax.random.normal(jax.random.key(0), (256, 16))
    >>> model, info = jinit.lsuv.lsuv(model, x, jax.random.key(1), return_info=True)
    >>> [(i.name, i.converged, round(i.variance, 1)) for i in info]
    [('layers/0', True, 1.0), ('layers/2', True, 1.0)]
  """
  is_nnx = cap.is_nnx(model)
  a = diagnostics.split_args("lsuv", model, args, ("variables", "x", "key"), ("x", "key"),
                             2 if is_nnx else 3, named)
  x, key, variables = a["x"], a["key"], a.get("variables")
  x = diagnostics.check_inputs(model, x, layer_types)
  tol = validation.check_real(tol, "tol", positive=True)
  max_iters = validation.check_int(max_iters, "max_iters")
  state = nnx.state(model) if is_nnx else variables
  if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((state, x, key))):
    raise TypeError("lsuv runs a data-dependent Python loop: call it outside jit/vmap "
                    "(it compiles its own forward pass)")
  key = validation.check_key(key)
  x = jnp.asarray(x)
  x_var = float(jnp.var(x.astype(jnp.float32)))
  if not math.isfinite(x_var) or x_var == 0.0:
    raise ValueError(f"x must have non-zero, finite variance (got variance {x_var}); "
                     "LSUV scales each layer by its output variance, which a constant or "
                     "all-zero batch makes zero")

  if not is_nnx and not hasattr(variables, "get"):
    raise TypeError(f"variables must be a mapping such as model.init returns, got "
                    f"{type(variables).__name__}")
  kernels = model_lib.Model(model, variables, layer_types=layer_types, norm_types=())
  meta = kernels.metadata(x)

  order: list[tuple[int, tuple, Any]] = []  # first call of each layer (shared ones once)
  seen, left_alone = set(), []
  for k, c in enumerate(meta.calls):
    if c.path in seen:
      continue
    seen.add(c.path)
    if kernels.kernel(c.path) is None:
      left_alone.append((model_lib.layer_name(c.path, c.kind), "no 'kernel' param to rescale"))
      continue
    order.append((k, c.path, c.kernel_axes))
  recorded = {c.path for c in meta.calls}
  for path in meta.kernel_paths:
    if path not in recorded:
      why = ("called inside a lifted transform (scan/vmap/remat)" if path in meta.in_transform
             else "no recorded __call__ used it (another method, a transform, or not in "
             "layer_types)")
      left_alone.append((model_lib.layer_name(path, "kernel"), why))
  if not order:
    raise ValueError(f"model {type(model).__name__} calls no kernel layer (Dense/Conv/"
                     "Einsum/attention...) that LSUV could rescale")
  if left_alone:
    warnings.warn("LSUV leaves these kernels alone: "
                  + "; ".join(f"{n} ({why})" for n, why in left_alone), stacklevel=2)

  # All or nothing: on any error (or an interrupt) the nnx model's kernels are restored.
  kernels.snapshot()
  try:
    info = _rescale(kernels, meta, order, x, key, orthogonal=orthogonal, tol=tol,
                    max_iters=max_iters)
  except BaseException:
    kernels.restore()
    raise

  out = kernels.result()
  return (out, info) if return_info else out


