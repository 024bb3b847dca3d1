"""jinit initializers as drop-in Flax / ``jax.nn.initializers`` initializers (issue 23, item 1).

Flax calls ``kernel_init(key, shape, param_dtype)``. Called that way (or with neither
fan), a jinit initializer reads the fans from the shape with Flax's layout
(``in_axis=-2, out_axis=-1``, receptive field from the leading axes), as
``jax.nn.initializers`` does. Checked here against ``jax.nn.initializers`` for every
initializer both libraries have: the same key gives the same samples (to float32
rounding), and the samples follow the law jax's fans give (``check_law``); then in
``nn.Dense``, ``nn.Conv`` and ``nnx.Linear``.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx

import jinit
from jinit._src import initializers as inits_lib

J = jax.nn.initializers
KEY = jax.random.key(23)
# A conv kernel (3x3 window, 96 in, 136 out): 117,504 samples, so check_law's
# variance tolerance (6 standard errors) is ~2.5% of the variance; the receptive
# field (9) makes fan_in/fan_out differ from a plain reading of shape[-2:].
SHAPE = (3, 3, 96, 136)
FAN_IN, FAN_OUT = 9 * 96, 9 * 136
TRUNC = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2] (jax's constant)


def _law(scale, mode, distribution):
  """The scipy law of ``jax.nn.initializers.variance_scaling(scale, mode, distribution)``."""
  n = {"fan_in": FAN_IN, "fan_out": FAN_OUT, "fan_avg": (FAN_IN + FAN_OUT) / 2,
       "fan_geo_avg": math.sqrt(FAN_IN * FAN_OUT)}[mode]
  std = math.sqrt(scale / n)
  if distribution == "uniform":
    b = std * math.sqrt(3.0)
    return scipy.stats.uniform(-b, 2 * b)
  if distribution == "normal":
    return scipy.stats.norm(0.0, std)
  return scipy.stats.truncnorm(-2.0, 2.0, scale=std / TRUNC)


# (id, jinit initializer, jax.nn initializer, the law or None). Every initializer both
# have; jinit's torch-semantics names (xavier_*, kaiming_*) are paired with the
# jax.nn variance_scaling they equal. jinit.uniform is U(-a, a) and jax's U[0, scale),
# so it is not a pair (docs/parity.md).
PAIRS = [
    ("zeros", jinit.zeros, J.zeros, None),
    ("ones", jinit.ones, J.ones, None),
    ("constant", functools.partial(jinit.constant, value=0.3), J.constant(0.3), None),
    ("normal", functools.partial(jinit.normal, std=0.02), J.normal(0.02),
     scipy.stats.norm(0.0, 0.02)),
    ("truncated_normal", functools.partial(jinit.truncated_normal, std=0.02),
     J.truncated_normal(0.02), scipy.stats.truncnorm(-2.0, 2.0, scale=0.02)),
    ("glorot_uniform", jinit.glorot_uniform, J.glorot_uniform(),
     _law(1.0, "fan_avg", "uniform")),
    ("glorot_normal", jinit.glorot_normal, J.glorot_normal(),
     _law(1.0, "fan_avg", "truncated_normal")),
    ("xavier_uniform", jinit.xavier_uniform, J.glorot_uniform(),
     _law(1.0, "fan_avg", "uniform")),
    ("xavier_normal", jinit.xavier_normal, J.variance_scaling(1.0, "fan_avg", "normal"),
     _law(1.0, "fan_avg", "normal")),
    ("he_uniform", jinit.he_uniform, J.he_uniform(), _law(2.0, "fan_in", "uniform")),
    ("he_normal", jinit.he_normal, J.he_normal(), _law(2.0, "fan_in", "truncated_normal")),
    ("kaiming_uniform", jinit.kaiming_uniform, J.he_uniform(), _law(2.0, "fan_in", "uniform")),
    ("kaiming_normal", jinit.kaiming_normal, J.variance_scaling(2.0, "fan_in", "normal"),
     _law(2.0, "fan_in", "normal")),
    ("lecun_uniform", jinit.lecun_uniform, J.lecun_uniform(), _law(1.0, "fan_in", "uniform")),
    ("lecun_normal", jinit.lecun_normal, J.lecun_normal(),
     _law(1.0, "fan_in", "truncated_normal")),
    ("variance_scaling_fan_out_uniform",
     functools.partial(jinit.variance_scaling, scale=0.5, mode="fan_out", distribution="uniform"),
     J.variance_scaling(0.5, "fan_out", "uniform"), _law(0.5, "fan_out", "uniform")),
    ("variance_scaling_fan_geo_avg_normal",
     functools.partial(jinit.variance_scaling, scale=0.5, mode="fan_geo_avg",
                       distribution="normal"),
     J.variance_scaling(0.5, "fan_geo_avg", "normal"), _law(0.5, "fan_geo_avg", "normal")),
    # orthogonal and delta_orthogonal draw jax's law, not its samples (Householder
    # reflectors in panels): test_orthogonal_flax_call_is_orthonormal checks their Flax call.
]


@pytest.mark.parametrize("fn,ref,law", [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_flax_call_matches_jax_nn(fn, ref, law, check_law):
  ours = np.asarray(fn(KEY, SHAPE, jnp.float32))
  theirs = np.asarray(ref(KEY, SHAPE, jnp.float32))
  assert ours.shape == SHAPE and ours.dtype == np.float32
  # Same key, same algorithm: the same samples up to float32 rounding of the scale
  # (the products are fused in a different order): 4 ulps of the largest sample.
  atol = 4 * np.finfo(np.float32).eps * max(float(np.abs(theirs).max()), 1e-30)
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol)
  if law is not None:
    check_law(ours, law, what="flax call")


def test_orthogonal_flax_call_is_orthonormal():
  # jax reads a (..., out) kernel as a (prod(leading), out) matrix: orthonormal columns.
  w = np.asarray(jinit.orthogonal(KEY, SHAPE, jnp.float32), np.float64).reshape(-1, SHAPE[-1])
  np.testing.assert_allclose(w.T @ w, np.eye(SHAPE[-1]), atol=1e-5)


def test_dtype_keyword_and_no_fans_read_flax_layout():
  """``dtype=`` as a keyword, or no dtype at all: the same fans, the same samples."""
  positional = np.asarray(jinit.he_normal(KEY, SHAPE, jnp.bfloat16), np.float32)
  keyword = np.asarray(jinit.he_normal(KEY, SHAPE, dtype=jnp.bfloat16), np.float32)
  explicit = np.asarray(jinit.he_normal(KEY, SHAPE, FAN_IN, FAN_OUT, dtype=jnp.bfloat16),
                        np.float32)
  np.testing.assert_array_equal(positional, keyword)
  np.testing.assert_array_equal(positional, explicit)
  default = jinit.xavier_uniform(KEY, (5, 7))
  assert default.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(default),
                                np.asarray(jinit.xavier_uniform(KEY, (5, 7), 5, 7)))


def test_explicit_fans_unchanged(check_law):
  """Explicit fans win over the shape: an attention kernel with its true fans (512, 512)."""
  w = jinit.xavier_normal(KEY, (512, 8, 64), 512, 512)
  check_law(w, scipy.stats.norm(0.0, math.sqrt(2.0 / 1024)), what="explicit fans")
  flax_read = jinit.xavier_normal(KEY, (512, 8, 64), jnp.float32)  # fans 512*8, 512*64
  check_law(flax_read, scipy.stats.norm(0.0, math.sqrt(2.0 / (512 * 8 + 512 * 64))),
            what="flax layout")


def test_linen_dense_and_conv_equal_jax_nn():
  x = jnp.ones((2, 30))
  ours = nn.Dense(50, kernel_init=jinit.xavier_uniform).init(KEY, x)["params"]["kernel"]
  theirs = nn.Dense(50, kernel_init=J.glorot_uniform()).init(KEY, x)["params"]["kernel"]
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
  img = jnp.ones((1, 8, 8, 6))
  ours = nn.Conv(16, (3, 3), kernel_init=jinit.he_normal).init(KEY, img)["params"]["kernel"]
  theirs = nn.Conv(16, (3, 3), kernel_init=J.he_normal()).init(KEY, img)["params"]["kernel"]
  assert ours.shape == (3, 3, 6, 16)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=0,
                             atol=4 * np.finfo(np.float32).eps * float(np.abs(theirs).max()))


def test_nnx_linear_equals_jax_nn():
  ours = nnx.Linear(30, 50, kernel_init=jinit.kaiming_normal, rngs=nnx.Rngs(0)).kernel[...]
  theirs = nnx.Linear(30, 50, kernel_init=J.variance_scaling(2.0, "fan_in", "normal"),
                      rngs=nnx.Rngs(0)).kernel[...]
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=0,
                             atol=4 * np.finfo(np.float32).eps * float(np.abs(theirs).max()))
  # param_dtype reaches jinit as the dtype (jinit draws in float32 and casts, jax draws
  # in bfloat16: docs/parity.md), so only the dtype is compared in bfloat16.
  low = nnx.Linear(30, 50, kernel_init=jinit.kaiming_normal, param_dtype=jnp.bfloat16,
                   rngs=nnx.Rngs(0)).kernel[...]
  assert low.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(low), np.asarray(ours.astype(jnp.bfloat16)))


@pytest.mark.parametrize("name", sorted(jinit.INITIALIZERS))
def test_every_initializer_takes_flax_call_and_says_so(name):
  fn = jinit.INITIALIZERS[name]
  assert "Drop-in use" in fn.__doc__ and "jinit.nnx.reinit" in fn.__doc__
  shape = (3, 3, 4, 4) if name in ("dirac", "delta_orthogonal") else (4, 6)
  out = jax.eval_shape(lambda k: fn(k, shape, jnp.float16), KEY)  # traced, not compiled
  assert out.shape == shape and out.dtype == jnp.float16


def test_torch_linear_default_reads_fan_in(check_law):
  w = jinit.torch_linear_default(KEY, (300, 400), jnp.float32)
  b = 1 / math.sqrt(300)
  check_law(w, scipy.stats.uniform(-b, 2 * b), what="torch_linear_default")


def test_no_fans_to_read_points_to_reinit():
  with pytest.raises(ValueError, match=r"rank 1 has no fans to read.*jinit\.linen\.reinit"):
    nn.Dense(3, bias_init=jinit.torch_linear_default).init(KEY, jnp.ones((1, 2)))
  with pytest.raises(ValueError, match=r"equation="):
    jinit.xavier_uniform(KEY, (8,), jnp.float32)


def test_flax_call_bad_combinations():
  with pytest.raises(TypeError, match=r"Flax's call init\(key, shape, dtype\)"):
    jinit.he_normal(KEY, (3, 4), jnp.float32, 4)
  with pytest.raises(TypeError, match=r"Flax's call init\(key, shape, dtype\)"):
    jinit.he_normal(KEY, (3, 4), jnp.float32, dtype=jnp.float16)
  with pytest.raises(TypeError, match="dtype must be a floating"):
    jinit.he_normal(KEY, (3, 4), jnp.int32)
  with pytest.raises(TypeError, match="fan_in must be a positive int"):
    jinit.he_normal(KEY, (3, 4), "not-a-dtype")


def test_flax_fans_is_jax_layout():
  for shape in [(3, 4), (5, 3, 4), (2, 3, 5, 7), (2, 2, 2, 3, 5)]:
    assert inits_lib.flax_fans(shape) == jinit.compute_fans(shape, in_axis=-2, out_axis=-1)


_NO_FLAX = """
import importlib.abc, sys

class NoFlax(importlib.abc.MetaPathFinder):  # as if flax were not installed
  def find_spec(self, name, path=None, target=None):
    if name == "flax" or name.startswith("flax."):
      raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return None

sys.meta_path.insert(0, NoFlax())
import jax
import jinit
print(jinit.xavier_uniform(jax.random.key(0), (2, 3)).shape)
for attribute in ("flax", "linen", "nnx", "diagnostics", "lsuv", "residual", "mup"):
  try:
    getattr(jinit, attribute)
  except ModuleNotFoundError as e:
    print(attribute, "->", e)
"""


def test_missing_flax_gives_one_line_hint():
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-c", _NO_FLAX], cwd=root, capture_output=True,
                        text=True, timeout=300, check=False,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": root})
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().split("\n")
  assert lines[0] == "(2, 3)"  # the core library works without flax
  hints = lines[1:]
  assert len(hints) == 7, proc.stdout
  for attribute, line in zip(("flax", "linen", "nnx", "diagnostics", "lsuv", "residual", "mup"),
                             hints, strict=True):
    assert line == (f"{attribute} -> jinit.{attribute} needs the flax package: "
                    "pip install 'jinit[flax]'"), line
