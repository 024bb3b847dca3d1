"""jinit.nnx.reinit and jinit.linen.reinit on whole models: defaults, rules, warnings, errors.

Statistical checks use ``check_law`` (conftest.py) on pooled, standardized samples
(>= 1e4 of them; tolerances derived from the sample size) plus, per parameter, an
exact support check: every entry within the bound its layer's fan_in gives.
"""

import functools
import math
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx

import jinit
from jinit._src import layers as layers_lib

D, HEADS, FF, VOCAB, CLASSES, DEPTH = 64, 4, 128, 200, 10, 2


class Block(nnx.Module):
  """A pre-LN transformer block (nnx.MultiHeadAttention + MLP), with a scalar gate."""

  def __init__(self, rngs):
    self.ln1 = nnx.LayerNorm(D, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=HEADS, in_features=D, decode=False, rngs=rngs)
    self.ln2 = nnx.LayerNorm(D, rngs=rngs)
    self.fc1 = nnx.Linear(D, FF, rngs=rngs)
    self.fc2 = nnx.Linear(FF, D, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.fc2(jax.nn.gelu(self.fc1(self.ln2(x))))


class Transformer(nnx.Module):

  def __init__(self, rngs, gate=False):
    self.embed = nnx.Embed(VOCAB, D, rngs=rngs)
    self.blocks = nnx.List([Block(rngs) for _ in range(DEPTH)])
    self.norm = nnx.LayerNorm(D, rngs=rngs)
    self.head = nnx.Linear(D, CLASSES, rngs=rngs)
    if gate:
      self.gate = nnx.Param(jnp.zeros(()))  # a ReZero-style gate: no layer, no fans

  def __call__(self, tokens):
    x = self.embed(tokens)
    for block in self.blocks:
      x = block(x)
    return self.head(self.norm(x))


def _params(model) -> dict[str, np.ndarray]:
  return {"/".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.iter_graph(model)
          if isinstance(v, nnx.Param)}


def _torch_linear_fan_in(path: str) -> int | None:
  """fan_in of each Linear-like parameter, worked out by hand from the model above."""
  if path.startswith("head/") or "/fc1/" in path:
    return D
  if "/fc2/" in path:
    return FF
  if "/attn/" in path:  # q/k/v: (D, HEADS, D/HEADS) from D inputs; out: (HEADS, D/HEADS, D)
    return D
  return None


def _assert_uniform_by_fan_in(params, fan_in_of, check_law, what):
  """Every listed parameter ~ U(+-1/sqrt(fan_in)): exact support per parameter, law pooled."""
  pooled = []
  for path, fan_in in fan_in_of.items():
    w = params[path].astype(np.float64) * math.sqrt(fan_in)  # ~ U(-1, 1) if fan_in is right
    assert np.abs(w).max() <= 1 + 1e-6, f"{what} {path}: outside +-1/sqrt({fan_in})"
    # A fan_in too large shrinks the range: the max of n samples of U(-1, 1) is
    # below 1 - 30/n with probability (1 - 30/n)^n ~ e^-30.
    assert np.abs(w).max() >= 1 - 30 / w.size, f"{what} {path}: range too small for {fan_in}"
    pooled.append(w.ravel())
  check_law(np.concatenate(pooled), scipy.stats.uniform(-1, 2), what=what)


def test_torch_default_on_a_whole_nnx_transformer(check_law):
  """One call gives every Linear-like kernel AND bias PyTorch's U(+-1/sqrt(fan_in))."""
  model = Transformer(nnx.Rngs(0))
  before = _params(model)
  jinit.nnx.reinit(model, jinit.torch_linear_default, key=jax.random.key(1),
                   bias_init=jinit.torch_linear_default,
                   rules=[(r"^embed/embedding$", jinit.normal)])  # nn.Embedding: N(0, 1)
  params = _params(model)
  linear = {p: _torch_linear_fan_in(p) for p in params if _torch_linear_fan_in(p)}
  # 2 blocks x (q, k, v, out, fc1, fc2) x (kernel, bias) + head (kernel, bias).
  assert len(linear) == DEPTH * 12 + 2
  _assert_uniform_by_fan_in(params, linear, check_law, "torch default")
  check_law(params["embed/embedding"], scipy.stats.norm(0, 1), what="embedding")
  for path, value in params.items():  # LayerNorm: kept (ones and zeros), as torch's
    if "ln" in path or path.startswith("norm/"):
      np.testing.assert_array_equal(value, before[path])
      assert np.all(value == (1.0 if path.endswith("scale") else 0.0))


def _fused_qkv_xavier(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
  # torch's in_proj_weight is q, k, v stacked: (3 d, d), so xavier sees fan_out = 3 d.
  return jinit.xavier_uniform(key, shape, fan_in, 3 * fan_out, dtype=dtype)


def test_torch_transformer_encoder_layer_convention_with_rules(check_law):
  """torch.nn.MultiheadAttention._reset_parameters + nn.Linear defaults, layer by layer.

  torch (nn/modules/activation.py): in_proj_weight ~ xavier_uniform_ of the (3d, d)
  matrix, in_proj_bias = 0, out_proj.bias = 0; out_proj.weight keeps nn.Linear's
  U(+-1/sqrt(d)); linear1/linear2 weights and biases U(+-1/sqrt(fan_in)).
  """
  model = Transformer(nnx.Rngs(0))
  jinit.nnx.reinit(model, jinit.torch_linear_default, key=jax.random.key(2),
                   bias_init=jinit.torch_linear_default,
                   rules=[(r"attn/(query|key|value)/kernel$", _fused_qkv_xavier),
                          (r"attn/\w+/bias$", jinit.zeros),
                          (r"embedding$", jinit.normal)])
  params = _params(model)
  qkv = np.concatenate([params[f"blocks/{i}/attn/{n}/kernel"].ravel()
                        for i in range(DEPTH) for n in ("query", "key", "value")])
  bound = math.sqrt(6 / (D + 3 * D))
  check_law(qkv, scipy.stats.uniform(-bound, 2 * bound), what="fused q/k/v xavier")
  for i in range(DEPTH):
    for n in ("query", "key", "value", "out"):
      assert not params[f"blocks/{i}/attn/{n}/bias"].any()
  linear = {p: _torch_linear_fan_in(p) for p in params
            if _torch_linear_fan_in(p) and ("/attn/" not in p or p.endswith("out/kernel"))}
  assert len(linear) == DEPTH * 5 + 2  # out kernel, fc1 and fc2 (kernel, bias) + head
  _assert_uniform_by_fan_in(params, linear, check_law, "torch linear")


def _tagger(tag, seen):
  """An init that records its call and fills the parameter with ``tag``."""

  def init(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
    del key
    seen.append((tag, tuple(shape), fan_in, fan_out))
    return jnp.full(shape, tag, dtype)

  return init


def test_rules_apply_in_order_and_before_defaults():
  model = Transformer(nnx.Rngs(0), gate=True)
  seen = []
  rules = [(r"attn/out/kernel$", _tagger(1.0, seen)),   # first: wins for out kernels
           (r"kernel$", _tagger(2.0, seen)),            # every other kernel
           (r"attn/out/kernel$", _tagger(9.0, seen)),   # shadowed by rule 0 but used below
           (r"ln1/scale$", _tagger(3.0, seen)),         # a norm scale, named by a rule
           (r"^gate$", _tagger(4.0, seen))]             # no layer: fans None
  with pytest.raises(ValueError,
                     match=r"pattern\(s\) rules\[2\] 'attn/out/kernel\$' match no parameter"):
    jinit.nnx.reinit(model, _tagger(5.0, seen), key=jax.random.key(0), rules=rules)
  assert not seen  # checked before any draw
  del rules[2]
  jinit.nnx.reinit(model, _tagger(5.0, seen), key=jax.random.key(0),
                   bias_init=_tagger(6.0, seen), rules=rules)
  params = _params(model)
  for i in range(DEPTH):
    assert np.all(params[f"blocks/{i}/attn/out/kernel"] == 1.0)
    for n in ("attn/query", "attn/key", "attn/value", "fc1", "fc2"):
      assert np.all(params[f"blocks/{i}/{n}/kernel"] == 2.0)
      assert np.all(params[f"blocks/{i}/{n}/bias"] == 6.0)
    assert np.all(params[f"blocks/{i}/ln1/scale"] == 3.0)
    assert np.all(params[f"blocks/{i}/ln2/scale"] == 1.0)  # no rule: kept
  assert params["gate"] == 4.0
  assert np.all(params["embed/embedding"] == 5.0)  # no rule matches: the default init
  assert np.all(params["head/kernel"] == 2.0)
  calls = {(tag, shape, fi, fo) for tag, shape, fi, fo in seen}
  # Rule inits get the layer's true fans: out kernel (HEADS, D/HEADS, D) is (D, D).
  assert (1.0, (HEADS, D // HEADS, D), D, D) in calls
  assert (2.0, (D, HEADS, D // HEADS), D, D) in calls   # query kernel
  assert (6.0, (FF,), D, FF) in calls                    # fc1 bias: fc1's fans
  assert (4.0, (), None, None) in calls                  # gate: no fans
  assert (5.0, (VOCAB, D), D, VOCAB) in calls            # embedding: fan_in = features


def test_uncovered_parameters_are_warned_about_once():
  model = Transformer(nnx.Rngs(0), gate=True)
  model.blocks[1].extra = nnx.Param(jnp.ones((3,)))  # a user's own parameter
  with pytest.warns(jinit.nnx.UncoveredParametersWarning) as record:
    jinit.nnx.reinit(model, jinit.torch_linear_default, key=jax.random.key(0))
  assert len(record) == 1
  message = str(record[0].message)
  assert "2 parameter(s)" in message and "gate" in message and "blocks/1/extra" in message
  assert "ln1" not in message and "norm" not in message  # norm params: known, kept
  assert model.gate[...] == 0.0
  # Once a rule covers them there is nothing to warn about.
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    jinit.nnx.reinit(model, jinit.torch_linear_default, key=jax.random.key(0),
                     rules=[(r"^gate$|extra$", jinit.zeros)])


def test_same_key_same_values_and_lora_b_zero():
  # torch_linear_default throughout this file: its programs for these shapes are compiled
  # once (XLA compiles of new (init, shape, fans) combinations dominate the test time).
  a, b = Transformer(nnx.Rngs(0)), Transformer(nnx.Rngs(7))
  for m in (a, b):
    jinit.nnx.reinit(m, jinit.torch_linear_default, key=jax.random.key(3),
                     bias_init=jinit.torch_linear_default)
  for path, value in _params(a).items():
    np.testing.assert_array_equal(value, _params(b)[path])
  lora = nnx.LoRA(16, 4, 8, rngs=nnx.Rngs(0))
  jinit.nnx.reinit(lora, jinit.xavier_uniform, key=jax.random.key(0))
  assert not np.asarray(lora.lora_b[...]).any() and np.asarray(lora.lora_a[...]).any()
  jinit.nnx.reinit(lora, None, key=jax.random.key(0), rules=[("lora_b", jinit.ones)])
  assert np.all(np.asarray(lora.lora_b[...]) == 1.0)


def test_an_init_that_fails_leaves_the_model_unchanged():
  model = Transformer(nnx.Rngs(0))
  before = _params(model)
  with pytest.raises(ValueError, match=r"parameter 'blocks/0/fc1/kernel'.*delta_orthogonal"):
    jinit.nnx.reinit(model, jinit.torch_linear_default, key=jax.random.key(0),
                     rules=[("fc1/kernel", jinit.delta_orthogonal)])
  for path, value in _params(model).items():
    np.testing.assert_array_equal(value, before[path])


# --------------------------------------------------------------------------- linen


class LinenBlock(nn.Module):

  @nn.compact
  def __call__(self, x):
    self.variable("stats", "count", lambda: jnp.zeros((), jnp.int32))
    x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, name="attn")(nn.LayerNorm()(x))
    h = nn.Dense(FF, name="fc1")(nn.LayerNorm()(x))
    return x + nn.Dense(D, name="fc2")(nn.gelu(h))


def test_linen_reinit_transformer_block(check_law):
  module = LinenBlock()
  x = jnp.ones((2, 5, D))
  variables = module.init(jax.random.key(0), x)
  before = jax.tree.map(np.asarray, variables)
  new = jinit.linen.reinit(module, variables, jax.ShapeDtypeStruct(x.shape, x.dtype),
                           jinit.torch_linear_default, key=jax.random.key(1),
                           bias_init=jinit.torch_linear_default)
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, variables))
  assert jax.tree.structure(new) == jax.tree.structure(variables)
  assert new["stats"]["count"] == 0
  flat = {"/".join(k.key for k in p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(new["params"])[0]}
  fan_in = {p: (FF if p.startswith("fc2") else D) for p in flat
            if p.startswith(("attn", "fc1", "fc2"))}
  assert len(fan_in) == 12
  _assert_uniform_by_fan_in(flat, fan_in, check_law, "linen torch default")
  assert np.all(flat["LayerNorm_0/scale"] == 1.0)
  # Rules see linen paths inside "params".
  seen = []
  jinit.linen.reinit(module, variables, x, None, key=jax.random.key(1),
                     rules=[(r"^attn/out/kernel$", _tagger(1.0, seen))])
  assert seen == [(1.0, (HEADS, D // HEADS, D), D, D)]


# --------------------------------------------------------------------------- bad input


def test_bad_input():
  model = Transformer(nnx.Rngs(0))
  key = jax.random.key(0)
  with pytest.raises(TypeError, match="model must be a flax.nnx Module, got str"):
    jinit.nnx.reinit("model", jinit.xavier_uniform, key=key)
  with pytest.raises(TypeError, match="model must be a flax.nnx Module.*jinit.linen.reinit"):
    jinit.nnx.reinit(nn.Dense(3), jinit.xavier_uniform, key=key)
  with pytest.raises(TypeError, match="module must be a flax.linen Module.*jinit.nnx.reinit"):
    jinit.linen.reinit(model, {"params": {}}, jnp.ones((1, 3)), jinit.xavier_uniform, key=key)
  with pytest.raises(TypeError, match="variables must be a mapping with a 'params'"):
    jinit.linen.reinit(nn.Dense(3), {}, jnp.ones((1, 3)), jinit.xavier_uniform, key=key)
  with pytest.raises(TypeError, match="init must be a jinit initializer"):
    jinit.nnx.reinit(model, "xavier_uniform", key=key)
  with pytest.raises(TypeError, match="bias_init must be a jinit initializer"):
    jinit.nnx.reinit(model, jinit.xavier_uniform, key=key, bias_init=0.0)
  with pytest.raises(TypeError, match="key must be a PRNG key"):
    jinit.nnx.reinit(model, jinit.xavier_uniform, key=0)
  with pytest.raises(TypeError, match="rules must be a sequence of"):
    jinit.nnx.reinit(model, jinit.xavier_uniform, key=key, rules="kernel")
  with pytest.raises(TypeError, match=r"rules\[0\] must be a \(pattern, init\) pair"):
    jinit.nnx.reinit(model, jinit.xavier_uniform, key=key, rules=[("kernel",)])
  with pytest.raises(ValueError, match=r"rules\[0\]: pattern '\(' is not a valid regex"):
    jinit.nnx.reinit(model, jinit.xavier_uniform, key=key, rules=[("(", jinit.zeros)])
  with pytest.raises(TypeError, match=r"rules\[1\] init \(for pattern 'bias'\)"):
    jinit.nnx.reinit(model, jinit.xavier_uniform, key=key,
                     rules=[("kernel", jinit.zeros), ("bias", None)])
  # A rule pattern that matches nothing names the pattern (nnx and linen).
  with pytest.raises(ValueError, match="'attn/proj' match no parameter"):
    jinit.nnx.reinit(model, jinit.xavier_uniform, key=key, rules=[("attn/proj", jinit.zeros)])
  with pytest.raises(ValueError, match="'Dense_7' match no parameter"):
    dense = nn.Dense(3)
    jinit.linen.reinit(dense, dense.init(key, jnp.ones((1, 2))), jnp.ones((1, 2)),
                       jinit.xavier_uniform, key=key, rules=[("Dense_7", jinit.zeros)])
  # An equation that does not match the kernel's rank (shape-only adapter, at init time).
  with pytest.raises(ValueError, match="equation 'btd,dhk->bthk' has a rank-3 kernel"):
    nnx.Einsum("btd,dk->btk", (8, 4), rngs=nnx.Rngs(0),
               kernel_init=jinit.nnx.kernel_init(jinit.xavier_uniform, equation="btd,dhk->bthk"))
  with pytest.raises(ValueError, match="either equation or in_axis/out_axis"):
    jinit.nnx.kernel_init(jinit.xavier_uniform, equation="ab,bc->ac", in_axis=0)
  with pytest.raises(TypeError, match="equation must be an einsum string"):
    jinit.linen.kernel_init(jinit.xavier_uniform, equation=3)


def test_module_layout_and_alias():
  assert jinit.flax.Dense is jinit.linen.Dense
  assert jinit.flax.kernel_init is jinit.linen.kernel_init is jinit.nnx.kernel_init
  assert jinit.flax.nnx_linear is jinit.nnx.linear
  assert layers_lib.param_key(jax.random.key(0), "a/kernel").shape == ()
  partial = functools.partial(jinit.orthogonal, gain=2.0)
  assert layers_lib.is_grouped_init(partial) and not layers_lib.is_grouped_init(jinit.normal)


def test_layers_stacked_by_vmap_are_independent_copies(check_law):
  """nnx.vmap-built layers (scan over layers) store a leading stack axis: not a fan."""

  @nnx.split_rngs(splits=4)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def make(rngs):
    return nnx.Linear(256, 64, rngs=rngs)

  stack = make(nnx.Rngs(0))
  assert stack.kernel[...].shape == (4, 256, 64)
  jinit.nnx.reinit(stack, jinit.orthogonal, key=jax.random.key(0))
  w = np.asarray(stack.kernel[...], np.float64)
  np.testing.assert_allclose(np.einsum("lij,lik->ljk", w, w),
                             np.broadcast_to(np.eye(64), (4, 64, 64)), atol=1e-5)
  jinit.nnx.reinit(stack, jinit.torch_linear_default, key=jax.random.key(0),
                   bias_init=jinit.torch_linear_default)
  check_law(stack.kernel[...], scipy.stats.uniform(-1 / 16, 2 / 16), what="stacked kernel")
  assert np.abs(np.asarray(stack.bias[...])).max() <= 1 / 16


def test_linen_embed_used_only_through_attend_is_found():
  class AttendOnly(nn.Module):

    @nn.compact
    def __call__(self, h):
      return nn.Embed(50, 16, name="emb").attend(h)

    # (the embedding table is only read through Embed.attend: a tied read-out)

  module, h = AttendOnly(), jnp.ones((2, 16))
  seen = []
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    jinit.linen.reinit(module, module.init(jax.random.key(0), h), h, _tagger(1.0, seen),
                       key=jax.random.key(1))
  assert seen == [(1.0, (50, 16), 16, 50)]
