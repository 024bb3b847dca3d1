"""Mean-field signal propagation in wide random networks: order, chaos, criticality.

A fully connected net ``z^l = W^l phi(z^{l-1}) + b^l`` with ``W_ij ~ N(0, sigma_w2 / N)``
and ``b_i ~ N(0, sigma_b2)`` has, as the width N grows, Gaussian pre-activations whose
variance ``q^l`` and whose correlation ``c^l`` between two inputs follow deterministic
maps (Poole et al. 2016, Schoenholz et al. 2017). This module computes those maps,
their fixed points ``q*`` and ``c*``, the slope ``chi1`` of the correlation map at
``c = 1``, the depth scales ``xi_q`` and ``xi_c``, and the critical ``sigma_w2``
(``chi1 = 1``, the edge of chaos), for any elementwise JAX activation.

Numerics: Gaussian expectations use Gauss-Hermite quadrature, the same 200-node rule
as :func:`jinit.second_moment` (``jinit._src.gains``) for 1-D integrals and a
:data:`QUAD_NODES_2D` x :data:`QUAD_NODES_2D` product rule for the 2-D integrals of the
correlation map. ``phi'`` and ``phi''`` come from autodiff (``jax.jvp``). Everything
runs in float32 and is jit- and vmap-friendly over ``(sigma_w2, sigma_b2)``: scalars
and arrays broadcast against each other. Concrete arguments are validated before any
work; under ``jax.jit``/``jax.vmap`` traced values cannot be inspected, so the checks
that need values (signs, "no critical point") are skipped there and a failure shows
up as NaN.

References:
  Poole et al. 2016, https://arxiv.org/abs/1606.05340
  Schoenholz et al. 2017, "Deep Information Propagation", https://arxiv.org/abs/1611.01232
  Equation numbers below refer to arXiv:1611.01232 from memory and were not re-checked
  against the paper when this was written; every docstring also gives the formula.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax

from jinit._src import gains as gains_lib
from jinit._src import initializers as inits
from jinit._src import validation

Activation = Callable[[jax.Array], jax.Array]

# Nodes per axis of the 2-D product rule (QUAD_NODES_2D^2 evaluations per integral).
# For smooth activations (tanh) 100 nodes per axis converge below float32 precision;
# the 1-D rule uses gains' 200 nodes.
QUAD_NODES_2D = 100
# Fixed-point iteration of the length map: stop when |q_{l+1} - q_l| <= tol (1 + q),
# at most _Q_MAX_ITER steps, then _NEWTON_STEPS guarded Newton steps. A q above
# _Q_DIVERGED means no finite fixed point (e.g. relu with sigma_w2 > 2): q* = inf.
_Q_TOL = 1e-7
_Q_MAX_ITER = 20_000
_NEWTON_STEPS = 4
_Q_DIVERGED = 1e30
# q* -> 0+ limit: derivatives are evaluated at max(q*, _Q_FLOOR), so a kink at 0
# (relu) gives the one-sided limit (relu: E[phi'^2] = 1/2) rather than phi'(0).
_Q_FLOOR = 1e-12
_BISECT_STEPS = 50  # bisections for c* on [0, 1] and for log(sigma_w2): 2^-50 of the range
DEFAULT_SEARCH = (1e-2, 1e2)  # sigma_w2 range searched by critical_sigma_w2


# --------------------------------------------------------------------------- quadrature


@functools.cache
def _rule(n: int) -> tuple[np.ndarray, np.ndarray]:
  """Probabilists' Gauss-Hermite nodes and weights for z ~ N(0, 1), as in gains.second_moment."""
  nodes, weights = np.polynomial.hermite_e.hermegauss(n)
  return nodes, weights / math.sqrt(2.0 * math.pi)


def _rule_1d():
  nodes, weights = _rule(gains_lib._QUAD_NODES)  # pylint: disable=protected-access
  return jnp.asarray(nodes, jnp.float32), jnp.asarray(weights, jnp.float32)


def _rule_2d():
  nodes, weights = _rule(QUAD_NODES_2D)
  z1 = np.repeat(nodes, QUAD_NODES_2D)
  z2 = np.tile(nodes, QUAD_NODES_2D)
  w = np.repeat(weights, QUAD_NODES_2D) * np.tile(weights, QUAD_NODES_2D)
  return (jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32),
          jnp.asarray(w, jnp.float32))


def _d(phi: Activation) -> Activation:
  """phi' of an elementwise phi, by forward-mode autodiff."""
  return lambda x: jax.jvp(phi, (x,), (jnp.ones_like(x),))[1]


def _e1(f: Activation, q) -> jax.Array:
  """E[f(sqrt(q) z)], z ~ N(0, 1)."""
  z, w = _rule_1d()
  return jnp.sum(w * f(jnp.sqrt(q) * z))


def _e2(f: Activation, g: Activation, q, c) -> jax.Array:
  """E[f(u1) g(u2)], u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)."""
  z1, z2, w = _rule_2d()
  s = jnp.sqrt(q)
  u1 = s * z1
  u2 = s * (c * z1 + jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0)) * z2)
  return jnp.sum(w * f(u1) * g(u2))


# --------------------------------------------------------------------------- the maps


def _length_map(phi, sw, sb, q):
  return sw * _e1(lambda u: phi(u) ** 2, q) + sb


def _length_slope(phi, sw, q):
  """dL/dq = sigma_w2 E[phi'^2 + phi phi''] (Stein's lemma), at q > 0."""
  d1 = _d(phi)
  d2 = _d(d1)
  q = jnp.maximum(q, _Q_FLOOR)
  return sw * _e1(lambda u: d1(u) ** 2 + phi(u) * d2(u), q)


def _q_star_impl(phi, sw, sb):
  one = jnp.ones_like(sw)

  def cond(state):
    i, q, dq = state
    return (i < _Q_MAX_ITER) & (dq > _Q_TOL * (1.0 + q)) & (q < _Q_DIVERGED)

  def body(state):
    i, q, _ = state
    q_new = _length_map(phi, sw, sb, q)
    return i + 1, q_new, jnp.abs(q_new - q)

  _, q, _ = lax.while_loop(cond, body, (0, one, jnp.inf * one))
  diverged = ~(q < _Q_DIVERGED)  # also catches NaN
  q = jnp.where(diverged, one, q)

  def newton(q, _):
    g = _length_map(phi, sw, sb, q) - q
    slope = _length_slope(phi, sw, q) - 1.0
    q_new = q - g / slope
    g_new = _length_map(phi, sw, sb, q_new) - q_new
    ok = (q_new >= 0.0) & jnp.isfinite(q_new) & (jnp.abs(g_new) < jnp.abs(g))
    return jnp.where(ok, q_new, q), None

  q, _ = lax.scan(newton, q, None, length=_NEWTON_STEPS)
  return jnp.where(diverged, jnp.inf, q)


def _q_map_impl(phi, sw, sb, q0, depth):
  def step(q, _):
    q = _length_map(phi, sw, sb, q)
    return q, q

  _, qs = lax.scan(step, q0, None, length=depth)
  return qs


def _chi1_at(phi, sw, q):
  d1 = _d(phi)
  return sw * _e1(lambda u: d1(u) ** 2, jnp.maximum(q, _Q_FLOOR))


def _chi1_impl(phi, sw, sb):
  return _chi1_at(phi, sw, _q_star_impl(phi, sw, sb))


def _corr_map(phi, sw, sb, q, c):
  """c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q', normalized so that c = 1 -> 1."""
  q = jnp.maximum(q, _Q_FLOOR)
  num = sw * _e2(phi, phi, q, c) + sb
  den = sw * _e2(phi, phi, q, jnp.ones_like(c)) + sb
  return num / den


def _c_star_impl(phi, sw, sb):
  q = _q_star_impl(phi, sw, sb)
  chi1 = _chi1_at(phi, sw, q)

  # C(0) >= 0 and, when chi1 > 1, C(c) < c just below 1: a root of C(c) - c in [0, 1).
  def bisect(bounds, _):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    above = _corr_map(phi, sw, sb, q, mid) > mid
    return (jnp.where(above, mid, lo), jnp.where(above, hi, mid)), None

  zero = jnp.zeros_like(sw)
  (lo, hi), _ = lax.scan(bisect, (zero, zero + 1.0), None, length=_BISECT_STEPS)
  return jnp.where(chi1 > 1.0, 0.5 * (lo + hi), 1.0)


def _c_map_impl(phi, sw, sb, c0, depth):
  q = _q_star_impl(phi, sw, sb)

  def step(c, _):
    c = _corr_map(phi, sw, sb, q, c)
    return c, c

  _, cs = lax.scan(step, c0, None, length=depth)
  return cs


def _depth_scale(slope):
  """-1 / log(slope), infinite where slope >= 1 (the perturbation does not decay)."""
  safe = jnp.where(slope < 1.0, slope, 0.5)
  return jnp.where(slope < 1.0, -1.0 / jnp.log(safe), jnp.inf)


def _xi_q_impl(phi, sw, sb):
  return _depth_scale(_length_slope(phi, sw, _q_star_impl(phi, sw, sb)))


def _xi_c_impl(phi, sw, sb):
  q = _q_star_impl(phi, sw, sb)
  chi1 = _chi1_at(phi, sw, q)
  c = _c_star_impl(phi, sw, sb)
  d1 = _d(phi)
  chaotic_slope = sw * _e2(d1, d1, jnp.maximum(q, _Q_FLOOR), c)
  return _depth_scale(jnp.where(chi1 > 1.0, chaotic_slope, chi1))


def _critical_impl(phi, sb, lo, hi):
  """Bisection on log(sigma_w2) for chi1(sigma_w2) = 1; NaN without a sign change."""
  chi = lambda sw: _chi1_impl(phi, sw, sb) - 1.0
  log_lo, log_hi = jnp.log(lo), jnp.log(hi)
  f_lo, f_hi = chi(jnp.exp(log_lo) + 0.0 * sb), chi(jnp.exp(log_hi) + 0.0 * sb)

  def bisect(bounds, _):
    a, b = bounds
    mid = 0.5 * (a + b)
    below = chi(jnp.exp(mid)) < 0.0
    return (jnp.where(below, mid, a), jnp.where(below, b, mid)), None

  start = (log_lo + 0.0 * sb, log_hi + 0.0 * sb)
  (a, b), _ = lax.scan(bisect, start, None, length=_BISECT_STEPS)
  ok = (f_lo < 0.0) & (f_hi >= 0.0)
  return jnp.where(ok, jnp.exp(0.5 * (a + b)), jnp.nan)


# --------------------------------------------------------------------------- validation


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _check_phi(phi: Any) -> None:
  """phi must be callable, elementwise, finite, with a finite E[phi(z)^2]."""
  if not callable(phi):
    raise TypeError(f"phi must be an elementwise activation (callable), got {phi!r}")
  try:
    hash(phi)
  except TypeError:
    raise TypeError(f"phi must be hashable (a function), got {phi!r}") from None
  # Concrete evaluation even when called under jit/vmap (phi's values do not depend on
  # the traced sigmas), once per phi.
  with jax.ensure_compile_time_eval():
    _check_phi_values(phi)


@functools.lru_cache(maxsize=256)
def _check_phi_values(phi: Any) -> None:
  nodes, _ = _rule(gains_lib._QUAD_NODES)  # pylint: disable=protected-access
  x = jnp.asarray(nodes, jnp.float32)
  try:
    values = np.asarray(phi(x))
  except Exception as e:  # a clear message beats a trace from inside the quadrature
    raise TypeError(f"phi must map a float32 array elementwise; calling it failed: {e!r}") \
        from e
  if values.shape != x.shape:
    raise ValueError(f"phi must map an array elementwise; got output shape {values.shape} for "
                     f"input shape {x.shape}")
  if np.isnan(values).any():
    raise ValueError("phi returns NaN on N(0, 1) quadrature nodes; it must be defined on the "
                     "whole real line")
  # Infinite or non-finite second moment: non-finite values, or a quadrature that does
  # not converge (a finite E[phi(z)^2] gives the same value with 100 and 200 nodes).
  m_full = gains_lib.second_moment(phi)
  half = gains_lib._QUAD_NODES // 2  # pylint: disable=protected-access
  m_half = gains_lib.second_moment(phi, n=half)
  if not (np.isfinite(values).all() and np.isfinite(m_full) and np.isfinite(m_half)) \
      or abs(m_full - m_half) > 0.1 * max(abs(m_full), 1e-30):
    raise ValueError(f"phi has an infinite (or non-finite) second moment E[phi(z)^2] "
                     f"(quadrature gives {m_full!r} with 200 nodes, {m_half!r} with 100); the "
                     "mean-field maps need a finite one")
  if m_full == 0.0:
    raise ValueError("phi is zero almost everywhere (E[phi(z)^2] = 0): no signal propagates")


def _check_sigma(value: Any, name: str, *, positive: bool) -> jax.Array:
  """A real scalar or array; concrete values must be finite and > 0 (or >= 0)."""
  if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
    raise TypeError(f"{name} must be a real number or array, got {value!r}")
  if _is_traced(value):
    if not jnp.issubdtype(value.dtype, jnp.number) or jnp.iscomplexobj(value):
      raise TypeError(f"{name} must be real, got dtype {value.dtype}")
    return value.astype(jnp.float32)
  try:
    arr = np.asarray(value)
  except Exception as e:
    raise TypeError(f"{name} must be a real number or array, got {value!r}") from e
  if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) \
      or np.issubdtype(arr.dtype, np.complexfloating):
    raise TypeError(f"{name} must be a real number or array, got {value!r}")
  if not np.isfinite(arr).all():
    raise ValueError(f"{name} must be finite, got {value!r}")
  if positive and (arr <= 0).any():
    raise ValueError(f"{name} must be > 0, got {value!r}")
  if not positive and (arr < 0).any():
    raise ValueError(f"{name} must be >= 0, got {value!r}")
  return jnp.asarray(arr, jnp.float32)


def _check_depth(depth: Any) -> int:
  return validation.check_int(depth, "depth")


def _check_result(out: jax.Array, what: str, phi) -> jax.Array:
  if not _is_traced(out) and bool(jnp.isnan(out).any()):
    raise ValueError(f"{what} is NaN for phi={getattr(phi, '__name__', phi)!r}: the activation "
                     "produced a non-finite value on the quadrature nodes at the variances "
                     "reached (e.g. it overflows for large inputs)")
  return out


@functools.partial(jax.jit, static_argnums=0)
def _vec2(impl_and_phi, sw, sb):
  impl, phi = impl_and_phi
  # Traced sigmas cannot be checked before the call: outside the domain (sigma_w2 <= 0,
  # sigma_b2 < 0, NaN, inf) the result is NaN, never a number that reads as valid
  # (-0.0 from chi1, or an inf xi_c that reads as "critical").
  sw, sb = jnp.broadcast_arrays(sw, sb)  # explicit (strict rank promotion)
  valid = jnp.isfinite(sw) & (sw > 0) & jnp.isfinite(sb) & (sb >= 0)
  out = jnp.vectorize(functools.partial(impl, phi))(jnp.where(valid, sw, 1.0),
                                                     jnp.where(valid, sb, 0.0))
  return jnp.where(valid, out, jnp.nan)


def _scalar_pair(impl, phi, sigma_w2, sigma_b2, what):
  _check_phi(phi)
  sw = _check_sigma(sigma_w2, "sigma_w2", positive=True)
  sb = _check_sigma(sigma_b2, "sigma_b2", positive=False)
  return _check_result(_vec2((impl, phi), sw, sb), what, phi)


# --------------------------------------------------------------------------- public API


def q_star(phi: Activation, sigma_w2, sigma_b2) -> jax.Array:
  r"""The fixed point q* of the length map (the pre-activation variance deep in the net).

  .. math:: q^* = \sigma_w^2 \int \mathcal{D}z\, \phi(\sqrt{q^*} z)^2 + \sigma_b^2

  the fixed point of Schoenholz et al. 2017, eq. (2) (Poole et al. 2016, eq. (3)),
  reached by iterating the map from q = 1 (then polished by Newton steps).

  Args:
    phi: an elementwise activation, e.g. ``jnp.tanh``.
    sigma_w2: weight variance times fan_in (> 0); a scalar or an array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    float32 array of the broadcast shape; ``inf`` where the iteration diverges (no
    finite fixed point, e.g. relu with sigma_w2 > 2).

  Raises:
    TypeError: phi not callable, or sigmas not real.
    ValueError: sigma_w2 <= 0, sigma_b2 < 0, or phi returning NaN / with an infinite
      second moment.
  """
  return _scalar_pair(_q_star_impl, phi, sigma_w2, sigma_b2, "q_star")


def q_map(phi: Activation, sigma_w2, sigma_b2, q0, depth: int) -> jax.Array:
  r"""Predicted pre-activation variance at each of ``depth`` layers (the length map).

  .. math:: q^{l} = \sigma_w^2 \int \mathcal{D}z\, \phi(\sqrt{q^{l-1}} z)^2 + \sigma_b^2,
     \qquad q^0 = q_0

  Schoenholz et al. 2017, eq. (2). ``q0`` is the variance of the pre-activations
  that enter the first of the ``depth`` layers ``z^l = W phi(z^{l-1}) + b``.

  Args:
    phi: an elementwise activation.
    sigma_w2: weight variance times fan_in (> 0), scalar.
    sigma_b2: bias variance (>= 0), scalar.
    q0: input pre-activation variance (>= 0), a scalar or an array.
    depth: number of layers (>= 1).

  Returns:
    float32 array of shape ``q0.shape + (depth,)``: ``[q^1, ..., q^depth]``.
  """
  _check_phi(phi)
  depth = _check_depth(depth)
  sw = _check_sigma(sigma_w2, "sigma_w2", positive=True)
  sb = _check_sigma(sigma_b2, "sigma_b2", positive=False)
  q0 = _check_sigma(q0, "q0", positive=False)
  if sw.ndim or sb.ndim:
    raise ValueError("q_map takes scalar sigma_w2 and sigma_b2 (vmap it for grids); got shapes "
                     f"{sw.shape} and {sb.shape}")
  out = _q_map_jit(phi, sw, sb, q0, depth)
  return _check_result(out, "q_map", phi)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _q_map_jit(phi, sw, sb, q0, depth):
  return jnp.vectorize(lambda q: _q_map_impl(phi, sw, sb, q, depth), signature="()->(d)")(q0)


def c_star(phi: Activation, sigma_w2, sigma_b2) -> jax.Array:
  r"""The stable fixed point c* of the correlation map.

  .. math:: c^l = \frac{1}{q^*}\Big[\sigma_w^2 \int \mathcal{D}z_1 \mathcal{D}z_2\,
     \phi(u_1)\phi(u_2) + \sigma_b^2\Big],\quad u_1 = \sqrt{q^*} z_1,\
     u_2 = \sqrt{q^*}\big(c^{l-1} z_1 + \sqrt{1 - (c^{l-1})^2}\, z_2\big)

  Schoenholz et al. 2017, eq. (3) (at q^{l-1} = q*). In the ordered phase
  (chi1 <= 1) c* = 1; in the chaotic phase (chi1 > 1) c* < 1 is found by bisection on
  [0, 1) (C(0) >= 0 and C(c) < c just below 1 there).

  Args:
    phi: an elementwise activation.
    sigma_w2: weight variance times fan_in (> 0); scalar or array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    float32 array of the broadcast shape, in [0, 1].
  """
  return _scalar_pair(_c_star_impl, phi, sigma_w2, sigma_b2, "c_star")


def c_map(phi: Activation, sigma_w2, sigma_b2, c0, depth: int) -> jax.Array:
  r"""Predicted correlation of two inputs' pre-activations at each of ``depth`` layers.

  Iterates Schoenholz et al. 2017, eq. (3), with both inputs at the fixed point q*
  (the regime the paper's depth scales describe), from the correlation ``c0``.

  Args:
    phi: an elementwise activation.
    sigma_w2, sigma_b2: scalars (> 0, >= 0).
    c0: the inputs' correlation, in [-1, 1]; scalar or array.
    depth: number of layers (>= 1).

  Returns:
    float32 array of shape ``c0.shape + (depth,)``: ``[c^1, ..., c^depth]``.
  """
  _check_phi(phi)
  depth = _check_depth(depth)
  sw = _check_sigma(sigma_w2, "sigma_w2", positive=True)
  sb = _check_sigma(sigma_b2, "sigma_b2", positive=False)
  if sw.ndim or sb.ndim:
    raise ValueError("c_map takes scalar sigma_w2 and sigma_b2 (vmap it for grids)")
  c0 = jnp.asarray(c0, jnp.float32)
  if not _is_traced(c0) and bool((jnp.abs(c0) > 1.0).any()):
    raise ValueError(f"c0 must be a correlation in [-1, 1], got {c0}")
  out = _c_map_jit(phi, sw, sb, c0, depth)
  return _check_result(out, "c_map", phi)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _c_map_jit(phi, sw, sb, c0, depth):
  return jnp.vectorize(lambda c: _c_map_impl(phi, sw, sb, c, depth), signature="()->(d)")(c0)


def chi1(phi: Activation, sigma_w2, sigma_b2) -> jax.Array:
  r"""The slope of the correlation map at c = 1: order (< 1), chaos (> 1), criticality (= 1).

  .. math:: \chi_1 = \frac{\partial c^l}{\partial c^{l-1}}\Big|_{c=1}
     = \sigma_w^2 \int \mathcal{D}z\, \big[\phi'(\sqrt{q^*} z)\big]^2

  Schoenholz et al. 2017, eq. (4). It is also the factor by which the mean squared
  gradient grows per layer going backwards (their §5). ``phi'`` by autodiff; where
  q* = 0 the q* -> 0+ limit is taken (relu: chi1 = sigma_w2 / 2).

  Args:
    phi: an elementwise activation.
    sigma_w2: weight variance times fan_in (> 0); scalar or array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    float32 array of the broadcast shape.
  """
  return _scalar_pair(_chi1_impl, phi, sigma_w2, sigma_b2, "chi1")


def xi_q(phi: Activation, sigma_w2, sigma_b2) -> jax.Array:
  r"""Depth scale over which the pre-activation variance approaches q*.

  .. math:: \xi_q^{-1} = -\log\Big[\chi_1 + \sigma_w^2 \int \mathcal{D}z\,
     \phi''(\sqrt{q^*} z)\, \phi(\sqrt{q^*} z)\Big]

  Schoenholz et al. 2017, eq. (6): |q^l - q*| ~ exp(-l / xi_q). The bracket is the
  slope of the length map at q* (Stein's lemma); ``phi''`` by autodiff.

  Args:
    phi: an elementwise activation.
    sigma_w2: weight variance times fan_in (> 0); scalar or array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    float32 array of the broadcast shape; ``inf`` where the slope is >= 1.
  """
  return _scalar_pair(_xi_q_impl, phi, sigma_w2, sigma_b2, "xi_q")


def xi_c(phi: Activation, sigma_w2, sigma_b2) -> jax.Array:
  r"""Depth scale over which two inputs' correlation approaches c*; diverges at criticality.

  .. math:: \xi_c^{-1} = -\log\Big[\sigma_w^2 \int \mathcal{D}z_1 \mathcal{D}z_2\,
     \phi'(u_1^*)\, \phi'(u_2^*)\Big]

  with u* as in :func:`c_star` at c = c*: Schoenholz et al. 2017, eq. (9),
  |c^l - c*| ~ exp(-l / xi_c). In the ordered phase c* = 1 and the bracket is chi1, so
  xi_c = -1 / log(chi1) -> inf at chi1 = 1. Schoenholz et al. find networks trainable
  up to depth ~ 6 xi_c.

  Args:
    phi: an elementwise activation.
    sigma_w2: weight variance times fan_in (> 0); scalar or array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    float32 array of the broadcast shape; ``inf`` at (or numerically at) criticality.
  """
  return _scalar_pair(_xi_c_impl, phi, sigma_w2, sigma_b2, "xi_c")


def critical_sigma_w2(phi: Activation, sigma_b2, *,
                      search: tuple[float, float] = DEFAULT_SEARCH) -> jax.Array:
  r"""The sigma_w2 at which chi1 = 1 (the edge of chaos), for a given sigma_b2.

  .. math:: \sigma_w^2 \int \mathcal{D}z\, \big[\phi'(\sqrt{q^*(\sigma_w^2, \sigma_b^2)}\, z)
     \big]^2 = 1

  (Schoenholz et al. 2017, eq. (4) set to 1). Bisection on log(sigma_w2) over ``search``;
  chi1 must be below 1 at the low end and above 1 at the high end (it grows with
  sigma_w2 for the usual activations). tanh at sigma_b2 = 0.05 gives about 1.76.

  Args:
    phi: an elementwise activation.
    sigma_b2: bias variance (>= 0); scalar or array.
    search: (low, high) range of sigma_w2 to search, 0 < low < high.

  Returns:
    float32 array of ``sigma_b2``'s shape. Under jit/vmap (traced sigma_b2) a value
    without a critical point in the range is NaN.

  Raises:
    ValueError: sigma_b2 < 0, a bad ``search``, or (concrete sigma_b2) no critical point
      in the searched range; the message gives chi1 at both ends.

  Example:
    >>> import jax.numpy as jnp
    >>> from jinit import theory
    >>> round(float(theory.critical_sigma_w2(jnp.tanh, 0.05)), 2)
    1.76
  """
  _check_phi(phi)
  sb = _check_sigma(sigma_b2, "sigma_b2", positive=False)
  if not isinstance(search, (tuple, list)) or len(search) != 2:
    raise TypeError(f"search must be a (low, high) pair, got {search!r}")
  lo = validation.check_real(search[0], "search[0]", positive=True)
  hi = validation.check_real(search[1], "search[1]", positive=True)
  if not lo < hi:
    raise ValueError(f"search must have low < high, got {search!r}")
  out = _critical_jit(phi, sb, lo, hi)
  if not _is_traced(out) and bool(jnp.isnan(out).any()):
    bad = np.asarray(sb)[np.isnan(np.asarray(out))].ravel()[0] if np.ndim(out) else float(sb)
    ends = [float(chi1(phi, x, float(bad))) for x in (lo, hi)]
    raise ValueError(f"phi has no critical point (chi1 = 1) for sigma_w2 in [{lo:g}, {hi:g}] "
                     f"at sigma_b2={bad:g}: chi1 = {ends[0]:.4g} at sigma_w2={lo:g} and "
                     f"{ends[1]:.4g} at sigma_w2={hi:g}; widen search= or check the activation")
  return out


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _critical_jit(phi, sb, lo, hi):
  return jnp.vectorize(lambda s: _critical_impl(phi, s, lo, hi))(sb)


class EdgeOfChaos(NamedTuple):
  """A kernel and a bias initializer at criticality (jinit call shape)."""

  kernel_init: inits.Initializer
  bias_init: inits.Initializer


DISTRIBUTIONS = ("normal", "orthogonal")


def edge_of_chaos(phi: Activation, sigma_b2, *, distribution: str = "normal",
                  search: tuple[float, float] = DEFAULT_SEARCH) -> EdgeOfChaos:
  r"""jinit kernel and bias initializers at the edge of chaos (chi1 = 1) for ``phi``.

  The kernel has variance sigma_w2* / fan_in with sigma_w2* =
  :func:`critical_sigma_w2` (phi, sigma_b2); the bias is N(0, sigma_b2) (zeros when
  sigma_b2 = 0). With ``distribution="orthogonal"`` the kernel is a scaled orthogonal
  matrix, gain sqrt(sigma_w2*) (Pennington et al. 2017: at criticality orthogonal
  weights give tanh nets dynamical isometry); its entries have variance
  sigma_w2* / fan_in when fan_in >= fan_out.

  Example::

    kernel, bias = jinit.theory.edge_of_chaos(jnp.tanh, 0.05)
    nn.Dense(512, kernel_init=jinit.linen.kernel_init(kernel),
             bias_init=jinit.linen.bias_init(bias))

  Args:
    phi: an elementwise activation.
    sigma_b2: bias variance (>= 0), a concrete scalar.
    distribution: ``"normal"`` or ``"orthogonal"``.
    search: passed to :func:`critical_sigma_w2`.

  Returns:
    ``EdgeOfChaos(kernel_init, bias_init)``, both ``init(key, shape, fan_in, fan_out, *,
    dtype)``; ``kernel_init.sigma_w2`` and ``bias_init.sigma_b2`` hold the variances.

  References: Schoenholz et al. 2017, https://arxiv.org/abs/1611.01232; Pennington et al.
  2017, https://arxiv.org/abs/1711.04735
  """
  validation.check_choice(distribution, "distribution", DISTRIBUTIONS)
  sb = validation.check_real(sigma_b2, "sigma_b2", nonnegative=True)
  sw = float(critical_sigma_w2(phi, sb, search=search))

  if distribution == "normal":
    def kernel_init(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
      return inits.variance_scaling(key, shape, fan_in, fan_out, scale=sw, mode="fan_in",
                                    distribution="normal", dtype=dtype)
  else:
    def kernel_init(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
      return inits.orthogonal(key, shape, fan_in, fan_out, gain=math.sqrt(sw), dtype=dtype)

  def bias_init(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
    if sb == 0.0:
      return inits.zeros(key, shape, fan_in, fan_out, dtype=dtype)
    return inits.normal(key, shape, fan_in, fan_out, std=math.sqrt(sb), dtype=dtype)

  kernel_init.__name__ = f"edge_of_chaos_{distribution}"
  kernel_init.__doc__ = (f"{distribution} kernel with variance {sw:.6g} / fan_in (chi1 = 1 for "
                         f"{getattr(phi, '__name__', 'phi')} at sigma_b2={sb:g}).")
  kernel_init.sigma_w2 = sw
  bias_init.__name__ = "edge_of_chaos_bias"
  bias_init.__doc__ = f"N(0, {sb:g}) bias (zeros if 0)."
  bias_init.sigma_b2 = sb
  return EdgeOfChaos(kernel_init, bias_init)


# --------------------------------------------------------------------------- prediction vs measured


def predicted_variances(phi: Activation, sigma_w2, sigma_b2, x, depth: int) -> jax.Array:
  r"""Predicted pre-activation variance of each layer of an MLP fed with ``x``.

  The net is ``z^1 = x W^1 + b^1`` (linear in the input), then
  ``z^l = phi(z^{l-1}) W^l + b^l`` for l = 2..depth, all weights N(0, sigma_w2 / fan_in)
  and biases N(0, sigma_b2). Per input, ``q^1 = sigma_w2 |x|^2 / d + sigma_b2`` and
  ``q^l`` follows :func:`q_map` (Schoenholz et al. 2017, eq. (2)); the result is the
  mean over the inputs, which is what the mean of ``z^2`` over units and inputs of a
  wide net estimates.

  Args:
    phi: an elementwise activation.
    sigma_w2, sigma_b2: scalars (> 0, >= 0).
    x: inputs, shape (batch, d).
    depth: number of layers (>= 1).

  Returns:
    float32 array (depth,): predicted mean z^2 of layers 1..depth.
  """
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"x must be a non-empty (batch, d) array, got shape {x.shape}")
  validation.check_finite_array(x, "x")  # (a NaN in x used to be blamed on q0)
  depth = _check_depth(depth)
  sw = _check_sigma(sigma_w2, "sigma_w2", positive=True)
  sb = _check_sigma(sigma_b2, "sigma_b2", positive=False)
  q1 = sw * jnp.mean(x * x, axis=1) + sb  # (batch,)
  if depth == 1:
    return jnp.mean(q1)[None]
  rest = q_map(phi, sw, sb, q1, depth - 1)  # (batch, depth - 1)
  return jnp.concatenate([jnp.mean(q1)[None], jnp.mean(rest, axis=0)])


def wide_net_variances(key: jax.Array, phi: Activation, sigma_w2, sigma_b2, x, depth: int, *,
                       width: int = 1000, distribution: str = "normal") -> jax.Array:
  """Measured mean z^2 of each layer of one random MLP of the given width (Monte Carlo).

  The net of :func:`predicted_variances`, sampled with jinit initializers:
  ``variance_scaling(scale=sigma_w2, mode="fan_in", distribution="normal")`` kernels
  (or ``orthogonal(gain=sqrt(sigma_w2))``) and N(0, sigma_b2) biases. The width
  sets the sampling error: the relative fluctuation of a layer's mean z^2 is about
  sqrt(2 / width) per layer.

  Args:
    key: a ``jax.random.key``.
    phi: an elementwise activation.
    sigma_w2, sigma_b2: concrete scalars (> 0, >= 0).
    x: inputs, shape (batch, d).
    depth: number of layers (>= 1).
    width: units per layer (>= 1).
    distribution: ``"normal"`` or ``"orthogonal"`` kernels.

  Returns:
    float32 array (depth,): measured mean z^2 (over units and inputs) of layers 1..depth.
  """
  _check_phi(phi)
  validation.check_choice(distribution, "distribution", DISTRIBUTIONS)
  sw = validation.check_real(sigma_w2, "sigma_w2", positive=True)
  sb = validation.check_real(sigma_b2, "sigma_b2", nonnegative=True)
  depth = _check_depth(depth)
  width = validation.check_int(width, "width")
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f"x must be a non-empty (batch, d) array, got shape {x.shape}")
  out = []
  h = x
  for k in jax.random.split(key, depth):
    kw, kb = jax.random.split(k)
    fan_in = h.shape[1]
    if distribution == "normal":
      w = inits.variance_scaling(kw, (fan_in, width), fan_in, width, scale=sw, mode="fan_in",
                                 distribution="normal")
    else:
      w = inits.orthogonal(kw, (fan_in, width), fan_in, width, gain=math.sqrt(sw))
    b = (inits.normal(kb, (width,), std=math.sqrt(sb)) if sb > 0 else jnp.zeros((width,)))
    z = h @ w + b[None, :]
    out.append(jnp.mean(z * z))
    h = phi(z)
  return jnp.stack(out)


@dataclasses.dataclass(frozen=True)
class VarianceComparison:
  """Predicted (mean-field) and measured per-layer pre-activation variances."""

  predicted: np.ndarray
  measured: np.ndarray
  width: int | None = None

  @property
  def rel_error(self) -> np.ndarray:
    return (self.measured - self.predicted) / self.predicted

  def format(self) -> str:
    """A markdown table: layer, predicted q, measured, relative error."""
    lines = []
    if self.width:
      lines += [f"Width {self.width}: a layer's mean z^2 fluctuates by about sqrt(2/width) = "
                f"{math.sqrt(2.0 / self.width):.1%} (relative) per layer.", ""]
    lines += ["| layer | predicted q (mean field) | measured mean z^2 | rel. error |",
              "|---|---|---|---|"]
    for i, (p, m, r) in enumerate(zip(self.predicted, self.measured, self.rel_error), start=1):
      lines.append(f"| {i} | {p:.4g} | {m:.4g} | {r:+.2%} |")
    return "\n".join(lines)

  def __str__(self) -> str:
    return self.format()


def compare_variances(phi: Activation, sigma_w2, sigma_b2, x,
                      measured: Sequence[float] | None = None, *, depth: int | None = None,
                      key: jax.Array | None = None, width: int = 1000,
                      distribution: str = "normal") -> VarianceComparison:
  """``q_map``'s predicted per-layer variance next to the measured one.

  Give either ``measured`` (the mean z^2 of each layer of your network on ``x``, e.g.
  the squared ``preact_std`` column of :func:`jinit.diagnostics.diagnose` when the
  pre-activations have mean ~0), or ``depth`` and a ``key`` to sample a wide random
  net with :func:`wide_net_variances`. The network is the one of
  :func:`predicted_variances` (a linear first layer on ``x``, then phi before each
  further layer).

  Example::

    cmp = jinit.theory.compare_variances(jnp.tanh, 1.76, 0.05, x, depth=10,
                                         key=jax.random.key(0), width=2000)
    print(cmp)   # layer | predicted | measured | rel. error

  Args:
    phi: an elementwise activation.
    sigma_w2, sigma_b2: scalars (> 0, >= 0).
    x: inputs (batch, d).
    measured: per-layer measured variances (layers 1..L), or None to simulate.
    depth: layers of the simulated net (only when ``measured`` is None).
    key: PRNG key of the simulated net (only when ``measured`` is None).
    width, distribution: of the simulated net.

  Returns:
    :class:`VarianceComparison` (``print`` it for the table).
  """
  if measured is None:
    if key is None or depth is None:
      raise ValueError("give measured variances, or depth and key to simulate a wide random net")
    m = np.asarray(wide_net_variances(key, phi, sigma_w2, sigma_b2, x, depth, width=width,
                                      distribution=distribution), np.float64)
    pred = np.asarray(predicted_variances(phi, sigma_w2, sigma_b2, x, depth), np.float64)
    return VarianceComparison(pred, m, width)
  if key is not None or depth is not None:
    raise ValueError("give either measured variances or depth and key (to simulate), not both")
  m = np.asarray(measured, np.float64)
  if m.ndim != 1 or m.size == 0 or not np.isfinite(m).all() or (m < 0).any():
    raise ValueError(f"measured must be a non-empty 1-D sequence of finite variances >= 0, "
                     f"got {measured!r}")
  pred = np.asarray(predicted_variances(phi, sigma_w2, sigma_b2, x, m.size), np.float64)
  return VarianceComparison(pred, m, None)
