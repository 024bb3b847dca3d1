"""jinit.theory against independent references: closed forms, scipy quadrature and root-finding.

The references live in docs/results/theory_accuracy/accuracy.py (scipy.integrate.quad,
scipy.optimize.brentq, hand-written phi', numpy closed forms; no jinit code). Every row of
issue 17's table is a test here. Tolerances: 1e-5 relative (1e-6 for critical sigma_w2 and
the closed-form kernels), which the float64 computation meets with a wide margin (the
results are float32, whose rounding is 6e-8).
"""

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import optimize
from scipy import special

from jinit import theory

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "docs", "results",
                                "theory_accuracy"))
import accuracy as ref

sys.path.pop(0)

RTOL = 1e-5
erf = jax.scipy.special.erf
pytestmark = pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")


def _arccos_relu(c):
  return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi


# --------------------------------------------------------------------------- issue 17's table


@pytest.mark.parametrize("phi,alpha,beta", [(jax.nn.relu, 1.0, 0.0),
                                            (jax.nn.leaky_relu, 1.0, 0.01),
                                            (jnp.abs, 1.0, -1.0)])
def test_c_map_of_kinked_activations_is_the_arc_cosine_kernel(phi, alpha, beta):
  # sigma_b2 = 0: C(c) = K(c) / K(1), K = (a-b)^2 relu-kernel + a b c (Cho & Saul 2009).
  out = float(theory.c_map(phi, 2.0, 0.0, 0.5, 1)[0])
  k = lambda c: (alpha - beta) ** 2 * _arccos_relu(c) / 2 + alpha * beta * c
  assert out == pytest.approx(k(0.5) / k(1.0), rel=1e-6)
  if phi is jax.nn.relu:
    assert out == pytest.approx(0.6089978, rel=1e-6)


def test_hard_tanh_critical_point_and_chi1_there():
  crit_ref = ref.critical("hard_tanh", 0.05)
  assert crit_ref == pytest.approx(1.1655447, rel=1e-6)
  assert float(theory.critical_sigma_w2(jax.nn.hard_tanh, 0.05)) == pytest.approx(crit_ref,
                                                                                  rel=1e-6)
  assert float(theory.chi1(jax.nn.hard_tanh, crit_ref, 0.05)) == pytest.approx(1.0, rel=RTOL)


def _hard_tanh_c_star_by_price(sw, sb):
  """c* of hard_tanh from Price's theorem, a second reference independent of accuracy.py's
  nested quad: dE[phi(u) phi(v)]/drho = q P(|u| < 1, |v| < 1) for u, v ~ N(0, q) with
  correlation rho, and E[phi(u) phi(v)] = E[phi]^2 = 0 at rho = 0, so the correlation map
  is C(c) = (sw q int_0^c P(rho) drho + sb) / q* at q = q*."""
  q = ref.q_star("hard_tanh", sw, sb)
  a = 1 / math.sqrt(q)  # the kinks in units of sqrt(q)

  def box(rho):  # P(|z1| < a, |z2| < a), z standard normal with correlation rho
    r = math.sqrt(1 - rho * rho)
    g = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi) * (
        special.ndtr((a - rho * z) / r) - special.ndtr((-a - rho * z) / r))
    return integrate.quad(g, -a, a, epsabs=0, epsrel=1e-12)[0]

  f = lambda c: (sw * q * integrate.quad(box, 0, c, epsabs=0, epsrel=1e-12)[0] + sb) / q - c
  return optimize.brentq(f, 0.0, 0.99, xtol=1e-14, rtol=1e-13)


@pytest.mark.parametrize("sb2", [0.05, 1.0])
def test_hard_tanh_c_star_in_the_chaotic_phase(sb2):
  # chi1 = 1.572 and 1.285 at sigma_w2 = 3: chaotic, so c* < 1 (C(c) - c is > 0 at 0 and
  # < 0 just below 1). The first accuracy run's reference read c* = 1 here (its bracket
  # started at 1 - 1e-6, where C(c) - c is below its nested quad's error).
  assert float(theory.chi1(jax.nn.hard_tanh, 3.0, sb2)) > 1
  expected = ref.c_star("hard_tanh", 3.0, sb2)
  assert expected == pytest.approx(_hard_tanh_c_star_by_price(3.0, sb2), rel=1e-7)
  assert expected < 0.99
  assert float(theory.c_star(jax.nn.hard_tanh, 3.0, sb2)) == pytest.approx(expected, rel=RTOL)
  assert float(theory.c_map(jax.nn.hard_tanh, 3.0, sb2, 0.9, 80)[-1]) == pytest.approx(
      expected, rel=RTOL)


def test_hard_tanh_xi_q_includes_the_kinks_delta_terms():
  expected = ref.xi_q("hard_tanh", 0.58277, 0.05)
  assert expected == pytest.approx(1.728, abs=1e-3)
  assert float(theory.xi_q(jax.nn.hard_tanh, 0.58277, 0.05)) == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("sw2,sb2,value", [(30.0, 0.05, 3.148), (1e4, 0.0, 53.4)])
def test_tanh_chi1_at_large_variance(sw2, sb2, value):
  expected = ref.chi1("tanh", sw2, sb2)
  assert expected == pytest.approx(value, rel=1e-3)
  assert float(theory.chi1(jnp.tanh, sw2, sb2)) == pytest.approx(expected, rel=RTOL)


def test_tanh_at_1e4_is_chaotic():
  assert float(theory.chi1(jnp.tanh, 1e4, 0.0)) > 1
  xi = float(theory.xi_c(jnp.tanh, 1e4, 0.0))
  assert 0 < xi < math.inf and xi == pytest.approx(ref.xi_c("tanh", 1e4, 0.0), rel=RTOL)


def test_sin_chi1_at_large_variance():
  # q* = sigma_w2 (1 - e^{-2 q*}) / 2 + sigma_b2, chi1 = sigma_w2 (1 + e^{-2 q*}) / 2.
  assert float(theory.chi1(jnp.sin, 1e4, 0.05)) == pytest.approx(ref.chi1("sin", 1e4, 0.05),
                                                                 rel=RTOL)
  assert float(theory.chi1(jnp.sin, 1e4, 0.05)) == pytest.approx(5000.0, rel=RTOL)


def test_tanh_critical_point_at_sigma_b2_50():
  expected = ref.critical("tanh", 50.0)
  assert expected == pytest.approx(15.02, rel=1e-3)
  assert float(theory.critical_sigma_w2(jnp.tanh, 50.0)) == pytest.approx(expected, rel=1e-6)


def test_critical_points_at_sigma_b2_0_are_exact():
  # chi1 = sigma_w2 phi'(0)^2 while q* = 0: tanh 1, erf pi/4 (phi'(0)^2 = 4/pi).
  assert float(theory.critical_sigma_w2(jnp.tanh, 0.0)) == pytest.approx(1.0, rel=1e-6)
  assert float(theory.critical_sigma_w2(erf, 0.0)) == pytest.approx(math.pi / 4, rel=1e-6)


def test_sign_and_step_have_infinite_chi1_and_c_star_from_the_map():
  expected = ref.c_star("sign", 1.0, 0.05)
  assert expected == pytest.approx(0.1214, abs=1e-4)
  assert float(theory.c_star(jnp.sign, 1.0, 0.05)) == pytest.approx(expected, rel=RTOL)
  assert float(theory.c_map(jnp.sign, 1.0, 0.05, 0.9, 60)[-1]) == pytest.approx(expected,
                                                                                 rel=RTOL)
  assert math.isinf(float(theory.chi1(jnp.sign, 1.0, 0.05)))
  step = theory.Activation.step()
  assert math.isinf(float(theory.chi1(step, 1.0, 0.05)))
  assert float(theory.c_star(step, 1.0, 0.05)) == pytest.approx(ref.c_star("step", 1.0, 0.05),
                                                                rel=RTOL)
  with pytest.raises(ValueError, match="chi1 is infinite for every sigma_w2"):
    theory.critical_sigma_w2(jnp.sign, 0.05)


def test_relu_above_its_critical_line_has_no_fixed_point():
  with pytest.raises(ValueError, match="no fixed point.*grows without bound"):
    theory.q_star(jax.nn.relu, 2.0, 0.1)
  with pytest.raises(ValueError, match="no critical point.*q grows without bound"):
    theory.critical_sigma_w2(jax.nn.relu, 0.1)


def test_homogeneous_activations_approach_c_1_polynomially():
  assert float(theory.c_star(jax.nn.relu, 2.5, 0.0)) == 1.0
  assert math.isinf(float(theory.xi_c(jax.nn.relu, 2.5, 0.0)))
  # the arc-cosine map near 1: eps -> eps - (2 sqrt(2) / (3 pi)) eps^(3/2), so
  # 1 - c^l ~ 9 pi^2 / (2 l^2) (= 44.4 / l^2), not exp(-l / xi): l^2 (1 - c^l) rises to 44.4.
  cs = np.asarray(theory.c_map(jax.nn.relu, 2.5, 0.0, 0.0, 400), np.float64)
  tail = (np.arange(1, 401) ** 2 * (1 - cs))[[99, 199, 399]]
  assert np.all(np.diff(tail) > 0) and 0.85 < tail[-1] / (4.5 * math.pi ** 2) < 1.0, tail


def test_erf_below_criticality_keeps_the_input_correlation():
  assert math.isinf(float(theory.xi_c(erf, 0.5, 0.0)))
  with pytest.raises(ValueError, match="every c is a fixed point"):
    theory.c_star(erf, 0.5, 0.0)
  np.testing.assert_allclose(theory.c_map(erf, 0.5, 0.0, 0.3, 5), 0.3, rtol=1e-6)


def test_critical_search_covers_large_sigma_b2():
  sb2 = np.array([1.0, 5.0, 10.0, 50.0])
  got = np.asarray(theory.critical_sigma_w2(jnp.tanh, sb2, search=(1e-2, 1e3)))
  np.testing.assert_allclose(got, [ref.critical("tanh", b) for b in sb2], rtol=1e-6)


def test_sigmoid_at_large_variance_is_finite_and_right():
  assert float(theory.xi_q(jax.nn.sigmoid, 261.78, 0.05)) == pytest.approx(
      ref.xi_q("sigmoid", 261.78, 0.05), rel=RTOL)


# --------------------------------------------------------------------------- exact kernels


def _closed_recursion(name, sw, sb, q1, q2, c, depth):
  m = (ref.CLOSED[name] if name != "identity" else ref._two(1.0, 1.0))[0]
  out = []
  for _ in range(depth):
    # the reference's kernel is at equal variances; for unequal ones scale by homogeneity or
    # use the 2-D Gaussian form directly.
    k12 = _kernel_general(name, q1, q2, c)
    q1, q2 = sw * m(q1) + sb, sw * m(q2) + sb
    c = (sw * k12 + sb) / math.sqrt(q1 * q2)
    out.append((q1, q2, c))
  return np.array(out).T


def _kernel_general(name, q1, q2, c):
  """E[phi(u) phi(v)] at variances q1, q2 and correlation c (numpy closed forms)."""
  s = math.sqrt(q1 * q2)
  c = max(-1.0, min(1.0, c))  # a correlation; an input's with itself can round above 1
  two = {"relu": (1, 0), "leaky_relu": (1, 0.01), "abs": (1, -1), "identity": (1, 1)}
  if name in two:
    a, b = two[name]
    return (a - b) ** 2 * s * _arccos_relu(c) / 2 + a * b * c * s
  if name == "erf":
    return 2 / math.pi * math.asin(2 * c * s / math.sqrt((1 + 2 * q1) * (1 + 2 * q2)))
  if name == "sign":
    return 2 / math.pi * math.asin(c)
  if name == "step":
    return 0.25 + math.asin(c) / (2 * math.pi)
  if name == "sin":
    return math.exp(-(q1 + q2) / 2) * math.sinh(c * s)
  raise AssertionError(name)


CLOSED = {"relu": jax.nn.relu, "leaky_relu": jax.nn.leaky_relu, "abs": jnp.abs, "erf": erf,
          "identity": theory.Activation.identity(), "sign": jnp.sign,
          "step": theory.Activation.step(), "sin": jnp.sin}


@pytest.mark.parametrize("name", list(CLOSED))
def test_kernel_map_matches_closed_forms_at_depths_1_to_50(name):
  sw, sb = (0.9, 0.05) if name in ("identity",) else (1.7, 0.05)
  got = theory.kernel_map(CLOSED[name], sw, sb, 0.7, 2.3, 0.4, 50)
  want = _closed_recursion(name, sw, sb, 0.7, 2.3, 0.4, 50)
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=1e-6)


def test_nngp_kernel_matches_the_closed_form_recursion():
  x = np.random.default_rng(0).normal(size=(3, 5))
  for name in ("relu", "erf", "sign", "sin"):
    layers = [theory.Dense(1.7, 0.05)]
    for _ in range(20):
      layers += [CLOSED[name], theory.Dense(1.7, 0.05)]
    got = np.asarray(theory.nngp_kernel(layers, x), np.float64)
    sq = np.sum(x * x, 1) / 5
    for i in range(3):
      for j in range(3):
        q1, q2 = 1.7 * sq[i] + 0.05, 1.7 * sq[j] + 0.05
        c = (1.7 * x[i] @ x[j] / 5 + 0.05) / math.sqrt(q1 * q2)
        qa, qb, cc = _closed_recursion(name, 1.7, 0.05, q1, q2, c, 20)[:, -1]
        assert got[i, j] == pytest.approx(cc * math.sqrt(qa * qb), rel=1e-6), (name, i, j)


def test_nngp_kernel_of_tanh_agrees_with_kernel_map_and_a_wide_net():
  """Any activation (tanh by quadrature), two inputs of different norms: the kernel against
  kernel_map, and against one random net of width 4096 (Monte Carlo)."""
  x = np.array([[1.0, 0.5, -0.3, 0.2], [0.1, 2.0, 0.4, -1.0]])
  layers = [theory.Dense(1.5, 0.1), jnp.tanh, theory.Dense(1.5, 0.1), jnp.tanh,
            theory.Dense(1.5, 0.1)]
  k = np.asarray(theory.nngp_kernel(layers, x), np.float64)
  q = np.sum(x * x, 1) / 4 * 1.5 + 0.1
  c0 = (1.5 * x[0] @ x[1] / 4 + 0.1) / math.sqrt(q[0] * q[1])
  km = theory.kernel_map(jnp.tanh, 1.5, 0.1, q[0], q[1], c0, 2)
  np.testing.assert_allclose([k[0, 0], k[1, 1], k[0, 1]],
                             [km.q1[-1], km.q2[-1], km.c[-1] * math.sqrt(km.q1[-1] * km.q2[-1])],
                             rtol=1e-6)
  width, nets = 4096, 8
  def net(key):
    # One random net of the given width, each layer's pre-activations drawn from their exact
    # law given the layer below: for h (inputs, fan), z = h W + b with W_jk ~ N(0, 1.5 / fan)
    # and b_k ~ N(0, 0.1) has iid columns z[:, k] ~ N(0, 1.5 h h^T / fan + 0.1). The same net
    # as drawing the (fan, width) matrix W, with O(width) normals instead of O(width^2).
    h = jnp.asarray(x, jnp.float32)
    for i, kk in enumerate(jax.random.split(key, 3)):
      cov = 1.5 * (h @ h.T) / h.shape[1] + 0.1
      z = jnp.linalg.cholesky(cov) @ jax.random.normal(kk, (h.shape[0], width))
      h = jnp.tanh(z) if i < 2 else z
    return h @ h.T / width
  emp = np.mean(np.asarray(jax.vmap(net)(jax.random.split(jax.random.key(0), nets))), 0)
  # each entry is a mean over width * nets products of Gaussians (plus the shared layers'
  # fluctuation, sqrt(2 / width) per layer): relative sd <= 3 sqrt(2 / (width nets)).
  np.testing.assert_allclose(emp, k, rtol=6 * 3 * math.sqrt(2 / (width * nets)))


# --------------------------------------------------------------------------- critical sweeps

SB2_SWEEP = [0.0, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0]


@pytest.mark.parametrize("name,phi", [("tanh", jnp.tanh), ("erf", erf)])
def test_critical_sigma_w2_matches_an_independent_root_finder(name, phi):
  got = np.asarray(theory.critical_sigma_w2(phi, np.array(SB2_SWEEP)), np.float64)
  want = [ref.critical(name, b) for b in SB2_SWEEP]
  np.testing.assert_allclose(got, want, rtol=1e-6)


# --------------------------------------------------------------------------- kinks and jumps


def test_kinks_and_jumps_of_plain_callables_are_found():
  clip = lambda x: jnp.clip(x, -1.0, 1.0)  # a user's hard_tanh
  act = theory.as_activation(clip)
  assert act.kinks == pytest.approx((-1.0, 1.0), abs=1e-6) and act.jumps == ()
  assert float(theory.chi1(clip, 2.0, 0.05)) == pytest.approx(
      float(theory.chi1(jax.nn.hard_tanh, 2.0, 0.05)), rel=1e-6)
  step = lambda x: jnp.where(x > 0.0, 1.0, 0.0)
  assert theory.as_activation(step).jumps == pytest.approx((0.0,), abs=1e-6)
  assert math.isinf(float(theory.chi1(step, 1.0, 0.05)))


def test_an_undeclared_kink_makes_the_quadrature_raise():
  # An Activation is taken as declared: no detection, so the kinks at +-1.3 (not on a panel
  # end: those are at u = +-2^j) are missed and the two rules disagree.
  act = theory.Activation(lambda x: jnp.clip(x, -1.3, 1.3), "clip")
  with pytest.raises(ValueError, match="quadrature of chi1 .* did not converge"):
    theory.chi1(act, 2.0, 0.05)


# --------------------------------------------------------------------------- the wide grid


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ref.SMOOTH))
def test_smooth_and_kinked_activations_on_the_wide_grid(name):
  """sigma_w2 in {0.5, critical, 3, 30, 1e4} x sigma_b2 in {0, 0.05, 1, 10, 50} against scipy."""
  rows = ref.run([name])
  for r in rows:
    for key in ("q_star", "chi1", "c_star", "xi_q"):
      if key + "_ref" in r and math.isfinite(r[key + "_ref"]):
        assert ref.rel(r[key], r[key + "_ref"]) <= RTOL, (key, r)
    if "xi_c_ref" in r and r["sw_label"] != "critical" and math.isfinite(r["xi_c_ref"]):
      assert ref.rel(r["xi_c"], r["xi_c_ref"]) <= RTOL, ("xi_c", r)
    if math.isfinite(r["critical_ref"]):
      assert ref.rel(r["critical"], r["critical_ref"]) <= 1e-6, ("critical", r)
