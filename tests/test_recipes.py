"""jinit.recipes: each recipe's formula, drawn statistics, and its use by every reinit."""

import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx

import jinit
import jinit.equinox as je
import jinit.haiku as jh
from jinit import recipes

KEY = jax.random.key(0)


def eqx_mha(heads, d):
  """An Equinox MultiheadAttention with numpy-random weights (its own init compiles per
  shape; the tests here re-draw every weight they look at)."""
  shapes = eqx.filter_eval_shape(eqx.nn.MultiheadAttention, heads, d, key=KEY)
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(
      lambda s: jnp.asarray(rng.standard_normal(s.shape).astype(s.dtype))
      if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)
N = (320, 320)  # 102400 samples per statistics check (check_law's tolerances follow n)


def test_formulas():
  assert recipes.small_init_std(512) == pytest.approx(math.sqrt(2 / 2560))
  assert recipes.wang_init_std(24, 1024) == pytest.approx(2 / 24 / 32)
  c = recipes.deepnorm_constants(encoder_layers=18)
  assert c["encoder"] == pytest.approx(((36) ** 0.25, (144) ** -0.25))
  c = recipes.deepnorm_constants(decoder_layers=6)
  assert c["decoder"] == pytest.approx((12 ** 0.25, 48 ** -0.25))
  c = recipes.deepnorm_constants(12, 6)
  assert c["encoder"] == pytest.approx((0.81 * (12 ** 4 * 6) ** (1 / 16),
                                        0.87 * (12 ** 4 * 6) ** (-1 / 16)))
  assert c["decoder"] == pytest.approx((18 ** 0.25, 72 ** -0.25))
  assert recipes.deepnorm_alpha(6, "decoder", other_layers=12) == pytest.approx(18 ** 0.25)
  with pytest.raises(ValueError, match="part"):
    recipes.deepnorm(6, "middle")
  with pytest.raises(TypeError, match="num_layers"):
    recipes.deepnorm(6.0)
  with pytest.raises(ValueError, match="d_model"):
    recipes.small_init(0)


@pytest.mark.parametrize("make,std", [
    (lambda: recipes.small_init(256), math.sqrt(2 / 1280)),
    (lambda: recipes.wang_init(12, 256), 2 / 12 / 16),
])
def test_normal_recipes_statistics(check_law, make, std):
  w = make()(jax.random.key(1), N, 320, 320)
  check_law(w, scipy.stats.norm(scale=std))


def test_olmo_truncated_statistics(check_law):
  init = recipes.olmo2()["init"]
  w = init(jax.random.key(2), N, None, None)
  check_law(w, scipy.stats.truncnorm(-3, 3, scale=0.02), what="olmo2")
  init = recipes.olmo(64, 2)["init"]
  check_law(init(jax.random.key(3), N), scipy.stats.truncnorm(-3, 3, scale=1 / 8), what="olmo")


class Attn(nnx.Module):
  def __init__(self, d, rngs):
    self.attn = nnx.MultiHeadAttention(4, d, decode=False, rngs=rngs)
    self.mlp = nnx.Dict(fc1=nnx.Linear(d, 4 * d, rngs=rngs), fc2=nnx.Linear(4 * d, d, rngs=rngs))


class Model(nnx.Module):
  def __init__(self, d, layers, rngs):
    self.blocks = nnx.List([Attn(d, rngs) for _ in range(layers)])


def test_deepnorm_on_nnx_model(check_law):
  d, n = 64, 3
  model = Model(d, n, nnx.Rngs(0))
  jinit.nnx.reinit(model, key=jax.random.key(4), **recipes.deepnorm(n, "encoder"))
  beta = (8 * n) ** -0.25
  blocks = model.blocks
  # value: fans (64, 64): std beta sqrt(2 / 128); query keeps gain 1.
  v = np.concatenate([np.ravel(b.attn.value.kernel[...]) for b in blocks])
  q = np.concatenate([np.ravel(b.attn.query.kernel[...]) for b in blocks])
  f = np.concatenate([np.ravel(b.mlp["fc1"].kernel[...]) for b in blocks])
  # 3 x 4096 = 12288 samples each: too few for check_law's n >= 1e5 KS power, so compare
  # stds with the normal's 6-sigma band on the sample std: sd * (1 +- 6 / sqrt(2n)).
  for x, sd in ((v, beta * math.sqrt(2 / 128)), (q, math.sqrt(2 / 128)),
                (f, beta * math.sqrt(2 / 320))):
    assert abs(x.std() / sd - 1) < 6 / math.sqrt(2 * x.size), (x.std(), sd)
  assert np.all(model.blocks[0].mlp["fc1"].bias[...] == 0)


def test_gpt_neox_rules_match_every_framework():
  d, n = 64, 3  # test_deepnorm_on_nnx_model's model: its shapes are compiled once
  model = Model(d, n, nnx.Rngs(0))
  jinit.nnx.reinit(model, key=KEY, **recipes.gpt_neox(n, d))
  out = model.blocks[1].attn.out.kernel[...]
  fc2 = model.blocks[1].mlp["fc2"].kernel[...]
  q = model.blocks[1].attn.query.kernel[...]
  for w, sd in ((out, 2 / n / math.sqrt(d)), (fc2, 2 / n / math.sqrt(d)),
                (q, math.sqrt(2 / (5 * d)))):
    w = np.ravel(w)
    assert abs(w.std() / sd - 1) < 6 / math.sqrt(2 * w.size), (w.std(), sd)
  # Equinox: attention output_proj by ATTN_OUT; the index-named MLP output by its own pattern.
  mha = eqx_mha(4, d)
  recipe = recipes.gpt_neox(n, d)
  recipe["rules"] = recipe["rules"][:1]  # the attention-output rule (no MLP in an MHA)
  new = je.reinit(mha, key=KEY, **recipe)
  w = np.ravel(new.output_proj.weight)
  assert abs(w.std() / (2 / n / math.sqrt(d)) - 1) < 6 / math.sqrt(2 * w.size)
  # Haiku: multi_head_attention/linear is the attention output.
  params = {"multi_head_attention/linear": {"w": jnp.ones((d, d)), "b": jnp.ones(d)},
            "mlp/~/linear_1": {"w": jnp.ones((4 * d, d))}}
  recipe = recipes.gpt_neox(n, d, ffn_out=r"mlp/~/linear_1/w$")
  new = jh.reinit(params, key=KEY, **recipe)
  assert np.all(new["multi_head_attention/linear"]["b"] == 0)
  w = np.ravel(new["mlp/~/linear_1"]["w"])  # 16384 samples: 6-sigma band of the sample std
  assert abs(w.std() / (2 / n / math.sqrt(d)) - 1) < 6 / math.sqrt(2 * w.size)
  # params pytree
  tree = recipes.apply_recipe(nnx.state(model, nnx.Param), recipes.olmo2(), key=KEY)
  assert float(jnp.max(jnp.abs(tree["blocks"][0]["attn"]["query"]["kernel"][...]))) <= 0.06


def test_olmo_rules_scale_with_layer_index():
  rules = recipes.olmo(16, 3)["rules"]
  assert len(rules) == 6
  assert re.search(rules[2][0], "blocks/1/attn/out/kernel")
  assert not re.search(rules[2][0], "blocks/10/attn/out/kernel")
  assert not re.search(rules[0][0], "blocks/1/attn/out/kernel")
  w = rules[4][1](KEY, (256, 256))  # block 2 attention out: 1 / sqrt(2 * 16 * 3)
  sd = 1 / math.sqrt(96) * scipy.stats.truncnorm(-3, 3).std()
  assert abs(float(w.std()) / sd - 1) < 6 / math.sqrt(2 * w.size)


@pytest.mark.parametrize("layout", ["flax", "equinox", "haiku"])
def test_mimetic_products(layout):
  d, h, hd = 32, 4, 8
  if layout == "flax":
    tree = {"attn": {"query": {"kernel": jnp.zeros((d, h, hd))},
                     "key": {"kernel": jnp.zeros((d, h, hd))},
                     "value": {"kernel": jnp.zeros((d, h, hd))},
                     "out": {"kernel": jnp.zeros((h, hd, d))}}}
  elif layout == "equinox":
    tree = eqx_mha(h, d)
  else:
    tree = {"mha/query": {"w": jnp.zeros((d, d))}, "mha/key": {"w": jnp.zeros((d, d))},
            "mha/value": {"w": jnp.zeros((d, d))}, "mha/linear": {"w": jnp.zeros((d, d))}}
  new = recipes.mimetic_attention(tree, key=KEY, alpha=0.7, beta=0.7, value_alpha=0.4,
                                  value_beta=0.4, layout=layout)
  if layout == "flax":
    a = new["attn"]
    wq, wk = a["query"]["kernel"].reshape(d, d), a["key"]["kernel"].reshape(d, d)
    wv, wo = a["value"]["kernel"].reshape(d, d), a["out"]["kernel"].reshape(d, d)
  elif layout == "equinox":
    wq, wk = new.query_proj.weight.T, new.key_proj.weight.T
    wv, wo = new.value_proj.weight.T, new.output_proj.weight.T
  else:
    wq, wk = new["mha/query"]["w"], new["mha/key"]["w"]
    wv, wo = new["mha/value"]["w"], new["mha/linear"]["w"]
  qk = np.asarray(wq @ wk.T, np.float64)
  vo = np.asarray(wv @ wo, np.float64)
  # alpha Z + beta I with Var Z = 1/d: the diagonal averages beta, the off-diagonal has
  # std alpha / sqrt(d) (1024 - 32 entries: its sample std within 6 / sqrt(2 * 992) = 13%).
  off = ~np.eye(d, dtype=bool)
  assert abs(np.diag(qk).mean() - 0.7) < 6 * 0.7 / d
  assert abs(np.diag(vo).mean() + 0.4) < 6 * 0.4 / d
  assert abs(qk[off].std() / (0.7 / math.sqrt(d)) - 1) < 6 / math.sqrt(2 * off.sum())
  assert abs(vo[off].std() / (0.4 / math.sqrt(d)) - 1) < 6 / math.sqrt(2 * off.sum())


def test_mimetic_errors():
  with pytest.raises(ValueError, match="no 'query/kernel'"):
    recipes.mimetic_attention({"a": jnp.ones(3)}, key=KEY, alpha=1.0, beta=1.0)
  with pytest.raises(ValueError, match="missing"):
    recipes.mimetic_attention({"query": {"kernel": jnp.ones((4, 4))}}, key=KEY, alpha=1.0,
                              beta=1.0)


def test_deepnorm_residual():
  x, fx = jnp.ones(4), jnp.full(4, 2.0)
  np.testing.assert_allclose(recipes.deepnorm_residual(x, fx, 3.0), np.full(4, 5.0))
  with pytest.raises(ValueError, match="same shape"):
    recipes.deepnorm_residual(x, jnp.ones(3), 2.0)
