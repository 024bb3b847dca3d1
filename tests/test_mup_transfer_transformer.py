"""experiments.mup_transfer_transformer: the ViT's μP pieces, its coord check, a tiny study."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import test_mup_transfer  # tests/ is on sys.path (pytest's rootdir insertion)

from experiments import mup_transfer
from experiments import mup_transfer_transformer as mt
from experiments.common import data as data_lib
from jinit import mup

TINY = test_mup_transfer.TINY  # widths 8, 16 (heads 4: head dims 2, 4), 3 lrs, 2 seeds
TOKENS, PATCH = 16, 49  # MNIST: 4 x 4 patches of 7 x 7 pixels


def _x(n=2, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, TOKENS, PATCH), jnp.float32)


def test_roles_and_lr_multipliers():
  """Every hidden weight (q/k/v/out, fc1/fc2) gets Adam lr x base/width; the readout is found."""
  config = mt.Config()
  meta = mup_transfer.family_meta(mt.family(config), "mup", 256, 64, _x(1))
  roles = {p: m.role for p, m in meta.items()}
  hidden = [p for p in meta if p.endswith("kernel") and "/" in p and p.split("/")[0] != "head"
            and not p.startswith("embed")]
  assert len(hidden) == 6 * config.depth, hidden
  for p in hidden:
    assert roles[p] == "hidden", p
    assert meta[p].lr_multiplier("adam") == pytest.approx(64 / 256), p
  assert roles["head/kernel"] == "output" and meta["head/kernel"].multiplier == 64 / 256
  assert roles["embed/kernel"] == roles["pos_embed"] == "input"
  assert roles["head/bias"] == "fixed"
  assert all(m.lr_multiplier("adam") == 1.0 for m in meta.values() if m.role != "hidden")
  sp = mup_transfer.family_meta(mt.family(config), "sp", 256, 64, _x(1))
  assert all(m.lr_multiplier("adam") == 1.0 for m in sp.values())


@pytest.mark.slow  # builds and compares two transformers (~12 s on 2 cores)
def test_mup_zero_inits_and_base_width_equals_sp():
  """μP zero-inits the query and readout (as jinit.mup.zero_query does); without them, at the
  base width μP is SP exactly: same params drawn, same logits (attention scale 1/sqrt(d))."""
  config = mt.Config()
  x = _x()
  mu = mt.make_model(config, "mup", 128, 64)
  params = mu.init(jax.random.key(1), x)["params"]
  zeroed = mup.zero_query(params)
  for i in range(config.depth):
    q = params[f"block{i}"]["attn"]["query"]["kernel"]
    assert q.shape == (128, 4, 32) and not np.any(q)
    np.testing.assert_array_equal(q, zeroed[f"block{i}"]["attn"]["query"]["kernel"])
    assert np.any(params[f"block{i}"]["attn"]["key"]["kernel"])
  assert not np.any(params["head"]["kernel"])
  sp_params = mt.make_model(config, "sp", 128, 64).init(jax.random.key(1), x)["params"]
  assert np.any(sp_params["head"]["kernel"]) and np.any(
      sp_params["block0"]["attn"]["query"]["kernel"])

  plain = dataclasses.replace(config, mup_zero_init=False)
  sp, mu = mt.make_model(plain, "sp", 64, 64), mt.make_model(plain, "mup", 64, 64)
  p_sp = sp.init(jax.random.key(2), x)
  p_mu = mu.init(jax.random.key(2), x)
  jax.tree.map(np.testing.assert_array_equal, p_sp, p_mu)
  np.testing.assert_allclose(sp.apply(p_sp, x), mu.apply(p_sp, x), rtol=1e-6, atol=1e-6)
  # Away from the base the attention logits differ: μP scales q.k by sqrt(16)/32, SP by
  # 1/sqrt(32), so the same params give other logits.
  sp, mu = mt.make_model(plain, "sp", 128, 64), mt.make_model(plain, "mup", 128, 64)
  p_sp = sp.init(jax.random.key(2), x)
  assert not np.allclose(sp.apply(p_sp, x), mu.apply(p_sp, x), rtol=1e-3)


@pytest.mark.slow  # 3 widths x 2 seeds x 2 parametrizations, ~1 min on 2 cores
def test_coord_check_mup_flat_sp_grows():
  """The coordinate check on a 1-block ViT on 8x8 digits (widths 32-128, 3 Adam steps at 2^-8,
  2 seeds, 16 sequences of 16 tokens as the study's): the logits' log-RMS-vs-log-width slope
  stays within 0.1 of 0 under μP at t = 1..3 (theory: 0) and exceeds 0.5 under SP after the
  first step (theory: 1, Adam's aligned update summed over width); at every step μP's largest
  |slope| over the layers is below SP's.

  Each RMS averages >= 8k coordinates (relative noise ~1%, slope noise ~0.01). The issue's
  bound for every layer (|slope| <= 0.1 at t = 1..3) is read from the full run's coord check
  (docs/mup.md), not asserted here: at widths 32-128 the zero-initialized query's first
  updates still shrink with width (slope -0.15..-0.2 in the quick run), a finite-width effect.
  """
  config = dataclasses.replace(mt.Config(), depth=1, widths=(32, 64, 128))
  fam = mt.family(config)
  ds = data_lib.load_digits()
  x, y = jnp.asarray(fam.inputs(ds.x_train[:16])), jnp.asarray(ds.y_train[:16])
  lr = 2.0 ** -8
  checks = {}
  for p in ("sp", "mup"):
    def make(width, seed, p=p):
      model = fam.make_model(p, width, 32)
      return model, model.init(jax.random.key(seed), x[:1])

    def opt(width, p=p):
      return optax.chain(optax.adam(lr), mup.scale_updates(
          mup_transfer.family_meta(fam, p, width, 32, x[:1]), "adam"))

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam (see study.scan_sgd)
      checks[p] = mup.coord_check(make, config.widths, x, y, steps=3, optimizer=opt, seeds=2)
  mu, sp = checks["mup"], checks["sp"]
  assert "block0/attn/query" in mu.layers and "head" in mu.layers
  for t in (1, 2, 3):
    assert abs(mu.slope("<output>", t)) <= 0.1, (t, mu.table())
    assert mu.max_abs_slope(t) < sp.max_abs_slope(t), (t, mu.table(), sp.table())
  assert sp.slope("<output>", 1) > 0.5, sp.table()


def test_claims_wider_is_better():
  lrs = [2.0 ** k for k in range(-6, -3)]
  mu = {"best_lr": [lrs[1]] * 3, "final_loss": [[1.0, 0.5, 1.0], [1.0, 0.4, 1.0],
                                                 [1.0, 0.45, 1.0]]}
  transfer = {"widths": [8, 16, 32], "lrs": lrs,
              "parametrizations": {"sp": mu, "mup": mu}}
  c = mup_transfer.claims(transfer)
  assert c["mup_loss_per_width_at_transferred_lr"] == [0.5, 0.4, 0.45]
  assert not c["mup_wider_is_better_at_transferred_lr"]
  mu["final_loss"][2][1] = 0.4  # ties count as "at least as good"
  assert mup_transfer.claims(transfer)["mup_wider_is_better_at_transferred_lr"]


@pytest.mark.slow  # a whole study end to end on digits (2x2 patches); its parts run by default
def test_smoke_outputs_and_schema(tmp_path):
  out = tmp_path / "mupt"
  saved, _ = test_mup_transfer.check_transfer_files(out, mt.main(TINY + ["--out", str(out)]))
  summary = json.loads((out / "summary.json").read_text())
  assert summary["claims"] == mup_transfer.claims(saved)
  assert summary["config"]["depth"] == 2 and summary["config"]["mup_zero_init"] is True
  assert "python -m experiments.mup_transfer_transformer" in summary["info"]["command"]
  text = (out / "summary.md").read_text()
  assert "pre-LN ViT" in text and "Wider is better" in text and "Coordinate check" in text
