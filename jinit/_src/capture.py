"""Recording every layer call of a Flax model (linen or nnx): the instrumentation of
:mod:`jinit.diagnostics` and :mod:`jinit.lsuv` (and of anything else that needs each
layer's own input and output, e.g. a muP coordinate check).

:func:`capture` runs a model once and returns its output plus one :class:`Call` per
call of a *recorded* module, in call order:

* ``role="layer"``: a module that owns a param named ``kernel`` (Dense, Conv,
  ConvTranspose, DenseGeneral/LinearGeneral, Einsum, the q/k/v/out projections of
  attention, any custom module with a ``kernel``), or, if ``layer_types`` is given,
  an instance of one of those classes;
* ``role="norm"``: an instance of ``norm_types`` (LayerNorm, RMSNorm, BatchNorm,
  GroupNorm, InstanceNorm by default).

Each call records the module's first argument (its own input) and its return value
(its own output). Tensors are deduplicated by identity while tracing, so
``Call.input_id``/``Call.output_id`` say which calls share a tensor (q, k and v read
the same LayerNorm output; a chain's layer ``k + 1`` reads layer ``k``'s output).

How calls are found:

* linen: ``flax.linen.intercept_methods`` (every ``__call__``).
* nnx: for the duration of the call, ``__call__`` of every recorded module's class is
  wrapped; the wrapper records only the modules of this model (by identity) and calls
  the original. The classes are restored afterwards, also on error. (Not thread-safe
  for other threads calling the same classes meanwhile.)

A module called inside a lifted transform (``nn.scan``, ``nn.vmap``, ``nn.remat``,
``nnx.scan``, ...) runs under another trace: its tensors cannot leave it, so it is not
recorded; :func:`kernel_paths` lets callers list such kernels as not instrumented.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
from flax import nnx
from flax.core import tracers as flax_tracers

from jinit._src import einsum as einsum_lib

LINEN_NORM_TYPES: tuple[type, ...] = (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm, nn.GroupNorm,
                                      nn.InstanceNorm)
NNX_NORM_TYPES: tuple[type, ...] = (nnx.LayerNorm, nnx.RMSNorm, nnx.BatchNorm, nnx.GroupNorm,
                                    nnx.InstanceNorm)


@dataclasses.dataclass(frozen=True)
class Call:
  """One recorded module call.

  Attributes:
    path: the module's path (linen: its path in the params tree; nnx: its attribute
      path from the model, ints for list items).
    kind: the module's class name.
    role: ``"layer"`` (owns a kernel) or ``"norm"``.
    inputs: the module's first argument.
    outputs: what it returned (plus the perturbation, if one was given).
    input_id, output_id: indices into the deduplicated tensor list of :func:`capture`.
    kernel_axes: ``(batch, in, out)`` axis indices of the kernel (``None`` for norms).
  """
  path: tuple[Any, ...]
  kind: str
  role: str
  inputs: Any
  outputs: Any
  input_id: int
  output_id: int
  kernel_axes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None


@dataclasses.dataclass
class Capture:
  """What :func:`capture` returns.

  Attributes:
    output: the model's output.
    calls: one :class:`Call` per recorded call, in call order.
    tensors: the distinct arrays seen (``tensors[0]`` is the model input), indexed by
      ``Call.input_id``/``output_id``; ``output_id`` is the model output's index
      (``None`` if it is not an array).
    in_transform: paths of kernel modules that were called inside a lifted transform
      and so not recorded.
  """
  output: Any
  calls: list[Call]
  tensors: list[Any]
  output_id: int | None
  in_transform: list[tuple[Any, ...]]


def is_nnx(model: Any) -> bool:
  return isinstance(model, nnx.Module)


def is_linen(model: Any) -> bool:
  return isinstance(model, nn.Module)


# --------------------------------------------------------------------------- kernel axes

def einsum_kernel_axes(equation: str, ndim: int):
  """``(batch, in, out)`` axes of the kernel (2nd operand) of ``equation``.

  The same split as :func:`jinit.einsum_fans` (one parser, :func:`jinit._src.einsum.einsum_axes`):
  contracted and kernel-only axes are ``in``, free output axes ``out``, axes in input and output
  both are batch axes.
  """
  ins, outs, batch = einsum_lib.einsum_axes(equation, ndim)
  return batch, ins, outs


def _as_tuple(v) -> tuple:
  return tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else (v,)


def kernel_axes(module: Any, ndim: int, einsum_str: str | None = None):
  """``(batch, in, out)`` axes of ``module``'s kernel of rank ``ndim``, from the layer type.

  Dense/Linear: ``(in, out)``; Conv: ``(*window, in, out)``; ConvTranspose: the same,
  or ``(*window, out, in)`` with ``transpose_kernel``; DenseGeneral/LinearGeneral:
  ``(*batch, *contracted, *features)``; Einsum: from its equation. Any other module:
  every axis but the last is ``in`` (Flax's ``(..., in, out)`` convention).
  """
  axes = tuple(range(ndim))
  if isinstance(module, (nn.Einsum, nnx.Einsum)):
    eq = einsum_str or getattr(module, "einsum_str", None)
    if eq is not None:
      return einsum_kernel_axes(eq, ndim)
  if isinstance(module, nn.DenseGeneral):
    n_batch = len(_as_tuple(module.batch_dims)) if module.batch_dims else 0
    n_out = len(_as_tuple(module.features))
    return axes[:n_batch], axes[n_batch:ndim - n_out], axes[ndim - n_out:]
  if isinstance(module, nnx.LinearGeneral):
    n_batch, n_out = len(module.batch_axis), len(module.out_features)
    return axes[:n_batch], axes[n_batch:ndim - n_out], axes[ndim - n_out:]
  if isinstance(module, (nn.ConvTranspose, nnx.ConvTranspose)) and \
      getattr(module, "transpose_kernel", False) and ndim >= 2:
    return (), axes[:-2] + axes[-1:], axes[-2:-1]
  return (), axes[:-1], axes[-1:]


# --------------------------------------------------------------------------- capture


class _Recorder:
  """Shared bookkeeping: deduplicated tensors, calls, optional output perturbation."""

  def __init__(self, perturb):
    self.calls: list[Call] = []
    self.tensors: list[Any] = []
    self._ids: dict[int, int] = {}
    self.perturb = perturb
    self.in_transform: list[tuple[Any, ...]] = []
    self.not_arrays: list[tuple[Any, ...]] = []
    self.base_trace = flax_tracers.current_trace()

  def tensor_id(self, a) -> int:
    key = id(a)
    if key not in self._ids:
      self._ids[key] = len(self.tensors)
      self.tensors.append(a)  # keeps `a` alive, so its id is not reused
    return self._ids[key]

  def same_trace(self) -> bool:
    return flax_tracers.current_trace() == self.base_trace

  def record(self, path, module, role, inputs, out, einsum_str=None, kernel_ndim=None):
    if not (isinstance(inputs, jax.Array) and isinstance(out, jax.Array)):
      if role == "layer":
        self.not_arrays.append(tuple(path))
      return out  # e.g. a layer returning a tuple: not recorded, its kernel is listed
    if self.perturb is not None:
      out = self.perturb(len(self.calls), out)
    axes = None
    if role == "layer" and kernel_ndim is not None:
      axes = kernel_axes(module, kernel_ndim, einsum_str)
    in_id = self.tensor_id(inputs)
    self.calls.append(Call(tuple(path), type(module).__name__, role, inputs, out, in_id,
                           self.tensor_id(out), axes))
    return out


def _first_arg(args, kwargs):
  if args:
    return args[0]
  return next(iter(kwargs.values())) if kwargs else None


def _einsum_arg(args, kwargs):
  eq = kwargs.get("einsum_str")
  if eq is None and len(args) > 1 and isinstance(args[1], str):
    eq = args[1]
  return eq


def _linen_role(module, layer_types, norm_types):
  if isinstance(module, norm_types):
    return "norm"
  if layer_types is None:
    return "layer" if module.has_variable("params", "kernel") else None
  return "layer" if isinstance(module, layer_types) else None


def capture_linen(model: nn.Module, variables: Any, x: Any, *,
                  layer_types: tuple[type, ...] | None = None,
                  norm_types: tuple[type, ...] = LINEN_NORM_TYPES,
                  perturb: Callable[[int, Any], Any] | None = None, **apply_kwargs) -> Capture:
  """Applies a linen ``model`` and records its layer and norm calls (see the module doc).

  Args:
    model: a linen module.
    variables: its variables, as for ``model.apply``.
    x: the input batch.
    layer_types: classes recorded as layers; ``None``: every module owning a ``kernel``.
    norm_types: classes recorded as norms.
    perturb: ``perturb(call_index, output) -> output``, applied to every recorded
      output (zeros added here give ``dL/d output`` by differentiation).
    **apply_kwargs: passed to ``model.apply``.

  Returns:
    A :class:`Capture`.
  """
  rec = _Recorder(perturb)
  rec.tensor_id(x)

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name != "__call__":
      return out
    module = context.module
    role = _linen_role(module, layer_types, norm_types)
    if role is None:
      return out
    if not rec.same_trace():
      if role == "layer":
        rec.in_transform.append(tuple(module.path))
      return out
    ndim = None
    if role == "layer" and module.has_variable("params", "kernel"):
      ndim = module.get_variable("params", "kernel").ndim
    return rec.record(module.path, module, role, _first_arg(args, kwargs), out,
                      _einsum_arg(args, kwargs), ndim)

  with nn.intercept_methods(interceptor):
    y = model.apply(variables, x, **apply_kwargs)
  out_id = rec.tensor_id(y) if isinstance(y, jax.Array) else None
  return Capture(y, rec.calls, rec.tensors, out_id, rec.in_transform)


def nnx_modules(model: Any) -> list[tuple[tuple[Any, ...], Any]]:
  """``(path, module)`` for every nnx Module in ``model`` (shared ones once)."""
  return [(tuple(p), m) for p, m in nnx.iter_graph(model) if isinstance(m, nnx.Module)]


def _nnx_kernel(module):
  k = getattr(module, "kernel", None)
  return k if isinstance(k, nnx.Variable) else None


def _nnx_role(module, layer_types, norm_types):
  if isinstance(module, norm_types):
    return "norm"
  if layer_types is None:
    return "layer" if _nnx_kernel(module) is not None else None
  return "layer" if isinstance(module, layer_types) else None


@contextlib.contextmanager
def _wrapped_calls(targets: dict[int, tuple], rec: _Recorder):
  classes = {type(m) for _, m, _ in targets.values()}
  saved = {cls: cls.__dict__.get("__call__") for cls in classes}
  active: set[int] = set()

  def wrap(original):
    def __call__(self, *args, **kwargs):
      entry = targets.get(id(self))
      if entry is None or id(self) in active:
        return original(self, *args, **kwargs)
      active.add(id(self))
      try:
        out = original(self, *args, **kwargs)
      finally:
        active.discard(id(self))
      path, module, role = entry
      kernel = _nnx_kernel(module) if role == "layer" else None
      if not rec.same_trace():
        if role == "layer":
          rec.in_transform.append(path)
        return out
      return rec.record(path, module, role, _first_arg(args, kwargs), out,
                        _einsum_arg(args, kwargs), None if kernel is None else kernel.ndim)
    return __call__

  try:
    for cls in classes:
      cls.__call__ = wrap(cls.__call__)
    yield
  finally:
    for cls, original in saved.items():
      if original is None:
        del cls.__call__
      else:
        cls.__call__ = original


def capture_nnx(model: nnx.Module, x: Any, *, layer_types: tuple[type, ...] | None = None,
                norm_types: tuple[type, ...] = NNX_NORM_TYPES,
                perturb: Callable[[int, Any], Any] | None = None, **call_kwargs) -> Capture:
  """Calls an nnx ``model(x)`` and records its layer and norm calls (see the module doc).

  Works eagerly and inside ``jax.jit`` (e.g. on ``nnx.merge(graphdef, state)``). Same
  arguments as :func:`capture_linen`, without ``variables``.
  """
  rec = _Recorder(perturb)
  rec.tensor_id(x)
  targets = {}
  for path, m in nnx_modules(model):
    role = _nnx_role(m, layer_types, norm_types)
    if role is not None:
      targets[id(m)] = (path, m, role)
  with _wrapped_calls(targets, rec):
    y = model(x, **call_kwargs)
  out_id = rec.tensor_id(y) if isinstance(y, jax.Array) else None
  return Capture(y, rec.calls, rec.tensors, out_id, rec.in_transform)


def capture(model: Any, variables: Any, x: Any, **kwargs) -> Capture:
  """:func:`capture_linen` or, for an nnx model (``variables`` ignored, pass None),
  :func:`capture_nnx`."""
  if is_nnx(model):
    return capture_nnx(model, x, **kwargs)
  return capture_linen(model, variables, x, **kwargs)


# --------------------------------------------------------------------------- kernels


def kernel_paths(model: Any, variables: Any = None) -> list[tuple[Any, ...]]:
  """Module paths of every param named ``kernel`` (linen: in ``variables["params"]``)."""
  if is_nnx(model):
    return [p for p, m in nnx_modules(model) if _nnx_kernel(m) is not None]
  out = []

  def walk(node, path):
    if not hasattr(node, "items"):
      return
    for name, child in node.items():
      if name == "kernel" and not hasattr(child, "items"):
        out.append(path)
      else:
        walk(child, path + (name,))

  walk(variables.get("params", {}) if hasattr(variables, "get") else {}, ())
  return out


def lookup(tree: Any, path: tuple[Any, ...], leaf: str = "kernel") -> Any:
  """``tree[path...][leaf]`` in a nested mapping (ints index lists), or None."""
  node = tree
  for part in tuple(path) + (leaf,):
    try:
      node = node[part]
    except (KeyError, IndexError, TypeError):
      return None
  return node


def replace(tree: Any, path: tuple[Any, ...], leaf: str, value: Any) -> Any:
  """A copy of the nested dict ``tree`` with ``tree[path...][leaf] = value``."""
  if not path:
    return {**tree, leaf: value}
  return {**tree, path[0]: replace(tree[path[0]], path[1:], leaf, value)}


def grouped_matrix_shape(shape: tuple[int, ...], axes) -> tuple[int, int, int]:
  """``(batch, rows, cols)``: the kernel as ``batch`` matrices ``(prod in, prod out)``."""
  batch, ins, outs = axes
  return (math.prod(shape[a] for a in batch), math.prod(shape[a] for a in ins),
          math.prod(shape[a] for a in outs))


def to_matrices(kernel: jax.Array, axes) -> jax.Array:
  """The kernel as ``(batch, prod in axes, prod out axes)`` matrices."""
  batch, ins, outs = axes
  b, r, c = grouped_matrix_shape(kernel.shape, axes)
  return kernel.transpose(tuple(batch) + tuple(ins) + tuple(outs)).reshape(b, r, c)


def from_matrices(mats: jax.Array, shape: tuple[int, ...], axes) -> jax.Array:
  """Inverse of :func:`to_matrices`."""
  order = tuple(axes[0]) + tuple(axes[1]) + tuple(axes[2])
  permuted = mats.reshape(tuple(shape[a] for a in order))
  inverse = [0] * len(order)
  for i, a in enumerate(order):
    inverse[a] = i
  return permuted.transpose(inverse)


__all__ = ["Call", "Capture", "LINEN_NORM_TYPES", "NNX_NORM_TYPES", "capture", "capture_linen",
           "capture_nnx", "einsum_kernel_axes", "from_matrices", "grouped_matrix_shape",
           "is_linen", "is_nnx", "kernel_axes", "kernel_paths", "lookup", "nnx_modules",
           "replace", "to_matrices"]
