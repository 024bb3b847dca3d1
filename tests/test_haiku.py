"""jinit.haiku: w_init/b_init as Haiku initializers, and reinit of a Haiku params dict."""

import math
import warnings

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jinit
import jinit.haiku as jh

KEY = jax.random.key(0)


def fan_code(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
  """Writes the fans it was given into every entry: fan_in + fan_out / 1000."""
  del key  # built in numpy: a jnp.full would compile one kernel per shape
  return jnp.asarray(np.full(shape, fan_in + fan_out / 1000.0, dtype))


def decode(a):
  v = float(np.asarray(a).ravel()[0])
  return round(v), round((v - round(v)) * 1000)


def _net(x, tok):
  h = hk.nets.MLP([16, 8])(x)
  h = hk.Linear(8, name="fc1")(h)
  c = hk.Conv2D(16, (3, 5), feature_group_count=4)(jnp.ones((1, 6, 6, 8)))
  hk.Conv2DTranspose(4, 3)(c)
  e = hk.Embed(20, 6)(tok)
  hk.MultiHeadAttention(2, 3, w_init_scale=1.0, value_size=5, model_size=7)(e, e, e)
  hk.LSTM(6)(h, hk.LSTM(6).initial_state(4))
  hk.GRU(5)(h, jnp.zeros((4, 5)))
  return hk.LayerNorm(-1, True, True)(h)


PARAMS = hk.transform(_net).init(KEY, jnp.ones((4, 8)), jnp.zeros((3,), jnp.int32))


def test_reinit_hand_computed_fans():
  new = jh.reinit(PARAMS, fan_code, key=KEY, groups={"conv2_d": 4})
  got = {f"{m}/{n}": decode(v) for m, ps in new.items() for n, v in ps.items()
         if n in ("w", "w_i", "w_h", "embeddings")}
  assert got == {
      "mlp/~/linear_0/w": (8, 16), "mlp/~/linear_1/w": (16, 8), "fc1/w": (8, 8),
      # Conv2D 8 -> 16, window 3x5, groups 4: (8/4)*15 = 30, (16/4)*15 = 60.
      "conv2_d/w": (30, 60),
      # Conv2DTranspose 16 -> 4, window 3x3, weight (3, 3, out=4, in=16).
      "conv2_d_transpose/w": (144, 36),
      "embed/embeddings": (6, 20),
      "multi_head_attention/query/w": (6, 6), "multi_head_attention/key/w": (6, 6),
      "multi_head_attention/value/w": (6, 10), "multi_head_attention/linear/w": (10, 7),
      # LSTM: one Linear on [x, h] (8 + 6), four gates of 6.
      "lstm/linear/w": (14, 6), "gru/w_i": (8, 5), "gru/w_h": (5, 5),
  }
  np.testing.assert_array_equal(new["layer_norm"]["scale"], PARAMS["layer_norm"]["scale"])
  np.testing.assert_array_equal(new["conv2_d"]["b"], PARAMS["conv2_d"]["b"])  # bias_init None
  biases = jh.reinit(PARAMS, None, bias_init=fan_code, key=KEY)
  assert decode(biases["mlp/~/linear_1"]["b"]) == (16, 8)
  assert decode(biases["gru"]["b"]) == (5, 5)


def test_reinit_orthogonal_per_gate_and_group():
  # Only the two modules checked here: orthogonal compiles one QR per distinct shape.
  params = {m: PARAMS[m] for m in ("lstm/linear", "conv2_d")}
  new = jh.reinit(params, jinit.orthogonal, key=KEY, groups={"conv2_d": 4})
  w = np.asarray(new["lstm/linear"]["w"], np.float64).reshape(14, 4, 6)
  for g in range(4):
    np.testing.assert_allclose(w[:, g].T @ w[:, g], np.eye(6), atol=1e-5)
  c = np.asarray(new["conv2_d"]["w"], np.float64).reshape(15, 2, 4, 4)  # window, in/g, g, out/g
  for g in range(4):
    m = c[:, :, g, :].reshape(30, 4)
    np.testing.assert_allclose(m.T @ m, np.eye(4), atol=1e-5)


def test_reinit_rules_errors_and_purity():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    new = jh.reinit(PARAMS, jinit.xavier_normal, key=KEY,
                    rules=[(r"^fc1/w$", jinit.zeros)])
  assert np.all(np.asarray(new["fc1"]["w"]) == 0)
  assert not np.all(np.asarray(PARAMS["fc1"]["w"]) == 0)
  again = jh.reinit(PARAMS, jinit.xavier_normal, key=KEY, rules=[(r"^fc1/w$", jinit.zeros)])
  np.testing.assert_array_equal(again["embed"]["embeddings"], new["embed"]["embeddings"])
  with pytest.raises(ValueError, match="match no parameter"):
    jh.reinit(PARAMS, jinit.xavier_normal, key=KEY, rules=[("nope", jinit.zeros)])
  with pytest.raises(ValueError, match="groups"):
    jh.reinit(PARAMS, jinit.xavier_normal, key=KEY, groups={"conv9": 2})
  with pytest.raises(TypeError, match="params dict"):
    jh.reinit([1], jinit.xavier_normal, key=KEY)
  with pytest.warns(jh.UncoveredParametersWarning, match="odd/gate"):
    jh.reinit({"odd": {"gate": jnp.ones(())}}, jinit.xavier_normal, key=KEY)


def test_w_init_inside_haiku(check_law):
  # Conv2D 64 -> 256, 5x5, groups 4: fan_in 16*25 = 400; 102400 samples.
  def f(x):
    return hk.Conv2D(256, 5, feature_group_count=4,
                     w_init=jh.w_init(jinit.kaiming_normal, groups=4),
                     b_init=jh.b_init(jinit.torch_linear_default, fan_in=400))(x)
  p = hk.transform(f).init(jax.random.key(3), jnp.ones((1, 5, 5, 64)))
  check_law(p["conv2_d"]["w"], scipy.stats.norm(scale=math.sqrt(2 / 400)), what="conv w")
  b = np.asarray(p["conv2_d"]["b"])
  assert b.std() > 0 and np.abs(b).max() <= 1 / math.sqrt(400)

  def g(tok):
    return hk.Embed(30, 8, w_init=jh.w_init(fan_code, layout="embed"))(tok)
  e = hk.transform(g).init(KEY, jnp.zeros((2,), jnp.int32))["embed"]["embeddings"]
  assert decode(e) == (8, 30)


def test_w_init_bad_input():
  with pytest.raises(ValueError, match="layout"):
    jh.w_init(jinit.xavier_normal, layout="torch")
  with pytest.raises(TypeError, match="groups"):
    jh.w_init(jinit.xavier_normal, groups=2.0)
  with pytest.raises(ValueError, match="groups"):
    jh.w_init(jinit.xavier_normal, layout="linear", groups=2)
  with pytest.raises(TypeError, match="init"):
    jh.b_init(3)
