"""Tests of jinit.flax: jinit initializers inside Flax linen and nnx layers.

Statistical checks use ``check_law`` (conftest.py): fixed keys, >= 1e5 samples,
tolerances derived from the sample size.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import linen as nn
from flax import nnx
from helpers import truncnorm
from helpers import uniform

import jinit
import jinit.flax as jflax

KEY = jax.random.key(0)
TN = jinit.truncated_std(-2.0, 2.0)


# Dense(128) on 784 inputs: a (784, 128) kernel, 100352 samples.
DENSE_CASES = [  # (id, init, hyperparameters, law for fan_in=784, fan_out=128)
    ("kaiming_normal-relu", jinit.kaiming_normal, {"nonlinearity": "relu"},
     scipy.stats.norm(0, math.sqrt(2 / 784))),
    ("xavier_uniform", jinit.xavier_uniform, {}, uniform(math.sqrt(6 / (784 + 128)))),
    ("lecun_normal", jinit.lecun_normal, {}, truncnorm(math.sqrt(1 / 784) / TN)),
    ("orthogonal-gain2", jinit.orthogonal, {"gain": 2.0}, None),
]


@pytest.mark.parametrize("init,hyper,law", [pytest.param(*c[1:], id=c[0]) for c in DENSE_CASES])
def test_linen_dense_kernel_init(init, hyper, law, check_law):
  model = nn.Dense(128, kernel_init=jflax.kernel_init(init, **hyper))
  params = jax.jit(model.init)(KEY, jnp.ones((1, 784)))["params"]
  kernel = np.asarray(params["kernel"])
  chex.assert_shape(kernel, (784, 128))
  if law is None:  # orthogonal: W^T W = gain^2 I
    np.testing.assert_allclose(kernel.T.astype(np.float64) @ kernel, 4 * np.eye(128), atol=1e-4)
  else:
    check_law(kernel, law, what=init.__name__)


CONV_CASES = [  # nn.Conv(192, (3, 3)) on 64 channels: kernel (3, 3, 64, 192), 110592 samples,
    # fans from (*window, in, out): fan_in = 9 * 64 = 576, fan_out = 9 * 192 = 1728.
    ("he_uniform", jinit.he_uniform, {}, uniform(math.sqrt(6 / 576))),
    ("xavier_normal", jinit.xavier_normal, {}, scipy.stats.norm(0, math.sqrt(2 / (576 + 1728)))),
]


@pytest.mark.parametrize("init,hyper,law", [pytest.param(*c[1:], id=c[0]) for c in CONV_CASES])
def test_linen_conv_kernel_init(init, hyper, law, check_law):
  model = nn.Conv(192, (3, 3), kernel_init=jflax.kernel_init(init, **hyper))
  params = jax.jit(model.init)(KEY, jnp.ones((1, 8, 8, 64)))["params"]
  chex.assert_shape(params["kernel"], (3, 3, 64, 192))
  check_law(params["kernel"], law, what=init.__name__)


def test_kernel_init_explicit_axes(check_law):
  """An attention-style kernel (512, 8, 64): fans (512, 512) from in_axis/out_axis."""
  init = jflax.kernel_init(jinit.xavier_normal, layout=None, in_axis=0, out_axis=(1, 2))
  kernel = init(KEY, (512, 8, 64))
  chex.assert_shape(kernel, (512, 8, 64))
  check_law(kernel, scipy.stats.norm(0, math.sqrt(2 / 1024)), what="explicit axes")
  # The default "flax" layout reads a rank-3 shape as a conv kernel: fans (4096, 512).
  np.testing.assert_array_equal(
      np.asarray(jflax.kernel_init(jinit.xavier_uniform)(KEY, (512, 8, 64))),
      np.asarray(jinit.xavier_uniform(KEY, (512, 8, 64), 512 * 8, 512 * 64)))


def test_kernel_init_in_dense_general(check_law):
  """linen's DenseGeneral flattens its kernel to (in, out) before calling kernel_init."""
  model = nn.DenseGeneral((8, 64), kernel_init=jflax.kernel_init(jinit.xavier_normal))
  kernel = jax.jit(model.init)(KEY, jnp.ones((1, 512)))["params"]["kernel"]
  chex.assert_shape(kernel, (512, 8, 64))
  check_law(kernel, scipy.stats.norm(0, math.sqrt(2 / 1024)), what="DenseGeneral")


def test_dense_torch_linear_default_kernel_and_bias(check_law):
  """PyTorch's nn.Linear: kernel AND bias ~ U(+-1/sqrt(fan_in)), variance 1/(3 fan_in)."""
  fan_in, features = 64, 1024
  model = jflax.Dense(features, kernel_init=jinit.torch_linear_default,
                      bias_init=jinit.torch_linear_default)
  x = jnp.ones((1, fan_in))
  keys = jax.random.split(jax.random.key(11), 100)
  params = jax.jit(jax.vmap(lambda k: model.init(k, x)["params"]))(keys)  # 100 layers
  law = uniform(1 / math.sqrt(fan_in))
  assert law.var() == pytest.approx(1 / (3 * fan_in))
  check_law(params["bias"], law, what="bias")  # 102400 samples
  check_law(params["kernel"][:2], law, what="kernel")  # 131072 samples
  # Kernel and bias are drawn from different keys.
  assert not np.array_equal(np.asarray(params["bias"][0]), np.asarray(params["kernel"][0, 0]))


def test_dense_is_interchangeable_with_nn_dense():
  x = jax.random.normal(jax.random.key(3), (5, 32))
  ours = jflax.Dense(16, kernel_init=jinit.torch_linear_default,
                     bias_init=jinit.torch_linear_default)
  theirs = nn.Dense(16)
  params = jax.jit(ours.init)(KEY, x)
  reference = jax.jit(theirs.init)(KEY, x)
  assert jax.tree.structure(params) == jax.tree.structure(reference)
  chex.assert_trees_all_equal_shapes_and_dtypes(params, reference)
  np.testing.assert_array_equal(np.asarray(ours.apply(params, x)),
                                np.asarray(theirs.apply(params, x)))
  # Same parameter names and rng paths: with Flax's defaults (lecun_normal, zeros)
  # jinit.flax.Dense initializes like nn.Dense (equal up to float32 rounding).
  default = jax.jit(jflax.Dense(16).init)(KEY, x)
  chex.assert_trees_all_close(default, reference, rtol=1e-6, atol=1e-7)
  # No bias: only a kernel, as nn.Dense(use_bias=False).
  no_bias = jflax.Dense(16, use_bias=False).init(KEY, x)
  assert set(no_bias["params"]) == {"kernel"}


def test_dense_bias_init_sees_kernel_fans():
  seen = []

  def spy(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
    seen.append((tuple(shape), fan_in, fan_out))
    return jinit.zeros(key, shape, dtype=dtype)

  jflax.Dense(7, kernel_init=spy, bias_init=spy).init(KEY, jnp.ones((2, 3, 5)))
  assert seen == [((5, 7), 5, 7), ((7,), 5, 7)]


def test_nnx_linear_torch_default(check_law):
  layer = jflax.nnx_linear(16, 100_000, kernel_init=jinit.torch_linear_default,
                           bias_init=jinit.torch_linear_default, rngs=nnx.Rngs(0))
  assert isinstance(layer, nnx.Linear)
  law = uniform(1 / 4)
  check_law(layer.bias[...], law, what="nnx bias")
  check_law(layer.kernel[...][:2], law, what="nnx kernel")  # 200000 samples
  x = jax.random.normal(KEY, (3, 16))
  expected = x @ layer.kernel[...] + layer.bias[...][None, :]
  np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_kernel_init_inside_nnx_layers(check_law):
  rngs = nnx.Rngs(1)
  linear = nnx.Linear(784, 128, rngs=rngs, kernel_init=jflax.kernel_init(
      jinit.kaiming_normal, nonlinearity="relu"))
  check_law(linear.kernel[...], scipy.stats.norm(0, math.sqrt(2 / 784)), what="nnx.Linear")
  conv = nnx.Conv(64, 192, (3, 3), rngs=rngs, kernel_init=jflax.kernel_init(jinit.he_uniform))
  chex.assert_shape(conv.kernel[...], (3, 3, 64, 192))
  check_law(conv.kernel[...], uniform(math.sqrt(6 / 576)), what="nnx.Conv")


def test_bias_init_binds_fans(check_law):
  """jinit.flax.bias_init gives a plain Flax bias init the kernel's fan_in."""
  model = nn.Dense(100_000, bias_init=jflax.bias_init(jinit.torch_linear_default, fan_in=784))
  bias = jax.jit(model.init)(KEY, jnp.ones((1, 1)))["params"]["bias"]
  check_law(bias, uniform(1 / 28), what="bias")


@pytest.mark.parametrize("kernel_size,n_in,n_out,groups", [
    ((3, 3), 6, 6, 2), ((5,), 4, 6, 1), ((3, 1, 5), 3, 3, 1)])
def test_dirac_is_identity_in_conv(kernel_size, n_in, n_out, groups):
  conv = nn.Conv(n_out, kernel_size, padding="SAME", use_bias=False, feature_group_count=groups,
                 kernel_init=jflax.kernel_init(jinit.dirac, groups=groups))
  x = jax.random.normal(jax.random.key(4), (2, *([7] * len(kernel_size)), n_in))
  y = np.asarray(jax.jit(lambda k, x: conv.apply(conv.init(k, x), x))(KEY, x))
  n = min(n_in, n_out)
  np.testing.assert_array_equal(y[..., :n], np.asarray(x)[..., :n])
  assert not np.any(y[..., n:])


@pytest.mark.parametrize("kernel_size,n_in,n_out,gain", [((3, 3), 8, 8, 1.0), ((3,), 4, 8, 2.0)])
def test_delta_orthogonal_conv_preserves_norms(kernel_size, n_in, n_out, gain):
  """Only the center tap is nonzero and orthogonal: ||y|| = gain ||x|| at every position."""
  conv = nn.Conv(n_out, kernel_size, padding="SAME", use_bias=False,
                 kernel_init=jflax.kernel_init(jinit.delta_orthogonal, gain=gain))
  x = jax.random.normal(jax.random.key(5), (2, *([6] * len(kernel_size)), n_in))
  y = jax.jit(lambda k, x: conv.apply(conv.init(k, x), x))(KEY, x)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(y), axis=-1),
                             gain * np.linalg.norm(np.asarray(x), axis=-1), rtol=1e-5)


def test_kernel_init_passes_dtype():
  model = nn.Dense(8, param_dtype=jnp.bfloat16, kernel_init=jflax.kernel_init(jinit.he_uniform))
  # Flax's own Dense promotes the float32 input with the bfloat16 params implicitly, which
  # the tests' strict promotion refuses (flax's code, not jinit's): init under jax's default.
  with jax.numpy_dtype_promotion("standard"):
    kernel = model.init(KEY, jnp.ones((1, 4)))["params"]["kernel"]
  chex.assert_type(kernel, jnp.bfloat16)
  assert float(jnp.max(jnp.abs(kernel))) <= math.sqrt(6 / 4) * (1 + 2**-7)


def test_flax_bad_input():
  with pytest.raises(TypeError, match="init must be a jinit initializer"):
    jflax.kernel_init("he_normal")
  with pytest.raises(ValueError, match="layout must be one of 'dense', 'conv'"):
    jflax.kernel_init(jinit.he_normal, layout="nchw")
  with pytest.raises(ValueError, match="layout must be one of"):
    jflax.kernel_init(jinit.he_normal, layout=None)
  with pytest.raises(ValueError, match="either layout or in_axis/out_axis"):
    jflax.kernel_init(jinit.he_normal, layout="dense", in_axis=0, out_axis=1)
  with pytest.raises(TypeError, match="bias_init must be a jinit initializer"):
    jflax.nnx_linear(2, 3, bias_init=None, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="features must be a positive int"):
    jflax.Dense(0).init(KEY, jnp.ones((1, 3)))
  # A bias init that needs fan_in, used without it, says so.
  with pytest.raises(ValueError, match="fan_in is required"):
    nn.Dense(3, bias_init=jflax.bias_init(jinit.torch_linear_default)).init(KEY, jnp.ones((1, 2)))


def test_kernel_init_equation_in_einsum(check_law):
  """nnx.Einsum passes its full kernel shape: equation= gives the true fans (512, 512)."""
  eq = "btd,dhk->bthk"
  layer = nnx.Einsum(eq, (512, 4, 64), rngs=nnx.Rngs(0),
                     kernel_init=jinit.nnx.kernel_init(jinit.xavier_normal, equation=eq))
  check_law(layer.kernel[...], scipy.stats.norm(0, math.sqrt(2 / (512 + 256))), what="einsum")
  linen = nn.Einsum((512, 4, 64), eq, kernel_init=jinit.linen.kernel_init(
      jinit.orthogonal, equation=eq))
  kernel = np.asarray(linen.init(KEY, jnp.ones((1, 2, 512)))["params"]["kernel"])
  m = kernel.reshape(512, 256).astype(np.float64)  # grouped (d, h*k) matrix: orthonormal columns
  np.testing.assert_allclose(m.T @ m, np.eye(256), atol=1e-5)


def test_kernel_init_documented_rank3_guess():
  """Without equation/axes a rank-3 shape is read as a 1-D conv kernel (width, in, out)."""
  guess = jflax.kernel_init(jinit.lecun_normal)(KEY, (512, 4, 64))
  np.testing.assert_array_equal(
      np.asarray(guess), np.asarray(jinit.lecun_normal(KEY, (512, 4, 64), 512 * 4, 512 * 64)))
