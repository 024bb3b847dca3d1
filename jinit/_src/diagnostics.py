"""Implementation of :mod:`jinit.diagnostics`; its public names are re-exported there."""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jinit._src import capture as cap
from jinit._src import model as model_lib
from jinit._src import validation

# Detection order: tanh(z) == z to float precision for tiny z, so identity comes last.
DETECTED_ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "silu", "identity")
SATURATION_MARGIN = 0.05  # a tanh/sigmoid unit is saturated within 0.05 of a bound
MAX_CANDIDATES = 8  # later tensors of z's size searched for h = f(z)
MAX_SKIPS = 16  # earlier tensors of t's shape searched for the skip a in t = a + c z
REPORT_ROLES = ("layer", "norm", "residual", "uninstrumented")
_BOUNDS = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
# Each name's functions (gelu: flax's/jax's default tanh approximation, then exact erf).
_FUNCTIONS = {
    "relu": (jax.nn.relu,), "sigmoid": (jax.nn.sigmoid,), "tanh": (jnp.tanh,),
    "gelu": (functools.partial(jax.nn.gelu, approximate=True),
             functools.partial(jax.nn.gelu, approximate=False)),
    "silu": (jax.nn.silu,), "identity": (lambda z: z,)}
# h matches f(z) when max|h - f(z)| <= tol * max|h|: float32 rounding (relative, so
# vanishing signals of 1e-9 are still told apart); tol grows for low-precision dtypes.
_MATCH_RTOL = 1e-4


def _match_tol(dtype) -> float:
  eps = float(jnp.finfo(dtype).eps) if jnp.issubdtype(dtype, jnp.floating) else 0.0
  return max(_MATCH_RTOL, 8 * eps)


# --------------------------------------------------------------------------- legacy capture


@dataclasses.dataclass(frozen=True)
class LayerCall:
  """One call of a recorded layer during ``model.apply`` (see :func:`capture_layers`)."""
  path: tuple[str, ...]  # the module's path in the params tree
  kind: str  # the module's class name
  inputs: Any
  outputs: Any


def capture_layers(model: nn.Module, variables: Any, x: Any, *,
                   layer_types: tuple[type, ...] | None = None,
                   perturbations: Sequence[Any] | None = None) -> tuple[Any, list[LayerCall]]:
  """Applies a linen ``model`` and records every kernel-layer call, in order.

  The general recorder (layers and norms, linen and nnx, shared tensors) is
  :func:`jinit._src.capture.capture`; this is its layer-only linen view.

  Args:
    model: a linen module.
    variables: its variables (``{"params": ...}``), as for ``model.apply``.
    x: the input batch.
    layer_types: module classes to record (default: every module owning a ``kernel``).
    perturbations: optional arrays, one per recorded call, added to that call's
      output (zeros give ``dL/dz`` by differentiating with respect to them).

  Returns:
    ``(model output, [LayerCall, ...])``.
  """
  def perturb(k, out):
    if perturbations is None:
      return out
    if k >= len(perturbations):
      raise ValueError("the model called more layers than there are perturbations")
    return out + perturbations[k]

  c = cap.capture_linen(model, variables, x, layer_types=layer_types, norm_types=(),
                        perturb=perturb)
  return c.output, [LayerCall(call.path, call.kind, call.inputs, call.outputs)
                    for call in c.calls]


# --------------------------------------------------------------------------- validation


def _is_model(model) -> bool:
  return cap.is_linen(model) or cap.is_nnx(model)


def check_model(model: Any) -> None:
  if not _is_model(model):
    raise TypeError(f"model must be a flax.linen Module or a flax.nnx Module, got "
                    f"{type(model).__name__}")


def _check_types(value, name, allow_none=True):
  if value is None and allow_none:
    return
  if not isinstance(value, tuple) or not all(isinstance(t, type) for t in value):
    raise TypeError(f"{name} must be a tuple of module classes{' or None' if allow_none else ''}"
                    f", got {value!r}")
  if name == "layer_types" and not value:
    raise TypeError(f"layer_types must be a non-empty tuple of module classes or None, "
                    f"got {value!r}")


def check_inputs(model: Any, x: Any, layer_types: Any = None) -> jax.Array:
  """Validates the model and the batch shared by diagnostics and LSUV; returns ``x``."""
  check_model(model)
  _check_types(layer_types, "layer_types")
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    x = np.asarray(x)
  if x.ndim < 1 or x.shape[0] == 0 or math.prod(x.shape) == 0:
    raise ValueError(f"x must be a non-empty batch (leading axis = examples), "
                     f"got shape {tuple(x.shape)}")
  validation.check_finite_array(x, "x")
  return x


def _check_labels(labels: jax.Array, out_shape, default_loss: bool) -> None:
  """Labels finite; for the default cross-entropy, class indices in range or distributions."""
  validation.check_finite_array(labels, "labels")
  if not default_loss or out_shape is None:
    return
  classes = math.prod(out_shape[1:])
  if jnp.issubdtype(labels.dtype, jnp.integer):
    lo, hi = int(jnp.min(labels)), int(jnp.max(labels))
    if labels.size != out_shape[0] or lo < 0 or hi >= classes:
      raise ValueError(f"labels: class indices must be one int in [0, {classes}) per example "
                       f"(the model has {classes} outputs), got shape {labels.shape} with "
                       f"values in [{lo}, {hi}]")
  elif labels.size != math.prod(out_shape):
    raise ValueError(f"labels: float labels are target distributions of the output's shape "
                     f"{tuple(out_shape)}, got shape {labels.shape} (class indices must be "
                     "an integer array)")


def split_args(fn: str, model: Any, args: tuple, names_linen: tuple[str, ...],
               names_nnx: tuple[str, ...], n_required: int, kwargs: dict) -> dict:
  """Maps the positional call shapes ``fn(model, *names_linen)`` / ``fn(model, *names_nnx)``."""
  check_model(model)
  names = names_nnx if cap.is_nnx(model) else names_linen
  kind = "an nnx" if cap.is_nnx(model) else "a linen"
  if len(args) > len(names):
    raise TypeError(f"{fn} takes (model, {', '.join(names)}) for {kind} model; got "
                    f"{len(args)} arguments after model")
  out = dict(zip(names, args))
  for name, value in kwargs.items():
    if name in out:
      raise TypeError(f"{fn} got {name} both positionally and as a keyword")
    if name not in names:
      raise TypeError(f"{fn} got an unexpected argument {name!r} for {kind} model "
                      f"(it takes model, {', '.join(names)})")
    out[name] = value
  missing = [n for n in names[:n_required] if n not in out]
  if missing:
    raise TypeError(f"{fn} for {kind} model takes (model, {', '.join(names)}); missing "
                    f"{', '.join(missing)}")
  return out


# --------------------------------------------------------------------------- running


def _nnx_capture(graphdef, params, rest, x, layer_types, norm_types, perturb, call_items=()):
  model = nnx.merge(graphdef, params, rest)
  return cap.capture_nnx(model, x, layer_types=layer_types, norm_types=norm_types,
                         perturb=perturb, **dict(call_items))


def _forward_backward(capture_fn, params, rest, x, labels, loss_fn, grad_tree):
  """Tensors, dL/d(output) of every call and the std of every layer's dL/dkernel.

  ``rest`` (nnx: RNG counters, batch stats) goes through every transform as an argument,
  not a closure: nnx refuses to mutate state of an outer trace.
  """
  shapes = jax.eval_shape(
      lambda p, r: [c.outputs for c in capture_fn(p, r, None, x).calls], params, rest)
  eps = [jnp.zeros(s.shape, s.dtype) for s in shapes]
  paths = []  # static, filled while tracing

  def forward(params, eps, rest):
    c = capture_fn(params, rest, lambda k, out: out + eps[k], x)
    paths[:] = [(call.path, call.role) for call in c.calls]
    loss = jnp.zeros(()) if loss_fn is None else loss_fn(c.output, labels)
    return loss, [t if isinstance(t, jax.Array) else None for t in c.tensors]

  if loss_fn is None:
    loss, tensors = forward(params, eps, rest)
    return loss, tensors, None, None
  # vjp over rest too (integer leaves get float0 cotangents): inside one transform, nnx
  # may advance RNG counters it merged there.
  loss, pullback, tensors = jax.vjp(forward, params, eps, rest, has_aux=True)
  g_params, g_eps, _ = pullback(jnp.ones_like(loss))
  tree = grad_tree(g_params)
  kernel_std = []
  for path, role in paths:
    gk = cap.lookup(tree, path, "kernel") if role == "layer" else None
    kernel_std.append(jnp.asarray(jnp.nan) if gk is None else _std(gk))
  return loss, tensors, g_eps, kernel_std


def _std(a):
  a = a.astype(jnp.float32)
  return jnp.sqrt(jnp.mean(jnp.square(a - jnp.mean(a))))


@functools.partial(jax.jit, static_argnames=("model", "loss_fn", "layer_types", "norm_types",
                                             "call_items"))
def _run_linen(model, variables, x, labels, rngs=None, *, loss_fn, layer_types, norm_types,
               call_items=()):
  def capture_fn(v, _, perturb, x):
    return cap.capture_linen(model, v, x, layer_types=layer_types, norm_types=norm_types,
                             perturb=perturb, **model_lib.apply_kwargs(call_items, rngs))
  return _forward_backward(capture_fn, variables, None, x, labels, loss_fn,
                           lambda g: g.get("params", {}))


@functools.partial(jax.jit, static_argnames=("graphdef", "loss_fn", "layer_types",
                                             "norm_types", "call_items"))
def _run_nnx(graphdef, params, rest, x, labels, *, loss_fn, layer_types, norm_types,
             call_items=()):
  def capture_fn(p, r, perturb, x):
    return _nnx_capture(graphdef, p, r, x, layer_types, norm_types, perturb, call_items)
  return _forward_backward(capture_fn, params, rest, x, labels, loss_fn, nnx.to_pure_dict)


# --------------------------------------------------------------------------- losses


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy; ``labels`` are class indices or target distributions."""
  logp = jax.nn.log_softmax(logits.reshape(logits.shape[0], -1))
  if jnp.issubdtype(labels.dtype, jnp.integer):
    return -jnp.mean(jnp.take_along_axis(logp, labels.reshape(-1, 1), axis=1))
  return -jnp.mean(jnp.sum(labels.reshape(logp.shape) * logp, axis=1))


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Histogram:
  """Counts over ``len(counts)`` equal bins between ``edges[0]`` and ``edges[-1]``."""
  counts: np.ndarray
  edges: np.ndarray

  @property
  def centers(self) -> np.ndarray:
    return 0.5 * (self.edges[1:] + self.edges[:-1])

  @property
  def density(self) -> np.ndarray:
    """Counts normalized to integrate to 1 (comparable across layers)."""
    total = self.counts.sum() * np.diff(self.edges)
    return np.divide(self.counts, total, out=np.zeros(self.counts.shape), where=total > 0)

  def to_dict(self) -> dict[str, list[float]]:
    return {"counts": self.counts.tolist(), "edges": self.edges.tolist()}


@dataclasses.dataclass(frozen=True)
class LayerReport:
  """One row: a layer call, a norm call, a residual stream or an uninstrumented kernel.

  ``input_*``: the row's own input ``x`` (the skip ``a`` for a residual row);
  ``preact_*``: its own output ``z`` (the stream for a residual row); ``act_*``: its
  activation ``h`` (``None`` when unknown or not applicable). ``saturated`` is set for
  tanh/sigmoid (share of entries of ``h`` within :data:`SATURATION_MARGIN` of a
  bound), ``dead`` for ReLU (share of units, i.e. non-batch positions, with
  ``h == 0`` for the whole batch); backward fields are None when no loss was given
  (and for residual and uninstrumented rows). ``index``: 1-based among rows of the
  same role. ``note``: how a residual stream was found, or why a kernel was not
  instrumented.
  """
  index: int
  name: str
  kind: str
  shape: tuple[int, ...] | None
  nonlinearity: str | None
  preact_mean: float | None
  preact_std: float | None
  act_mean: float | None
  act_std: float | None
  saturated: float | None
  dead: float | None
  grad_preact_std: float | None
  grad_kernel_std: float | None
  act_hist: Histogram | None
  grad_hist: Histogram | None
  role: str = "layer"
  input_mean: float | None = None
  input_std: float | None = None
  note: str | None = None

  def to_dict(self, histograms: bool = True) -> dict[str, Any]:
    d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
         if f.name not in ("act_hist", "grad_hist")}
    d["shape"] = None if self.shape is None else list(self.shape)
    if histograms:
      d["act_hist"] = None if self.act_hist is None else self.act_hist.to_dict()
      d["grad_hist"] = None if self.grad_hist is None else self.grad_hist.to_dict()
    return d


@dataclasses.dataclass(frozen=True)
class Diagnostics:
  """What :func:`diagnose` returns: every row in forward order, and the loss.

  ``layers`` are the kernel-layer rows (role ``"layer"``), ``rows`` all rows.
  """
  rows: tuple[LayerReport, ...]
  loss: float | None

  @property
  def layers(self) -> tuple[LayerReport, ...]:
    return tuple(r for r in self.rows if r.role == "layer")

  def by_role(self, role: str) -> tuple[LayerReport, ...]:
    if role not in REPORT_ROLES:
      raise ValueError(f"role must be one of {REPORT_ROLES}, got {role!r}")
    return tuple(r for r in self.rows if r.role == role)

  def column(self, field: str, role: str = "layer") -> np.ndarray:
    """One statistic for every row of ``role``, e.g. ``report.column("act_std")`` (None -> nan)."""
    if field not in {f.name for f in dataclasses.fields(LayerReport)} or field in (
        "name", "kind", "shape", "nonlinearity", "act_hist", "grad_hist", "role", "note"):
      raise ValueError(f"field must be a numeric LayerReport field, got {field!r}")
    return np.array([np.nan if getattr(l, field) is None else getattr(l, field)
                     for l in self.by_role(role)], dtype=float)

  def to_dict(self, histograms: bool = True) -> dict[str, Any]:
    return {"loss": self.loss, "rows": [r.to_dict(histograms) for r in self.rows]}

  def table(self) -> str:
    """A fixed-width text table, one row per row (``f``: ``?`` = unknown activation)."""
    head = (f"{'#':>4} {'row':<24} {'kind':<13} {'f':<8} {'x std':>9} {'z std':>9} "
            f"{'h mean':>9} {'h std':>9} {'sat/dead':>8} {'dL/dz std':>10} {'dL/dW std':>10}")
    rows = [head, "-" * len(head)]
    tag = {"layer": "", "norm": "n", "residual": "r", "uninstrumented": "u"}
    for l in self.rows:
      share = l.saturated if l.saturated is not None else l.dead
      f = "-" if l.role in ("residual", "uninstrumented") else (l.nonlinearity or "?")
      rows.append(
          f"{tag[l.role] + str(l.index):>4} {_short(l.name, 24):<24} {l.kind[:13]:<13} {f:<8} "
          f"{_fmt(l.input_std, '9.3g'):>9} {_fmt(l.preact_std, '9.3g'):>9} "
          f"{_fmt(l.act_mean, '9.3g'):>9} {_fmt(l.act_std, '9.3g'):>9} {_fmt(share, '8.1%'):>8} "
          f"{_fmt(l.grad_preact_std, '10.3g'):>10} {_fmt(l.grad_kernel_std, '10.3g'):>10}")
      if l.role == "uninstrumented":
        rows[-1] += f"  not instrumented: {l.note}"
    return "\n".join(rows)


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def _short(name: str, width: int) -> str:
  """``name`` in ``width`` characters: long CamelCase path parts become their capitals
  (``LinenBlock_0/MultiHeadDotProductAttention_0/query`` -> ``LB_0/MHDPA_0/query``),
  from the left, then the left end is cut."""
  parts = name.split("/")
  for i, part in enumerate(parts[:-1]):
    if len("/".join(parts)) <= width:
      break
    stem, sep, suffix = part.rpartition("_")
    stem = stem if sep and suffix.isdigit() else part
    caps = "".join(c for c in stem if c.isupper())
    if len(caps) >= 2:
      parts[i] = caps + (f"_{suffix}" if stem != part else "")
  short = "/".join(parts)
  return short if len(short) <= width else "~" + short[-(width - 1):]


# --------------------------------------------------------------------------- statistics


def _histogram(values: np.ndarray, bins: int) -> Histogram:
  values = np.asarray(values, np.float64).ravel()
  lo, hi = float(values.min()), float(values.max())
  if not hi > lo:  # a constant array gets a unit-wide range around it, like numpy
    lo, hi = lo - 0.5, hi + 0.5
  counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
  return Histogram(counts, edges)


def _mean_std(a) -> tuple[float, float]:
  a = np.asarray(a, np.float64)
  return float(a.mean()), float(a.std())


def _matches(h: np.ndarray, z: np.ndarray, fns, tol: float) -> bool:
  """max|h - f(z)| <= tol * max|h| for one of ``fns`` (a 256-entry pre-check first)."""
  scale = max(float(np.max(np.abs(h))), float(np.finfo(np.float32).tiny))
  head = slice(0, 256)
  for f in fns:
    hf, zf = h.ravel(), z.ravel()
    if np.max(np.abs(hf[head] - np.asarray(f(zf[head])))) > tol * scale:
      continue
    if np.max(np.abs(hf - np.asarray(f(zf)))) <= tol * scale:
      return True
  return False


def _detect(z: np.ndarray, h: np.ndarray, tol: float) -> str | None:
  for name in DETECTED_ACTIVATIONS:
    if _matches(h, z, _FUNCTIONS[name], tol):
      return name
  return None


def _activation(k, meta, tensors, tol):
  """``(name, tensor id)`` of call k's activation: the first later tensor that is f(z)."""
  call = meta.calls[k]
  z = tensors[call.output_id]
  seen, checked = set(), 0
  later = [c.input_id for c in meta.calls[k + 1:]]
  if meta.output_id is not None:
    later.append(meta.output_id)
  for tid in later:
    if tid in seen or tensors[tid] is None:
      continue
    seen.add(tid)
    if tid == call.output_id:
      return "identity", tid
    t = tensors[tid]
    if t.size != z.size:
      continue
    checked += 1
    name = _detect(z, t.reshape(z.shape), tol)
    if name is not None:
      return name, tid
    if checked >= MAX_CANDIDATES:
      break
  return None, None


def _residuals(meta, tensors, used_as_activation, tol):
  """``[(position, stream id, skip id, branch call index, gate c)]`` of found residual adds.

  ``position``: index of the first call reading the stream (``len(calls)`` for the
  model output), where the residual row goes.
  """
  outputs = {c.output_id for c in meta.calls}
  first_use: dict[int, int] = {}
  for k, c in enumerate(meta.calls):
    first_use.setdefault(c.input_id, k)
  if meta.output_id is not None:
    first_use.setdefault(meta.output_id, len(meta.calls))
  found = []
  for tid, pos in sorted(first_use.items(), key=lambda kv: kv[1]):
    t = tensors[tid]
    if tid == 0 or tid in outputs or tid in used_as_activation or t is None:
      continue
    # The branch: the latest layer/norm output of t's shape produced before t is read.
    branch = next((j for j in range(pos - 1, -1, -1)
                   if meta.calls[j].shape == t.shape), None)
    if branch is None:
      continue
    zid = meta.calls[branch].output_id
    z = np.asarray(tensors[zid], np.float64)
    zz = float(np.sum(z * z))
    t64 = np.asarray(t, np.float64)
    scale = max(float(np.max(np.abs(t64))), float(np.finfo(np.float32).tiny))
    checked = 0
    for aid in range(zid - 1, -1, -1):
      a = tensors[aid]
      if a is None or aid == tid or a.shape != t.shape:
        continue
      checked += 1
      r = t64 - np.asarray(a, np.float64)
      c = float(np.sum(r * z)) / zz if zz > 0 else 0.0
      if np.max(np.abs(r - c * z)) <= tol * scale:
        found.append((pos, tid, aid, branch, c))
        break
      if checked >= MAX_SKIPS:
        break
  return found


def _check_nonlinearity(nonlinearity, n_layers):
  allowed = ("auto",) + DETECTED_ACTIVATIONS
  if isinstance(nonlinearity, str):
    nonlinearity = [nonlinearity] * n_layers
  elif not isinstance(nonlinearity, Sequence) or len(nonlinearity) != n_layers:
    raise ValueError(f"nonlinearity must be one of {allowed} or a sequence of them, one per "
                     f"layer call ({n_layers}), got {nonlinearity!r}")
  for n in nonlinearity:
    if n not in allowed and n is not None:
      raise ValueError(f"nonlinearity must be one of {allowed} (or None), got {n!r}")
  return list(nonlinearity)


# --------------------------------------------------------------------------- diagnose


def diagnose(model: Any, *args: Any, loss_fn: Callable[[jax.Array, Any], jax.Array] | None = None,
             nonlinearity: str | Sequence[str | None] = "auto", bins: int = 50,
             layer_types: tuple[type, ...] | None = None,
             norm_types: tuple[type, ...] | None = None, warn: bool = True,
             call_kwargs: Mapping[str, Any] | None = None,
             rngs: Mapping[str, jax.Array] | None = None, **named: Any) -> Diagnostics:
  """Forward and backward signal statistics of every layer, norm and residual stream.

  Call shapes: ``diagnose(model, variables, x, labels=None)`` for a linen model,
  ``diagnose(model, x, labels=None)`` for an nnx model (run as ``model(x)``; the model
  is not modified).

  Args:
    model: a ``flax.linen.Module`` or a ``flax.nnx.Module`` (any structure).
    variables: (linen only) its variables, ``{"params": ...}``, as for ``model.apply``.
    x: a batch of inputs (leading axis = examples).
    labels: targets for the backward statistics; with ``loss_fn=None`` the loss is
      :func:`cross_entropy` (class indices or distributions). Without labels and
      loss only the forward statistics are computed.
    loss_fn: ``loss_fn(model_output, labels) -> scalar``; hashable (a plain
      function), since it is part of the compiled program's identity.
    nonlinearity: ``"auto"`` (find ``h == f(z)``), a name in :data:`DETECTED_ACTIVATIONS`,
      or one per layer call; decides whether ``saturated`` (tanh, sigmoid) or
      ``dead`` (relu) is reported. A stated name with no matching later tensor takes
      ``h = f(z)``.
    bins: bins of each histogram.
    layer_types: module classes recorded as layers; ``None`` (default): every module
      that owns a param named ``kernel``.
    norm_types: module classes recorded as norms (default: flax's LayerNorm, RMSNorm,
      BatchNorm, GroupNorm, InstanceNorm of the model's API).
    warn: warn about kernels that could not be instrumented.
    call_kwargs: keyword arguments of the model's call (e.g. ``{"train": False}``);
      hashable values (they are static in the compiled pass).
    rngs: (linen only) the rngs of the call, e.g. ``{"dropout": key}`` for Dropout.

  Returns:
    A :class:`Diagnostics` (``.rows``, ``.layers``, ``.table()``, ``.column(name)``,
    ``.to_dict()``).

  Raises:
    TypeError: ``model`` is neither a linen nor an nnx module; wrong arguments.
    ValueError: an empty batch, NaN/inf in ``x`` or ``labels``, a model without kernel
      layers, mismatched labels (for the default cross-entropy: class indices outside
      the model's outputs, float labels not shaped like the output).

  Warns:
    UserWarning: kernels that no recorded call used (listed as ``uninstrumented`` rows).

  Examples:
    >>> import jax, jinit.diagnostics
    >>> from flax import nnx
    >>> class MLP(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.l1, self.l2 = nnx.Linear(16, 32, rngs=rngs), nnx.Linear(32, 4, rngs=rngs)
    ...   def __call__(self, x):
    ...     return self.l2(jax.nn.relu(self.l1(x)))
    ...
    >>> x = jax.random.normal(jax.random.key(0), (64, 16))
    >>> report = jinit.diagnostics.diagnose(MLP(nnx.Rngs(0)), x)
    >>> [(r.role, r.name, r.nonlinearity) for r in report.rows]
    [('layer', 'l1', 'relu'), ('layer', 'l2', 'identity')]
  """
  a = split_args("diagnose", model, args, ("variables", "x", "labels"), ("x", "labels"),
                 1 if cap.is_nnx(model) else 2, named)
  x, labels, variables = a["x"], a.get("labels"), a.get("variables")
  x = check_inputs(model, x, layer_types)
  _check_types(norm_types, "norm_types")
  bins = validation.check_int(bins, "bins")
  if labels is not None:
    labels = jnp.asarray(labels)
    if labels.ndim < 1 or labels.shape[0] != x.shape[0]:
      raise ValueError(f"labels must have one entry per example ({x.shape[0]}), "
                       f"got shape {labels.shape}")
    if loss_fn is None:
      loss_fn = cross_entropy
  if loss_fn is not None and not callable(loss_fn):
    raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")

  call_kwargs, rngs = validation.check_call_args(call_kwargs, rngs)
  if rngs is not None and cap.is_nnx(model):
    raise TypeError("rngs is for a linen model's call; an nnx model holds its own nnx.Rngs")
  try:
    call_items = tuple(sorted(call_kwargs.items()))
    hash(call_items)
  except TypeError:
    raise TypeError(f"call_kwargs values must be hashable (static arguments of the compiled "
                    f"pass, e.g. train=False), got {call_kwargs!r}") from None
  runner = model_lib.Model(model, variables, layer_types=layer_types, norm_types=norm_types,
                           call_items=call_items, rngs=rngs)
  meta = runner.metadata(x)
  if labels is not None:
    _check_labels(labels, None if meta.output_id is None else meta.tensor_shapes[meta.output_id],
                  loss_fn is cross_entropy)
  layer_calls = [k for k, c in enumerate(meta.calls) if c.role == "layer"]
  if not layer_calls and not meta.kernel_paths:
    raise ValueError(f"model {type(model).__name__} calls no kernel layer (Dense/Conv/"
                     "Einsum/attention...): diagnostics and LSUV need kernel layers")
  names = _check_nonlinearity(nonlinearity, len(layer_calls))
  if runner.nnx:
    out = _run_nnx(runner.graphdef, runner.params, runner.rest, x, labels, loss_fn=loss_fn,
                   layer_types=layer_types, norm_types=runner.norm_types,
                   call_items=call_items)
  else:
    out = _run_linen(model, variables, x, labels, rngs, loss_fn=loss_fn,
                     layer_types=layer_types, norm_types=runner.norm_types,
                     call_items=call_items)
  loss, tensors, g_eps, kernel_std = jax.device_get(out)
  tensors = [None if t is None else np.asarray(t) for t in tensors]
  rows = _build_rows(meta, tensors, g_eps, kernel_std, names, int(bins))
  missing = [r for r in rows if r.role == "uninstrumented"]
  if missing and warn:
    warnings.warn("diagnose: kernels not instrumented (listed as 'uninstrumented' rows): "
                  + "; ".join(f"{r.name} ({r.note})" for r in missing), stacklevel=2)
  return Diagnostics(tuple(rows), float(loss) if loss_fn is not None else None)


def _build_rows(meta: model_lib.ModelMeta, tensors, g_eps, kernel_std, names, bins):
  activations: dict[int, tuple[str | None, int | None]] = {}
  used = set()
  layer_no = 0
  for k, c in enumerate(meta.calls):
    if c.role not in ("layer", "norm") or tensors[c.output_id] is None:
      continue
    tol = _match_tol(tensors[c.output_id].dtype)
    name, tid = _activation(k, meta, tensors, tol)
    if c.role == "layer":
      forced = names[layer_no]
      layer_no += 1
      if forced != "auto":
        name = forced
    activations[k] = (name, tid)
    if tid is not None:
      used.add(tid)
  tol = max([_match_tol(t.dtype) for t in tensors if t is not None], default=_MATCH_RTOL)
  residuals = _residuals(meta, tensors, used, tol)
  by_pos: dict[int, list] = {}
  for r in residuals:
    by_pos.setdefault(r[0], []).append(r)

  rows, counts = [], dict.fromkeys(REPORT_ROLES, 0)

  def add(**kw):
    counts[kw["role"]] += 1
    defaults = dict(shape=None, nonlinearity=None, preact_mean=None, preact_std=None,
                    act_mean=None, act_std=None, saturated=None, dead=None,
                    grad_preact_std=None, grad_kernel_std=None, act_hist=None, grad_hist=None)
    rows.append(LayerReport(index=counts[kw["role"]], **{**defaults, **kw}))

  def residual_rows(pos):
    for _, tid, aid, branch, c in by_pos.get(pos, []):
      b = meta.calls[branch]
      t_mean, t_std = _mean_std(tensors[tid])
      a_mean, a_std = _mean_std(tensors[aid])
      add(role="residual", name=f"{model_lib.layer_name(b.path, b.kind)}+skip", kind="Residual",
          shape=tuple(tensors[tid].shape), preact_mean=t_mean, preact_std=t_std,
          input_mean=a_mean, input_std=a_std,
          note=f"stream = skip + {c:.4g} * output of {model_lib.layer_name(b.path, b.kind)}")

  for k, c in enumerate(meta.calls):
    residual_rows(k)
    z = tensors[c.output_id]
    x_in = tensors[c.input_id]
    name, tid = activations.get(k, (None, None))
    h = None
    if tid is not None:
      h = tensors[tid].reshape(z.shape)
    elif name is not None and z is not None:
      h = np.asarray(_FUNCTIONS[name][0](z))
    stats = {}
    if z is not None:
      stats["preact_mean"], stats["preact_std"] = _mean_std(z)
    if x_in is not None:
      stats["input_mean"], stats["input_std"] = _mean_std(x_in)
    if h is not None:
      stats["act_mean"], stats["act_std"] = _mean_std(h)
      stats["act_hist"] = _histogram(h, bins)
      if name in _BOUNDS:
        lo, hi = _BOUNDS[name]
        stats["saturated"] = float(np.mean((h <= lo + SATURATION_MARGIN)
                                           | (h >= hi - SATURATION_MARGIN)))
      if name == "relu":
        stats["dead"] = float(np.mean(np.all(h == 0, axis=0)))
    if g_eps is not None:
      g = np.asarray(g_eps[k])
      stats["grad_preact_std"] = float(np.asarray(g, np.float64).std())
      stats["grad_hist"] = _histogram(g, bins)
      ks = float(kernel_std[k])
      stats["grad_kernel_std"] = ks if math.isfinite(ks) else None
    add(role=c.role, name=model_lib.layer_name(c.path, c.kind), kind=c.kind, shape=c.shape,
        nonlinearity=name, **stats)
  residual_rows(len(meta.calls))

  recorded = {c.path for c in meta.calls if c.role == "layer"}
  in_transform = set(meta.in_transform)
  for path in meta.kernel_paths:
    if path in recorded:
      continue
    note = ("called inside a lifted transform (scan/vmap/remat): its tensors cannot be "
            "recorded" if path in in_transform else
            "no recorded __call__ used it (another method, a transform, or not in "
            "layer_types)")
    add(role="uninstrumented", name=model_lib.layer_name(path, "kernel"), kind="kernel", note=note)
  return rows


# --------------------------------------------------------------------------- figures

_WHICH = {"activations": "act_hist", "gradients": "grad_hist"}


def plot_histograms(report: Diagnostics, which: str = "activations", *, ax: Any = None,
                    layers: Sequence[int] | None = None, title: str | None = None):
  """One density curve per layer (Glorot & Bengio 2010, Fig. 6 activations / Fig. 7 gradients).

  Args:
    report: what :func:`diagnose` returned.
    which: ``"activations"`` (``h``) or ``"gradients"`` (``dL/dz``).
    ax: a matplotlib Axes to draw on (a new figure if None).
    layers: 1-based indices into ``report.layers`` (default: every layer but the
      output); layers without a known activation are left out of ``"activations"``.
    title: the axes title.

  Returns:
    The matplotlib Figure.
  """
  if which not in _WHICH:
    raise ValueError(f"which must be one of {tuple(_WHICH)}, got {which!r}")
  all_layers = report.layers
  if ax is None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
  else:
    fig = ax.figure
  explicit = layers is not None
  if layers is None:
    layers = range(1, max(2, len(all_layers)))
  for index in layers:
    if not 1 <= index <= len(all_layers):
      raise ValueError(f"layers must be between 1 and {len(all_layers)}, got {index}")
    hist = getattr(all_layers[index - 1], _WHICH[which])
    if hist is None:
      if which == "gradients":
        raise ValueError("the report has no gradients: call diagnose with labels or loss_fn")
      if explicit:
        raise ValueError(f"layer {index} has no known activation to plot")
      continue
    ax.plot(hist.centers, hist.density, label=f"layer {index}")
  ax.set_xlabel("activation value h" if which == "activations" else "dL/dz")
  ax.set_ylabel("density")
  if title:
    ax.set_title(title)
  ax.legend(fontsize="small")
  return fig


