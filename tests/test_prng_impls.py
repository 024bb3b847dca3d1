"""Every PRNG implementation (issue 20): threefry2x32, rbg and unsafe_rbg keys, typed and raw.

The core table (every initializer on a dense and a conv shape) runs once per key
implementation: the result has the shape and dtype asked for and is finite, the
same key gives the same bits (eager, again, and under jit), another key gives other
values (where the initializer is random). The normal/uniform laws hold with every
implementation (conftest.check_law), raw uint32 keys of the default implementation
are accepted (shape (2,) threefry, (4,) rbg) and one of the wrong shape is a clear
TypeError; reinit (nnx, linen) and LSUV take rbg keys.

rbg and unsafe_rbg keys draw their bits on CPU through jinit._src.rbg_cpu (XLA's
Philox4x32-10, computed faster): the bits and the laws drawn from them are
identical to jax.random's with the same key, and the fast path is the one taken.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from conftest import check_law
from flax import nnx

import jinit
from jinit import lsuv as lsuv_lib
from jinit._src import rbg_cpu

IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
DENSE, CONV = (24, 16), (3, 3, 8, 16)
DETERMINISTIC = {"zeros", "ones", "constant", "eye", "dirac"}


def _shape(name):
  return CONV if name in ("dirac", "delta_orthogonal") else DENSE


def _call(name, key, **kw):
  shape = _shape(name)
  hyper = {"value": 0.5} if name == "constant" else {}
  return jinit.INITIALIZERS[name](key, shape, *jinit.compute_fans(shape, "flax"), **hyper, **kw)


# All three in CI's slow step (13-15 s each on 2 cores): README's command keeps its 8 minutes;
# threefry's core table also runs in tests/test_initializers.py.
@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_core_table_per_implementation(impl):
  key, other = jax.random.key(0, impl=impl), jax.random.key(1, impl=impl)
  for name in sorted(jinit.INITIALIZERS):
    a = _call(name, key)
    assert a.shape == _shape(name) and a.dtype == jnp.float32, (impl, name)
    assert np.all(np.isfinite(np.asarray(a))), (impl, name)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(_call(name, key)),
                                  err_msg=f"{impl} {name}: same key, other bits")
    jitted = jax.jit(lambda k, name=name: _call(name, k))(key)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(jitted),
                                  err_msg=f"{impl} {name}: eager != jit")
    if name not in DETERMINISTIC:
      assert not np.array_equal(np.asarray(a), np.asarray(_call(name, other))), (impl, name)


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_implementations_draw_different_bits(impl):
  """A key's implementation matters: rbg and threefry keys of one seed give other values."""
  a = jinit.normal(jax.random.key(0), (64,))
  b = jinit.normal(jax.random.key(0, impl=impl), (64,))
  assert not np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_laws_hold_with_rbg_keys(impl):
  # 400 x 300 = 120000 samples: check_law's tolerances (6 SE, KS p > 1e-3) for n ~ 1e5.
  shape, fi, fo = (400, 300), 400, 300
  key = jax.random.key(3, impl=impl)
  check_law(jinit.xavier_normal(key, shape, fi, fo),
            scipy.stats.norm(0, math.sqrt(2 / (fi + fo))), what=f"xavier_normal [{impl}]")
  bound = math.sqrt(6 / fi)  # kaiming_uniform, leaky_relu a=0: gain sqrt(2), sqrt(3/n)
  check_law(jinit.kaiming_uniform(key, shape, fi, fo),
            scipy.stats.uniform(-bound, 2 * bound), what=f"kaiming_uniform [{impl}]")


def test_raw_keys_of_each_implementation():
  # threefry (the default): raw shape (2,); a (4,) raw key is refused by name.
  raw2 = jax.random.PRNGKey(0)
  assert raw2.shape == (2,)
  np.testing.assert_array_equal(np.asarray(jinit.normal(raw2, (8,))),
                                np.asarray(jinit.normal(raw2, (8,))))
  with pytest.raises(TypeError, match=r"raw uint32 key of shape \(4,\).*'threefry2x32'"):
    jinit.normal(jnp.zeros((4,), jnp.uint32), (8,))
  # rbg as the default: raw keys have shape (4,); they give rbg's bits.
  previous = jax.config.jax_default_prng_impl
  try:
    jax.config.update("jax_default_prng_impl", "rbg")
    raw4 = jax.random.PRNGKey(0)
    assert raw4.shape == (4,)
    a = jinit.kaiming_normal(raw4, DENSE, 24, 16)
    typed = jax.random.wrap_key_data(raw4, impl="rbg")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(jinit.kaiming_normal(typed, DENSE,
                                                                                 24, 16)))
    with pytest.raises(TypeError, match=r"raw uint32 key of shape \(2,\).*'rbg'"):
      jinit.normal(raw2, (8,))
  finally:
    jax.config.update("jax_default_prng_impl", previous)


class _MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.Dense(16)(x))
    return nn.Dense(4)(x)


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_reinit_and_lsuv_take_rbg_keys(impl):
  key = jax.random.key(5, impl=impl)
  x = jax.random.normal(jax.random.key(0), (32, 8))
  variables = _MLP().init(jax.random.key(1), x)
  new = jinit.linen.reinit(_MLP(), variables, x, jinit.orthogonal, key=key)
  w = np.asarray(new["params"]["Dense_0"]["kernel"], np.float64)
  # An (in=8, out=16) kernel: orthogonal's 8 rows are orthonormal (W W^T = I_8; W^T W has
  # rank 8, so it cannot be I_16).
  np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-5)
  again = jinit.linen.reinit(_MLP(), variables, x, jinit.orthogonal, key=key)
  np.testing.assert_array_equal(w, np.asarray(again["params"]["Dense_0"]["kernel"]))

  model = nnx.Linear(8, 16, rngs=nnx.Rngs(0))
  jinit.nnx.reinit(model, jinit.kaiming_normal, key=key)
  assert np.all(np.isfinite(np.asarray(model.kernel.get_value())))

  out = lsuv_lib.lsuv(_MLP(), variables, x, key)
  y = _MLP().apply(out, x)
  assert np.all(np.isfinite(np.asarray(y)))


# (400, 401): 40100 Philox counters, more than one chunk of rbg_cpu._CHUNK (32768, drawn as
# rbg_cpu._CHAINS round loops) and a partial last one; (64, 128): 2048 counters in one chunk
# split into chains; sizes not a multiple of 4 leave part of the last counter's words unused.
BIG = (400, 401)
FAST_SHAPES = ((1,), (3,), (7, 5), (2, 3, 11), (64, 128), BIG)


def test_big_shape_spans_chunks():
  assert math.prod(BIG) // 4 > rbg_cpu._CHUNK  # else the tests below miss the chunk loop


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_fast_rbg_bits_equal_xla_rng_bit_generator(impl):
  for seed in (0, 123):
    key = jax.random.key(seed, impl=impl)
    fast = rbg_cpu.fast_key(key)
    for shape in FAST_SHAPES:
      np.testing.assert_array_equal(
          np.asarray(jax.random.bits(fast, shape, jnp.uint32)),
          np.asarray(jax.random.bits(key, shape, jnp.uint32)), err_msg=f"{impl} {seed} {shape}")
  # Counters whose low 32 and 64 bits overflow (the carries into the next words).
  for data in ((1, 2, 0xFFFFFFF0, 0), (1, 2, 0xFFFFFFF0, 0xFFFFFFFF),
               (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF)):
    key = jax.random.wrap_key_data(jnp.array(data, jnp.uint32), impl=impl)
    np.testing.assert_array_equal(
        np.asarray(jax.random.bits(rbg_cpu.fast_key(key), (257,), jnp.uint32)),
        np.asarray(jax.random.bits(key, (257,), jnp.uint32)), err_msg=f"{impl} {data}")


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_rbg_draws_equal_jax_random(impl):
  """jinit's normal/uniform/truncated_normal with rbg keys are jax.random's numbers."""
  key = jax.random.key(11, impl=impl)
  shape = BIG
  pairs = {
      "normal": (jinit.normal(key, shape), jax.random.normal(key, shape)),
      "uniform": (jinit.uniform(key, shape), jax.random.uniform(key, shape, minval=-1.0,
                                                                 maxval=1.0)),
      "truncated_normal": (jinit.truncated_normal(key, shape, std=1.0, corrected=False),
                           jax.random.truncated_normal(key, -2.0, 2.0, shape)),
  }
  for name, (ours, theirs) in pairs.items():
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=f"{impl} {name}")
  # Under vmap over keys, each row is that key's draw. (jax's own rbg draws under vmap are
  # not: rng_bit_generator's batching rule gives the second key other bits than its
  # unbatched draw, so there jinit equals jax.random per key, not jax.vmap of it.)
  keys = jax.random.split(key, 2)
  np.testing.assert_array_equal(
      np.asarray(jax.vmap(lambda k: jinit.normal(k, shape))(keys)),
      np.stack([np.asarray(jax.random.normal(k, shape)) for k in keys]), err_msg=f"{impl} vmap")
  # Split keys (sparse draws values and a mask from two halves) keep jax's split.
  np.testing.assert_array_equal(np.asarray(jax.random.key_data(jax.random.split(key))),
                                np.asarray(jax.random.key_data(jax.random.split(
                                    rbg_cpu.fast_key(key)))))


@pytest.mark.slow  # ten compiles per implementation
@pytest.mark.parametrize("impl", IMPLS[1:])
def test_scaled_rbg_draws_equal_jitted_jax_random(impl):
  """The scale (and shift) runs inside the chunk loop, as XLA runs it inside jax's fused draw:
  jinit's scaled rbg draws equal ``jax.jit(lambda k: jax.random.normal(k, shape) * s + m)``
  bit for bit (XLA folds sqrt(2) * s into one constant in both)."""
  key = jax.random.key(5, impl=impl)
  shape = BIG  # the chunk loop, with a partial last chunk
  f32 = np.float32
  s_xn, s_kn = math.sqrt(2.0 / (BIG[0] + BIG[1])), math.sqrt(2.0 / BIG[0])
  s_xu = math.sqrt(3.0) * s_xn
  normal = lambda k: jax.random.normal(k, shape)
  uniform = lambda k: jax.random.uniform(k, shape, minval=-1.0, maxval=1.0)

  def jitted(draw, s, m=None):
    if m is None:
      return jax.jit(lambda k: draw(k) * f32(s))(key)
    return jax.jit(lambda k: draw(k) * f32(s) + f32(m))(key)

  pairs = {
      "xavier_normal": (jinit.xavier_normal(key, shape), jitted(normal, s_xn)),
      "kaiming_normal": (jinit.kaiming_normal(key, shape), jitted(normal, s_kn)),
      "normal(std=0.3, mean=0.1)": (jinit.normal(key, shape, std=0.3, mean=0.1),
                                    jitted(normal, 0.3, 0.1)),
      "xavier_uniform": (jinit.xavier_uniform(key, shape), jitted(uniform, s_xu)),
      "uniform(a=0.7)": (jinit.uniform(key, shape, a=0.7), jitted(uniform, 0.7)),
  }
  for name, (ours, theirs) in pairs.items():
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=f"{impl} {name}")


@pytest.mark.parametrize("impl", IMPLS[1:])
def test_fast_rbg_path_is_taken_on_cpu(impl):
  key = jax.random.key(0, impl=impl)
  ours = jax.jit(lambda k: jinit.xavier_normal(k, (64, 64))).lower(key).as_text()
  theirs = jax.jit(lambda k: jax.random.normal(k, (64, 64))).lower(key).as_text()
  assert "rng_bit_generator" in theirs
  if jax.default_backend() == "cpu":
    assert "rng_bit_generator" not in ours
  # 8-, 16- and 64-bit draws keep XLA's generator (the fast path is for 32-bit words only).
  bits64 = jax.jit(lambda k: jax.random.bits(rbg_cpu.fast_key(k), (8,), jnp.uint16))
  assert "rng_bit_generator" in bits64.lower(key).as_text()


def test_fast_key_leaves_other_keys_alone():
  threefry = jax.random.key(0)
  assert rbg_cpu.fast_key(threefry) is threefry
  fast = rbg_cpu.fast_key(jax.random.key(0, impl="rbg"))
  assert rbg_cpu.fast_key(fast) is fast
  raw = jax.random.PRNGKey(0)  # threefry's raw (2,) key under the default implementation
  assert rbg_cpu.fast_key(raw) is raw
