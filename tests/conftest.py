"""Shared set-up for the jinit tests: strict rank and dtype promotion, one statistical check.

Every test runs with ``jax_numpy_rank_promotion="raise"`` (as jax's own test harness
and careful users do), so an implicit rank broadcast anywhere in jinit, or in the
tests, fails loudly; and with ``jax_numpy_dtype_promotion="strict"`` (as equinox's
test suite does), so an implicit dtype promotion (float32 x complex64, float32 x
float64 arrays) fails loudly too. The core tests also run once under ``JAX_ENABLE_X64=1`` (see
``.ci/run``).
"""

import math
import os

import jax
import numpy as np
import pytest
import scipy.stats

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Tolerances (see check_law): with fixed keys every check is deterministic; these
# margins make a correct implementation pass with overwhelming probability for any
# key while a wrong constant fails.
N_SE = 6.0  # P(|N(0,1)| > 6) ~= 2e-9 per check.
KS_P_MIN = 1e-3
TAIL_HITS = 30.0  # P(no sample in a tail of mass 30/n) = (1 - 30/n)^n ~= e^-30.


def check_law(samples, dist, *, what: str = "samples") -> None:
  """Asserts that iid ``samples`` follow the frozen scipy distribution ``dist``.

  For n samples with mean mu, variance s2 and 4th central moment mu4 = (kurt + 3) s2^2:

  * mean: the standard error of the sample mean is sqrt(s2 / n); allow N_SE of them.
  * variance: the standard error of the sample variance is sqrt((mu4 - s2^2) / n)
    (normal: s2 sqrt(2/n), 0.41% of s2 at n = 117600, so 6 SE = 2.5% of the
    variance, 1.2% of the std: a 5% gain error, a fan_in/fan_avg mix-up or a missing
    truncation correction (std x 0.88) all fail); allow N_SE of them.
  * support: every sample inside the law's support (bounds computed in float64,
    samples rounded to float32: 1e-6 relative slack).
  * range covered: the max lies in the top tail of mass TAIL_HITS/n and the min in
    the bottom one; a correct sampler misses one with probability ~e^-30. This
    catches a too-small bound or clipping.
  * Kolmogorov-Smirnov p-value > KS_P_MIN. Under the right law the p-value is
    uniform on [0, 1], so a correct implementation fails for a given key with
    probability 1e-3; the keys are fixed, so a pass is a permanent pass. With
    n ~ 1e5 the KS test rejects a scale error of ~2% (D ~ 0.24 * rel. error vs
    the 1.95 / sqrt(n) critical value), and any wrong family (normal vs uniform).
  """
  x = np.asarray(samples, dtype=np.float64).ravel()
  n = x.size
  assert n >= 1000, f"{what}: too few samples ({n}) for a statistical check"
  assert np.all(np.isfinite(x)), f"{what}: non-finite samples"
  mu, s2, _, kurt = (float(v) for v in dist.stats(moments="mvsk"))
  mu4 = (kurt + 3.0) * s2 * s2
  se_mean = math.sqrt(s2 / n)
  se_var = math.sqrt((mu4 - s2 * s2) / n)
  mean, var = x.mean(), x.var()
  assert abs(mean - mu) <= N_SE * se_mean, (
      f"{what}: mean {mean:.6g} vs {mu:.6g} (tolerance {N_SE * se_mean:.3g})")
  assert abs(var - s2) <= N_SE * se_var, (
      f"{what}: variance {var:.6g} vs {s2:.6g} (tolerance {N_SE * se_var:.3g}); "
      f"std {math.sqrt(var):.6g} vs {math.sqrt(s2):.6g}")
  lo, hi = (float(v) for v in dist.support())
  if np.isfinite(lo):
    assert x.min() >= lo - 1e-6 * abs(lo), f"{what}: min {x.min()} below the support {lo}"
  if np.isfinite(hi):
    assert x.max() <= hi + 1e-6 * abs(hi), f"{what}: max {x.max()} above the support {hi}"
  assert dist.sf(x.max()) <= TAIL_HITS / n, f"{what}: max {x.max()} never reaches the top tail"
  assert dist.cdf(x.min()) <= TAIL_HITS / n, f"{what}: min {x.min()} never reaches the bottom tail"
  p = scipy.stats.kstest(x, dist.cdf).pvalue
  assert p > KS_P_MIN, f"{what}: KS p-value {p:.3g} <= {KS_P_MIN}"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
  """``-n auto`` (pyproject's addopts): one worker a core this process may use, at most 4.

  Each worker imports JAX and compiles its own programs (several hundred MB each); past
  4 workers the suite is bound by its longest test files, not by the cores.
  """
  del config
  return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else (os.cpu_count() or 1)))


@pytest.fixture(name="check_law")
def check_law_fixture():
  return check_law


@pytest.fixture(name="optax_adam_promotion")
def optax_adam_promotion_fixture():
  """Standard dtype promotion for a test that runs ``optax.adam``.

  optax 0.2.8's Adam bias correction computes ``decay ** count`` with a Python float
  and an int32 step count, which jax's strict dtype promotion refuses (optax's code,
  not jinit's: ``optax/tree_utils/_tree_math.py::tree_bias_correction``). Only tests
  that step Adam use this; jinit's own transform (``mup.scale_updates``) is checked
  under strict promotion with SGD in test_reliability.py.
  """
  with jax.numpy_dtype_promotion("standard"):
    yield
