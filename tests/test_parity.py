"""Peer parity: what jax's and PyTorch's own initializer tests check, for jinit.

Written from reading jax's ``tests/nn_test.py`` (``NNInitializersTest``) and
PyTorch's ``test/nn/test_init.py``: the same properties, in jinit's call shape
(explicit fans from :func:`jinit.compute_fans`). The issue's items:

1. strict rank promotion: ``test_strict_rank_promotion`` (and conftest.py runs every
   test under it);
2. ``fan_geo_avg``: ``test_fan_geo_avg_*``;
3. complex dtypes: ``test_jax_initializer_records`` (complex rows),
   ``test_complex_variance_scaling_*``, ``test_complex_orthogonal_is_unitary``;
4. zero-size shapes: ``test_zero_size_shapes``, ``test_jax_zero_size_orthogonal``;
5. low precision: ``test_low_precision_unique_values``, ``test_low_precision_ks``;
6. deviations: ``test_documented_deviations`` and docs/parity.md.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jinit
from jinit._src import initializers as inits_lib

KEY = jax.random.key(0)
X64 = bool(jax.config.jax_enable_x64)
FLOATING = [jnp.bfloat16, jnp.float16, jnp.float32] + ([jnp.float64] if X64 else [])
COMPLEX = [jnp.complex64] + ([jnp.complex128] if X64 else [])
INEXACT = FLOATING + COMPLEX

# --------------------------------------------------------------------------- jax's records

JAX_SHAPES = [(2,), (2, 2), (2, 3), (3, 2), (2, 3, 4), (4, 3, 2), (2, 3, 4, 5)]


def _fans(shape):
  return jinit.compute_fans(shape, "flax") if len(shape) >= 2 else (None, None)


# (name, jinit function, dtypes, min rank, max rank): jax's INITIALIZER_RECS, same
# dtype sets (jax's "inexact" = floating + complex).
JAX_RECORDS = [
    ("uniform", jinit.uniform, FLOATING, 1, 4),
    ("normal", jinit.normal, INEXACT, 1, 4),
    ("he_normal", jinit.he_normal, INEXACT, 2, 4),
    ("he_uniform", jinit.he_uniform, INEXACT, 2, 4),
    ("glorot_normal", jinit.glorot_normal, INEXACT, 2, 4),
    ("glorot_uniform", jinit.glorot_uniform, INEXACT, 2, 4),
    ("lecun_normal", jinit.lecun_normal, INEXACT, 2, 4),
    ("lecun_uniform", jinit.lecun_uniform, INEXACT, 2, 4),
    ("orthogonal", jinit.orthogonal, FLOATING, 2, 2),
    ("truncated_normal", jinit.truncated_normal, FLOATING, 1, 4),
    ("delta_orthogonal", jinit.delta_orthogonal, FLOATING, 4, 4),
    ("variance_scaling_fan_geo_avg",
     functools.partial(jinit.variance_scaling, mode="fan_geo_avg", distribution="normal"),
     FLOATING, 2, 4),
]


@pytest.mark.parametrize("name,fn,dtypes,lo,hi", JAX_RECORDS, ids=[r[0] for r in JAX_RECORDS])
def test_jax_initializer_records(name, fn, dtypes, lo, hi):
  """Every (shape, dtype) of jax's table gives exactly that shape and dtype.

  That is what jax's testInitializer checks; here by ``jax.eval_shape`` (traced,
  validated, not compiled: 246 compiles would cost minutes). The values are then
  checked on one shape per record, every dtype, in one compiled program: finite
  and not constant. (Eager and jitted calls giving the same bits is tested in
  test_initializers.py.)
  """
  shapes = [s for s in JAX_SHAPES if lo <= len(s) <= hi]
  for shape in shapes:
    for dtype in dtypes:
      out = jax.eval_shape(lambda k, s=shape, d=dtype: fn(k, s, *_fans(s), dtype=d), KEY)
      assert out.shape == shape, (name, shape, dtype)
      assert out.dtype == jnp.dtype(dtype), (name, shape, dtype)
  shape = shapes[-1]
  outs = jax.jit(lambda k: [fn(k, shape, *_fans(shape), dtype=d) for d in dtypes])(KEY)
  for dtype, out in zip(dtypes, outs):
    assert out.shape == shape and out.dtype == jnp.dtype(dtype), (name, dtype)
    x = np.asarray(out.astype(jnp.complex128 if X64 else jnp.complex64))
    assert np.all(np.isfinite(x)), (name, dtype)
    assert np.unique(x).size > 1, (name, dtype)


@pytest.mark.parametrize("in_axis,out_axis,batch_axis", [
    ((0, 1), (-2, -1), ()),  # jax's testVarianceScalingMultiAxis
    (0, (2, 3), 1),  # jax's testVarianceScalingBatchAxis
], ids=["multi-axis", "batch-axis"])
def test_jax_variance_scaling_axes(in_axis, out_axis, batch_axis):
  """Multi-axis and batch-axis fans: same fans as jax, hence the same samples."""
  shape = (2, 3, 4, 5)
  fans = jinit.compute_fans(shape, in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis)
  ours = jinit.variance_scaling(KEY, shape, *fans, mode="fan_avg")
  theirs = jax.nn.initializers.variance_scaling(
      1.0, "fan_avg", "truncated_normal", in_axis=in_axis, out_axis=out_axis,
      batch_axis=batch_axis)(KEY, shape, jnp.float32)
  assert ours.shape == shape
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(5,), ()])
def test_jax_variance_scaling_error_on_bad_axes(shape):
  """jax: "Can't compute input and output sizes of a 1-dimensional weights tensor"."""
  with pytest.raises(ValueError, match="layout='flax' needs a kernel of rank >= 2"):
    jinit.compute_fans(shape, "flax")
  with pytest.raises(ValueError, match="out of range"):
    jinit.compute_fans((5,), in_axis=-2, out_axis=-1)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0, 0), (2, 0, 3)])
def test_jax_zero_size_orthogonal(shape):
  ours = jinit.orthogonal(KEY, shape)
  theirs = jax.nn.initializers.orthogonal()(KEY, shape, jnp.float32)
  assert ours.shape == theirs.shape == shape
  assert ours.dtype == theirs.dtype


def test_jax_no_accidental_upcasting():
  """jax's testAccidentalUpcasting: a float32 array hyperparameter, a bfloat16 result."""
  scalar = jnp.array(1.0, dtype=jnp.float32)
  for fn, kw in [(jinit.uniform, "a"), (jinit.normal, "std"), (jinit.truncated_normal, "std")]:
    assert fn(KEY, (4, 4), dtype=jnp.bfloat16, **{kw: scalar}).dtype == jnp.bfloat16
    swept = jax.vmap(lambda s, fn=fn, kw=kw: fn(KEY, (4, 4), dtype=jnp.bfloat16, **{kw: s}))
    assert swept(jnp.ones(2, jnp.float32)).dtype == jnp.bfloat16


# --------------------------------------------------------------------------- item 1


def test_strict_rank_promotion():
  """Item 1: orthogonal and delta_orthogonal used an (n, n) x (n,) broadcast."""
  assert jax.config.jax_numpy_rank_promotion == "raise"  # set in conftest.py for all tests
  shapes = [((5, 3), -1), ((3, 5), -1), ((4, 2, 6), 0)]
  with jax.numpy_rank_promotion("raise"):
    outs = jax.jit(lambda k: [jinit.orthogonal(k, s, column_axis=c) for s, c in shapes] + [
        jinit.delta_orthogonal(k, (3, 3, 4, 6)),
        jinit.orthogonal(k, (4, 4), dtype=jnp.complex64)])(jax.random.key(11))
  assert [o.shape for o in outs] == [s for s, _ in shapes] + [(3, 3, 4, 6), (4, 4)]


def test_strict_dtype_promotion():
  """Issue 18: jinit's complex paths under jax's strict dtype promotion (as equinox tests).

  They multiplied complex64 samples by float32 scales (implicit promotion), so the
  complex rows of jax's records (test_jax_initializer_records) failed under strict.
  """
  assert jax.config.jax_numpy_dtype_promotion == "strict"  # set in conftest.py for all tests
  fns = [jinit.normal, jinit.he_normal, jinit.glorot_uniform, jinit.lecun_uniform,
         jinit.orthogonal,
         functools.partial(jinit.variance_scaling, distribution="truncated_normal")]
  with jax.numpy_dtype_promotion("strict"):
    outs = jax.jit(lambda k: [f(k, (4, 6), 4, 6, dtype=d) for f in fns for d in COMPLEX])(KEY)
  assert [o.dtype for o in outs] == [jnp.dtype(d) for _ in fns for d in COMPLEX]
  assert all(np.all(np.isfinite(np.asarray(o))) for o in outs)


# --------------------------------------------------------------------------- item 2


def test_fan_geo_avg_same_samples_as_jax():
  shape = (5, 16, 32)  # fans 80 and 160: n = sqrt(80 * 160)
  distributions = ["truncated_normal", "normal", "uniform"]
  ours = jax.jit(lambda k: [jinit.variance_scaling(
      k, shape, 80, 160, scale=1.7, mode="fan_geo_avg", distribution=d)
                            for d in distributions])(KEY)
  theirs = jax.jit(lambda k: [jax.nn.initializers.variance_scaling(
      1.7, "fan_geo_avg", d)(k, shape, jnp.float32) for d in distributions])(KEY)
  for o, t in zip(ours, theirs):
    np.testing.assert_allclose(np.asarray(o), np.asarray(t), rtol=1e-6, atol=1e-7)


def test_fan_geo_avg_law(check_law):
  fi, fo = 784, 50
  x = np.concatenate([np.asarray(jinit.variance_scaling(
      k, (784, 50), fi, fo, scale=2.0, mode="fan_geo_avg", distribution="normal")).ravel()
                      for k in jax.random.split(jax.random.key(5), 3)])
  check_law(x, scipy.stats.norm(0, math.sqrt(2.0 / math.sqrt(fi * fo))), what="fan_geo_avg")


# --------------------------------------------------------------------------- item 3

# jax's complex truncated normal divides by this (sqrt(1 - 5 e^-4)); the std of a
# unit complex normal with modulus <= 2 is complex_truncated_std(2) = 0.96196.
JAX_COMPLEX_TN = 0.95311164380491208


@pytest.mark.parametrize("distribution", ["normal", "uniform", "truncated_normal"])
def test_complex_variance_scaling_same_sampler_as_jax(distribution):
  shape = (16, 24)
  ours = jinit.variance_scaling(KEY, shape, 16, 24, scale=2.0, distribution=distribution,
                                dtype=jnp.complex64)
  theirs = jax.nn.initializers.variance_scaling(2.0, "fan_in", distribution)(
      KEY, shape, jnp.complex64)
  assert ours.dtype == jnp.complex64
  # Same sampler; for truncated_normal jinit's constant differs (see the law test).
  ratio = JAX_COMPLEX_TN / jinit.complex_truncated_std(2.0) \
      if distribution == "truncated_normal" else 1.0
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs) * ratio, rtol=2e-6,
                             atol=1e-6)


def test_complex_truncated_std():
  """E[|z|^2 | |z| <= 2] for E|z|^2 = 1: |z|^2 is Exp(1) truncated to [0, 4]."""
  m2 = scipy.stats.truncexpon(b=4.0).mean()
  assert jinit.complex_truncated_std(2.0) == pytest.approx(math.sqrt(m2), rel=1e-12)
  assert jinit.complex_truncated_std(2.0) == pytest.approx(0.9619618280082136, rel=1e-12)


@pytest.mark.parametrize("distribution", ["normal", "uniform", "truncated_normal"])
def test_complex_variance_scaling_law(distribution):
  """E|W|^2 = scale / n, real and imaginary parts each half of it, zero mean.

  n = 200 * 300 samples of |W|^2: its sample mean has standard error
  sd(|W|^2) / sqrt(n) (sd <= mean for these laws), so 6 SE is <= 2.4% of scale / n;
  jax's own constant gives 1.87% too much variance for truncated_normal (18 SE at
  1e6 samples), see test_complex_variance_scaling_same_sampler_as_jax.
  """
  shape, fan_in, scale = (200, 300), 200, 3.0
  w = np.asarray(jinit.variance_scaling(jax.random.key(4), shape, fan_in, 300, scale=scale,
                                        distribution=distribution, dtype=jnp.complex64),
                 np.complex128).ravel()
  target = scale / fan_in
  m2 = np.abs(w)**2
  se = m2.std() / math.sqrt(m2.size)
  assert abs(m2.mean() - target) <= 6 * se
  for part in (w.real, w.imag):
    assert abs(np.mean(part**2) - target / 2) <= 6 * np.std(part**2) / math.sqrt(part.size)
    assert abs(part.mean()) <= 6 * math.sqrt(target / 2 / part.size)
  bound = {"uniform": math.sqrt(2 * target),
           "truncated_normal": 2 * math.sqrt(target) / jinit.complex_truncated_std(2.0),
           "normal": math.inf}[distribution]
  assert np.abs(w).max() <= bound * (1 + 1e-6)
  # The modulus law: for uniform on the disk |W|^2 / bound^2 is U(0, 1).
  if distribution == "uniform":
    assert scipy.stats.kstest(m2 / bound**2, "uniform").pvalue > 1e-3


def test_complex_orthogonal_is_unitary():
  shapes = [(6, 4), (4, 6), (5, 5)]
  outs = jax.jit(lambda k: [jinit.orthogonal(k, s, gain=1.5, dtype=jnp.complex64)
                            for s in shapes])(KEY)
  for shape, w in zip(shapes, outs):
    assert w.dtype == jnp.complex64
    w = np.asarray(w, np.complex128)
    gram = w.conj().T @ w if shape[0] >= shape[1] else w @ w.conj().T
    np.testing.assert_allclose(gram, 2.25 * np.eye(min(shape)), atol=1e-5)
    assert np.abs(w.imag).max() > 0.1  # genuinely complex


# --------------------------------------------------------------------------- item 4


def _zero_size_shape(name):
  return {"orthogonal": (4, 0), "delta_orthogonal": (3, 3, 0, 4), "eye": (0, 3),
          "dirac": (3, 0, 4), "sparse": (0, 5)}.get(name, (0, 8))


@pytest.mark.parametrize("name", sorted(jinit.INITIALIZERS))
def test_zero_size_shapes(name):
  """Item 4: a zero-size shape gives an empty array of that shape and dtype (as jax)."""
  shape = _zero_size_shape(name)
  fans = jinit.compute_fans(shape, "flax")
  assert 0 in fans
  for dtype in (jnp.float32, jnp.bfloat16):
    out = jinit.INITIALIZERS[name](KEY, shape, *fans, dtype=dtype)
    assert out.shape == shape and out.dtype == jnp.dtype(dtype)
  # Hyperparameters are still validated, and fans of 0 only go with zero-size shapes.
  if name in ("xavier_uniform", "orthogonal"):
    with pytest.raises(ValueError, match="gain must be > 0"):
      jinit.INITIALIZERS[name](KEY, shape, *fans, gain=-1.0)
  if name == "he_normal":
    with pytest.raises(ValueError, match="fan_in must be a positive int, got 0"):
      jinit.he_normal(KEY, (3, 8), 0, 8)


def test_zero_size_bias_of_zero_width_layer():
  """A bias (0,) of a Dense(0) layer with the kernel's fans (64, 0)."""
  out = jinit.torch_linear_default(KEY, (0,), 64, 0)
  assert out.shape == (0,) and out.dtype == jnp.float32


# --------------------------------------------------------------------------- item 5


@pytest.mark.parametrize("dtype,min_unique", [
    (jnp.float32, 5000), (jnp.float16, 3000), (jnp.bfloat16, 1000)])
@pytest.mark.parametrize("name", ["truncated_normal", "normal"])
def test_low_precision_unique_values(name, dtype, min_unique):
  """PyTorch's test_trunc_normal_unique_values: 10,000 samples, > min_unique distinct.

  Drawn directly in 16 bits (as jax does) they took 1,024 (float16) and 128
  (bfloat16) distinct values; drawn in float32 and cast, ~6,000 and ~1,600.
  """
  t = np.asarray(getattr(jinit, name)(jax.random.key(1), (10_000,), dtype=dtype), np.float32)
  assert np.unique(t).size > min_unique
  assert np.all(np.isfinite(t))
  if name == "truncated_normal":
    assert t.min() >= -2.0 and t.max() <= 2.0


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_ks(dtype):
  """PyTorch's test_trunc_normal_low_precision: KS against the law, p > 1e-4 (its level).

  The rounding to 8 (bfloat16) or 11 (float16) significant bits moves the CDF by at
  most ~0.002, a tenth of the KS critical value 1.95 / sqrt(10^4).
  """
  t = np.asarray(jinit.truncated_normal(jax.random.key(2), (10_000,), dtype=dtype), np.float32)
  assert scipy.stats.kstest(t, scipy.stats.truncnorm(-2, 2).cdf).pvalue > 1e-4
  n = np.asarray(jinit.normal(jax.random.key(2), (10_000,), std=2.0, mean=1.0, dtype=dtype),
                 np.float32)
  assert scipy.stats.kstest(n, scipy.stats.norm(1.0, 2.0).cdf).pvalue > 1e-4


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
def test_no_values_rounded_to_the_truncation_bound(dtype):
  """PyTorch's test_trunc_normal_no_boundary_values_small_std: std 0.1, bounds +-2."""
  t = np.asarray(jinit.truncated_normal(jax.random.key(3), (10_000,), std=0.1, lower=-20.0,
                                        upper=20.0, dtype=dtype), np.float32)
  assert not np.any(t == -2.0) and not np.any(t == 2.0)


# --------------------------------------------------------------------------- PyTorch's KS tests


def _torch_fans(shape):
  return jinit.compute_fans(shape, "torch_linear" if len(shape) == 2 else "torch_conv")


TORCH_SHAPES = [(23, 21), (22, 20, 3, 3)]  # PyTorch: dims in [20, 25] (4-D: 264,000 samples)


def _ks(x, law):
  return scipy.stats.kstest(np.asarray(x, np.float64).ravel(), law.cdf).pvalue


@pytest.mark.parametrize("shape", TORCH_SHAPES, ids=["2d", "4d"])
def test_torch_xavier_and_kaiming_ks(shape):
  """PyTorch's test_xavier_* and test_kaiming_*: KS p > 1e-4 (its level), torch layout."""
  fan_in, fan_out = _torch_fans(shape)
  gain = 1.37
  cases = [  # (initializer, hyperparameters, law)
      (jinit.xavier_uniform, {"gain": gain}, "u", gain * math.sqrt(2.0 / (fan_in + fan_out))),
      (jinit.xavier_normal, {"gain": gain}, "n", gain * math.sqrt(2.0 / (fan_in + fan_out)))]
  for a, mode in [(0.0, "fan_in"), (1.3, "fan_out")]:
    std = math.sqrt(2.0 / ((1 + a * a) * (fan_in if mode == "fan_in" else fan_out)))
    cases += [(jinit.kaiming_uniform, {"a": a, "mode": mode}, "u", std),
              (jinit.kaiming_normal, {"a": a, "mode": mode}, "n", std)]
  keys = jax.random.split(jax.random.key(21), len(cases))
  outs = jax.jit(lambda ks: [fn(k, shape, fan_in, fan_out, **kw)
                             for k, (fn, kw, _, _) in zip(ks, cases)])(keys)
  for out, (fn, kw, law, std) in zip(outs, cases):
    b = std * math.sqrt(3)
    dist = scipy.stats.uniform(-b, 2 * b) if law == "u" else scipy.stats.norm(0, std)
    assert _ks(out, dist) > 1e-4, (fn.__name__, kw)


def test_torch_uniform_normal_trunc_normal_ks():
  """PyTorch's test_uniform, test_normal, test_trunc_normal (jinit's parametrization)."""
  k = jax.random.split(jax.random.key(22), 3)
  assert _ks(jinit.uniform(k[0], (40, 45), a=2.5), scipy.stats.uniform(-2.5, 5.0)) > 1e-4
  assert _ks(jinit.normal(k[1], (40, 45), mean=-1.2, std=3.1),
             scipy.stats.norm(-1.2, 3.1)) > 1e-4
  # torch bounds [a, b] absolute; jinit's in units of std: a = mean + lower * std.
  assert _ks(jinit.truncated_normal(k[2], (40, 45), mean=0.5, std=0.7, lower=-1.5, upper=0.8),
             scipy.stats.truncnorm(-1.5, 0.8, loc=0.5, scale=0.7)) > 1e-4


def test_torch_sparse():
  """PyTorch's test_sparse_default_std: >= ceil(sparsity * rows) zeros, nonzeros normal."""
  stds = (0.01, 0.13)
  outs = jax.jit(lambda ks: [jinit.sparse(k, (33, 31), sparsity=0.15, std=std)
                             for k, std in zip(ks, stds)])(jax.random.split(KEY, 2))
  for w, std in zip(outs, stds):
    w = np.asarray(w)
    assert np.all((w == 0).sum(axis=0) >= math.ceil(0.15 * 33))
    assert _ks(w[w != 0], scipy.stats.norm(0, std)) > 1e-4
  for shape in [(4,), (2, 2, 2)]:
    with pytest.raises(ValueError, match="sparse needs a 2-D shape"):
      jinit.sparse(KEY, shape, sparsity=0.5)


@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_torch_orthogonal(gain):
  """PyTorch's test_orthogonal: (out, in, ...) viewed as shape[0] x rest (column_axis=0)."""
  for shape in [(3, 4), (4, 3), (20, 2, 3, 4), (2, 3, 4, 5)]:
    w = np.asarray(jinit.orthogonal(KEY, shape, gain=gain, column_axis=0), np.float64)
    rows = shape[0]
    m = w.reshape(rows, -1)
    gram = m.T @ m if rows > m.shape[1] else m @ m.T
    # PyTorch's tolerance (atol 1e-6 at gain 1), scaled by gain^2.
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=1e-6 * gain**2)


def test_torch_eye_and_dirac():
  for shape in [(1, 1), (3, 5), (5, 2)]:
    np.testing.assert_array_equal(np.asarray(jinit.eye(KEY, shape)), np.eye(*shape))
  for shape in [(3,), (2, 2, 2)]:
    with pytest.raises(ValueError, match="eye needs a 2-D shape"):
      jinit.eye(KEY, shape)
  for shape in [(3,), (3, 3), (1, 1, 1, 1, 1, 1)]:
    with pytest.raises(ValueError, match="dirac needs a Flax conv kernel shape"):
      jinit.dirac(KEY, shape)


@pytest.mark.parametrize("groups", [1, 3])
def test_torch_dirac_identity(groups):
  """PyTorch's test_dirac_identity: in_c = 3, out_c = 9, the conv copies the input into
  the first in_c outputs of each group and leaves the rest 0 (1-D and 2-D)."""
  in_c, out_c, size, k = 3, 9, 5, 3
  per_group = out_c // groups
  for nd in (1, 2):
    x = jax.random.normal(jax.random.key(9), (8, *([size] * nd), in_c), jnp.float32)
    w = jinit.dirac(KEY, (*([k] * nd), in_c, out_c), groups=groups)
    spatial = "HW"[:nd]
    dn = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    y = np.asarray(jax.lax.conv_general_dilated(x, w, (1,) * nd, "VALID",
                                                dimension_numbers=dn))
    inner = np.asarray(x)[(slice(None),) + (slice(1, -1),) * nd]
    for g in range(groups):
      np.testing.assert_array_equal(y[..., g * per_group:g * per_group + in_c], inner)
      assert not np.any(y[..., g * per_group + in_c:(g + 1) * per_group])


# --------------------------------------------------------------------------- calculate_gain


def test_torch_calculate_gain_values():
  """PyTorch's test_calculate_gain_*: exact values."""
  for name in ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "conv_transpose3d",
               "sigmoid"]:
    assert jinit.calculate_gain(name) == 1
  assert jinit.calculate_gain("tanh") == 1.6666666666666667
  assert jinit.calculate_gain("relu") == 1.4142135623730951
  assert jinit.calculate_gain("selu") == 0.75
  for param, gain in [(None, 1.4141428569978354), (0, 1.4142135623730951),
                      (0.01, 1.4141428569978354), (10, 0.14071950894605836)]:
    assert jinit.calculate_gain("leaky_relu", param) == pytest.approx(gain, rel=1e-15)


@pytest.mark.parametrize("name", ["ab", "qzxwv", "abcdefghijklmnopqrstuvwxy", "ReLU"])
def test_torch_calculate_gain_rejects_unknown_names(name):
  with pytest.raises(ValueError, match="nonlinearity must be one of"):
    jinit.calculate_gain(name)


@pytest.mark.parametrize("shape", [(), (5,)])
@pytest.mark.parametrize("layout", ["torch_linear", "torch_conv", "dense", "conv", "flax"])
def test_torch_fan_computation_errors(shape, layout):
  """PyTorch: xavier_*/kaiming_* raise ValueError on tensors with fewer than 2 dims.

  jinit's initializers take explicit fans, so the error comes from compute_fans.
  """
  with pytest.raises(ValueError, match="rank"):
    jinit.compute_fans(shape, layout)


# --------------------------------------------------------------------------- item 6


def test_documented_deviations():
  """Item 6: deviations that docs/parity.md lists, pinned so the docs stay true."""
  # A non-number leaky_relu slope is a TypeError (PyTorch: ValueError): wrong type.
  for param in [True, [1], {"a": "b"}]:
    with pytest.raises(TypeError, match="param .negative_slope of leaky_relu. must be a number"):
      jinit.calculate_gain("leaky_relu", param)
  # jinit.uniform is U(-a, a); jax's uniform(scale) is U[0, scale).
  w = np.asarray(jinit.uniform(KEY, (1000,), a=1.0))
  assert w.min() < -0.5
  # float16/bfloat16: sampled in float32 and cast, so not jax's bits (float32 is).
  ours = np.asarray(jinit.he_normal(KEY, (16, 16), 16, 16, dtype=jnp.bfloat16), np.float32)
  theirs = np.asarray(jax.nn.initializers.he_normal()(KEY, (16, 16), jnp.bfloat16), np.float32)
  f32 = np.asarray(jinit.he_normal(KEY, (16, 16), 16, 16)).astype(jnp.bfloat16).astype(np.float32)
  np.testing.assert_array_equal(ours, f32)
  assert not np.array_equal(ours, theirs)
  # complex truncated normal: jinit's variance is scale / n; jax's is 1.87% higher.
  assert (jinit.complex_truncated_std(2.0) / JAX_COMPLEX_TN)**2 == pytest.approx(1.0186, abs=1e-4)
  # z_max documented for the overflow check.
  assert inits_lib._normal_z_max("float32") == pytest.approx(5.42, abs=0.01)
