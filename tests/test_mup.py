"""jinit.mup: the paper's tables, infinite_dims (nnx, linen), scale_updates, readout, attention,
coord check, bad input."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from flax import nnx

from jinit import mup

# --------------------------------------------------------------------------- the tables

# Tensor Programs V (arXiv:2203.03466), transcribed as (exponent of fan_in, exponent of fan_out)
# per role and quantity. Columns: "input weights & all biases" (input, bias, norm), "output
# weights", "hidden weights". Rows: init variance, multiplier, SGD lr, Adam lr.
FAN_IN, FAN_OUT, ONE, INV_FAN_IN = (1, 0), (0, 1), (0, 0), (-1, 0)
PAPER = {
    "mup": {  # Table 8
        "input": (INV_FAN_IN, ONE, FAN_OUT, ONE),
        "output": (ONE, INV_FAN_IN, FAN_IN, ONE),
        "hidden": (INV_FAN_IN, ONE, ONE, INV_FAN_IN),
    },
    "mup_table3": {  # Table 3
        "input": (INV_FAN_IN, ONE, FAN_OUT, ONE),
        "output": ((-2, 0), ONE, INV_FAN_IN, INV_FAN_IN),
        "hidden": (INV_FAN_IN, ONE, ONE, INV_FAN_IN),
    },
    "sp": {role: (INV_FAN_IN, ONE, ONE, ONE) for role in ("input", "output", "hidden")},
}
FIELDS = ("init_var", "multiplier", "sgd_lr", "adam_lr")


def _exps(power):
  return (power.fan_in_exp, power.fan_out_exp)


@pytest.mark.parametrize("parametrization", sorted(PAPER))
@pytest.mark.parametrize("role", ["input", "bias", "norm", "output", "hidden"])
@pytest.mark.parametrize("field", FIELDS)
def test_table_matches_paper(parametrization, role, field):
  column = "input" if role in ("bias", "norm") else role  # "input weights & all biases"
  expected = PAPER[parametrization][column][FIELDS.index(field)]
  got = getattr(mup.rule(parametrization, role), field)
  if parametrization != "sp" and role == "hidden" and field == "sgd_lr":
    # The paper writes 1 assuming fan_in ∝ fan_out; we use fan_out/fan_in (mup.MuSGD), which
    # is 1 whenever both grow together and differs otherwise.
    assert _exps(got) == (-1, 1)
    for n in (3.0, 64.0, 1024.0):
      assert got(n, n) == 1.0
    assert got(2.0, 8.0) == 4.0
    return
  assert _exps(got) == expected


def test_fixed_role_never_scales():
  for p in mup.PARAMETRIZATIONS:
    r = mup.rule(p, "fixed")
    for field in FIELDS[1:]:
      assert getattr(r, field)(4.0, 4.0) == 1.0


# --------------------------------------------------------------------------- models


class NnxMLP(nnx.Module):
  def __init__(self, width, base_width=None, *, din=16, dout=10, zero_readout=False, rngs):
    self.l1 = nnx.Linear(din, width, rngs=rngs)
    self.l2 = nnx.Linear(width, width, rngs=rngs)
    self.head = mup.Readout(width, dout, base_in_features=base_width, zero_init=zero_readout,
                            parametrization="sp" if base_width is None else "mup", rngs=rngs)

  def __call__(self, x):
    return self.head(jax.nn.relu(self.l2(jax.nn.relu(self.l1(x)))))


class LinenMLP(nn.Module):
  width: int
  base_width: int | None = None

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.width, name="l1")(x))
    x = nn.relu(nn.Dense(self.width, name="l2")(x))
    return mup.LinenReadout(10, base_in_features=self.base_width, name="head")(x)


MLP_ROLES = {"l1/kernel": "input", "l1/bias": "bias", "l2/kernel": "hidden", "l2/bias": "bias",
             "head/kernel": "output", "head/bias": "fixed"}


class NnxBlock(nnx.Module):
  """A tiny transformer: embedding, attention (heads fixed, head dim grows), MLP, norms, head."""

  def __init__(self, d, *, vocab=11, heads=2, base_d=None, rngs):
    self.embed = nnx.Embed(vocab, d, rngs=rngs)
    self.ln1 = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs,
                                       attention_fn=mup.attention_fn(
                                           None if base_d is None else base_d // heads))
    self.ln2 = nnx.LayerNorm(d, rngs=rngs)
    self.up = nnx.Linear(d, 4 * d, rngs=rngs)
    self.down = nnx.Linear(4 * d, d, rngs=rngs)
    self.head = mup.Readout(d, vocab, base_in_features=base_d, rngs=rngs)

  def __call__(self, tokens):
    h = self.embed(tokens)
    h = h + self.attn(self.ln1(h))
    h = h + self.down(jax.nn.gelu(self.up(self.ln2(h))))
    return self.head(h)


class LinenBlock(nn.Module):
  d: int
  base_d: int | None = None
  vocab: int = 11
  heads: int = 2

  @nn.compact
  def __call__(self, tokens):
    h = nn.Embed(self.vocab, self.d, name="embed")(tokens)
    fn = mup.attention_fn(None if self.base_d is None else self.base_d // self.heads)
    h = h + nn.MultiHeadDotProductAttention(self.heads, attention_fn=fn, name="attn")(
        nn.LayerNorm(name="ln1")(h))
    u = nn.Dense(4 * self.d, name="up")(nn.LayerNorm(name="ln2")(h))
    h = h + nn.Dense(self.d, name="down")(jax.nn.gelu(u))
    return mup.LinenReadout(self.vocab, base_in_features=self.base_d, name="head")(h)


BLOCK_ROLES = {
    "embed/embedding": "input",
    "ln1/scale": "norm", "ln1/bias": "bias", "ln2/scale": "norm", "ln2/bias": "bias",
    "attn/query/kernel": "hidden", "attn/key/kernel": "hidden", "attn/value/kernel": "hidden",
    "attn/out/kernel": "hidden", "attn/query/bias": "bias", "attn/key/bias": "bias",
    "attn/value/bias": "bias", "attn/out/bias": "bias",
    "up/kernel": "hidden", "up/bias": "bias", "down/kernel": "hidden", "down/bias": "bias",
    "head/kernel": "output", "head/bias": "fixed",
}


def _roles(meta):
  return {p: m.role for p, m in meta.items()}


def test_infinite_dims_nnx_mlp():
  meta = mup.infinite_dims(NnxMLP(256, 64, rngs=nnx.Rngs(0)), NnxMLP(64, 64, rngs=nnx.Rngs(0)))
  assert _roles(meta) == MLP_ROLES
  assert meta["l2/kernel"].infinite == (0, 1) and meta["l2/kernel"].fan_in_axes == (0,)
  assert meta["l1/kernel"].infinite == (1,) and meta["l1/kernel"].fan_in_axes == ()
  assert meta["head/kernel"].infinite == (0,) and meta["head/bias"].infinite == ()
  adam = mup.lr_multipliers(meta, "adam")
  sgd = mup.lr_multipliers(meta, "sgd")
  # width_mult 4: Adam divides hidden lr by 4; SGD multiplies input, biases, readout by 4.
  assert adam == {"l1/kernel": 1, "l1/bias": 1, "l2/kernel": 0.25, "l2/bias": 1,
                  "head/kernel": 1, "head/bias": 1}
  assert sgd == {"l1/kernel": 4, "l1/bias": 4, "l2/kernel": 1, "l2/bias": 4,
                 "head/kernel": 4, "head/bias": 1}
  assert meta["head/kernel"].multiplier == 0.25
  assert meta["l2/kernel"].init_std_mult == 0.5
  assert meta["head/kernel"].init_std_vs_sp == 2.0  # mup's readout rescale: sqrt(width_mult)


def test_infinite_dims_linen_mlp_and_params_agree():
  x = jnp.zeros((1, 16))
  meta = mup.infinite_dims(LinenMLP(256, 64), LinenMLP(64, 64), x)
  assert _roles(meta) == MLP_ROLES
  params = LinenMLP(256, 64).init(jax.random.key(0), x)
  base = LinenMLP(64, 64).init(jax.random.key(0), x)
  assert mup.infinite_dims(params, base) == meta  # variables dicts give the same metadata
  nnx_meta = mup.infinite_dims(NnxMLP(256, 64, rngs=nnx.Rngs(0)),
                               NnxMLP(64, 64, rngs=nnx.Rngs(0)))
  assert mup.lr_multipliers(meta, "adam") == mup.lr_multipliers(nnx_meta, "adam")


def test_infinite_dims_nnx_transformer():
  meta = mup.infinite_dims(nnx.eval_shape(lambda: NnxBlock(64, base_d=16, rngs=nnx.Rngs(0))),
                           nnx.eval_shape(lambda: NnxBlock(16, base_d=16, rngs=nnx.Rngs(0))))
  assert _roles(meta) == BLOCK_ROLES
  # (d, heads, head_dim): d and head_dim grow, heads (2) is fixed; fan-in is d.
  q = meta["attn/query/kernel"]
  assert q.shape == (64, 2, 32) and q.infinite == (0, 2) and q.fan_in_axes == (0,)
  o = meta["attn/out/kernel"]
  assert o.infinite == (1, 2) and o.fan_in_axes == (1,)
  assert q.lr_multiplier("adam") == 0.25 and o.lr_multiplier("adam") == 0.25
  assert meta["up/kernel"].lr_multiplier("adam") == 0.25
  assert meta["down/kernel"].lr_multiplier("adam") == 0.25  # fan_in 4d / base 4d
  assert meta["embed/embedding"].lr_multiplier("sgd") == 4.0


def test_infinite_dims_linen_transformer():
  tokens = jnp.zeros((1, 5), jnp.int32)
  meta = mup.infinite_dims(LinenBlock(64, 16), LinenBlock(16, 16), tokens)
  assert _roles(meta) == BLOCK_ROLES
  assert meta["attn/query/kernel"].infinite == (0, 2)


def test_readout_by_path_and_fan_in_override():
  shapes = {"a/kernel": (64, 10), "b/kernel": (64, 3)}  # two heads: ambiguous
  base = {"a/kernel": (16, 10), "b/kernel": (16, 3)}
  with pytest.raises(ValueError, match="readout"):
    mup.infinite_dims(shapes, base)
  meta = mup.infinite_dims(shapes, base, readout=["a", "b/kernel"])
  assert meta["a/kernel"].role == meta["b/kernel"].role == "output"
  # a (heads, head_dim, d) kernel where both heads and head_dim grow: fan-in is both.
  meta = mup.infinite_dims({"o/kernel": (4, 32, 128), "r/kernel": (128, 10)},
                           {"o/kernel": (2, 16, 32), "r/kernel": (32, 10)},
                           fan_in_axes={"o/kernel": (0, 1)})
  assert meta["o/kernel"].fan_in_mult == 4.0 and meta["o/kernel"].fan_out_mult == 4.0
  assert meta["o/kernel"].lr_multiplier("adam") == 0.25


# --------------------------------------------------------------------------- scale_updates


def _hand_scaled(opt, lr, meta):
  """optax.multi_transform with each parameter's own optimizer at lr * multiplier."""
  mults = mup.lr_multipliers(meta, "adam" if opt == "adam" else "sgd")
  labels = {p: str(m) for p, m in mults.items()}
  make = {"adam": optax.adam, "sgd": lambda lr: optax.sgd(lr, momentum=0.9)}[opt]
  transforms = {str(m): make(lr * m) for m in set(mults.values())}

  def label_fn(params):
    from jinit._src.paths import path_str
    return jax.tree_util.tree_map_with_path(
        lambda kp, _: labels[path_str(kp, drop_params=True)], params)

  return optax.multi_transform(transforms, label_fn)


@pytest.mark.usefixtures("optax_adam_promotion")  # optax.adam is not strict-clean (conftest)
@pytest.mark.parametrize("opt", [pytest.param("adam", marks=pytest.mark.slow), "sgd"])  # adam ~9 s
def test_scale_updates_equals_hand_scaled_learning_rates(opt):
  x = jax.random.normal(jax.random.key(1), (8, 16))
  y = jnp.arange(8) % 10
  model, base = LinenMLP(64, 16), LinenMLP(16, 16)
  params = model.init(jax.random.key(0), x)["params"]
  meta = mup.infinite_dims(model, base, x)
  make = {"adam": optax.adam, "sgd": lambda lr: optax.sgd(lr, momentum=0.9)}[opt]
  lr = 3e-3
  ours = optax.chain(make(lr), mup.scale_updates(meta, opt))
  hand = _hand_scaled(opt, lr, meta)

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()

  p = params
  s1, s2 = ours.init(p), hand.init(p)
  for _ in range(3):  # same params and grads into both: only float rounding may differ
    g = jax.grad(loss)(p)
    u1, s1 = ours.update(g, s1, p)
    u2, s2 = hand.update(g, s2, p)
    for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
      # lr * m * d vs (lr * m) * d: a few float32 ulps apart (2^-23 ~ 1.2e-7 each)
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    p = optax.apply_updates(p, u1)
  # and the updates did differ from plain Adam/SGD where a multiplier is not 1
  u_plain, _ = make(lr).update(jax.grad(loss)(params), make(lr).init(params), params)
  u_mup, _ = ours.update(jax.grad(loss)(params), ours.init(params), params)
  scaled = "l2" if opt == "adam" else "l1"
  assert not np.allclose(u_plain[scaled]["kernel"], u_mup[scaled]["kernel"])


def test_scale_updates_inside_multi_transform():
  params = {"l1": {"kernel": jnp.ones((4, 64))}, "l2": {"kernel": jnp.ones((64, 64))},
            "head": {"kernel": jnp.ones((64, 3))}}
  meta = mup.infinite_dims(params, {"l1": {"kernel": jnp.ones((4, 16))},
                                    "l2": {"kernel": jnp.ones((16, 16))},
                                    "head": {"kernel": jnp.ones((16, 3))}})
  labels = {"l1": {"kernel": "mup"}, "l2": {"kernel": "mup"}, "head": {"kernel": "frozen"}}
  tx = optax.multi_transform({"mup": optax.chain(optax.sgd(0.5), mup.scale_updates(meta, "adam")),
                              "frozen": optax.set_to_zero()}, labels)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["l1"]["kernel"], -0.5)  # Adam table: input x1
  np.testing.assert_allclose(updates["l2"]["kernel"], -0.5 / 4)  # hidden x 1/width_mult
  np.testing.assert_allclose(updates["head"]["kernel"], 0.0)


def test_scale_updates_on_nnx_state_and_optimizer():
  model = NnxMLP(64, 16, rngs=nnx.Rngs(0))
  meta = mup.infinite_dims(model, NnxMLP(16, 16, rngs=nnx.Rngs(0)))
  x = jax.random.normal(jax.random.key(1), (8, 16))
  before = nnx.state(model, nnx.Param)
  before = jax.tree.map(lambda a: a, before)
  optimizer = nnx.Optimizer(model, optax.chain(optax.sgd(0.1), mup.scale_updates(meta, "sgd")),
                            wrt=nnx.Param)
  grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
  optimizer.update(model, grads)
  after = nnx.state(model, nnx.Param)
  # SGD step: delta = -0.1 * m * grad, with m = 4 for l1/kernel and 1 for l2/kernel.
  for name, m in (("l1", 4.0), ("l2", 1.0)):
    delta = after[name]["kernel"][...] - before[name]["kernel"][...]
    np.testing.assert_allclose(delta, -0.1 * m * grads[name]["kernel"][...], rtol=1e-4,
                               atol=1e-7)


# --------------------------------------------------------------------------- layers


def test_readout_init_multiplier_and_zero_init(check_law):
  base, width = 64, 4096
  head = mup.Readout(width, 64, base_in_features=base, rngs=nnx.Rngs(0))
  # Table 8: kernel variance 1/base_in_features, independent of width (262144 samples).
  check_law(head.kernel[...], scipy.stats.norm(scale=1 / math.sqrt(base)), what="readout")
  x = jax.random.normal(jax.random.key(1), (3, width))
  np.testing.assert_allclose(head(x), (x @ head.kernel[...]) * (base / width), rtol=1e-5,
                             atol=1e-6)
  zero = mup.Readout(width, 10, base_in_features=base, zero_init=True, rngs=nnx.Rngs(0))
  assert not np.any(zero.kernel[...]) and not np.any(zero(x))
  linen = mup.LinenReadout(64, base_in_features=base)
  v = linen.init(jax.random.key(0), x)
  check_law(v["params"]["kernel"], scipy.stats.norm(scale=1 / math.sqrt(base)), what="linen")
  np.testing.assert_allclose(linen.apply(v, x), (x @ v["params"]["kernel"]) * (base / width),
                             rtol=1e-5, atol=1e-6)
  t3 = mup.Readout(width, 64, base_in_features=base, parametrization="mup_table3",
                   rngs=nnx.Rngs(0))  # Table 3: variance 1/(base * width_mult^2), no multiplier
  check_law(t3.kernel[...], scipy.stats.norm(scale=1 / math.sqrt(base) / (width / base)),
            what="table3 readout")
  np.testing.assert_allclose(t3(x), x @ t3.kernel[...], rtol=1e-5, atol=1e-6)


def _reference_attention(q, k, v, scale):
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


def test_attention_scale_and_fn():
  assert mup.attention_scale(64, 16) == pytest.approx(4 / 64)
  assert mup.attention_scale(64) == pytest.approx(8 / 64)  # base = d: SP's 1/sqrt(d)
  assert mup.attention_scale(64, 16, parametrization="sp") == pytest.approx(1 / 8)
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 5, 3, 64)) for i in range(3))
  out = mup.attention_fn(16)(q, k, v)
  np.testing.assert_allclose(out, _reference_attention(q, k, v, 4 / 64), rtol=1e-4, atol=1e-5)
  # plugged into nnx and linen attention: base head dim == head dim is exactly Flax's default
  kw = dict(num_heads=2, in_features=8, decode=False)  # head dim 4
  a = nnx.MultiHeadAttention(**kw, attention_fn=mup.attention_fn(4), rngs=nnx.Rngs(0))
  b = nnx.MultiHeadAttention(**kw, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(5), (2, 5, 8))
  np.testing.assert_allclose(a(x), b(x), rtol=1e-5, atol=1e-6)
  c = nnx.MultiHeadAttention(**kw, attention_fn=mup.attention_fn(1), rngs=nnx.Rngs(0))
  assert not np.allclose(c(x), b(x))
  la = nn.MultiHeadDotProductAttention(2, attention_fn=mup.attention_fn(4))
  lb = nn.MultiHeadDotProductAttention(2)
  v_ = lb.init(jax.random.key(0), x)
  np.testing.assert_allclose(la.apply(v_, x), lb.apply(v_, x), rtol=1e-5, atol=1e-6)


def test_zero_query():
  block = mup.zero_query(NnxBlock(16, rngs=nnx.Rngs(0)))
  assert not np.any(block.attn.query.kernel[...]) and np.any(block.attn.key.kernel[...])
  params = LinenBlock(16).init(jax.random.key(0), jnp.zeros((1, 5), jnp.int32))
  zeroed = mup.zero_query(params)
  assert not np.any(zeroed["params"]["attn"]["query"]["kernel"])
  assert np.any(zeroed["params"]["attn"]["key"]["kernel"])


# --------------------------------------------------------------------------- coord check


@pytest.mark.slow  # ~11 s on 2 cores
@pytest.mark.usefixtures("optax_adam_promotion")  # optax.adam is not strict-clean (conftest)
def test_coord_check_mup_flat_sp_grows():
  widths = (64, 256, 1024)
  x = jax.random.normal(jax.random.key(1), (32, 16))
  y = jnp.arange(32) % 10
  results = {}
  for p in ("sp", "mup"):
    def make(width, seed, p=p):
      return NnxMLP(width, 64 if p == "mup" else None, rngs=nnx.Rngs(seed))

    def opt(width, p=p):
      meta = mup.infinite_dims(nnx.eval_shape(lambda: make(width, 0)),
                               nnx.eval_shape(lambda: make(64, 0)), parametrization=p)
      return optax.chain(optax.adam(1e-2), mup.scale_updates(meta, "adam"))

    results[p] = mup.coord_check(make, widths, x, y, steps=3, optimizer=opt)
  cc = results["mup"]
  assert cc.layers == ("l1", "l2", "head", "<output>")
  assert cc.sizes.shape == (4, 4, 3) and cc.slopes.shape == (4, 4)
  assert cc.max_abs_slope(step=3) < 0.1, cc.table()
  sp = results["sp"]
  # SP + Adam: Δh = ΔW h sums `width` aligned terms, so sizes grow ~ width^(1/2..1).
  assert sp.slope("l2", 3) > 0.3 and sp.slope("<output>", 3) > 0.5, sp.table()
  assert abs(sp.slope("l2", 0)) < 0.1  # at init SP is fine too
  fig = cc.plot(title="μP")
  assert len(fig.axes) == 4
  d = cc.to_dict()
  assert d["widths"] == list(widths) and len(d["slopes"]) == 4


def test_coord_check_linen_and_slope_fit():
  x = jax.random.normal(jax.random.key(1), (16, 16))
  y = jnp.arange(16) % 10

  def make(width, seed):
    model = LinenMLP(width, 32)
    return model, model.init(jax.random.key(seed), x)

  cc = mup.coord_check(make, (32, 128), x, y, steps=1, optimizer=optax.sgd(0.0), metric="l1")
  assert cc.layers == ("l1", "l2", "head", "<output>")
  # lr 0: nothing moves; with two widths the slope is the log-ratio of the sizes.
  np.testing.assert_allclose(cc.sizes[:, 0], cc.sizes[:, 1], rtol=1e-6)
  expected = np.log(cc.sizes[:, 0, 1] / cc.sizes[:, 0, 0]) / np.log(4.0)
  np.testing.assert_allclose(cc.slopes[:, 0], expected, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- bad input


def test_bad_input():
  m64, m16 = NnxMLP(64, 16, rngs=nnx.Rngs(0)), NnxMLP(16, 16, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="base_model must have the same parameters"):
    mup.infinite_dims({"a/kernel": (64, 10)}, {"a/kernel": (16, 10), "b/bias": (3,)})
  with pytest.raises(ValueError, match="base_model's 'a/kernel' has rank 3"):
    mup.infinite_dims({"a/kernel": (64, 10)}, {"a/kernel": (16, 10, 1)})
  with pytest.raises(ValueError, match="readout: cannot identify"):
    mup.infinite_dims({"a/kernel": (16, 64), "b/kernel": (64, 64)},
                      {"a/kernel": (16, 16), "b/kernel": (16, 16)})
  with pytest.raises(ValueError, match="readout 'nope' matches no weight"):
    mup.infinite_dims(m64, m16, readout="nope")
  with pytest.raises(ValueError, match="parametrization must be one of"):
    mup.infinite_dims(m64, m16, parametrization="ntk")
  with pytest.raises(TypeError, match="base_model"):
    mup.infinite_dims(m64, 3)
  with pytest.raises(ValueError, match="model: a linen module needs example inputs"):
    mup.infinite_dims(LinenMLP(64), LinenMLP(16))
  meta = mup.infinite_dims(m64, m16)
  with pytest.raises(ValueError, match="optimizer must be one of"):
    mup.scale_updates(meta, "lamb")
  with pytest.raises(TypeError, match="optimizer must be a str"):
    mup.scale_updates(meta, optax.adam(1e-3))
  with pytest.raises(TypeError, match="params_meta"):
    mup.scale_updates({"a": 1.0}, "adam")
  tx = mup.scale_updates(meta, "adam")
  with pytest.raises(ValueError, match="params_meta does not match the updates"):
    tx.update({"other": jnp.zeros(3)}, tx.init(None))
  make = lambda w, s: NnxMLP(w, rngs=nnx.Rngs(s))  # noqa: E731
  x, y = jnp.zeros((4, 16)), jnp.zeros((4,), jnp.int32)
  for widths in ((64, 32), (64, 64), (64,)):
    with pytest.raises(ValueError, match="widths must"):
      mup.coord_check(make, widths, x, y, optimizer=optax.adam(1e-3))
  with pytest.raises(ValueError, match="steps must"):
    mup.coord_check(make, (16, 32), x, y, steps=-1, optimizer=optax.adam(1e-3))
  with pytest.raises(TypeError, match="optimizer must be an optax"):
    mup.coord_check(make, (16, 32), x, y, optimizer="adam")
  with pytest.raises(ValueError, match="metric must be one of"):
    mup.coord_check(make, (16, 32), x, y, optimizer=optax.adam(1e-3), metric="max")
  with pytest.raises(ValueError, match="base_in_features must be a positive int"):
    mup.Readout(8, 2, base_in_features=0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="head_dim must be a positive int"):
    mup.attention_scale(0)
