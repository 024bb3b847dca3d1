"""Tests of jinit.compute_fans, jinit.calculate_gain, jinit.gain_for and truncated_std."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

import jinit

# --------------------------------------------------------------------------- compute_fans

FAN_CASES = [  # (shape, layout, expected (fan_in, fan_out))
    ((64, 48), "dense", (64, 48)),
    ((64, 48), "flax", (64, 48)),
    ((3, 3, 64, 128), "conv", (576, 1152)),
    ((3, 3, 64, 128), "flax", (576, 1152)),
    ((5, 16, 32), "conv", (80, 160)),  # Conv1D
    ((2, 3, 3, 4, 8), "flax", (72, 144)),  # Conv3D
    ((50, 784), "torch_linear", (784, 50)),
    # PyTorch Conv2d(in=32, out=64, 3x3, groups=4): weight (64, 32/4, 3, 3); torch's
    # _calculate_fan_in_and_fan_out gives fan_in = 8 * 9, fan_out = 64 * 9.
    ((64, 8, 3, 3), "torch_conv", (72, 576)),
    ((64, 32, 3, 3), "torch_conv", (288, 576)),  # groups=1
    ((16, 4, 5), "torch_conv", (20, 80)),  # Conv1d
]


@pytest.mark.parametrize("shape,layout,expected", FAN_CASES,
                         ids=[f"{c[1]}-{'x'.join(map(str, c[0]))}" for c in FAN_CASES])
def test_compute_fans_layouts(shape, layout, expected):
  fans = jinit.compute_fans(shape, layout)
  assert fans == expected
  assert all(type(f) is int for f in fans)


def test_every_layout_is_tested():
  assert {c[1] for c in FAN_CASES} == set(jinit.LAYOUTS)


AXES_CASES = [  # (shape, in_axis, out_axis, batch_axis, expected)
    ((512, 8, 64), 0, (1, 2), (), (512, 512)),  # attention query kernel (d_model, heads, head_dim)
    ((8, 64, 512), (0, 1), 2, (), (512, 512)),  # attention output kernel
    ((8, 64, 512), (-3, -2), -1, (), (512, 512)),  # negative axes
    ((4, 3, 3, 16, 32), -2, -1, 0, (144, 288)),  # a batch of 4 conv kernels
    ((3, 3, 16, 32), 2, 3, (), (144, 288)),  # = conv layout
    ((32, 16, 3, 3), 1, 0, (), (144, 288)),  # = torch_conv layout
]


@pytest.mark.parametrize("shape,in_axis,out_axis,batch_axis,expected", AXES_CASES)
def test_compute_fans_explicit_axes(shape, in_axis, out_axis, batch_axis, expected):
  assert jinit.compute_fans(shape, in_axis=in_axis, out_axis=out_axis,
                            batch_axis=batch_axis) == expected


@pytest.mark.parametrize("shape,in_axis,out_axis,batch_axis,expected",
                         [AXES_CASES[3]])
def test_compute_fans_agrees_with_jax_variance_scaling(shape, in_axis, out_axis, batch_axis,
                                                       expected):
  """jax's variance_scaling computes fans from axes internally: same fans, same samples."""
  del expected
  key = jax.random.key(0)
  fans = jinit.compute_fans(shape, in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis)
  ours = jinit.variance_scaling(key, shape, *fans, mode="fan_avg", distribution="normal")
  theirs = jax.nn.initializers.variance_scaling(
      1.0, "fan_avg", "normal", in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis)(
          key, shape, jnp.float32)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- calculate_gain

GAIN_TABLE = {  # torch.nn.init.calculate_gain
    "linear": 1.0, "identity": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0,
    "conv_transpose1d": 1.0, "conv_transpose2d": 1.0, "conv_transpose3d": 1.0,
    "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0),
    "leaky_relu": math.sqrt(2.0 / (1.0 + 0.01**2)), "selu": 3.0 / 4.0,
}


@pytest.mark.parametrize("name", sorted(GAIN_TABLE))
def test_calculate_gain_table(name):
  assert jinit.calculate_gain(name) == pytest.approx(GAIN_TABLE[name], rel=1e-15)


def test_gain_table_covers_nonlinearities():
  assert set(GAIN_TABLE) == set(jinit.NONLINEARITIES)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, math.sqrt(5), 1.0, 3])
def test_calculate_gain_leaky_relu_slope(slope):
  assert jinit.calculate_gain("leaky_relu", slope) == pytest.approx(
      math.sqrt(2.0 / (1.0 + slope**2)), rel=1e-15)


def test_leaky_relu_sqrt5_gives_torch_linear_bound():
  """gain(sqrt 5) = sqrt(1/3), so kaiming_uniform's bound sqrt(3) * gain / sqrt(n) = 1/sqrt(n)."""
  assert math.sqrt(3) * jinit.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(1.0)


# --------------------------------------------------------------------------- gain_for


def _quad_gain(f):
  """1 / sqrt(E[f(z)^2]), z ~ N(0, 1), by adaptive quadrature in float64 (scipy)."""
  m2, _ = scipy.integrate.quad(lambda z: f(z)**2 * scipy.stats.norm.pdf(z), -np.inf, np.inf,
                               epsabs=1e-13, epsrel=1e-12)
  return 1.0 / math.sqrt(m2)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
NUMPY_ACTIVATIONS = {  # (jax function, the same function written in float64 numpy)
    "gelu_tanh": (jax.nn.gelu, lambda x: 0.5 * x * (1 + np.tanh(
        _SQRT_2_OVER_PI * (x + 0.044715 * x**3)))),
    "gelu_exact": (functools.partial(jax.nn.gelu, approximate=False),
                   lambda x: x * scipy.stats.norm.cdf(x)),
    "silu": (jax.nn.silu, lambda x: x * scipy.special.expit(x)),
    "tanh": (jnp.tanh, np.tanh),
    "sigmoid": (jax.nn.sigmoid, scipy.special.expit),
    "softplus": (jax.nn.softplus, lambda x: np.logaddexp(0.0, x)),
    "elu": (jax.nn.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))),
    "selu": (jax.nn.selu, lambda x: 1.0507009873554805 * np.where(
        x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0.0)))),
}


@pytest.mark.parametrize("name", sorted(NUMPY_ACTIVATIONS))
def test_gain_for_matches_quadrature(name):
  fn, reference = NUMPY_ACTIVATIONS[name]
  g = jinit.gain_for(fn)
  assert math.isfinite(g) and g > 0
  # gain_for evaluates fn in float32 (relative error ~1e-7) at 200 Gauss-Hermite
  # nodes: for smooth activations the rule has converged (measured error ~1e-8).
  # elu and selu have a kink in a higher derivative at 0 (not a polynomial on
  # either side), where the symmetric rule converges only algebraically:
  # measured relative errors 5.5e-6 (elu) and 1.1e-5 (selu), so allow 1e-4 there.
  rel = 1e-4 if name in ("elu", "selu") else 1e-6
  assert g == pytest.approx(_quad_gain(reference), rel=rel)


def test_gain_for_documented_values():
  assert jinit.gain_for(jnp.tanh) == pytest.approx(1.593, abs=5e-4)
  assert jinit.gain_for(jax.nn.sigmoid) == pytest.approx(1.846, abs=5e-4)
  # selu's constants make E[selu(z)^2] = 1 for z ~ N(0, 1) (Klambauer et al. 2017).
  assert jinit.gain_for(jax.nn.selu) == pytest.approx(1.0, abs=1e-4)


def test_gain_for_closed_forms():
  assert jinit.gain_for(jax.nn.relu) == pytest.approx(math.sqrt(2.0), abs=1e-6)
  assert jinit.gain_for(jax.nn.relu) == pytest.approx(jinit.calculate_gain("relu"), abs=1e-6)
  assert jinit.gain_for(lambda x: x) == pytest.approx(1.0, abs=1e-6)
  assert jinit.gain_for(lambda x: 3.0 * x) == pytest.approx(1.0 / 3.0, abs=1e-6)
  for slope in [0.01, 0.2, 0.5]:
    g = jinit.gain_for(functools.partial(jax.nn.leaky_relu, negative_slope=slope))
    assert g == pytest.approx(math.sqrt(2.0 / (1.0 + slope**2)), abs=1e-6)
    assert g == pytest.approx(jinit.calculate_gain("leaky_relu", slope), abs=1e-6)
  assert jinit.gain_for(jax.nn.leaky_relu) == pytest.approx(GAIN_TABLE["leaky_relu"], abs=1e-6)


@pytest.mark.parametrize("name", ["gelu_tanh", "silu", "tanh", "sigmoid", "elu"])
def test_gain_for_monte_carlo(name):
  """The defining property, by Monte Carlo: E[(g f(z))^2] = 1 for z ~ N(0, 1).

  With n = 1e6 draws, the sample mean of u = (g f(z))^2 has standard error
  std(u) / sqrt(n); allow 6 of them (~0.3% for these activations).
  """
  fn, reference = NUMPY_ACTIVATIONS[name]
  g = jinit.gain_for(fn)
  z = np.random.default_rng(0).standard_normal(1_000_000)
  u = (g * reference(z))**2
  assert abs(u.mean() - 1.0) <= 6 * u.std() / math.sqrt(u.size)


# --------------------------------------------------------------------------- truncated_std


def test_truncated_std_jax_constant():
  assert jinit.truncated_std(-2.0, 2.0) == pytest.approx(0.87962566103423978, abs=1e-12)
  assert jinit.truncated_std() == jinit.truncated_std(-2.0, 2.0)


@pytest.mark.parametrize("lower,upper", [(-1.0, 3.0), (0.0, 10.0), (-0.5, 0.5), (-3.0, -1.0)])
def test_truncated_std_matches_scipy(lower, upper):
  assert jinit.truncated_std(lower, upper) == pytest.approx(
      scipy.stats.truncnorm(lower, upper).std(), rel=1e-10)
