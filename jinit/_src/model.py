"""One model layer: a linen module with its variables, or an nnx module, behind one interface.

:class:`Model` is what :mod:`jinit.diagnostics`, :mod:`jinit.lsuv` and :mod:`jinit.mup`'s
coordinate check run a Flax model through: the split into trainable params and the rest,
a captured forward pass (every recorded layer call, :mod:`jinit._src.capture`), the
abstract metadata of those calls, and kernel get/set by layer path. Layer and parameter
paths are joined by :func:`jinit._src.paths.path_str` (``"blocks/0/fc/kernel"``).

Default layer policy (``layer_types=None``): every module that owns a param named
``kernel`` is a layer (Dense, Conv, DenseGeneral, Einsum, attention projections, custom
modules); a tuple of classes records those classes instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.core
import jax
from flax import nnx

from jinit._src import capture as cap
from jinit._src.paths import layer_name as layer_name
from jinit._src.paths import path_str as path_str

# --------------------------------------------------------------------------- metadata


@dataclasses.dataclass(frozen=True)
class CallMeta:
  """Static description of one recorded call (from an abstract trace)."""
  path: tuple[Any, ...]
  kind: str
  role: str
  input_id: int
  output_id: int
  kernel_axes: Any
  shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ModelMeta:
  calls: tuple[CallMeta, ...]
  tensor_shapes: tuple[tuple[int, ...] | None, ...]
  output_id: int | None
  in_transform: tuple[tuple[Any, ...], ...]
  kernel_paths: tuple[tuple[Any, ...], ...]


def apply_kwargs(call_items: tuple[tuple[str, Any], ...], rngs: Any) -> dict[str, Any]:
  """linen ``apply``'s keyword arguments: the call's own, and ``rngs`` when given."""
  return {**dict(call_items), **({} if rngs is None else {"rngs": rngs})}


def _same_new(k, out):
  return out + 0  # a new tensor, as a perturbed one is: keeps tensor ids aligned


# --------------------------------------------------------------------------- the model


class Model:
  """A linen module with its variables, or an nnx module.

  Attributes:
    model: the module.
    nnx: whether it is an nnx module.
    params: its trainable parameters (nnx: the ``nnx.Param`` state; linen:
      ``variables["params"]``).
    rest: everything else (nnx: the other state; linen: the other collections).
  """

  def __init__(self, model: Any, variables: Any = None, *,
               layer_types: tuple[type, ...] | None = None,
               norm_types: tuple[type, ...] | None = None,
               call_items: tuple[tuple[str, Any], ...] = (), rngs: Any = None):
    self.model = model
    self.nnx = cap.is_nnx(model)
    # The model call's own keyword arguments (static, e.g. train=False) and, for linen,
    # the rngs of the call (e.g. {"dropout": key}).
    self.call_items, self.rngs = call_items, rngs
    self.layer_types = layer_types
    if norm_types is None:
      norm_types = cap.NNX_NORM_TYPES if self.nnx else cap.LINEN_NORM_TYPES
    self.norm_types = norm_types
    if self.nnx:
      self.graphdef, self.params, self.rest = nnx.split(model, nnx.Param, ...)
      self.modules = dict(cap.nnx_modules(model))
    else:
      if not hasattr(variables, "get"):
        raise TypeError(f"variables must be a mapping such as model.init returns, got "
                        f"{type(variables).__name__}")
      self.variables = variables
      self.params = variables.get("params", {})
      self.rest = {k: v for k, v in variables.items() if k != "params"}

  # ------------------------------------------------------------------ forward passes

  @property
  def trainable(self) -> Any:
    """The state :meth:`capture` takes: ``(params, rest)`` (nnx) or the variables (linen)."""
    return (self.params, self.rest) if self.nnx else self.variables

  def with_params(self, params: Any) -> Any:
    """The state :meth:`capture` takes, with ``params`` for the trainable parameters."""
    return (params, self.rest) if self.nnx else {**self.rest, "params": params}

  def capture(self, state: Any, perturb: Any, x: Any) -> cap.Capture:
    """Runs the model on ``x`` from ``state`` and records every layer (and norm) call."""
    if self.nnx:
      params, rest = state  # both traced: nnx refuses to mutate outer-trace state (RNGs)
      model = nnx.merge(self.graphdef, params, rest)
      return cap.capture_nnx(model, x, layer_types=self.layer_types,
                             norm_types=self.norm_types, perturb=perturb,
                             **dict(self.call_items))
    return cap.capture_linen(self.model, state, x, layer_types=self.layer_types,
                             norm_types=self.norm_types, perturb=perturb,
                             **apply_kwargs(self.call_items, self.rngs))

  def apply(self, params: Any, x: Any) -> tuple[Any, dict[str, jax.Array]]:
    """``(output, {layer path: output})``; a layer called twice keeps its last call."""
    c = self.capture(self.with_params(params), None, x)
    record: dict[str, jax.Array] = {}
    for call in c.calls:
      if call.role == "layer":
        record[path_str(call.path) or "<root>"] = jax.tree_util.tree_leaves(call.outputs)[0]
    return c.output, record

  def metadata(self, x: Any) -> ModelMeta:
    """The recorded calls' paths, kinds, roles, kernel axes and output shapes (no FLOPs)."""
    info = {}

    def run(state, x):
      c = self.capture(state, _same_new, x)
      info["capture"] = c
      return [t if isinstance(t, jax.Array) else None for t in c.tensors]

    shapes = jax.eval_shape(run, self.trainable, x)
    c = info["capture"]
    calls = tuple(CallMeta(call.path, call.kind, call.role, call.input_id, call.output_id,
                           call.kernel_axes, tuple(shapes[call.output_id].shape))
                  for call in c.calls)
    tshapes = tuple(None if s is None else tuple(s.shape) for s in shapes)
    kpaths = cap.kernel_paths(self.model, None if self.nnx else self.variables)
    return ModelMeta(calls, tshapes, c.output_id, tuple(c.in_transform), tuple(kpaths))

  # ------------------------------------------------------------------ kernels

  def kernel(self, path: tuple[Any, ...]) -> jax.Array | None:
    """The kernel of the layer at ``path``, or None if it owns none."""
    if self.nnx:
      k = getattr(self.modules.get(path), "kernel", None)
      return k[...] if isinstance(k, nnx.Variable) else None
    return cap.lookup(self.params, path, "kernel")

  def set_kernel(self, path: tuple[Any, ...], value: jax.Array) -> None:
    """Replaces a layer's kernel: in place (nnx) or in this wrapper's params (linen)."""
    if self.nnx:
      self.modules[path].kernel[...] = value
    else:
      self.params = cap.replace(self.params, path, "kernel", value)

  def snapshot(self) -> None:
    """Remembers every kernel as it is now, for :meth:`restore` (nnx: updated in place)."""
    self._saved = {path: k for path in self.modules if (k := self.kernel(path)) is not None
                   } if self.nnx else self.params

  def restore(self) -> None:
    """Puts back the kernels of the last :meth:`snapshot`: the model is left unchanged."""
    if self.nnx:
      for path, value in self._saved.items():
        self.modules[path].kernel[...] = value
    else:
      self.params = self._saved

  def current(self) -> Any:
    """The state :meth:`capture` takes, with the kernels set so far."""
    if self.nnx:
      return nnx.split(self.model)
    return {**self.variables, "params": self.params}

  def result(self) -> Any:
    """The model (nnx, updated in place) or new variables of the input's type (linen)."""
    if self.nnx:
      return self.model
    out = {**self.variables, "params": self.params}
    return flax.core.freeze(out) if isinstance(self.variables, flax.core.FrozenDict) else out
