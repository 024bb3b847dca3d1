"""experiments.mup_transfer on tiny offline data (8x8 digits): outputs, schema, one-run sweep."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import mup_transfer
from experiments import mup_transfer_transformer
from experiments.common import data as data_lib

TINY = ["--dataset", "digits", "--widths", "8,16", "--log2-lrs=-6:-4", "--seeds", "2",
        "--steps", "4", "--eval-size", "64", "--coord-steps", "1", "--cache-dir", ""]


def check_transfer_files(out, transfer):
  """A width study's files in ``out`` for TINY's grid (widths 8, 16; 3 lrs; 2 seeds): all
  written, transfer.json in the issue's schema, its medians and argmins those of runs.json.

  Returns:
    ``(transfer.json, runs.json's runs)`` as read back.
  """
  for name in ("transfer.json", "runs.json", "summary.json", "summary.md", "loss_vs_lr.png",
               "coord_check_sp.png", "coord_check_mup.png", "coord_check.json"):
    assert (out / name).stat().st_size > 0, name
  saved = json.loads((out / "transfer.json").read_text())
  assert saved == json.loads(json.dumps(transfer))
  # exactly the schema
  assert set(saved) == {"widths", "lrs", "parametrizations"}
  assert saved["widths"] == [8, 16] and saved["lrs"] == [2.0 ** -6, 2.0 ** -5, 2.0 ** -4]
  assert set(saved["parametrizations"]) == {"sp", "mup"}
  runs = json.loads((out / "runs.json").read_text())["runs"]
  for p, d in saved["parametrizations"].items():
    assert set(d) == {"best_lr", "final_loss"}
    assert np.shape(d["final_loss"]) == (2, 3) and len(d["best_lr"]) == 2
    per_seed = np.array(runs[p]["loss"], float)  # (widths, lrs, seeds)
    assert per_seed.shape == (2, 3, 2) and np.all(np.isfinite(per_seed))
    np.testing.assert_allclose(d["final_loss"], np.median(per_seed, axis=2), rtol=1e-6)
    for i in range(2):  # best_lr is the argmin of the median loss
      assert d["best_lr"][i] == saved["lrs"][int(np.argmin(d["final_loss"][i]))]
  return saved, runs


@pytest.mark.slow  # a whole study end to end (20-35 s on 2 cores); its parts run by default
def test_smoke_outputs_and_schema(tmp_path, capsys):
  out = tmp_path / "mup"
  saved, runs = check_transfer_files(out, mup_transfer.main(TINY + ["--out", str(out)]))
  # At the base width SP and μP are the same model with the same multipliers.
  np.testing.assert_allclose(saved["parametrizations"]["sp"]["final_loss"][0],
                             saved["parametrizations"]["mup"]["final_loss"][0], rtol=1e-5)
  summary = json.loads((out / "summary.json").read_text())
  claims = summary["claims"]
  assert claims == mup_transfer.claims(saved)
  assert isinstance(claims["mup_best_lr_moves_at_most_1_step"], bool)
  assert "python -m experiments.mup_transfer" in summary["info"]["command"]
  text = (out / "summary.md").read_text()
  assert "| width | SP best lr" in text and "Coordinate check" in text
  assert str(out) in capsys.readouterr().out
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:  # refused before any work
    mup_transfer.main(TINY + ["--out", str(out)])
  assert exit_info.value.code == 2
  assert "folder exists and is not empty" in capsys.readouterr().err

  # One compiled program per width holds all 6 runs; a run trained alone gives the same loss
  # (no cross-talk between vmapped runs). Same data pipeline as run().
  ds = data_lib.load_digits()
  config = mup_transfer.config_from_args(mup_transfer.build_parser().parse_args(TINY))
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  sweep = mup_transfer.make_sweep(
      mup_transfer.make_model("mup", 16, 8), mup_transfer.params_meta("mup", 16, 8, ds.input_dim),
      config, x, y, x[:64], y[:64], jnp.asarray(ds.x_val[:config.val_size]),
      jnp.asarray(ds.y_val[:config.val_size]))
  alone, _ = sweep(jnp.asarray([2.0 ** -4], jnp.float32), jnp.asarray([1], jnp.int32))
  np.testing.assert_allclose(alone[0], runs["mup"]["loss"][1][2][1], rtol=1e-5)


def test_claims_logic():
  lrs = [2.0 ** k for k in range(-6, 0)]

  def table(best_sp, best_mu, loss_mu_widest, loss_sp_widest):
    fl_sp = [[1.0] * 6, [1.0] * 6]
    fl_mu = [[1.0] * 6, [1.0] * 6]
    fl_mu[1][lrs.index(best_mu[0])] = loss_mu_widest
    fl_sp[1][lrs.index(best_sp[1])] = loss_sp_widest
    return {"widths": [8, 64], "lrs": lrs, "parametrizations": {
        "sp": {"best_lr": best_sp, "final_loss": fl_sp},
        "mup": {"best_lr": best_mu, "final_loss": fl_mu}}}

  c = mup_transfer.claims(table([2 ** -2, 2 ** -5], [2 ** -3, 2 ** -4], 0.2, 0.3))
  assert c["sp_shift_steps"] == 3 and c["mup_shift_steps"] == 1
  assert c["mup_best_lr_moves_at_most_1_step"] and c["sp_best_lr_moves_at_least_2_steps"]
  assert c["mup_transferred_at_least_as_good_as_sp_tuned"]
  c = mup_transfer.claims(table([2 ** -2, 2 ** -3], [2 ** -1, 2 ** -3], 0.4, 0.3))
  assert not c["mup_best_lr_moves_at_most_1_step"] and not c["sp_best_lr_moves_at_least_2_steps"]
  assert not c["mup_transferred_at_least_as_good_as_sp_tuned"]


@pytest.mark.parametrize("study, argv, message", [
    (mup_transfer, ["--widths", "16,8"], "widths must be"),
    (mup_transfer, ["--widths", "8,x"], "--widths: must be an int"),
    (mup_transfer, ["--widths", "0,16"], "--widths: must be an int >= 1"),  # finding 15
    (mup_transfer, ["--log2-lrs=-4:-6"], "log2_lrs must be"),
    (mup_transfer, ["--seeds", "0"], "--seeds: must be an int >= 1"),
    (mup_transfer, ["--steps", "-1"], "--steps: must be an int >= 1"),
    (mup_transfer, ["--paper", "--quick"], "two presets"),
    (mup_transfer, ["--log2-input-mults=-2,-2"], "log2_input_mults must be distinct ints"),
    (mup_transfer, ["--log2-output-mults=1,x"], "--log2-output-mults: must be an int"),
    (mup_transfer, ["--optimizer", "rmsprop"], "invalid choice"),
    (mup_transfer_transformer, ["--widths", "8,18"], "divisible by heads"),
    (mup_transfer_transformer, ["--widths", "16,8"], "widths must be"),
    (mup_transfer_transformer, ["--log2-lrs=-4:-6"], "log2_lrs must be"),
])
def test_bad_arguments(tmp_path, capsys, study, argv, message):
  with pytest.raises(SystemExit) as exit_info:
    study.main(["--dataset", "digits", "--out", str(tmp_path / "x")] + argv)
  assert exit_info.value.code == 2  # a usage error: one line naming the flag
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1, err
  assert not (tmp_path / "x").exists()


def test_lr_grid_is_powers_of_two():
  assert all(math.log2(lr) == int(math.log2(lr)) for lr in mup_transfer.QUICK.lrs)
  assert len(mup_transfer.QUICK.widths) >= 3 and mup_transfer.QUICK.seeds >= 3


@pytest.mark.slow  # ~2 s quiet, 8 s loaded: eager flax inits
def test_multipliers_are_mups_example():
  """input_mult: the first layer's init std / sqrt(m), its output x sqrt(m), so the model's
  output at init is unchanged (same draws, rounding only); output_mult scales the logits."""
  x = jnp.asarray(np.random.default_rng(0).random((5, 12), dtype=np.float32))

  def out(**kw):
    model = mup_transfer.make_model("mup", 32, 8, **kw)
    variables = model.init(jax.random.key(1), x)
    return model.apply(variables, x), variables

  y1, p1 = out()
  y4, p4 = out(input_mult=4.0)
  np.testing.assert_allclose(p4["params"]["in"]["kernel"], p1["params"]["in"]["kernel"] / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(y4, y1, rtol=1e-5, atol=1e-6)
  y_out, _ = out(output_mult=8.0)
  np.testing.assert_allclose(y_out, 8.0 * y1, rtol=1e-5, atol=1e-6)
  assert not np.allclose(y1, 0)  # the readout is random here: the comparisons have content


@pytest.mark.slow  # a whole tuned study end to end (~30 s on 2 cores)
def test_paper_protocol_tunes_multipliers_at_the_base(tmp_path):
  out = tmp_path / "paper"
  transfer = mup_transfer.main(TINY + ["--out", str(out), "--optimizer", "sgd", "--no-bias",
                                       "--zero-readout", "--log2-input-mults=-2,0",
                                       "--log2-output-mults=0,2"])
  runs = json.loads((out / "runs.json").read_text())
  grid = runs["multiplier_grid"]
  loss = np.array(grid["loss"], float)  # (inputs, outputs, lrs, seeds)
  assert loss.shape == (2, 2, 3, 2) and np.all(np.isfinite(loss))
  best = np.median(loss, axis=3).min(axis=2)
  a, b = np.unravel_index(int(np.argmin(best)), best.shape)
  assert (grid["best_log2_input_mult"], grid["best_log2_output_mult"]) == ([-2, 0][a],
                                                                            [0, 2][b])
  assert transfer["multipliers"] == {"input_mult": 2.0 ** [-2, 0][a],
                                     "output_mult": 2.0 ** [0, 2][b], "tuned_at_width": 8}
  # The sweep's base width is the tuned cell again: same model, keys and batches.
  for p in ("sp", "mup"):
    np.testing.assert_allclose(np.array(runs["runs"][p]["loss"][0], float), loss[a, b],
                               rtol=1e-5)
  text = (out / "summary.md").read_text()
  assert "Multipliers tuned at the base width 8" in text and "SGD" in text
