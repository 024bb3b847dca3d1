"""experiments.mup_depth on tiny offline data (8x8 digits): outputs, schema, claims, bad flags."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import mup_depth
from jinit import mup

TINY = ["--dataset", "digits", "--depths", "1,3", "--width", "8", "--base-width", "4",
        "--log2-lrs=-6:-4", "--seeds", "2", "--steps", "3", "--eval-size", "64",
        "--cache-dir", ""]


@pytest.mark.slow  # a whole study end to end on 8x8 digits; its parts run by default
def test_smoke_outputs_and_schema(tmp_path, capsys):
  out = tmp_path / "depth"
  transfer = mup_depth.main(TINY + ["--out", str(out)])
  for name in ("transfer.json", "runs.json", "summary.json", "summary.md", "loss_vs_lr.png"):
    assert (out / name).stat().st_size > 0, name
  saved = json.loads((out / "transfer.json").read_text())
  assert saved == json.loads(json.dumps(transfer))
  # mup_transfer's schema with "depths" in place of "widths"
  assert set(saved) == {"depths", "lrs", "parametrizations"}
  assert saved["depths"] == [1, 3] and saved["lrs"] == [2.0 ** -6, 2.0 ** -5, 2.0 ** -4]
  assert set(saved["parametrizations"]) == set(mup_depth.PARAMETRIZATIONS)
  runs = json.loads((out / "runs.json").read_text())["runs"]
  for p, d in saved["parametrizations"].items():
    assert set(d) == {"best_lr", "final_loss"}
    per_seed = np.array(runs[p]["loss"], float)  # (depths, lrs, seeds)
    assert per_seed.shape == (2, 3, 2) and np.all(np.isfinite(per_seed))
    np.testing.assert_allclose(d["final_loss"], np.median(per_seed, axis=2), rtol=1e-6)
    for i in range(2):
      assert d["best_lr"][i] == saved["lrs"][int(np.argmin(d["final_loss"][i]))]
  ps = saved["parametrizations"]
  # At the base depth depth-μP and CompleteP are μP: the same model, multipliers and updates.
  for p in mup_depth.DEPTH_PARAMETRIZATIONS:
    np.testing.assert_allclose(ps[p]["final_loss"][0], ps["mup"]["final_loss"][0], rtol=1e-5)
  # Deeper, they differ from μP (branch multiplier 3^-alpha) and from each other.
  assert not np.allclose(ps["completep"]["final_loss"][1], ps["mup"]["final_loss"][1],
                         rtol=1e-4)
  assert not np.allclose(ps["completep"]["final_loss"][1], ps["depth_mup"]["final_loss"][1],
                         rtol=1e-4)
  summary = json.loads((out / "summary.json").read_text())
  assert summary["claims"] == json.loads(json.dumps(mup_depth.claims(saved)))
  assert "python -m experiments.mup_depth" in summary["info"]["command"]
  text = (out / "summary.md").read_text()
  assert "| depth | SP best lr" in text and "## Claims" in text
  for verdict in ("best_lr_stable_verdict", "best_lr_moves_verdict", "deeper_is_better_verdict"):
    assert f"**{summary['claims'][verdict]}**" in text
  assert str(out) in capsys.readouterr().out


def test_model_branch_multiplier_and_meta():
  config = mup_depth.config_from_args(mup_depth.build_parser().parse_args(TINY))
  x = jnp.ones((2, 64), jnp.float32)
  for p, alpha in (("sp", 0.0), ("mup", 0.0), ("depth_mup", 0.5), ("completep", 1.0)):
    model = mup_depth.make_model(p, 8, 3, config)
    assert model.branch_mult == pytest.approx(3.0 ** -alpha, rel=1e-12)
    meta = mup_depth.params_meta(p, 3, config, 64)
    assert {path for path, m in meta.items() if m.branch} == {
        path for path in meta if path.startswith("blocks/")}
    assert meta["blocks/fc1/kernel"].shape == (3, 8, 8)  # stacked blocks (nn.scan)
    assert meta["blocks/fc1/kernel"].role == ("hidden")
    expected = {"sp": 1.0, "mup": 0.5, "depth_mup": 0.5 * 3 ** -0.5, "completep": 0.5}[p]
    assert meta["blocks/fc2/kernel"].lr_multiplier("adam") == pytest.approx(expected, rel=1e-12)
    assert meta["in/kernel"].lr_multiplier("adam") == 1.0
  # The branch multiplier scales the branch: a model whose branches are zeroed out by a
  # multiplier of 0 is the model without blocks (same input layer, final LN and readout).
  zero = mup_depth.ResMLP(8, 3, 0.0, 4)
  params = zero.init(jax.random.key(0), x)
  one = mup_depth.ResMLP(8, 3, 1.0, 4)
  assert not np.allclose(zero.apply(params, x), one.apply(params, x))
  h = x @ params["params"]["in"]["kernel"] + params["params"]["in"]["bias"][None]
  mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
  logits = (((h - mean) / jnp.sqrt(var + 1e-6)) * 0.5) @ params["params"]["out"]["kernel"]
  np.testing.assert_allclose(zero.apply(params, x),
                             logits + params["params"]["out"]["bias"][None], rtol=1e-4,
                             atol=1e-5)


def _table(best, losses, lrs):
  return {"depths": [2, 8, 32], "lrs": lrs, "parametrizations": {
      p: {"best_lr": best[p], "final_loss": losses[p]} for p in best}}


def test_claims_logic():
  lrs = [2.0 ** k for k in range(-6, 0)]
  flat = [[1.0] * 6 for _ in range(3)]

  def at(values, lr):  # loss rows with `values` (per depth) at `lr`, 1.0 elsewhere
    rows = [[1.0] * 6 for _ in range(3)]
    for row, v in zip(rows, values):
      row[lrs.index(lr)] = v
    return rows

  best = {"sp": [2 ** -2, 2 ** -3, 2 ** -4], "mup": [2 ** -2, 2 ** -2, 2 ** -5],
          "depth_mup": [2 ** -3, 2 ** -2, 2 ** -3], "completep": [2 ** -3, 2 ** -3, 2 ** -3]}
  losses = {"sp": flat, "mup": flat, "depth_mup": at([0.5, 0.4, 0.3], 2 ** -3),
            "completep": at([0.5, 0.45, 0.45], 2 ** -3)}
  c = mup_depth.claims(_table(best, losses, lrs))
  per = c["per_parametrization"]
  assert per["sp"]["shift_steps"] == -2 and per["mup"]["shift_steps"] == -3
  assert per["depth_mup"]["max_abs_shift_steps"] == 1
  assert c["best_lr_stable_verdict"] == "agrees" and c["best_lr_moves_verdict"] == "agrees"
  assert c["deeper_is_better_verdict"] == "agrees"  # 0.45 -> 0.45 is not worse
  best["completep"] = [2 ** -3, 2 ** -1, 2 ** -3]  # moves 2 steps at depth 8
  best["sp"] = [2 ** -2, 2 ** -2, 2 ** -3]  # moves 1 step
  losses["completep"] = at([0.5, 0.6, 0.45], 2 ** -3)  # worse at 8, better at 32
  losses["depth_mup"] = at([0.5, 0.6, 0.7], 2 ** -3)
  c = mup_depth.claims(_table(best, losses, lrs))
  assert c["best_lr_stable_under_depth_parametrizations"] == {"depth_mup": True,
                                                               "completep": False}
  assert c["best_lr_stable_verdict"] == "partly" and c["best_lr_moves_verdict"] == "partly"
  assert c["deeper_is_better_verdict"] == "partly"  # only CompleteP's deepest beats its base
  losses["completep"] = at([0.5, 0.6, math.inf], 2 ** -3)  # diverged at depth 32
  best["sp"] = best["mup"] = [2 ** -2] * 3
  c = mup_depth.claims(_table(best, losses, lrs))
  assert c["deeper_is_better_verdict"] == "not" and c["best_lr_moves_verdict"] == "not"


@pytest.mark.parametrize("argv, message", [
    (["--depths", "8,2"], "depths must be"),
    (["--depths", "2"], "depths must be"),
    (["--depths", "2,x"], "--depths: must be an int"),
    (["--log2-lrs=-4:-6"], "log2_lrs must be"),
    (["--width", "16", "--base-width", "16"], "--base-width 16 must be smaller"),
    (["--seeds", "0"], "--seeds: must be an int >= 1"),
])
def test_bad_arguments(tmp_path, capsys, argv, message):
  with pytest.raises(SystemExit) as exit_info:
    mup_depth.main(["--dataset", "digits", "--out", str(tmp_path / "x")] + argv)
  assert exit_info.value.code == 2  # a usage error: one line naming the flag
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1, err
  assert not (tmp_path / "x").exists()


def test_presets():
  assert all(math.log2(lr) == int(math.log2(lr)) for lr in mup_depth.QUICK.lrs)
  assert mup_depth.QUICK.depths[0] == 2 and mup_depth.QUICK.depths[-1] == 32
  assert mup_depth.Config().depths == (2, 4, 8, 16, 32)
  assert set(mup_depth.PARAMETRIZATIONS) <= set(mup.PARAMETRIZATIONS)
