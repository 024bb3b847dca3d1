"""benchmarks/mup_reference_mlp.py is the same setup as experiments.mup_transfer's MLP.

The reference trains mup's example MLP with microsoft/mup (PyTorch). Started from jinit's
init values, the two must train to the same weights: that checks every forward
multiplier (input_mult, output_mult, MuReadout's 1/width_mult) and every per-parameter lr
multiplier (MuSGD/MuAdam vs jinit.mup.scale_updates) at once, and the batch rows. Skips
without torch and mup (neither is a jinit dependency).
"""

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import mup_transfer

torch = pytest.importorskip("torch")
pytest.importorskip("mup")

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                     "mup_reference_mlp.py")


def _reference():
  spec = importlib.util.spec_from_file_location("mup_reference_mlp", _PATH)
  module = importlib.util.module_from_spec(spec)
  sys.modules["mup_reference_mlp"] = module
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow  # ~5 s each: eager jax steps next to torch
@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 1e-2)])
@pytest.mark.parametrize("parametrization", ["sp", "mup"])
def test_same_training_from_the_same_init(parametrization, optimizer, lr):
  ref = _reference()
  width, base, steps, batch, dim = 32, 16, 4, 8, 784
  config = mup_transfer.Config(widths=(base, width), log2_lrs=(-3, -2, -1), seeds=1,
                               steps=steps, batch_size=batch, optimizer=optimizer, bias=True)
  mults = {"input_mult": 0.25, "output_mult": 4.0}
  rng = np.random.default_rng(0)
  x = rng.random((64, dim), dtype=np.float32)
  y = rng.integers(0, 10, 64).astype(np.int32)
  idx = ref.batch_indices(0, steps, batch, len(y))
  # jinit: the study's model, optimizer and multipliers.
  family = mup_transfer.mlp_family(config)
  model = family.make_model(parametrization, width, base, **mults)
  params = model.init(jax.random.key(3), jnp.asarray(x[:1]))["params"]
  params = jax.tree.map(lambda p: p + 0.01, params)  # nonzero biases: their lrs count too
  meta = mup_transfer.family_meta(family, parametrization, width, base, jnp.asarray(x[:1]))
  tx = mup_transfer.optimizer(config, lr, meta)
  state = tx.init(params)

  def loss_fn(p, rows):
    logits = model.apply({"params": p}, jnp.asarray(x[rows]))
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y[rows])).mean()

  with jax.numpy_dtype_promotion("standard"):
    for t in range(steps):
      grads = jax.grad(loss_fn)(params, idx[t])
      updates, state = tx.update(grads, state, params)
      params = optax.apply_updates(params, updates)
  # microsoft/mup: the reference's model, its base shapes, then jinit's initial values.
  tmodel = ref.build(parametrization, width, base, config, mults["input_mult"],
                     mults["output_mult"], seed=0)
  init = jax.tree.map(lambda p: p + 0.01,
                      model.init(jax.random.key(3), jnp.asarray(x[:1]))["params"])
  with torch.no_grad():
    for name, layer in (("in", tmodel.fc_1), ("hidden", tmodel.fc_2), ("out", tmodel.fc_3)):
      layer.weight.copy_(torch.from_numpy(np.asarray(init[name]["kernel"]).T.copy()))
      layer.bias.copy_(torch.from_numpy(np.array(init[name]["bias"])))
  xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
  ref.train_one(tmodel, config, lr, xt, yt, xt, yt, xt, yt, idx)
  for name, layer in (("in", tmodel.fc_1), ("hidden", tmodel.fc_2), ("out", tmodel.fc_3)):
    # float32 on both sides, different summation orders: agreement to ~1e-6 relative per
    # step; 1e-4 of the weights' scale leaves room for 4 steps and no more.
    scale = float(np.abs(np.asarray(params[name]["kernel"])).max())
    np.testing.assert_allclose(layer.weight.detach().numpy().T, params[name]["kernel"],
                               atol=1e-4 * scale, rtol=0, err_msg=name)
    np.testing.assert_allclose(layer.bias.detach().numpy(), params[name]["bias"],
                               atol=1e-4 * scale, rtol=0, err_msg=name)
  # Training moved every weight by far more than the tolerance: the check is not vacuous.
  for name in ("in", "hidden", "out"):
    moved = float(np.abs(np.asarray(params[name]["kernel"]) -
                         np.asarray(init[name]["kernel"])).max())
    assert moved > 1e-2 * float(np.abs(np.asarray(params[name]["kernel"])).max()), name
