"""Implementation of :mod:`jinit.linen`; its public names are re-exported there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import flax.core
import flax.linen as nn
import jax
import jax.core
import jax.numpy as jnp
from flax import nnx
from flax import traverse_util
from flax.linen import dtypes as flax_dtypes

from jinit._src import initializers as inits
from jinit._src import layers
from jinit._src import validation
from jinit._src.layers import UncoveredParametersWarning as UncoveredParametersWarning
from jinit._src.layers import bias_init as bias_init
from jinit._src.layers import kernel_init as kernel_init
from jinit._src.paths import path_str

FlaxInitializer = layers.FlaxInitializer


class Dense(nn.Module):
  """``nn.Dense`` whose initializers are jinit initializers and see the layer's fans.

  The kernel ``(in, out)`` gets ``kernel_init(key, shape, in, out, dtype=...)``
  and the bias ``(out,)`` gets ``bias_init(key, shape, in, out, dtype=...)``: the
  kernel's fans. Parameters are named ``kernel`` and ``bias`` like ``nn.Dense``,
  so the two are interchangeable. Example (PyTorch's ``nn.Linear`` default)::

    jinit.linen.Dense(50, kernel_init=jinit.torch_linear_default,
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
    validation.check_int(self.features, "features")
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


_NORMS = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm, nn.InstanceNorm)


def _einsum_equation(module: nn.Einsum, args, kwargs) -> str:
  eq = kwargs.get("einsum_str", args[1] if len(args) > 1 else None)
  return eq if eq is not None else module.einsum_str  # pyright: ignore[reportReturnType]


def _kernel_size_rank(module) -> int:
  ks = module.kernel_size
  return (1 if isinstance(ks, int) else len(ks)) + 2


def _spec(module: nn.Module, args, kwargs, name: str, shape) -> layers.ParamSpec | None:
  """The spec of parameter ``name`` of ``module`` (None: a parameter reinit does not know).

  Axes beyond the layer's own kernel are stacked copies (``nn.scan``/``nn.vmap``): for
  Dense, Conv and Embed found wherever ``variable_axes`` put them (the layer's own shape
  from its attributes and its input), for the others leading.
  """
  x: Any = args[0] if args else next(iter(kwargs.values()), None)
  n_in = x.shape[-1] if hasattr(x, "shape") and len(x.shape) else None
  if isinstance(module, _NORMS):
    return layers.ParamSpec("keep") if name in ("scale", "bias") else None
  if isinstance(module, nn.Embed):
    if name != "embedding":
      return None
    return layers.stacked_at(layers.embed_spec, shape, (module.num_embeddings, module.features))
  if name != "kernel":
    return None
  if isinstance(module, (nn.Dense, Dense)):
    if n_in is None:
      return layers.stacked(layers.dense_spec, shape, 2)
    return layers.stacked_at(layers.dense_spec, shape, (n_in, module.features))
  if isinstance(module, nn.DenseGeneral):
    canon = nn.linear._canonicalize_tuple  # pylint: disable=protected-access
    n_batch, n_in = len(canon(module.batch_dims)), len(canon(module.axis))
    return layers.stacked(layers.general_spec, shape, n_batch + n_in + len(canon(module.features)),
                          n_batch, n_in)
  if isinstance(module, nn.Conv):  # not ConvLocal: its kernel is per position
    ks = module.kernel_size
    ks = (ks,) if isinstance(ks, int) else tuple(ks)
    groups = module.feature_group_count
    if n_in is None or n_in % groups:
      return layers.stacked(layers.conv_spec, shape, _kernel_size_rank(module), groups)
    return layers.stacked_at(layers.conv_spec, shape, (*ks, n_in // groups, module.features),
                             groups)
  if isinstance(module, nn.ConvTranspose):
    if getattr(module, "feature_group_count", 1) != 1:
      return None
    return layers.stacked(layers.conv_transpose_spec, shape, _kernel_size_rank(module),
                          module.transpose_kernel)
  if isinstance(module, nn.Einsum):
    eq = _einsum_equation(module, args, kwargs)
    return layers.stacked(lambda s: layers.einsum_spec(eq, s), shape, layers.einsum_rank(eq))
  return None


def _module_records(module: nn.Module, variables, x, call_kwargs=None,
                    rngs=None) -> dict[tuple[str, ...], tuple]:
  """``{module path: (module, args, kwargs, is __call__)}`` of every module run on ``x``."""
  records: dict[tuple[str, ...], tuple] = {}

  def interceptor(next_fun, args, kwargs, context):
    if context.module.scope is not None:
      path = tuple(context.module.scope.path)
      # Any method call finds the module (e.g. an Embed used only through .attend);
      # __call__'s arguments are kept when there is one (Einsum's einsum_str).
      if context.method_name == "__call__" and (path not in records or not records[path][3]):
        records[path] = (context.module, args, kwargs, True)
      else:
        records.setdefault(path, (context.module, args, kwargs, False))
    return next_fun(*args, **kwargs)

  def run(v, x):
    return module.apply(v, x, mutable=True,
                        rngs={"dropout": jax.random.key(0)} if rngs is None else rngs,
                        **(call_kwargs or {}))

  with nn.intercept_methods(interceptor):
    jax.eval_shape(run, variables, x)
  return records


def _placed_like(value: Any, old: Any) -> Any:
  """``value`` with ``old``'s sharding (a sharded parameter stays sharded, as in nnx)."""
  if value is old or not isinstance(old, jax.Array) or isinstance(old, jax.core.Tracer) \
      or isinstance(value, jax.core.Tracer):
    return value
  return jax.device_put(value, old.sharding)


def reinit(module: nn.Module, variables: Mapping[str, Any], x: Any,
           init: inits.Initializer | None, *, key: jax.Array,
           bias_init: inits.Initializer | None = None, rules=(),
           call_kwargs: Mapping[str, Any] | None = None,
           rngs: Mapping[str, jax.Array] | None = None) -> Any:  # pylint: disable=redefined-outer-name
  r"""Re-draws a linen model's parameters with each layer's true fans; returns new variables.

  The idiom PyTorch users know as ``model.apply(init_fn)``. ``module`` is run
  once on ``x`` (abstractly, under ``jax.eval_shape``: no compute) to find every
  layer and its type, so each parameter's fans are the layer's own (see
  :mod:`jinit._src.layers` for the table): Dense, DenseGeneral (batch axes in
  neither fan), Conv (``feature_group_count``), ConvTranspose, Einsum (from its
  equation), Embed (fan_in = features), attention (its q/k/v/out DenseGeneral).
  Nothing is guessed from shapes. ``orthogonal``/``delta_orthogonal`` are drawn
  on the grouped ``(prod(in axes), prod(out axes))`` matrix.

  Per parameter (path inside ``params`` joined by ``/``, e.g.
  ``Block_0/MultiHeadDotProductAttention_0/out/kernel``):

  1. the first rule ``(pattern, init)`` whose regex ``re.search``-matches the path;
  2. else kernels and embeddings get ``init`` (None: kept), biases ``bias_init``
     (None: kept) with their layer's fans, so PyTorch's default is
     ``reinit(..., jinit.torch_linear_default, bias_init=jinit.torch_linear_default)``;
  3. norm scales/offsets are kept; any other parameter is kept and listed in one
     :class:`UncoveredParametersWarning`.

  Rule inits get the parameter's stored shape and dtype and its layer's true
  fans (None for parameters of no known layer). Each parameter's key is
  ``fold_in(key, crc32(path))``: adding a layer does not change the others.
  Other collections (``batch_stats``...) are returned unchanged.

  Example (GPT-2: normal(0.02) everywhere, 0.02/sqrt(2L) on residual projections)::

    variables = jinit.linen.reinit(
        model, variables, tokens, functools.partial(jinit.normal, std=0.02),
        key=key, bias_init=jinit.zeros,
        rules=[(r"(attn/out|mlp/fc2)/kernel",
                functools.partial(jinit.normal, std=0.02 / math.sqrt(2 * L)))])

  Args:
    module: a ``flax.linen.Module``.
    variables: its variables (``{"params": ...}``, e.g. from ``module.init``).
    x: an input ``module(x)`` accepts (an array or ``jax.ShapeDtypeStruct``).
    init: jinit initializer for kernels and embeddings, or None to keep them.
    key: a JAX PRNG key.
    bias_init: jinit initializer for biases, or None to keep them.
    rules: ordered ``(regex, init)`` overrides; the first match wins.
    call_kwargs: keyword arguments of the model's call on ``x`` (e.g. ``{"train": False}``).
    rngs: the rngs of that call (default: a fixed ``"dropout"`` key; it only traces).

  Returns:
    New variables, same structure, shapes and dtypes.

  Raises:
    TypeError: ``module`` is not a linen Module, ``variables`` has no
      ``"params"``, a bad init, key or rule.
    ValueError: a rule pattern that matches no parameter (before any draw), or
      an init that cannot draw some parameter (the message names it).

  Examples:
    >>> import jax, jax.numpy as jnp, flax.linen as nn, jinit, jinit.linen
    >>> model = nn.Sequential([nn.Dense(64), nn.relu, nn.Dense(10)])
    >>> x = jnp.ones((1, 32))
    >>> variables = model.init(jax.random.key(0), x)
    >>> new = jinit.linen.reinit(model, variables, x, jinit.xavier_uniform, key=jax.random.key(1))
    >>> new['params']['layers_0']['kernel'].shape
    (32, 64)
    >>> bool(abs(new['params']['layers_0']['kernel']).max() <= (6 / (32 + 64)) ** 0.5)
    True
  """
  if not isinstance(module, nn.Module):
    hint = (" (for an nnx model use jinit.nnx.reinit(model, init, key=...))"
            if isinstance(module, nnx.Module) else "")
    raise TypeError(f"module must be a flax.linen Module, got {type(module).__name__}{hint}")
  if not isinstance(variables, Mapping) or "params" not in variables:
    raise TypeError("variables must be a mapping with a 'params' collection (from "
                    f"module.init), got {type(variables).__name__}")
  key, checked_rules = layers.check_reinit_args(init, bias_init, key, rules)

  call_kwargs, rngs = validation.check_call_args(call_kwargs, rngs)
  records = _module_records(module, variables, x, call_kwargs, rngs)
  flat: dict[tuple, Any] = traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
  entries = []
  for path, value in flat.items():
    record = records.get(tuple(path[:-1]))
    spec = None
    if record is not None:
      mod, args, kwargs, _ = record
      spec = _spec(mod, args, kwargs, path[-1], tuple(value.shape))
      if spec is None and path[-1] == "bias":
        kernel = flat.get((*path[:-1], "kernel"))
        k_spec = None if kernel is None else _spec(mod, args, kwargs, "kernel",
                                                     tuple(kernel.shape))
        spec = None if k_spec is None else k_spec.bias()
    entries.append(layers.Entry(path_str(path), tuple(value.shape), value.dtype, spec))
  new = layers.redraw(entries, init, bias_init, checked_rules, key,
                      where=f"{type(module).__name__} (linen)")
  flat = {path: _placed_like(new.get(path_str(path), value), value)
          for path, value in flat.items()}
  params = traverse_util.unflatten_dict(flat)
  out = {**flax.core.unfreeze(variables), "params": params}  # pyright: ignore[reportArgumentType]
  if isinstance(variables, flax.core.FrozenDict):
    return flax.core.freeze(out)
  return out

