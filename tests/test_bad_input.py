"""Bad input raises a ValueError/TypeError that names the argument (and the allowed values).

Table-driven: one row per (bad call, expected error, message pattern). The checks
run before anything is sampled, so these tests compile (almost) nothing.
"""

import functools
import re

import jax
import jax.numpy as jnp
import pytest

import jinit

KEY = jax.random.key(0)
ALL_MODES = "mode must be one of 'fan_in', 'fan_out', 'fan_avg', 'fan_geo_avg'; got"
ALL_DISTRIBUTIONS = "distribution must be one of 'truncated_normal', 'normal', 'uniform'; got"
ALL_NONLINEARITIES = "nonlinearity must be one of " + ", ".join(map(repr, jinit.NONLINEARITIES))
ALL_LAYOUTS = "layout must be one of 'dense', 'conv', 'flax', 'torch_linear', 'torch_conv'; got"

xavier = functools.partial(jinit.xavier_uniform, KEY)
kaiming = functools.partial(jinit.kaiming_uniform, KEY)

CASES = [  # (id, call, error type, message pattern (regex-escaped unless it starts with ^))
    # shapes
    ("negative-dim", lambda: jinit.normal(KEY, (3, -1)), ValueError,
     "shape must contain non-negative dimensions, got (3, -1)"),
    ("negative-dim-orthogonal", lambda: jinit.orthogonal(KEY, (0, -4)), ValueError,
     "shape must contain non-negative dimensions"),
    ("zero-fan-nonempty-shape", lambda: xavier((2, 4), 0, 4), ValueError,
     "fan_in must be a positive int, got 0"),
    ("float-dim", lambda: jinit.normal(KEY, (3.0, 2)), TypeError, "shape must contain ints"),
    ("string-shape", lambda: jinit.normal(KEY, "3x3"), TypeError, "shape must be a sequence"),
    ("orthogonal-empty", lambda: jinit.orthogonal(KEY, ()), ValueError,
     "shape must have rank >= 2"),
    ("orthogonal-1d", lambda: jinit.orthogonal(KEY, (5,)), ValueError,
     "shape must have rank >= 2 for this initializer, got (5,)"),
    ("dirac-2d", lambda: jinit.dirac(KEY, (3, 3)), ValueError,
     "dirac needs a Flax conv kernel shape"),
    ("dirac-6d", lambda: jinit.dirac(KEY, (1, 1, 1, 1, 2, 2)), ValueError, "rank 3 to 5"),
    ("delta_orthogonal-2d", lambda: jinit.delta_orthogonal(KEY, (4, 4)), ValueError,
     "delta_orthogonal needs a Flax conv kernel shape"),
    ("delta_orthogonal-in>out", lambda: jinit.delta_orthogonal(KEY, (3, 3, 8, 4)), ValueError,
     "delta_orthogonal needs in <= out channels"),
    ("eye-3d", lambda: jinit.eye(KEY, (2, 2, 2)), ValueError, "eye needs a 2-D shape"),
    ("sparse-1d", lambda: jinit.sparse(KEY, (4,)), ValueError, "sparse needs a 2-D shape"),
    # fans
    ("fan_in-zero", lambda: xavier((3, 3), 0, 3), ValueError,
     "fan_in must be a positive int, got 0"),
    ("fan_out-negative", lambda: xavier((3, 3), 3, -2), ValueError,
     "fan_out must be a positive int, got -2"),
    ("fan_in-float", lambda: xavier((3, 3), 2.5, 3), TypeError,
     "fan_in must be a positive int, got float 2.5"),
    ("fan_out-string", lambda: xavier((3, 3), 3, "3"), TypeError,
     "fan_out must be a positive int, got str '3'"),
    ("fan_in-bool", lambda: xavier((3, 3), True, 3), TypeError, "fan_in must be a positive int"),
    ("fan_in-nan", lambda: xavier((3, 3), float("nan"), 3), TypeError, "fan_in must be a positive"),
    # Neither fan and a rank >= 2 shape reads Flax's layout (tests/test_flax_dropin.py);
    # a shape with no fans to read says where the true fans come from.
    ("fan_in-missing", lambda: kaiming((3,)), ValueError, "fan_in is required"),
    ("fan_in-missing-hint", lambda: kaiming((3,)), ValueError, "jinit.linen.reinit"),
    ("fan_out-missing-fan_avg", lambda: xavier((3, 3), 3), ValueError, "fan_out is required"),
    ("fan_out-missing-mode", lambda: kaiming((3, 3), 3, mode="fan_out"), ValueError,
     "fan_out is required"),
    ("torch_linear_default-no-fan", lambda: jinit.torch_linear_default(KEY, (3,)), ValueError,
     "fan_in is required"),
    # choices (the message lists the allowed values)
    ("unknown-mode", lambda: jinit.variance_scaling(KEY, (3, 3), 3, 3, mode="fan_sum"),
     ValueError, ALL_MODES + " 'fan_sum'"),
    ("kaiming-mode-fan_avg", lambda: kaiming((3, 3), 3, 3, mode="fan_avg"), ValueError,
     "mode must be one of 'fan_in', 'fan_out'; got 'fan_avg'"),
    ("unknown-distribution",
     lambda: jinit.variance_scaling(KEY, (3, 3), 3, 3, distribution="cauchy"), ValueError,
     ALL_DISTRIBUTIONS + " 'cauchy'"),
    ("unknown-nonlinearity", lambda: kaiming((3, 3), 3, 3, nonlinearity="swish"), ValueError,
     ALL_NONLINEARITIES),
    ("calculate_gain-unknown", lambda: jinit.calculate_gain("gelu"), ValueError,
     ALL_NONLINEARITIES + "; got 'gelu'"),
    ("unknown-layout", lambda: jinit.compute_fans((3, 3), "nchw"), ValueError,
     ALL_LAYOUTS + " 'nchw'"),
    ("no-layout-no-axes", lambda: jinit.compute_fans((3, 3)), ValueError,
     "layout must be one of"),
    ("layout-rank", lambda: jinit.compute_fans((3, 3, 3), "dense"), ValueError,
     "layout='dense' needs a shape of rank exactly 2"),
    ("conv-layout-rank", lambda: jinit.compute_fans((3, 3), "torch_conv"), ValueError,
     "layout='torch_conv' needs a shape of rank >= 3"),
    ("axis-out-of-range", lambda: jinit.compute_fans((3, 3), in_axis=0, out_axis=2), ValueError,
     "out_axis=2 is out of range"),
    ("axes-overlap", lambda: jinit.compute_fans((3, 3, 3), in_axis=0, out_axis=(0, 1)),
     ValueError, "overlap"),
    ("layout-and-axes", lambda: jinit.compute_fans((3, 3), "dense", in_axis=0, out_axis=1),
     ValueError, "either layout or in_axis/out_axis"),
    ("unknown-initializer", lambda: jinit.get_initializer("he_normall"), ValueError,
     "unknown initializer 'he_normall'; known: constant, delta_orthogonal, dirac, eye"),
    ("get_initializer-non-string", lambda: jinit.get_initializer(jinit.he_normal), ValueError,
     "unknown initializer"),
    # gains
    ("leaky_relu-string-slope", lambda: jinit.calculate_gain("leaky_relu", "0.2"), TypeError,
     "param (negative_slope of leaky_relu) must be a number, got '0.2'"),
    ("leaky_relu-bool-slope", lambda: jinit.calculate_gain("leaky_relu", True), TypeError,
     "param (negative_slope of leaky_relu) must be a number"),
    ("kaiming-string-a", lambda: kaiming((3, 3), 3, 3, a="0.2"), TypeError,
     "a must be a real number, got '0.2'"),
    ("param-for-relu", lambda: jinit.calculate_gain("relu", 0.1), ValueError,
     "param is only used by nonlinearity='leaky_relu'"),
    ("relu-with-a", lambda: kaiming((3, 3), 3, 3, a=0.1, nonlinearity="relu"), ValueError,
     "a is the negative slope of leaky_relu; it must be 0 for nonlinearity='relu'"),
    ("gain_for-non-callable", lambda: jinit.gain_for("relu"), TypeError,
     "activation must be callable, got 'relu'"),
    ("gain_for-zero-function", lambda: jinit.gain_for(jnp.zeros_like), ValueError,
     "no finite gain exists"),
    ("gain_for-nan-function", lambda: jinit.gain_for(jnp.log), ValueError,
     "no finite gain exists"),
    ("gain_for-not-elementwise", lambda: jinit.gain_for(jnp.sum), ValueError,
     "activation must map an array elementwise"),
    # dtypes
    ("int-dtype", lambda: jinit.normal(KEY, (3, 3), dtype=jnp.int32), TypeError,
     "dtype must be a floating or complex dtype (float16, bfloat16, float32, float64, "
     "complex64, complex128), got int32"),
    ("int-dtype-real-only", lambda: jinit.uniform(KEY, (3, 3), dtype=jnp.int32), TypeError,
     "dtype must be a floating dtype (float16, bfloat16, float32, float64), got int32"),
    ("bool-dtype", lambda: jinit.zeros(KEY, (3, 3), dtype=bool), TypeError,
     "dtype must be a floating or complex dtype"),
    ("uint8-dtype", lambda: jinit.orthogonal(KEY, (3, 3), dtype=jnp.uint8), TypeError,
     "dtype must be a floating or complex dtype"),
    ("complex-dtype-uniform", lambda: jinit.uniform(KEY, (3, 3), dtype=jnp.complex64),
     TypeError, "dtype must be a floating dtype (float16, bfloat16, float32, float64), got "
     "complex64; complex dtypes are accepted by variance_scaling"),
    ("complex-dtype-truncated_normal",
     lambda: jinit.truncated_normal(KEY, (3, 3), dtype=jnp.complex64), TypeError,
     "dtype must be a floating dtype"),
    ("garbage-dtype", lambda: jinit.normal(KEY, (3, 3), dtype="float17"), TypeError,
     "dtype must be a floating or complex dtype"),
    # hyperparameter ranges: never a silent NaN/inf or an all-zero "random" init
    ("sparsity-one", lambda: jinit.sparse(KEY, (4, 4), sparsity=1.0), ValueError,
     "sparsity must be in [0, 1), got 1.0"),
    ("sparsity-negative", lambda: jinit.sparse(KEY, (4, 4), sparsity=-0.1), ValueError,
     "sparsity must be in [0, 1)"),
    ("xavier-gain-zero", lambda: xavier((3, 3), 3, 3, gain=0.0), ValueError,
     "gain must be > 0, got 0.0"),
    ("xavier-gain-negative", lambda: jinit.xavier_normal(KEY, (3, 3), 3, 3, gain=-1.0),
     ValueError, "gain must be > 0, got -1.0"),
    ("orthogonal-gain-zero", lambda: jinit.orthogonal(KEY, (3, 3), gain=0), ValueError,
     "gain must be > 0"),
    ("gain-nan", lambda: xavier((3, 3), 3, 3, gain=float("nan")), ValueError,
     "gain must be finite"),
    ("gain-inf", lambda: jinit.orthogonal(KEY, (3, 3), gain=float("inf")), ValueError,
     "gain must be finite"),
    ("std-zero", lambda: jinit.normal(KEY, (3, 3), std=0.0), ValueError, "std must be > 0"),
    ("std-negative", lambda: jinit.truncated_normal(KEY, (3, 3), std=-1.0), ValueError,
     "std must be > 0"),
    ("uniform-a-zero", lambda: jinit.uniform(KEY, (3, 3), a=0.0), ValueError, "a must be > 0"),
    ("scale-zero", lambda: jinit.variance_scaling(KEY, (3, 3), 3, 3, scale=0.0), ValueError,
     "scale must be > 0"),
    ("constant-nan", lambda: jinit.constant(KEY, (3, 3), value=float("nan")), ValueError,
     "value must be finite"),
    ("constant-overflows-float16", lambda: jinit.constant(KEY, (3,), value=1e6,
                                                          dtype=jnp.float16),
     ValueError, "value=1000000.0 overflows dtype float16"),
    ("normal-std-overflows-float16", lambda: jinit.normal(KEY, (3,), std=1e5, dtype=jnp.float16),
     ValueError, "std=100000.0 overflows dtype float16"),
    ("xavier-gain-overflows-float16",
     lambda: xavier((3,), 1, 1, gain=1e5, dtype=jnp.float16), ValueError,
     "overflows dtype float16"),
    ("std-array", lambda: jinit.normal(KEY, (3,), std=jnp.ones(3)), TypeError,
     "std must be a real scalar"),
    ("truncation-bounds-reversed", lambda: jinit.truncated_normal(KEY, (3,), lower=2, upper=-2),
     ValueError, "lower must be < upper"),
    ("truncation-no-mass", lambda: jinit.truncated_normal(KEY, (3,), lower=40, upper=50),
     ValueError, "has no probability mass"),
    ("corrected-not-bool", lambda: jinit.truncated_normal(KEY, (3,), corrected="yes"), TypeError,
     "corrected must be a bool"),
    ("dirac-groups-zero", lambda: jinit.dirac(KEY, (3, 3, 4, 4), groups=0), ValueError,
     "groups must be a positive int, got 0"),
    ("dirac-groups-not-dividing", lambda: jinit.dirac(KEY, (3, 3, 4, 4), groups=3), ValueError,
     "groups=3 must divide the out channels"),
    ("orthogonal-column_axis", lambda: jinit.orthogonal(KEY, (3, 3), column_axis=2), ValueError,
     "column_axis must be an int in [-2, 2), got 2"),
    # call shape
    ("unknown-hyperparameter", lambda: jinit.normal(KEY, (3,), stdev=1.0), TypeError,
     "normal: got an unexpected keyword argument 'stdev'"),
    ("hyperparameter-positional", lambda: jinit.normal(KEY, (3,), None, None, 2.0), TypeError,
     "normal:"),
    ("bound-unknown-hyperparameter", lambda: jinit.get_initializer("he_normal", gain=2.0)(
        KEY, (3, 3), 3, 3), TypeError, "he_normal: got an unexpected keyword argument 'gain'"),
]


@pytest.mark.parametrize("call,error,message", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input(call, error, message):
  with pytest.raises(error, match=re.escape(message)):
    call()


def test_case_ids_are_unique():
  ids = [c[0] for c in CASES]
  assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(jinit.INITIALIZERS))
def test_every_initializer_rejects_bad_shape_and_dtype(name):
  fn = jinit.INITIALIZERS[name]
  shape = (3, 3, 4, 4)
  with pytest.raises(ValueError, match=re.escape("shape must contain non-negative dimensions")):
    fn(KEY, (3, 3, -1, 4), 36, 36)
  with pytest.raises(TypeError, match=re.escape("dtype must be a floating")):
    fn(KEY, shape, 36, 36, dtype=jnp.int8)
  with pytest.raises(ValueError, match=re.escape("fan_in must be a positive int")):
    fn(KEY, shape, -1, 36)
  with pytest.raises(TypeError, match=re.escape("fan_out must be a positive int")):
    fn(KEY, shape, 36, 1.5)
