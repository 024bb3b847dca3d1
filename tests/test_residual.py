"""Depth-scaled residual inits: GPT-2, ReZero/SkipInit, Fixup, T-Fixup (jinit.residual)."""

from __future__ import annotations

import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from flax import nnx
from helpers import uniform

import jinit
from jinit import residual

KEY = jax.random.key(0)
SHAPE = (256, 512)  # 131072 samples per statistical check (see conftest.check_law)


def _xavier_bound(fan_in, fan_out):
  return math.sqrt(6.0 / (fan_in + fan_out))


# --------------------------------------------------------------------------- scaled


@pytest.mark.parametrize("factor", [0.25, 3.0])
def test_scaled_xavier_is_xavier_times_factor(check_law, factor):
  init = residual.scaled(jinit.xavier_uniform, factor)
  w = init(KEY, SHAPE, *SHAPE)
  check_law(w, uniform(factor * _xavier_bound(*SHAPE)), what=f"xavier x {factor}")
  # Exactly the unscaled draw times the factor (same key, same bits up to rounding).
  np.testing.assert_allclose(w, jinit.xavier_uniform(KEY, SHAPE, *SHAPE) * factor, rtol=1e-6)


def test_scaled_keeps_dtype_and_checks_args():
  w = residual.scaled(jinit.xavier_uniform, 0.5)(KEY, (8, 8), 8, 8, dtype=jnp.bfloat16)
  assert w.dtype == jnp.bfloat16 and w.shape == (8, 8)
  with pytest.raises(ValueError, match="factor"):
    residual.scaled(jinit.xavier_uniform, 0.0)
  with pytest.raises(TypeError, match="init"):
    residual.scaled("xavier_uniform", 0.5)


def test_embedding_normal_std_is_inverse_sqrt_width(check_law):
  w = residual.embedding_normal(KEY, SHAPE)
  check_law(w, scipy.stats.norm(0.0, SHAPE[-1] ** -0.5), what="N(0, 1/d)")


# --------------------------------------------------------------------------- GPT-2


@pytest.mark.parametrize("num_layers", [1, 12, 48])
def test_gpt2_rule_std(check_law, num_layers):
  (pattern, init), = residual.gpt2_rules(num_layers)
  assert pattern == residual.GPT2_PATTERN
  assert residual.gpt2_scale(num_layers) == pytest.approx(1 / math.sqrt(2 * num_layers))
  w = init(KEY, SHAPE, *SHAPE)
  check_law(w, scipy.stats.norm(0.0, 0.02 / math.sqrt(2 * num_layers)), what="gpt2 proj")


def test_gpt2_rule_with_base_init(check_law):
  (_, init), = residual.gpt2_rules(8, r"out/kernel$", init=jinit.xavier_uniform)
  check_law(init(KEY, SHAPE, *SHAPE), uniform(_xavier_bound(*SHAPE) / 4.0), what="xavier/4")


def test_gpt2_default_pattern_matches_projections_only():
  pattern = residual.GPT2_PATTERN
  for path in ("blocks/3/attn/out/kernel", "h/0/mlp/c_proj/kernel", "blocks/0/mlp/fc2/kernel",
               "layers_1/MultiHeadDotProductAttention_0/out/kernel"):
    assert re.search(pattern, path), path
  for path in ("blocks/3/attn/query/kernel", "blocks/0/mlp/fc1/kernel", "head/kernel",
               "blocks/3/attn/out/bias"):
    assert re.search(pattern, path) is None, path


def test_apply_gpt2_counts_layers_from_params():
  params = {"blocks": [{"attn": {"out": {"kernel": np.ones((64, 64), np.float32)}},
                        "mlp": {"fc2": {"kernel": np.ones((128, 64), np.float32)}},
                        "mlp_in": {"kernel": np.ones((64, 128), np.float32)}}
                       for _ in range(6)]}
  new = residual.apply_gpt2(params, key=KEY)
  outs = np.concatenate([np.ravel(b["attn"]["out"]["kernel"]) for b in new["blocks"]]
                        + [np.ravel(b["mlp"]["fc2"]["kernel"]) for b in new["blocks"]])
  # 6 blocks -> L = 6: std 0.02/sqrt(12). 73728 samples: 6 SE of the variance = 6 sqrt(2/n).
  assert np.var(outs) == pytest.approx(0.02 ** 2 / 12, rel=6 * math.sqrt(2 / outs.size))
  assert all(np.all(b["mlp_in"]["kernel"] == 1.0) for b in new["blocks"])  # untouched
  with pytest.raises(ValueError, match="pattern"):
    residual.apply_gpt2({"a": {"kernel": np.ones((4, 4))}}, key=KEY)


# --------------------------------------------------------------------------- ReZero / SkipInit


def test_rezero_gate_nnx_identity_at_init_and_learns():
  gate = residual.ResidualGate()
  x = jnp.arange(6.0).reshape(2, 3)
  branch = jnp.ones((2, 3))
  np.testing.assert_array_equal(gate(x, branch), x)  # alpha = 0: identity
  grads = nnx.grad(lambda g: jnp.sum(g(x, branch) ** 2))(gate)
  # d/dalpha sum((x + alpha b)^2) at alpha = 0 is 2 sum(x b) = 2 * 15.
  assert float(grads.alpha[...]) == pytest.approx(30.0)
  fixup_gate = residual.ResidualGate(1.0)
  np.testing.assert_array_equal(fixup_gate(x, branch), x + branch)
  with pytest.raises(ValueError, match="same shape"):
    gate(x, jnp.ones((3,)))


def test_rezero_gate_linen():
  x = jnp.arange(6.0).reshape(2, 3)
  gate = residual.LinenResidualGate()
  variables = gate.init(KEY, x, jnp.ones((2, 3)))
  assert variables["params"]["alpha"].shape == () and float(variables["params"]["alpha"]) == 0
  np.testing.assert_array_equal(gate.apply(variables, x, jnp.ones((2, 3))), x)
  v1 = residual.LinenResidualGate(init_value=1.0).init(KEY, x, x)
  np.testing.assert_array_equal(residual.LinenResidualGate(1.0).apply(v1, x, x), 2 * x)


def test_scalar_bias_nnx_and_linen():
  x = jnp.ones((2, 3))
  b = residual.ScalarBias()
  np.testing.assert_array_equal(b(x), x)
  b.bias[...] = 0.5
  np.testing.assert_array_equal(b(x), x + 0.5)
  v = residual.LinenScalarBias().init(KEY, x)
  assert v["params"]["bias"].shape == () and float(v["params"]["bias"]) == 0.0


class _Block(nnx.Module):

  def __init__(self, d, rngs):
    self.fc1 = nnx.Linear(d, 2 * d, rngs=rngs)
    self.fc2 = nnx.Linear(2 * d, d, rngs=rngs)
    self.gate = residual.ResidualGate(1.0)

  def __call__(self, x):
    return self.gate(x, self.fc2(jax.nn.relu(self.fc1(x))))


class _ResMLP(nnx.Module):

  def __init__(self, d, depth, rngs):
    self.stem = nnx.Linear(d, d, rngs=rngs)
    self.blocks = nnx.List([_Block(d, rngs) for _ in range(depth)])
    self.head = nnx.Linear(d, 10, rngs=rngs)

  def __call__(self, x):
    x = self.stem(x)
    for b in self.blocks:
      x = b(x)
    return self.head(x)


def test_rezero_rules_on_nnx_state():
  model = _ResMLP(8, 3, nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  assert "blocks/1/gate/alpha" in residual.param_paths(state)  # no trailing /value
  nnx.update(model, residual.apply_rules(state, residual.rezero_rules(), key=KEY))
  assert all(float(b.gate.alpha[...]) == 0.0 for b in model.blocks)
  x = jax.random.normal(KEY, (4, 8))
  # Every block is the identity: the model is head(stem(x)).
  np.testing.assert_allclose(model(x), model.head(model.stem(x)), rtol=1e-6)


# --------------------------------------------------------------------------- Fixup


@pytest.mark.parametrize("m", [2, 3])
def test_fixup_rules_scale_and_zero(check_law, m):
  layers = [rf"fc{i}/kernel$" for i in range(1, m + 1)]
  rules = residual.fixup_rules(16, layers, classifier=r"head/kernel$")
  assert [p for p, _ in rules] == layers + [r"head/kernel$"]
  factor = 16 ** (-1.0 / (2 * m - 2))  # m = 2: 1/4; m = 3: 1/2
  assert residual.fixup_scale(16, m) == pytest.approx(factor)
  w = rules[0][1](KEY, SHAPE, *SHAPE)
  check_law(w, scipy.stats.norm(0.0, math.sqrt(2.0 / SHAPE[0]) * factor), what="fixup branch")
  for _, init in rules[m - 1:]:
    assert not np.any(init(KEY, (4, 4), 4, 4))


def test_apply_fixup_on_nnx_resmlp():
  depth, d = 4, 128
  model = _ResMLP(d, depth, nnx.Rngs(1))
  stem_before = np.asarray(model.stem.kernel[...])
  state = nnx.state(model, nnx.Param)
  new = residual.apply_fixup(state, key=KEY, branch_layers=[r"fc1/kernel$", r"fc2/kernel$"],
                             classifier=r"head/kernel$")
  nnx.update(model, new)
  fc1 = np.concatenate([np.ravel(b.fc1.kernel[...]) for b in model.blocks])
  # He (fan_in = d) scaled by L^(-1/2), L = 4 branches found in the params: var 2/d / 4.
  # 131072 samples: 6 SE of the sample variance is 6 sqrt(2/n) relative.
  assert np.var(fc1) == pytest.approx(2.0 / d / depth, rel=6 * math.sqrt(2 / fc1.size))
  assert all(not np.any(b.fc2.kernel[...]) for b in model.blocks)
  assert not np.any(model.head.kernel[...])
  np.testing.assert_array_equal(model.stem.kernel[...], stem_before)  # stem untouched
  # At init every branch outputs its bias only (last layer zero): the blocks add fc2's bias.
  x = jax.random.normal(KEY, (2, d))
  np.testing.assert_allclose(model.blocks[0](x), x + model.blocks[0].fc2.bias[...][None, :],
                             rtol=1e-6)


def test_fixup_needs_residual_branches():
  mlp = {"layers_0": {"kernel": np.ones((4, 8), np.float32)},
         "layers_1": {"kernel": np.ones((8, 2), np.float32)}}
  with pytest.raises(ValueError, match="branch_layers.*no residual branches"):
    residual.apply_fixup(mlp, key=KEY, branch_layers=[r"fc1/kernel$", r"fc2/kernel$"])
  with pytest.raises(ValueError, match="num_branches"):
    residual.fixup_rules(0, [r"fc1", r"fc2"])
  with pytest.raises(ValueError, match="branch_layers"):
    residual.fixup_rules(4, [r"fc1"])
  with pytest.raises(TypeError, match="num_branches"):
    residual.fixup_rules(2.0, [r"fc1", r"fc2"])


# --------------------------------------------------------------------------- T-Fixup


def test_tfixup_factors():
  assert residual.tfixup_scale(16) == pytest.approx(0.67 / 2.0)
  assert residual.tfixup_scale(16, decoder=True) == pytest.approx(144 ** -0.25)
  with pytest.raises(ValueError, match="num_layers"):
    residual.tfixup_scale(0)
  with pytest.raises(TypeError, match="decoder"):
    residual.tfixup_scale(4, decoder="yes")


def test_tfixup_rules_laws(check_law):
  n = 12
  rules = dict(residual.tfixup_rules(n, embeddings=r"^embed$"))
  assert list(rules) == [r"^embed$", residual.TFIXUP_VALUE, residual.TFIXUP_OUT,
                         residual.TFIXUP_MLP]
  check_law(rules[r"^embed$"](KEY, SHAPE), scipy.stats.norm(0, SHAPE[1] ** -0.5
                                                             * (9 * n) ** -0.25),
            what="tfixup embedding")
  check_law(rules[residual.TFIXUP_OUT](KEY, SHAPE, *SHAPE),
            uniform(_xavier_bound(*SHAPE) * 0.67 * n ** -0.25), what="tfixup out")


def test_apply_tfixup_touches_value_out_mlp_only():
  d, n = 64, 4
  block = lambda: {"attn": {k: {"kernel": np.ones((d, d), np.float32)}
                            for k in ("query", "key", "value", "out")},
                   "mlp": {"fc1": {"kernel": np.ones((d, 2 * d), np.float32)},
                           "fc2": {"kernel": np.ones((2 * d, d), np.float32)}}}
  params = {"embed": np.ones((100, d), np.float32), "blocks": [block() for _ in range(n)]}
  new = residual.apply_tfixup(params, key=KEY, embeddings=r"^embed$")
  factor = 0.67 * n ** -0.25
  for b in new["blocks"]:
    assert np.all(b["attn"]["query"]["kernel"] == 1) and np.all(b["attn"]["key"]["kernel"] == 1)
    for w, (fi, fo) in ((b["attn"]["value"]["kernel"], (d, d)),
                        (b["attn"]["out"]["kernel"], (d, d)),
                        (b["mlp"]["fc1"]["kernel"], (d, 2 * d))):
      bound = _xavier_bound(fi, fo) * factor
      assert np.max(np.abs(w)) <= bound * (1 + 1e-6)
      assert np.max(np.abs(w)) > 0.9 * bound  # 4096+ uniform draws reach 90% of the bound
  assert np.std(new["embed"]) == pytest.approx(d ** -0.5 * (9 * n) ** -0.25, rel=0.05)


def test_tfixup_needs_residual_branches():
  mlp = {"layers_0": {"kernel": np.ones((4, 8), np.float32)}}
  with pytest.raises(ValueError, match="out=.*no residual attention branches"):
    residual.apply_tfixup(mlp, key=KEY)


# --------------------------------------------------------------------------- apply_rules


def test_apply_rules_first_match_wins_and_unmatched_pattern():
  params = {"a": {"kernel": np.ones((4, 4), np.float32)},
            "b": {"kernel": np.ones((4, 4), np.float32), "bias": np.ones(4, np.float32)}}
  new = residual.apply_rules(params, [(r"^a/", jinit.zeros), (r"kernel$", jinit.ones),
                                      (r"bias", residual.rezero_rules()[0][1])], key=KEY)
  assert not np.any(new["a"]["kernel"])  # the first rule, not the second
  assert np.all(new["b"]["kernel"] == 1) and not np.any(new["b"]["bias"])
  with pytest.raises(ValueError, match=r"rule pattern 'nothing/here' matches no parameter"):
    residual.apply_rules(params, [(r"kernel$", jinit.zeros), ("nothing/here", jinit.zeros)],
                         key=KEY)
  with pytest.raises(TypeError, match="rules"):
    residual.apply_rules(params, "kernel", key=KEY)
  with pytest.raises(ValueError, match="not a valid regex"):
    residual.apply_rules(params, [("(", jinit.zeros)], key=KEY)


def test_apply_rules_fans_dtype_and_determinism():
  conv = {"conv": {"kernel": np.zeros((3, 3, 16, 32), np.float32)},
          "dense": {"kernel": np.zeros((8, 8), jnp.bfloat16)}}
  rules = [(r"kernel$", jinit.xavier_uniform)]
  with pytest.raises(ValueError, match="cannot tell the fans of 'conv/kernel'.*needs them"):
    residual.apply_rules(conv, rules, key=KEY)
  # An init that needs no fans (GPT-2's normal) is fine on an ambiguous rank-3 kernel.
  gpt2 = residual.apply_rules(conv, residual.gpt2_rules(4, r"conv/kernel$"), key=KEY)
  assert gpt2["conv"]["kernel"].shape == (3, 3, 16, 32) and np.any(gpt2["conv"]["kernel"])
  a = residual.apply_rules(conv, rules, key=KEY, fans="conv")
  b = residual.apply_rules(conv, rules, key=KEY, fans="conv")
  np.testing.assert_array_equal(a["conv"]["kernel"], b["conv"]["kernel"])  # pure in the key
  assert a["dense"]["kernel"].dtype == jnp.bfloat16
  bound = _xavier_bound(9 * 16, 9 * 32)  # Flax conv (H, W, in, out) fans
  assert bound * 0.9 < np.max(np.abs(a["conv"]["kernel"])) <= bound * (1 + 1e-6)
  custom = residual.apply_rules(conv, rules, key=KEY, fans=lambda path, shape: (1, 1))
  assert np.max(np.abs(custom["conv"]["kernel"])) > bound  # bound sqrt(3) with fans (1, 1)
  with pytest.raises(ValueError, match="fans must be"):
    residual.apply_rules(conv, rules, key=KEY, fans="dense")


def test_linen_params_paths():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      return residual.LinenResidualGate()(x, nn.Dense(4, name="fc2")(x))

  variables = Net().init(KEY, jnp.ones((1, 4)))
  assert set(residual.param_paths(variables["params"])) == {
      "LinenResidualGate_0/alpha", "fc2/kernel", "fc2/bias"}
  new = residual.apply_rules(variables["params"], residual.gpt2_rules(2, r"fc2/kernel$"),
                             key=KEY)
  assert new["fc2"]["kernel"].shape == (4, 4)
  assert not np.array_equal(new["fc2"]["kernel"], variables["params"]["fc2"]["kernel"])


def test_rules_drive_nnx_reinit():
  # The rules contract with jinit.nnx.reinit (true fans from each layer): skipped until
  # reinit is merged. nnx.MultiHeadAttention's out kernel is (heads, head_dim, d).
  jnnx = pytest.importorskip("jinit.nnx")
  if not hasattr(jnnx, "reinit"):
    pytest.skip("jinit.nnx.reinit not available")

  class Block(nnx.Module):

    def __init__(self, d, rngs):
      self.attn = nnx.MultiHeadAttention(4, d, decode=False, rngs=rngs)
      self.mlp = nnx.Dict(fc1=nnx.Linear(d, 2 * d, rngs=rngs),
                          fc2=nnx.Linear(2 * d, d, rngs=rngs))

  depth, d = 8, 128
  model = nnx.Dict(blocks=nnx.List([Block(d, nnx.Rngs(i)) for i in range(depth)]))
  blocks = model["blocks"]
  cat = lambda get: np.concatenate([np.ravel(get(b)[...]) for b in blocks])
  jnnx.reinit(model, jinit.xavier_uniform, key=KEY, bias_init=jinit.zeros,
              rules=residual.gpt2_rules(depth))
  out = cat(lambda b: b.attn.out.kernel)  # 131072 samples: 6 SE of the variance
  assert np.var(out) == pytest.approx((0.02 / 4) ** 2, rel=6 * math.sqrt(2 / out.size))
  jnnx.reinit(model, jinit.xavier_uniform, key=KEY, bias_init=jinit.zeros,
              rules=residual.tfixup_rules(depth))
  factor = 0.67 * depth ** -0.25
  for get, fans in ((lambda b: b.attn.value.kernel, (d, d)),
                    (lambda b: b.attn.out.kernel, (d, d)),
                    (lambda b: b.mlp["fc1"].kernel, (d, 2 * d))):
    # Xavier uniform: variance 2 / (fan_in + fan_out), times factor^2. The sample variance
    # of a uniform law has relative SE sqrt(0.8 / n) (kurtosis 1.8); allow 6 SE.
    w = cat(get)
    assert np.var(w) == pytest.approx(2 / sum(fans) * factor ** 2,
                                      rel=6 * math.sqrt(0.8 / w.size))
  q = cat(lambda b: b.attn.query.kernel)
  assert np.var(q) == pytest.approx(2 / (2 * d), rel=6 * math.sqrt(0.8 / q.size))
