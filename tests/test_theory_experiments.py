"""Smoke and unit tests of experiments.trainability and .isometry on tiny offline data.

They use scikit-learn's 8x8 digits (offline) and tiny grids: they check the pipelines
(result schema, files, refusal to overwrite, bad flags) and the pieces with a known
answer (agreement fraction, spectrum statistics, the orthogonal Jacobian), not the
papers' numbers (those come from the runs in docs/results/).
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import isometry
from experiments import trainability
from experiments.common import mean_field_mlp as mlp


def test_agreement_counts_matching_cells():
  acc = np.array([[0.9, 0.9], [0.9, 0.1], [0.1, 0.1]])  # depths x sigmas
  depths = [6, 30, 120]
  xi_c = [10.0, 2.0]  # 6 xi_c = 60, 12
  frac, trainable, predicted = trainability.agreement(acc, depths, xi_c, 0.5)
  np.testing.assert_array_equal(predicted, [[True, True], [True, False], [False, False]])
  np.testing.assert_array_equal(trainable, acc >= 0.5)
  assert frac == 1.0
  frac, _, _ = trainability.agreement(acc[::-1], depths, xi_c, 0.5)
  assert frac == pytest.approx(2 / 6)


@pytest.mark.slow  # a whole study end to end (20-35 s on 2 cores); its parts run by default
def test_trainability_tiny_run_writes_the_schema(tmp_path, capsys):
  out = str(tmp_path / "tr")
  argv = ["--dataset", "digits", "--sigma-w2", "1.0,4.0", "--depths", "3",
          "--steps", "10", "--width", "8", "--train-size", "100", "--out", out,
          "--no-progress", "--cache-dir", "", "--check-width", "32"]
  res = trainability.main(argv)
  with open(os.path.join(out, "trainability.json")) as f:
    saved = json.load(f)
  for key in ("sigma_w2", "depths", "train_acc", "xi_c", "agreement"):
    assert key in saved
  assert saved["sigma_w2"] == [1.0, 4.0] and saved["depths"] == [3]
  assert np.asarray(saved["train_acc"]).shape == (1, 2)  # depth-major
  assert all(0.0 <= a <= 1.0 for row in saved["train_acc"] for a in row)
  assert 0.0 <= saved["agreement"] <= 1.0
  assert saved["agreement"] == res["agreement"]
  assert saved["provenance"]["command"].startswith("python -m experiments.trainability")
  assert os.path.getsize(os.path.join(out, "trainability.png")) > 1000
  assert "Agreement" in open(os.path.join(out, "summary.md")).read()
  check = saved["variance_check"]
  assert check["width"] == 32 and len(check["predicted"]) == len(check["measured"]) == 10
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:  # refused before any work
    trainability.main(argv)
  assert exit_info.value.code == 2
  assert "folder exists and is not empty" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--sigma-w2", "1.0,-1.0"], "--sigma-w2: must be a positive finite number"),
    (["--depths", "0"], "--depths: must be an int >= 1"),
    (["--threshold", "1.5"], "--threshold: must be a number in (0, 1)"),
    # issue 18, finding 8: --check-width 0 trained the whole grid before a traceback
    (["--check-width", "0"], "--check-width: must be an int >= 1"),
    # finding 14: --steps 0 --width 0 ran 500 steps at width 64
    (["--steps", "0"], "--steps: must be an int >= 1"),
    (["--width", "0"], "--width: must be an int >= 1"),
    (["--lr", "inf"], "--lr: must be a positive finite number"),
    (["--batch-size", "5000"], "--batch-size 5000 exceeds"),
])
def test_trainability_bad_flags(tmp_path, capsys, flags, message):
  with pytest.raises(SystemExit) as exit_info:
    trainability.main(["--dataset", "digits", "--out", str(tmp_path / "x")] + flags)
  assert exit_info.value.code == 2  # a usage error: one line naming the flag
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1, err
  assert not os.path.exists(tmp_path / "x")  # checked before any data or folder


@pytest.mark.parametrize("flags,message", [
    (["--width", "0"], "--width: must be an int >= 1"),  # finding 14
    (["--nets", "0"], "--nets: must be an int >= 1"),
    (["--depths", "3,x"], "--depths: must be an int"),
    (["--configs", "tanh-critical-gaussian,bogus"], "--configs: must be a comma-separated"),
    (["--target", "0"], "--target: must be a number in (0, 1)"),
])
def test_isometry_bad_flags(tmp_path, capsys, flags, message):
  with pytest.raises(SystemExit) as exit_info:
    isometry.main(["--dataset", "digits", "--out", str(tmp_path / "x")] + flags)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1, err
  assert not os.path.exists(tmp_path / "x")


@pytest.mark.parametrize("study", [trainability, isometry])
def test_overwrite_never_deletes_a_users_folder(tmp_path, capsys, study):
  """Finding 3: --overwrite replaced a folder holding only the user's summary.md."""
  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "summary.md").write_text("my notes")
  with pytest.raises(SystemExit) as exit_info:
    study.main(["--dataset", "digits", "--out", str(mine), "--overwrite"])
  assert exit_info.value.code == 2
  assert "--overwrite refuses to delete a folder that holds no run" in capsys.readouterr().err
  assert os.listdir(mine) == ["summary.md"] and (mine / "summary.md").read_text() == "my notes"


def test_mean_field_mlp_init_variances():
  # sigma_w2 is vmapped: each net's hidden kernels have variance sigma_w2 / width.
  width, depth = 128, 3
  params = jax.vmap(lambda s, k: mlp.init_mlp(k, s, 0.05, 64, width, depth, 10))(
      jnp.array([1.0, 4.0]), jax.random.split(jax.random.key(0), 2))
  var = np.asarray(jnp.var(params["w_hid"], axis=(1, 2, 3)))
  n = (depth - 1) * width * width
  # Sample variance of n normals: relative sd sqrt(2/n) (~0.4% here); allow 6 of them.
  np.testing.assert_allclose(var * width, [1.0, 4.0], rtol=6 * math.sqrt(2.0 / n))
  assert params["w_hid"].shape == (2, depth - 1, width, width)


def test_spread_stats_of_known_spectra():
  flat = isometry.spread_stats(np.ones(50))
  assert flat["std_log_s"] == 0.0 and flat["max_over_min"] == 1.0 and flat["var_s2"] == 0.0
  assert flat["frac_in_half_to_2"] == 1.0 and flat["frac_zero"] == 0.0
  s = np.array([0.0, 0.5, 2.0, 8.0])
  st = isometry.spread_stats(s)
  assert st["frac_zero"] == 0.25 and math.isinf(st["max_over_min"])
  assert st["std_log_s"] == pytest.approx(np.std(np.log([0.5, 2.0, 8.0])))


def test_orthogonal_linear_net_is_exactly_isometric():
  cfg = {"phi": lambda x: x, "sigma_w2": 1.0, "sigma_b2": 0.0, "distribution": "orthogonal",
         "q_star": 1.0}
  s = isometry.jacobian_singular_values(jax.random.key(0), cfg, 8, 32)
  np.testing.assert_allclose(s, 1.0, atol=1e-4)


@pytest.mark.slow  # a whole study end to end (20-35 s on 2 cores); its parts run by default
def test_isometry_tiny_run(tmp_path):
  out = str(tmp_path / "iso")
  res = isometry.main(["--dataset", "digits", "--configs",
                       "tanh-critical-orthogonal,relu-he-gaussian", "--depths", "3", "--width",
                       "16", "--nets", "1", "--learn-depth", "3", "--learn-width", "8",
                       "--steps", "10", "--seeds", "2", "--train-size", "100", "--target",
                       "0.3", "--out", out, "--cache-dir", "", "--batch-size", "16"])
  with open(os.path.join(out, "isometry.json")) as f:
    saved = json.load(f)
  assert set(saved["spectra"]) == {"tanh-critical-orthogonal", "relu-he-gaussian"}
  for entry in saved["spectra"].values():
    assert set(entry["by_depth"]) == {"3"}
    assert len(entry["by_depth"]["3"]["singular_values"]) == 16
  assert res["spectra"]["tanh-critical-orthogonal"]["sigma_w2"] == pytest.approx(1.086,
                                                                                 rel=0.01)
  for run in saved["learning"]["runs"].values():
    assert np.asarray(run["curve"]).shape == (2, 10)
  for name in ("spectra.png", "learning.png", "summary.md"):
    assert os.path.exists(os.path.join(out, name))
