"""No silent inf/NaN/zeros/downcast, and every check before jit's cache.

One test (or table row) per finding; each reproduces the call from the issue that
used to return a wrong result, and asserts the new behaviour.
"""

import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from flax import nnx

import jinit
from jinit import mup
from jinit import residual
from jinit._src import diagnostics as diag_lib
from jinit._src import initializers as inits_lib
from jinit._src import lsuv as lsuv_lib
from jinit._src import mup as mup_lib

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
     lambda: jinit.dirac(KEY, (3, 4, 4), groups=True), TypeError,
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
    (1e400, TypeError, "fan_in must be a positive int, got float inf"),
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


# =========================================================================== issue 18
# Library findings of issue 18 (reliability, second round). Each test reproduces the
# trial that returned a wrong result and asserts the new behaviour.

def _std_tol(n):
  """6 standard errors of a sample std (relative): sqrt(1 / (2n)) per SE for a normal."""
  return 6.0 * math.sqrt(1.0 / (2.0 * n))


class _Block(nnx.Module):
  def __init__(self, d, rngs):
    self.fc1 = nnx.Linear(d, d, rngs=rngs)
    self.out = nnx.Linear(d, d, rngs=rngs)
    self.c_proj = nnx.Linear(d, d, rngs=rngs)


class _Stacked(nnx.Module):
  """``n`` blocks stacked by nnx.vmap (one (n, d, d) kernel per layer)."""

  def __init__(self, n, d, rngs):
    @nnx.split_rngs(splits=n)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(rngs):
      return _Block(d, rngs)

    self.blocks = make(rngs)


# --------------------------------------------------------------------------- finding 4


def test_gpt2_counts_stacked_nnx_layers_as_their_stack_length():
  """12 blocks stacked with nnx.vmap: L = 12, std 0.02 / sqrt(24) (was L = 1: 0.0139)."""
  n, d = 12, 48
  model = _Stacked(n, d, nnx.Rngs(0))
  residual.apply_gpt2(model, key=KEY)
  for name in ("out", "c_proj"):
    w = np.asarray(getattr(model.blocks, name).kernel[...])
    assert w.shape == (n, d, d)
    assert np.std(w) == pytest.approx(0.02 / math.sqrt(2 * n), rel=_std_tol(w.size))


def test_fixup_and_tfixup_depth_and_fans_on_stacked_nnx_layers():
  """Fixup's L and T-Fixup's N are the stack length; fans skip the stack axis."""
  n, d = 8, 64
  model = _Stacked(n, d, nnx.Rngs(1))
  residual.apply_fixup(model, key=KEY, branch_layers=[r"fc1/kernel$", r"c_proj/kernel$"])
  w = np.asarray(model.blocks.fc1.kernel[...])
  # He (fan_in = d, not n * d as fans='conv' read the stack) times L^(-1/2), L = 8.
  assert np.var(w) == pytest.approx(2.0 / d / n, rel=2 * _std_tol(w.size))
  assert not np.any(np.asarray(model.blocks.c_proj.kernel[...]))
  model = _Stacked(n, d, nnx.Rngs(2))
  residual.apply_tfixup(model, key=KEY, value=r"fc1/kernel$", mlp=r"c_proj/kernel$")
  w = np.asarray(model.blocks.out.kernel[...])
  # Xavier uniform var 1/d (fans d, d) times (0.67 N^-1/4)^2, N = 8.
  want = 1.0 / d * (0.67 * n ** -0.25) ** 2
  assert np.var(w) == pytest.approx(want, rel=2 * _std_tol(w.size))
  with pytest.raises(ValueError, match="fans must be None for an nnx Module"):
    residual.apply_gpt2(model, key=KEY, fans="conv")


# --------------------------------------------------------------------------- finding 5


def test_nnx_reinit_skips_a_stack_axis_put_anywhere_by_out_axes():
  """nnx.vmap(out_axes=1) Linear(64, 128): kernel (64, 4, 128); fan_in 64 (std 0.125)."""
  @nnx.split_rngs(splits=4)
  @nnx.vmap(in_axes=(0,), out_axes=1)
  def make(rngs):
    return nnx.Linear(64, 128, rngs=rngs)

  layer = make(nnx.Rngs(0))
  assert layer.kernel[...].shape == (64, 4, 128)
  jinit.nnx.reinit(layer, jinit.lecun_normal, key=KEY)
  w = np.asarray(layer.kernel[...])
  assert np.std(w) == pytest.approx(1 / 8, rel=_std_tol(w.size))  # was 0.502 (fan_in 4)
  jinit.nnx.reinit(layer, jinit.orthogonal, key=KEY)  # one orthogonal (64, 128) per copy
  w = np.asarray(layer.kernel[...], np.float64)
  for i in range(4):
    np.testing.assert_allclose(w[:, i, :] @ w[:, i, :].T, np.eye(64), atol=1e-4)


# --------------------------------------------------------------------------- finding 6


def test_mup_scale_updates_refuses_meta_of_another_width_and_int_updates():
  def shapes(width):
    return {"w_in": (8, width), "w_hid": (width, width), "w_out": (width, 4)}

  meta = mup_lib.build_meta(shapes(1024), shapes(64), readout="w_out")
  tx = mup.scale_updates(meta, "adam")
  ok = {k: jnp.ones(s) for k, s in shapes(1024).items()}
  np.testing.assert_allclose(tx.update(ok, tx.init(ok))[0]["w_hid"], 1 / 16)
  wrong = {k: jnp.ones(s) for k, s in shapes(256).items()}
  with pytest.raises(ValueError, match=r"other shapes.*w_hid \(256, 256\)"):
    tx.update(wrong, tx.init(wrong))  # was: 1/16 instead of 1/4, silently
  ints = {k: jnp.ones(s, jnp.int32) for k, s in shapes(1024).items()}
  with pytest.raises(TypeError, match="floating updates"):
    tx.update(ints, tx.init(ints))  # was: 0.25 cast to int, every update 0
  chained = optax.chain(optax.sgd(0.1), tx)  # still composes
  assert chained.update(ok, chained.init(ok))[0]["w_hid"].dtype == ok["w_hid"].dtype


# --------------------------------------------------------------------------- finding 7


_SHARDED_LINEN = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, jax.numpy as jnp, flax.linen as nn, jinit
from jax.sharding import NamedSharding, PartitionSpec as P
mesh = jax.make_mesh((2,), ("model",))
model = nn.Dense(8)
x = jnp.ones((2, 4), jnp.float32)
variables = model.init(jax.random.key(0), x)
s = NamedSharding(mesh, P(None, "model"))
variables = {"params": {"kernel": jax.device_put(variables["params"]["kernel"], s),
                        "bias": variables["params"]["bias"]}}
new = jinit.linen.reinit(model, variables, x, jinit.xavier_uniform, key=jax.random.key(1))
k = new["params"]["kernel"]
print("SHARDING", k.sharding == s, len(k.sharding.device_set))
"""


def test_linen_reinit_keeps_sharding():
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  out = subprocess.run([sys.executable, "-c", _SHARDED_LINEN], capture_output=True, text=True,
                       check=True, timeout=300)
  assert "SHARDING True 2" in out.stdout, out.stdout + out.stderr  # was: one device


# --------------------------------------------------------------------------- finding 10


def test_nnx_reinit_with_init_none_keeps_a_fine_tuned_lora_b():
  lora = nnx.LoRA(16, 4, 8, rngs=nnx.Rngs(0))
  lora.lora_b[...] = jnp.ones((4, 8), jnp.float32)  # fine-tuned
  jinit.nnx.reinit(lora, None, key=KEY, bias_init=None)
  np.testing.assert_array_equal(lora.lora_b[...], np.ones((4, 8)))  # was zeroed
  jinit.nnx.reinit(lora, jinit.xavier_uniform, key=KEY)  # re-drawing the layers: B = 0
  assert not np.any(np.asarray(lora.lora_b[...]))


# --------------------------------------------------------------------------- finding 11


class _ThreeLayers(nnx.Module):
  def __init__(self, rngs):
    self.l1 = nnx.Linear(8, 16, rngs=rngs)
    self.l2 = nnx.Linear(16, 16, rngs=rngs)
    self.l3 = nnx.Linear(16, 4, rngs=rngs)

  def __call__(self, x):
    return self.l3(jax.nn.relu(self.l2(jax.nn.relu(self.l1(x)))))


def test_lsuv_nnx_failure_at_layer_3_leaves_the_model_unchanged():
  model = _ThreeLayers(nnx.Rngs(0))
  # layer 2's units all dead: l3 sees zeros
  model.l2.bias[...] = jnp.full((16,), -100.0, jnp.float32)
  model.l3.bias[...] = jnp.zeros((4,), jnp.float32)  # so l3's output variance is exactly 0
  x = jax.random.normal(jax.random.key(1), (32, 8), jnp.float32)
  before = {n: np.asarray(getattr(model, n).kernel[...]) for n in ("l1", "l2", "l3")}
  with pytest.raises(ValueError, match="l3.*variance"):
    lsuv_lib.lsuv(model, x, jax.random.key(2))
  for n, w in before.items():  # was: l1 and l2 already rescaled
    np.testing.assert_array_equal(getattr(model, n).kernel[...], w, err_msg=n)


# --------------------------------------------------------------------------- finding 16


def test_scaled_keeps_the_overflow_and_underflow_rule_in_float16():
  tiny = residual.scaled(jinit.xavier_uniform, 1e-9)
  with pytest.raises(ValueError, match="underflow to 0 in dtype float16"):
    tiny(KEY, (64, 64), 64, 64, dtype=jnp.float16)  # was: all zeros
  big = residual.scaled(functools.partial(jinit.normal, std=1e4), 10.0)
  with pytest.raises(ValueError, match="overflows dtype float16"):
    big(KEY, (64, 64), dtype=jnp.float16)  # was: 2097 infs
  # In range: the scaled law, in the dtype asked for.
  w = residual.scaled(jinit.normal, 1e-3)(KEY, (256, 256), dtype=jnp.float16)
  assert w.dtype == jnp.float16 and _finite(w)
  assert float(np.std(np.asarray(w, np.float64))) == pytest.approx(1e-3, rel=_std_tol(w.size))


# --------------------------------------------------------------------------- finding 17


class _Head(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = True):
    x = nn.Dense(16)(x)
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return nn.Dense(3)(x)


def test_diagnose_refuses_nonfinite_inputs_and_bad_labels():
  model = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(3)])
  x = jax.random.normal(KEY, (8, 4), jnp.float32)
  variables = model.init(jax.random.key(1), x)
  bad_x = x.at[0, 0].set(jnp.nan)
  with pytest.raises(ValueError, match="x holds 1 NaN/inf"):
    diag_lib.diagnose(model, variables, bad_x)
  with pytest.raises(ValueError, match=r"class indices must be one int in \[0, 3\)"):
    diag_lib.diagnose(model, variables, x, jnp.full((8,), 3))
  with pytest.raises(ValueError, match="float labels are target distributions"):
    diag_lib.diagnose(model, variables, x, jnp.zeros((8,), jnp.float32))
  with pytest.raises(ValueError, match="labels holds 1 NaN/inf"):
    diag_lib.diagnose(model, variables, x, jnp.zeros((8, 3), jnp.float32).at[0, 0].set(jnp.inf))
  with pytest.raises(ValueError, match="x holds"):  # LSUV shares the check
    lsuv_lib.lsuv(model, variables, bad_x, KEY)


def test_linen_reinit_passes_call_kwargs_and_rngs():
  model = _Head()
  x = jnp.ones((2, 4), jnp.float32)
  variables = model.init(jax.random.key(1), x, train=False)
  new = jinit.linen.reinit(model, variables, x, jinit.zeros, key=KEY,
                           call_kwargs={"train": False}, rngs={"dropout": jax.random.key(3)})
  assert not np.any(np.asarray(new["params"]["Dense_0"]["kernel"]))
  with pytest.raises(TypeError, match="call_kwargs must be a mapping"):
    jinit.linen.reinit(model, variables, x, jinit.zeros, key=KEY, call_kwargs=["train"])


# --------------------------------------------------------------------------- finding 18


class _Tied(nnx.Module):
  def __init__(self, rngs):
    self.a = nnx.Linear(8, 8, rngs=rngs)
    self.b = nnx.Linear(8, 8, rngs=rngs)
    self.b.kernel = self.a.kernel  # tied


def test_tied_kernels_bias_gets_bias_init():
  model = _Tied(nnx.Rngs(0))
  jinit.nnx.reinit(model, None, key=KEY, bias_init=jinit.ones)
  np.testing.assert_array_equal(model.b.bias[...], np.ones(8))  # was: skipped (warned)
  np.testing.assert_array_equal(model.a.bias[...], np.ones(8))


@pytest.mark.parametrize("kwargs,error,message", [
    ({"output_mult": float("nan")}, ValueError, "output_mult"),
    ({"in_features": 0}, ValueError, "in_features must be a positive int"),
])
def test_mup_readout_bad_arguments(kwargs, error, message):
  args = {"in_features": 16, "out_features": 4, "base_in_features": 8, **kwargs}
  in_features = args.pop("in_features")
  with pytest.raises(error, match=message):
    mup.Readout(in_features, args.pop("out_features"), rngs=nnx.Rngs(0), **args)


class _WithParamsAttr(nnx.Module):
  def __init__(self, rngs):
    self.params = nnx.Linear(4, 8, rngs=rngs)  # an attribute named like linen's collection
    self.kernel = nnx.Param(jnp.ones((8, 8), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((8,), jnp.float32))
    self.head = nnx.Linear(8, 2, use_bias=False, rngs=rngs)


def test_mup_paths_keep_an_attribute_named_params():
  model = _WithParamsAttr(nnx.Rngs(0))
  shapes = mup.base_shapes(model)
  assert len(shapes) == 5 and "params/kernel" in shapes and "kernel" in shapes  # was 4
  linen_vars = {"params": {"Dense_0": {"kernel": np.ones((4, 8))}}}
  assert list(mup.base_shapes(linen_vars)) == ["Dense_0/kernel"]  # linen's prefix still goes


def test_apply_rules_names_a_matched_rng_key_leaf():
  state = {"rngs": {"default": {"key": jax.random.key(0)}}, "fc": {"kernel": jnp.ones((4, 4))}}
  with pytest.raises(TypeError, match=r"matches 'rngs/default/key'.*RNG key"):
    residual.apply_rules(state, [(r"key|kernel", jinit.zeros)], key=KEY)
  new = residual.apply_rules(state, [(r"fc/kernel", jinit.zeros)], key=KEY)
  assert not np.any(np.asarray(new["fc"]["kernel"]))


def test_diagnose_passes_call_kwargs_and_rngs():
  model = _Head()  # Dropout in training mode needs a "dropout" rng
  x = jax.random.normal(KEY, (8, 4), jnp.float32)
  variables = model.init(jax.random.key(1), x, train=False)
  evaluated = diag_lib.diagnose(model, variables, x, call_kwargs={"train": False})
  trained = diag_lib.diagnose(model, variables, x, rngs={"dropout": jax.random.key(2)})
  assert len(evaluated.layers) == len(trained.layers) == 2
  with pytest.raises(TypeError, match="rngs must be a mapping"):
    diag_lib.diagnose(model, variables, x, rngs=jax.random.key(2))


def test_theory_traced_sigmas_outside_the_domain_give_nan():
  """Under jit/vmap the sigmas cannot be checked: NaN, not -0.0 or a 'critical' inf."""
  grid = jnp.array([-1.0, 1.0, 2.0])
  chi = np.asarray(jax.jit(lambda s: jinit.theory.chi1(jnp.tanh, s, 0.05))(grid))
  assert np.isnan(chi[0]) and np.all(np.isfinite(chi[1:]))  # was -0.0 at -1
  bad = jnp.array([jnp.nan, jnp.inf, 1.0])
  xi = np.asarray(jax.vmap(lambda s: jinit.theory.xi_c(jnp.tanh, s, 0.05))(bad))
  assert np.all(np.isnan(xi[:2])) and np.isfinite(xi[2])  # was inf (reads as critical)


def test_compare_variances_names_x_for_nan_inputs():
  x = jnp.ones((4, 3), jnp.float32).at[0, 0].set(jnp.nan)
  with pytest.raises(ValueError, match="x holds 1 NaN/inf"):  # was: blamed q0
    jinit.theory.compare_variances(jnp.tanh, 1.5, 0.05, x, depth=2, key=KEY, width=16)


class _ScanBody(nn.Module):
  @nn.compact
  def __call__(self, carry, _):
    return nn.Dense(32)(carry), None


class _Scanned(nn.Module):
  """4 Dense(32) layers stacked by nn.scan with the stack on axis 1: kernel (32, 4, 32)."""

  @nn.compact
  def __call__(self, x):
    scan = nn.scan(_ScanBody, variable_axes={"params": 1}, split_rngs={"params": True},
                   length=4)
    return scan()(x, None)[0]


def test_linen_reinit_skips_a_stack_axis_put_anywhere_by_nn_scan():
  model = _Scanned()
  x = jnp.ones((2, 32), jnp.float32)
  variables = model.init(jax.random.key(0), x)

  flat = jax.tree_util.tree_leaves_with_path(variables["params"])
  (path, kernel), = [(p, v) for p, v in flat if v.ndim == 3]
  assert kernel.shape == (32, 4, 32), path
  new = jinit.linen.reinit(model, variables, x, jinit.orthogonal, key=KEY)
  (w,) = [v for _, v in jax.tree_util.tree_leaves_with_path(new["params"]) if v.ndim == 3]
  w = np.asarray(w, np.float64)
  for i in range(4):  # one orthogonal (32, 32) per copy (was: the (32 * 4, 32) reading)
    np.testing.assert_allclose(w[:, i, :].T @ w[:, i, :], np.eye(32), atol=1e-4)
