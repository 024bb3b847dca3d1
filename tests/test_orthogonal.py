"""jinit.orthogonal by Householder reflections (issue 20): orthogonal to float32 precision, Haar.

The sampler draws Stewart's Householder reflectors from the lower triangle of a
Gaussian matrix and multiplies them out in panels (matmuls only). Checked here:

* |Q^T Q - I| <= 1e-5 in float32, for shapes that span several panels, tall and wide;
* the blocked product equals LAPACK's Householder product of the same reflectors;
* the law is Haar, next to ``jax.random.orthogonal`` (QR of a Gaussian, sign-fixed):
  the entry law, the trace moments (Diaconis & Shahshahani 1994), P(det = +1) = 1/2,
  and two-sample KS tests of tr Q and tr Q^2 against jax's samples; the same checks
  reject the sampler without its sign fix (so they have power).

Fixed keys; tolerances from the sample size (see conftest.check_law).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from conftest import KS_P_MIN
from conftest import N_SE
from conftest import check_law

import jinit
from jinit._src import initializers as init_lib

N = 8  # matrix size of the law tests
M = 4000  # matrices per law test: one compile, ~0.3 s


@pytest.mark.parametrize("shape", [(300, 300), (517, 200), (130, 700), (257, 129), (3, 3, 40, 64)],
                         ids=["square-3-panels", "tall", "wide", "odd-panels", "conv"])
def test_orthonormal_to_float32_precision(shape):
  w = np.asarray(jinit.orthogonal(jax.random.key(3), shape), np.float64)
  m = w.reshape(-1, shape[-1])
  gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
  assert np.abs(gram - np.eye(gram.shape[0])).max() <= 1e-5


def test_blocked_product_equals_lapack_householder_product():
  """The UT-transform panels give LAPACK orgqr's Q for the same reflectors (to rounding)."""
  a = jax.random.normal(jax.random.key(5), (300, 260))  # 3 panels of 128 columns
  v, tau, d = init_lib._householder_reflectors(a)
  ours = np.asarray(init_lib._householder_q(v, tau, d))
  lapack = np.asarray(jax.lax.linalg.householder_product(v, tau) * d[None, :])
  np.testing.assert_allclose(ours, lapack, atol=1e-5)


def _ours(keys, sign_fix=True):
  def one(k):
    v, tau, d = init_lib._householder_reflectors(jax.random.normal(k, (N, N)))
    return init_lib._householder_q(v, tau, d if sign_fix else jnp.ones_like(d))
  return np.asarray(jax.vmap(one)(keys), np.float64)


@pytest.fixture(scope="module")
def samples():
  ours = np.asarray(jax.vmap(lambda k: jinit.orthogonal(k, (N, N)))(
      jax.random.split(jax.random.key(11), M)), np.float64)
  jax_haar = np.asarray(jax.vmap(lambda k: jax.random.orthogonal(k, N))(
      jax.random.split(jax.random.key(12), M)), np.float64)
  no_fix = _ours(jax.random.split(jax.random.key(11), M), sign_fix=False)
  return {"ours": ours, "jax": jax_haar, "no_fix": no_fix}


def _haar_checks(q, ref):
  """Assertions that hold for M iid Haar (N, N) matrices q; ref: jax's Haar samples."""
  # An entry of a Haar matrix is a coordinate of a uniform point on S^{N-1}:
  # (q_ij + 1) / 2 ~ Beta((N-1)/2, (N-1)/2).
  entry = scipy.stats.beta((N - 1) / 2, (N - 1) / 2, loc=-1, scale=2)
  for i, j in [(0, 0), (2, 5), (N - 1, N - 1)]:
    check_law(q[:, i, j], entry, what=f"q[{i},{j}]")
  # tr Q has the moments of N(0, 1) up to order N (Diaconis-Shahshahani): mean 0, var 1,
  # 4th moment 3, so the SE of the mean is sqrt(1/M) and of the mean square sqrt(2/M).
  tr = np.trace(q, axis1=1, axis2=2)
  assert abs(tr.mean()) <= N_SE * math.sqrt(1 / M), f"E tr Q = {tr.mean():.4f}"
  msq = (tr**2).mean()
  assert abs(msq - 1) <= N_SE * math.sqrt(2 / M), f"E (tr Q)^2 = {msq:.4f}"
  # det = +-1, each with probability 1/2 (Haar on O(N), not SO(N)): binomial SE sqrt(1/(4M)).
  plus = (np.linalg.det(q) > 0).mean()
  assert abs(plus - 0.5) <= N_SE * math.sqrt(0.25 / M), f"P(det = +1) = {plus:.4f}"
  # Two-sample KS against jax.random.orthogonal: tr Q and tr Q^2 (the latter sees the
  # eigenvalue angles: tr Q^2 = sum cos 2 theta_k).
  for name, stat in [("tr Q", lambda x: np.trace(x, axis1=1, axis2=2)),
                     ("tr Q^2", lambda x: np.trace(x @ x, axis1=1, axis2=2))]:
    p = scipy.stats.ks_2samp(stat(q), stat(ref)).pvalue
    assert p > KS_P_MIN, f"{name}: two-sample KS p = {p:.3g} vs jax.random.orthogonal"


def test_law_is_haar_next_to_jax_random_orthogonal(samples):
  _haar_checks(samples["ours"], samples["jax"])


def test_jax_random_orthogonal_passes_the_same_checks(samples):
  """The checks are calibrated: jax's own Haar sampler passes them (against ours)."""
  _haar_checks(samples["jax"], samples["ours"])


def test_checks_reject_the_sampler_without_sign_fix(samples):
  """Without diag(sign beta) the product of reflections is not Haar: the checks fail."""
  with pytest.raises(AssertionError):
    _haar_checks(samples["no_fix"], samples["jax"])


def test_same_key_same_bits_eager_and_jit():
  key = jax.random.key(4)
  a = jinit.orthogonal(key, (200, 150))
  b = jax.jit(lambda k: jinit.orthogonal(k, (200, 150)))(key)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_out_sharding_must_be_a_named_sharding():
  for bad in ("model", jax.sharding.PartitionSpec(None, "model")):
    with pytest.raises(TypeError, match="out_sharding must be None or a jax.sharding.Named"):
      jinit.orthogonal(jax.random.key(0), (8, 4), out_sharding=bad)


def test_one_device_out_sharding_computes_unsharded():
  """A one-device sharding takes the unsharded path: the same bits."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("model",))
  s = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "model"))
  key = jax.random.key(2)
  np.testing.assert_array_equal(np.asarray(jinit.orthogonal(key, (40, 24), out_sharding=s)),
                                np.asarray(jinit.orthogonal(key, (40, 24))))
