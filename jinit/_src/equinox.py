"""Implementation of :mod:`jinit.equinox`; its public names are re-exported there.

Equinox layers take no init arguments: a model is re-drawn by building a new one
with ``eqx.tree_at``. :func:`reinit` does that for every parameter at once, with each
layer's true fans read from its type and attributes (Equinox layouts):

=====================  ============================  ==================  ==================
layer                  weight shape                  fan_in              fan_out
=====================  ============================  ==================  ==================
Linear                 (out, in)                     in                  out
Conv / ConvTranspose   (out, in/groups, *window)     in/groups * rf      out/groups * rf
Embedding              (num_embeddings, dim)         dim                 num_embeddings
MultiheadAttention     four Linear projections       their in            their out
GRUCell (3 gates)      (3h, in), (3h, h)             in (resp. h)        h (per gate)
LSTMCell (4 gates)     (4h, in), (4h, h)             in (resp. h)        h (per gate)
=====================  ============================  ==================  ==================

``rf`` is the product of the window dims. A ConvTranspose's weight is used as the
kernel of a (flipped, input-dilated) conv, so its stride-1 fans are a Conv's. The
gates of a recurrent cell are stacked along the output axis: each gate is its own
``(h, in)`` matrix, so fans are per gate and ``orthogonal`` is drawn per gate. A
recurrent cell's biases get ``(h, h)``: PyTorch's and Equinox's default draws every
RNN parameter from U(-1/sqrt(h), 1/sqrt(h)), which ``torch_linear_default`` then gives.
Layers built with ``eqx.filter_vmap`` (stacked blocks) carry leading axes on every
parameter: independent copies, batch axes in neither fan.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax

from jinit._src import initializers as inits
from jinit._src import layers
from jinit._src.layers import UncoveredParametersWarning as UncoveredParametersWarning
from jinit._src.paths import key_name
from jinit._src.paths import path_str

_NORMS = (eqx.nn.LayerNorm, eqx.nn.RMSNorm, eqx.nn.GroupNorm, eqx.nn.BatchNorm)


def _out_in_spec(shape, gates: int = 1) -> layers.ParamSpec:
  """A weight ``(gates * out, in)`` (Equinox and PyTorch layout) with per-gate fans."""
  n_out, n_in = shape
  if gates == 1:
    return layers.ParamSpec("kernel", n_in, n_out, None, (), (), (1,), (0,))
  if n_out % gates:
    raise ValueError(f"a weight of shape {tuple(shape)} cannot hold {gates} gates")
  return layers.ParamSpec("kernel", n_in, n_out // gates, (gates, n_out // gates, n_in),
                          (0,), (), (2,), (1,))


def _conv_spec(shape, groups: int = 1) -> layers.ParamSpec:
  """A conv weight ``(out, in/groups, *window)``; groups are independent slices."""
  n_out, n_in, *window = shape
  rf = math.prod(window)
  if groups == 1:
    return layers.ParamSpec("kernel", n_in * rf, n_out * rf, None, (),
                            tuple(range(2, len(shape))), (1,), (0,))
  if n_out % groups:
    raise ValueError(f"groups={groups} does not divide the {n_out} output channels of a "
                     f"weight of shape {tuple(shape)}")
  view = (groups, n_out // groups, n_in, *window)
  return layers.ParamSpec("kernel", n_in * rf, n_out // groups * rf, view, (0,),
                          tuple(range(3, len(view))), (2,), (1,))


def _embed_spec(shape) -> layers.ParamSpec:
  return layers.ParamSpec("kernel", shape[1], shape[0], None, (), (), (1,), (0,))


def _weight_spec(module: Any, name: str, shape) -> layers.ParamSpec | None:
  """The spec of ``module``'s weight ``name`` of ``shape`` (None: unknown)."""
  if isinstance(module, eqx.nn.Linear) and name == "weight":
    return layers.stacked(_out_in_spec, shape, 2)
  if isinstance(module, (eqx.nn.Conv, eqx.nn.ConvTranspose)) and name == "weight":
    return layers.stacked(_conv_spec, shape, module.num_spatial_dims + 2, module.groups)
  if isinstance(module, eqx.nn.GRUCell) and name in ("weight_ih", "weight_hh"):
    return layers.stacked(_out_in_spec, shape, 2, 3)
  if isinstance(module, eqx.nn.LSTMCell) and name in ("weight_ih", "weight_hh"):
    return layers.stacked(_out_in_spec, shape, 2, 4)
  return None


def _spec(module: Any, name: str, shape) -> layers.ParamSpec | None:
  """The spec of parameter ``name`` of ``module`` (None: a parameter reinit does not know)."""
  if module is None:
    return None
  if isinstance(module, _NORMS):
    return layers.ParamSpec("keep") if name in ("weight", "bias") else None
  if isinstance(module, eqx.nn.Embedding):
    return layers.stacked(_embed_spec, shape, 2) if name == "weight" else None
  if isinstance(module, (eqx.nn.GRUCell, eqx.nn.LSTMCell)) and name in ("bias", "bias_n"):
    h = module.hidden_size
    return layers.ParamSpec("bias", h, h)
  if name == "bias":
    weight = getattr(module, "weight", None)
    if weight is None or not hasattr(weight, "shape"):
      return None
    spec = _weight_spec(module, "weight", tuple(weight.shape))
    return None if spec is None else spec.bias()
  return _weight_spec(module, name, shape)


def _child(node: Any, key: Any) -> Any:
  """The child of ``node`` at one pytree path ``key`` (None if it cannot be followed)."""
  if isinstance(key, jax.tree_util.GetAttrKey):
    return getattr(node, key.name, None)
  if isinstance(key, jax.tree_util.SequenceKey):
    return node[key.idx]
  if isinstance(key, jax.tree_util.DictKey):
    return node[key.key]
  return None


def parameters(model: Any) -> list[tuple[str, Any, Any, Any]]:
  """``(path, owner module, attribute name, array)`` for every floating array of ``model``.

  Arrays under an ``eqx.nn.StateIndex`` (BatchNorm's running statistics) are state,
  not parameters, and are left out.
  """
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(model)[0]:
    if not eqx.is_inexact_array(leaf):
      continue
    node, owner, skip = model, None, False
    for k in path[:-1]:
      node = None if node is None else _child(node, k)
      if isinstance(node, eqx.nn.StateIndex):
        skip = True
        break
    if skip:
      continue
    owner = node if isinstance(node, eqx.Module) else None
    out.append((path_str(path, drop_value=False), owner, key_name(path[-1]), leaf))
  return out


def reinit(model: Any, init: inits.Initializer | None, *, key: jax.Array,
           bias_init: inits.Initializer | None = None, rules=()) -> Any:  # pylint: disable=redefined-outer-name
  r"""A copy of an Equinox model with its parameters re-drawn with each layer's true fans.

  Equinox's idiom (``eqx.tree_at``) for PyTorch's ``model.apply(init_fn)``. Every
  layer's type is known, so each parameter's fans are the layer's own (table in
  :mod:`jinit._src.equinox`): Linear (weight ``(out, in)``), Conv/ConvTranspose
  (any dims, ``groups``), Embedding, MultiheadAttention (its four Linear
  projections), GRUCell/LSTMCell (fans and ``orthogonal`` per gate), MLP (its
  Linears), and layers stacked by ``eqx.filter_vmap``. ``orthogonal`` and
  ``delta_orthogonal`` are drawn per group, per gate and per stacked copy.

  Per parameter (attribute path joined by ``/``, e.g. ``blocks/attn/query_proj/weight``):

  1. the first rule ``(pattern, init)`` whose regex ``re.search``-matches the path;
  2. else weights and embeddings get ``init`` (None: kept), biases ``bias_init``
     (None: kept) with their layer's fans, so PyTorch's default is one call:
     ``reinit(model, jinit.torch_linear_default, bias_init=jinit.torch_linear_default, key=k)``;
  3. norm weights/biases (LayerNorm, RMSNorm, GroupNorm, BatchNorm) are kept; any
     other floating array is kept and listed in one :class:`UncoveredParametersWarning`.

  Rule inits get the parameter's shape, dtype and its layer's true fans (None for
  arrays of no known layer). Each parameter's key is ``fold_in(key, crc32(path))``.
  All values are drawn before the new model is built: on an error nothing is returned.

  Example::

    model = jinit.equinox.reinit(model, jinit.xavier_uniform, key=jax.random.key(0),
                                 bias_init=jinit.zeros)

  Args:
    model: an Equinox model (an ``eqx.Module`` pytree).
    init: jinit initializer for weights and embeddings, or None to keep them.
    key: a JAX PRNG key.
    bias_init: jinit initializer for biases, or None to keep them.
    rules: ordered ``(regex, init)`` overrides; the first match wins.

  Returns:
    A new model of the same structure (``model`` is not modified).

  Raises:
    TypeError: ``model`` is not an Equinox Module, a bad init, key or rule.
    ValueError: a rule pattern that matches no parameter (before any draw), or an
      init that cannot draw some parameter (the message names it).
  """
  if not isinstance(model, eqx.Module):
    raise TypeError(f"model must be an equinox Module, got {type(model).__name__}")
  key, checked_rules = layers.check_reinit_args(init, bias_init, key, rules)
  params = parameters(model)
  entries = [layers.Entry(path, tuple(leaf.shape), leaf.dtype, _spec(owner, name, leaf.shape))
             for path, owner, name, leaf in params]
  new = layers.redraw(entries, init, bias_init, checked_rules, key,
                      where=f"{type(model).__name__} (equinox)")
  changed = [path for path, *_ in params if path in new]  # in flattening order
  if not changed:
    return model
  wanted = set(changed)

  def where(m):
    # tree_at calls this on a copy whose leaves are placeholders: select by path only.
    return [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(m)[0]
            if path_str(path, drop_value=False) in wanted]

  return eqx.tree_at(where, model, [new[p] for p in changed])
