"""Tests of every jinit initializer: shapes, dtypes, determinism, laws, structure.

Table-driven (optax style): ``ROWS`` has one row per initializer (its name, the
hyperparameters to test it with, the shapes it accepts, whether it is random).
Adding an initializer to ``jinit.INITIALIZERS`` fails ``test_table_covers_registry``
until it gets a row here, and the row is then crossed with shapes and dtypes.
Statistical checks (``check_law`` in conftest.py) use fixed keys and >= 1e5
samples, in float32 only, with tolerances derived from the sample size.
"""

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from helpers import truncnorm
from helpers import uniform

import jinit

KEY = jax.random.key(0)
OTHER_KEY = jax.random.key(1)
LEGACY_KEY = jax.random.PRNGKey(0)  # raw uint32[2] key, same bits as jax.random.key(0)

DENSE = (64, 48)  # Flax (in, out)
CONV = (3, 3, 16, 32)  # Flax (*window, in, out)
BIAS = (48,)  # a bias of the DENSE layer: fans are the kernel's
ALL_SHAPES = (DENSE, CONV, BIAS)
FANS = {DENSE: (64, 48), CONV: (3 * 3 * 16, 3 * 3 * 32), BIAS: (64, 48)}
DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  hyper: dict = dataclasses.field(default_factory=dict)
  shapes: tuple = ALL_SHAPES
  random: bool = True

  def __call__(self, key, shape, *, dtype=jnp.float32):
    return jinit.INITIALIZERS[self.name](key, shape, *FANS[shape], dtype=dtype, **self.hyper)


ROWS = (
    Row("zeros", random=False),
    Row("ones", random=False),
    Row("constant", {"value": -0.3}, random=False),
    Row("normal", {"std": 0.5, "mean": 0.1}),
    Row("uniform", {"a": 0.5}),
    Row("truncated_normal", {"std": 0.5, "corrected": True}),
    Row("variance_scaling", {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform"}),
    Row("xavier_uniform", {"gain": 5 / 3}),
    Row("xavier_normal"),
    Row("kaiming_uniform"),
    Row("kaiming_normal", {"nonlinearity": "relu", "mode": "fan_out"}),
    Row("lecun_uniform"),
    Row("lecun_normal"),
    Row("glorot_uniform"),
    Row("glorot_normal"),
    Row("he_uniform"),
    Row("he_normal"),
    Row("torch_linear_default"),
    Row("orthogonal", {"gain": 2.0}, shapes=(DENSE, CONV)),
    Row("delta_orthogonal", shapes=(CONV,)),
    Row("eye", shapes=(DENSE,), random=False),
    Row("dirac", shapes=(CONV,), random=False),
    Row("sparse", {"sparsity": 0.25, "std": 0.05}, shapes=(DENSE,)),
)
ROW = {row.name: row for row in ROWS}


def _shape_id(shape):
  return "x".join(map(str, shape))


def _configs(row):
  """Every dtype on the row's first shape, float32 on its other shapes.

  Each (initializer, shape, dtype) compiles its own XLA program (~0.5 s here), so
  the full cross product would dominate the suite's run time; the dtype handling
  does not depend on the shape.
  """
  return [(shape, dtype) for shape in row.shapes
          for dtype in (DTYPES if shape == row.shapes[0] else (jnp.float32,))]


MATRIX = [pytest.param(row.name, shape, dtype,
                       id=f"{row.name}-{_shape_id(shape)}-{jnp.dtype(dtype).name}")
          for row in ROWS for shape, dtype in _configs(row)]


def test_table_covers_registry():
  assert sorted(row.name for row in ROWS) == sorted(jinit.INITIALIZERS)
  assert len(ROWS) == len(ROW)
  for name, fn in jinit.INITIALIZERS.items():
    assert getattr(jinit, name) is fn
    assert jinit.get_initializer(name) is fn


@functools.cache
def _under_jit(name):
  """The row's first-shape configs (every dtype) in ONE jitted program, plus a legacy key.

  One compile per initializer instead of one per config (each compile costs ~0.5 s);
  each output is the same expression as the eager call, traced inside a bigger
  program. The legacy-key call is the row's first config.
  """
  row = ROW[name]
  configs = [(row.shapes[0], dtype) for dtype in DTYPES]

  @jax.jit
  def run(key, legacy_key):
    first_shape, first_dtype = configs[0]
    return ([row(key, s, dtype=d) for s, d in configs],
            row(legacy_key, first_shape, dtype=first_dtype))

  typed, legacy = run(KEY, LEGACY_KEY)
  out = {(s, jnp.dtype(d).name): t for (s, d), t in zip(configs, typed)}
  return out, (configs[0][0], jnp.dtype(configs[0][1]).name), legacy


@pytest.mark.parametrize("name,shape,dtype", MATRIX)
def test_shape_dtype_determinism_jit_legacy_key(name, shape, dtype):
  row = ROW[name]
  out = row(KEY, shape, dtype=dtype)
  chex.assert_shape(out, shape)
  chex.assert_type(out, dtype)
  chex.assert_tree_all_finite(out)
  # Same key, same bits.
  np.testing.assert_array_equal(np.asarray(row(KEY, shape, dtype=dtype)), np.asarray(out))
  # A different key gives different values, unless the initializer ignores the key.
  other = np.asarray(row(OTHER_KEY, shape, dtype=dtype))
  if row.random:
    assert not np.array_equal(other, np.asarray(out))
    assert np.unique(np.asarray(out, np.float32)).size > 1
  else:
    np.testing.assert_array_equal(other, np.asarray(out))
  # Under jit (inside a bigger program; the row's first shape, every dtype) the bits
  # are the same, and a legacy jax.random.PRNGKey(0) gives the same bits as
  # jax.random.key(0).
  jitted, legacy_config, legacy = _under_jit(name)
  if (shape, jnp.dtype(dtype).name) in jitted:
    chex.assert_type(jitted[(shape, jnp.dtype(dtype).name)], dtype)
    np.testing.assert_array_equal(np.asarray(jitted[(shape, jnp.dtype(dtype).name)]),
                                  np.asarray(out))
  if legacy_config == (shape, jnp.dtype(dtype).name):
    np.testing.assert_array_equal(np.asarray(legacy), np.asarray(out))


def test_float64_with_x64():
  """float64 with x64 on, one row per code path (each float64 config is a new compile)."""
  paths = ("constant", "normal", "uniform", "truncated_normal", "xavier_normal",
           "kaiming_uniform", "he_normal", "torch_linear_default", "orthogonal",
           "delta_orthogonal", "eye", "dirac", "sparse")
  with jax.enable_x64(True):
    configs = [(ROW[name], ROW[name].shapes[0]) for name in paths]
    eager = [row(KEY, shape, dtype=jnp.float64) for row, shape in configs]
    for (_, shape), e in zip(configs, eager):
      chex.assert_shape(e, shape)
      chex.assert_type(e, jnp.float64)
      chex.assert_tree_all_finite(e)
    some = [i for i, (row, _) in enumerate(configs) if row.name in ("he_normal", "orthogonal")]
    jitted = jax.jit(lambda k: [configs[i][0](k, configs[i][1], dtype=jnp.float64)
                                for i in some])(KEY)
    for i, j in zip(some, jitted):
      np.testing.assert_array_equal(np.asarray(j), np.asarray(eager[i]),
                                    err_msg=configs[i][0].name)
    # Sampled in float64, not float32 upcast: a float32 grid would leave the low
    # 29 mantissa bits zero for every entry.
    x = np.asarray(eager[paths.index("normal")])
    frac = np.frexp(x)[0] * 2.0**24
    assert not np.all(frac == np.round(frac))


def test_list_shape_and_numpy_scalars_are_accepted_and_static():
  ref = jinit.xavier_normal(KEY, (64, 48), 64, 48, gain=2.0)
  same = [
      jinit.xavier_normal(KEY, [64, 48], 64, 48, gain=2.0),
      jinit.xavier_normal(KEY, (64, 48), np.int64(64), np.int32(48), gain=np.float32(2.0)),
      jinit.xavier_normal(KEY, (64, 48), 64.0, 48, gain=jnp.float32(2.0)),
      jax.jit(lambda k: jinit.xavier_normal(k, (64, 48), np.int64(64), 48, gain=2.0))(KEY),
  ]
  for out in same:
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
  np.testing.assert_array_equal(
      np.asarray(jinit.normal(KEY, (7, 5), std=np.float32(1.3), mean=jnp.float32(0.7))),
      np.asarray(jax.jit(lambda k: jinit.normal(k, (7, 5), std=1.3, mean=0.7))(KEY)))


# --------------------------------------------------------------------------- laws

STAT_SHAPE = (784, 50)  # an MNIST first layer; 3 keys give n = 117600 samples
STAT_FAN_IN, STAT_FAN_OUT = STAT_SHAPE
STAT_KEYS = jax.random.split(jax.random.key(2024), 3)
TN = jinit.truncated_std(-2.0, 2.0)  # std of N(0, 1) truncated to [-2, 2]


FI, FO, FA = STAT_FAN_IN, STAT_FAN_OUT, (STAT_FAN_IN + STAT_FAN_OUT) / 2
# (id, initializer name, hyperparameters, the law written from the formula)
LAWS = [
    ("normal", "normal", {"std": 0.5, "mean": 0.1}, scipy.stats.norm(0.1, 0.5)),
    ("uniform", "uniform", {"a": 0.5}, uniform(0.5)),
    ("truncated_normal", "truncated_normal", {"std": 0.5}, truncnorm(0.5)),
    ("truncated_normal-corrected", "truncated_normal", {"std": 0.5, "corrected": True},
     truncnorm(0.5 / TN)),
    ("truncated_normal-asym", "truncated_normal",
     {"std": 0.5, "lower": -1.0, "upper": 3.0, "mean": 0.2}, truncnorm(0.5, -1.0, 3.0, 0.2)),
    ("vs-fan_in-truncated", "variance_scaling", {"scale": 0.5},
     truncnorm(math.sqrt(0.5 / FI) / TN)),
    ("vs-fan_out-uniform", "variance_scaling",
     {"scale": 3.0, "mode": "fan_out", "distribution": "uniform"}, uniform(math.sqrt(9.0 / FO))),
    ("vs-fan_avg-normal", "variance_scaling",
     {"scale": 2.0, "mode": "fan_avg", "distribution": "normal"},
     scipy.stats.norm(0, math.sqrt(2.0 / FA))),
    ("xavier_uniform-tanh", "xavier_uniform", {"gain": 5 / 3},
     uniform(5 / 3 * math.sqrt(6 / (FI + FO)))),
    ("xavier_normal-relu", "xavier_normal", {"gain": math.sqrt(2)},
     scipy.stats.norm(0, math.sqrt(2) * math.sqrt(2 / (FI + FO)))),
    ("kaiming_uniform", "kaiming_uniform", {}, uniform(math.sqrt(6 / FI))),
    ("kaiming_uniform-a=sqrt5", "kaiming_uniform", {"a": math.sqrt(5)}, uniform(1 / math.sqrt(FI))),
    ("kaiming_uniform-tanh-fan_out", "kaiming_uniform",
     {"nonlinearity": "tanh", "mode": "fan_out"}, uniform(5 / 3 * math.sqrt(3 / FO))),
    ("kaiming_normal", "kaiming_normal", {}, scipy.stats.norm(0, math.sqrt(2 / FI))),
    ("kaiming_normal-leaky0.2-fan_out", "kaiming_normal", {"a": 0.2, "mode": "fan_out"},
     scipy.stats.norm(0, math.sqrt(2 / (1 + 0.04)) / math.sqrt(FO))),
    ("lecun_uniform", "lecun_uniform", {}, uniform(math.sqrt(3 / FI))),
    ("lecun_normal", "lecun_normal", {}, truncnorm(math.sqrt(1 / FI) / TN)),
    ("glorot_uniform", "glorot_uniform", {}, uniform(math.sqrt(6 / (FI + FO)))),
    ("glorot_normal", "glorot_normal", {}, truncnorm(math.sqrt(2 / (FI + FO)) / TN)),
    ("he_uniform", "he_uniform", {}, uniform(math.sqrt(6 / FI))),
    ("he_normal", "he_normal", {}, truncnorm(math.sqrt(2 / FI) / TN)),
    ("torch_linear_default", "torch_linear_default", {}, uniform(1 / math.sqrt(FI))),
]


def stat_samples(name, hyper, shape=STAT_SHAPE, fans=STAT_SHAPE):
  """float32 samples from 3 fixed keys (one compiled program, called 3 times)."""
  fn = jinit.INITIALIZERS[name]
  return np.concatenate([np.asarray(fn(k, shape, *fans, **hyper)).ravel() for k in STAT_KEYS])


@pytest.mark.parametrize("name,hyper,law", [pytest.param(*r[1:], id=r[0]) for r in LAWS])
def test_law(name, hyper, law, check_law):
  check_law(stat_samples(name, hyper), law, what=name)


def test_laws_cover_every_random_elementwise_initializer():
  structured = {"orthogonal", "delta_orthogonal", "sparse"}  # tested below
  random = {row.name for row in ROWS if row.random} - structured
  assert random <= {r[1] for r in LAWS}


def test_wrong_constants_would_fail(check_law):
  """The tolerances are tight enough to catch the errors they are meant to catch."""
  x = stat_samples("he_normal", {})
  right = truncnorm(math.sqrt(2 / FI) / TN)
  check_law(x, right)
  wrong_laws = {
      "gain 5% off": truncnorm(1.05 * math.sqrt(2 / FI) / TN),
      "fan_avg instead of fan_in": truncnorm(math.sqrt(2 / FA) / TN),
      "truncation correction missing": truncnorm(math.sqrt(2 / FI)),
      "untruncated normal": scipy.stats.norm(0, math.sqrt(2 / FI)),
  }
  for what, law in wrong_laws.items():
    with pytest.raises(AssertionError):
      check_law(x, law, what=what)
  with pytest.raises(AssertionError):  # uniform with the right variance: KS catches it
    check_law(stat_samples("kaiming_uniform", {}), scipy.stats.norm(0, math.sqrt(2 / FI)))


# --------------------------------------------------------------------------- jax / torch semantics

# orthogonal is not here: it draws Householder reflectors instead of running QR (issue 20),
# so its values differ from jax's for the same key; tests/test_orthogonal.py checks that
# its law is jax.random.orthogonal's (Haar).
JAX_SAME = [("lecun_uniform", DENSE), ("lecun_normal", CONV), ("glorot_uniform", CONV),
            ("glorot_normal", DENSE), ("he_uniform", DENSE), ("he_normal", CONV)]


@pytest.mark.parametrize("name,shape", JAX_SAME, ids=[f"{n}-{_shape_id(s)}" for n, s in JAX_SAME])
def test_same_samples_as_jax_nn_initializers(name, shape):
  """Same key, same law as jax.nn.initializers' namesake: equal up to float32 rounding."""
  ours = jinit.INITIALIZERS[name](KEY, shape, *jinit.compute_fans(shape, "flax"))
  theirs = getattr(jax.nn.initializers, name)()(KEY, shape, jnp.float32)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode,distribution", [
    ("fan_in", "truncated_normal"), ("fan_out", "normal"), ("fan_avg", "uniform")])
def test_variance_scaling_same_samples_as_jax(mode, distribution):
  shape = (5, 16, 32)  # conv1d kernel: fans 80 and 160
  ours = jinit.variance_scaling(KEY, shape, 80, 160, scale=1.7, mode=mode,
                                distribution=distribution)
  theirs = jax.nn.initializers.variance_scaling(1.7, mode, distribution)(KEY, shape, jnp.float32)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-7)


def test_delta_orthogonal_has_jax_layout():
  """jax's layout (the same center tap, zeros elsewhere); the tap is jinit.orthogonal's
  (Householder reflectors, issue 20: the same Haar law as jax's QR, not its samples)."""
  for shape in [(4, 8, 8)]:
    ours = np.asarray(jinit.delta_orthogonal(KEY, shape))
    theirs = np.asarray(jax.nn.initializers.delta_orthogonal()(KEY, shape, jnp.float32))
    np.testing.assert_array_equal(ours != 0, theirs != 0)
    np.testing.assert_array_equal(ours[(shape[0] - 1) // 2],
                                  np.asarray(jinit.orthogonal(KEY, shape[1:])))


def test_kaiming_uniform_a_sqrt5_is_torch_linear_default():
  """PyTorch's nn.Linear weight init is kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""
  for shape, layout in [((32, 16, 3, 3), "torch_conv")]:
    fans = jinit.compute_fans(shape, layout)
    k = jinit.kaiming_uniform(KEY, shape, *fans, a=math.sqrt(5))
    t = jinit.torch_linear_default(KEY, shape, *fans)
    np.testing.assert_allclose(np.asarray(k), np.asarray(t), rtol=1e-6, atol=1e-8)
    assert np.abs(np.asarray(t)).max() <= 1 / math.sqrt(fans[0]) * (1 + 1e-6)


def test_truncated_normal_default_is_uncorrected_like_jax():
  """corrected=False: std is the pre-truncation std, as jax.nn.initializers.truncated_normal."""
  ours = jinit.truncated_normal(KEY, DENSE, std=0.3)
  theirs = jax.nn.initializers.truncated_normal(0.3)(KEY, DENSE, jnp.float32)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-7)
  corrected = jinit.truncated_normal(KEY, DENSE, std=0.3, corrected=True)
  np.testing.assert_allclose(np.asarray(corrected), np.asarray(ours) / TN, rtol=1e-6)


# --------------------------------------------------------------------------- course examples


@pytest.mark.parametrize("fan_in,fan_out", [(2, 3), (3, 2)])
def test_course_xavier_examples(fan_in, fan_out, check_law):
  """Xavier for fan_in=2, fan_out=3 and the reverse: a = sqrt(6/5), sigma = sqrt(2/5)."""
  a, sigma = math.sqrt(6 / 5), math.sqrt(2 / 5)
  shape = (400, 250)  # 1e5 samples of the law with these (explicit) fans
  u = jinit.xavier_uniform(KEY, shape, fan_in, fan_out)
  check_law(u, uniform(a), what="xavier_uniform")
  n = jinit.xavier_normal(KEY, shape, fan_in, fan_out)
  check_law(n, scipy.stats.norm(0, sigma), what="xavier_normal")
  # The matrix itself, (fan_in, fan_out), stays in the bounds.
  w = np.asarray(jinit.xavier_uniform(KEY, (fan_in, fan_out), fan_in, fan_out))
  assert np.abs(w).max() <= a * (1 + 1e-6)


def test_course_kaiming_uniform_5x5():
  """kaiming_uniform on a 5x5 matrix stays within +-sqrt(6/5) ~= 1.095 and spans it."""
  bound = math.sqrt(6 / 5)
  assert abs(bound - 1.095) < 1e-3
  w = np.asarray(jinit.kaiming_uniform(KEY, (5, 5), 5, 5))
  assert np.abs(w).max() <= bound * (1 + 1e-6)
  # Under U(-b, b), P(all 25 |w| < b/2) = 2^-25 ~= 3e-8, and P(no w > b/2) =
  # P(no w < -b/2) = (3/4)^25 ~= 7.5e-4: a correct sampler spans the range.
  assert np.abs(w).max() > bound / 2
  assert w.max() > bound / 2 and w.min() < -bound / 2
  # Many 5x5 matrices (vmapped keys, one program): the law U(+-sqrt(6/5)) exactly.
  keys = jax.random.split(jax.random.key(5), 4000)
  many = jax.vmap(lambda k: jinit.kaiming_uniform(k, (5, 5), 5, 5))(keys)
  stat = scipy.stats.kstest(np.asarray(many).ravel(), uniform(bound).cdf)
  assert stat.pvalue > 1e-3
  assert np.abs(np.asarray(many)).max() <= bound * (1 + 1e-6)


# --------------------------------------------------------------------------- structured


@pytest.mark.parametrize("shape,column_axis,gain", [
    ((64, 48), -1, 1.0), ((48, 64), -1, 2.0), ((3, 3, 16, 32), -1, 1.0),
    ((1, 1, 16, 32), -1, 0.5), ((32, 16, 3, 3), 0, 2.0), ((50, 784), -1, 1.0),
], ids=["dense", "wide", "conv", "conv-wide", "torch-conv", "50x784"])
def test_orthogonal(shape, column_axis, gain):
  w = np.asarray(jinit.orthogonal(KEY, shape, gain=gain, column_axis=column_axis), np.float64)
  m = np.moveaxis(w, column_axis, -1).reshape(-1, shape[column_axis])
  gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
  np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=2e-5 * gain**2)


def test_orthogonal_float16_is_orthogonal_to_its_precision():
  w = np.asarray(jinit.orthogonal(KEY, (64, 48), dtype=jnp.float16), np.float64)
  np.testing.assert_allclose(w.T @ w, np.eye(48), atol=5e-3)  # float16 eps 1e-3, 64 terms


def test_orthogonal_is_haar():
  """Sign-corrected QR gives Haar matrices: q00^2 ~ Beta(1/2, (n-1)/2), E[q00] = 0.

  Without the sign correction (LAPACK Householder QR) q00 = -|a00| / ||a_0|| < 0 always:
  mean ~ -0.28 for n = 8, against a 6-SE tolerance of 6 * sqrt(1/8 / 4000) ~= 0.034.
  """
  n = 8
  keys = jax.random.split(jax.random.key(7), 4000)
  q = np.asarray(jax.vmap(lambda k: jinit.orthogonal(k, (n, n)))(keys), np.float64)
  for i, j in [(0, 0), (3, 5), (7, 7)]:
    x = q[:, i, j]
    assert abs(x.mean()) < 6 * math.sqrt(1 / n / x.size)
    assert scipy.stats.kstest(x**2, scipy.stats.beta(0.5, (n - 1) / 2).cdf).pvalue > 1e-3


@pytest.mark.parametrize("shape,gain", [((4, 8, 8), 1.5), ((2, 3, 3, 4, 4), 1.0)])
def test_delta_orthogonal(shape, gain):
  w = np.asarray(jinit.delta_orthogonal(KEY, shape, gain=gain), np.float64)
  center = tuple((k - 1) // 2 for k in shape[:-2])
  m = w[center]
  np.testing.assert_allclose(m @ m.T, gain**2 * np.eye(shape[-2]), atol=2e-5 * gain**2)
  rest = w.copy()
  rest[center] = 0
  assert not np.any(rest)


def test_eye():
  for shape in [(4, 6), (6, 4), (5, 5)]:
    np.testing.assert_array_equal(np.asarray(jinit.eye(KEY, shape)), np.eye(*shape))
  x = np.arange(12.0).reshape(2, 6)
  np.testing.assert_array_equal(x @ np.asarray(jinit.eye(KEY, (6, 4))), x[:, :4])


@pytest.mark.parametrize("shape,groups", [((3, 3, 6, 4), 1), ((2, 2, 2, 3, 6), 3),
                                          ((5, 2, 4), 2)])
def test_dirac_structure(shape, groups):
  """w[center, d, g * out/groups + d] = 1, zero elsewhere (torch.nn.init.dirac_, Flax layout)."""
  w = np.asarray(jinit.dirac(KEY, shape, groups=groups))
  expected = np.zeros(shape)
  n_in, n_out = shape[-2:]
  per_group = n_out // groups
  center = tuple(k // 2 for k in shape[:-2])
  for g in range(groups):
    for d in range(min(n_in, per_group)):
      expected[(*center, d, g * per_group + d)] = 1
  np.testing.assert_array_equal(w, expected)


@pytest.mark.parametrize("shape,sparsity", [((7, 300), 0.25), ((64, 48), 0.0),
                                            ((10, 20), 0.85)])
def test_sparse_zero_count_per_column(shape, sparsity):
  w = np.asarray(jinit.sparse(KEY, shape, sparsity=sparsity, std=0.01))
  zeros_per_column = (w == 0).sum(axis=0)
  np.testing.assert_array_equal(zeros_per_column, math.ceil(sparsity * shape[0]))
  if 0 < sparsity:
    masks = {tuple(np.flatnonzero(w[:, j] == 0)) for j in range(shape[1])}
    assert len(masks) > 1  # the zeroed rows are drawn per column, not shared


def test_sparse_nonzeros_follow_the_normal_law(check_law):
  w = np.concatenate([np.asarray(jinit.sparse(k, (1000, 50), sparsity=0.1, std=0.05)).ravel()
                      for k in STAT_KEYS])  # 3 * 45000 = 135000 nonzeros
  nonzero = w[w != 0]
  assert nonzero.size == 3 * 50 * 900
  check_law(nonzero, scipy.stats.norm(0, 0.05), what="sparse nonzeros")
  # Which rows are zeroed is uniform: each of the 1000 rows is zeroed in a column
  # with probability 0.1, so over the 150 columns its count is ~Binomial(150, 0.1)
  # (mean 15). The threshold is exceeded by any of the 1000 rows with probability
  # <= 1000 * 1e-12; zeroing fixed rows (count 150 for 100 rows) would exceed it.
  counts = (w.reshape(3, 1000, 50) == 0).sum(axis=(0, 2))
  assert counts.sum() == 150 * 100
  assert counts.max() <= scipy.stats.binom.isf(1e-12, 150, 0.1)


def test_constants():
  np.testing.assert_array_equal(np.asarray(jinit.zeros(KEY, (3, 4))), np.zeros((3, 4)))
  np.testing.assert_array_equal(np.asarray(jinit.ones(KEY, (3, 4))), np.ones((3, 4)))
  np.testing.assert_array_equal(np.asarray(jinit.constant(KEY, (3, 4), value=-2.5)),
                                np.full((3, 4), -2.5))
  assert float(jinit.constant(KEY, (), value=7.0)) == 7.0


def test_empty_shape_is_a_scalar_for_elementwise_laws():
  """() is a scalar parameter: fine for laws with explicit fans, an error for structure."""
  out = jinit.xavier_uniform(KEY, (), 2, 3)
  chex.assert_shape(out, ())
  assert abs(float(out)) <= math.sqrt(6 / 5)
  for name in ["orthogonal", "delta_orthogonal", "eye", "dirac", "sparse"]:
    with pytest.raises(ValueError, match="shape"):
      jinit.INITIALIZERS[name](KEY, ())


# --------------------------------------------------------------------------- vmap sweeps

VMAP_ROWS = [  # (initializer, swept hyperparameter, shape, output scales linearly with it?)
    ("xavier_normal", "gain", DENSE, True),
    ("orthogonal", "gain", DENSE, True),
    ("truncated_normal", "std", DENSE, True),
    ("uniform", "a", DENSE, True),
    ("constant", "value", DENSE, True),
    ("variance_scaling", "scale", DENSE, False),
    ("normal", "mean", DENSE, False),
]


@pytest.mark.parametrize("name,hyper,shape,linear", VMAP_ROWS,
                         ids=[f"{r[0]}-{r[1]}" for r in VMAP_ROWS])
def test_vmap_over_hyperparameter(name, hyper, shape, linear):
  fn = jinit.INITIALIZERS[name]
  values = [0.5, 1.0, 2.0]
  swept = jax.vmap(lambda v: fn(KEY, shape, *FANS[shape], **{hyper: v}))(jnp.array(values))
  chex.assert_shape(swept, (3, *shape))
  # The swept value 2.0 gives the same array as a concrete 2.0 (up to rounding:
  # traced and constant-folded hyperparameters may round differently).
  concrete = np.asarray(fn(KEY, shape, *FANS[shape], **{hyper: values[2]}))
  np.testing.assert_allclose(np.asarray(swept)[2], concrete, rtol=1e-6, atol=1e-6)
  for v, out in zip(values, np.asarray(swept)):
    if linear:  # same key: the output is proportional to the hyperparameter
      np.testing.assert_allclose(out, v * np.asarray(swept)[1], rtol=1e-6, atol=1e-7)
  if name == "variance_scaling":  # std = sqrt(scale / n): proportional to sqrt(scale)
    np.testing.assert_allclose(np.asarray(swept)[2], math.sqrt(2) * np.asarray(swept)[1],
                               rtol=1e-6, atol=1e-7)
