"""Signal-propagation diagnostics for Flax linen models built from Dense/Conv layers.

Before spending compute on training, look at what a model does to its signal at
initialization (Glorot & Bengio 2010, Figs. 6-7; He et al. 2015, §2.2). For every
call of a Dense/Conv layer, :func:`diagnose` reports

* forward: mean and std of the layer's pre-activations ``z`` (its output) and of
  its activations ``h`` (what the next layer receives, or the model's output for
  the last layer), and the share of saturated units (tanh/sigmoid: ``h`` within
  0.05 of a bound) or dead units (ReLU: ``h == 0`` for every example in the batch);
* backward: the std of ``dL/dz`` (Glorot & Bengio's back-propagated gradients)
  and of ``dL/dkernel`` (their weight gradients);
* a histogram of ``h`` and of ``dL/dz`` per layer, and :func:`plot_histograms`
  draws one curve per layer, the style of Glorot & Bengio's Figs. 6-7.

The model needs no special writing: layers are found with
``flax.linen.intercept_methods`` (every ``__call__`` of a ``layer_types`` module,
in call order), and ``dL/dz`` is the gradient with respect to a zero perturbation
added to each layer's output, the trick behind ``Module.perturb``. The activation
of layer ``k`` is the input of layer ``k + 1``, so the report assumes the layers
form a chain (an MLP, a plain CNN); the nonlinearity between two layers is detected
(``relu``, ``sigmoid``, ``tanh``, ``identity``, first match) by checking ``h == f(z)``
(a linear layer whose outputs are all below ~0.01 reads as tanh: tanh(z) == z there).

Example::

  report = jinit.diagnostics.diagnose(model, variables, x, labels)
  print(report.table())
  jinit.diagnostics.plot_histograms(report).savefig("activations.png")

References: X. Glorot and Y. Bengio, "Understanding the difficulty of training
deep feedforward neural networks", AISTATS 2010. K. He et al., "Delving Deep into
Rectifiers", ICCV 2015.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jinit import flax as jinit_flax

# Layers whose calls are recorded by default; their weights are the param "kernel".
LAYER_TYPES: tuple[type, ...] = (nn.Dense, nn.Conv, nn.ConvTranspose, jinit_flax.Dense)
# In detection order: tanh(z) == z to float precision for tiny z, so identity comes last.
NONLINEARITIES = ("relu", "sigmoid", "tanh", "identity")
SATURATION_MARGIN = 0.05  # a tanh/sigmoid unit is saturated within 0.05 of a bound
_BOUNDS = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
_FUNCTIONS = {"identity": lambda z: z, "relu": jax.nn.relu, "tanh": jnp.tanh,
              "sigmoid": jax.nn.sigmoid}
# h matches f(z) when max|h - f(z)| <= _MATCH_RTOL * max|h| (float32 rounding; relative,
# so vanishing signals of 1e-9 are still told apart).
_MATCH_RTOL = 1e-4


# --------------------------------------------------------------------------- layer capture


@dataclasses.dataclass(frozen=True)
class LayerCall:
  """One call of a Dense/Conv layer during ``model.apply``."""
  path: tuple[str, ...]  # the module's path in the params tree
  kind: str  # the module's class name
  inputs: Any
  outputs: Any


def capture_layers(model: nn.Module, variables: Any, x: Any, *,
                   layer_types: tuple[type, ...] = LAYER_TYPES,
                   perturbations: Sequence[Any] | None = None) -> tuple[Any, list[LayerCall]]:
  """Applies ``model`` and records every call of a ``layer_types`` module, in order.

  Args:
    model: a linen module.
    variables: its variables (``{"params": ...}``), as for ``model.apply``.
    x: the input batch.
    layer_types: module classes to record.
    perturbations: optional arrays, one per recorded call, added to that call's
      output (zeros give ``dL/dz`` by differentiating with respect to them).

  Returns:
    ``(model output, [LayerCall, ...])``.
  """
  calls: list[LayerCall] = []

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and isinstance(context.module, layer_types):
      if perturbations is not None:
        if len(calls) >= len(perturbations):
          raise ValueError("the model called more layers than there are perturbations")
        out = out + perturbations[len(calls)]
      inputs = args[0] if args else next(iter(kwargs.values()))
      calls.append(LayerCall(tuple(context.module.path), type(context.module).__name__,
                             inputs, out))
    return out

  with nn.intercept_methods(interceptor):
    y = model.apply(variables, x)
  return y, calls


def check_inputs(model: Any, x: Any, layer_types: Any) -> jax.Array:
  """Validates the model and the batch shared by diagnostics and LSUV; returns ``x``."""
  if not isinstance(model, nn.Module):
    raise TypeError(f"model must be a flax.linen Module, got {type(model).__name__}")
  if not isinstance(layer_types, tuple) or not layer_types or not all(
      isinstance(t, type) for t in layer_types):
    raise TypeError(f"layer_types must be a non-empty tuple of module classes, "
                    f"got {layer_types!r}")
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    x = np.asarray(x)
  if x.ndim < 1 or x.shape[0] == 0 or math.prod(x.shape) == 0:
    raise ValueError(f"x must be a non-empty batch (leading axis = examples), "
                     f"got shape {tuple(x.shape)}")
  return x


def layer_metadata(model: nn.Module, variables: Any, x: Any,
                   layer_types: tuple[type, ...] = LAYER_TYPES) -> list[dict[str, Any]]:
  """Path, kind and output shape of every recorded layer call (traced, no compute)."""
  meta: list[dict[str, Any]] = []

  def run(variables, x):
    _, calls = capture_layers(model, variables, x, layer_types=layer_types)
    meta.extend({"path": c.path, "kind": c.kind} for c in calls)
    return [c.outputs for c in calls]

  shapes = jax.eval_shape(run, variables, x)
  if not meta:
    names = ", ".join(t.__name__ for t in layer_types)
    raise ValueError(f"model {type(model).__name__} calls no layer of layer_types ({names}): "
                     "diagnostics and LSUV need Dense/Conv layers")
  for m, s in zip(meta, shapes):
    m["shape"] = tuple(s.shape)
  return meta


def _lookup(tree: Any, path: tuple[str, ...], leaf: str) -> Any:
  node = tree
  for part in path:
    if not hasattr(node, "get") or part not in node:
      return None
    node = node[part]
  return node.get(leaf) if hasattr(node, "get") else None


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
  """Statistics of one layer call. ``z``: the layer's output; ``h``: the next layer's input.

  ``saturated`` is set for tanh/sigmoid (share of entries of ``h`` within
  :data:`SATURATION_MARGIN` of a bound), ``dead`` for ReLU (share of units, i.e.
  non-batch positions, with ``h == 0`` for the whole batch); backward fields are
  None when no loss was given.
  """
  index: int
  name: str
  kind: str
  shape: tuple[int, ...]
  nonlinearity: str | None
  preact_mean: float
  preact_std: float
  act_mean: float
  act_std: float
  saturated: float | None
  dead: float | None
  grad_preact_std: float | None
  grad_kernel_std: float | None
  act_hist: Histogram
  grad_hist: Histogram | None

  def to_dict(self, histograms: bool = True) -> dict[str, Any]:
    d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
         if f.name not in ("act_hist", "grad_hist")}
    d["shape"] = list(self.shape)
    if histograms:
      d["act_hist"] = self.act_hist.to_dict()
      d["grad_hist"] = None if self.grad_hist is None else self.grad_hist.to_dict()
    return d


@dataclasses.dataclass(frozen=True)
class Diagnostics:
  """What :func:`diagnose` returns: one :class:`LayerReport` per layer call."""
  layers: tuple[LayerReport, ...]
  loss: float | None

  def column(self, field: str) -> np.ndarray:
    """One statistic for every layer, e.g. ``report.column("act_std")`` (None -> nan)."""
    if field not in {f.name for f in dataclasses.fields(LayerReport)}:
      raise ValueError(f"field must be a LayerReport field, got {field!r}")
    return np.array([np.nan if getattr(l, field) is None else getattr(l, field)
                     for l in self.layers], dtype=float)

  def to_dict(self, histograms: bool = True) -> dict[str, Any]:
    return {"loss": self.loss, "layers": [l.to_dict(histograms) for l in self.layers]}

  def table(self) -> str:
    """A fixed-width text table, one row per layer."""
    head = (f"{'#':>3} {'layer':<14} {'f':<8} {'z std':>9} {'h mean':>9} {'h std':>9} "
            f"{'sat/dead':>8} {'dL/dz std':>10} {'dL/dW std':>10}")
    rows = [head, "-" * len(head)]
    for l in self.layers:
      share = l.saturated if l.saturated is not None else l.dead
      rows.append(
          f"{l.index:>3} {l.name[-14:]:<14} {str(l.nonlinearity):<8} {l.preact_std:>9.3g} "
          f"{l.act_mean:>9.3g} {l.act_std:>9.3g} {_fmt(share, '8.1%'):>8} "
          f"{_fmt(l.grad_preact_std, '10.3g'):>10} {_fmt(l.grad_kernel_std, '10.3g'):>10}")
    return "\n".join(rows)


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


# --------------------------------------------------------------------------- computation


def _histogram(values: jax.Array, bins: int) -> tuple[jax.Array, jax.Array]:
  lo, hi = jnp.min(values), jnp.max(values)
  # A constant array gets a unit-wide range around it, like numpy.histogram.
  lo, hi = jnp.where(hi > lo, lo, lo - 0.5), jnp.where(hi > lo, hi, hi + 0.5)
  return jnp.histogram(values.ravel(), bins=bins, range=(lo, hi))


def _std(a: jax.Array) -> jax.Array:
  a = a.astype(jnp.float32)
  return jnp.sqrt(jnp.mean(jnp.square(a - jnp.mean(a))))


def _layer_stats(z: jax.Array, h: jax.Array, bins: int) -> dict[str, jax.Array]:
  z = z.astype(jnp.float32)
  h = h.astype(jnp.float32)
  stats = {"preact_mean": jnp.mean(z), "preact_std": _std(z), "act_mean": jnp.mean(h),
           "act_std": _std(h)}
  scale = jnp.maximum(jnp.max(jnp.abs(h)), jnp.finfo(jnp.float32).tiny)
  errors = []
  for name in NONLINEARITIES:
    if z.size == h.size:
      errors.append(jnp.max(jnp.abs(h - _FUNCTIONS[name](z).reshape(h.shape))) / scale)
    else:
      errors.append(jnp.asarray(jnp.inf))
  stats["match_error"] = jnp.stack(errors)
  for name, (lo, hi) in _BOUNDS.items():
    stats[f"saturated_{name}"] = jnp.mean(
        (h <= lo + SATURATION_MARGIN) | (h >= hi - SATURATION_MARGIN))
  stats["dead"] = jnp.mean(jnp.all(h == 0, axis=0))
  stats["act_hist"] = _histogram(h, bins)
  return stats


@functools.partial(jax.jit, static_argnames=("model", "loss_fn", "layer_types", "bins"))
def _compute(model, variables, x, labels, *, loss_fn, layer_types, bins):
  shapes = jax.eval_shape(
      lambda v, x: [c.outputs for c in capture_layers(model, v, x,
                                                      layer_types=layer_types)[1]],
      variables, x)
  eps = [jnp.zeros(s.shape, s.dtype) for s in shapes]

  paths = []  # static: module paths, recorded while tracing

  def forward(variables, eps):
    y, calls = capture_layers(model, variables, x, layer_types=layer_types, perturbations=eps)
    paths[:] = [c.path for c in calls]
    loss = jnp.zeros(()) if loss_fn is None else loss_fn(y, labels)
    return loss, (y, [c.inputs for c in calls], [c.outputs for c in calls])

  if loss_fn is None:
    loss, (y, inputs, outputs) = forward(variables, eps)
    grads_v = grads_eps = None
  else:
    (loss, (y, inputs, outputs)), (grads_v, grads_eps) = jax.value_and_grad(
        forward, argnums=(0, 1), has_aux=True)(variables, eps)
  out = []
  for k, (z, path) in enumerate(zip(outputs, paths)):
    if k + 1 < len(outputs):
      h = inputs[k + 1]
    elif isinstance(y, jax.Array) and y.size == z.size:
      h = y
    else:
      h = z
    stats = _layer_stats(z, h, bins)
    if grads_eps is not None:
      g = grads_eps[k]
      stats["grad_preact_std"] = _std(g)
      stats["grad_hist"] = _histogram(g, bins)
      gk = _lookup(grads_v.get("params", {}), path, "kernel")
      stats["grad_kernel_std"] = jnp.asarray(jnp.nan) if gk is None else _std(gk)
    out.append(stats)
  return loss, out


def _check_nonlinearity(nonlinearity, n_layers):
  allowed = ("auto",) + NONLINEARITIES
  if isinstance(nonlinearity, str):
    nonlinearity = [nonlinearity] * n_layers
  elif not isinstance(nonlinearity, Sequence) or len(nonlinearity) != n_layers:
    raise ValueError(f"nonlinearity must be one of {allowed} or a sequence of them, one per "
                     f"layer ({n_layers}), got {nonlinearity!r}")
  for n in nonlinearity:
    if n not in allowed and n is not None:
      raise ValueError(f"nonlinearity must be one of {allowed} (or None), got {n!r}")
  return list(nonlinearity)


def diagnose(model: nn.Module, variables: Any, x: Any, labels: Any = None, *,
             loss_fn: Callable[[jax.Array, Any], jax.Array] | None = None,
             nonlinearity: str | Sequence[str | None] = "auto", bins: int = 50,
             layer_types: tuple[type, ...] = LAYER_TYPES) -> Diagnostics:
  """Forward and backward signal statistics of every Dense/Conv layer of ``model``.

  Args:
    model: a linen module built from ``layer_types`` layers (any nesting).
    variables: its variables, ``{"params": ...}``, as passed to ``model.apply``.
    x: a batch of inputs (leading axis = examples).
    labels: targets for the backward statistics; with ``loss_fn=None`` the loss is
      :func:`cross_entropy` (class indices or distributions). Without labels and
      loss only the forward statistics are computed.
    loss_fn: ``loss_fn(model_output, labels) -> scalar``; hashable (a plain
      function), since it is part of the compiled program's identity.
    nonlinearity: ``"auto"`` (detect ``h == f(z)``), a name in
      :data:`NONLINEARITIES`, or one per layer; decides whether ``saturated``
      (tanh, sigmoid) or ``dead`` (relu) is reported.
    bins: bins of each histogram.
    layer_types: module classes counted as layers.

  Returns:
    A :class:`Diagnostics` (``.table()``, ``.column(name)``, ``.to_dict()``).

  Raises:
    TypeError: ``model`` is not a linen module.
    ValueError: an empty batch, a model without Dense/Conv layers, mismatched labels.
  """
  x = check_inputs(model, x, layer_types)
  if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
    raise ValueError(f"bins must be a positive int, got {bins!r}")
  if labels is not None:
    labels = jnp.asarray(labels)
    if labels.ndim < 1 or labels.shape[0] != x.shape[0]:
      raise ValueError(f"labels must have one entry per example ({x.shape[0]}), "
                       f"got shape {labels.shape}")
    if loss_fn is None:
      loss_fn = cross_entropy
  elif loss_fn is not None and not callable(loss_fn):
    raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")
  meta = layer_metadata(model, variables, x, layer_types)
  names = _check_nonlinearity(nonlinearity, len(meta))
  loss, stats = jax.device_get(_compute(model, variables, x, labels, loss_fn=loss_fn,
                                        layer_types=layer_types, bins=int(bins)))
  layers = []
  for k, (m, s, name) in enumerate(zip(meta, stats, names)):
    if name == "auto":
      errors = np.asarray(s["match_error"])
      matches = [n for n, e in zip(NONLINEARITIES, errors) if e <= _MATCH_RTOL]
      name = matches[0] if matches else None
    saturated = float(s[f"saturated_{name}"]) if name in _BOUNDS else None
    dead = float(s["dead"]) if name == "relu" else None
    grad = loss_fn is not None
    layers.append(LayerReport(
        index=k + 1, name="/".join(m["path"]) or m["kind"], kind=m["kind"], shape=m["shape"],
        nonlinearity=name, preact_mean=float(s["preact_mean"]),
        preact_std=float(s["preact_std"]), act_mean=float(s["act_mean"]),
        act_std=float(s["act_std"]), saturated=saturated, dead=dead,
        grad_preact_std=float(s["grad_preact_std"]) if grad else None,
        grad_kernel_std=(float(s["grad_kernel_std"])
                         if grad and np.isfinite(s["grad_kernel_std"]) else None),
        act_hist=Histogram(np.asarray(s["act_hist"][0]), np.asarray(s["act_hist"][1])),
        grad_hist=(Histogram(np.asarray(s["grad_hist"][0]), np.asarray(s["grad_hist"][1]))
                   if grad else None)))
  return Diagnostics(tuple(layers), float(loss) if loss_fn is not None else None)


# --------------------------------------------------------------------------- figures

_WHICH = {"activations": "act_hist", "gradients": "grad_hist"}


def plot_histograms(report: Diagnostics, which: str = "activations", *, ax: Any = None,
                    layers: Sequence[int] | None = None, title: str | None = None):
  """One density curve per layer (Glorot & Bengio 2010, Fig. 6 activations / Fig. 7 gradients).

  Args:
    report: what :func:`diagnose` returned.
    which: ``"activations"`` (``h``) or ``"gradients"`` (``dL/dz``).
    ax: a matplotlib Axes to draw on (a new figure if None).
    layers: 1-based layer indices to draw (default: every layer but the output).
    title: the axes title.

  Returns:
    The matplotlib Figure.
  """
  if which not in _WHICH:
    raise ValueError(f"which must be one of {tuple(_WHICH)}, got {which!r}")
  if ax is None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
  else:
    fig = ax.figure
  if layers is None:
    layers = range(1, max(2, len(report.layers)))
  for index in layers:
    if not 1 <= index <= len(report.layers):
      raise ValueError(f"layers must be between 1 and {len(report.layers)}, got {index}")
    hist = getattr(report.layers[index - 1], _WHICH[which])
    if hist is None:
      raise ValueError("the report has no gradients: call diagnose with labels or loss_fn")
    ax.plot(hist.centers, hist.density, label=f"layer {index}")
  ax.set_xlabel("activation value h" if which == "activations" else "dL/dz")
  ax.set_ylabel("density")
  if title:
    ax.set_title(title)
  ax.legend(fontsize="small")
  return fig


__all__ = ["Diagnostics", "Histogram", "LAYER_TYPES", "LayerCall", "LayerReport",
           "NONLINEARITIES", "SATURATION_MARGIN", "capture_layers", "cross_entropy",
           "diagnose", "layer_metadata", "plot_histograms"]
