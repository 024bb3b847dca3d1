"""jinit.learned: MetaInit and GradInit improve their own objectives, deterministically."""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jinit import learned

KEY = jax.random.key(0)
X = jax.random.normal(jax.random.key(1), (32, 8))
Y = jnp.sin(X[:, :2] * 2.0)
BATCH = (X, Y)


def eqx_loss(model, batch):
  x, y = batch
  return jnp.mean(jnp.square(jax.vmap(model)(x) - y))


def eqx_model(scale=1.0):
  mlp = eqx.nn.MLP(8, 2, 16, 2, key=KEY)
  return jax.tree_util.tree_map(lambda w: w * scale if eqx.is_inexact_array(w) else w, mlp)


def test_metainit_lowers_gradient_quotient_and_is_deterministic():
  model = eqx_model(3.0)  # a badly scaled start
  before = learned.gradient_quotient(model, BATCH, eqx_loss)
  out = learned.metainit(model, BATCH, eqx_loss, key=KEY, steps=20, batch_size=16)
  after = learned.gradient_quotient(out.model, BATCH, eqx_loss)
  assert after < before, (before, after)
  assert set(out.scales) == {"layers/0/weight", "layers/1/weight", "layers/2/weight"}
  assert out.history.shape == (20,)
  again = learned.metainit(model, BATCH, eqx_loss, key=KEY, steps=20, batch_size=16)
  assert again.scales == out.scales
  other = learned.metainit(model, BATCH, eqx_loss, key=jax.random.key(5), steps=20,
                           batch_size=16)
  assert other.scales != out.scales
  # Biases are not rescaled; weights are their old direction times the learned scale.
  np.testing.assert_array_equal(out.model.layers[0].bias, model.layers[0].bias)
  np.testing.assert_allclose(out.model.layers[1].weight,
                             model.layers[1].weight * out.scales["layers/1/weight"], rtol=1e-5)


def split_objective(model, optimizer, lr):
  """GradInit's own objective: loss on x2 after one step on a disjoint x1, over 3 fixed splits."""
  vals = []
  for s in range(3):
    perm = np.asarray(jax.random.permutation(jax.random.key(100 + s), 32))
    x1 = (X[perm[:16]], Y[perm[:16]])
    x2 = (X[perm[16:]], Y[perm[16:]])
    vals.append(learned.gradinit_objective(model, x1, eqx_loss, optimizer=optimizer, lr=lr,
                                           batch2=x2)[0])
  return float(np.mean(vals))


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.05), ("sgd", 0.5)])
def test_gradinit_lowers_its_objective_eqx(optimizer, lr):
  model = eqx_model()
  before = split_objective(model, optimizer, lr)
  out = learned.gradinit(model, BATCH, eqx_loss, key=KEY, optimizer=optimizer, lr=lr,
                         gamma=1e6, steps=20, scale_lr=0.05)
  after = split_objective(out.model, optimizer, lr)
  assert after < before, (before, after)
  assert min(out.scales.values()) >= 1e-2
  again = learned.gradinit(model, BATCH, eqx_loss, key=KEY, optimizer=optimizer, lr=lr,
                           gamma=1e6, steps=20, scale_lr=0.05)
  assert again.scales == out.scales


def test_gradinit_gradient_bound_shrinks_the_gradient():
  model = eqx_model(2.0)
  _, g0 = learned.gradinit_objective(model, BATCH, eqx_loss, optimizer="sgd", lr=0.1)
  gamma = g0 / 4
  out = learned.gradinit(model, BATCH, eqx_loss, key=KEY, optimizer="sgd", lr=0.1,
                         gamma=gamma, steps=40, scale_lr=0.05)
  _, g1 = learned.gradinit_objective(out.model, BATCH, eqx_loss, optimizer="sgd", lr=0.1)
  assert g1 < g0 / 2, (g0, g1)


class NnxMLP(nnx.Module):
  def __init__(self, rngs):
    self.a = nnx.Linear(8, 16, rngs=rngs)
    self.b = nnx.Linear(16, 2, rngs=rngs)

  def __call__(self, x):
    return self.b(jnp.tanh(self.a(x)))


def nnx_loss(model, batch):
  x, y = batch
  return jnp.mean(jnp.square(model(x) - y))


def test_nnx_and_linen_models():
  model = NnxMLP(nnx.Rngs(0))
  kernel = np.asarray(model.a.kernel[...])
  out = learned.metainit(model, BATCH, nnx_loss, key=KEY, steps=5)
  assert set(out.scales) == {"a/kernel", "b/kernel"}
  np.testing.assert_array_equal(model.a.kernel[...], kernel)  # input model untouched
  np.testing.assert_allclose(out.model.a.kernel[...], kernel * out.scales["a/kernel"],
                             rtol=1e-5)
  g = learned.gradinit(model, BATCH, nnx_loss, key=KEY, steps=5)
  assert isinstance(g.model, NnxMLP) and len(g.scales) == 4

  mlp = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(2)])
  params = mlp.init(KEY, X)["params"]

  def linen_loss(p, batch):
    return jnp.mean(jnp.square(mlp.apply({"params": p}, batch[0]) - batch[1]))

  out = learned.gradinit(params, BATCH, linen_loss, key=KEY, steps=5)
  assert set(out.scales) == {"layers_0/kernel", "layers_0/bias", "layers_2/kernel",
                             "layers_2/bias"}


def _dict_loss(p, batch):
  return jnp.mean(jnp.square(jnp.tanh(batch[0] @ p["w1"]) @ p["w2"] - batch[1]))


@pytest.mark.slow  # four compiles of the loops (~20 s on 2 cores)
def test_a_params_pytree_compiles_each_loop_once_for_its_structure():
  """Same structure, loss and settings (a study's seeds): the jitted loop is reused."""
  from jinit._src import learned as impl  # pylint: disable=import-outside-toplevel

  def params(seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"w1": jax.random.normal(k1, (8, 16)) / 3, "w2": jax.random.normal(k2, (16, 2)) / 4}

  for fn, loop in ((learned.gradinit, impl._gradinit_loop),  # pylint: disable=protected-access
                   (learned.metainit, impl._metainit_loop)):  # pylint: disable=protected-access
    first = fn(params(0), BATCH, _dict_loss, key=KEY, steps=3)
    compiled = loop._cache_size()  # pylint: disable=protected-access
    second = fn(params(1), BATCH, _dict_loss, key=jax.random.key(7), steps=3)
    assert loop._cache_size() == compiled, fn.__name__  # pylint: disable=protected-access
    assert second.scales != first.scales  # other params and key: other scales
    fn(params(1), BATCH, _dict_loss, key=KEY, steps=4)  # other settings: compiled anew
    assert loop._cache_size() == compiled + 1, fn.__name__  # pylint: disable=protected-access
  # gamma 1e6: the bound never binds, so the steps descend the loss after a step of lr eta
  big = {"key": KEY, "steps": 4, "gamma": 1e6}
  first = learned.gradinit(params(1), BATCH, _dict_loss, **big)
  compiled = impl._gradinit_loop._cache_size()  # pylint: disable=protected-access
  other_lr = learned.gradinit(params(1), BATCH, _dict_loss, lr=0.05, **big)
  assert impl._gradinit_loop._cache_size() == compiled  # pylint: disable=protected-access
  assert other_lr.scales != first.scales  # the lr (eta) is an input, not a constant


def _layers_loss(p, batch):
  h = batch[0]
  for w, b in zip(p["w"], p["b"]):
    h = jnp.tanh(h @ w + b[None, :])
  return jnp.mean(jnp.square(h[:, :2] - batch[1]))


def _stacked_loss(p, batch):
  def layer(h, wb):
    return jnp.tanh(h @ wb[0] + wb[1][None, :]), None
  h = jax.lax.scan(layer, batch[0], (p["w"], p["b"]))[0]
  return jnp.mean(jnp.square(h[:, :2] - batch[1]))


@pytest.mark.slow  # compiles both loops twice (~25 s on 2 cores)
def test_stacked_layers_learn_the_per_layer_scales():
  """``stacked``: one scale per slice, as if each layer were its own tensor.

  Same algorithm on the same numbers, only summed in another order (a scan and stacked
  arrays instead of a list): float32 rounding, so rtol 1e-4 after 6 steps (the GradInit
  Adam steps divide by sqrt(nu) ~ |g|: a rounding of 1e-7 can grow by a few orders).
  """
  keys = jax.random.split(jax.random.key(3), 6)
  layers = {"w": [jax.random.normal(k, (8, 8)) * (0.3 + 0.2 * i) for i, k in enumerate(keys[:3])],
            "b": [jax.random.normal(k, (8,)) * 0.1 for k in keys[3:]]}
  stacked = {"w": jnp.stack(layers["w"]), "b": jnp.stack(layers["b"])}
  for fn, kw in ((learned.gradinit, {"steps": 6, "lr": 0.05}),
                 (learned.metainit, {"steps": 6, "batch_size": 16})):
    a = fn(layers, BATCH, _layers_loss, key=KEY, **kw)
    b = fn(stacked, BATCH, _stacked_loss, key=KEY, stacked=r"^(w|b)$", **kw)
    names = [f"{n}/{i}" for n in ("b", "w") for i in range(3)]
    if fn is learned.metainit:  # biases (rank 1 per layer) keep their values
      names = [n for n in names if n.startswith("w")]
    got = {n: b.scales[f"{n.split('/')[0]}[{n.split('/')[1]}]"] for n in names}
    assert set(b.scales) == {f"{n.split('/')[0]}[{n.split('/')[1]}]" for n in names}
    np.testing.assert_allclose([got[n] for n in names], [a.scales[n] for n in names],
                               rtol=1e-4, err_msg=fn.__name__)
    assert np.ptp([a.scales[n] for n in names if n.startswith("w")]) > 1e-3  # per layer
    np.testing.assert_allclose(b.model["w"], jnp.stack(a.model["w"]), rtol=1e-4, atol=1e-6)
  with pytest.raises(TypeError, match="stacked"):
    learned.gradinit(stacked, BATCH, _stacked_loss, key=KEY, stacked=3)


def test_bad_input():
  model = eqx_model()
  with pytest.raises(ValueError, match="optimizer"):
    learned.gradinit(model, BATCH, eqx_loss, key=KEY, optimizer="lion")
  with pytest.raises(ValueError, match="steps"):
    learned.metainit(model, BATCH, eqx_loss, key=KEY, steps=0)
  with pytest.raises(TypeError, match="loss_fn"):
    learned.metainit(model, BATCH, 3, key=KEY)
  with pytest.raises(ValueError, match="leading"):
    learned.metainit(model, (X, Y[:3]), eqx_loss, key=KEY)
  with pytest.raises(ValueError, match="batch_size"):
    learned.gradinit(model, BATCH, eqx_loss, key=KEY, batch_size=20)


@pytest.mark.slow  # compiles MetaInit's Hessian-vector product through the ViT: minutes on 2 CPUs
def test_deep_transformer_extra_variants_smoke():
  """experiments/common/transformer_inits: each extra variant gives finite params and loss."""
  from experiments import deep_transformer as dt
  from experiments.common import transformer_inits as ti
  from jinit import recipes

  cfg = dt.ViTConfig(tokens=4, patch_dim=6, depth=2, width=8, heads=2, mlp=16)
  patches = jax.random.normal(KEY, (16, 4, 6))
  labels = jnp.arange(16) % 10
  for variant in ti.EXTRA_VARIANTS:
    arch = jnp.asarray(dt.arch_vector(variant, cfg.depth))

    def loss(p, b, arch=arch):
      return dt._loss(dt.stack_blocks(p), arch, b[0], b[1], cfg)  # pylint: disable=protected-access

    params = dt.init_params(variant, cfg, KEY, batch=(patches, labels))
    assert jax.tree.structure(params) == jax.tree.structure(
        dt.init_params("preln_standard", cfg, KEY)), variant
    assert np.isfinite(float(loss(params, (patches, labels)))), variant
  np.testing.assert_allclose(dt.arch_vector("postln_deepnorm", 2)[3],
                             recipes.deepnorm_alpha(2, "encoder"), rtol=1e-6)


def test_non_finite_learned_values_raise_instead_of_returning_nan():
  # exp(b @ w @ w) with entries 100 overflows float32: the learned norms / scales cannot be
  # finite, and the functions must say so instead of returning a NaN model.
  params = {"w": jnp.full((4, 4), 100.0)}
  batch = jnp.ones((16, 4))

  def loss(p, b):
    return jnp.mean(jnp.exp(b @ p["w"] @ p["w"]))

  for fn in (learned.metainit, learned.gradinit):
    with pytest.raises(FloatingPointError, match=f"{fn.__name__}: the learned .* not finite"):
      fn(params, batch, loss, key=jax.random.key(0), steps=2)
