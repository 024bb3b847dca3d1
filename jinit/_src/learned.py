r"""Implementation of :mod:`jinit.learned`: learned initialization (MetaInit, GradInit).

Both learn one positive scale per parameter tensor of an already initialized model,
from a batch, and return the rescaled model next to the scales:

* **MetaInit** (Dauphin & Schoenholz 2019): each weight tensor's norm is learned by
  descending the *gradient quotient*

  .. math:: GQ(\theta) = \frac{1}{N}\Big\| \frac{g - Hg}{g + \epsilon\,\mathrm{sign}(g)}
            - 1 \Big\|_1, \qquad g = \nabla L(\theta),\ Hg = \nabla^2 L(\theta)\, g

  (small when the gradient barely changes after a step: a flat, well-conditioned start),
  with signed SGD with momentum, as google/init2winit's ``init_lib/meta_init.py``.
* **GradInit** (Zhu et al. 2021): the scales m minimize the loss after one step of
  the target optimizer, ``L(m*theta - eta A[g(m*theta; x1)]; x2)``, under the bound
  ``||g(m*theta; x1)||_{p} <= gamma`` (p = 1 with Adam, whose first step is A[g] =
  sign(g); p = 2 with SGD, A[g] = g); when the bound is violated the step descends
  the gradient norm instead. m is learned with Adam and kept >= ``min_scale``.

Models: an ``nnx.Module`` (``loss_fn(model, batch)``), an Equinox module
(``loss_fn(model, batch)``), or any params pytree, e.g. linen variables or Haiku params
(``loss_fn(params, batch)``). Each step draws its minibatch(es) from ``batch`` with
``fold_in(key, step)``; the whole loop is one ``jax.jit``-compiled ``lax.scan``, so a
key gives the same result every time.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import validation
from jinit._src.paths import path_str


class LearnedInit(NamedTuple):
  """What :func:`metainit` and :func:`gradinit` return.

  Attributes:
    model: the rescaled model (a new one; the input is not modified).
    scales: ``{path: factor}``, each learned tensor's new value = factor * old value.
    history: the objective at each step (MetaInit: gradient quotient; GradInit: the
      loss after one step, or the gradient norm on steps where the bound was violated).
  """

  model: Any
  scales: dict[str, float]
  history: np.ndarray


def _split(model: Any):
  """``(params pytree, rebuild(params) -> model)`` for nnx, Equinox, or a plain pytree."""
  try:
    from flax import nnx  # pylint: disable=import-outside-toplevel
  except ImportError:  # pragma: no cover
    nnx = None
  if nnx is not None and isinstance(model, nnx.Module):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return params, lambda p: nnx.merge(graphdef, p, rest)
  try:
    import equinox as eqx  # pylint: disable=import-outside-toplevel
  except ImportError:  # pragma: no cover
    eqx = None
  if eqx is not None and isinstance(model, eqx.Module):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return params, lambda p: eqx.combine(p, static)
  return model, _identity


def _check_common(batch: Any, loss_fn: Any, key: Any, steps: Any, batch_size: Any):
  if not callable(loss_fn):
    raise TypeError(f"loss_fn must be callable loss_fn(model, batch) -> scalar, got {loss_fn!r}")
  key = validation.check_key(key)
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps must be an int >= 1, got {steps!r}")
  leaves = jax.tree_util.tree_leaves(batch)
  if not leaves or any(jnp.ndim(x) < 1 for x in leaves):
    raise ValueError("batch must be a pytree of arrays with a leading batch axis")
  n = {int(jnp.shape(x)[0]) for x in leaves}
  if len(n) != 1:
    raise ValueError(f"batch's arrays must share their leading (batch) axis, got sizes {n}")
  n = n.pop()
  if batch_size is None:
    batch_size = n
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or not 1 <= batch_size <= n:
    raise ValueError(f"batch_size must be an int in [1, {n}] (the batch's size), got "
                     f"{batch_size!r}")
  return key, int(steps), n, int(batch_size)


def _take(batch: Any, idx: jax.Array) -> Any:
  return jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), batch)


def _floating(leaves) -> list[int]:
  return [i for i, x in enumerate(leaves)
          if hasattr(x, "dtype") and jnp.issubdtype(jnp.result_type(x), jnp.floating)]


def _identity(p: Any) -> Any:
  return p


@dataclasses.dataclass(frozen=True)
class _Task:
  """``task(flat, batch)``: the loss of the flat leaves. Equal tasks share compiled loops.

  Two calls with the same ``loss_fn``, tree structure and rebuild (plain pytrees: always the
  same) compare equal, so :func:`metainit`/:func:`gradinit`'s jitted loops are compiled once
  for them (a study drawing many seeds of one model compiles each loop once, not per seed).
  """

  rebuild: Callable[[Any], Any]
  treedef: Any
  loss_fn: Callable[[Any, Any], Any]

  def __call__(self, flat, b):
    return self.loss_fn(self.rebuild(jax.tree_util.tree_unflatten(self.treedef, flat)), b)


def _task(rebuild, treedef, loss_fn):
  return _Task(rebuild, treedef, loss_fn)


def gradient_quotient(model: Any, batch: Any, loss_fn: Callable[[Any, Any], Any], *,
                      eps: float = 1e-5) -> float:
  r"""MetaInit's objective, the gradient quotient GQ of ``model`` on ``batch``.

  .. math:: GQ = \frac{1}{N}\sum_i \Big|\frac{g_i - (Hg)_i}{g_i + \epsilon\,
            \mathrm{sign}(g_i)} - 1\Big|

  over all N floating parameters (init2winit's ``meta_loss``).
  """
  params, rebuild = _split(model)
  leaves, treedef = jax.tree_util.tree_flatten(params)
  task = _task(rebuild, treedef, loss_fn)
  return float(jax.jit(lambda p: _gq(task, p, batch, eps))(leaves))


def _gq(task, flat, b, eps):
  grad = jax.grad(task)
  g = grad(flat, b)
  hg = jax.jvp(lambda p: grad(p, b), (flat,), (g,))[1]
  total, count = 0.0, 0
  for gi, hi in zip(g, hg):
    sign = jax.lax.stop_gradient(jnp.where(gi >= 0, 1.0, -1.0).astype(gi.dtype))
    total = total + jnp.sum(jnp.abs((gi - hi) / (gi + eps * sign) - 1))
    count += gi.size
  return total / count


def metainit(model: Any, batch: Any, loss_fn: Callable[[Any, Any], Any], *, key: jax.Array,
             steps: int = 50, lr: float = 0.1, momentum: float = 0.5, eps: float = 1e-5,
             batch_size: int | None = 8, stacked: str | None = None) -> LearnedInit:
  """MetaInit: learns each weight tensor's norm by descending the gradient quotient.

  init2winit's algorithm (``meta_optimize_scales``): every tensor of rank >= 2 is
  normalized to norm 1 and its norm becomes a learned scalar, starting from its
  current norm; each step takes the sign of the gradient of the gradient quotient
  (:func:`gradient_quotient`) w.r.t. the norms and applies SGD with momentum
  (``v <- momentum v + sign(grad)``, ``norm <- norm - lr v``; defaults: init2winit's
  lr 0.1, momentum 0.5, 50 steps, batch 8, eps 1e-5). Deviations from init2winit: the
  minibatches are drawn from ``batch`` (init2winit feeds N(0, 1) inputs with random
  one-hot targets: pass such a batch to match it), and only rank >= 2 tensors get a
  learned norm (init2winit's docstring says so; its code also updates nonzero biases).

  Args:
    model: an nnx Module, an Equinox module, or a params pytree.
    batch: a pytree of arrays with a leading batch axis.
    loss_fn: ``loss_fn(model, batch) -> scalar`` (a params pytree for pytrees).
    key: PRNG key for the minibatches (step i uses ``fold_in(key, i)``).
    steps, lr, momentum, eps: as above.
    batch_size: minibatch size per step (None or the batch's size: the whole batch).
    stacked: a regex on parameter paths (``re.search``): those leaves hold layers stacked
      along axis 0 (``lax.scan``-ed or vmapped blocks) and get one norm per layer, as if
      each slice were its own tensor (rank >= 2 per slice). None: every leaf is one tensor.

  Returns:
    :class:`LearnedInit` ``(model, scales, history)``; a scale is new norm / old norm
    (a stacked leaf's slice k is ``"<path>[k]"``).

  Raises:
    TypeError, ValueError: bad arguments (before any work); a model with no tensor of
      rank >= 2.
    FloatingPointError: the learned norms are not finite (the model's loss or gradients
      overflow on ``batch``).

  References: Dauphin & Schoenholz 2019, "MetaInit: Initializing learning by learning to
  initialize", NeurIPS; google/init2winit ``init2winit/init_lib/meta_init.py``.
  """
  key, steps, n, bs = _check_common(batch, loss_fn, key, steps,
                                    None if batch_size is None else min(batch_size, _size(batch)))
  lr = validation.check_real(lr, "lr", positive=True)
  momentum = validation.check_real(momentum, "momentum")
  eps = validation.check_real(eps, "eps", positive=True)
  params, rebuild = _split(model)
  path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  leaves = [x for _, x in path_leaves]
  stack = _stacked(path_leaves, stacked)
  learn = [i for i in _floating(leaves) if jnp.ndim(leaves[i]) - stack[i] >= 2]
  if not learn:
    raise ValueError("metainit: the model has no parameter tensor of rank >= 2 to rescale")
  norms0 = [_norm(leaves[i], stack[i]) for i in learn]
  units = [jnp.where(_bcast(nm, leaves[i]) > 0,
                     leaves[i] / _bcast(jnp.where(nm > 0, nm, 1), leaves[i]).astype(
                         leaves[i].dtype), leaves[i]) for nm, i in zip(norms0, learn)]
  task = _task(rebuild, treedef, loss_fn)
  norms, hist = _metainit_loop(norms0, units, leaves, batch, key, task=task, learn=tuple(learn),
                               steps=steps, bs=bs, lr=lr, momentum=momentum, eps=eps)
  _check_finite("metainit", "norms", norms, hist)
  flat = _put(leaves, learn, [u * _bcast(nm, u).astype(u.dtype) for u, nm in zip(units, norms)])
  new = rebuild(jax.tree_util.tree_unflatten(treedef, flat))
  ratio = [np.where(np.asarray(n0) > 0, np.asarray(nm) / np.where(np.asarray(n0) > 0, n0, 1),
                    np.nan) for nm, n0 in zip(norms, norms0)]
  return LearnedInit(new, _scales(path_leaves, learn, ratio), np.asarray(hist))


def _check_finite(name: str, what: str, values: Sequence[Any], hist: Any) -> None:
  """Raises FloatingPointError if a learned value is not finite (never a silent NaN)."""
  if all(np.all(np.isfinite(np.asarray(v))) for v in values):
    return
  h = np.asarray(hist, np.float64).reshape(len(hist), -1) if len(hist) else np.zeros((0, 1))
  bad = np.flatnonzero(~np.all(np.isfinite(h), axis=1))
  at = f"; its objective was first non-finite at step {int(bad[0]) + 1}" if bad.size else ""
  raise FloatingPointError(
      f"{name}: the learned {what} are not finite{at}. The starting model's loss or gradients "
      "overflow on this batch (e.g. an unnormalized deep net whose activations blow up); start "
      "from a smaller init, or lower lr / steps")


def _stacked(path_leaves, stacked: Any) -> list[int]:
  """1 for each leaf whose path matches ``stacked`` (layers along axis 0), else 0."""
  if stacked is None:
    return [0] * len(path_leaves)
  if not isinstance(stacked, str):
    raise TypeError(f"stacked must be None or a regex string on parameter paths, got "
                    f"{stacked!r}")
  out = [int(re.search(stacked, path_str(p)) is not None) for p, _ in path_leaves]
  bad = [path_str(p) for (p, x), f in zip(path_leaves, out) if f and jnp.ndim(x) < 1]
  if bad:
    raise ValueError(f"stacked={stacked!r} matches scalar parameters {bad}: a stacked leaf "
                     "needs a leading layer axis")
  return out


def _norm(x, stacked: int):
  """The Frobenius norm of ``x`` (float32), per slice along axis 0 when ``stacked``."""
  x = jnp.asarray(x).astype(jnp.float32)
  if stacked:
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))))
  return jnp.linalg.norm(jnp.ravel(x))


def _bcast(s, x):
  """A scale (scalar, or one per slice along axis 0) shaped to multiply ``x``."""
  s = jnp.asarray(s)
  return s.reshape(s.shape + (1,) * (jnp.ndim(x) - s.ndim)) if s.ndim else s


def _scales(path_leaves, learn, values) -> dict[str, float]:
  out = {}
  for j, i in enumerate(learn):
    name, v = path_str(path_leaves[i][0]), np.asarray(values[j])
    if v.ndim:
      out.update({f"{name}[{k}]": float(x) for k, x in enumerate(v)})
    else:
      out[name] = float(v)
  return out


def _put(leaves: list, idx: Sequence[int], values: list) -> list:
  """``leaves`` with ``leaves[idx[j]]`` replaced by ``values[j]``."""
  flat = list(leaves)
  for j, i in enumerate(idx):
    flat[i] = values[j]
  return flat


@functools.partial(jax.jit, static_argnames=("task", "learn", "steps", "bs", "lr", "momentum",
                                             "eps"))
def _metainit_loop(norms, units, leaves, batch, key, *, task, learn, steps, bs, lr, momentum, eps):
  """MetaInit's signed-SGD loop on the norms; compiled once per (task, structure, settings)."""
  n = int(jnp.shape(jax.tree_util.tree_leaves(batch)[0])[0])

  def meta(norms, b):
    return _gq(task, _put(leaves, learn, [u * _bcast(nm, u).astype(u.dtype)
                                          for u, nm in zip(units, norms)]), b, eps)

  def step(carry, i):
    norms, vel = carry
    idx = jax.random.permutation(jax.random.fold_in(key, i), n)[:bs]
    value, grads = jax.value_and_grad(meta)(norms, _take(batch, idx))
    vel = [momentum * v + jnp.sign(g) for v, g in zip(vel, grads)]
    norms = [nm - lr * v for nm, v in zip(norms, vel)]
    return (norms, vel), value

  (norms, _), hist = jax.lax.scan(step, (list(norms), [jnp.zeros_like(x) for x in norms]),
                                  jnp.arange(steps))
  return norms, hist


def _size(batch: Any) -> int:
  leaves = jax.tree_util.tree_leaves(batch)
  return int(jnp.shape(leaves[0])[0]) if leaves and jnp.ndim(leaves[0]) >= 1 else 1


OPTIMIZERS = ("adam", "sgd")


def gradinit_objective(model: Any, batch: Any, loss_fn: Callable[[Any, Any], Any], *,
                       optimizer: str = "adam", lr: float | None = None,
                       batch2: Any = None) -> tuple[float, float]:
  """GradInit's two quantities at ``model``: the step on ``batch`` (x1), the loss on ``batch2``.

  Args:
    model, batch, loss_fn, optimizer, lr: as in :func:`gradinit`.
    batch2: x2, the batch the loss after the step is measured on (default: ``batch``).

  Returns:
    ``(loss after one step of optimizer, gradient norm)``: the loss
    ``L(theta - lr A[g])`` and ``||g||_1`` (Adam) or ``||g||_2`` (SGD).
  """
  validation.check_choice(optimizer, "optimizer", OPTIMIZERS)
  lr = _default_lr(optimizer, lr)
  params, rebuild = _split(model)
  leaves, treedef = jax.tree_util.tree_flatten(params)
  task = _task(rebuild, treedef, loss_fn)
  learn = _floating(leaves)
  x2 = batch if batch2 is None else batch2
  loss, gnorm = jax.jit(lambda p: _one_step(task, p, learn, batch, x2, optimizer, lr))(leaves)
  return float(loss), float(gnorm)


def _default_lr(optimizer: str, lr: Any) -> float:
  if lr is None:
    return 1e-3 if optimizer == "adam" else 0.1
  return validation.check_real(lr, "lr", positive=True)


def _one_step(task, flat, learn, x1, x2, optimizer, lr):
  """``(L(theta - lr A[g(theta; x1)]; x2), ||g||_p)``."""
  g = jax.grad(task)(flat, x1)
  if optimizer == "adam":
    gnorm = sum(jnp.sum(jnp.abs(g[i])) for i in learn)
    step = [jnp.sign(gi) for gi in g]
  else:
    gnorm = jnp.sqrt(sum(jnp.sum(jnp.square(g[i])) for i in learn))
    step = g
  moved = list(flat)
  for i in learn:
    moved[i] = flat[i] - jnp.asarray(lr, flat[i].dtype) * step[i]
  return task(moved, x2), gnorm


def gradinit(model: Any, batch: Any, loss_fn: Callable[[Any, Any], Any], *, key: jax.Array,
             optimizer: str = "adam", lr: float | None = None, gamma: float = 1.0,
             steps: int = 100, scale_lr: float = 1e-2, min_scale: float = 1e-2,
             batch_size: int | None = None, stacked: str | None = None) -> LearnedInit:
  r"""GradInit: one scale per parameter tensor so that the first optimizer step helps most.

  Algorithm 1 of Zhu et al. 2021: scales m (one per floating tensor, weights and
  biases and norm gains alike, starting at 1); each step draws two minibatches x1, x2 and

  .. math:: \min_m\ L\big(m\theta - \eta A[g(m\theta; x_1)];\ x_2\big)
            \quad \text{s.t.}\ \|g(m\theta; x_1)\|_{p} \le \gamma

  (Adam: A[g] = sign(g), its first update, p = 1; SGD: A[g] = g, p = 2); a step where
  the bound is violated descends ``||g||_p`` instead. m is updated by Adam with step
  ``scale_lr`` (tau) and clipped to ``>= min_scale`` (alpha).

  Args:
    model: an nnx Module, an Equinox module, or a params pytree.
    batch: a pytree of arrays with a leading batch axis.
    loss_fn: ``loss_fn(model, batch) -> scalar``.
    key: PRNG key for the minibatches.
    optimizer: ``"adam"`` or ``"sgd"``: the optimizer training will use.
    lr: its learning rate eta (default 1e-3 for Adam, 0.1 for SGD).
    gamma: the gradient-norm bound.
    steps: number of GradInit steps.
    scale_lr: tau, Adam's step on the scales.
    min_scale: alpha, the scales' lower bound.
    batch_size: size of x1 and x2 (default: half the batch each).
    stacked: a regex on parameter paths: those leaves hold layers stacked along axis 0
      and get one scale per layer (the same algorithm as per-layer tensors, in a
      program that does not grow with depth). None: one scale per leaf.

  Returns:
    :class:`LearnedInit` ``(model, scales, history)`` (a stacked leaf's slice k is
    ``"<path>[k]"`` in ``scales``).

  Raises:
    FloatingPointError: the learned scales are not finite (the model's loss or gradients
      overflow on ``batch``).

  References: Zhu, Ni, Xu, Kong, Huang & Goldstein 2021, "GradInit: Learning to Initialize
  Neural Networks for Stable and Efficient Training", NeurIPS, https://arxiv.org/abs/2102.08098
  """
  n_total = _size(batch)
  key, steps, n, bs = _check_common(batch, loss_fn, key, steps,
                                    max(1, n_total // 2) if batch_size is None else batch_size)
  if 2 * bs > n:
    raise ValueError(f"batch_size={bs}: GradInit draws two disjoint minibatches of batch_size, "
                     f"so it must be <= {n // 2} for a batch of {n}")
  validation.check_choice(optimizer, "optimizer", OPTIMIZERS)
  lr = _default_lr(optimizer, lr)
  gamma = validation.check_real(gamma, "gamma", positive=True)
  scale_lr = validation.check_real(scale_lr, "scale_lr", positive=True)
  min_scale = validation.check_real(min_scale, "min_scale", positive=True)
  params, rebuild = _split(model)
  path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  leaves = [x for _, x in path_leaves]
  stack = _stacked(path_leaves, stacked)
  learn = _floating(leaves)
  if not learn:
    raise ValueError("gradinit: the model has no floating parameter to rescale")
  task = _task(rebuild, treedef, loss_fn)
  ones = [jnp.ones(jnp.shape(leaves[i])[:1] if stack[i] else (), jnp.float32) for i in learn]
  m, hist = _gradinit_loop(ones, leaves, batch, key,
                           jnp.asarray(lr, jnp.float32), task=task, learn=tuple(learn),
                           optimizer=optimizer, steps=steps, bs=bs, gamma=gamma,
                           scale_lr=scale_lr, min_scale=min_scale)
  _check_finite("gradinit", "scales", m, hist)
  new = rebuild(jax.tree_util.tree_unflatten(
      treedef, _put(leaves, learn, [leaves[i] * _bcast(m[j], leaves[i]).astype(leaves[i].dtype)
                                    for j, i in enumerate(learn)])))
  return LearnedInit(new, _scales(path_leaves, learn, m), np.asarray(hist))



@functools.partial(jax.jit, static_argnames=("task", "learn", "optimizer", "steps", "bs",
                                             "gamma", "scale_lr", "min_scale"))
def _gradinit_loop(m, leaves, batch, key, lr, *, task, learn, optimizer, steps, bs, gamma,
                   scale_lr, min_scale):
  """GradInit's loop on the scales (Adam on m); compiled once per (task, structure, settings).

  The training lr (eta) is traced, so a study's lr sweep shares one compiled loop.
  """
  n = int(jnp.shape(jax.tree_util.tree_leaves(batch)[0])[0])
  b1, b2, adam_eps = 0.9, 0.999, 1e-8  # Adam's defaults (Kingma & Ba 2015) for the scales

  def objective(m, x1, x2):
    flat = _put(leaves, learn, [leaves[i] * _bcast(m[j], leaves[i]).astype(leaves[i].dtype)
                                for j, i in enumerate(learn)])
    loss, gnorm = _one_step(task, flat, learn, x1, x2, optimizer, lr)
    violated = gnorm > gamma
    return jnp.where(violated, gnorm, loss), violated

  def step(carry, i):
    m, mu, nu = carry
    perm = jax.random.permutation(jax.random.fold_in(key, i), n)
    x1, x2 = _take(batch, perm[:bs]), _take(batch, perm[bs:2 * bs])
    (value, _), grads = jax.value_and_grad(objective, has_aux=True)(m, x1, x2)
    t = (i + 1).astype(jnp.float32)
    mu = [b1 * a + (1 - b1) * g for a, g in zip(mu, grads)]
    nu = [b2 * a + (1 - b2) * g * g for a, g in zip(nu, grads)]
    m = [jnp.maximum(s - scale_lr * (a / (1 - b1 ** t)) / (jnp.sqrt(v / (1 - b2 ** t))
                                                          + adam_eps), min_scale)
         for s, a, v in zip(m, mu, nu)]
    return (m, mu, nu), value

  zeros = [jnp.zeros_like(x) for x in m]
  (m, _, _), hist = jax.lax.scan(step, (list(m), zeros, list(zeros)), jnp.arange(steps))
  return m, hist
