"""Four small models that are not all chains, with forward passes written by hand in numpy.

Shared by tests/test_diagnostics.py and tests/test_lsuv.py. Each ``hand_*`` function
recomputes, in float64 and without Flax, every row :func:`jinit.diagnostics.diagnose`
should report, in forward order: ``Row(role, name, input, output, act, h)`` with the
row's own input and output (for a residual row: the skip and the stream after the add),
and for a layer its activation's name (``None``: unknown) and value.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

D = 16  # model width
HEADS = 2
BATCH, SEQ, IN = 8, 6, 12
CLASSES = 5


@dataclasses.dataclass
class Row:
  role: str
  name: str
  input: np.ndarray
  output: np.ndarray
  act: str | None = None
  h: np.ndarray | None = None


def _np(a):
  return np.asarray(a, np.float64)


def relu(z):
  return np.maximum(z, 0.0)


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def gelu(z):  # jax.nn.gelu's default (tanh approximation)
  return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))


def silu(z):
  return z * sigmoid(z)


NP_ACTS = {"relu": relu, "gelu": gelu, "silu": silu, "tanh": np.tanh, "sigmoid": sigmoid}
JAX_ACTS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu, "tanh": jnp.tanh,
            "sigmoid": jax.nn.sigmoid}


def layer_norm(x, scale, bias, eps=1e-6):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu)**2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


def attention_rows(h, p, prefix):
  """Rows of q/k/v/out projections of flax multi-head attention (params ``p``)."""
  rows, proj = [], {}
  for name in ("query", "key", "value"):
    w, b = _np(p[name]["kernel"]), _np(p[name]["bias"])  # (D, heads, head_dim)
    proj[name] = np.einsum("bld,dhk->blhk", h, w) + b
    rows.append(Row("layer", f"{prefix}/{name}", h, proj[name]))
  head_dim = proj["query"].shape[-1]
  logits = np.einsum("bqhk,bshk->bhqs", proj["query"] / math.sqrt(head_dim), proj["key"])
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  mixed = np.einsum("bhqs,bshk->bqhk", weights, proj["value"])
  out = np.einsum("bqhk,hkd->bqd", mixed, _np(p["out"]["kernel"])) + _np(p["out"]["bias"])
  rows.append(Row("layer", f"{prefix}/out", mixed, out))
  return rows, out


# --------------------------------------------------------------------------- nnx MLP


class NnxMLP(nnx.Module):
  """Six Linear layers with relu, gelu, silu, tanh, sigmoid between them."""
  ACTS = ("relu", "gelu", "silu", "tanh", "sigmoid")

  def __init__(self, rngs: nnx.Rngs, width: int = 32):
    dims = (IN,) + (width,) * 5 + (CLASSES,)
    self.layers = nnx.List([nnx.Linear(dims[i], dims[i + 1], rngs=rngs) for i in range(6)])

  def __call__(self, x):
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.ACTS):
        x = JAX_ACTS[self.ACTS[i]](x)
    return x


def hand_nnx_mlp(model: NnxMLP, x):
  rows, h = [], _np(x)
  for i, layer in enumerate(model.layers):
    z = h @ _np(layer.kernel[...]) + _np(layer.bias[...])
    act = model.ACTS[i] if i < len(model.ACTS) else "identity"
    out = NP_ACTS[act](z) if act != "identity" else z
    rows.append(Row("layer", f"layers/{i}", h, z, act, out))
    h = out
  return rows


# --------------------------------------------------------------------------- nnx transformer


class NnxBlock(nnx.Module):
  """A pre-LN transformer block: attention, then an MLP whose up-projection is an Einsum."""

  def __init__(self, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(D, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=HEADS, in_features=D, decode=False,
                                       rngs=rngs)
    self.ln2 = nnx.LayerNorm(D, rngs=rngs)
    self.up = nnx.Einsum("bld,df->blf", (D, 4 * D), (4 * D,), rngs=rngs)
    self.down = nnx.Linear(4 * D, D, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))


def _nnx_params(module):
  return {n: {"kernel": getattr(module, n).kernel[...], "bias": getattr(module, n).bias[...]}
          for n in ("query", "key", "value", "out")}


def hand_nnx_block(model: NnxBlock, x):
  x = _np(x)
  h = layer_norm(x, _np(model.ln1.scale[...]), _np(model.ln1.bias[...]))
  rows = [Row("norm", "ln1", x, h)]
  att_rows, a = attention_rows(h, _nnx_params(model.attn), "attn")
  rows += att_rows
  x1 = x + a
  rows.append(Row("residual", "attn/out+skip", x, x1))
  h2 = layer_norm(x1, _np(model.ln2.scale[...]), _np(model.ln2.bias[...]))
  rows.append(Row("norm", "ln2", x1, h2))
  u = np.einsum("bld,df->blf", h2, _np(model.up.kernel[...])) + _np(model.up.bias[...])
  rows.append(Row("layer", "up", h2, u, "gelu", gelu(u)))
  d = gelu(u) @ _np(model.down.kernel[...]) + _np(model.down.bias[...])
  rows.append(Row("layer", "down", gelu(u), d))
  rows.append(Row("residual", "down+skip", x1, x1 + d))
  return rows


# --------------------------------------------------------------------------- linen transformer


class LinenBlock(nn.Module):

  @nn.compact
  def __call__(self, x):
    h = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS)(h, h)
    h = nn.LayerNorm()(x)
    return x + nn.Dense(D, name="down")(nn.gelu(nn.Dense(4 * D, name="up")(h)))


class LinenTransformer(nn.Module):
  """Two pre-LN blocks (12 kernels)."""

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = LinenBlock()(x)
    return x


def hand_linen_transformer(params, x):
  rows, x = [], _np(x)
  for b in range(2):
    p, pre = params[f"LinenBlock_{b}"], f"LinenBlock_{b}"
    h = layer_norm(x, _np(p["LayerNorm_0"]["scale"]), _np(p["LayerNorm_0"]["bias"]))
    rows.append(Row("norm", f"{pre}/LayerNorm_0", x, h))
    att_rows, a = attention_rows(h, p["MultiHeadDotProductAttention_0"],
                                 f"{pre}/MultiHeadDotProductAttention_0")
    rows += att_rows
    x1 = x + a
    rows.append(Row("residual", f"{pre}/MultiHeadDotProductAttention_0/out+skip", x, x1))
    h2 = layer_norm(x1, _np(p["LayerNorm_1"]["scale"]), _np(p["LayerNorm_1"]["bias"]))
    rows.append(Row("norm", f"{pre}/LayerNorm_1", x1, h2))
    u = h2 @ _np(p["up"]["kernel"]) + _np(p["up"]["bias"])
    rows.append(Row("layer", f"{pre}/up", h2, u, "gelu", gelu(u)))
    d = gelu(u) @ _np(p["down"]["kernel"]) + _np(p["down"]["bias"])
    rows.append(Row("layer", f"{pre}/down", gelu(u), d))
    x = x1 + d
    rows.append(Row("residual", f"{pre}/down+skip", x1, x))
  return rows


# --------------------------------------------------------------------------- linen residual MLP


class ResidualMLP(nn.Module):
  """Embedding Dense, two residual ReLU blocks x + W2 relu(W1 x), readout Dense."""

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(D, name="embed")(x)
    for b in range(2):
      x = x + nn.Dense(D, name=f"w2_{b}")(nn.relu(nn.Dense(2 * D, name=f"w1_{b}")(x)))
    return nn.Dense(CLASSES, name="readout")(x)


def hand_residual_mlp(params, x):
  def dense(name, h):
    return h @ _np(params[name]["kernel"]) + _np(params[name]["bias"])

  x = _np(x)
  e = dense("embed", x)
  rows = [Row("layer", "embed", x, e, "identity", e)]
  s = e
  for b in range(2):
    u = dense(f"w1_{b}", s)
    rows.append(Row("layer", f"w1_{b}", s, u, "relu", relu(u)))
    d = dense(f"w2_{b}", relu(u))
    rows.append(Row("layer", f"w2_{b}", relu(u), d))
    rows.append(Row("residual", f"w2_{b}+skip", s, s + d))
    s = s + d
  y = dense("readout", s)
  rows.append(Row("layer", "readout", s, y, "identity", y))
  return rows


# --------------------------------------------------------------------------- builders


def build(name: str):
  """``(model, variables or None, x, hand_rows)`` for one of the four models."""
  key = jax.random.key(0)
  if name == "nnx_mlp":
    x = jax.random.normal(key, (64, IN))
    model = NnxMLP(nnx.Rngs(1))
    return model, None, x, lambda: hand_nnx_mlp(model, x)
  if name == "nnx_block":
    x = jax.random.normal(key, (BATCH, SEQ, D))
    model = NnxBlock(nnx.Rngs(2))
    return model, None, x, lambda: hand_nnx_block(model, x)
  if name == "linen_transformer":
    x = jax.random.normal(key, (BATCH, SEQ, D))
    model = LinenTransformer()
    variables = jax.jit(model.init)(jax.random.key(3), x)
    return model, variables, x, lambda v=None: hand_linen_transformer(
        (v or variables)["params"], x)
  if name == "residual_mlp":
    x = jax.random.normal(key, (64, IN))
    model = ResidualMLP()
    variables = jax.jit(model.init)(jax.random.key(4), x)
    return model, variables, x, lambda v=None: hand_residual_mlp((v or variables)["params"], x)
  raise ValueError(name)


MODELS = ("nnx_mlp", "nnx_block", "linen_transformer", "residual_mlp")
