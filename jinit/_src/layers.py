"""Layer-aware fans, grouped orthogonal draws, and the rule engine of model-level reinit.

Pure JAX (no Flax import): ``jinit.linen`` and ``jinit.nnx`` read each layer's
type and attributes and describe each parameter with a :class:`ParamSpec`; this
module turns specs, rules and initializers into new values.

Fans per layer (Flax layouts; ``rf`` is the product of the window dims):

=====================  ============================  ==================  ==================
layer                  kernel shape                  fan_in              fan_out
=====================  ============================  ==================  ==================
Dense / Linear         (in, out)                     in                  out
DenseGeneral /         (*batch, *in, *out)           prod(in)            prod(out)
LinearGeneral          (batch axes in neither fan)
Einsum                 from the equation             contracted axes     free output axes
                       (:func:`jinit.einsum_fans`)
Conv                   (*window, in/groups, out)     in/groups * rf      out/groups * rf
ConvTranspose          (*window, in, out)            in * rf             out * rf
Embed                  (num_embeddings, features)    features            num_embeddings
MultiHeadAttention     q/k/v (in, heads, head_dim),  in                  heads * head_dim
                       out (heads, head_dim, out)    heads * head_dim    out
LoRA                   a (in, rank), b (rank, out)   in / rank           rank / out
=====================  ============================  ==================  ==================

A bias gets its layer's (fan_in, fan_out), as PyTorch's default bias init needs.
Grouped conv: each input channel feeds out/groups output channels, so fan_out
is out/groups * rf (PyTorch's and jax's shape rule give out * rf; for groups=1
all agree). ConvTranspose: the fans of the stride-1 transposed conv (at stride
s each output sees on average in * rf / prod(s) inputs).

``orthogonal`` and ``delta_orthogonal`` are drawn on the grouped matrix: the
kernel is viewed as ``(batch, prod(window) * prod(in), prod(out))`` and each
batch slice is (semi-)orthogonal (``delta_orthogonal``: an orthogonal
``(prod(in), prod(out))`` matrix at the window's center, per batch slice).
A grouped conv's groups are batch slices. Layers stacked by ``nnx.vmap``/``nnx.scan``
or ``nn.scan`` are copies: batch slices too, in neither fan, wherever ``out_axes`` /
``variable_axes`` put the stack axis (:func:`stack_axes` finds it from the layer's own
shape).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import einsum as einsum_lib
from jinit._src import fans as fans_lib
from jinit._src import initializers as inits
from jinit._src import validation

FlaxInitializer = Callable[..., jax.Array]


class UncoveredParametersWarning(UserWarning):
  """Some parameters were left as they are: no rule and no known layer covers them."""


@dataclasses.dataclass(frozen=True)
class ParamSpec:
  """What a layer-aware reinit knows about one parameter.

  Attributes:
    kind: ``"kernel"`` (drawn with ``init``), ``"bias"`` (with ``bias_init``),
      ``"zero"`` (zero by design, e.g. LoRA's B) or ``"keep"`` (norm scales and
      offsets: kept unless a rule names them).
    fan_in, fan_out: the owning layer's true fans (None when unknown).
    view: a shape to reshape the parameter to before grouping (grouped conv), or None.
    batch, window, ins, outs: axes of the (viewed) parameter: independent slices,
      receptive field, fan-in axes, fan-out axes. Empty ``ins`` and ``outs`` mean
      "no matrix structure" (biases, norm params).
  """

  kind: str
  fan_in: int | None = None
  fan_out: int | None = None
  view: tuple[int, ...] | None = None
  batch: tuple[int, ...] = ()
  window: tuple[int, ...] = ()
  ins: tuple[int, ...] = ()
  outs: tuple[int, ...] = ()

  def bias(self) -> ParamSpec:
    """The spec of this (kernel's) layer's bias: same fans, no matrix structure."""
    return ParamSpec("bias", self.fan_in, self.fan_out)


# --------------------------------------------------------------------------- specs per layer


def _spec(kind, shape, ins, outs, batch=(), view=None) -> ParamSpec:
  """A spec whose fans are products over ``ins``/``outs`` times the window (the rest)."""
  dims = view if view is not None else shape
  used = set(ins) | set(outs) | set(batch)
  window = tuple(i for i in range(len(dims)) if i not in used)
  rf = math.prod(dims[i] for i in window)
  return ParamSpec(kind, math.prod(dims[i] for i in ins) * rf,
                   math.prod(dims[i] for i in outs) * rf, view, tuple(batch), window,
                   tuple(ins), tuple(outs))


def dense_spec(shape) -> ParamSpec:
  """Dense/Linear kernel ``(in, out)``."""
  return _spec("kernel", shape, (0,), (1,))


def general_spec(shape, n_batch: int, n_in: int) -> ParamSpec:
  """DenseGeneral/LinearGeneral kernel ``(*batch, *in, *out)``."""
  rank = len(shape)
  return _spec("kernel", shape, tuple(range(n_batch, n_batch + n_in)),
               tuple(range(n_batch + n_in, rank)), tuple(range(n_batch)))


def conv_spec(shape, groups: int = 1) -> ParamSpec:
  """Conv kernel ``(*window, in/groups, out)``; groups are independent slices."""
  shape = tuple(shape)
  *window, n_in, n_out = shape
  if groups == 1:
    return _spec("kernel", shape, (len(shape) - 2,), (len(shape) - 1,))
  if n_out % groups:
    raise ValueError(f"feature_group_count={groups} does not divide the {n_out} output "
                     f"channels of a kernel of shape {shape}")
  view = (*window, n_in, groups, n_out // groups)
  w = len(window)
  return _spec("kernel", shape, (w,), (w + 2,), (w + 1,), view=view)


def conv_transpose_spec(shape, transpose_kernel: bool = False) -> ParamSpec:
  """ConvTranspose kernel ``(*window, in, out)`` (``(*window, out, in)`` if transpose_kernel)."""
  r = len(shape)
  if transpose_kernel:
    return _spec("kernel", shape, (r - 1,), (r - 2,))
  return _spec("kernel", shape, (r - 2,), (r - 1,))


def einsum_spec(equation: str, shape) -> ParamSpec:
  """Einsum kernel: fans and grouping from ``equation`` (:func:`jinit.einsum_fans`)."""
  ins, outs, batch = einsum_lib.einsum_axes(equation, len(shape))
  # Axes in neither the inputs nor the output count in fan_in (einsum_axes puts
  # them in ``ins``), so there is no window: products over ins/outs are the fans.
  return ParamSpec("kernel", math.prod(shape[i] for i in ins),
                   math.prod(shape[i] for i in outs), None, batch, (), ins, outs)


def embed_spec(shape) -> ParamSpec:
  """Embed table ``(num_embeddings, features)``: fan_in = features (torch's and flax's)."""
  return _spec("kernel", shape, (1,), (0,))


def explicit_spec(shape, in_axis, out_axis, batch_axis=()) -> ParamSpec:
  """A kernel with named fan axes (the remaining non-batch axes are the window)."""
  # compute_fans validates the axes (types, range, overlap) and raises naming them.
  fans_lib.compute_fans(shape, in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis)
  rank = len(shape)
  norm = lambda a: tuple(i % rank for i in ((a,) if isinstance(a, int) else a))
  return _spec("kernel", tuple(shape), norm(in_axis), norm(out_axis), norm(batch_axis))


def stacked(spec_fn: Callable[..., ParamSpec], shape, rank: int, *args) -> ParamSpec | None:
  """``spec_fn`` on the trailing ``rank`` axes of ``shape``; leading extra axes are stacks.

  A layer built under ``nnx.vmap``/``nnx.scan`` or linen's ``nn.scan`` (scan over
  layers) stores its parameters with leading stacking axes: independent copies of
  the layer, so batch axes in neither fan. Returns None when ``shape`` has fewer
  than ``rank`` axes (not the layer's parameter: reinit leaves it and warns).
  """
  shape = tuple(shape)
  k = len(shape) - rank
  if k < 0:
    return None
  spec = spec_fn(shape[k:], *args)
  if k == 0:
    return spec
  shift = lambda axes: tuple(a + k for a in axes)
  return ParamSpec(spec.kind, spec.fan_in, spec.fan_out,
                   None if spec.view is None else shape[:k] + tuple(spec.view),
                   tuple(range(k)) + shift(spec.batch), shift(spec.window), shift(spec.ins),
                   shift(spec.outs))


def stack_axes(shape, layer_shape) -> tuple[int, ...] | None:
  """The axes of ``shape`` that stack copies of a layer whose own parameter is ``layer_shape``.

  ``nnx.vmap``/``nnx.scan`` put the stacking axis wherever ``out_axes`` says (an
  ``nnx.vmap(out_axes=1)`` Linear(64, 128) stores a (64, 4, 128) kernel), so the
  layer's axes are found as a subsequence of ``shape``: leading stack axes first
  (the usual case, and the reading when several fit), else the first placement
  that fits. None when ``layer_shape`` is not a subsequence of ``shape``.
  """
  shape, layer_shape = tuple(shape), tuple(layer_shape)
  k = len(shape) - len(layer_shape)
  if k < 0:
    return None
  if shape[k:] == layer_shape:
    return tuple(range(k))
  for placed in itertools.combinations(range(len(shape)), len(layer_shape)):
    if tuple(shape[i] for i in placed) == layer_shape:
      return tuple(i for i in range(len(shape)) if i not in placed)
  return None


def stacked_at(spec_fn: Callable[..., ParamSpec], shape, layer_shape, *args) -> ParamSpec | None:
  """``spec_fn`` on the layer's own axes of ``shape``; its stack axes (anywhere) are batch axes.

  ``layer_shape`` is the parameter's shape in one copy of the layer (from the layer's
  attributes); :func:`stack_axes` finds where the stacking put the others. None
  when ``shape`` holds no copy of ``layer_shape`` (not the layer's parameter).
  """
  shape = tuple(shape)
  stack = stack_axes(shape, layer_shape)
  if stack is None:
    return None
  if stack == tuple(range(len(stack))):
    return stacked(spec_fn, shape, len(layer_shape), *args)
  spec = spec_fn(tuple(layer_shape), *args)
  if spec.view is not None:  # a grouped conv stacked on an inner axis: not supported
    return None
  own = [i for i in range(len(shape)) if i not in stack]
  at = lambda axes: tuple(own[a] for a in axes)
  return ParamSpec(spec.kind, spec.fan_in, spec.fan_out, None, tuple(stack) + at(spec.batch),
                   at(spec.window), at(spec.ins), at(spec.outs))


def einsum_rank(equation: str) -> int:
  """The kernel rank that ``equation`` implies."""
  return len(einsum_lib._parse(equation)[1])  # pylint: disable=protected-access


# --------------------------------------------------------------------------- drawing


def _unwrap(init: Any) -> Any:
  """The function under any ``functools.partial`` layers."""
  while isinstance(init, functools.partial):
    init = init.func
  return init


def is_grouped_init(init: Any) -> bool:
  """Whether ``init`` is (a partial of) ``orthogonal`` or ``delta_orthogonal``."""
  return _unwrap(init) in (inits.orthogonal, inits.delta_orthogonal)


def draw(init: inits.Initializer, key: jax.Array, shape, dtype, spec: ParamSpec | None):
  """``init`` for a parameter of ``shape`` and ``dtype`` with the fans of ``spec``.

  Orthogonal and delta-orthogonal inits are drawn on the grouped matrix (module
  docstring); every other init is elementwise, so it is called once on the
  stored shape with the spec's fans.
  """
  shape = tuple(int(d) for d in shape)
  fan_in = spec.fan_in if spec is not None else None
  fan_out = spec.fan_out if spec is not None else None
  if spec is None or not is_grouped_init(init) or not (spec.ins and spec.outs):
    return init(key, shape, fan_in, fan_out, dtype=dtype)
  dims = spec.view if spec.view is not None else shape
  order = (*spec.batch, *spec.window, *spec.ins, *spec.outs)
  n_batch = math.prod(dims[i] for i in spec.batch)
  window = tuple(dims[i] for i in spec.window)
  n_in = math.prod(dims[i] for i in spec.ins)
  n_out = math.prod(dims[i] for i in spec.outs)
  if _unwrap(init) is inits.delta_orthogonal:
    if not window:
      raise ValueError("delta_orthogonal needs a kernel with a window (a conv kernel), "
                       f"got shape {shape}")
    slice_shape = (*window, n_in, n_out)
  else:
    slice_shape = (math.prod(window) * n_in, n_out)
  one = lambda k: init(k, slice_shape, fan_in, fan_out, dtype=dtype)
  if n_batch == 1:
    slices = one(key)[None]
  else:
    slices = jax.vmap(one)(jax.random.split(key, n_batch))
  permuted = slices.reshape(tuple(dims[i] for i in order))
  return jnp.transpose(permuted, tuple(np.argsort(order).tolist())).reshape(shape)


# --------------------------------------------------------------------------- shape-only adapter


def kernel_init(init: inits.Initializer, *, layout: str | None = "flax",
                in_axis: Any = None, out_axis: Any = None, batch_axis: Any = (),
                equation: str | None = None, **hyperparameters: Any) -> FlaxInitializer:
  """Wraps a jinit initializer as a Flax ``kernel_init(key, shape, dtype)``.

  Flax calls ``kernel_init`` with a shape only, so the fans must be read off it;
  say how, in one of three ways:

  * ``layout`` (default ``"flax"``): Flax's ``(in, out)`` for rank 2 and
    ``(*window, in, out)`` for rank >= 3 (see :func:`jinit.compute_fans`).
    **The guess for ambiguous ranks:** a rank-3 shape is read as a 1-D conv kernel
    ``(width, in, out)``, never as an einsum or attention kernel ``(d, heads,
    head_dim)``; for those pass ``equation`` or the axes. (Flax's ``DenseGeneral``,
    ``LinearGeneral`` and attention layers flatten their kernels to ``(in, out)``
    before calling ``kernel_init``, without their batch axes: only
    ``jinit.nnx.reinit``/``jinit.linen.reinit`` get those layers' fans exactly right.)
  * ``equation``: an einsum equation ``"inputs,kernel->output"`` (for ``Einsum``):
    fans from :func:`jinit.einsum_fans`.
  * ``in_axis``/``out_axis`` (and ``batch_axis``), with ``layout=None``.

  With ``equation`` or explicit axes, ``orthogonal``/``delta_orthogonal`` are drawn
  on the grouped ``(prod(in axes), prod(out axes))`` matrix, one per batch index.
  Example::

    nn.Dense(50, kernel_init=jinit.linen.kernel_init(jinit.kaiming_normal,
                                                     nonlinearity="relu"))
    nnx.Einsum("btd,dhk->bthk", (64, 4, 16), rngs=rngs,
               kernel_init=jinit.nnx.kernel_init(jinit.xavier_uniform,
                                                 equation="btd,dhk->bthk"))

  Args:
    init: a jinit initializer ``init(key, shape, fan_in, fan_out, *, ..., dtype)``.
    layout: how to read fans off the shape (see :func:`jinit.compute_fans`).
    in_axis, out_axis, batch_axis: explicit fan axes instead of a layout.
    equation: an einsum equation whose second operand is the kernel.
    **hyperparameters: bound as keyword arguments of ``init`` (e.g. ``gain=2.0``).

  Returns:
    ``f(key, shape, dtype=jnp.float32) -> Array``.

  Raises:
    TypeError: ``init`` is not callable, or ``equation`` is not a string.
    ValueError: conflicting ways to give fans, an unknown layout, a malformed
      equation; at call time, a shape that does not match the equation.
  """
  validation.check_init(init, "init")
  explicit = in_axis is not None or out_axis is not None
  if equation is not None:
    if explicit:
      raise ValueError("give either equation or in_axis/out_axis, not both")
    einsum_lib._parse(equation)  # pylint: disable=protected-access
    layout = None
  elif explicit:
    if layout not in (None, "flax"):
      raise ValueError("give either layout or in_axis/out_axis, not both")
    if in_axis is None or out_axis is None:
      raise ValueError("in_axis and out_axis must both be given")
    layout = None
  elif layout is None:
    raise ValueError(f"layout must be one of {', '.join(map(repr, fans_lib.LAYOUTS))}, or "
                     "in_axis and out_axis (or equation) must be given")
  else:
    validation.check_choice(layout, "layout", fans_lib.LAYOUTS)
  bound = functools.partial(init, **hyperparameters) if hyperparameters else init

  def flax_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    if equation is not None:
      return draw(bound, key, shape, dtype, einsum_spec(equation, validation.check_shape(shape)))
    if layout is None:
      return draw(bound, key, shape, dtype,
                  explicit_spec(validation.check_shape(shape), in_axis, out_axis, batch_axis))
    fan_in, fan_out = fans_lib.compute_fans(shape, layout)
    return bound(key, shape, fan_in, fan_out, dtype=dtype)

  flax_init.__name__ = f"{getattr(_unwrap(init), '__name__', 'init')}_flax"
  return flax_init


def with_fans(init: inits.Initializer, fan_in, fan_out, hyperparameters) -> FlaxInitializer:
  """``init`` with fixed fans and hyperparameters, in Flax's signature."""

  def flax_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return init(key, shape, fan_in, fan_out, dtype=dtype, **hyperparameters)

  flax_init.__name__ = f"{getattr(_unwrap(init), '__name__', 'init')}_flax"
  return flax_init


def bias_init(init: inits.Initializer, fan_in: int | None = None, fan_out: int | None = None,
              **hyperparameters: Any) -> FlaxInitializer:
  """Wraps a jinit initializer as a Flax ``bias_init`` with fans you know.

  Example (PyTorch's default Linear init in nnx)::

    nnx.Linear(784, 50, kernel_init=jinit.nnx.kernel_init(jinit.torch_linear_default),
               bias_init=jinit.nnx.bias_init(jinit.torch_linear_default, fan_in=784),
               rngs=rngs)

  Args:
    init: a jinit initializer.
    fan_in, fan_out: the layer's fans, passed to ``init``.
    **hyperparameters: bound as keyword arguments of ``init``.

  Returns:
    ``f(key, shape, dtype=jnp.float32) -> Array``.
  """
  validation.check_init(init, "init")
  return with_fans(init, fan_in, fan_out, hyperparameters)


# --------------------------------------------------------------------------- reinit engine


Rule = tuple[str, inits.Initializer]


def check_rules(rules: Any) -> list[tuple[str, re.Pattern, inits.Initializer]]:
  """``rules`` as ``[(pattern, compiled, init)]``, or raises naming the bad rule."""
  if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
    raise TypeError(f"rules must be a sequence of (pattern, init) pairs, got {rules!r}")
  out = []
  for i, rule in enumerate(rules):
    if not isinstance(rule, (tuple, list)) or len(rule) != 2:
      raise TypeError(f"rules[{i}] must be a (pattern, init) pair, got {rule!r}")
    pattern, init = rule
    if not isinstance(pattern, str):
      raise TypeError(f"rules[{i}]: the pattern must be a regex string, got {pattern!r}")
    try:
      compiled = re.compile(pattern)
    except re.error as e:
      raise ValueError(f"rules[{i}]: pattern {pattern!r} is not a valid regex: {e}") from None
    validation.check_init(init, f"rules[{i}] init (for pattern {pattern!r})")
    out.append((pattern, compiled, init))
  return out


def check_reinit_args(init: Any, bias_init: Any, key: Any, rules: Any):
  """Checks ``reinit``'s arguments (linen and nnx alike) before any work.

  Returns:
    ``(key, checked_rules)``: the key, and ``rules`` as :func:`check_rules` returns them.
  """
  if init is not None:
    validation.check_init(init, "init")
  if bias_init is not None:
    validation.check_init(bias_init, "bias_init")
  return validation.check_key(key), check_rules(rules)


def param_key(key: jax.Array, path: str) -> jax.Array:
  """The key of the parameter at ``path``: depends on its path only, not on the others."""
  return jax.random.fold_in(key, zlib.crc32(path.encode()) & 0x7FFFFFFF)


@dataclasses.dataclass
class Entry:
  """One parameter as reinit sees it: path (``/``-joined), shape, dtype, spec (None: unknown)."""

  path: str
  shape: tuple[int, ...]
  dtype: Any
  spec: ParamSpec | None


def redraw(entries: Sequence[Entry], init, bias_init, rules, key,
           where: str) -> dict[str, jax.Array]:
  """New values of the parameters that change, keyed by path (nothing is written here).

  The first matching rule wins; then the default for the spec's kind: ``init``
  for kernels, ``bias_init`` for biases (None: kept), zeros for ``"zero"``,
  nothing for ``"keep"``. Parameters with no spec and no rule are kept and
  listed in one :class:`UncoveredParametersWarning`.

  Each jinit initializer compiles once per (shape, fans, hyperparameters), so a
  model of repeated blocks compiles each distinct layer once.

  Raises:
    ValueError: a rule that matches no parameter (checked before any draw).
  """
  plan, uncovered, used = [], [], set()
  for e in entries:
    chosen = next((i for i, (_, compiled, _) in enumerate(rules) if compiled.search(e.path)),
                  None)
    if chosen is not None:
      used.add(chosen)
      plan.append((e, rules[chosen][2]))
    elif e.spec is None:
      uncovered.append(e.path)
    elif e.spec.kind == "kernel" and init is not None:
      plan.append((e, init))
    elif e.spec.kind == "bias" and bias_init is not None:
      plan.append((e, bias_init))
    elif e.spec.kind == "zero" and init is not None:
      # Zero by design (LoRA's B) when the layers are re-drawn; with init=None the
      # kernels are kept, and so is a (fine-tuned) B.
      plan.append((e, inits.zeros))
  unused = [f"rules[{i}] {rule[0]!r}" for i, rule in enumerate(rules) if i not in used]
  if unused:
    raise ValueError(f"rules: pattern(s) {', '.join(unused)} match no parameter of the {where} "
                     "(a rule shadowed by an earlier one matches none either); its parameter "
                     f"paths are: {', '.join(e.path for e in entries)}")

  new = {}
  for e, init_ in plan:
    try:
      value = draw(init_, param_key(key, e.path), e.shape, e.dtype, e.spec)
    except (TypeError, ValueError) as err:
      raise type(err)(f"reinit: parameter {e.path!r} of shape {e.shape}: {err}") from err
    if value.shape != e.shape or value.dtype != e.dtype:
      raise ValueError(f"reinit: the init for parameter {e.path!r} returned shape "
                       f"{value.shape} and dtype {value.dtype}, expected {e.shape} and "
                       f"{jnp.dtype(e.dtype)}")
    new[e.path] = value
  if uncovered:
    warnings.warn(f"reinit left {len(uncovered)} parameter(s) of the {where} unchanged: no rule "
                  f"and no known layer covers them: {', '.join(uncovered)}. Add a rule "
                  f"(pattern, init) to re-draw them.", UncoveredParametersWarning, stacklevel=3)
  return new
