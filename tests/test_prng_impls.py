"""Every PRNG implementation (issue 20): threefry2x32, rbg and unsafe_rbg keys, typed and raw.

The core table (every initializer on a dense and a conv shape) runs once per key
implementation: the result has the shape and dtype asked for and is finite, the
same key gives the same bits (eager, again, and under jit), another key gives other
values (where the initializer is random). The normal/uniform laws hold with every
implementation (conftest.check_law), raw uint32 keys of the default implementation
are accepted (shape (2,) threefry, (4,) rbg) and one of the wrong shape is a clear
TypeError; reinit (nnx, linen) and LSUV take rbg keys.
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

IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
DENSE, CONV = (24, 16), (3, 3, 8, 16)
DETERMINISTIC = {"zeros", "ones", "constant", "eye", "dirac"}


def _shape(name):
  return CONV if name in ("dirac", "delta_orthogonal") else DENSE


def _call(name, key, **kw):
  shape = _shape(name)
  hyper = {"value": 0.5} if name == "constant" else {}
  return jinit.INITIALIZERS[name](key, shape, *jinit.compute_fans(shape, "flax"), **hyper, **kw)


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
