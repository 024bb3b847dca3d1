"""Implementation of :mod:`jinit.nnx`; its public names are re-exported there."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from jinit._src import initializers as inits
from jinit._src import layers
from jinit._src import validation
from jinit._src.layers import UncoveredParametersWarning as UncoveredParametersWarning
from jinit._src.layers import bias_init as bias_init
from jinit._src.layers import kernel_init as kernel_init
from jinit._src.paths import path_str


def linear(in_features: int, out_features: int, *, rngs: Any,
           kernel_init: inits.Initializer = inits.lecun_normal,  # pylint: disable=redefined-outer-name
           bias_init: inits.Initializer = inits.zeros,  # pylint: disable=redefined-outer-name
           **kwargs: Any) -> nnx.Linear:
  """A ``flax.nnx.Linear`` whose kernel and bias inits are jinit initializers with its fans.

  Both inits receive ``(fan_in, fan_out) = (in_features, out_features)``. Extra
  keyword arguments go to ``nnx.Linear``. Example (PyTorch's default)::

    jinit.nnx.linear(784, 50, kernel_init=jinit.torch_linear_default,
                     bias_init=jinit.torch_linear_default, rngs=nnx.Rngs(0))

  Args:
    in_features, out_features: as ``nnx.Linear``.
    rngs: an ``nnx.Rngs``.
    kernel_init, bias_init: jinit initializers.
    **kwargs: passed to ``nnx.Linear``.

  Returns:
    An ``nnx.Linear``.
  """
  validation.check_init(kernel_init, "kernel_init")
  validation.check_init(bias_init, "bias_init")
  return nnx.Linear(in_features, out_features,
                    kernel_init=layers.with_fans(kernel_init, in_features, out_features, {}),
                    bias_init=layers.with_fans(bias_init, in_features, out_features, {}),
                    rngs=rngs, **kwargs)


_NORMS = (nnx.LayerNorm, nnx.RMSNorm, nnx.GroupNorm, nnx.BatchNorm)


def layer_shape(module: nnx.Module, name: str) -> tuple[int, ...] | None:
  """The shape parameter ``name`` of ``module`` has in one copy of the layer (unstacked).

  From the layer's attributes, so layers stacked by ``nnx.vmap``/``nnx.scan`` (whatever
  ``out_axes``) are recognised by comparing with the stored shape. None: a parameter of
  a layer reinit does not know.
  """
  if isinstance(module, nnx.Embed):
    return (module.num_embeddings, module.features) if name == "embedding" else None
  if isinstance(module, nnx.LoRA):
    rank = module.lora_a[...].shape[-1]  # the rank (LoRA stores no attribute for it)
    return {"lora_a": (module.in_features, rank),
            "lora_b": (rank, module.out_features)}.get(name)
  if name != "kernel":
    return None
  if isinstance(module, nnx.Linear):
    return (module.in_features, module.out_features)
  if isinstance(module, nnx.LinearGeneral):
    return (*module.batch_axis.values(), *module.in_features, *module.out_features)
  if isinstance(module, (nnx.Conv, nnx.ConvTranspose, nnx.Einsum)):
    return tuple(module.kernel_shape)
  return None


def _kernel_spec(module: nnx.Module, shape) -> layers.ParamSpec | None:
  """The spec of ``module``'s kernel of ``shape`` (None: not a layer reinit knows).

  Axes beyond the layer's own kernel are stacked copies (nnx.vmap/scan), wherever
  ``out_axes`` put them (:func:`jinit._src.layers.stack_axes`).
  """
  own = layer_shape(module, "kernel")
  if own is None:
    return None
  if isinstance(module, nnx.Linear):
    return layers.stacked_at(layers.dense_spec, shape, own)
  if isinstance(module, nnx.LinearGeneral):
    n_batch, n_in = len(module.batch_axis), len(module.in_features)
    return layers.stacked_at(layers.general_spec, shape, own, n_batch, n_in)
  if isinstance(module, nnx.Conv):
    return layers.stacked_at(layers.conv_spec, shape, own, module.feature_group_count)
  if isinstance(module, nnx.ConvTranspose):
    if getattr(module, "feature_group_count", 1) != 1:
      return None
    return layers.stacked_at(layers.conv_transpose_spec, shape, own, module.transpose_kernel)
  assert isinstance(module, nnx.Einsum)  # the one other kind with a kernel shape
  return layers.stacked_at(lambda s: layers.einsum_spec(module.einsum_str, s), shape, own)


def _spec(module: nnx.Module | None, name: str, shape, kernel_shape) -> layers.ParamSpec | None:
  """The spec of parameter ``name`` of ``module`` (None: a parameter reinit does not know)."""
  if module is None:
    return None
  if isinstance(module, nnx.Embed):
    own = layer_shape(module, name)
    return None if own is None else layers.stacked_at(layers.embed_spec, shape, own)
  if isinstance(module, nnx.LoRA):
    # B = 0 by design (Hu et al. 2021, https://arxiv.org/abs/2106.09685): the adapted
    # model starts as the base model. A rule naming lora_b re-draws it.
    own = layer_shape(module, name)
    spec = None if own is None else layers.stacked_at(layers.dense_spec, shape, own)
    if name == "lora_a":
      return spec
    if name == "lora_b" and spec is not None:
      return dataclasses.replace(spec, kind="zero")
    return None
  if isinstance(module, _NORMS):
    return layers.ParamSpec("keep") if name in ("scale", "bias") else None
  if name == "kernel":
    return _kernel_spec(module, shape)
  if name == "bias" and kernel_shape is not None:
    spec = _kernel_spec(module, kernel_shape)
    return None if spec is None else spec.bias()
  return None


def stack_lengths(model: nnx.Module) -> dict[str, int]:
  """``{path: number of stacked copies}`` of every ``nnx.Param`` of ``model``.

  A layer built under ``nnx.vmap``/``nnx.scan`` stores n copies of each parameter in
  one array; its stack length is n (wherever the stack axes are). Parameters of
  layers whose own shape is unknown count 1.
  """
  modules, out = {}, {}
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Module):
      modules[tuple(path)] = node
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Param):
      shape = tuple(node[...].shape)
      owner = modules.get(tuple(path[:-1]))
      own = None if owner is None else layer_shape(owner, str(path[-1]))
      if own is None and owner is not None and str(path[-1]) == "bias":
        kernel = layer_shape(owner, "kernel")
        own = None if kernel is None else (kernel[-1],)  # a bias has the out features
      stack = None if own is None else layers.stack_axes(shape, own)
      out[path_str(path)] = 1 if stack is None else math.prod(shape[i] for i in stack)
  return out


def reinit(model: nnx.Module, init: inits.Initializer | None, *, key: jax.Array,
           bias_init: inits.Initializer | None = None, rules=()) -> nnx.Module:  # pylint: disable=redefined-outer-name
  r"""Re-draws an nnx model's parameters in place with each layer's true fans; returns it.

  The idiom PyTorch users know as ``model.apply(init_fn)``. Every layer's type is
  known, so each parameter's fans are the layer's own (table in
  :mod:`jinit._src.layers`): Linear, LinearGeneral (batch axes in neither fan),
  Conv (``feature_group_count``), ConvTranspose, Einsum (from its equation),
  Embed (fan_in = features), MultiHeadAttention (its q/k/v/out LinearGeneral),
  LoRA. Nothing is guessed from shapes. ``orthogonal``/``delta_orthogonal`` are
  drawn on the grouped ``(prod(in axes), prod(out axes))`` matrix.

  Per parameter (attribute path joined by ``/``, e.g. ``blocks/0/attn/out/kernel``):

  1. the first rule ``(pattern, init)`` whose regex ``re.search``-matches the path;
  2. else kernels, embeddings and LoRA's A get ``init`` (None: kept), biases
     ``bias_init`` (None: kept) with their layer's fans, LoRA's B zeros (kept with
     ``init=None``), so PyTorch's default is one call:
     ``reinit(model, jinit.torch_linear_default, bias_init=jinit.torch_linear_default, key=k)``;
  3. norm scales/offsets are kept; any other ``nnx.Param`` is kept and listed in
     one :class:`UncoveredParametersWarning`.

  Rule inits get the parameter's stored shape and dtype and its layer's true
  fans (None for parameters of no known layer, e.g. a scalar gate: use an init
  that needs no fans). Each parameter's key is ``fold_in(key, crc32(path))``.
  All values are drawn before any is written: on an error the model is unchanged.

  Example (a transformer: xavier everywhere, zero biases, GPT-2's residual scaling)::

    jinit.nnx.reinit(model, jinit.xavier_uniform, key=jax.random.key(0),
                     bias_init=jinit.zeros,
                     rules=[(r"attn/out/kernel$", functools.partial(
                         jinit.normal, std=0.02 / math.sqrt(2 * n_layers)))])

  Args:
    model: an ``nnx.Module``.
    init: jinit initializer for kernels and embeddings, or None to keep them.
    key: a JAX PRNG key.
    bias_init: jinit initializer for biases, or None to keep them.
    rules: ordered ``(regex, init)`` overrides; the first match wins.

  Returns:
    ``model``, modified in place.

  Raises:
    TypeError: ``model`` is not an nnx Module, a bad init, key or rule.
    ValueError: a rule pattern that matches no parameter (before any draw), or
      an init that cannot draw some parameter (the message names it).

  Examples:
    >>> import jax, jinit, jinit.nnx
    >>> from flax import nnx
    >>> model = nnx.Linear(32, 64, rngs=nnx.Rngs(0))
    >>> model = jinit.nnx.reinit(model, jinit.he_normal, key=jax.random.key(1))
    >>> round(float(model.kernel[...].std()), 2)  # sqrt(2 / 32) = 0.25
    0.25
  """
  if not isinstance(model, nnx.Module):
    hint = (" (for a linen model use jinit.linen.reinit(module, variables, x, init, key=...))"
            if isinstance(model, nn.Module) else "")
    raise TypeError(f"model must be a flax.nnx Module, got {type(model).__name__}{hint}")
  key, checked_rules = layers.check_reinit_args(init, bias_init, key, rules)

  modules, params = {}, {}
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Module):
      modules[tuple(path)] = node
    elif isinstance(node, nnx.Param):
      params[tuple(path)] = node
  entries = []
  for path, var in params.items():
    value = var[...]
    owner = modules.get(path[:-1])
    # A tied kernel (shared with another layer) is listed once, under its first path:
    # the bias's spec then reads the kernel from its own layer.
    kernel = params.get((*path[:-1], "kernel"))
    if kernel is None and owner is not None and isinstance(getattr(owner, "kernel", None),
                                                           nnx.Variable):
      kernel = owner.kernel
    spec = _spec(owner, str(path[-1]), tuple(value.shape),
                 None if kernel is None else tuple(kernel[...].shape))
    entries.append(layers.Entry(path_str(path), tuple(value.shape), value.dtype, spec))
  new = layers.redraw(entries, init, bias_init, checked_rules, key,
                      where=f"{type(model).__name__} (nnx)")
  for path, var in params.items():
    value = new.get(path_str(path))
    if value is not None:
      var[...] = value
  return model
