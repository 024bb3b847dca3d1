"""Gaussian expectations for the mean-field calculator: panel Gauss-Legendre rules.

``E[f(u)]`` for ``u ~ N(0, q)`` is integrated over ``t = u / sqrt(q)`` in [-T_MAX, T_MAX]
(the Gaussian mass outside is 1e-25), split into panels at

* a uniform grid of step 1.5 (the Gaussian's own scale),
* the points ``u = +-2^j``, j = -6..8, i.e. geometrically graded panels around u = 0 that
  resolve a feature of phi at any scale from 0.016 to 256 whatever q is (tanh at
  q = 1e8 varies over t ~ 1e-4: a Gauss-Hermite rule in t misses it),
* the activation's kinks and jumps (``u = kink``), so piecewise-smooth integrands are
  integrated panel by panel.

Each panel carries an ``n``-point Gauss-Legendre rule (``N_MAIN`` = 8; ``N_CHECK`` = 6 for
the error estimate: where the two rules disagree beyond a tolerance, the caller raises).
The 2-D expectations ``E[f(u) g(v)]`` integrate ``v | u ~ N(k u / q1, q2 - k^2 / q1)`` with
the same rule, its panels centred where v = 0 and at g's kinks for each outer node.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

N_MAIN = 8
N_CHECK = 6
T_MAX = 10.5
_T_GRID = np.arange(-T_MAX, T_MAX + 1e-9, 1.5)
_U_SCALES = 2.0 ** np.arange(-6, 9)
_U_SCALES = np.concatenate([-_U_SCALES[::-1], _U_SCALES])


@functools.cache
def _gl(n: int) -> tuple[np.ndarray, np.ndarray]:
  return np.polynomial.legendre.leggauss(n)


def _breakpoints(center, inv_scale, extra_u, shift, dt):
  """Sorted panel ends in t: the uniform grid, center +- 2^j inv_scale, (extra - shift) inv."""
  lead = (1,) * center.ndim  # explicit ranks: callers run with rank promotion "raise"
  row = lambda a: jnp.asarray(np.asarray(a), dt).reshape(lead + (-1,))
  parts = [row(_T_GRID), center[..., None] + row(_U_SCALES) * inv_scale[..., None],
           center[..., None]]
  if extra_u:
    parts.append((row(extra_u) - shift[..., None]) * inv_scale[..., None])
  shape = center.shape + (-1,)
  parts = [jnp.broadcast_to(p, center.shape + p.shape[-1:]).reshape(shape) for p in parts]
  return jnp.sort(jnp.clip(jnp.concatenate(parts, axis=-1), -T_MAX, T_MAX), axis=-1)


def _panel_rule(bp, n, dt):
  """Nodes and N(0,1)-weights of n-point Gauss-Legendre on every panel of bp (..., P+1)."""
  x, w = _gl(n)
  a, b = bp[..., :-1, None], bp[..., 1:, None]
  half, mid = 0.5 * (b - a), 0.5 * (a + b)
  lead = (1,) * (half.ndim - 1)
  nodes = mid + half * jnp.asarray(x, dt).reshape(lead + (-1,))
  weights = half * jnp.asarray(w, dt).reshape(lead + (-1,)) * jnp.exp(-0.5 * nodes * nodes) \
      / math.sqrt(2 * math.pi)
  shape = bp.shape[:-1] + (-1,)
  return nodes.reshape(shape), weights.reshape(shape)


def _safe_mul(w, f):
  return jnp.where(w == 0, jnp.zeros_like(f), w * f)


def _rules(bp, check, dt):
  """Nodes and the weights of each rule: (N_MAIN,) or (N_MAIN, N_CHECK) on shared panels,
  the nodes concatenated so that the integrand is traced (and compiled) once."""
  t, w = _panel_rule(bp, N_MAIN, dt)
  if not check:
    return t, (w,)
  tc, wc = _panel_rule(bp, N_CHECK, dt)
  return jnp.concatenate([t, tc], -1), (jnp.concatenate([w, jnp.zeros_like(wc)], -1),
                                        jnp.concatenate([jnp.zeros_like(w), wc], -1))


def _as_tuple(x):
  return (x,) if not isinstance(x, tuple) else x


def _pack(results, single, check):
  results = [r[0] if single else tuple(r) for r in results]
  return tuple(results) if check else results[0]


def e1(f, q, points: tuple[float, ...], check: bool = False):
  """E[f(u)], u ~ N(0, q), q > 0 scalar; ``points`` are u where f is not smooth.

  ``f`` may return a tuple of integrands (one traced evaluation for all). With ``check``:
  (the N_MAIN value(s), the N_CHECK value(s)) on the same panels.
  """
  dt = q.dtype
  s = jnp.sqrt(q)
  zero = jnp.zeros_like(q)
  t, ws = _rules(_breakpoints(zero, 1.0 / s, points, zero, dt), check, dt)
  vals = f(s * t)
  single = not isinstance(vals, tuple)
  vals = _as_tuple(vals)
  return _pack([[jnp.sum(_safe_mul(w, v)) for v in vals] for w in ws], single, check)


def e2(f, g, q1, q2, k, points_f: tuple[float, ...], points_g: tuple[float, ...],
       check: bool = False):
  """E[f(u) g(v)], (u, v) ~ N(0, [[q1, k], [k, q2]]), q1, q2 > 0 scalars.

  ``f`` and ``g`` may return tuples of the same length: E[f_i(u) g_i(v)] for each i. With
  ``check``: (the N_MAIN values, the N_CHECK values).
  """
  dt = q1.dtype
  s1 = jnp.sqrt(q1)
  zero = jnp.zeros_like(q1)
  t1, w1s = _rules(_breakpoints(zero, 1.0 / s1, points_f, zero, dt), check, dt)  # (M,)
  u = s1 * t1
  m = (k / q1) * u  # E[v | u]
  sd = jnp.sqrt(jnp.maximum(q2 - k * k / q1, 0.0))
  sd_safe = jnp.where(sd > 0, sd, jnp.ones_like(sd))
  inv = jnp.broadcast_to(1.0 / sd_safe, m.shape)
  t2, w2s = _rules(_breakpoints(-m * inv, inv, points_g, m, dt), check, dt)  # (M, N)
  v = m[:, None] + sd * t2
  fu, gv = f(u), g(v)
  single = not isinstance(fu, tuple)
  fu, gv = _as_tuple(fu), _as_tuple(gv)
  out = []
  for w1, w2 in zip(w1s, w2s):
    out.append([jnp.sum(_safe_mul(w1, a * jnp.sum(_safe_mul(w2, b), axis=1)))
                for a, b in zip(fu, gv)])
  return _pack(out, single, check)
