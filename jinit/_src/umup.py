"""u-μP's unit-scaled ops in JAX: scaled matmuls, residual branches, attention, norms, loss.

u-μP (C. Blake et al., "u-μP: The Unit-Scaled Maximal Update Parametrization", ICLR 2025,
https://arxiv.org/abs/2407.17465) draws every weight from N(0, 1) and moves the scale
factors into the ops, so that at initialization every activation, weight and gradient has a
scale (standard deviation) of about 1. An op may use one scale in the forward pass and
another in the backward pass: :func:`scale_fwd` and :func:`scale_bwd` are ``jax.custom_vjp``
functions that multiply by a constant in one pass only, and every op here is built from them,
as graphcore's reference library ``unit_scaling`` (``unit_scaling.functional``, version
0.3.5) builds its ops from ``scale_fwd``/``scale_bwd``. Each op's scales are the library's;
``benchmarks/unit_scaling_reference.py`` and ``tests/test_mup_unit.py`` compare them.

Layouts are Flax's: a kernel is ``(fan_in, fan_out)``, attention inputs are ``(batch...,
seq, heads, head_dim)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp

from jinit._src import validation

# unit_scaling.constraints' names that jinit implements: how an op's forward scale and its
# input-gradient scale(s) are tied together (None: each pass keeps its own scale).
CONSTRAINTS = (None, "to_output_scale", "to_grad_input_scale", "gmean")


# --------------------------------------------------------------------------- scale_fwd/bwd


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _scale_vjp(x: jax.Array, fwd: float, bwd: float) -> jax.Array:
  return x if fwd == 1.0 else x * jnp.asarray(fwd, x.dtype)


def _scale_fwd_rule(x, fwd, bwd):
  return _scale_vjp(x, fwd, bwd), None


def _scale_bwd_rule(fwd, bwd, res, g):
  del fwd, res
  return (g if bwd == 1.0 else g * jnp.asarray(bwd, g.dtype),)


_scale_vjp.defvjp(_scale_fwd_rule, _scale_bwd_rule)


def _scale(x: jax.Array, fwd: float, bwd: float) -> jax.Array:
  """``fwd * x`` forward, ``bwd * gradient`` backward (the one custom_vjp every op uses)."""
  return cast(jax.Array, _scale_vjp(x, fwd, bwd))


def _check_scale(scale: Any, name: str) -> float:
  return validation.check_real(scale, name, positive=True)


def _check_array(x: Any, name: str) -> jax.Array:
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    raise TypeError(f"{name} must be a floating array, got dtype {x.dtype}")
  return x


def scale_fwd(x: jax.Array, scale: float) -> jax.Array:
  """``scale * x`` in the forward pass; the gradient passes through unscaled.

  ``y = s x`` forward, ``dL/dx = dL/dy`` backward (a ``jax.custom_vjp``), as
  ``unit_scaling.scale_fwd``.

  Args:
    x: a floating array.
    scale: a positive python float.

  Returns:
    ``x * scale``, in ``x``'s dtype.

  References: C. Blake et al., "u-μP", ICLR 2025, https://arxiv.org/abs/2407.17465, §2.2.
  """
  return _scale(_check_array(x, "x"), _check_scale(scale, "scale"), 1.0)


def scale_bwd(x: jax.Array, scale: float) -> jax.Array:
  """``x`` unchanged in the forward pass; its gradient times ``scale`` in the backward pass.

  ``y = x`` forward, ``dL/dx = s dL/dy`` backward (a ``jax.custom_vjp``), as
  ``unit_scaling.scale_bwd``.

  Args:
    x: a floating array.
    scale: a positive python float.

  Returns:
    ``x`` (its gradient is scaled).

  References: C. Blake et al., "u-μP", ICLR 2025, https://arxiv.org/abs/2407.17465, §2.2.
  """
  return _scale(_check_array(x, "x"), 1.0, _check_scale(scale, "scale"))


def constrain(constraint: str | None, *scales: float) -> tuple[float, ...]:
  """Ties an op's scales together, as ``unit_scaling.constraints.apply_constraint``.

  Args:
    constraint: ``None`` (keep every scale), ``"to_output_scale"`` (every scale becomes the
      first, the forward one), ``"to_grad_input_scale"`` (the second) or ``"gmean"`` (their
      geometric mean).
    *scales: ``(output_scale, grad_input_scale, ...)``.

  Returns:
    The scales after the constraint, as many as given.

  Raises:
    ValueError: an unknown ``constraint``.
  """
  if constraint not in CONSTRAINTS:
    raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
  if constraint is None or not scales:
    return tuple(scales)
  if constraint == "to_output_scale":
    s = scales[0]
  elif constraint == "to_grad_input_scale":
    s = scales[1]
  else:
    s = math.prod(scales) ** (1.0 / len(scales))
  return (s,) * len(scales)


def _log_interp(alpha: float, lower: float, upper: float) -> float:
  """``exp(alpha log(upper) + (1 - alpha) log(lower))`` (``logarithmic_interpolation``)."""
  return math.exp(alpha * math.log(upper) + (1 - alpha) * math.log(lower))


# --------------------------------------------------------------------------- matmuls


def _check_power(scale_power: Any) -> tuple[float, float, float]:
  if (not isinstance(scale_power, Sequence) or isinstance(scale_power, str)
      or len(scale_power) != 3):
    raise TypeError("scale_power must be 3 reals (output, grad(input), grad(weight)), got "
                    f"{scale_power!r}")
  return tuple(validation.check_real(p, "scale_power") for p in scale_power)


def linear_scales(x_shape: Sequence[int], kernel_shape: Sequence[int], *,
                  constraint: str | None = "to_output_scale",
                  scale_power: Sequence[float] = (0.5, 0.5, 0.5)) -> dict[str, float]:
  """The forward and backward scales :func:`unit_linear` applies, without applying them.

  ``output = fan_in^-p0``, ``grad_input = fan_out^-p1``, ``grad_weight = grad_bias =
  batch^-p2`` (``batch``: the number of rows of ``x``), then ``constraint`` ties
  ``output`` and ``grad_input`` (``unit_scaling.functional.linear``).

  Returns:
    ``{"output", "grad_input", "grad_weight", "grad_bias"}``.
  """
  constrain(constraint)  # validates the name before any arithmetic
  p0, p1, p2 = _check_power(scale_power)
  if len(kernel_shape) != 2:
    raise ValueError(f"kernel must be 2-D (fan_in, fan_out), got shape {tuple(kernel_shape)}; "
                     "reshape a DenseGeneral kernel to (prod(fan-in axes), prod(fan-out axes))")
  fan_in, fan_out = kernel_shape
  if not x_shape or x_shape[-1] != fan_in:
    raise ValueError(f"x's last axis must be the kernel's fan_in {fan_in}, got x shape "
                     f"{tuple(x_shape)}")
  batch = math.prod(x_shape) // fan_in
  out, grad_in = constrain(constraint, fan_in ** -p0, fan_out ** -p1)
  grad_w = batch ** -p2
  return {"output": out, "grad_input": grad_in, "grad_weight": grad_w, "grad_bias": grad_w}


def unit_linear(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
                constraint: str | None = "to_output_scale",
                scale_power: Sequence[float] = (0.5, 0.5, 0.5)) -> jax.Array:
  """u-μP's scaled matmul for a hidden (or input) weight: ``(x @ W + b) / sqrt(fan_in)``.

  With ``W ~ N(0, 1)`` and unit-scaled ``x`` the output is unit-scaled. Backward: the
  gradient of ``x`` is scaled by ``fan_out^-1/2`` and that of ``W`` (and ``b``) by
  ``batch^-1/2`` (``batch`` = rows of ``x``), so both are unit-scaled too. The default
  ``constraint="to_output_scale"`` uses the forward scale ``fan_in^-1/2`` for ``x``'s
  gradient as well (u-μP's rule for a non-cut edge: the gradient of ``x`` flows into the
  rest of the network and must match the forward scale); ``constraint=None`` keeps
  ``fan_out^-1/2``. Exactly ``unit_scaling.functional.linear`` (which also multiplies the
  bias by the forward scale).

  Args:
    x: ``(..., fan_in)``.
    kernel: ``(fan_in, fan_out)`` (Flax layout), drawn N(0, 1).
    bias: ``(fan_out,)`` or None.
    constraint: see :func:`constrain`.
    scale_power: the exponents of ``(fan_in, fan_out, batch)`` for the output, input-gradient
      and weight-gradient scales.

  Returns:
    ``(..., fan_out)``.

  References: C. Blake et al., "u-μP", ICLR 2025, https://arxiv.org/abs/2407.17465,
  §4, the table defining u-μP (hidden weights: multiplier ``1/sqrt(fan_in)``, init variance 1).
  """
  x, kernel = _check_array(x, "x"), _check_array(kernel, "kernel")
  s = linear_scales(x.shape, kernel.shape, constraint=constraint, scale_power=scale_power)
  x = _scale(x, 1.0, s["grad_input"])
  kernel = _scale(kernel, 1.0, s["grad_weight"])
  y = x @ kernel
  if bias is not None:
    bias = _scale(_check_array(bias, "bias"), 1.0, s["grad_bias"])
    y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
  return _scale(y, s["output"], 1.0)


def unit_readout(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
                 constraint: str | None = None) -> jax.Array:
  """u-μP's readout: ``(x @ W + b) / fan_in``, gradients unit-scaled.

  The forward scale is ``1/fan_in`` (μP's readout multiplier; the logits start at scale
  ``1/sqrt(fan_in)``), ``x``'s gradient ``1/sqrt(fan_out)``, ``W``'s ``1/sqrt(batch)``:
  :func:`unit_linear` with ``scale_power=(1, 1/2, 1/2)`` and no constraint, as
  ``unit_scaling.functional.linear_readout``.

  Args:
    x: ``(..., fan_in)``.
    kernel: ``(fan_in, fan_out)``, drawn N(0, 1).
    bias: ``(fan_out,)`` or None.
    constraint: see :func:`constrain` (default None, the library's).

  Returns:
    ``(..., fan_out)``.

  References: C. Blake et al., "u-μP", ICLR 2025, https://arxiv.org/abs/2407.17465,
  §4, the table defining u-μP (output weights: multiplier ``1/fan_in``).
  """
  return unit_linear(x, kernel, bias, constraint=constraint, scale_power=(1.0, 0.5, 0.5))


def unit_embedding(ids: jax.Array, table: jax.Array) -> jax.Array:
  """u-μP's embedding lookup: ``table[ids]``; ``table``'s gradient times ``sqrt(vocab/tokens)``.

  The lookup is unscaled (multiplier 1: rows drawn N(0, 1) are unit-scaled); the gradient
  of the table, a sum over the ``tokens = ids.size`` looked-up rows spread over ``vocab``
  rows, is scaled by ``sqrt(vocab / tokens)`` (``unit_scaling.functional.embedding``).

  Args:
    ids: integer ids, any shape.
    table: ``(vocab, features)`` (Flax ``Embed`` layout), drawn N(0, 1).

  Returns:
    ``ids.shape + (features,)``.
  """
  ids = jnp.asarray(ids)
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise TypeError(f"ids must be an integer array, got dtype {ids.dtype}")
  table = _check_array(table, "table")
  if table.ndim != 2:
    raise ValueError(f"table must be 2-D (vocab, features), got shape {table.shape}")
  table = _scale(table, 1.0, math.sqrt(table.shape[0] / max(ids.size, 1)))
  return jnp.take(table, ids, axis=0)


# --------------------------------------------------------------------------- residuals


def _check_tau(tau: Any) -> float:
  return validation.check_real(tau, "tau", positive=True)


def residual_split(x: jax.Array, tau: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """``(residual, skip)``: copies of ``x`` whose gradients are scaled by ``tau/sqrt(1+tau^2)``
  and ``1/sqrt(1+tau^2)``.

  Use with :func:`residual_add`: the branch's gradient is scaled in the backward pass where
  its forward scale was applied, so the residual stream and every gradient stay
  unit-scaled (``unit_scaling.functional.residual_split``).

  Args:
    x: the residual stream.
    tau: the weight of the branch relative to the skip (> 0); see :func:`residual_taus`.

  Returns:
    ``(residual, skip)``: feed ``residual`` to the branch.
  """
  x, tau = _check_array(x, "x"), _check_tau(tau)
  denom = math.sqrt(1.0 + tau * tau)
  return _scale(x, 1.0, tau / denom), _scale(x, 1.0, 1.0 / denom)


def residual_add(residual: jax.Array, skip: jax.Array, tau: float = 1.0) -> jax.Array:
  """``(tau * residual + skip) / sqrt(1 + tau^2)`` forward; gradients pass through unscaled.

  Two independent unit-scaled inputs give a unit-scaled output for any ``tau``
  (``unit_scaling.functional.residual_add``).

  Args:
    residual: the branch's output.
    skip: the skip connection (from :func:`residual_split`).
    tau: the same ``tau`` as the split.

  Returns:
    The new residual stream.
  """
  residual, skip = _check_array(residual, "residual"), _check_array(skip, "skip")
  tau = _check_tau(tau)
  denom = math.sqrt(1.0 + tau * tau)
  return _scale(residual, tau / denom, 1.0) + _scale(skip, 1.0 / denom, 1.0)


def residual_apply(fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                   tau: float = 1.0) -> jax.Array:
  """``residual_add(fn(residual), skip, tau)`` with ``residual, skip = residual_split(x, tau)``."""
  if not callable(fn):
    raise TypeError(f"fn must be callable, got {type(fn).__name__}")
  residual, skip = residual_split(x, tau)
  return residual_add(fn(residual), skip, tau)


def residual_taus(layers: int, *, residual_mult: float = 1.0,
                  residual_attn_ratio: float = 1.0) -> tuple[float, ...]:
  """The ``tau`` of each residual branch of a pre-LN transformer: attention, MLP, attention, ...

  u-μP's Appendix G rule (``unit_scaling.core.functional.transformer_residual_scaling_rule``):
  with ``a_mlp = residual_mult * sqrt(2 / (1 + residual_attn_ratio^2))``, ``a_attn =
  residual_attn_ratio * a_mlp``, branch ``i`` of ``2 L`` (even: attention, odd: MLP, with
  ``n_attn = (i+1)//2`` and ``n_mlp = i//2`` branches before it) gets
  ``tau_i = a_i / sqrt(L + n_attn a_attn^2 + n_mlp a_mlp^2)``. Every attention branch then
  contributes the same variance to the stream, every MLP branch too; all branches together
  contribute ``residual_mult^2`` times the embedding's, attention vs MLP in the ratio
  ``residual_attn_ratio^2``.

  Args:
    layers: transformer layers ``L`` (each has an attention and an MLP branch).
    residual_mult: u-μP's ``α_res``.
    residual_attn_ratio: u-μP's ``α_res_attn_ratio``.

  Returns:
    ``2 * layers`` floats, branch by branch.

  References: C. Blake et al., "u-μP", ICLR 2025, https://arxiv.org/abs/2407.17465, App. G.
  """
  layers = validation.check_int(layers, "layers")
  residual_mult = validation.check_real(residual_mult, "residual_mult", positive=True)
  ratio = validation.check_real(residual_attn_ratio, "residual_attn_ratio", positive=True)
  a_mlp = residual_mult * math.sqrt(2.0 / (1.0 + ratio * ratio))
  a_attn = ratio * a_mlp
  branches = 2 * layers
  out = []
  for i in range(branches):
    n_attn, n_mlp = (i + 1) // 2, i // 2
    a = a_attn if i % 2 == 0 else a_mlp
    out.append(a / math.sqrt(branches / 2 + n_attn * a_attn ** 2 + n_mlp * a_mlp ** 2))
  return tuple(out)


# --------------------------------------------------------------------------- nonlinearities


def gelu_scales(mult: float = 1.0, constraint: str | None = "to_output_scale"
                ) -> tuple[float, float]:
  """``(output_scale, grad_input_scale)`` of :func:`unit_gelu` (the library's model)."""
  mult = validation.check_real(mult, "mult", positive=True)
  alpha = 1.0 / (1.0 + 0.25 / mult ** 2)
  out = _log_interp(alpha, 2.0, math.sqrt(2.0 / (1.0 - 1.0 / math.pi)))
  grad = _log_interp(alpha, 2.0, math.sqrt(2.0))
  out, grad = constrain(constraint, out, grad)
  return out, grad


def unit_gelu(x: jax.Array, mult: float = 1.0,
              constraint: str | None = "to_output_scale") -> jax.Array:
  """u-μP's GELU: ``s * gelu(mult * x) / mult`` with ``unit_scaling``'s empirical scale ``s``.

  ``s`` interpolates log-linearly, with weight ``alpha = 1/(1 + 1/(4 mult^2))``, between 2
  (small ``mult``: ``gelu(mult x)/mult -> x/2``) and ``sqrt(2/(1-1/pi))`` (large ``mult``:
  ReLU, whose output on a unit normal has std ``sqrt((1-1/pi)/2)``); the input-gradient
  scale likewise between 2 and ``sqrt(2)``; then ``constraint`` ties them (default: the
  forward scale for both). Exact (erf) GELU, as ``unit_scaling.functional.gelu``.

  Args:
    x: unit-scaled pre-activations.
    mult: u-μP's ``α_ffn-act``, the GELU's input multiplier.
    constraint: see :func:`constrain`.

  Returns:
    ``x``'s shape.
  """
  x = _check_array(x, "x")
  out, grad = gelu_scales(mult, constraint)
  m = jnp.asarray(mult, x.dtype)
  y = jax.nn.gelu(_scale(x, 1.0, grad) * m, approximate=False) / m
  return _scale(y, out, 1.0)


# --------------------------------------------------------------------------- norms


def _norm_grad_scale(x: jax.Array) -> float:
  return math.sqrt(x.shape[-1] / max(x.size, 1))


def _gain(v: jax.Array, name: str, x: jax.Array) -> jax.Array:
  """A ``(features,)`` gain or bias, its gradient scaled, shaped to broadcast against ``x``."""
  v = _check_array(v, name)
  if v.shape != x.shape[-1:]:
    raise ValueError(f"{name} must have shape ({x.shape[-1]},) (x's last axis), got {v.shape}")
  return _scale(v, 1.0, _norm_grad_scale(x)).reshape((1,) * (x.ndim - 1) + (-1,))


def unit_layer_norm(x: jax.Array, scale: jax.Array | None = None,
                    bias: jax.Array | None = None, *, eps: float = 1e-5) -> jax.Array:
  """LayerNorm over the last axis; the gain's and bias's gradients times ``sqrt(features/x.size)``.

  The forward pass is the usual LayerNorm (its output is unit-scaled already); the gain and
  bias gradients, sums over ``x.size / features`` rows, are scaled by the inverse square
  root of that count (``unit_scaling.functional.layer_norm``).

  Args:
    x: ``(..., features)``.
    scale, bias: ``(features,)`` or None (the library's default has neither).
    eps: added to the variance.

  Returns:
    ``x``'s shape.
  """
  x = _check_array(x, "x")
  eps = validation.check_real(eps, "eps", nonnegative=True)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  y = (x - mean) * jax.lax.rsqrt(var + jnp.asarray(eps, x.dtype))
  if scale is not None:
    y = y * _gain(scale, "scale", x)
  if bias is not None:
    y = y + _gain(bias, "bias", x)
  return y


def unit_rms_norm(x: jax.Array, scale: jax.Array | None = None, *,
                  eps: float = 1e-5) -> jax.Array:
  """RMSNorm ``x / sqrt(mean(x^2) + eps)`` over the last axis; the gain's gradient scaled as
  in :func:`unit_layer_norm` (``unit_scaling.functional.rms_norm``).

  Args:
    x: ``(..., features)``.
    scale: ``(features,)`` or None (the library's default).
    eps: added to the mean square.

  Returns:
    ``x``'s shape.
  """
  x = _check_array(x, "x")
  eps = validation.check_real(eps, "eps", nonnegative=True)
  y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True)
                        + jnp.asarray(eps, x.dtype))
  if scale is not None:
    y = y * _gain(scale, "scale", x)
  return y


# --------------------------------------------------------------------------- attention


def attention_output_scale(head_dim: int, seq_len: int, *, mult: float = 1.0,
                           causal: bool = False) -> float:
  """The scale :func:`unit_attention` applies to its output (forward) and to q, k, v (backward).

  ``1 / interp(alpha, lower, 1)`` with ``alpha = 1/(1 + 4 head_dim / mult^2)`` and ``lower =
  sqrt(1/seq_len)`` (``sqrt(log(seq_len)/seq_len)`` when causal): near-uniform attention at
  init averages ``seq_len`` unit values, whose scale is ``lower``; one-hot attention keeps it
  (``unit_scaling.functional.scaled_dot_product_attention``'s empirical model).
  """
  head_dim = validation.check_int(head_dim, "head_dim")
  seq_len = validation.check_int(seq_len, "seq_len")
  mult = validation.check_real(mult, "mult", positive=True)
  if not isinstance(causal, bool):
    raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
  alpha = 1.0 / (1.0 + 4.0 * head_dim / mult ** 2)
  lower = math.sqrt((math.log(seq_len) if causal else 1.0) / seq_len)
  return 1.0 / _log_interp(alpha, lower, 1.0)


def unit_attention(query: jax.Array, key: jax.Array, value: jax.Array, *, mult: float = 1.0,
                   causal: bool = False, mask: jax.Array | None = None) -> jax.Array:
  """u-μP's dot-product attention: logits ``mult * q.k / head_dim``, output unit-scaled.

  μP's ``1/head_dim`` logit scale (not ``1/sqrt(head_dim)``), then the output is multiplied
  by :func:`attention_output_scale` in the forward pass and the gradients of ``q``, ``k``,
  ``v`` by the same factor in the backward pass
  (``unit_scaling.functional.scaled_dot_product_attention``).

  Args:
    query, key, value: ``(batch..., seq, heads, head_dim)`` (Flax layout).
    mult: u-μP's ``α_attn``, the logit multiplier.
    causal: causal masking (and the causal scale model).
    mask: an optional boolean mask broadcastable to ``(batch..., heads, q_seq, kv_seq)``.

  Returns:
    ``query``'s shape.

  References: C. Blake et al., "u-μP", ICLR 2025, https://arxiv.org/abs/2407.17465, §4 and
  the table defining u-μP (attention logits ``1/head_dim``).
  """
  query, key, value = (_check_array(a, n) for a, n in
                       ((query, "query"), (key, "key"), (value, "value")))
  if query.ndim < 3 or key.shape != value.shape or query.shape[-1] != key.shape[-1]:
    raise ValueError("query, key, value must be (batch..., seq, heads, head_dim) with equal "
                     f"head_dim and key.shape == value.shape, got {query.shape}, {key.shape}, "
                     f"{value.shape}")
  d = value.shape[-1]
  s = attention_output_scale(d, value.shape[-3], mult=mult, causal=causal)
  q, k, v = (_scale(a, 1.0, s) for a in (query, key, value))
  out = jax.nn.dot_product_attention(q, k, v, mask=mask, scale=mult / d, is_causal=causal)
  return _scale(out, s, 1.0)


# --------------------------------------------------------------------------- loss


def unit_softmax_cross_entropy(logits: jax.Array, labels: jax.Array, *,
                               mult: float = 1.0) -> jax.Array:
  """Mean softmax cross-entropy whose gradient w.r.t. the logits is unit-scaled.

  Forward: the mean over rows of ``-log softmax(mult * logits)[label]``. Backward: the
  gradient of each row is ``(softmax - onehot) * vocab / sqrt(vocab - 1)``, not divided by
  the number of rows (the ``1/rows`` of the mean is forward-only), as
  ``unit_scaling.functional.cross_entropy``.

  Args:
    logits: ``(..., vocab)``.
    labels: integer labels, ``logits.shape[:-1]``.
    mult: u-μP's ``α_loss-softmax``, forward-only.

  Returns:
    A scalar.
  """
  logits = _check_array(logits, "logits")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != logits.shape[:-1]:
    raise ValueError(f"labels must be integers of shape logits.shape[:-1] = {logits.shape[:-1]}, "
                     f"got {labels.dtype} {labels.shape}")
  vocab = logits.shape[-1]
  if vocab < 2:
    raise ValueError(f"logits must have at least 2 classes, got {vocab}")
  rows = max(labels.size, 1)
  mult = validation.check_real(mult, "mult", positive=True)
  z = _scale(_scale(logits, 1.0, vocab / math.sqrt(vocab - 1)), mult, 1.0)
  logp = jax.nn.log_softmax(z, axis=-1)
  total = -jnp.sum(jnp.take_along_axis(logp, labels[..., None], axis=-1))
  return _scale(total, 1.0 / rows, 1.0)
