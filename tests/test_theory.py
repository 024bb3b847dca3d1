"""Tests of jinit.theory: sanity values, Monte Carlo of wide random nets, jit/vmap, Flax, bad input.

Monte Carlo tolerances: a layer's mean of z^2 over N units is a mean of N squared
Gaussians, so its relative standard deviation is sqrt(2 / N); each layer passes a
relative error on to the next multiplied by kappa = d log L / d log q < 1 (the length
map's log-slope at q*), so along the net the error is an AR(1) process with innovation
sqrt(2/N): the mean over L layers and M independent nets has standard error
sqrt(2/N) / ((1 - kappa) sqrt(M L)). We allow N_SE = 6 of them (as tests/conftest.py).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jinit
from jinit import theory

N_SE = 6.0
SB2 = 0.05  # Schoenholz et al.'s sigma_b^2 for tanh on MNIST
identity = lambda x: x  # noqa: E731


# --------------------------------------------------------------------------- sanity values


def test_tanh_critical_point_at_sigma_b2_005():
  # Schoenholz et al. 2017 (Fig. 5): sigma_w^2 ~ 1.76 for tanh at sigma_b^2 = 0.05.
  assert float(theory.critical_sigma_w2(jnp.tanh, SB2)) == pytest.approx(1.76, rel=0.01)
  assert float(theory.chi1(jnp.tanh, theory.critical_sigma_w2(jnp.tanh, SB2), SB2)) \
      == pytest.approx(1.0, abs=1e-3)


def test_tanh_critical_point_tends_to_one_as_sigma_b2_vanishes():
  sb2 = np.array([1e-1, 1e-2, 1e-4, 1e-6, 0.0])
  crit = np.asarray(theory.critical_sigma_w2(jnp.tanh, sb2))
  assert np.all(np.diff(crit) < 0), crit  # decreasing towards 1
  assert crit[-1] == pytest.approx(1.0, rel=0.01)
  # Slow approach: q* ~ sigma_b2^(1/3) at criticality, sigma_w2* - 1 ~ 2 q*.
  assert crit[-2] == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("sw2", [0.5, 1.0, 1.9, 2.0, 3.0])
def test_relu_chi1_is_half_sigma_w2(sw2):
  # chi1 = sigma_w2 E[Theta(z)^2] = sigma_w2 / 2 for any q* > 0, and as q* -> 0+
  # (sigma_w2 < 2): the kink at 0 must not give relu'(0) = 0.
  assert float(theory.chi1(jax.nn.relu, sw2, 0.0)) == pytest.approx(sw2 / 2, rel=1e-3)


def test_relu_critical_point_is_two():
  assert float(theory.critical_sigma_w2(jax.nn.relu, 0.0)) == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize("sw2,sb2", [(0.5, 0.0), (0.5, 0.05), (0.9, 1.0), (1.5, 0.0)])
def test_identity_chi1_is_sigma_w2(sw2, sb2):
  # A plain lambda goes through the quadrature; Activation.identity() is the closed form,
  # which also knows that chi1 does not depend on q at sigma_b2 = 0 (q* = inf at 1.5).
  if sw2 < 1:
    assert float(theory.chi1(identity, sw2, sb2)) == pytest.approx(sw2, rel=1e-6)
  assert float(theory.chi1(theory.Activation.identity(), sw2, sb2)) == pytest.approx(sw2,
                                                                                     rel=1e-6)


def test_identity_q_star_closed_form_and_no_fixed_point():
  # q* = sigma_b2 / (1 - sigma_w2) for sigma_w2 < 1; above, q grows without bound: an error.
  assert float(theory.q_star(identity, 0.5, 0.05)) == pytest.approx(0.1, rel=1e-6)
  with pytest.raises(ValueError, match="grows without bound"):
    theory.q_star(identity, 1.5, 0.05)


def test_q_map_matches_gain_for():
  # sigma_w2 = gain_for(tanh)^2, sigma_b2 = 0 keeps a unit second moment for one layer.
  g2 = jinit.gain_for(jnp.tanh) ** 2
  assert float(theory.q_map(jnp.tanh, g2, 0.0, 1.0, 1)[0]) == pytest.approx(1.0, rel=1e-4)


def test_xi_c_diverges_at_criticality():
  crit = float(theory.critical_sigma_w2(jnp.tanh, SB2))
  deltas = np.array([1e-1, 1e-2, 1e-3])
  below = np.asarray(theory.xi_c(jnp.tanh, crit * (1 - deltas), SB2))
  above = np.asarray(theory.xi_c(jnp.tanh, crit * (1 + deltas), SB2))
  for side in (below, above):
    assert np.all(np.diff(side) > 0), side
  assert below[-1] > 300 and above[-1] > 300, (below, above)
  # Ordered side: xi_c = -1 / log(chi1) (c* = 1) ~ 1 / (1 - chi1) ~ 1 / delta.
  chi = np.asarray(theory.chi1(jnp.tanh, crit * (1 - deltas), SB2))
  np.testing.assert_allclose(below, -1.0 / np.log(chi), rtol=1e-4)


def test_phases_of_tanh():
  sw2 = jnp.array([1.0, 4.0])
  chi = np.asarray(theory.chi1(jnp.tanh, sw2, SB2))
  c = np.asarray(theory.c_star(jnp.tanh, sw2, SB2))
  assert chi[0] < 1 and c[0] == 1.0  # ordered: inputs become perfectly correlated
  assert chi[1] > 1 and 0 < c[1] < 0.5  # chaotic: they decorrelate
  # c* is a fixed point of the correlation map.
  assert float(theory.c_map(jnp.tanh, 4.0, SB2, float(c[1]), 3)[-1]) \
      == pytest.approx(float(c[1]), abs=1e-4)
  xq = np.asarray(theory.xi_q(jnp.tanh, sw2, SB2))
  assert np.all((xq > 0) & np.isfinite(xq))


# --------------------------------------------------------------------------- Monte Carlo


def _tanh_kappa(sw2, sb2):
  """d log L / d log q at q*: the per-layer factor on a relative error in q."""
  q = float(theory.q_star(jnp.tanh, sw2, sb2))
  slope = math.exp(-1.0 / float(theory.xi_q(jnp.tanh, sw2, sb2)))  # L'(q*)
  return slope * q / q  # L(q*) = q*


@pytest.mark.parametrize("sw2", [3.0])  # chaotic (chi1 > 1); criticality: the Flax test
def test_q_star_and_chi1_match_a_wide_random_net(sw2):
  """Real weight matrices, width 1024: mean z^2 deep in the net, and the per-layer growth
  of a tangent vector's squared norm (the backpropagated gradient factor chi1)."""
  width, burn_in, layers, nets, batch = 1024, 6, 16, 4, 4
  q_pred = float(theory.q_star(jnp.tanh, sw2, SB2))
  chi_pred = float(theory.chi1(jnp.tanh, sw2, SB2))

  def layer(carry, key):
    z, v = carry
    kw, kb = jax.random.split(key)
    w = jinit.variance_scaling(kw, (width, width), width, width, scale=sw2, mode="fan_in",
                               distribution="normal")
    b = jinit.normal(kb, (width,), std=math.sqrt(SB2))
    v_new = (v * (1.0 - jnp.tanh(z) ** 2)) @ w  # J v: tanh' then the linear map
    z = jnp.tanh(z) @ w + b[None, :]
    return (z, v_new), (jnp.mean(z * z), jnp.log(jnp.sum(v_new ** 2) / jnp.sum(v ** 2)))

  def one_net(key):
    kx, kv, kn = jax.random.split(key, 3)
    start = (jax.random.normal(kx, (batch, width)), jax.random.normal(kv, (batch, width)))
    _, (qs, logs) = jax.lax.scan(layer, start, jax.random.split(kn, burn_in + layers))
    return qs[burn_in:], logs[burn_in:]

  qs, logs = jax.jit(jax.vmap(one_net))(jax.random.split(jax.random.key(0), nets))
  kappa = _tanh_kappa(sw2, SB2)
  se_q = math.sqrt(2.0 / width) / ((1.0 - kappa) * math.sqrt(nets * layers))
  q_meas = float(jnp.mean(qs))
  assert abs(q_meas / q_pred - 1.0) <= N_SE * se_q, (q_meas, q_pred, N_SE * se_q)
  # log of a ratio of squared norms of batch*width Gaussians: sd sqrt(2 / (batch*width))
  # per layer, independent across layers given the forward pass (fresh weights); the
  # tangent sees the forward fluctuations of q only through E[phi'^2], which we bound by
  # the same AR(1) factor.
  se_log = math.sqrt(2.0 / (batch * width)) / math.sqrt(nets * layers) \
      + math.sqrt(2.0 / width) / ((1.0 - kappa) * math.sqrt(nets * layers))
  chi_meas = math.exp(float(jnp.mean(logs)))
  assert abs(math.log(chi_meas / chi_pred)) <= N_SE * se_log, (chi_meas, chi_pred)


def _pair_net(key, sw2, sb2, c0, q0, depth, width):
  """Two inputs through a random tanh net, weights integrated out exactly.

  Given the previous layer's activations h_a, h_b (width N), a fresh W ~ N(0, sw2/N)
  and b ~ N(0, sb2) make (z_a,i, z_b,i) iid over units, bivariate normal with covariance
  sw2 [h_a.h_a, h_a.h_b; h_a.h_b, h_b.h_b] / N + sb2. Sampling that covariance is an
  exact sample of a width-N random net (no N x N matrix needed), so N can be large.
  """
  cov0 = q0 * jnp.array([[1.0, c0], [c0, 1.0]])
  k0, kn = jax.random.split(key)
  z0 = jax.random.normal(k0, (width, 2)) @ jnp.linalg.cholesky(cov0).T

  def layer(z, k):
    h = jnp.tanh(z)
    cov = sw2 * (h.T @ h) / width + sb2
    z = jax.random.normal(k, (width, 2)) @ jnp.linalg.cholesky(cov).T
    return z, jnp.sum(z[:, 0] * z[:, 1]) / jnp.sqrt(jnp.sum(z[:, 0] ** 2) * jnp.sum(z[:, 1] ** 2))

  return jax.lax.scan(layer, z0, jax.random.split(kn, depth))[1]


def test_xi_c_and_c_map_match_a_wide_random_net():
  """Ordered phase: 1 - c^l decays as exp(-l / xi_c) (Schoenholz et al. eq. (9))."""
  sw2, width, depth, nets = 1.3, 50_000, 14, 4
  q = float(theory.q_star(jnp.tanh, sw2, SB2))
  xi = float(theory.xi_c(jnp.tanh, sw2, SB2))
  c0 = 0.2
  cs = jax.jit(jax.vmap(lambda k: _pair_net(k, sw2, SB2, c0, q, depth, width)))(
      jax.random.split(jax.random.key(1), nets))
  one_minus = np.asarray(1.0 - jnp.mean(cs, axis=0))
  pred = 1.0 - np.asarray(theory.c_map(jnp.tanh, sw2, SB2, c0, depth))
  # The sample correlation of N pairs has sd ~ (1 - c^2) / sqrt(N) ~ 2 (1 - c) / sqrt(N)
  # (plus the q fluctuation of sqrt(2/N), carried along like an AR(1) with factor 1):
  # relative sd of (1 - c) <= (2 + sqrt(2 * depth)) / sqrt(N * nets).
  tol = N_SE * (2.0 + math.sqrt(2.0 * depth)) / math.sqrt(width * nets)
  np.testing.assert_allclose(one_minus, pred, rtol=tol)
  # Decay rate over the late layers vs exp(-1/xi_c): the slope of log(1 - c) between
  # layers 6 and 14, each end with relative error <= tol.
  slope = (math.log(one_minus[-1]) - math.log(one_minus[5])) / (depth - 6)
  assert slope == pytest.approx(-1.0 / xi, abs=2 * tol / (depth - 6) + 0.02 / xi), (slope, xi)


def test_c_star_matches_a_wide_random_net_in_the_chaotic_phase():
  """Chaotic phase: c^l follows the correlation map down to c* < 1."""
  sw2, width, depth, nets = 4.0, 20_000, 30, 4
  q = float(theory.q_star(jnp.tanh, sw2, SB2))
  cs = jax.jit(jax.vmap(lambda k: _pair_net(k, sw2, SB2, 0.3, q, depth, width)))(
      jax.random.split(jax.random.key(2), nets))
  c_meas = np.asarray(jnp.mean(cs, axis=0))
  c_pred = np.asarray(theory.c_map(jnp.tanh, sw2, SB2, 0.3, depth))
  # sd of a sample correlation of N pairs ~ (1 - c^2) / sqrt(N) <= 1 / sqrt(N); q's own
  # fluctuation moves c by less (c is a ratio). Mean over nets.
  tol = N_SE / math.sqrt(width * nets)
  np.testing.assert_allclose(c_meas, c_pred, atol=tol)
  c_star = float(theory.c_star(jnp.tanh, sw2, SB2))
  # The map approaches c* as exp(-l / xi_c) (xi_c ~ 7 here): 30 layers from 0.3 leave
  # (0.3 - c*) exp(-30 / xi_c) ~ 2e-3.
  gap = (0.3 - c_star) * math.exp(-depth / float(theory.xi_c(jnp.tanh, sw2, SB2)))
  assert abs(c_pred[-1] - c_star) < 1.5 * gap
  assert abs(float(np.mean(c_meas[-5:])) - c_star) < tol + 3 * gap


def test_compare_variances_in_a_wide_random_net():
  width, depth, nets = 1024, 4, 4
  x = jax.random.normal(jax.random.key(3), (16, 64))
  kappa = _tanh_kappa(1.76, SB2)
  measured = np.mean([theory.wide_net_variances(k, jnp.tanh, 1.76, SB2, x, depth, width=width)
                      for k in jax.random.split(jax.random.key(4), nets)], axis=0)
  cmp = theory.compare_variances(jnp.tanh, 1.76, SB2, x, measured)
  # One layer per net: se = sqrt(2/N) / (1 - kappa) / sqrt(nets) (the AR(1) bound).
  tol = N_SE * math.sqrt(2.0 / width) / ((1.0 - kappa) * math.sqrt(nets))
  assert np.all(np.abs(cmp.rel_error) <= tol), cmp.format()
  assert "| layer | predicted q" in str(cmp) and len(str(cmp).splitlines()) == depth + 2
  sim = theory.compare_variances(jnp.tanh, 1.76, SB2, x, depth=3, key=jax.random.key(5),
                                 width=256)
  assert sim.width == 256 and sim.measured.shape == (3,)
  assert "sqrt(2/width) = 8.8%" in str(sim) and len(str(sim).splitlines()) == 3 + 4


# --------------------------------------------------------------------------- jit / vmap


@pytest.mark.slow  # ~11 s on 2 cores
def test_jit_and_vmap_over_sigma_grids_equal_scalar_calls():
  # Traced calls run in float32, concrete ones in float64: they agree to float32's accuracy
  # (1e-5 relative; the points stay away from criticality, where xi_c amplifies rounding).
  sw2 = jnp.array([1.2, 2.5, 4.0])
  sb2 = jnp.array([0.01, 0.05])
  for fn in (theory.q_star, theory.chi1, theory.c_star, theory.xi_q, theory.xi_c):
    grid = jax.jit(jax.vmap(jax.vmap(lambda a, b, fn=fn: fn(jnp.tanh, a, b), (0, None)),
                            (None, 0)))(sw2, sb2)
    broadcast = fn(jnp.tanh, sw2[None, :], sb2[:, None])
    assert grid.shape == broadcast.shape == (2, 3)
    for i, b in enumerate(np.asarray(sb2)):
      for j, a in enumerate(np.asarray(sw2)):
        scalar = float(fn(jnp.tanh, float(a), float(b)))
        np.testing.assert_allclose(broadcast[i, j], scalar, rtol=1e-6)
        np.testing.assert_allclose(grid[i, j], scalar, rtol=1e-4,
                                   err_msg=f"{fn.__name__}({a}, {b})")
  crit = jax.jit(jax.vmap(lambda b: theory.critical_sigma_w2(jnp.tanh, b)))(sb2)
  np.testing.assert_allclose(crit, [float(theory.critical_sigma_w2(jnp.tanh, float(b)))
                                    for b in np.asarray(sb2)], rtol=1e-5)


def test_q_map_shapes_and_batch():
  qs = theory.q_map(jnp.tanh, 1.76, SB2, jnp.array([0.5, 2.0]), 30)
  assert qs.shape == (2, 30) and qs.dtype == jnp.float32
  np.testing.assert_allclose(qs[:, -1], float(theory.q_star(jnp.tanh, 1.76, SB2)), rtol=1e-4)
  np.testing.assert_allclose(qs[1], theory.q_map(jnp.tanh, 1.76, SB2, 2.0, 30), rtol=1e-6)


# --------------------------------------------------------------------------- Flax


class _MLP(nn.Module):
  width: int
  depth: int
  kernel_init: object
  bias_init: object

  @nn.compact
  def __call__(self, x):
    preacts = []
    h = x
    for _ in range(self.depth):
      z = nn.Dense(self.width, kernel_init=self.kernel_init, bias_init=self.bias_init)(h)
      preacts.append(jnp.mean(z * z))
      h = jnp.tanh(z)
    return jnp.stack(preacts)


def test_edge_of_chaos_orthogonal_kernel():
  kernel, bias = theory.edge_of_chaos(jnp.tanh, SB2, distribution="orthogonal")
  w = np.asarray(kernel(jax.random.key(0), (64, 32), 64, 32), np.float64)
  np.testing.assert_allclose(w.T @ w, kernel.sigma_w2 * np.eye(32), atol=1e-4)
  assert kernel.sigma_w2 == pytest.approx(1.76, rel=0.01)
  assert np.all(np.asarray(bias(jax.random.key(1), (8,))) != 0)
  _, zero_bias = theory.edge_of_chaos(jax.nn.relu, 0.0)
  assert not np.any(np.asarray(zero_bias(jax.random.key(1), (8,))))


def test_edge_of_chaos_in_a_flax_mlp():
  import jinit.linen
  kernel, bias = theory.edge_of_chaos(jnp.tanh, SB2)
  assert kernel.sigma_w2 == pytest.approx(1.76, rel=0.01) and bias.sigma_b2 == SB2
  width, depth, nets = 1024, 6, 4
  model = _MLP(width, depth, jinit.linen.kernel_init(kernel), jinit.linen.bias_init(bias))
  x = jax.random.normal(jax.random.key(6), (16, width))  # fan_in = width: orthogonal is square
  # The nets are drawn and run in one compiled program (vmap over their keys), not op by op.
  run = jax.jit(jax.vmap(lambda k: model.apply(model.init(k, x), x)))
  measured = jnp.mean(run(jax.random.split(jax.random.key(7), nets)), axis=0)
  pred = theory.predicted_variances(jnp.tanh, kernel.sigma_w2, SB2, x, depth)
  kappa = _tanh_kappa(kernel.sigma_w2, SB2)
  tol = N_SE * math.sqrt(2.0 / width) / ((1.0 - kappa) * math.sqrt(nets))
  np.testing.assert_allclose(measured, pred, rtol=tol)
  # And the variance settles at q* at criticality.
  assert float(pred[-1]) == pytest.approx(float(theory.q_star(jnp.tanh, kernel.sigma_w2, SB2)),
                                          rel=0.05)


# --------------------------------------------------------------------------- bad input

BAD = [  # (id, call, error type, message fragment)
    ("sigma_w2-zero", lambda: theory.q_star(jnp.tanh, 0.0, 0.05), ValueError,
     "sigma_w2 must be > 0"),
    ("sigma_w2-negative-in-array", lambda: theory.chi1(jnp.tanh, jnp.array([1.0, -1.0]), 0.0),
     ValueError, "sigma_w2 must be > 0"),
    ("sigma_b2-negative", lambda: theory.xi_c(jnp.tanh, 1.5, -0.1), ValueError,
     "sigma_b2 must be >= 0"),
    ("sigma_b2-negative-critical", lambda: theory.critical_sigma_w2(jnp.tanh, -1e-3), ValueError,
     "sigma_b2 must be >= 0"),
    ("sigma_w2-nan", lambda: theory.c_star(jnp.tanh, float("nan"), 0.0), ValueError,
     "sigma_w2 must be finite"),
    ("sigma_w2-string", lambda: theory.q_star(jnp.tanh, "1.5", 0.0), TypeError,
     "sigma_w2 must be a real number"),
    ("phi-not-callable", lambda: theory.q_star("tanh", 1.5, 0.0), TypeError,
     "phi must be an elementwise activation"),
    ("phi-infinite-moment", lambda: theory.q_star(lambda x: jnp.exp(x * x), 1.5, 0.0), ValueError,
     "phi has an infinite"),
    ("phi-heavy-tail", lambda: theory.chi1(lambda x: jnp.exp(x * x / 4), 1.5, 0.0), ValueError,
     "phi has an infinite"),
    ("phi-nan", lambda: theory.q_star(jnp.log, 1.5, 0.0), ValueError, "phi returns NaN"),
    ("phi-not-elementwise", lambda: theory.q_star(jnp.sum, 1.5, 0.0), ValueError,
     "phi must map an array elementwise"),
    ("depth-zero", lambda: theory.q_map(jnp.tanh, 1.5, 0.0, 1.0, 0), ValueError,
     "depth must be a positive int"),
    ("depth-negative-c_map", lambda: theory.c_map(jnp.tanh, 1.5, 0.0, 0.5, -3), ValueError,
     "depth must be a positive int"),
    ("depth-float", lambda: theory.q_map(jnp.tanh, 1.5, 0.0, 1.0, 2.5), TypeError,
     "depth must be a positive int"),
    ("no-critical-point", lambda: theory.critical_sigma_w2(jax.nn.relu, 0.05), ValueError,
     "has no critical point"),
    ("no-fixed-point", lambda: theory.chi1(jax.nn.relu, 2.5, 0.05), ValueError,
     "has no fixed point"),
    ("q0-zero", lambda: theory.q_map(jnp.tanh, 1.5, 0.0, 0.0, 3), ValueError,
     "q0 must be > 0"),
    ("kernel-c", lambda: theory.kernel_map(jnp.tanh, 1.5, 0.0, 1.0, 1.0, 1.5, 3), ValueError,
     "c must be a correlation in [-1, 1]"),
    ("nngp-layer", lambda: theory.nngp_kernel([theory.Dense(1.0), "tanh"], jnp.ones((2, 3))),
     TypeError, "layers[1] must be a jinit.theory.Dense"),
    ("nngp-zero-row", lambda: theory.nngp_kernel([theory.Dense(1.0)], jnp.zeros((2, 3))),
     ValueError, "x1 has a zero row"),
    ("dense-sigma", lambda: theory.Dense(-1.0), ValueError, "sigma_w2"),
    ("activation-kind", lambda: theory.Activation(jnp.tanh, kind="tanh"), ValueError,
     "Activation.kind must be one of"),
    ("no-critical-point-range", lambda: theory.critical_sigma_w2(jnp.tanh, 0.05,
                                                                search=(2.0, 4.0)),
     ValueError, "no critical point (chi1 = 1) for sigma_w2 in [2, 4]"),
    ("search-reversed", lambda: theory.critical_sigma_w2(jnp.tanh, 0.05, search=(4.0, 2.0)),
     ValueError, "search must have low < high"),
    ("c0-out-of-range", lambda: theory.c_map(jnp.tanh, 1.5, 0.0, 1.5, 3), ValueError,
     "c0 must be a correlation in [-1, 1]"),
    ("edge-distribution", lambda: theory.edge_of_chaos(jnp.tanh, 0.05, distribution="uniform"),
     ValueError, "distribution must be one of 'normal', 'orthogonal'"),
    ("compare-neither", lambda: theory.compare_variances(jnp.tanh, 1.5, 0.0, jnp.ones((2, 3))),
     ValueError, "give measured variances, or depth and key"),
]


@pytest.mark.parametrize("call,error,fragment", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input(call, error, fragment):
  with pytest.raises(error) as info:
    call()
  assert fragment in str(info.value), str(info.value)


def test_sigmoid_is_ordered_everywhere_in_a_given_search_range_message():
  # sigmoid (phi' <= 1/4, E[phi] != 0 so q* grows with sigma_w2) stays ordered up to 10 (its
  # critical point is near 100, found without search=): the error reports chi1 at both ends.
  with pytest.raises(ValueError, match=r"chi1 = [0-9.]+ at sigma_w2=0.01 and [0-9.]+ at "
                                       r"sigma_w2=10; widen search="):
    theory.critical_sigma_w2(jax.nn.sigmoid, 0.05, search=(0.01, 10.0))
