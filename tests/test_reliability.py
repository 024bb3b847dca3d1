"""No silent inf/NaN/zeros/downcast, and every check before jit's cache.

One test (or table row) per finding; each reproduces the call from the issue that
used to return a wrong result, and asserts the new behaviour.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jinit
from jinit._src import initializers as inits_lib

KEY = jax.random.key(0)
F16_MAX = float(jnp.finfo(jnp.float16).max)  # 65504
F32_MAX = float(jnp.finfo(jnp.float32).max)
X64 = bool(jax.config.jax_enable_x64)


def _finite(x):
  return bool(np.all(np.isfinite(np.asarray(x, np.float64))))


# --------------------------------------------------------------------------- finding 1


@pytest.mark.parametrize("call,bound", [
    # bound = gain * sqrt(6 / (1 + 1)) = 34641 > 65504 / 2: sampling U(-b, b) as
    # u * 2b - b overflowed (4,092 inf and 4 NaN before).
    (lambda: jinit.xavier_uniform(KEY, (64, 64), 1, 1, gain=2e4, dtype=jnp.float16),
     2e4 * math.sqrt(3.0)),
    # bound 1.73e38 > float32 max / 2: all inf before.
    (lambda: jinit.xavier_uniform(KEY, (2, 4), 1, 1, gain=1e38), 1e38 * math.sqrt(3.0)),
    (lambda: jinit.uniform(KEY, (64, 64), a=32768.0, dtype=jnp.float16), 32768.0),
    (lambda: jinit.uniform(KEY, (64, 64), a=F16_MAX, dtype=jnp.float16), F16_MAX),
    (lambda: jinit.uniform(KEY, (64, 64), a=float(jnp.finfo(jnp.bfloat16).max),
                           dtype=jnp.bfloat16), float(jnp.finfo(jnp.bfloat16).max)),
    (lambda: jinit.variance_scaling(KEY, (64, 64), 1, 1, scale=1e9, distribution="uniform",
                                    dtype=jnp.float16), math.sqrt(3e9)),
], ids=["xavier-f16-gain2e4", "xavier-f32-gain1e38", "uniform-f16-32768", "uniform-f16-max",
        "uniform-bf16-max", "vs-uniform-f16"])
def test_uniform_family_near_dtype_max_is_finite(call, bound):
  w = np.asarray(call(), np.float64)
  assert _finite(w)
  assert np.abs(w).max() <= bound * (1 + 1e-6)
  # Still spread over the range: P(max |w| < b/2) = 2^-n for n >= 8 samples.
  assert np.abs(w).max() > bound / 2


@pytest.mark.parametrize("call", [
    lambda: jinit.uniform(KEY, (4,), a=65520.0, dtype=jnp.float16),
    lambda: jinit.xavier_uniform(KEY, (4,), 1, 1, gain=4e4, dtype=jnp.float16),  # b = 69282
    lambda: jinit.variance_scaling(KEY, (4,), 1, 1, scale=1.5e9, distribution="uniform",
                                   dtype=jnp.float16),  # b = 67082
], ids=["uniform", "xavier", "variance_scaling"])
def test_uniform_bound_above_dtype_max_raises(call):
  with pytest.raises(ValueError, match="overflows dtype float16"):
    call()


# --------------------------------------------------------------------------- finding 2


def test_normal_z_max_is_the_samplers_extreme():
  """z_max = sqrt(2) erfinv(nextafter(-1, 0)): the normal quantile of 2^-25 in float32.

  jax draws u in [nextafter(-1, 0), 1), so Phi(-z_max) = (1 + u_min) / 2 = 2^-25;
  scipy's quantile is an independent computation (float32 erfinv: 1e-4 relative).
  """
  z32 = inits_lib._normal_z_max("float32")
  assert z32 == pytest.approx(-scipy.stats.norm.ppf(2.0**-25), rel=1e-4)  # 5.42
  # 1e6 float32 normals never exceed it.
  z = np.asarray(jax.random.normal(jax.random.key(3), (1_000_000,), jnp.float32))
  assert np.abs(z).max() <= z32


@pytest.mark.parametrize("call", [
    lambda: jinit.normal(KEY, (64, 64), std=3e4, dtype=jnp.float16),  # 115 inf before
    lambda: jinit.normal(KEY, (64, 64), std=1.05e4, mean=1e4, dtype=jnp.float16),  # 5.42 std < max
    lambda: jinit.xavier_normal(KEY, (64, 64), 1, 1, gain=2e4, dtype=jnp.float16),
    lambda: jinit.variance_scaling(KEY, (64, 64), 1, 1, scale=3e8, distribution="normal",
                                   dtype=jnp.float16),  # std 17321, 5.42 std > max
    lambda: jinit.truncated_normal(KEY, (64, 64), std=3.3e4, dtype=jnp.float16),  # 2s > max
    lambda: jinit.variance_scaling(KEY, (64, 64), 1, 1, scale=9e8,
                                   dtype=jnp.float16),  # 2 s = 68212 > max
    lambda: jinit.sparse(KEY, (64, 64), std=3e4, dtype=jnp.float16),
    lambda: jinit.normal(KEY, (64, 64), std=1e38),  # float32: 5.42e38 > 3.4e38
], ids=["normal", "normal-mean", "xavier_normal", "vs-normal", "truncated_normal",
        "vs-truncated", "sparse", "normal-f32"])
def test_normal_tails_that_would_overflow_raise(call):
  with pytest.raises(ValueError, match="overflows dtype float"):
    call()


@pytest.mark.parametrize("call", [
    lambda: jinit.normal(KEY, (64, 64), std=F16_MAX / 5.5, dtype=jnp.float16),
    lambda: jinit.truncated_normal(KEY, (64, 64), std=F16_MAX / 2.01, dtype=jnp.float16),
    lambda: jinit.normal(KEY, (64, 64), std=F32_MAX / 5.5),
], ids=["normal-f16", "truncated-f16", "normal-f32"])
def test_normal_tails_just_inside_the_dtype_are_finite(call):
  assert _finite(call())


def test_scale_that_underflows_to_zero_raises():
  """The other end: a std that rounds to 0 would give an all-zero 'random' weight."""
  with pytest.raises(ValueError, match="underflows to 0 in dtype float16"):
    jinit.normal(KEY, (8,), std=1e-9, dtype=jnp.float16)
  with pytest.raises(ValueError, match=re.escape("sqrt(scale / n)=")):
    jinit.he_normal(KEY, (8,), 2**62, 1, dtype=jnp.float16)  # std 3e-10


# --------------------------------------------------------------------------- finding 3


def test_sparse_that_would_zero_every_row_raises():
  with pytest.raises(ValueError, match=re.escape(
      "sparsity=0.99 zeroes ceil(0.99 * 3) = 3 of the 3 rows of every column")):
    jinit.sparse(KEY, (3, 5), sparsity=0.99)
  # The largest allowed sparsity leaves exactly one nonzero row per column.
  w = np.asarray(jinit.sparse(KEY, (3, 5), sparsity=2 / 3))
  np.testing.assert_array_equal((w != 0).sum(axis=0), np.ones(5))


# --------------------------------------------------------------------------- finding 4


@pytest.mark.parametrize("fn", [lambda x: 1 / x, lambda x: 1 / jnp.sqrt(jnp.abs(x))],
                         ids=["1/x", "1/sqrt|x|"])
def test_gain_for_infinite_second_moment_raises(fn):
  """E[1/z^2] and E[1/|z|] are infinite; 200-node quadrature returned 0.244 for 1/x."""
  with pytest.raises(ValueError, match="did not converge"):
    jinit.gain_for(fn)


def test_gain_for_kinked_activation_still_converges():
  """hard_tanh (kinks at +-1): the two quadrature orders differ by 1.2%, below 5%.

  Exact: E[hard_tanh(z)^2] = P(|z| > 1) + E[z^2; |z| < 1] = 2 Phi(-1) + (1 - 2 Phi(-1)
  - 2 phi(1)); the 200-node gain is within 1% of 1/sqrt of it.
  """
  exact = 2 * scipy.stats.norm.cdf(-1) + 1 - 2 * scipy.stats.norm.cdf(-1) \
      - 2 * scipy.stats.norm.pdf(1)
  assert jinit.gain_for(jax.nn.hard_tanh) == pytest.approx(1 / math.sqrt(exact), rel=1e-2)


# --------------------------------------------------------------------------- finding 5


@pytest.mark.parametrize("dtype", ["float64", jnp.float64, np.float64, jnp.complex128])
def test_64_bit_dtype_with_x64_off_raises(dtype):
  name = jnp.dtype(dtype).name
  with jax.enable_x64(False):
    fn = jinit.normal if name == "complex128" else jinit.xavier_uniform
    with pytest.raises(ValueError, match=re.escape(
        f"dtype={name}: 64-bit types need JAX's x64 mode")) as info:
      fn(KEY, (2, 4), 2, 4, dtype=dtype)
    assert "jax.config.update('jax_enable_x64', True)" in str(info.value)
    assert "JAX_ENABLE_X64=1" in str(info.value)


def test_64_bit_dtype_with_x64_on_is_exact():
  with jax.enable_x64(True):
    assert jinit.xavier_uniform(KEY, (2, 4), 2, 4, dtype="float64").dtype == jnp.float64
    assert jinit.normal(KEY, (2, 4), dtype=jnp.complex128).dtype == jnp.complex128


def test_dtype_none_is_jaxs_default_float():
  assert jinit.normal(KEY, (3,), dtype=None).dtype == (jnp.float64 if X64 else jnp.float32)


# --------------------------------------------------------------------------- finding 6


CACHE_CASES = [  # (id, a call that compiles, a call hash-equal to it that must still raise)
    ("float-dim", lambda: jinit.xavier_normal(KEY, (3, 5), 3, 5),
     lambda: jinit.xavier_normal(KEY, (3.0, 5), 3, 5), TypeError, "shape must contain ints"),
    ("bool-dim", lambda: jinit.normal(KEY, (1, 5)),
     lambda: jinit.normal(KEY, (True, 5)), TypeError, "shape must contain ints"),
    ("bool-fan", lambda: jinit.he_normal(KEY, (1, 5), 1, 5),
     lambda: jinit.he_normal(KEY, (1, 5), True, 5), TypeError, "fan_in must be a positive int"),
    ("bool-gain", lambda: jinit.orthogonal(KEY, (4, 4), gain=1),
     lambda: jinit.orthogonal(KEY, (4, 4), gain=True), TypeError,
     "gain must be a real number, got True"),
    ("int-corrected", lambda: jinit.truncated_normal(KEY, (4,), corrected=True),
     lambda: jinit.truncated_normal(KEY, (4,), corrected=1), TypeError,
     "corrected must be a bool"),
    ("bool-groups", lambda: jinit.dirac(KEY, (3, 4, 4), groups=1),
     lambda: jinit.dirac(KEY, (3, 4, 4), groups=True), ValueError,
     "groups must be a positive int"),
]


@pytest.mark.parametrize("good,bad,error,message", [pytest.param(*c[1:], id=c[0])
                                                    for c in CACHE_CASES])
def test_validation_does_not_depend_on_jit_cache(good, bad, error, message):
  good()  # compiles and caches the program for the hash-equal arguments
  with pytest.raises(error, match=re.escape(message)):
    bad()


# --------------------------------------------------------------------------- finding 7


@pytest.mark.parametrize("key", [0, None, 1.5, "key", np.zeros(2, np.float32),
                                 jax.random.split(KEY, 2)],
                         ids=["int", "None", "float", "str", "float-array", "key-batch"])
def test_bad_key_names_the_argument(key):
  with pytest.raises(TypeError, match=r"^key must be a (PRNG key|single key)"):
    jinit.xavier_uniform(key, (2, 3), 2, 3)


def test_legacy_and_typed_keys_are_accepted():
  a = jinit.normal(jax.random.PRNGKey(0), (3,))
  b = jinit.normal(jax.random.key(0), (3,))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("fan,error,message", [
    (10**400, ValueError, "fan_in must be at most 2**63 - 1 (no array has more elements), got "
     "an int of 401 digits"),
    (2**63, ValueError, "fan_in must be at most 2**63 - 1"),
    (1e400, TypeError, "fan_in must be a positive int, got inf"),
])
def test_huge_fan_names_the_argument(fan, error, message):
  with pytest.raises(error, match=re.escape(message)):
    jinit.xavier_uniform(KEY, (2, 3), fan, 3)
  with pytest.raises(error, match=re.escape(message)):
    jinit.get_initializer("kaiming_normal", nonlinearity="relu")(KEY, (2, 3), fan, 3)


# --------------------------------------------------------------------------- vmap still works


def test_traced_hyperparameter_still_supported():
  """Validation before jit must not break sweeping a hyperparameter under vmap."""
  f = functools.partial(jinit.normal, KEY, (4, 4))
  out = jax.vmap(lambda s: f(std=s))(jnp.array([1.0, 2.0]))
  np.testing.assert_allclose(np.asarray(out[1]), 2 * np.asarray(out[0]), rtol=1e-6)
