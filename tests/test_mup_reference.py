"""The microsoft/mup reference scripts build the jinit studies' setups, not merely similar ones.

``benchmarks/mup_reference_transformer.py`` and ``benchmarks/mup_reference_depth.py`` rerun
the μP transformer and depth studies in PyTorch with microsoft/mup. Checked here at one width
and depth each: the same jax batch indices; with the flax model's parameters loaded the torch
model computes the same logits (every forward multiplier: attention scale, readout multiplier,
branch multiplier, LayerNorm epsilon, GELU); each parameter's Adam lr (and epsilon) factor of
its ``MuAdam`` group equals ``jinit.mup``'s; each parameter's init draw has the flax init's
std and mean; and the depth script's batched trainer equals training each model with its
own optimizer. Skipped cleanly without ``torch`` and ``mup`` (not jinit dependencies).
"""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import mup_depth
from experiments import mup_transfer
from experiments import mup_transfer_transformer as vit
from jinit import mup

N_SE = 6.0  # standard errors allowed in a statistical check (P(|N(0,1)| > 6) ~ 2e-9)


@pytest.fixture(scope="module")
def ref():
  """torch, and the reference scripts (imported here, not at collection: torch takes ~2 s)."""
  torch = pytest.importorskip("torch")
  pytest.importorskip("mup")
  from benchmarks import mup_reference_common
  from benchmarks import mup_reference_depth
  from benchmarks import mup_reference_transformer
  return types.SimpleNamespace(torch=torch, common=mup_reference_common,
                               depth=mup_reference_depth, vit=mup_reference_transformer)


def _flat(params):
  return {"/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v)
          for kp, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def _check_init(ref, model, flax_params):
  """Each torch parameter's draw against the flax init's draw of the same parameter."""
  flat = _flat(flax_params)
  for name, p in model.named_parameters():
    path, index = ref.common.flax_path(name)
    f = flat[path] if index is None else flat[path][index]
    t = p.detach().numpy().ravel()
    f = f.ravel()
    assert t.size == f.size, name
    if f.std() == 0:  # a constant init (zeros, LayerNorm's ones): the same constant
      np.testing.assert_array_equal(t, f, err_msg=name)
      continue
    n = t.size
    # The sample std of n iid draws has relative standard error <= 1/sqrt(2n) (normal;
    # a truncated normal's is smaller): the ratio of two independent ones, sqrt(2) times.
    assert abs(t.std() / f.std() - 1) < N_SE / math.sqrt(n), (name, t.std(), f.std())
    # The difference of two sample means: standard error std * sqrt(2/n).
    assert abs(t.mean() - f.mean()) < N_SE * f.std() * math.sqrt(2 / n), name


def _random_like(params, key=1):
  """Every parameter random (no zero init hides a multiplier from the forward check)."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(key), len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [0.3 * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])


def _check_forward(ref, flax_model, model, params, x):
  ref.common.load_flax_params(model, params)
  want = np.asarray(flax_model.apply({"params": params}, jnp.asarray(x)))
  got = model(ref.torch.from_numpy(x)).detach().numpy()
  # float32 on both sides, a few layers deep: rounding differences ~1e-7 of the logits' size
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.slow  # ~2 s quiet, 7 s at load 7: compiling the traced schedule
def test_batches_are_the_studies(ref):
  """batch_schedule draws what a traced seed draws inside the jinit sweep (vmap, lax.map)."""
  steps, batch, n = 7, 5, 1000

  def traced(seed):
    _, data_key = mup_transfer.run_keys(mup_transfer.SEED, seed)
    keys = jax.random.split(data_key, steps)
    return jax.lax.map(lambda k: mup_transfer.batch_indices(k, batch, n), keys)

  want = np.asarray(jax.jit(jax.vmap(traced))(jnp.arange(3, dtype=jnp.int32)))
  for s in range(3):
    got = ref.common.batch_schedule(mup_transfer.SEED, s, steps, batch, n)
    np.testing.assert_array_equal(got, want[s])
  assert len(np.unique(want)) > 1  # not a constant schedule


@pytest.mark.slow  # ~5 s: flax inits and jinit.mup.infinite_dims of 4 ViTs
@pytest.mark.parametrize("parametrization", ["sp", "mup"])
@pytest.mark.parametrize("zero_init", [True, False])
def test_transformer_is_the_studys(ref, parametrization, zero_init):
  config = vit.Config(widths=(32, 64), mup_zero_init=zero_init)
  width, base = 64, 32
  family = vit.family(config)
  x = np.random.default_rng(0).random((3, 16, 49), dtype=np.float32)
  flax_model = family.make_model(parametrization, width, base)
  params = flax_model.init(jax.random.key(0), jnp.asarray(x[:1]))["params"]
  model, optimizer = ref.vit.build(config, parametrization, width, 0, 16, 49)
  _check_init(ref, model, params)
  meta = mup_transfer.family_meta(family, parametrization, width, base, jnp.asarray(x[:1]))
  want = mup.lr_multipliers(meta, "adam")
  got = ref.vit.lr_multipliers(optimizer(1e-3), model, 1e-3)
  assert {ref.common.flax_path(n)[0] for n in got} == set(want)
  for name, factor in got.items():
    assert factor == pytest.approx(want[ref.common.flax_path(name)[0]], rel=1e-12), name
  assert any(f != 1.0 for f in want.values()) == (parametrization == "mup")
  assert ref.vit.attention_scale(parametrization, 16, 8) == pytest.approx(
      mup.attention_scale(16, 8, parametrization=parametrization), rel=1e-12)
  _check_forward(ref, flax_model, model, _random_like(params), x)


@pytest.mark.slow  # ~4 s: flax inits and infinite_dims of four 8-block models
@pytest.mark.parametrize("parametrization", mup_depth.PARAMETRIZATIONS)
def test_depth_model_is_the_studys(ref, parametrization):
  config = mup_depth.Config(depths=(2, 8))
  depth = 8
  x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
  flax_model = mup_depth.make_model(parametrization, config.width, depth, config)
  params = flax_model.init(jax.random.key(0), jnp.asarray(x[:1]))["params"]
  model, optimizer = ref.depth.build(config, parametrization, depth, 0, 784)
  _check_init(ref, model, params)
  meta = mup_depth.params_meta(parametrization, depth, config, 784)
  got = ref.depth.group_factors(optimizer(1e-3), model, 1e-3)
  assert {ref.common.flax_path(n)[0] for n in got} == set(meta)
  for name, (lr_f, eps_f) in got.items():
    m = meta[ref.common.flax_path(name)[0]]
    assert lr_f == pytest.approx(m.lr_multiplier("adam"), rel=1e-12), name
    assert eps_f == pytest.approx(m.eps_multiplier, rel=1e-12), name
  rules = ref.depth.depth_rules(parametrization, depth, config.base_depth)
  assert rules["branch"] == pytest.approx(
      mup.branch_multiplier(parametrization, depth, config.base_depth), rel=1e-12)
  _check_forward(ref, flax_model, model, _random_like(params), x)


@pytest.mark.slow  # ~3 s: 3 batched runs and 3 single runs of 10 steps
@pytest.mark.parametrize("parametrization", ["mup", "completep"])
def test_depth_ensemble_is_each_run(ref, parametrization):
  """The batched trainer equals each mup model trained by its own MuAdam (lr and eps per
  group), run by run: different lrs and seeds in one batch do not mix."""
  config = mup_depth.Config(depths=(2, 4))
  torch, common = ref.torch, ref.common
  gen = torch.Generator().manual_seed(0)
  x = torch.rand(600, 784, generator=gen)
  y = torch.randint(0, 10, (600,), generator=gen)
  seeds_r, lrs_r = [0, 1, 0], torch.tensor([2.0 ** -8, 2.0 ** -4, 2.0 ** -4])
  batches_r = np.stack([common.batch_schedule(mup_depth.SEED, s, 10, 16, 600) for s in seeds_r])
  ens = ref.depth.Ensemble(config, parametrization, 4, seeds_r, 784)
  loss, acc = ens.train(lrs_r, batches_r, x, y, x[:128], y[:128], x[128:256], y[128:256])
  for r in range(3):
    model, optimizer = ref.depth.build(config, parametrization, 4, seeds_r[r], 784)
    want = common.train_run(model, optimizer(float(lrs_r[r])), batches_r[r], x, y, x[:128],
                            y[:128], x[128:256], y[128:256])
    # float32, batched vs one-at-a-time matmuls over 10 steps: rounding only
    assert loss[r] == pytest.approx(want[0], rel=1e-4), r
    assert acc[r] == pytest.approx(want[1], abs=1 / 128 + 1e-6), r  # at most one flip
  assert loss[1] != pytest.approx(loss[0], rel=1e-3)  # the lrs did differ


@pytest.mark.slow  # imports torch (~2 s)
@pytest.mark.parametrize("script, argv, message", [
    ("vit", ["--widths", "32,x"], "--widths must be comma-separated ints"),
    ("vit", ["--log2-lrs=-3"], "--log2-lrs FIRST:LAST"),
    ("vit", ["--widths", "64,32"], "widths must be at least 2 strictly increasing"),
    ("depth", ["--seeds", "0"], "seeds must be a positive int"),
    ("depth", ["--parametrizations", "sp,foo"], "--parametrizations must be of sp, mup"),
])
def test_bad_arguments_exit_before_any_work(ref, tmp_path, capsys, script, argv, message):
  out = tmp_path / "out"
  with pytest.raises(SystemExit):
    getattr(ref, script).main(["--out", str(out), *argv])
  assert message in capsys.readouterr().err
  assert not out.exists()  # nothing loaded, nothing written
