"""Mean-field signal propagation in wide random networks: order, chaos, criticality.

A fully connected net ``z^l = W^l phi(z^{l-1}) + b^l`` with ``W_ij ~ N(0, sigma_w2 / N)``
and ``b_i ~ N(0, sigma_b2)`` has, as the width N grows, Gaussian pre-activations whose
variance ``q^l`` and whose correlation ``c^l`` between two inputs follow deterministic
maps (Poole et al. 2016, Schoenholz et al. 2017). This module computes those maps,
their fixed points ``q*`` and ``c*``, the slope ``chi1`` of the correlation map at
``c = 1``, the depth scales ``xi_q`` and ``xi_c``, and the critical ``sigma_w2``
(``chi1 = 1``, the edge of chaos), for any elementwise JAX activation.

Numerics (details in ``docs/theory.md``):

* Exact where closed forms exist: the activations of :class:`Activation` with a ``kind``
  (relu, leaky relu / two-slope, abs, identity: arc-cosine kernels; erf, sign, step, sin,
  cos), recognised from jax's functions by :func:`as_activation`.
* Elsewhere, panel Gauss-Legendre quadrature (:mod:`jinit._src.theory_quad`) split at the
  activation's kinks and jumps, graded around u = 0 so it resolves phi at any q, with an
  error estimate (two rules; where they disagree the call raises).
* ``d/dq E[phi(u)^2] = E[phi(u)^2 (u^2/q - 1)] / (2q)`` (no phi'' needed: kinks' delta
  terms are included), ``phi'`` by autodiff, infinite for an activation that jumps.
* q*: the fixed point the length map reaches from q = 1 (bracketed by doubling, then
  bisection in log q to machine precision); an error where q grows without bound.
* Concrete arguments run in float64 (``jax.enable_x64``) and return float32 arrays; under a
  caller's ``jit``/``vmap`` the same algorithm runs in the traced dtype, the value checks
  are skipped and a failure shows up as NaN (no fixed point: inf).

References:
  Poole et al. 2016, https://arxiv.org/abs/1606.05340
  Schoenholz et al. 2017, "Deep Information Propagation", https://arxiv.org/abs/1611.01232
  Cho & Saul 2009, "Kernel methods for deep learning" (arc-cosine kernels)
  Williams 1998, "Computation with infinite neural networks" (erf kernel)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, cast, overload

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax

from jinit._src import gains as gains_lib
from jinit._src import initializers as inits
from jinit._src import theory_activations as acts
from jinit._src import theory_quad as quad
from jinit._src import validation
from jinit._src.theory_activations import Activation
from jinit._src.theory_activations import as_activation

ActivationLike = Callable[[jax.Array], jax.Array] | Activation

# Kept for compatibility: the quadrature is now a panel rule (theory_quad); this is the
# number of Gauss-Legendre nodes per panel of the 2-D rule's inner and outer integrals.
QUAD_NODES_2D = quad.N_MAIN
# q* bracket: q = 2^(+-k), k <= _Q_DOUBLINGS; beyond 2^100 ~ 1e30 the map has no fixed point.
_Q_DOUBLINGS = 100
_BISECT_Q = 64  # bisections of log2 q on a bracket of width 1: 2^-64, below float64 rounding
_BISECT_W = 64  # bisections of log sigma_w2 for the critical point
# q* = 0 (sigma_b2 = 0, ordered tanh): derivatives are the q -> 0+ limit, taken at _Q_FLOOR.
_Q_FLOOR = 1e-30
DEFAULT_SEARCH = (1e-2, 1e2)  # first sigma_w2 bracket of critical_sigma_w2, widened if needed
_SEARCH_LIMITS = (1e-8, 1e8)  # how far critical_sigma_w2 widens DEFAULT_SEARCH
QUAD_RTOL = 1e-6  # the 6- and 8-point rules must agree to this (relative), else an error

# status codes returned by the kernels
_OK, _DIVERGED, _NONFINITE = 0, 1, 2
_C_OK, _C_EVERY, _C_POLY = 0, 1, 2


# --------------------------------------------------------------------------- expectations


def _d(phi) -> Callable:
  """phi' of an elementwise phi, by forward-mode autodiff."""
  return lambda x: jax.jvp(phi, (x,), (jnp.ones_like(x),))[1]


def _points(act: Activation) -> tuple[float, ...]:
  return tuple(sorted(set(act.kinks) | set(act.jumps)))


def _m(act: Activation, q) -> jax.Array:
  """E[phi(u)^2], u ~ N(0, q)."""
  if act.closed_form:
    return acts.moment(act, q)
  # One integrand, no check: quad.e1 returns one array.
  return cast(jax.Array, quad.e1(lambda u: act.fn(u).astype(q.dtype) ** 2, q, _points(act)))


# The result's nesting follows ``check`` (one triple, or a (main, check) pair of them):
# the overloads tell pyright which.
@overload
def _moments(act: Activation, q, check: Literal[False] = False) -> tuple[Any, Any, Any]: ...
@overload
def _moments(act: Activation, q,
             check: Literal[True]) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]: ...
def _moments(act: Activation, q, check=False):
  """(E[phi^2], E[phi'^2], d/dq E[phi^2]) at u ~ N(0, q); with check, ((main), (check)).

  E[phi'^2] is infinite when phi jumps (phi' has a delta). The q-derivative is
  E[phi(u)^2 (u^2/q - 1)] / (2q), the Gaussian's q-derivative: exact for kinks and jumps
  (it equals E[phi'^2 + phi phi''] with phi'' as a distribution), no phi'' needed.
  """
  if act.closed_form:
    m = acts.moment(act, q)
    dqm = acts.dq_moment(act, q)
    out = (m, acts.dmoment(act, q), dqm)
    return (out, out) if check else out
  d1 = _d(act.fn)

  def f(u):
    p = act.fn(u).astype(q.dtype)
    return p * p, d1(u).astype(q.dtype) ** 2, p * p * (u * u / q - 1.0)

  res = quad.e1(f, q, _points(act), check)

  def finish(r):
    m, dm, dqm = r
    return m, (jnp.full_like(q, jnp.inf) if act.jumps else dm), dqm / (2.0 * q)

  return tuple(finish(r) for r in res) if check else finish(res)


def _k(act: Activation, q1, q2, k) -> jax.Array:
  """E[phi(u) phi(v)], (u, v) ~ N(0, [[q1, k], [k, q2]])."""
  if act.closed_form:
    return acts.kernel(act, q1, q2, k)
  f = lambda u: act.fn(u).astype(q1.dtype)
  # One integrand pair, no check: quad.e2 returns one array.
  return cast(jax.Array, quad.e2(f, f, q1, q2, k, _points(act), _points(act)))


@overload
def _kernels(act: Activation, q1, q2, k, check: Literal[False] = False) -> tuple[Any, Any]: ...
@overload
def _kernels(act: Activation, q1, q2, k,
             check: Literal[True]) -> tuple[tuple[Any, Any], tuple[Any, Any]]: ...
def _kernels(act: Activation, q1, q2, k, check=False):
  """(E[phi(u) phi(v)], E[phi'(u) phi'(v)]); the second is dE[phi phi]/dk (Price), a
  central difference in k when phi jumps without a closed form. With check: both rules."""
  if act.closed_form:
    out = (acts.kernel(act, q1, q2, k), acts.dkernel(act, q1, q2, k))
    return (out, out) if check else out
  d1 = _d(act.fn)
  pts = _points(act)
  if act.jumps:
    s = jnp.sqrt(q1 * q2)
    h = 1e-4 * jnp.minimum(s - jnp.abs(k), s)
    f = lambda u: act.fn(u).astype(q1.dtype)
    res = []
    for kk in (k, k + h, k - h):
      res.append(quad.e2(f, f, q1, q2, kk, pts, pts, check))
    if check:
      return tuple((res[0][r], (res[1][r] - res[2][r]) / (2.0 * h)) for r in range(2))
    return res[0], (res[1] - res[2]) / (2.0 * h)
  f = lambda u: (act.fn(u).astype(q1.dtype), d1(u).astype(q1.dtype))
  return quad.e2(f, f, q1, q2, k, pts, pts, check)


def _rel_err(a, b):
  return jnp.abs(a - b) / jnp.maximum(jnp.abs(a), jnp.finfo(a.dtype).tiny)


# --------------------------------------------------------------------------- the maps


def _length_map(act, sw, sb, q):
  return sw * _m(act, q) + sb


def _q_star_impl(act, sw, sb):
  """(q*, status): the fixed point of the length map reached from q = 1.

  L is increasing for the usual activations, so iteration from 1 goes to the nearest
  root of L(q) - q in the direction of L(1) - 1: doubling (or halving) q brackets it,
  bisection in log2 q pins it (one loop, one evaluation of L per step). No root below
  2^-100 (sigma_b2 = 0): q* = 0. No root up to 2^100: no fixed point, q grows without bound.
  """
  dt = sw.dtype
  eps = 64.0 * jnp.finfo(dt).eps
  g = lambda x: _length_map(act, sw, sb, jnp.exp2(x)) - jnp.exp2(x)
  zero = jnp.zeros_like(sw)
  # phase 0: g(1); 1: doubling (x = direction k); 2: bisection of [a, b]; 3: q* = 1 exactly;
  # 4: unbracketed.
  init = (jnp.zeros((), jnp.int32), zero, zero, zero, zero, zero + 1.0, zero)

  def step(state, _):
    phase, k, a, b, g1, direction, bad = state
    x = jnp.where(phase == 1, direction * (k + 1.0), jnp.where(phase == 2, 0.5 * (a + b), 0.0))
    gx = g(x)
    finite = jnp.isfinite(gx)
    # phase 0
    p0_dir = jnp.where(gx > 0, 1.0, -1.0).astype(dt)
    p0_phase = jnp.where(gx == 0, 3, 1)
    # phase 1: a zero of g within rounding of q is not a crossing (relu at sigma_w2 = 2,
    # sigma_b2 > 0: L(q) - q = sigma_b2 falls below q's ulp).
    same = (gx * g1 > 0) | (jnp.abs(gx) <= eps * jnp.exp2(x))
    crossed = ~same & finite
    p1_phase = jnp.where(~finite, 2, jnp.where(crossed, 2, jnp.where(k + 1 >= _Q_DOUBLINGS, 4,
                                                                      1)))
    # phase 2
    keep_a = gx * g1 > 0
    new = {
        0: (p0_phase, k, a, b, gx, p0_dir, bad | ~finite),
        1: (p1_phase, k + 1.0, direction * k, x, g1, direction, bad | ~finite),
        2: (phase, k, jnp.where(keep_a, x, a), jnp.where(keep_a, b, x), g1, direction,
            bad | ~finite),
    }
    out = []
    for i in range(7):
      v = jnp.where(phase == 0, new[0][i], jnp.where(phase == 1, new[1][i],
                                                     jnp.where(phase == 2, new[2][i],
                                                               state[i])))
      out.append(v.astype(state[i].dtype) if hasattr(state[i], "dtype") else v)
    return tuple(out), None

  init = (init[0], init[1], init[2], init[3], init[4], init[5], jnp.zeros((), bool))
  (phase, _, a, b, _, direction, bad), _ = lax.scan(
      step, init, None, length=1 + _Q_DOUBLINGS + _BISECT_Q)
  q = jnp.exp2(0.5 * (a + b))
  q = jnp.where(phase == 3, 1.0, q)
  q = jnp.where(phase == 4, jnp.where(direction > 0, jnp.inf, 0.0), q)
  status = jnp.where(bad, _NONFINITE, jnp.where((phase == 4) & (direction > 0), _DIVERGED, _OK))
  return jnp.where(bad, jnp.nan, q), status


def _q_eval(q):
  """Where derivatives are taken: q*, its 0+ limit, or 1 where q* = inf (homogeneous
  activations, whose derivatives do not depend on q)."""
  return jnp.where(jnp.isfinite(q), jnp.maximum(q, _Q_FLOOR), jnp.ones_like(q))


def _corr_map(act, sw, sb, q, c, den):
  """C(c) = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / den, den = sigma_w2 E[phi^2] + sigma_b2."""
  return (sw * _k(act, q, q, c * q) + sb) / den


def _depth_scale(slope):
  """-1 / log(slope), infinite where slope >= 1 (the perturbation does not decay)."""
  safe = jnp.where(slope < 1.0, slope, 0.5)
  return jnp.where(slope < 1.0, -1.0 / jnp.log(safe), jnp.inf)


_C_BISECT, _C_STEPS = 8, 40  # c*: 8 bisections (bracket 2^-8), then Illinois steps


def _solve_c(act, sw, sb, q, den):
  """The root of C(c) - c in [0, 1) in the chaotic phase: C(0) >= 0 and C(c) < c just below
  1. Step 0 evaluates C(0); then bisection to a bracket of 2^-8, then Illinois (regula
  falsi) steps; a secant point not strictly inside the bracket, or while the bracket still
  ends at 1 (where C(1) = 1), bisects instead. One loop, one evaluation of C per step."""
  zero = jnp.zeros_like(sw)

  def step(state, i):
    lo, hi, f_lo, f_hi, side, _ = state
    mid = 0.5 * (lo + hi)
    denom = f_hi - f_lo
    sec = hi - f_hi * (hi - lo) / jnp.where(denom != 0, denom, 1.0)
    illinois = i > _C_BISECT
    inside = illinois & (denom != 0) & (f_hi < 0) & (sec > lo) & (sec < hi)
    x = jnp.where(i == 0, zero, jnp.where(inside, sec, mid))
    fx = _corr_map(act, sw, sb, q, x, den) - x
    up = fx > 0
    # Illinois: when the same end moves twice running, halve the f of the end that stays,
    # so the secant does not stall (superlinear convergence).
    halve_hi = illinois & up & (side > 0)
    halve_lo = illinois & ~up & (side < 0)
    new = (jnp.where(up, x, lo), jnp.where(up, hi, x),
           jnp.where(up, fx, jnp.where(halve_lo, 0.5 * f_lo, f_lo)),
           jnp.where(up, jnp.where(halve_hi, 0.5 * f_hi, f_hi), fx),
           jnp.where(illinois, jnp.where(up, 1.0, -1.0), 0.0).astype(zero.dtype), x)
    first = (zero, zero + 1.0, fx, zero, zero, zero)
    return tuple(jnp.where(i == 0, a, b) for a, b in zip(first, new)), None

  init = (zero, zero + 1.0, zero, zero, zero, zero)
  (lo, hi, _, _, _, x), _ = lax.scan(step, init, jnp.arange(1 + _C_BISECT + _C_STEPS))
  return jnp.clip(x, lo, hi)


def _summary_impl(act, sw, sb, need_c):
  """Every scalar quantity at one (sigma_w2, sigma_b2), with status codes and the
  quadrature's error estimates (c_star and xi_c only with ``need_c``)."""
  out = _base_impl(act, sw, sb)
  if need_c:
    out.update(_c_impl(act, sw, sb, out["q_star"], out["status"], out["chi1"], out["m"]))
  return out


def _base_impl(act, sw, sb):
  """q_star, chi1, xi_q (and E[phi^2] at q*, "m", for :func:`_c_impl`)."""
  q, status = _q_star_impl(act, sw, sb)
  qe = _q_eval(q)
  check = not act.closed_form and sw.dtype == jnp.float64
  out = {"q_star": q, "status": status}
  if check:
    main, chk = _moments(act, qe, True)
    m, dm, dqm = main
    # d/dq E[phi^2] is a difference of terms of size E[phi^2] / q: measured on that scale.
    out["err_q_star"], out["err_chi1"] = _rel_err(m, chk[0]), _rel_err(dm, chk[1])
    out["err_xi_q"] = jnp.abs(dqm - chk[2]) / jnp.maximum(jnp.abs(dqm), m / qe)
  else:
    m, dm, dqm = _moments(act, qe)
  chi1 = sw * dm
  out["chi1"], out["xi_q"], out["m"] = chi1, _depth_scale(sw * dqm), m
  return out


def _c_impl(act, sw, sb, q, status, chi1, m):
  """c_star, xi_c and their status from :func:`_base_impl`'s q*, status, chi1 and m: a
  program of its own for concrete calls, so that q_star, chi1 and xi_q never compile the
  correlation map's 2-D quadrature."""
  hom0 = act.homogeneous & (sb == 0)
  qe = _q_eval(q)
  check = not act.closed_form and sw.dtype == jnp.float64
  out = {}
  cstat = jnp.where(hom0, jnp.where(act.linear, _C_EVERY, _C_POLY),
                    jnp.where(q == 0, _C_EVERY, _C_OK))
  chaotic = (chi1 > 1.0) & (cstat == _C_OK) & (status == _OK)
  den = sw * m + sb

  def chaos(_):
    c = _solve_c(act, sw, sb, qe, den)
    kc = c * qe
    if check:
      (k_main, dk_main), (k_chk, dk_chk) = _kernels(act, qe, qe, kc, True)
      return c, sw * dk_main, (jnp.abs(k_main - k_chk) / m, _rel_err(dk_main, dk_chk))
    return c, sw * _kernels(act, qe, qe, kc)[1], ()

  def order(_):
    zero = jnp.zeros_like(sw)
    return zero + 1.0, chi1, (zero, zero) if check else ()

  c, slope_c, errs = lax.cond(chaotic, chaos, order, None)
  out["c_star"] = jnp.where(cstat == _C_POLY, 1.0, c)
  out["xi_c"] = jnp.where(cstat != _C_OK, jnp.inf, _depth_scale(slope_c))
  out["c_status"] = cstat
  if check:
    out["err_c_star"], out["err_xi_c"] = errs
  return out


def _chi_for_search(act, lsw, sb):
  """(chi1 as critical_sigma_w2 sees it, q* status) at sigma_w2 = exp(lsw): +inf where q*
  does not exist (beyond the end of the ordered region), except for homogeneous phi at
  sigma_b2 = 0 (chi1 does not depend on q)."""
  sw = jnp.exp(lsw)
  q, status = _q_star_impl(act, sw, sb)
  chi = sw * _moments(act, _q_eval(q))[1]
  hom0 = act.homogeneous & (sb == 0)
  return jnp.where((status == _DIVERGED) & ~hom0, jnp.inf, chi), status


_GRID_POINTS = 17  # log-spaced sigma_w2 where critical_sigma_w2 looks for chi1 crossing 1


def _critical_impl(act, sb, lo, hi, widen):
  """chi1 on a log grid of sigma_w2 (10^-8 .. 10^8 without ``search``, else ``search``'s
  range); the first crossing of 1 from below brackets the root, bisection on log sigma_w2
  pins it. One evaluation of chi1 per step."""
  dt = sb.dtype
  if widen:
    grid = np.log(np.logspace(math.log10(_SEARCH_LIMITS[0]), math.log10(_SEARCH_LIMITS[1]),
                              _GRID_POINTS))
  else:
    grid = np.linspace(math.log(lo), math.log(hi), _GRID_POINTS)
  grid = jnp.asarray(grid, dt)
  chis = lax.map(lambda l: _chi_for_search(act, l, sb)[0], grid)
  up = (chis[:-1] < 1.0) & (chis[1:] >= 1.0)
  found = jnp.any(up)
  i = jnp.argmax(up)
  a0, b0 = grid[i], grid[i + 1]

  def bisect(state, _):
    a, b, st_b = state
    mid = 0.5 * (a + b)
    chi, st = _chi_for_search(act, mid, sb)
    below = chi < 1.0
    return (jnp.where(below, mid, a), jnp.where(below, b, mid), jnp.where(below, st_b, st)), None

  (a, b, st_b), _ = lax.scan(bisect, (a0, b0, jnp.asarray(_OK)), None, length=_BISECT_W)
  hom0 = act.homogeneous & (sb == 0)
  boundary = found & (st_b == _DIVERGED) & ~hom0
  ok = found & ~boundary
  return {"root": jnp.where(ok, jnp.exp(0.5 * (a + b)), jnp.nan), "chi_lo": chis[0],
          "chi_hi": chis[-1], "lo": jnp.exp(grid[0]), "hi": jnp.exp(grid[-1]),
          "boundary": boundary, "at": jnp.exp(b)}


def _q_map_impl(act, sw, sb, q0, depth):
  def step(q, _):
    q = _length_map(act, sw, sb, q)
    return q, q

  return lax.scan(step, q0, None, length=depth)[1]


def _kernel_step(act, sw, sb, q1, q2, c):
  k = sw * _k(act, q1, q2, c * jnp.sqrt(q1 * q2)) + sb
  q1n, q2n = _length_map(act, sw, sb, q1), _length_map(act, sw, sb, q2)
  return q1n, q2n, jnp.clip(k / jnp.sqrt(q1n * q2n), -1.0, 1.0)


def _kernel_map_impl(act, sw, sb, q1, q2, c, depth):
  def step(state, _):
    state = _kernel_step(act, sw, sb, *state)
    return state, state

  return lax.scan(step, (q1, q2, c), None, length=depth)[1]


def _c_map_impl(act, sw, sb, c0, depth):
  q, status = _q_star_impl(act, sw, sb)
  hom0 = act.homogeneous & (sb == 0)
  qe = _q_eval(q)

  den = sw * _m(act, qe) + sb

  def step(c, _):
    c = jnp.clip(_corr_map(act, sw, sb, qe, c, den), -1.0, 1.0)
    return c, c

  cs = lax.scan(step, c0, None, length=depth)[1]
  return cs, jnp.where(hom0, _OK, status)


# --------------------------------------------------------------------------- running


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _run_scalar(impl, act, static, *args):
  return impl(act, *args, *static)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _run_vmapped(impl, act, static, *args):
  return jax.vmap(lambda *a: impl(act, *a, *static))(*args)


def _evaluate(impl, act, args, static=()):
  """impl(act, *scalars, *static) over broadcast array args. Concrete args: float64, one
  compiled scalar program per (impl, act) called per element (grids share it). Traced
  args (a caller's jit/vmap): vmapped in the traced dtype. Returns (outputs, shape, traced)."""
  if any(_is_traced(a) for a in args):
    args = jnp.broadcast_arrays(*[jnp.asarray(a).astype(jnp.result_type(float)) for a in args])
    shape = args[0].shape
    out = _run_vmapped(impl, act, static, *[a.reshape(-1) for a in args])
    return jax.tree.map(lambda x: x.reshape(shape + x.shape[1:]), out), shape, True
  arrs = np.broadcast_arrays(*[np.asarray(a, np.float64) for a in args])
  shape = arrs[0].shape
  flat = [a.reshape(-1) for a in arrs]
  with jax.enable_x64(True):
    outs = [jax.tree.map(np.asarray, _run_scalar(impl, act, static, *[jnp.asarray(a[i])
                                                                        for a in flat]))
            for i in range(flat[0].size)]
  if not outs:
    raise ValueError("the arguments are empty arrays")
  out = jax.tree.map(lambda *xs: np.stack(xs).reshape(shape + np.shape(xs[0])), *outs)
  return out, shape, False


def _first(mask, *arrays):
  """The values of arrays at the first True of mask (scalars)."""
  i = np.argwhere(np.asarray(mask))[0]
  return [float(np.asarray(a)[tuple(i)]) if np.ndim(a) else float(a) for a in arrays]


def _raise_status(what: str, act: Activation, out: dict, sw, sb, fields=()) -> None:
  sw, sb = np.broadcast_arrays(np.asarray(sw, np.float64), np.asarray(sb, np.float64))
  status = out["status"]
  if (status == _NONFINITE).any():
    w, b = _first(status == _NONFINITE, sw, sb)
    raise ValueError(f"{what} is not finite for phi={act.name!r} at sigma_w2={w:g}, "
                     f"sigma_b2={b:g}: the activation produced a non-finite value at the "
                     "variances reached (e.g. it overflows for large inputs)")
  if (status == _DIVERGED).any():
    w, b = _first(status == _DIVERGED, sw, sb)
    raise ValueError(f"{what}: the length map of phi={act.name!r} at sigma_w2={w:g}, "
                     f"sigma_b2={b:g} has no fixed point: L(q) > q for every q up to 1e30, so "
                     "the pre-activation variance q grows without bound with depth")
  for field in fields:
    err = out.get(f"err_{field}")
    if err is not None and (np.asarray(err) > QUAD_RTOL).any():
      bad = np.asarray(err) > QUAD_RTOL
      w, b, e = _first(bad, sw, sb, err)
      raise ValueError(
          f"{what}: the quadrature of {field} for phi={act.name!r} at sigma_w2={w:g}, "
          f"sigma_b2={b:g} did not converge (two rules differ by {e:.1e} relative, tolerance "
          f"{QUAD_RTOL:g}): phi has a kink or jump the calculator does not know (outside "
          "|x| <= 12, or closer together than 1e-3), or varies on a scale below 0.016; "
          "declare them with jinit.theory.Activation(fn, kinks=..., jumps=...)")
  for key in ("q_star", "chi1", "c_star", "xi_q", "xi_c"):
    if key in out and key in fields and np.isnan(out[key]).any():
      raise ValueError(f"{what} is NaN for phi={act.name!r}: the activation produced a "
                       "non-finite value on the quadrature nodes at the variances reached")


def _prepare(phi) -> Activation:
  _check_phi(phi.fn if isinstance(phi, Activation) else phi)
  return as_activation(phi)


@functools.lru_cache(maxsize=4096)
def _base_at(act: Activation, sw: float, sb: float) -> dict:
  """q_star, chi1 and xi_q in float64 at one concrete point, cached (one compiled program
  per activation, the sigmas traced)."""
  with jax.enable_x64(True):
    out = _run_scalar(_base_impl, act, (), jnp.asarray(sw, jnp.float64),
                      jnp.asarray(sb, jnp.float64))
    return {k: np.asarray(v) for k, v in out.items()}


@functools.lru_cache(maxsize=4096)
def _summary_at(act: Activation, sw: float, sb: float, need_c: bool) -> dict:
  """The float64 summary at one concrete point, cached: q_star, chi1, c_star, xi_q and xi_c
  of one (phi, sigma_w2, sigma_b2) share one computation. c_star and xi_c (``need_c``) add
  a second program, run on the first's q*, so the first compiles without the 2-D
  quadrature (hard_tanh, float64: XLA compiles it in 1.6 s, the whole summary in 4.2 s)."""
  base = _base_at(act, sw, sb)
  if not need_c:
    return base
  with jax.enable_x64(True):
    out = _run_scalar(_c_impl, act, (), jnp.asarray(sw, jnp.float64),
                      jnp.asarray(sb, jnp.float64),
                      *(jnp.asarray(base[k]) for k in ("q_star", "status", "chi1", "m")))
    return {**base, **{k: np.asarray(v) for k, v in out.items()}}


def _scalar_pair(field, phi, sigma_w2, sigma_b2, what):
  act = _prepare(phi)
  sw = _check_sigma(sigma_w2, "sigma_w2", positive=True)
  sb = _check_sigma(sigma_b2, "sigma_b2", positive=False)
  # Only c_star and xi_c need the correlation map's root: without it the program is about
  # half the size and compiles in half the time (tanh, vmapped float32: 1.6 s, not 3.2 s).
  need_c = field in ("c_star", "xi_c")
  if _is_traced(sw) or _is_traced(sb):
    # Traced sigmas cannot be checked before the call: outside the domain (sigma_w2 <= 0,
    # sigma_b2 < 0, NaN, inf) the result is NaN, never a number that reads as valid
    # (-0.0 from chi1, or an inf xi_c that reads as "critical").
    sw, sb = jnp.broadcast_arrays(jnp.asarray(sw), jnp.asarray(sb))
    valid = jnp.isfinite(sw) & (sw > 0) & jnp.isfinite(sb) & (sb >= 0)
    out, _, _ = _evaluate(_summary_impl, act,
                          (jnp.where(valid, sw, 1.0), jnp.where(valid, sb, 0.0)), (need_c,))
    return jnp.where(valid, out[field].astype(jnp.float32), jnp.nan)
  sw_b, sb_b = np.broadcast_arrays(sw, sb)
  outs = [_summary_at(act, float(a), float(b), need_c) for a, b in zip(sw_b.ravel(),
                                                                       sb_b.ravel())]
  out = {k: np.stack([o[k] for o in outs]).reshape(sw_b.shape) for k in outs[0]} if outs \
      else {k: np.zeros(sw_b.shape) for k in ("q_star", "status", "chi1", "c_star", "xi_q",
                                              "xi_c", "c_status")}
  if field in ("q_star", "xi_q") or not (act.homogeneous and (np.asarray(sb) == 0).all()):
    _raise_status(what, act, out, sw, sb, (field,))
  else:
    _raise_status(what, act, {**out, "status": np.zeros_like(out["status"])}, sw, sb, (field,))
  if field == "c_star" and (out["c_status"] == _C_EVERY).any():
    w, b = _first(out["c_status"] == _C_EVERY, np.broadcast_to(sw, out["c_status"].shape),
                  np.broadcast_to(sb, out["c_status"].shape))
    why = ("phi is linear" if act.linear else "q* = 0, where the map tends to the identity "
           "(phi(u) ~ phi'(0) u)")
    raise ValueError(f"c_star: every c is a fixed point of the correlation map of phi="
                     f"{act.name!r} at sigma_w2={w:g}, sigma_b2={b:g} ({why}): the correlation "
                     "keeps its input value (xi_c = inf); follow a given pair with c_map or "
                     "kernel_map")
  return jnp.asarray(out[field], jnp.float32)


# --------------------------------------------------------------------------- validation


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
  nodes, _ = np.polynomial.hermite_e.hermegauss(gains_lib._QUAD_NODES)  # pylint: disable=protected-access
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


def _check_sigma(value: Any, name: str, *, positive: bool) -> Any:
  """A real scalar or array; concrete values must be finite and > 0 (or >= 0)."""
  if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
    raise TypeError(f"{name} must be a real number or array, got {value!r}")
  if _is_traced(value):
    if not jnp.issubdtype(value.dtype, jnp.number) or jnp.iscomplexobj(value):
      raise TypeError(f"{name} must be real, got dtype {value.dtype}")
    return value
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
  return arr.astype(np.float64)


def _check_depth(depth: Any) -> int:
  return validation.check_int(depth, "depth")


def _map_args(fn: str, phi: ActivationLike, sigma_w2, sigma_b2, depth) -> tuple:
  """``(activation, depth, sigma_w2, sigma_b2)`` checked for a layer-by-layer map ``fn``."""
  act = _prepare(phi)
  depth = _check_depth(depth)
  sw = _check_sigma(sigma_w2, "sigma_w2", positive=True)
  sb = _check_sigma(sigma_b2, "sigma_b2", positive=False)
  if np.ndim(sw) or np.ndim(sb):
    raise ValueError(f"{fn} takes scalar sigma_w2 and sigma_b2 (vmap it for grids); got shapes "
                     f"{np.shape(sw)} and {np.shape(sb)}")
  return act, depth, sw, sb


# --------------------------------------------------------------------------- public API


def q_star(phi: ActivationLike, sigma_w2, sigma_b2) -> jax.Array:
  r"""The fixed point q* of the length map (the pre-activation variance deep in the net).

  .. math:: q^* = \sigma_w^2 \int \mathcal{D}z\, \phi(\sqrt{q^*} z)^2 + \sigma_b^2

  the fixed point of Schoenholz et al. 2017, eq. (2) (Poole et al. 2016, eq. (3)) that
  the map reaches from q = 1: bracketed by doubling or halving q, then bisection in
  log q to float64 precision. 0 where the variance dies out (sigma_b2 = 0 below
  criticality).

  Args:
    phi: an elementwise activation, e.g. ``jnp.tanh``, or an :class:`Activation`.
    sigma_w2: weight variance times fan_in (> 0); a scalar or an array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    float32 array of the broadcast shape (inf under jit where no fixed point exists).

  Raises:
    TypeError: phi not callable, or sigmas not real.
    ValueError: sigma_w2 <= 0, sigma_b2 < 0, phi returning NaN / with an infinite
      second moment, or no fixed point (q grows without bound, e.g. relu with
      sigma_w2 = 2 and sigma_b2 > 0).
  """
  return _scalar_pair("q_star", phi, sigma_w2, sigma_b2, "q_star")


def chi1(phi: ActivationLike, sigma_w2, sigma_b2) -> jax.Array:
  r"""The slope of the correlation map at c = 1: order (< 1), chaos (> 1), criticality (= 1).

  .. math:: \chi_1 = \frac{\partial c^l}{\partial c^{l-1}}\Big|_{c=1}
     = \sigma_w^2 \int \mathcal{D}z\, \big[\phi'(\sqrt{q^*} z)\big]^2

  Schoenholz et al. 2017, eq. (4). It is also the factor by which the mean squared
  gradient grows per layer going backwards (their §5). Infinite for an activation that
  jumps (sign, step: phi' has a delta). Where q* = 0 the q* -> 0+ limit is taken
  (relu: chi1 = sigma_w2 / 2); homogeneous activations (relu, leaky relu, abs) at
  sigma_b2 = 0 have a q-independent chi1, returned even where q* does not exist.

  Args:
    phi: an elementwise activation or an :class:`Activation`.
    sigma_w2: weight variance times fan_in (> 0); scalar or array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    chi1 as a float32 array of the broadcast shape; ``inf`` for sign and step.
  """
  return _scalar_pair("chi1", phi, sigma_w2, sigma_b2, "chi1")


def xi_q(phi: ActivationLike, sigma_w2, sigma_b2) -> jax.Array:
  r"""Depth scale over which the pre-activation variance approaches q*.

  .. math:: \xi_q^{-1} = -\log \Big[\sigma_w^2 \frac{d}{dq} \int \mathcal{D}z\,
     \phi(\sqrt{q} z)^2\Big]_{q^*}
     = -\log\Big[\chi_1 + \sigma_w^2 \int \mathcal{D}z\, \phi''(\sqrt{q^*} z)\,
     \phi(\sqrt{q^*} z)\Big]

  Schoenholz et al. 2017, eq. (6): |q^l - q*| ~ exp(-l / xi_q). The slope is computed as
  ``E[phi(u)^2 (u^2/q - 1)] / (2q)``, which includes the delta terms of phi'' at kinks.

  Args:
    phi: an elementwise activation or an :class:`Activation`.
    sigma_w2: weight variance times fan_in (> 0); scalar or array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    float32 array of the broadcast shape; ``inf`` where the slope is >= 1.
  """
  return _scalar_pair("xi_q", phi, sigma_w2, sigma_b2, "xi_q")


def c_star(phi: ActivationLike, sigma_w2, sigma_b2) -> jax.Array:
  r"""The stable fixed point c* of the correlation map.

  .. math:: c^l = \frac{1}{q^*}\Big[\sigma_w^2 \int \mathcal{D}z_1 \mathcal{D}z_2\,
     \phi(u_1)\phi(u_2) + \sigma_b^2\Big],\quad u_1 = \sqrt{q^*} z_1,\
     u_2 = \sqrt{q^*}\big(c^{l-1} z_1 + \sqrt{1 - (c^{l-1})^2}\, z_2\big)

  Schoenholz et al. 2017, eq. (3) (at q^{l-1} = q*). In the ordered phase
  (chi1 <= 1) c* = 1; in the chaotic phase (chi1 > 1, always for sign and step) c* < 1
  is found by bisection on [0, 1). Homogeneous activations (relu, leaky relu, abs) at
  sigma_b2 = 0: c* = 1, approached polynomially (xi_c = inf).

  Args:
    phi: an elementwise activation or an :class:`Activation`.
    sigma_w2: weight variance times fan_in (> 0); scalar or array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    float32 array of the broadcast shape, in [0, 1].

  Raises:
    ValueError: as :func:`q_star`, or where every c is a fixed point (q* = 0 at
      sigma_b2 = 0, or a linear phi at sigma_b2 = 0): the correlation keeps its input value.
  """
  return _scalar_pair("c_star", phi, sigma_w2, sigma_b2, "c_star")


def xi_c(phi: ActivationLike, sigma_w2, sigma_b2) -> jax.Array:
  r"""Depth scale over which two inputs' correlation approaches c*; diverges at criticality.

  .. math:: \xi_c^{-1} = -\log\Big[\sigma_w^2 \int \mathcal{D}z_1 \mathcal{D}z_2\,
     \phi'(u_1^*)\, \phi'(u_2^*)\Big]

  with u* as in :func:`c_star` at c = c*: Schoenholz et al. 2017, eq. (9),
  |c^l - c*| ~ exp(-l / xi_c). In the ordered phase c* = 1 and the bracket is chi1, so
  xi_c = -1 / log(chi1) -> inf at chi1 = 1. ``inf`` also where the approach is not
  exponential: homogeneous activations at sigma_b2 = 0 (c -> 1 polynomially) and q* = 0
  or linear phi at sigma_b2 = 0 (c keeps its input value). Schoenholz et al. find
  networks trainable up to depth ~ 6 xi_c.

  Args:
    phi: an elementwise activation or an :class:`Activation`.
    sigma_w2: weight variance times fan_in (> 0); scalar or array.
    sigma_b2: bias variance (>= 0); broadcast against ``sigma_w2``.

  Returns:
    xi_c as a float32 array of the broadcast shape; ``inf`` at criticality and where the
    approach is not exponential (see above).
  """
  return _scalar_pair("xi_c", phi, sigma_w2, sigma_b2, "xi_c")


def q_map(phi: ActivationLike, sigma_w2, sigma_b2, q0, depth: int) -> jax.Array:
  r"""Predicted pre-activation variance at each of ``depth`` layers (the length map).

  .. math:: q^{l} = \sigma_w^2 \int \mathcal{D}z\, \phi(\sqrt{q^{l-1}} z)^2 + \sigma_b^2,
     \qquad q^0 = q_0

  Schoenholz et al. 2017, eq. (2). ``q0`` is the variance of the pre-activations
  that enter the first of the ``depth`` layers ``z^l = W phi(z^{l-1}) + b``.

  Args:
    phi: an elementwise activation or an :class:`Activation`.
    sigma_w2: weight variance times fan_in (> 0), scalar.
    sigma_b2: bias variance (>= 0), scalar.
    q0: input pre-activation variance (> 0), a scalar or an array.
    depth: number of layers (>= 1).

  Returns:
    float32 array of shape ``q0.shape + (depth,)``: ``[q^1, ..., q^depth]``.
  """
  act, depth, sw, sb = _map_args("q_map", phi, sigma_w2, sigma_b2, depth)
  q0 = _check_sigma(q0, "q0", positive=True)
  out, _, traced = _evaluate(_q_map_impl, act, (sw, sb, q0), (depth,))
  if not traced and not np.isfinite(out).all():
    raise ValueError(f"q_map is not finite for phi={act.name!r}: the activation produced a "
                     "non-finite value at the variances reached (e.g. it overflows)")
  return jnp.asarray(out, jnp.float32)


def c_map(phi: ActivationLike, sigma_w2, sigma_b2, c0, depth: int) -> jax.Array:
  r"""Predicted correlation of two inputs' pre-activations at each of ``depth`` layers.

  Iterates Schoenholz et al. 2017, eq. (3), with both inputs at the fixed point q*
  (the regime the paper's depth scales describe), from the correlation ``c0``. At
  sigma_b2 = 0 a homogeneous phi's map does not depend on q (relu: the arc-cosine map);
  where q* = 0 it is the q -> 0+ limit. Inputs of other variances: :func:`kernel_map`.

  Args:
    phi: an elementwise activation or an :class:`Activation`.
    sigma_w2, sigma_b2: scalars (> 0, >= 0).
    c0: the inputs' correlation, in [-1, 1]; scalar or array.
    depth: number of layers (>= 1).

  Returns:
    float32 array of shape ``c0.shape + (depth,)``: ``[c^1, ..., c^depth]``.

  Raises:
    ValueError: as :func:`q_star` (no fixed point), or c0 outside [-1, 1].
  """
  act, depth, sw, sb = _map_args("c_map", phi, sigma_w2, sigma_b2, depth)
  if not _is_traced(c0):
    c0 = _check_sigma(c0, "c0", positive=False) if np.all(np.asarray(c0) >= 0) else \
        np.asarray(c0, np.float64)
    if (np.abs(c0) > 1.0).any() or not np.isfinite(c0).all():
      raise ValueError(f"c0 must be a correlation in [-1, 1], got {c0}")
  (cs, status), _, traced = _evaluate(_c_map_impl, act, (sw, sb, c0), (depth,))
  if not traced:
    _raise_status("c_map", act, {"status": np.asarray(status)}, sw, sb)
    if not np.isfinite(cs).all():
      raise ValueError(f"c_map is not finite for phi={act.name!r}: the activation produced a "
                       "non-finite value at the variances reached")
  return jnp.asarray(cs, jnp.float32)


class KernelMap(NamedTuple):
  """Per-layer variances of two inputs and their correlation (each ``(..., depth)``)."""

  q1: jax.Array
  q2: jax.Array
  c: jax.Array


def kernel_map(phi: ActivationLike, sigma_w2, sigma_b2, q1, q2, c, depth: int) -> KernelMap:
  r"""Two inputs of any norms through ``depth`` layers: their variances and correlation.

  .. math:: q_a^{l} = \sigma_w^2\, \mathbb{E}[\phi(u_a)^2] + \sigma_b^2,\quad
     c^{l} = \frac{\sigma_w^2\, \mathbb{E}[\phi(u_1)\phi(u_2)] + \sigma_b^2}
     {\sqrt{q_1^{l} q_2^{l}}},\quad
     (u_1, u_2) \sim \mathcal{N}\Big(0, \begin{bmatrix} q_1^{l-1} & c^{l-1}\sqrt{q_1^{l-1}
     q_2^{l-1}} \\ \cdot & q_2^{l-1}\end{bmatrix}\Big)

  The NNGP recursion of a wide MLP (Lee et al. 2018, Matthews et al. 2018;
  Schoenholz et al. 2017 eqs. (2)-(3) without assuming q1 = q2 = q*). ``q1``, ``q2``,
  ``c`` describe the pre-activations entering the first of the layers
  ``z^l = W phi(z^{l-1}) + b``.

  Args:
    phi: an elementwise activation or an :class:`Activation`.
    sigma_w2, sigma_b2: scalars (> 0, >= 0).
    q1, q2: the two inputs' pre-activation variances (> 0); broadcast together with c.
    c: their correlation, in [-1, 1].
    depth: number of layers (>= 1).

  Returns:
    :class:`KernelMap` of float32 arrays of shape ``broadcast + (depth,)``.

  References: Lee et al. 2018, https://arxiv.org/abs/1711.00165
  """
  act, depth, sw, sb = _map_args("kernel_map", phi, sigma_w2, sigma_b2, depth)
  q1 = _check_sigma(q1, "q1", positive=True)
  q2 = _check_sigma(q2, "q2", positive=True)
  if not _is_traced(c):
    c = np.asarray(c, np.float64) if not isinstance(c, (bool, str)) else c
    if not isinstance(c, np.ndarray) or not np.issubdtype(c.dtype, np.floating) \
        or not np.isfinite(c).all() or (np.abs(c) > 1.0).any():
      raise ValueError(f"c must be a correlation in [-1, 1], got {c!r}")
  out, _, traced = _evaluate(_kernel_map_impl, act, (sw, sb, q1, q2, c), (depth,))
  if not traced and not all(np.isfinite(x).all() for x in out):
    raise ValueError(f"kernel_map is not finite for phi={act.name!r}: the activation produced "
                     "a non-finite value at the variances reached (e.g. it overflows)")
  return KernelMap(*(jnp.asarray(x, jnp.float32) for x in out))


@dataclasses.dataclass(frozen=True)
class Dense:
  """A wide dense layer for :func:`nngp_kernel`: W ~ N(0, sigma_w2 / fan_in), b ~ N(0, sigma_b2).

  The same parameters as neural-tangents' ``stax.Dense(out, W_std, b_std)`` with
  ``sigma_w2 = W_std**2`` and ``sigma_b2 = b_std**2``.
  """

  sigma_w2: float
  sigma_b2: float = 0.0

  def __post_init__(self):
    object.__setattr__(self, "sigma_w2", validation.check_real(self.sigma_w2, "sigma_w2",
                                                               positive=True))
    object.__setattr__(self, "sigma_b2", validation.check_real(self.sigma_b2, "sigma_b2",
                                                               nonnegative=True))


def _nngp_layers(layers) -> list:
  if isinstance(layers, (Dense, Activation)) or callable(layers) or \
      not isinstance(layers, (list, tuple)):
    raise TypeError("layers must be a list of jinit.theory.Dense layers and activations, got "
                    f"{layers!r}")
  if not layers:
    raise ValueError("layers must not be empty")
  out = []
  for i, layer in enumerate(layers):
    if isinstance(layer, Dense):
      out.append(layer)
    elif callable(layer):
      out.append(_prepare(layer))
    else:
      raise TypeError(f"layers[{i}] must be a jinit.theory.Dense or an elementwise activation, "
                      f"got {layer!r}")
  return out


_NNGP_PAIRS = 64  # input pairs per batch of nngp_kernel's 2-D quadratures (~70 MB each)


@functools.partial(jax.jit, static_argnums=0)
def _nngp_activation(act: Activation, k12: jax.Array, d1: jax.Array, d2: jax.Array):
  """One activation layer of the NNGP recursion: (E[phi(u) phi(v)], E[phi(u)^2], E[phi(v)^2])
  for every pair of inputs, (u, v) ~ N(0, [[d1_i, k12_ij], [k12_ij, d2_j]]).

  Compiled once per (activation, shapes): the Dense layers around it are plain float64
  arithmetic in :func:`_nngp_stack`, so a stack of any depth and any sigmas reuses this
  program. (Tracing the whole stack as one program made XLA's compile time grow steeply
  with depth: 20 erf layers did not compile in 800 s.)
  """
  q1 = jnp.broadcast_to(d1[:, None], k12.shape)
  q2 = jnp.broadcast_to(d2[None, :], k12.shape)
  s = jnp.sqrt(q1 * q2)
  k = jnp.clip(k12, -s, s)
  pairs = (q1.reshape(-1), q2.reshape(-1), k.reshape(-1))
  if act.closed_form:
    k12 = jax.vmap(lambda a, b, c: _k(act, a, b, c))(*pairs)
  else:
    # A 2-D quadrature holds ~1.3e5 nodes per pair: vmapped over every pair of a (100, 100)
    # kernel that is 10 GB of float64 per intermediate, so the pairs go _NNGP_PAIRS at a time.
    k12 = lax.map(lambda p: _k(act, *p), pairs, batch_size=_NNGP_PAIRS)
  return (k12.reshape(s.shape), jax.vmap(lambda q: _m(act, q))(d1),
          jax.vmap(lambda q: _m(act, q))(d2))


def _nngp_stack(layers, k12: np.ndarray, d1: np.ndarray, d2: np.ndarray):
  """The NNGP recursion through ``layers`` (float64 numpy in and out; call under x64)."""
  for layer in layers:
    if isinstance(layer, Dense):
      k12, d1, d2 = (layer.sigma_w2 * a + layer.sigma_b2 for a in (k12, d1, d2))
    else:
      k12, d1, d2 = (np.asarray(a) for a in _nngp_activation(layer, jnp.asarray(k12),
                                                              jnp.asarray(d1), jnp.asarray(d2)))
  return k12, d1, d2


def nngp_kernel(layers: Sequence[Any], x1, x2=None) -> jax.Array:
  r"""The NNGP kernel of a wide stack of Dense layers and activations, for any activation.

  .. math:: K^0(x, x') = \frac{x \cdot x'}{d},\quad \text{Dense: } K \mapsto
     \sigma_w^2 K + \sigma_b^2,\quad \phi: K(x, x') \mapsto \mathbb{E}[\phi(u)\phi(u')]

  with (u, u') Gaussian of covariance K restricted to (x, x'): Lee et al. 2018,
  Matthews et al. 2018. The same convention as neural-tangents'
  ``stax.serial(...).kernel_fn(x1, x2, 'nngp')`` with ``stax.Dense(n, W_std, b_std)``
  (``sigma_w2 = W_std**2``), exact for its activations with closed forms (relu, leaky
  relu, abs, erf, sign, sin, ...) and by quadrature for any other JAX activation.

  Example::

    layers = [theory.Dense(2.0, 0.1), jax.nn.relu, theory.Dense(2.0, 0.1)]
    k = theory.nngp_kernel(layers, x1, x2)   # (n1, n2)

  Args:
    layers: a list of :class:`Dense` and elementwise activations (or
      :class:`Activation`), applied in order to the inputs.
    x1: inputs (n1, d), no row zero.
    x2: inputs (n2, d), or None for x1.

  Returns:
    float32 array (n1, n2): the covariance of the last layer's outputs.

  References: Lee et al. 2018, https://arxiv.org/abs/1711.00165; Novak et al. 2020,
  https://arxiv.org/abs/1912.02803 (neural-tangents)
  """
  layers = _nngp_layers(layers)
  xs = []
  for name, x in (("x1", x1), ("x2", x1 if x2 is None else x2)):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
      raise TypeError(f"{name} must be a real array, got dtype {x.dtype}")
    if x.ndim != 2 or 0 in x.shape:
      raise ValueError(f"{name} must be a non-empty (batch, d) array, got shape {x.shape}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
      raise ValueError(f"{name} must be finite")
    if not (np.abs(x).sum(axis=1) > 0).all():
      raise ValueError(f"{name} has a zero row: its variance is 0 and its correlation undefined")
    xs.append(x)
  if xs[0].shape[1] != xs[1].shape[1]:
    raise ValueError(f"x1 and x2 must have the same feature size, got {xs[0].shape} and "
                     f"{xs[1].shape}")
  d = xs[0].shape[1]
  with jax.enable_x64(True):
    k12, _, _ = _nngp_stack(layers, xs[0] @ xs[1].T / d, np.sum(xs[0] ** 2, 1) / d,
                            np.sum(xs[1] ** 2, 1) / d)
  if not np.isfinite(k12).all():
    raise ValueError("nngp_kernel is not finite: an activation produced a non-finite value at "
                     "the variances reached")
  return jnp.asarray(k12, jnp.float32)


def critical_sigma_w2(phi: ActivationLike, sigma_b2, *,
                      search: tuple[float, float] | None = None) -> jax.Array:
  r"""The sigma_w2 at which chi1 = 1 (the edge of chaos), for a given sigma_b2.

  .. math:: \sigma_w^2 \int \mathcal{D}z\, \big[\phi'(\sqrt{q^*(\sigma_w^2, \sigma_b^2)}\, z)
     \big]^2 = 1

  (Schoenholz et al. 2017, eq. (4) set to 1). Bisection on log(sigma_w2) to float64
  precision. Without ``search`` the bracket starts at :data:`DEFAULT_SEARCH` and widens
  tenfold per side (down to 1e-8, up to 1e8) until chi1 < 1 at its low end and >= 1 at
  its high end, so every sigma_b2 works (tanh: 1 at sigma_b2 = 0, about 1.76 at 0.05,
  15.0 at 50); with ``search`` only that range is searched.

  Args:
    phi: an elementwise activation or an :class:`Activation`.
    sigma_b2: bias variance (>= 0); scalar or array.
    search: None, or a (low, high) range of sigma_w2 to search, 0 < low < high.

  Returns:
    float32 array of ``sigma_b2``'s shape. Under jit/vmap (traced sigma_b2) a value
    without a critical point is NaN.

  Raises:
    ValueError: sigma_b2 < 0, a bad ``search``, or (concrete sigma_b2) no critical point:
      chi1 on the same side of 1 over the range (the message gives both ends), chi1
      infinite (phi jumps), or chi1 < 1 wherever q* exists (relu with sigma_b2 > 0).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jinit import theory
    >>> round(float(theory.critical_sigma_w2(jnp.tanh, 0.05)), 2)
    1.76
  """
  act = _prepare(phi)
  sb = _check_sigma(sigma_b2, "sigma_b2", positive=False)
  widen = search is None
  if search is None:
    search = DEFAULT_SEARCH
  if not isinstance(search, (tuple, list)) or len(search) != 2:
    raise TypeError(f"search must be a (low, high) pair, got {search!r}")
  lo = validation.check_real(search[0], "search[0]", positive=True)
  hi = validation.check_real(search[1], "search[1]", positive=True)
  if not lo < hi:
    raise ValueError(f"search must have low < high, got {search!r}")
  out, _, traced = _evaluate(_critical_impl, act, (sb,), (lo, hi, widen))
  if traced:
    return out["root"].astype(jnp.float32)
  bad = np.isnan(out["root"])
  if bad.any():
    b, c_lo, c_hi, l, h, bound, at = _first(bad, np.broadcast_to(sb, bad.shape), out["chi_lo"],
                                            out["chi_hi"], out["lo"], out["hi"], out["boundary"],
                                            out["at"])
    if math.isinf(c_lo) and math.isinf(c_hi):
      why = "chi1 is infinite for every sigma_w2 (phi jumps: phi' has a delta)"
    elif bound:
      why = (f"chi1 < 1 wherever q* exists; from sigma_w2 = {at:.6g} on, the length map has no "
             "fixed point (q grows without bound)")
    else:
      why = (f"chi1 = {c_lo:.4g} at sigma_w2={l:g} and {c_hi:.4g} at sigma_w2={h:g}" +
             ("" if widen else "; widen search="))
    raise ValueError(f"phi={act.name!r} has no critical point (chi1 = 1) for sigma_w2 in "
                     f"[{l:g}, {h:g}] at sigma_b2={b:g}: {why}")
  return jnp.asarray(out["root"], jnp.float32)


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
