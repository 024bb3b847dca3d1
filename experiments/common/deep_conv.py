"""A deep vanilla tanh CNN (Xiao et al. 2018) with its layers inside ``lax.scan``.

The model: a first 3 x 3 conv 1 -> C, then ``depth - 1`` 3 x 3 convs C -> C, tanh after
each, circular (periodic) padding as in the paper, and a dense readout of the flattened
last feature map. The hidden kernels are stacked on a leading layer axis and applied by
one ``lax.scan``, so compile time does not grow with depth. The convolution is an
im2col matmul (nine shifted copies of the circularly padded map, concatenated along
channels, times the (9C, C) kernel), measured faster than ``lax.conv_general_dilated``
at this size on a CPU (``benchmarks/deep_conv.py``); :func:`conv_lax` is the reference
it is tested against.

Initializations of every kernel (biases as noted), ``sigma_w2`` per fan-in 9C:

* ``delta_orthogonal``: :func:`jinit.delta_orthogonal` with gain sqrt(sigma_w2),
  biases N(0, sigma_b2);
* ``gaussian``: N(0, sigma_w2 / (9C)), the same sigma_w2 and biases as delta-orthogonal;
* ``xavier``: :func:`jinit.xavier_normal` (1 / (9C) here: equal in and out channels),
  zero biases;
* ``he``: :func:`jinit.kaiming_normal` with the relu gain (2 / (9C)), zero biases.

The readout is Xavier normal for every init (the comparison is about the conv stack).

Reference: L. Xiao, Y. Bahri, J. Sohl-Dickstein, S. S. Schoenholz, J. Pennington,
"Dynamical Isometry and a Mean Field Theory of CNNs: How to Train 10,000-Layer Vanilla
Convolutional Neural Networks", ICML 2018, https://arxiv.org/abs/1806.05393
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from jinit._src import validation

KERNEL = 3
INITS = ("delta_orthogonal", "gaussian", "xavier", "he")
BIASED = ("delta_orthogonal", "gaussian")  # the inits drawn at (sigma_w2, sigma_b2)
READOUT = ("w_out", "b_out")  # the parameters a separate readout lr applies to
F32 = jnp.float32


def _kernel(name: str, key, shape, sigma_w2: float) -> jax.Array:
  fan_in, fan_out = jinit.compute_fans(shape, layout="flax")
  if name == "delta_orthogonal":
    return jinit.delta_orthogonal(key, shape, gain=math.sqrt(sigma_w2), dtype=F32)
  if name == "gaussian":
    return jinit.normal(key, shape, std=math.sqrt(sigma_w2 / fan_in), dtype=F32)
  if name == "xavier":
    return jinit.xavier_normal(key, shape, fan_in, fan_out, dtype=F32)
  if name == "he":
    return jinit.kaiming_normal(key, shape, fan_in, fan_out, nonlinearity="relu", dtype=F32)
  raise ValueError(f"init must be one of {INITS}, got {name!r}")


def init_cnn(key, name: str, *, depth: int, channels: int, num_classes: int, sigma_w2: float,
             sigma_b2: float, image_side: int) -> dict[str, jax.Array]:
  """Parameters of the CNN (``depth`` convs in all) for one initialization, float32."""
  if name not in INITS:
    raise ValueError(f"init must be one of {INITS}, got {name!r}")
  if depth < 1 or channels < 1:
    raise ValueError(f"depth and channels must be >= 1, got {depth}, {channels}")
  k_in, k_hid, k_out, kb = jax.random.split(key, 4)
  shape = (KERNEL, KERNEL, channels, channels)
  hid_keys = jax.random.split(k_hid, depth - 1)
  w_hid = (jax.vmap(lambda k: _kernel(name, k, shape, sigma_w2))(hid_keys) if depth > 1
           else jnp.zeros((0,) + shape, F32))
  kb_in, kb_hid = jax.random.split(kb)

  def bias(k, shape):
    if name in BIASED:
      return jinit.normal(k, shape, std=math.sqrt(sigma_b2), dtype=F32)
    return jnp.zeros(shape, F32)

  n_feat = image_side * image_side * channels
  return {
      "w_in": _kernel(name, k_in, (KERNEL, KERNEL, 1, channels), sigma_w2),
      "b_in": bias(kb_in, (channels,)),
      "w_hid": w_hid,
      "b_hid": bias(kb_hid, (depth - 1, channels)),
      "w_out": jinit.xavier_normal(k_out, (n_feat, num_classes), n_feat, num_classes,
                                   dtype=F32),
      "b_out": jnp.zeros((num_classes,), F32),
  }


def _pad(x: jax.Array) -> jax.Array:
  p = KERNEL // 2
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="wrap")


def conv_im2col(x: jax.Array, w: jax.Array) -> jax.Array:
  """Circular 'same' 3 x 3 conv as one matmul: x (B, H, W, Cin), w (3, 3, Cin, Cout)."""
  _, h, wd, _ = x.shape
  xp = _pad(x)
  cols = jnp.concatenate([xp[:, i:i + h, j:j + wd, :] for i in range(KERNEL)
                          for j in range(KERNEL)], axis=-1)
  return cols @ w.reshape(-1, w.shape[-1])


def conv_lax(x: jax.Array, w: jax.Array) -> jax.Array:
  """The same circular conv by ``lax.conv_general_dilated`` (reference and benchmark)."""
  return jax.lax.conv_general_dilated(_pad(x), w, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _layer(h, w, b, conv):
  return jnp.tanh(conv(h, w) + b[None, None, None, :])


def features(params, x: jax.Array, conv=conv_im2col, remat: bool = False) -> jax.Array:
  """The last feature map, (B, H, W, C): the input conv, then the hidden ones in a scan.

  ``remat``: the backward pass recomputes each layer from its input (``jax.checkpoint``)
  instead of storing its im2col columns, 9x smaller residuals per layer.
  """
  h = _layer(x.astype(F32), params["w_in"], params["b_in"], conv)

  def step(h, wb):
    return _layer(h, wb[0], wb[1], conv), None

  if remat:
    step = jax.checkpoint(step)
  h, _ = jax.lax.scan(step, h, (params["w_hid"], params["b_hid"]))
  return h


def apply_cnn(params, x: jax.Array, conv=conv_im2col, remat: bool = False) -> jax.Array:
  """x: (batch, H, W, 1) -> logits (batch, classes); ``remat`` as in :func:`features`."""
  h = features(params, x, conv, remat)
  return h.reshape(h.shape[0], -1) @ params["w_out"] + params["b_out"][None, :]


def apply_unrolled(params, x: jax.Array, conv=conv_lax) -> jax.Array:
  """The same network as a Python loop over layers (the reference for tests)."""
  h = _layer(x.astype(F32), params["w_in"], params["b_in"], conv)
  for w, b in zip(params["w_hid"], params["b_hid"]):
    h = _layer(h, w, b, conv)
  return h.reshape(h.shape[0], -1) @ params["w_out"] + params["b_out"][None, :]


# --------------------------------------------------------------------------- lr protocol


def depth_lrs(depth: int, scales: Sequence[float]) -> list[float]:
  """The SGD learning rates tried at ``depth``: ``scale / depth`` for each scale.

  The usable plain-SGD step of a deep isometric network shrinks as 1 / depth (every
  layer's gradient is O(1), so one step moves the function by O(lr * depth)); probes
  found lr * depth ~ 2 safe and ~ 5 collapsing at depths 200-1000.
  """
  validation.check_int(depth, "depth")
  scales = [float(s) for s in scales]
  if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
    raise ValueError(f"lr scales must be positive finite numbers, got {scales}")
  return [s / depth for s in scales]


def pick_lr(final_acc: Sequence[float], lrs: Sequence[float]) -> int:
  """Index of the chosen lr: the best final training accuracy, ties to the smaller lr."""
  acc = np.nan_to_num(np.asarray(final_acc, np.float64), nan=-1.0)
  best = acc.max()
  return int(min((i for i in range(len(lrs)) if acc[i] == best), key=lambda i: lrs[i]))


# --------------------------------------------------------------------------- training


def train_sgd(params, lrs: jax.Array, key, x, y, x_eval, y_eval, *, steps: int, eval_every: int,
              batch_size: int, apply=apply_cnn, over_nets: str = "vmap"):
  """Plain SGD for a stack of networks (leading axis), each with its own lr, same batches.

  The one training loop of the deep studies (to be swapped for the shared ``scan_sgd``).
  ``lrs``: (nets,) one lr per net, or (nets, 2): the conv layers' lr and the readout's.
  ``over_nets``: ``"vmap"`` trains the nets as one batched program; ``"map"`` trains
  them one after another (``lax.map``), each with unbatched matmuls, which XLA's CPU
  backend runs faster than the batched ones at these sizes (``benchmarks/deep_conv.py``).

  Returns:
    (params, losses, accs): final params; mean training loss of each ``eval_every``
    steps and accuracy on (x_eval, y_eval) after them, each (nets, steps // eval_every).
  """

  def loss_fn(p, xb, yb):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply(p, xb), yb))

  def one(p, lr, key):
    lr = jnp.broadcast_to(lr, (2,))  # (conv layers' lr, readout's lr)
    lr_of = {k: lr[1] if k in READOUT else lr[0] for k in p}

    def step(p, k):
      idx = jax.random.randint(k, (batch_size,), 0, x.shape[0])
      loss, g = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
      return {k: p[k] - lr_of[k].astype(p[k].dtype) * g[k] for k in p}, loss

    def chunk(p, ks):
      p, losses = jax.lax.scan(step, p, ks)
      pred = jnp.argmax(apply(p, x_eval), axis=-1)
      return p, (jnp.mean(losses), jnp.mean((pred == y_eval).astype(F32)))

    keys = jax.random.split(key, steps).reshape(steps // eval_every, eval_every)
    p, (losses, accs) = jax.lax.scan(chunk, p, keys)
    return p, losses, accs

  if over_nets == "vmap":
    return jax.vmap(one, in_axes=(0, 0, None))(params, lrs, key)
  if over_nets == "map":
    return jax.lax.map(lambda pl: one(pl[0], pl[1], key), (params, lrs))
  raise ValueError(f"over_nets must be 'vmap' or 'map', got {over_nets!r}")


def sharded_train_sgd(mesh, *, steps: int, eval_every: int, batch_size: int, apply=apply_cnn):
  """:func:`train_sgd` (``over_nets="map"``) with the nets split over ``mesh``'s devices.

  Each device trains its share of the nets one after another; the nets are
  independent, so the devices never communicate. Every net must be on the mesh: the
  number of nets must be a multiple of the devices (:func:`pad_nets`).

  Args:
    mesh: a one-axis ``jax.sharding.Mesh`` (the axis' name is the runs axis).
    steps, eval_every, batch_size, apply: as for :func:`train_sgd`.

  Returns:
    A jitted ``fn(params, lrs, key, x, y, x_eval, y_eval)`` with :func:`train_sgd`'s outputs.
  """
  from jax.sharding import PartitionSpec as P

  if len(mesh.axis_names) != 1:
    raise ValueError(f"mesh must have one axis, got {mesh.axis_names}")
  runs = P(mesh.axis_names[0])
  body = functools.partial(train_sgd, steps=steps, eval_every=eval_every, batch_size=batch_size,
                           apply=apply, over_nets="map")
  return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(runs, runs) + (P(),) * 5,
                               out_specs=(runs, runs, runs)))


def pad_nets(n: int, devices: int) -> int:
  """How many copies of net 0 to append so that ``n`` nets split evenly over ``devices``."""
  return -n % devices


@jax.jit
def _predict(params, xb):
  return jnp.argmax(apply_cnn(params, xb), axis=-1)


@jax.jit
def _flat_features(params, xb):
  return features(params, xb).reshape(xb.shape[0], -1)


def accuracy(params, x, y, batch: int = 500) -> float:
  """Accuracy of one network on (x, y), in batches of ``batch`` (the last one may be smaller)."""
  hits = sum(int(jnp.sum(_predict(params, x[i:i + batch]) == y[i:i + batch]))
             for i in range(0, len(y), batch))
  return hits / len(y)


def readout_only(params, x, y, x_eval, y_eval, *, steps: int = 300, lr: float = 0.01):
  """Control: the readout alone trained (Adam, full batch) on the frozen features at init.

  Returns:
    Accuracy on (x_eval, y_eval) of the trained readout.
  """
  f = jnp.concatenate([_flat_features(params, x[i:i + 500]) for i in range(0, len(y), 500)])
  fe = jnp.concatenate([_flat_features(params, x_eval[i:i + 500])
                        for i in range(0, len(y_eval), 500)])
  head = {"w": params["w_out"], "b": params["b_out"]}
  b1, b2, eps = 0.9, 0.999, 1e-8  # Adam's defaults, written out (float32 throughout)

  def loss_fn(h):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        f @ h["w"] + h["b"][None, :], y))

  @jax.jit
  def fit(head):
    def step(carry, t):
      h, m, v = carry
      g = jax.grad(loss_fn)(h)
      m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
      v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
      c1, c2 = 1 - b1 ** t, 1 - b2 ** t
      h = jax.tree.map(lambda h, m, v: h - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), h, m, v)
      return (h, m, v), None
    zeros = jax.tree.map(jnp.zeros_like, head)
    ts = jnp.arange(1, steps + 1, dtype=F32)
    (h, _, _), _ = jax.lax.scan(step, (head, zeros, zeros), ts)
    return h

  h = fit(head)
  return float(jnp.mean(jnp.argmax(fe @ h["w"] + h["b"][None, :], -1) == y_eval))


# --------------------------------------------------------------------------- spectra


def jacobian_singular_values(params, x1: jax.Array) -> np.ndarray:
  """Singular values of d(last feature map) / d(first feature map) at one input (1, H, W, 1).

  The map is the ``depth - 1`` hidden layers, a (H W C) x (H W C) matrix.
  """
  n = x1.shape[1] * x1.shape[2] * params["w_in"].shape[-1]
  jac = _jacobian(params, x1)
  return np.linalg.svd(np.asarray(jac, np.float64).reshape(n, n), compute_uv=False)


@jax.jit
def _jacobian(params, x1):
  h1 = _layer(x1.astype(F32), params["w_in"], params["b_in"], conv_im2col)

  def hidden(v):
    def step(h, wb):
      return _layer(h, wb[0], wb[1], conv_im2col), None
    return jax.lax.scan(step, v.reshape(h1.shape), (params["w_hid"], params["b_hid"]))[0]

  return jax.jacfwd(lambda v: hidden(v).reshape(-1))(h1.reshape(-1))


def spectrum_stats(sv: np.ndarray) -> dict[str, Any]:
  """Summary of a Jacobian's singular values (the isometry statistics of the docs)."""
  sv = np.asarray(sv, np.float64)
  return {"median": float(np.median(sv)), "max": float(sv.max()), "min": float(sv.min()),
          "frac_in_half_to_2": float(np.mean((sv >= 0.5) & (sv <= 2.0))),
          "log10_max_over_median": float(np.log10(sv.max() / max(np.median(sv), 1e-300)))}


def conv_matrix(w: jax.Array, side: int) -> np.ndarray:
  """The (side^2 C_in) x (side^2 C_out) matrix of the circular conv with kernel ``w``."""
  c_in = w.shape[2]
  eye = jnp.eye(side * side * c_in, dtype=F32).reshape(-1, side, side, c_in)
  return np.asarray(conv_im2col(eye, w).reshape(side * side * c_in, -1))
