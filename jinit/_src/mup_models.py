"""Implementation of the Flax-model parts of :mod:`jinit.mup`; re-exported there."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jinit._src import model as model_lib
from jinit._src import umup
from jinit._src import validation
from jinit._src.mup import ParamMeta
from jinit._src.mup import TABLES
from jinit._src.mup import build_meta
from jinit._src.mup import check_depth
from jinit._src.mup import check_parametrization
from jinit._src.mup import flat_shapes

# --------------------------------------------------------------------------- shapes


def _is_shape_dict(obj: Any) -> bool:
  return isinstance(obj, Mapping) and bool(obj) and all(
      isinstance(k, str) and isinstance(v, tuple) and all(isinstance(d, int) for d in v)
      for k, v in obj.items())


def base_shapes(model: Any, *example_args: Any,
                **example_kwargs: Any) -> dict[str, tuple[int, ...]]:
  """``{path: shape}`` of a model's parameters (the "base shapes" of ``mup.set_base_shapes``).

  Args:
    model: an ``nnx.Module`` (its ``nnx.Param`` variables; ``nnx.eval_shape`` of a
      constructor avoids allocating), a linen ``nn.Module`` together with example inputs
      (initialized abstractly with ``jax.eval_shape``, no weights are allocated), linen
      variables / params or any pytree of arrays, or a ``{path: shape}`` dict (returned as is).
    *example_args, **example_kwargs: inputs for a linen module's ``init``.

  Returns:
    ``{"layer/kernel": shape}``, paths ``"/"``-joined, without linen's ``params`` prefix.
  """
  if _is_shape_dict(model):
    return dict(model)
  if isinstance(model, nnx.Module):
    return flat_shapes(nnx.state(model, nnx.Param))
  if isinstance(model, nn.Module):
    if not example_args and not example_kwargs:
      raise ValueError("model: a linen module needs example inputs to find its parameters' "
                       "shapes: base_shapes(module, x)")
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), *example_args,
                                                  **example_kwargs))
    return flat_shapes(variables.get("params", variables))
  if isinstance(model, Mapping) or isinstance(model, (list, tuple)):
    if isinstance(model, Mapping) and "params" in model:
      model = model["params"]
    shapes = flat_shapes(model)
    if shapes:
      return shapes
  raise TypeError("model must be an nnx.Module, a linen Module (with example inputs), a "
                  f"params pytree or a {{path: shape}} dict, got {type(model).__name__}")


def infinite_dims(model: Any, base_model: Any, *example_args: Any,
                  parametrization: str = "mup", readout: str | Sequence[str] | None = None,
                  fan_in_axes: Mapping[str, Sequence[int]] | None = None,
                  depth: int | None = None, base_depth: int | None = None,
                  branches: str | Sequence[str] | Callable[[str], bool] | None = None,
                  **example_kwargs: Any) -> dict[str, ParamMeta]:
  """Compares ``model`` with ``base_model``: per parameter, its infinite axes, role and rules.

  An axis is *infinite* (grows with width) when its size differs between the two models,
  as in ``mup.set_base_shapes``. Fan-in axes come before fan-out axes in Flax layouts; of a
  kernel's infinite axes the first is fan-in (``fan_in_axes={path: axes}`` overrides).
  The readout is the one kernel whose infinite axes are all fan-in.

  Args:
    model, base_model: anything :func:`base_shapes` accepts (both nnx, both linen with the
      same example inputs, params, or shape dicts).
    *example_args, **example_kwargs: inputs for linen modules' ``init``.
    parametrization: ``"mup"`` (Tensor Programs V Table 8, as ``mup``), ``"mup_table3"``,
      ``"sp"`` (every lr multiplier 1), or μP with depth transfer: ``"depth_mup"``
      (Tensor Programs VI, branches ``x 1/sqrt(depth_mult)``) or ``"completep"`` (Dey et
      al. 2025, branches ``x 1/depth_mult``); see :data:`BRANCH_TABLES`; or ``"u_mup"``
      (u-μP, Blake et al. 2025: rules in absolute fans, embeddings ``input``, every other
      kernel ``hidden`` or the readout; ``base_model`` may then be ``model`` itself with
      ``readout=`` given, and ``depth=L`` needs no ``base_depth``).
    readout: the readout's path (``"head"`` or ``"head/kernel"``) when it cannot be found
      from the shapes (no kernel, or several, with only infinite fan-in).
    fan_in_axes: ``{path: axes}`` for kernels whose fan-in is not the first infinite axis.
    depth, base_depth: residual blocks of ``model`` and of the model the lr was tuned on
      (``base_model`` itself has ``model``'s depth and the base width); required by the
      depth parametrizations, whose branch lr and epsilon rules use ``depth / base_depth``.
    branches: which parameters lie inside residual branches: a path prefix (``"blocks"``),
      a sequence of them, or a predicate ``path -> bool``; required by the depth
      parametrizations. The model multiplies each branch by :func:`branch_multiplier`.

  Returns:
    ``{path: ParamMeta}``; pass it to :func:`scale_updates` (and :func:`scale_eps`).

  Raises:
    ValueError: the models have different parameters or ranks (``base_model``), the readout
      cannot be identified (``readout``), a bad ``parametrization``, a depth parametrization
      without ``depth``/``base_depth``/``branches``, a ``branches`` prefix matching nothing.
    TypeError: a non-int ``depth``/``base_depth``, ``branches`` of another type.

  Examples:
    >>> import jinit.mup
    >>> from flax import nnx
    >>> class MLP(nnx.Module):
    ...   def __init__(self, width, rngs):
    ...     self.l1 = nnx.Linear(16, width, rngs=rngs)
    ...     self.l2 = nnx.Linear(width, width, rngs=rngs)
    ...     self.out = nnx.Linear(width, 4, rngs=rngs)
    ...
    >>> meta = jinit.mup.infinite_dims(MLP(256, nnx.Rngs(0)), MLP(64, nnx.Rngs(0)))
    >>> [(path, m.role) for path, m in meta.items() if path.endswith('kernel')]
    [('l1/kernel', 'input'), ('l2/kernel', 'hidden'), ('out/kernel', 'output')]
  """
  check_parametrization(parametrization)
  check_depth(parametrization, depth, base_depth, branches)  # before any tracing
  shapes = base_shapes(model, *example_args, **example_kwargs)
  try:
    base = base_shapes(base_model, *example_args, **example_kwargs)
  except TypeError as e:
    raise TypeError(f"base_model: {e}") from None
  return build_meta(shapes, base, parametrization=parametrization, readout=readout,
                    fan_in_axes=fan_in_axes, depth=depth, base_depth=base_depth,
                    branches=branches)


# --------------------------------------------------------------------------- readout


def _readout_std_and_mult(in_features, base_in_features, parametrization, output_mult):
  check_parametrization(parametrization)
  in_features = validation.check_int(in_features, "in_features")
  output_mult = validation.check_real(output_mult, "output_mult")
  if parametrization == "u_mup":  # N(0, 1), forward 1/fan_in (absolute: no base width)
    return 1.0, output_mult / in_features
  base = in_features if base_in_features is None else base_in_features
  base = validation.check_int(base, "base_in_features")
  width_mult = in_features / base
  r = TABLES[parametrization]["output"]
  # std at the base width is LeCun's 1/sqrt(base); it then scales as sqrt(init_var(width_mult)).
  std = math.sqrt(r.init_var(width_mult, 1.0) / base)
  return std, output_mult * r.multiplier(width_mult, 1.0)


class Readout(nnx.Module):
  """The μP readout for nnx: ``y = (mult * x) @ kernel + bias``, ``mult = output_mult/width_mult``.

  ``width_mult = in_features / base_in_features``. Under ``"mup"`` (Table 8) the kernel is
  drawn N(0, 1/base_in_features) (width-independent, what ``mup.MuReadout`` holds after
  ``set_base_shapes`` rescales it) and the input is multiplied by ``output_mult /
  width_mult``; under ``"mup_table3"`` the kernel is N(0, 1/(base_in * width_mult^2)) with no
  multiplier; under ``"sp"`` (or ``base_in_features=None``) it is a LeCun-normal Dense.
  Bias init zero; ``zero_init=True`` zero-inits the kernel as ``MuReadout(readout_zero_init=True)``.

  Under ``"u_mup"`` the kernel is N(0, 1) and the layer is :func:`jinit.mup.unit_readout`
  (forward ``1/in_features``, unit-scaled gradients; ``base_in_features`` is not used),
  then ``output_mult`` in the forward pass only (:func:`jinit.mup.scale_fwd`).

  Args:
    in_features, out_features: sizes.
    base_in_features: ``in_features`` of the base model (None: this model is the base).
    output_mult: a tunable constant on the logits (``mup``'s ``output_mult``).
    zero_init: zero kernel.
    use_bias: add a bias.
    parametrization: ``"mup"``, ``"mup_table3"``, ``"sp"`` or ``"u_mup"``.
    rngs: ``nnx.Rngs``.
  """

  def __init__(self, in_features: int, out_features: int, *, base_in_features: int | None = None,
               output_mult: float = 1.0, zero_init: bool = False, use_bias: bool = True,
               parametrization: str = "mup", param_dtype=jnp.float32, rngs: nnx.Rngs):
    std, self.mult = _readout_std_and_mult(in_features, base_in_features, parametrization,
                                           output_mult)
    shape = (in_features, out_features)
    kernel = (jnp.zeros(shape, param_dtype) if zero_init else
              jax.random.normal(rngs.params(), shape, param_dtype) * jnp.asarray(std, param_dtype))
    self.kernel = nnx.Param(kernel)
    self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None
    self.unit = parametrization == "u_mup"
    self.output_mult = output_mult

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.unit:
      y = umup.unit_readout(x, self.kernel[...], None if self.bias is None else self.bias[...])
      return y if self.output_mult == 1.0 else umup.scale_fwd(y, self.output_mult)
    y = (x * jnp.asarray(self.mult, x.dtype)) @ self.kernel[...]
    if self.bias is not None:
      y = y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))
    return y


class LinenReadout(nn.Module):
  """The μP readout for linen (see :class:`Readout`): ``Dense`` with multiplier and μP init."""
  features: int
  base_in_features: int | None = None
  output_mult: float = 1.0
  zero_init: bool = False
  use_bias: bool = True
  parametrization: str = "mup"
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    std, mult = _readout_std_and_mult(x.shape[-1], self.base_in_features, self.parametrization,
                                      self.output_mult)
    init = nn.initializers.zeros if self.zero_init else nn.initializers.normal(std)
    kernel = self.param("kernel", init, (x.shape[-1], self.features), self.param_dtype)
    bias = (self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            if self.use_bias else None)
    if self.parametrization == "u_mup":
      y = umup.unit_readout(x, kernel, bias)
      return y if self.output_mult == 1.0 else umup.scale_fwd(y, self.output_mult)
    y = (x * jnp.asarray(mult, x.dtype)) @ kernel
    if bias is not None:
      y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
    return y


# --------------------------------------------------------------------------- attention


def attention_scale(head_dim: int, base_head_dim: int | None = None, *,
                    parametrization: str = "mup", attn_mult: float = 1.0) -> float:
  """The attention-logit scale: ``attn_mult * sqrt(base_head_dim) / head_dim`` under μP.

  μP scales logits by ``1/d`` instead of ``1/sqrt(d)`` (Tensor Programs V, §4 and
  Table 3 footnote); the constant ``sqrt(base_head_dim)`` makes it equal SP's
  ``1/sqrt(d)`` at the base width. Under ``"sp"``: ``attn_mult / sqrt(head_dim)``.
  Under ``"u_mup"``: ``attn_mult / head_dim`` (absolute, no base; Blake et al. 2025).
  """
  check_parametrization(parametrization)
  for name, v in (("head_dim", head_dim), ("base_head_dim", base_head_dim)):
    if v is not None:
      validation.check_int(v, name)
  if parametrization == "sp":
    return attn_mult / math.sqrt(head_dim)
  if parametrization == "u_mup":
    return attn_mult / head_dim
  base = head_dim if base_head_dim is None else base_head_dim
  return attn_mult * math.sqrt(base) / head_dim


def attention_fn(base_head_dim: int | None = None, *, parametrization: str = "mup",
                 attn_mult: float = 1.0, inner: Callable | None = None,
                 causal: bool = False) -> Callable:
  """An ``attention_fn`` for ``nnx.MultiHeadAttention`` / linen ``MultiHeadDotProductAttention``.

  It rescales the query so that Flax's ``dot_product_attention`` (which divides by
  ``sqrt(d)``) computes logits ``q.k * attention_scale(d, base_head_dim)``.

  Args:
    base_head_dim: the head dim of the base model (None: the model's own, i.e. ``1/d``
      scaled to ``1/sqrt(d)`` at this width).
    parametrization: ``"mup"``/``"mup_table3"`` (``1/d``), ``"sp"`` (``1/sqrt(d)``) or
      ``"u_mup"`` (``1/d``, and the output times :func:`jinit.mup.attention_output_scale`
      in the forward pass, the gradients of q, k, v times the same in the backward pass, as
      :func:`jinit.mup.unit_attention`; the projections around it are not unit-scaled).
    attn_mult: a tunable constant on the logits.
    inner: the attention to call (default: nnx's or linen's ``dot_product_attention``, by
      the kind of module that calls it).
    causal: u-μP only: the mask the module passes is causal (the scale model differs).
  """
  check_parametrization(parametrization)
  if not isinstance(causal, bool):
    raise TypeError(f"causal must be a bool, got {type(causal).__name__}")

  def fn(query, key, value, *args, **kwargs):
    d = query.shape[-1]
    factor = attention_scale(d, base_head_dim, parametrization=parametrization,
                             attn_mult=attn_mult) * math.sqrt(d)
    impl = inner
    if impl is None:
      impl = (nn.dot_product_attention if isinstance(kwargs.get("module"), nn.Module)
              else nnx.dot_product_attention)
    if parametrization != "u_mup":
      return impl(query * jnp.asarray(factor, query.dtype), key, value, *args, **kwargs)
    s = umup.attention_output_scale(d, value.shape[-3], mult=attn_mult, causal=causal)
    q, k, v = (umup.scale_bwd(a, s) for a in (query, key, value))
    out = impl(q * jnp.asarray(factor, query.dtype), k, v, *args, **kwargs)
    return umup.scale_fwd(out, s)

  return fn


def zero_query(model: Any) -> Any:
  """Zero-inits every attention query projection (``mup``'s ``query_zero_init``).

  Args:
    model: an ``nnx.Module`` (each ``nnx.MultiHeadAttention``'s ``query`` kernel is zeroed
      in place) or linen params/variables (every ``.../query/kernel`` leaf is zeroed).

  Returns:
    The model (nnx) or new params (linen).
  """
  if isinstance(model, nnx.Module):
    found = 0
    for _, m in nnx.iter_modules(model):
      if isinstance(m, nnx.MultiHeadAttention):
        m.query.kernel[...] = jnp.zeros_like(m.query.kernel[...])
        found += 1
    if not found:
      raise ValueError("model has no nnx.MultiHeadAttention to zero the query of")
    return model
  hits = []

  def zero(kp, leaf):
    p = model_lib.path_str(kp, drop_params=True)
    if p.endswith("query/kernel"):
      hits.append(p)
      return jnp.zeros_like(leaf)
    return leaf

  out = jax.tree_util.tree_map_with_path(zero, model)
  if not hits:
    raise ValueError("model has no '.../query/kernel' parameter to zero")
  return out


# --------------------------------------------------------------------------- coord check

NNX_LAYER_TYPES: tuple[type, ...] = (
    nnx.Linear, nnx.LinearGeneral, nnx.Einsum, nnx.Conv, nnx.Embed, nnx.LayerNorm, nnx.RMSNorm,
    nnx.MultiHeadAttention, Readout)
LINEN_LAYER_TYPES: tuple[type, ...] = (
    nn.Dense, nn.DenseGeneral, nn.Einsum, nn.Conv, nn.Embed, nn.LayerNorm, nn.RMSNorm,
    nn.MultiHeadDotProductAttention, LinenReadout)
METRICS = ("rms", "l1")
OUTPUT = "<output>"  # the model's output, the last row of a coord check


def _size(a: jax.Array, metric: str) -> jax.Array:
  a = jnp.asarray(a, jnp.float32)
  return jnp.sqrt(jnp.mean(a * a)) if metric == "rms" else jnp.mean(jnp.abs(a))


def _wrap_model(made, layer_types):
  if isinstance(made, nnx.Module):
    return model_lib.Model(made, layer_types=layer_types or NNX_LAYER_TYPES, norm_types=())
  if (isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module)):
    return model_lib.Model(made[0], made[1], layer_types=layer_types or LINEN_LAYER_TYPES,
                           norm_types=())
  raise TypeError("make_model must return an nnx.Module or a (linen Module, variables) pair, "
                  f"got {type(made).__name__}")


def _default_loss(out, y):
  import optax

  if jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
  return optax.softmax_cross_entropy(out, y).mean()


def _slopes(widths: Sequence[int], sizes: np.ndarray) -> np.ndarray:
  """Least-squares slope of log(size) vs log(width) along the last axis."""
  lw = np.log(np.asarray(widths, np.float64))
  lw = lw - lw.mean()
  ls = np.log(np.maximum(sizes.astype(np.float64), np.finfo(np.float64).tiny))
  ls = ls - ls.mean(axis=-1, keepdims=True)
  return (ls * lw).sum(axis=-1) / (lw * lw).sum()


@dataclasses.dataclass(frozen=True)
class CoordCheck:
  """Layer output sizes vs width over training steps, and their log-log slopes.

  Attributes:
    widths: the widths, increasing.
    layers: layer paths in call order, then ``"<output>"`` (the model's output).
    sizes: ``(layers, steps + 1, widths)``: the metric of each layer's output after ``t``
      updates (``t = 0``: at init), mean over seeds.
    slopes: ``(layers, steps + 1)``: slope of ``log size`` vs ``log width`` (least squares).
      μP: ~0 at every step; SP: grows after step 0 for layers fed by hidden weights.
    metric: ``"rms"`` or ``"l1"`` (mean ``|x|``, mup's default).
  """
  widths: tuple[int, ...]
  layers: tuple[str, ...]
  sizes: np.ndarray
  slopes: np.ndarray
  metric: str
  losses: np.ndarray  # (steps + 1, widths): training loss before each update, mean over seeds

  @property
  def steps(self) -> int:
    return self.sizes.shape[1] - 1

  def slope(self, layer: str, step: int = -1) -> float:
    return float(self.slopes[self.layers.index(layer), step])

  def max_abs_slope(self, step: int = -1, layers: Sequence[str] | None = None) -> float:
    rows = [self.layers.index(name) for name in (layers or self.layers)]
    return float(np.max(np.abs(self.slopes[rows, step])))

  def table(self) -> str:
    head = ["layer"] + [f"slope t={t}" for t in range(self.steps + 1)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, name in enumerate(self.layers):
      lines.append("| " + " | ".join([name] + [f"{s:+.3f}" for s in self.slopes[i]]) + " |")
    return "\n".join(lines)

  def to_dict(self) -> dict[str, Any]:
    return {"widths": list(self.widths), "layers": list(self.layers), "metric": self.metric,
            "sizes": self.sizes.tolist(), "slopes": self.slopes.tolist(),
            "losses": self.losses.tolist()}

  def plot(self, title: str | None = None, steps: Sequence[int] | None = None):
    """mup's ``plot_coord_data``: one panel per step, size vs width (log-log), a line per layer.

    Returns the matplotlib figure (save it with ``experiments.common.results.save_figure``
    or ``fig.savefig``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = list(range(self.steps + 1)) if steps is None else list(steps)
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3.2), sharey=True,
                             squeeze=False)
    colors = plt.cm.viridis(np.linspace(0, 0.95, len(self.layers)))
    for ax, t in zip(axes[0], steps):
      for i, name in enumerate(self.layers):
        ax.plot(self.widths, self.sizes[i, t], "o-", ms=3, color=colors[i], label=name)
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.set_title(f"t={t}")
      ax.set_xlabel("width")
      ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean |x|" if self.metric == "l1" else "RMS of layer output")
    axes[0][-1].legend(fontsize=6, loc="best")
    if title:
      fig.suptitle(title)
    fig.tight_layout()
    return fig


def _check_widths(widths) -> tuple[int, ...]:
  if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
    raise TypeError(f"widths must be a sequence of ints, got {type(widths).__name__}")
  widths = tuple(widths)
  if len(widths) < 2:
    raise ValueError(f"widths must hold at least 2 widths to fit a slope, got {widths}")
  for i, w in enumerate(widths):
    validation.check_int(w, f"widths[{i}]")
  if any(b <= a for a, b in zip(widths, widths[1:])):
    raise ValueError(f"widths must be strictly increasing, got {widths}")
  return tuple(int(w) for w in widths)


def coord_check(make_model: Callable[[int, int], Any], widths: Sequence[int], x: Any, y: Any, *,
                steps: int = 3, optimizer: Any, loss_fn: Callable | None = None, seeds: int = 1,
                metric: str = "rms", layer_types: tuple[type, ...] | None = None) -> CoordCheck:
  """The coordinate check of Tensor Programs V (§D.1): layer output sizes vs width over training.

  For each width and seed, trains ``make_model(width, seed)`` for ``steps`` steps on the
  batch ``(x, y)`` and records the size (RMS or mean ``|.|``) of every layer's output
  before each update and after the last. The verdict is the slope of ``log size`` against
  ``log width`` per layer and step: under μP it is ~0 at every step; under SP the layers
  after a hidden weight grow with width once training starts (Adam: slope ~1 for a layer's
  update, ``Δh = ΔW h`` summing ``width`` correlated terms).

  Args:
    make_model: ``(width, seed) -> model``: an ``nnx.Module``, or ``(linen_module,
      variables)``. A deterministic model (no dropout; batch stats are not updated).
    widths: strictly increasing widths (at least 2).
    x, y: one batch of inputs and targets (integer labels or one-hot / soft targets for the
      default softmax cross-entropy).
    steps: training steps (>= 0).
    optimizer: an ``optax.GradientTransformation`` used at every width, or ``width ->
      GradientTransformation`` (for μP: chain ``jinit.mup.scale_updates`` with that width's
      metadata).
    loss_fn: ``(output, y) -> scalar``; default: mean softmax cross-entropy.
    seeds: seeds per width (sizes are averaged over them).
    metric: ``"rms"`` or ``"l1"``.
    layer_types: module classes whose outputs are recorded (default: Linear/Dense, Conv,
      Embed, norms, attention, the readouts), plus the model's output.

  Returns:
    A :class:`CoordCheck`; ``.plot()`` draws mup's figure, ``.table()`` the slopes.

  Raises:
    ValueError: widths not strictly increasing (``widths``), bad ``steps``/``seeds``/``metric``.
    TypeError: ``optimizer`` neither a transform nor a callable; ``make_model`` returning
      something else than a model.
  """
  import optax

  widths = _check_widths(widths)
  steps = validation.check_int(steps, "steps", minimum=0)
  seeds = validation.check_int(seeds, "seeds")
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
  if isinstance(optimizer, optax.GradientTransformation):
    get_tx = lambda width: optimizer  # noqa: E731
  elif callable(optimizer):
    get_tx = optimizer
  else:
    raise TypeError("optimizer must be an optax.GradientTransformation or a callable "
                    f"width -> GradientTransformation, got {type(optimizer).__name__}")
  loss_fn = loss_fn or _default_loss
  x, y = jnp.asarray(x), jnp.asarray(y)

  layers: list[str] = []  # layer names in call order, from the first width traced
  sizes = np.zeros((0,))
  losses = np.zeros((steps + 1, len(widths)))
  for w_i, width in enumerate(widths):
    tx = get_tx(width)
    if not isinstance(tx, optax.GradientTransformation):
      raise TypeError(f"optimizer({width}) must return an optax.GradientTransformation, got "
                      f"{type(tx).__name__}")
    for seed in range(seeds):
      model = _wrap_model(make_model(width, seed), layer_types)

      order: list[str] = []  # layer names in call order, filled while tracing

      def loss_and_record(params, model=model, order=order):
        out, record = model.apply(params, x)
        order[:] = list(record) + [OUTPUT]  # a dict through jax comes back key-sorted
        return loss_fn(out, y), [_size(v, metric) for v in record.values()] + [_size(out, metric)]

      @jax.jit
      def step(params, opt_state, tx=tx, loss_and_record=loss_and_record):
        (loss, stats), grads = jax.value_and_grad(loss_and_record, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, stats

      params = model.params
      opt_state = tx.init(params)
      for t in range(steps + 1):
        new_params, new_state, loss, values = step(params, opt_state)
        stats = dict(zip(order, values))
        if not layers:
          layers = list(order)
          sizes = np.zeros((len(layers), steps + 1, len(widths)))
        if set(stats) != set(layers):
          raise ValueError(f"make_model({width}, {seed}) records layers {sorted(stats)}, the "
                           f"first width recorded {sorted(layers)}: same architecture needed")
        for i, name in enumerate(layers):
          sizes[i, t, w_i] += float(stats[name]) / seeds
        losses[t, w_i] += float(loss) / seeds
        params, opt_state = new_params, new_state
  if not np.all(np.isfinite(sizes)):
    bad = [layers[i] for i in np.unique(np.nonzero(~np.isfinite(sizes))[0])]
    raise FloatingPointError(f"coord_check: non-finite layer outputs in {bad}; lower the "
                             "learning rate")
  return CoordCheck(widths, tuple(layers), sizes, _slopes(widths, sizes), metric, losses)
