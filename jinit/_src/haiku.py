"""Implementation of :mod:`jinit.haiku`; its public names are re-exported there.

Haiku layouts (``rf``: the product of the window dims, ``g``: ``feature_group_count``):

=======================  ===========================  ==================  ==================
module (param)           shape                        fan_in              fan_out
=======================  ===========================  ==================  ==================
Linear (w)               (in, out)                    in                  out
MultiHeadAttention       query/key/value (in, h*k),   in                  h*k
                         linear (h*v, model)          h*v                 model
ConvND (w)               (*window, in/g, out)         in/g * rf           out/g * rf
ConvNDTranspose (w)      (*window, out, in)           in * rf             out * rf
Embed (embeddings)       (vocab, dim)                 dim                 vocab
LSTM (linear/w)          (in + hidden, 4 hidden)      in + hidden         hidden (per gate)
GRU (w_i, w_h)           (in, 3h), (h, 3h)            in (resp. h)        h (per gate)
=======================  ===========================  ==================  ==================

Haiku calls an initializer as ``init(shape, dtype)`` and draws its randomness from
``hk.next_rng_key()``; :func:`w_init` and :func:`b_init` adapt a jinit initializer
to that. :func:`reinit` re-draws a whole params dict, reading each module's kind off
its Haiku name (``linear_1``, ``conv2_d``, ``mlp/~/linear_0``, ``lstm/linear``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, cast

import haiku as hk
import jax
import jax.numpy as jnp

from jinit._src import initializers as inits
from jinit._src import layers
from jinit._src import validation
from jinit._src.layers import UncoveredParametersWarning as UncoveredParametersWarning

LAYOUTS = ("auto", "linear", "conv", "conv_transpose", "embed", "lstm", "gru")
_NORMS = ("layer_norm", "rms_norm", "batch_norm", "group_norm", "instance_norm")


def _gated_spec(shape, gates: int) -> layers.ParamSpec:
  """A weight ``(in, gates * hidden)`` whose gates are stacked on the output axis."""
  n_in, n_out = shape
  if n_out % gates:
    raise ValueError(f"a weight of shape {tuple(shape)} cannot hold {gates} gates on its "
                     "last axis")
  return layers.ParamSpec("kernel", n_in, n_out // gates, (n_in, gates, n_out // gates),
                          (1,), (), (0,), (2,))


def _layout_spec(layout: str, shape, groups: int = 1) -> layers.ParamSpec:
  """The spec of a weight of ``shape`` in Haiku ``layout`` (no stacking axes)."""
  shape = tuple(shape)
  if layout == "auto":
    layout = "linear" if len(shape) == 2 else "conv"
  is_conv = layout in ("conv", "conv_transpose")
  if (len(shape) < 3) if is_conv else (len(shape) != 2):
    raise ValueError(f"a {layout!r} weight has rank {'>= 3' if is_conv else '2'}, got "
                     f"shape {shape}")
  if layout == "linear":
    return layers.dense_spec(shape)
  if layout == "embed":
    return layers.embed_spec(shape)
  if layout == "lstm":
    return _gated_spec(shape, 4)
  if layout == "gru":
    return _gated_spec(shape, 3)
  if layout == "conv_transpose":
    return layers.conv_transpose_spec(shape, transpose_kernel=True)
  return layers.conv_spec(shape, groups)


def _check_groups(groups: Any) -> int:
  return validation.check_int(groups, "groups")


def w_init(init: inits.Initializer, *, layout: str = "auto", groups: int = 1,
           **hyperparameters: Any):
  """A jinit initializer as a Haiku ``w_init(shape, dtype)``, with fans from Haiku's layout.

  ``layout``: ``"auto"`` (rank 2: Linear ``(in, out)``, also MultiHeadAttention's
  projections; rank >= 3: ConvND ``(*window, in/groups, out)``), ``"linear"``,
  ``"conv"``, ``"conv_transpose"`` (``(*window, out, in)``), ``"embed"`` (``(vocab,
  dim)``: pass it to ``hk.Embed(w_init=...)``, whose shape alone would read as a
  Linear's), ``"lstm"``/``"gru"`` (gates stacked on the output axis: fans and
  ``orthogonal`` per gate). ``groups`` is the conv's ``feature_group_count`` (the
  shape cannot tell it): fan_out ``out/groups * rf``, orthogonal per group.
  The key is ``hk.next_rng_key()``. Example (PyTorch's Linear default)::

    hk.Linear(50, w_init=jinit.haiku.w_init(jinit.torch_linear_default),
              b_init=jinit.haiku.b_init(jinit.torch_linear_default, fan_in=784))

  Args:
    init: a jinit initializer ``init(key, shape, fan_in, fan_out, *, ..., dtype)``.
    layout: one of :data:`LAYOUTS`.
    groups: the conv's ``feature_group_count``.
    **hyperparameters: bound as keyword arguments of ``init`` (e.g. ``gain=2.0``).

  Returns:
    ``f(shape, dtype) -> Array`` for Haiku's ``w_init`` arguments.

  Raises:
    TypeError: ``init`` is not callable, ``groups`` not an int.
    ValueError: an unknown layout, ``groups < 1``; at call time, a shape of the
      wrong rank for the layout.
  """
  validation.check_init(init, "init")
  validation.check_choice(layout, "layout", LAYOUTS)
  groups = _check_groups(groups)
  if groups != 1 and layout not in ("auto", "conv"):
    raise ValueError(f"groups={groups} applies to conv kernels only, not layout={layout!r}")
  bound = functools.partial(init, **hyperparameters) if hyperparameters else init

  def haiku_init(shape, dtype=jnp.float32) -> jax.Array:
    shape = validation.check_shape(tuple(shape), min_rank=2)
    return layers.draw(bound, hk.next_rng_key(), shape, dtype, _layout_spec(layout, shape, groups))

  haiku_init.__name__ = f"{getattr(layers._unwrap(init), '__name__', 'init')}_haiku"  # pylint: disable=protected-access
  return haiku_init


def b_init(init: inits.Initializer, fan_in: int | None = None, fan_out: int | None = None,
           **hyperparameters: Any):
  """A jinit initializer as a Haiku ``b_init(shape, dtype)`` with fans you know.

  Haiku gives a bias initializer its shape only, so the layer's fans are arguments
  (PyTorch's default bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) needs ``fan_in``).

  Args:
    init: a jinit initializer.
    fan_in, fan_out: the layer's fans, passed to ``init``.
    **hyperparameters: bound as keyword arguments of ``init``.

  Returns:
    ``f(shape, dtype) -> Array``, drawing with ``hk.next_rng_key()``.
  """
  validation.check_init(init, "init")
  fan_in = validation.check_fan(fan_in, "fan_in", required=False)
  fan_out = validation.check_fan(fan_out, "fan_out", required=False)

  def haiku_init(shape, dtype=jnp.float32) -> jax.Array:
    return init(hk.next_rng_key(), tuple(shape), fan_in, fan_out, dtype=dtype, **hyperparameters)

  haiku_init.__name__ = f"{getattr(layers._unwrap(init), '__name__', 'init')}_haiku"  # pylint: disable=protected-access
  return haiku_init


# --------------------------------------------------------------------------- reinit


def _base(name: str) -> str:
  """A Haiku module name without its ``_<n>`` uniquifying suffix (``linear_1`` -> ``linear``)."""
  return re.sub(r"_\d+$", "", name)


def _module_kind(module: str, param: str, rank: int) -> tuple[str | None, int]:
  """``(layout or "keep" or None, the layout's own rank)`` for ``param`` of ``module``."""
  parts = [p for p in module.split("/") if p != "~"]
  base = _base(parts[-1])
  parent = _base(parts[-2]) if len(parts) > 1 else ""
  if base in _NORMS:
    return ("keep", 0) if param in ("scale", "offset") else (None, 0)
  if param == "embeddings":
    return "embed", 2
  if base == "gru" and param in ("w_i", "w_h"):
    return "gru", 2
  if param != "w":
    return ("keep", 0) if param in ("scale", "offset") else (None, 0)
  if base == "linear" and parent == "lstm":
    return "lstm", 2
  if base in ("linear", "query", "key", "value"):
    return "linear", 2
  m = re.fullmatch(r"conv(\d)_d(_transpose)?", base)
  if m:
    return ("conv_transpose" if m.group(2) else "conv"), int(m.group(1)) + 2
  if base == "conv_nd_transpose":
    return "conv_transpose", rank
  # A renamed module (hk.Linear(10, name="fc1")): read the layout off the rank.
  return ("linear", 2) if rank == 2 else ("conv", rank)


def _param_spec(module: str, param: str, shape, groups: int) -> layers.ParamSpec | None:
  kind, rank = _module_kind(module, param, len(shape))
  if kind is None:
    return None
  if kind == "keep":
    return layers.ParamSpec("keep")
  return layers.stacked(lambda s: _layout_spec(kind, s, groups), shape, rank)


def reinit(params: Mapping[str, Mapping[str, Any]], init: inits.Initializer | None, *,
           key: jax.Array, bias_init: inits.Initializer | None = None, rules=(),
           groups: Mapping[str, int] | None = None) -> dict[str, dict[str, jax.Array]]:
  """A copy of a Haiku params dict re-drawn with each module's true fans.

  The kind of each module is read off its Haiku name (its last component without
  the ``_<n>`` suffix): ``linear``/``query``/``key``/``value`` (Linear, also the
  projections of MultiHeadAttention), ``conv<N>_d`` and ``conv<N>_d_transpose``,
  ``embed``, ``lstm/linear`` (gates), ``gru``, and the norms (``layer_norm``,
  ``rms_norm``, ``batch_norm``, ``group_norm``: kept). A renamed module is read off
  its parameter: ``w`` of rank 2 is a Linear ``(in, out)``, of rank >= 3 a ConvND
  ``(*window, in, out)``; ``embeddings`` an Embed. Leading axes beyond a known
  module's rank (``hk.layer_stack``, ``hk.vmap``) are stacked copies.

  Per parameter (path ``module/param``, e.g. ``mlp/~/linear_0/w``): the first
  matching rule; else ``w``/``embeddings`` get ``init``, ``b`` gets ``bias_init``
  (None: kept) with the module's fans; norm ``scale``/``offset`` are kept; others
  are kept and listed in one :class:`UncoveredParametersWarning`. Rules, keys and
  errors are those of :func:`jinit.nnx.reinit`.

  Args:
    params: ``{module_name: {param_name: array}}`` as ``hk.transform(f).init`` returns.
    init: jinit initializer for weights and embeddings, or None to keep them.
    key: a JAX PRNG key.
    bias_init: jinit initializer for biases, or None to keep them.
    rules: ordered ``(regex, init)`` overrides; the first match wins.
    groups: ``{module_name: feature_group_count}`` for grouped convs (params cannot tell).

  Returns:
    A new params dict of the same structure.

  Raises:
    TypeError: ``params`` is not a mapping of mappings, a bad init, key or rule.
    ValueError: a rule that matches no parameter, a ``groups`` entry naming no module.
  """
  if not isinstance(params, Mapping) or not all(isinstance(v, Mapping) for v in params.values()):
    raise TypeError("params must be a Haiku params dict {module_name: {param_name: array}}, "
                    f"got {type(params).__name__}")
  key, checked_rules = layers.check_reinit_args(init, bias_init, key, rules)
  groups = dict(groups or {})
  for name, g in groups.items():
    if name not in params:
      raise ValueError(f"groups: {name!r} is not a module of params; the modules are: "
                       f"{', '.join(params)}")
    _check_groups(g)
  entries = []
  for module, ps in params.items():
    g = groups.get(module, 1)
    for name, value in ps.items():
      shape = tuple(jnp.shape(value))
      if name == "b" and "w" in ps:
        spec = _param_spec(module, "w", tuple(jnp.shape(ps["w"])), g)
        spec = None if spec is None else spec.bias()
      elif name == "b" and _base(module.split("/")[-1]) == "gru" and shape[-1] % 3 == 0:
        # As for Equinox's cells: PyTorch's RNN default draws biases with 1/sqrt(hidden).
        spec = layers.ParamSpec("bias", shape[-1] // 3, shape[-1] // 3)
      elif name == "b":
        spec = None
      else:
        spec = _param_spec(module, name, shape, g)
      entries.append(layers.Entry(f"{module}/{name}", shape, jnp.result_type(value), spec))
  new = layers.redraw(entries, init, bias_init, checked_rules, key, where="Haiku params")
  # A parameter left as it was is the caller's array (Haiku params hold arrays).
  return {module: {name: new.get(f"{module}/{name}", cast(jax.Array, value))
                   for name, value in ps.items()}
          for module, ps in params.items()}
