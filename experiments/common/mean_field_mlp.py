"""Deep tanh (or any phi) MLPs with mean-field initialization, trained in one compiled program.

Shared by ``experiments.trainability`` and ``experiments.isometry``. Every weight is
N(0, sigma_w2 / fan_in) (or a scaled orthogonal matrix, gain sqrt(sigma_w2)) and every
bias N(0, sigma_b2): the networks of the mean-field theory (:mod:`jinit.theory`). The
``depth - 1`` hidden-to-hidden layers are stacked for ``lax.scan``, so compile time does
not grow with depth; a grid of sigma_w2 (or of seeds) trains under ``jax.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

import jinit
from experiments.common import study

DISTRIBUTIONS = ("normal", "orthogonal")


def init_mlp(key, sigma_w2, sigma_b2: float, input_dim: int, width: int, depth: int,
             num_classes: int, distribution: str = "normal") -> dict[str, jax.Array]:
  """A ``depth``-hidden-layer MLP's parameters; ``sigma_w2`` may be traced (vmapped)."""
  if distribution not in DISTRIBUTIONS:
    raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
  k_in, k_hid, k_out, kb = jax.random.split(key, 4)

  def kernel(k, fan_in, fan_out):
    if distribution == "orthogonal":
      return jinit.orthogonal(k, (fan_in, fan_out), fan_in, fan_out,
                              gain=jnp.sqrt(jnp.asarray(sigma_w2, jnp.float32)))
    return jinit.variance_scaling(k, (fan_in, fan_out), fan_in, fan_out,
                                  scale=jnp.asarray(sigma_w2, jnp.float32), mode="fan_in",
                                  distribution="normal")

  def bias(k, shape):
    if sigma_b2 == 0:
      return jnp.zeros(shape, jnp.float32)
    return jinit.normal(k, shape, std=math.sqrt(sigma_b2))

  kb_in, kb_hid, kb_out = jax.random.split(kb, 3)
  n_hid = depth - 1
  hid_keys = jax.random.split(k_hid, max(n_hid, 1))[:n_hid]
  return {
      "w_in": kernel(k_in, input_dim, width), "b_in": bias(kb_in, (width,)),
      "w_hid": (jax.vmap(lambda k: kernel(k, width, width))(hid_keys) if n_hid
                else jnp.zeros((0, width, width), jnp.float32)),
      "b_hid": bias(kb_hid, (n_hid, width)) if n_hid else jnp.zeros((0, width), jnp.float32),
      "w_out": kernel(k_out, width, num_classes), "b_out": bias(kb_out, (num_classes,)),
  }


def apply_mlp(params: dict[str, jax.Array], x: jax.Array,
              phi: Callable[[jax.Array], jax.Array] = jnp.tanh) -> jax.Array:
  h = phi(x @ params["w_in"] + params["b_in"][None, :])

  def layer(h, wb):
    w, b = wb
    return phi(h @ w + b[None, :]), None

  h, _ = jax.lax.scan(layer, h, (params["w_hid"], params["b_hid"]))
  return h @ params["w_out"] + params["b_out"][None, :]


def make_train_fn(*, depth: int, width: int, input_dim: int, num_classes: int,
                  sigma_b2: float, steps: int, batch_size: int, lr: float,
                  distribution: str = "normal", eval_every: int | None = None):
  """A jitted, vmapped ``f(sigma_w2s, keys, x, y, x_eval, y_eval)``.

  Each run inits its MLP (tanh) from its key and sigma_w2 (:func:`init_mlp`), then
  trains as :func:`make_train_params_fn`. Returns ``(acc, loss, curve)`` per run.
  """
  train = make_train_params_fn(steps=steps, batch_size=batch_size, lr=lr,
                               eval_every=eval_every, jit=False)

  def one(sigma_w2, key, x, y, x_eval, y_eval):
    k_init, k_steps = jax.random.split(key)
    params = init_mlp(k_init, sigma_w2, sigma_b2, input_dim, width, depth, num_classes,
                      distribution)
    return train(params, k_steps, x, y, x_eval, y_eval)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None, None)))


def make_train_params_fn(*, steps: int, batch_size: int, lr: float,
                         eval_every: int | None = None, jit: bool = True):
  """``f(params, key, x, y, x_eval, y_eval) -> (acc, loss, curve)`` for given parameters.

  ``steps`` plain SGD steps on the mean cross-entropy of random batches (drawn from
  ``key``: runs with the same key see the same batches); ``acc`` is the final accuracy
  on ``(x_eval, y_eval)``, ``loss`` the mean loss of the last tenth of the steps,
  ``curve`` the accuracy every ``eval_every`` steps (empty when None). With ``jit``, the
  result is jitted and vmapped over a leading run axis of ``params`` and ``key``, so
  differently initialized runs (orthogonal and Gaussian, say) share one program.
  """
  tx = optax.sgd(lr)
  every = eval_every or steps
  chunks = steps // every
  if chunks * every != steps:
    raise ValueError(f"eval_every={eval_every} must divide steps={steps}")

  def train_one(params, key, x, y, x_eval, y_eval):
    def loss_fn(params, k):  # one step's batch, drawn from its key
      idx = jax.random.randint(k, (batch_size,), 0, x.shape[0])
      logits = apply_mlp(params, x[idx])
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]))

    def accuracy(params):
      pred = jnp.argmax(apply_mlp(params, x_eval), axis=-1).astype(y_eval.dtype)
      return jnp.mean((pred == y_eval).astype(jnp.float32))

    _, _, losses, curve = study.scan_sgd(loss_fn, params, tx, jax.random.split(key, steps),
                                         eval_fn=accuracy, chunks=chunks)
    tail = max(steps // 10, 1)
    return curve[-1], jnp.mean(losses[-tail:]), (curve if eval_every else curve[:0])

  if not jit:
    return train_one
  return jax.jit(jax.vmap(train_one, in_axes=(0, 0, None, None, None, None)))
