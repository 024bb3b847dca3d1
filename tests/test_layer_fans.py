"""Every Flax layer's true fans under jinit.nnx.reinit and jinit.linen.reinit.

The table below writes each layer's fans by hand (from the layer's math, not from
jinit's code); each case re-draws the layer with one initializer and checks the
kernel against the law that initializer has with those fans (``check_law``,
conftest.py: fixed keys, 16k-64k samples, tolerances derived from the sample
size, 6 standard errors on mean and variance, so the std is checked to ~1.5-3%).
A fan off by a factor of 2 or more (what a shape-only reading gives for these
layers) moves the std by >= 18% and fails. Orthogonal is checked exactly, as the
grouped (prod(in axes), prod(out axes)) matrix of each batch slice.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx

import jinit

TN = jinit.truncated_std(-2.0, 2.0)


def _params_nnx(model) -> dict[str, np.ndarray]:
  return {"/".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.iter_graph(model)
          if isinstance(v, nnx.Param)}


def _params_linen(variables) -> dict[str, np.ndarray]:
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return {"/".join(k.key for k in path): np.asarray(v) for path, v in flat}


@dataclasses.dataclass(frozen=True)
class Layer:
  name: str
  module: str                         # the layer's name inside the zoo models below
  make_nnx: Callable | None           # rngs -> nnx module
  make_linen: Callable | None         # name -> linen module
  linen_x: Any                        # the linen module's input
  kernels: tuple[str, ...]            # param paths (inside the layer) sharing these fans
  fan_in: int
  fan_out: int
  matrices: Callable                  # kernel -> (batch, rows = in, cols = out)


def _mha_nnx(r):
  return nnx.MultiHeadAttention(num_heads=8, in_features=64, qkv_features=256, out_features=64,
                                decode=False, rngs=r)


def _mha_linen(name):
  return nn.MultiHeadDotProductAttention(num_heads=8, qkv_features=256, out_features=64,
                                         name=name)


LAYERS = [
    Layer("Linear/Dense (256->128)", "dense",
          lambda r: nnx.Linear(256, 128, rngs=r),
          lambda name: nn.Dense(128, name=name), jnp.ones((1, 256)),
          ("kernel",), 256, 128, lambda k: k[None]),
    Layer("LinearGeneral/DenseGeneral batch 4, 128->(4,16)", "general",
          lambda r: nnx.LinearGeneral(128, (4, 16), batch_axis={0: 4}, rngs=r),
          lambda name: nn.DenseGeneral((4, 16), axis=-1, batch_dims=(0,), name=name),
          jnp.ones((4, 3, 128)),
          # kernel (4, 128, 4, 16): one (128, 64) map per batch index.
          ("kernel",), 128, 64, lambda k: k.reshape(4, 128, 64)),
    Layer("Conv 3x3 64->192 groups=4", "conv",
          lambda r: nnx.Conv(64, 192, (3, 3), feature_group_count=4, rngs=r),
          lambda name: nn.Conv(192, (3, 3), feature_group_count=4, name=name),
          jnp.ones((1, 8, 8, 64)),
          # kernel (3, 3, 16, 192): group g maps 9*16 inputs to 48 outputs.
          ("kernel",), 9 * 16, 9 * 48,
          lambda k: k.reshape(3, 3, 16, 4, 48).transpose(3, 0, 1, 2, 4).reshape(4, 144, 48)),
    Layer("ConvTranspose 3x3 32->96", "conv_t",
          lambda r: nnx.ConvTranspose(32, 96, (3, 3), rngs=r),
          lambda name: nn.ConvTranspose(96, (3, 3), name=name), jnp.ones((1, 8, 8, 32)),
          ("kernel",), 9 * 32, 9 * 96, lambda k: k.reshape(1, 288, 96)),
    Layer("Einsum btd,dhk->bthk (128,8,32)", "einsum",
          lambda r: nnx.Einsum("btd,dhk->bthk", (128, 8, 32), (8, 32), rngs=r),
          lambda name: nn.Einsum((128, 8, 32), "btd,dhk->bthk", name=name),
          jnp.ones((1, 2, 128)),
          ("kernel",), 128, 256, lambda k: k.reshape(1, 128, 256)),
    Layer("Einsum per-head bhd,hdk->bhk (8,64,64)", "einsum_heads",
          lambda r: nnx.Einsum("bhd,hdk->bhk", (8, 64, 64), (8, 64), rngs=r),
          lambda name: nn.Einsum((8, 64, 64), "bhd,hdk->bhk", name=name), jnp.ones((1, 8, 64)),
          ("kernel",), 64, 64, lambda k: k),
    Layer("Embed 1000x64", "embed",
          lambda r: nnx.Embed(1000, 64, rngs=r),
          lambda name: nn.Embed(1000, 64, name=name), jnp.zeros((1, 3), jnp.int32),
          # fan_in = features: as a (features -> vocab) matrix it is the transpose.
          ("embedding",), 64, 1000, lambda k: k.T[None]),
    Layer("MultiHeadAttention q/k/v 64->(8,32)", "mha", _mha_nnx, _mha_linen,
          jnp.ones((1, 4, 64)), ("query/kernel", "key/kernel", "value/kernel"), 64, 256,
          lambda k: k.reshape(1, 64, 256)),
    Layer("MultiHeadAttention out (8,32)->64", "mha", _mha_nnx, _mha_linen,
          jnp.ones((1, 4, 64)), ("out/kernel",), 256, 64, lambda k: k.reshape(1, 256, 64)),
    Layer("LoRA A 256->rank 64", "lora", lambda r: nnx.LoRA(256, 64, 128, rngs=r), None, None,
          ("lora_a",), 256, 64, lambda k: k[None]),
]

INITS = {  # name -> (init, law(fan_in, fan_out) or None for orthogonal)
    "xavier_uniform": (jinit.xavier_uniform, lambda fi, fo: scipy.stats.uniform(
        -math.sqrt(6 / (fi + fo)), 2 * math.sqrt(6 / (fi + fo)))),
    "kaiming_normal-relu": (functools.partial(jinit.kaiming_normal, nonlinearity="relu"),
                            lambda fi, fo: scipy.stats.norm(0, math.sqrt(2 / fi))),
    "lecun_normal": (jinit.lecun_normal,
                     lambda fi, fo: scipy.stats.truncnorm(-2, 2, scale=math.sqrt(1 / fi) / TN)),
    "orthogonal": (jinit.orthogonal, None),
    "torch_linear_default": (jinit.torch_linear_default, lambda fi, fo: scipy.stats.uniform(
        -1 / math.sqrt(fi), 2 / math.sqrt(fi))),
}


class NnxZoo(nnx.Module):
  """Every layer of the table in one nnx model (one reinit call draws them all)."""

  def __init__(self, rngs):
    for layer in LAYERS:
      if layer.make_nnx is not None and not hasattr(self, layer.module):
        setattr(self, layer.module, layer.make_nnx(rngs))


class LinenZoo(nn.Module):
  """Every layer of the table in one linen model, each called on its own input."""

  @nn.compact
  def __call__(self, xs):
    for layer in LAYERS:
      if layer.make_linen is not None and layer.module in xs:
        layer.make_linen(layer.module)(xs.pop(layer.module))


def _linen_inputs():
  return {l.module: l.linen_x for l in LAYERS if l.make_linen is not None}


@functools.cache
def _nnx_zoo():
  return NnxZoo(nnx.Rngs(0))


@functools.cache
def _linen_zoo():
  return LinenZoo(), LinenZoo().init(jax.random.key(0), _linen_inputs())


@functools.cache
def reinit_zoo(framework: str, init_name: str) -> dict[str, np.ndarray]:
  """Every parameter of the zoo re-drawn with one init (kernels only), by path."""
  init = INITS[init_name][0]
  key = jax.random.key(42)
  if framework == "nnx":
    return _params_nnx(jinit.nnx.reinit(_nnx_zoo(), init, key=key))
  module, variables = _linen_zoo()
  return _params_linen(jinit.linen.reinit(module, variables, _linen_inputs(), init, key=key))


def reinit_kernels(layer: Layer, framework: str, init_name: str) -> list[np.ndarray]:
  params = reinit_zoo(framework, init_name)
  return [params[f"{layer.module}/{p}"] for p in layer.kernels]


def assert_grouped_orthogonal(matrices: np.ndarray, what: str) -> None:
  """Each (rows, cols) slice has orthonormal columns (rows >= cols) or rows."""
  m = matrices.astype(np.float64)
  rows, cols = m.shape[1:]
  gram = np.einsum("bij,bik->bjk", m, m) if rows >= cols else np.einsum("bji,bki->bjk", m, m)
  eye = np.eye(min(rows, cols))[None]
  # float32 QR: entries of W^T W - I are ~1e-7 each; 1e-5 leaves 100x margin while
  # a per-axis orthogonal of a grouped kernel is off by O(1) (0.81 for this kernel).
  np.testing.assert_allclose(gram, np.broadcast_to(eye, gram.shape), atol=1e-5, err_msg=what)


# nnx's xavier_uniform and orthogonal cases take 8-12 s on 2 cores: CI's slow step runs them.
_SLOW_CASES = {("nnx", "xavier_uniform"), ("nnx", "orthogonal")}
CASES = [pytest.param(fw, name, id=f"{fw}-{name}",
                      marks=[pytest.mark.slow] if (fw, name) in _SLOW_CASES else [])
         for fw in ("nnx", "linen") for name in INITS]


@pytest.mark.parametrize("framework,init_name", CASES)
def test_reinit_uses_true_fans(framework, init_name, check_law):
  """Each layer of the table: its kernels follow init's law with the layer's true fans."""
  _, law = INITS[init_name]
  checked = 0
  for layer in LAYERS:
    if (layer.make_nnx if framework == "nnx" else layer.make_linen) is None:
      continue
    kernels = reinit_kernels(layer, framework, init_name)
    what = f"{layer.name} ({framework}) {init_name}"
    if law is None:
      for path, kernel in zip(layer.kernels, kernels):
        assert_grouped_orthogonal(layer.matrices(kernel), f"{what} {path}")
    else:
      check_law(np.concatenate([k.ravel() for k in kernels]),
                law(layer.fan_in, layer.fan_out), what=what)
    checked += 1
  assert checked == len(LAYERS) - (framework == "linen")  # linen has no LoRA


def test_the_table_covers_every_layer_of_the_issue():
  names = " ".join(l.name for l in LAYERS)
  for layer in ("Linear", "LinearGeneral", "Conv", "ConvTranspose", "Einsum", "Embed",
                "MultiHeadAttention", "LoRA"):
    assert layer in names
  assert len(CASES) == 2 * 5


def test_nnx_and_linen_agree_on_the_same_layer():
  """Same key and paths: each nnx layer and its linen twin re-draw to the same bits."""
  for layer in LAYERS[:-1]:
    for a, b in zip(reinit_kernels(layer, "nnx", "xavier_uniform"),
                    reinit_kernels(layer, "linen", "xavier_uniform")):
      np.testing.assert_array_equal(a, b, err_msg=layer.name)


def test_orthogonal_on_dense_is_plain_orthogonal():
  """A layer with one (in, out) matrix gets exactly jinit.orthogonal(key, shape)."""
  model = nnx.Linear(32, 16, rngs=nnx.Rngs(0))
  key = jax.random.key(3)
  jinit.nnx.reinit(model, jinit.orthogonal, key=key)
  from jinit._src import layers  # the per-parameter key is documented: fold_in(key, crc32)
  expected = jinit.orthogonal(layers.param_key(key, "kernel"), (32, 16))
  np.testing.assert_array_equal(np.asarray(model.kernel[...]), np.asarray(expected))


@pytest.mark.parametrize("kernel_size,groups", [((3,), 2)])  # groups=1: tests/test_flax.py
def test_delta_orthogonal_grouped_conv_is_norm_preserving(kernel_size, groups):
  """Window kept: only the center tap is nonzero and each group's matrix is orthogonal."""
  conv = nnx.Conv(8, 16, kernel_size, feature_group_count=groups, use_bias=False,
                  rngs=nnx.Rngs(0))
  jinit.nnx.reinit(conv, jinit.delta_orthogonal, key=jax.random.key(5))
  x = jax.random.normal(jax.random.key(6), (2, *([6] * len(kernel_size)), 8))
  y = np.asarray(conv(x))
  # in/groups <= out/groups: each group's (in/g, out/g) center matrix has orthonormal rows.
  xs, ys = np.asarray(x).reshape(*x.shape[:-1], groups, -1), y.reshape(*y.shape[:-1], groups, -1)
  np.testing.assert_allclose(np.linalg.norm(ys, axis=-1), np.linalg.norm(xs, axis=-1),
                             rtol=1e-5)
  kernel = np.asarray(conv.kernel[...])
  center = tuple(k // 2 for k in kernel_size)
  off_center = kernel.copy()
  off_center[center] = 0
  assert not off_center.any()


# --------------------------------------------------------------------------- einsum_fans

EINSUM_CASES = [  # (equation, kernel shape, fans worked out by hand)
    ("btd,dhk->bthk", (512, 8, 64), (512, 512)),   # attention query
    ("bthk,hkd->btd", (8, 64, 512), (512, 512)),   # attention output
    ("bhd,hdk->bhk", (8, 64, 32), (64, 32)),       # per-head weights: h is a batch axis
    ("...d,df->...f", (64, 256), (64, 256)),       # ellipsis in the inputs and output
    ("ab,bc->ac", (3, 5), (3, 5)),
    ("btd, dhk -> bthk", (16, 2, 4), (16, 8)),     # spaces ignored
    ("bd,dk->b", (4, 7), (28, 1)),                 # k only in the kernel: summed, fan_in
]


@pytest.mark.parametrize("equation,shape,fans", EINSUM_CASES)
def test_einsum_fans(equation, shape, fans):
  assert jinit.einsum_fans(equation, shape) == fans


def test_einsum_fans_bad_input():
  with pytest.raises(ValueError, match=r"equation 'btd,dhk->bthk' has a rank-3 kernel .* rank 2"):
    jinit.einsum_fans("btd,dhk->bthk", (512, 512))
  with pytest.raises(ValueError, match="equation must have the form"):
    jinit.einsum_fans("btd,dhk", (4, 4, 4))
  with pytest.raises(ValueError, match="equation must have the form"):
    jinit.einsum_fans("a,b,c->a", (4,))
  with pytest.raises(ValueError, match="appears twice"):
    jinit.einsum_fans("ab,bb->a", (4, 4))
  with pytest.raises(ValueError, match="ellipsis"):
    jinit.einsum_fans("ab,...b->a", (4, 4))
  with pytest.raises(TypeError, match="equation must be an einsum string"):
    jinit.einsum_fans(None, (4, 4))
  with pytest.raises(TypeError, match="shape must"):
    jinit.einsum_fans("ab,bc->ac", "4x4")
