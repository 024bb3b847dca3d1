"""jinit.equinox.reinit: true fans per Equinox layer, per-gate/per-group orthogonal, rules."""

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jinit
import jinit.equinox as je

KEY = jax.random.key(0)


def build(make, *args, **kwargs):
  """``make(*args, **kwargs)`` with numpy-random parameters: Equinox's own init would
  compile one kernel per shape; reinit only reads shapes, and kept values stay these."""
  shapes = eqx.filter_eval_shape(make, *args, **kwargs)
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(
      lambda s: jnp.asarray(rng.standard_normal(s.shape).astype(s.dtype))
      if isinstance(s, jax.ShapeDtypeStruct) else s, shapes)


def fan_code(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
  """Writes the fans it was given into every entry: fan_in + fan_out / 1000."""
  del key  # built in numpy: a jnp.full would compile one kernel per shape
  return jnp.asarray(np.full(shape, fan_in + fan_out / 1000.0, dtype))


def fans_of(model):
  """{path: (fan_in, fan_out)} as reinit passes them to the default init."""
  new = je.reinit(model, fan_code, key=KEY)
  out = {}
  for path, _, name, leaf in je.parameters(new):
    if name in ("weight", "weight_ih", "weight_hh") and not path.startswith("ln"):
      v = float(np.asarray(leaf).ravel()[0])
      out[path] = (round(v), round((v - round(v)) * 1000))
  return out


def test_hand_computed_fans():
  k = jax.random.split(KEY, 8)
  assert fans_of(build(eqx.nn.Linear, 7, 5, key=k[0])) == {"weight": (7, 5)}
  # Conv2d 12 -> 8 channels, 3x5 window, groups 4: in/groups*rf = 3*15, out/groups*rf = 2*15.
  assert fans_of(build(eqx.nn.Conv2d, 12, 8, (3, 5), groups=4, key=k[1])) == {"weight": (45, 30)}
  assert fans_of(build(eqx.nn.Conv1d, 6, 4, 3, key=k[2])) == {"weight": (18, 12)}
  assert fans_of(build(eqx.nn.Conv3d, 4, 6, 2, groups=2, key=k[3])) == {"weight": (16, 24)}
  assert fans_of(build(eqx.nn.ConvTranspose2d, 6, 4, 3, groups=2, key=k[4])) == {"weight": (27, 18)}
  assert fans_of(build(eqx.nn.Embedding, 50, 8, key=k[5])) == {"weight": (8, 50)}
  # GRU gates stacked along the output axis: per gate (in, hidden).
  assert fans_of(build(eqx.nn.GRUCell, 5, 7, key=k[6])) == {"weight_ih": (5, 7),
                                                             "weight_hh": (7, 7)}
  assert fans_of(build(eqx.nn.LSTMCell, 3, 6, key=k[7])) == {"weight_ih": (3, 6),
                                                              "weight_hh": (6, 6)}
  mha = build(eqx.nn.MultiheadAttention, 2, 8, key_size=6, value_size=4, output_size=5, qk_size=3,
                                  vo_size=7, key=k[0])
  assert fans_of(mha) == {"query_proj/weight": (8, 6), "key_proj/weight": (6, 6),
                          "value_proj/weight": (4, 14), "output_proj/weight": (14, 5)}


def test_bias_gets_its_layers_fans():
  conv = build(eqx.nn.Conv2d, 4, 6, 3, key=KEY)
  new = je.reinit(conv, None, bias_init=fan_code, key=KEY)
  assert new.bias.shape == (6, 1, 1)
  np.testing.assert_allclose(np.asarray(new.bias), 36 + 54 / 1000.0, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(new.weight), np.asarray(conv.weight))
  gru = je.reinit(build(eqx.nn.GRUCell, 3, 5, key=KEY), None, bias_init=fan_code, key=KEY)
  np.testing.assert_allclose(np.asarray(gru.bias_n), 5.005, rtol=1e-6)


class Block(eqx.Module):
  attn: eqx.nn.MultiheadAttention
  ln: eqx.nn.LayerNorm
  mlp: eqx.nn.MLP

  def __init__(self, key):
    k1, k2 = jax.random.split(key)
    self.attn = eqx.nn.MultiheadAttention(4, 32, key=k1)
    self.ln = eqx.nn.LayerNorm(32)
    self.mlp = eqx.nn.MLP(32, 32, 64, 1, key=k2)


def test_filter_vmap_stacked_blocks_are_copies():
  blocks = build(eqx.filter_vmap(Block), jax.random.split(KEY, 3))
  fans = fans_of(blocks)
  assert fans["attn/query_proj/weight"] == (32, 32)
  assert fans["mlp/layers/0/weight"] == (32, 64)
  assert fans["mlp/layers/1/weight"] == (64, 32)
  new = je.reinit(blocks, jinit.orthogonal, key=KEY)
  w = np.asarray(new.mlp.layers[0].weight, np.float64)  # (3, 64, 32): per copy W^T W = I
  for c in range(3):
    np.testing.assert_allclose(w[c].T @ w[c], np.eye(32), atol=1e-5)
  assert not np.allclose(w[0], w[1])
  np.testing.assert_array_equal(np.asarray(new.ln.weight), np.asarray(blocks.ln.weight))


def test_orthogonal_per_gate_and_per_group():
  lstm = je.reinit(build(eqx.nn.LSTMCell, 12, 8, key=KEY), jinit.orthogonal, key=KEY)
  for w in (lstm.weight_ih, lstm.weight_hh):
    gates = np.asarray(w, np.float64).reshape(4, 8, -1)
    for g in gates:  # (8, in): rows orthonormal
      np.testing.assert_allclose(g @ g.T, np.eye(8), atol=1e-5)
  conv = je.reinit(build(eqx.nn.Conv2d, 8, 16, 3, groups=4, key=KEY), jinit.orthogonal, key=KEY)
  groups = np.asarray(conv.weight, np.float64).reshape(4, 4, 2 * 9)
  for g in groups:
    np.testing.assert_allclose(g @ g.T, np.eye(4), atol=1e-5)


@pytest.mark.parametrize("name,law", [
    ("kaiming_normal", lambda fi, fo: scipy.stats.norm(scale=math.sqrt(2 / fi))),
    ("xavier_uniform", lambda fi, fo: scipy.stats.uniform(-math.sqrt(6 / (fi + fo)),
                                                          2 * math.sqrt(6 / (fi + fo)))),
    ("torch_linear_default", lambda fi, fo: scipy.stats.uniform(-1 / math.sqrt(fi),
                                                                2 / math.sqrt(fi))),
])
def test_drawn_law_matches_true_fans(check_law, name, law):
  # Grouped conv 64 -> 256, 5x5, groups 4: fan_in 16*25 = 400, fan_out 64*25 = 1600;
  # 102400 samples (check_law's tolerances are derived from n).
  conv = build(eqx.nn.Conv2d, 64, 256, 5, groups=4, key=KEY)
  new = je.reinit(conv, getattr(jinit, name), key=jax.random.key(1))
  check_law(new.weight, law(400, 1600), what=f"{name} conv weight")


def test_rules_paths_warnings_and_errors():
  model = eqx.nn.Sequential([build(eqx.nn.Linear, 4, 8, key=KEY), eqx.nn.PReLU(),
                             build(eqx.nn.Linear, 8, 2, key=KEY)])
  with pytest.warns(je.UncoveredParametersWarning, match="layers/1/negative_slope"):
    new = je.reinit(model, jinit.xavier_normal, key=KEY, rules=[(r"layers/2/weight$",
                                                               jinit.zeros)])
  assert np.all(np.asarray(new.layers[2].weight) == 0)
  assert not np.all(np.asarray(model.layers[2].weight) == 0)  # the input model is unchanged
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    again = je.reinit(model, jinit.xavier_normal, key=KEY,
                      rules=[(r"layers/2/weight$", jinit.zeros), ("slope", jinit.ones)])
  np.testing.assert_array_equal(np.asarray(again.layers[0].weight),
                                np.asarray(new.layers[0].weight))  # deterministic per path
  with pytest.raises(ValueError, match="match no parameter"):
    je.reinit(model, jinit.xavier_normal, key=KEY, rules=[("nothing", jinit.zeros)])
  with pytest.raises(TypeError, match="equinox Module"):
    je.reinit({"w": jnp.ones((2, 2))}, jinit.xavier_normal, key=KEY)
  with pytest.raises(TypeError, match="key"):
    je.reinit(model, jinit.xavier_normal, key=0)


def test_batchnorm_state_is_not_a_parameter():
  model, _ = eqx.nn.make_with_state(eqx.nn.BatchNorm)(6, axis_name="batch", mode="batch")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    new = je.reinit(model, jinit.xavier_normal, key=KEY)
  assert [p for p, *_ in je.parameters(model)] == ["weight", "bias"]
  np.testing.assert_array_equal(np.asarray(new.weight), np.ones(6))
