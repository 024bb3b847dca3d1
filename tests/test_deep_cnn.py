"""Tests of experiments.deep_cnn, experiments.deep_residual and experiments.common.deep_conv.

Tiny shapes and scikit-learn's offline digits: they check the model pieces with a known
answer (scan == unrolled, im2col == lax.conv, the delta-orthogonal conv is an isometry,
the 1/depth lr protocol) and the pipelines (schema, resume, bad flags), not the paper's
numbers (those come from the runs in docs/results/deep_cnn/).
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import deep_cnn
from experiments import deep_residual
from experiments.common import deep_conv as dc

TINY = ["--dataset", "digits", "--digits-repeat", "1", "--channels", "4", "--steps", "4",
        "--eval-every", "2", "--train-size", "100", "--eval-size", "50", "--pool", "2",
        "--cache-dir", ""]


@pytest.fixture(autouse=True)
def _strict_promotion():
  with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
    yield


def _params(name, depth=4, channels=3, side=5, sigma_b2=1e-2):
  return dc.init_cnn(jax.random.key(0), name, depth=depth, channels=channels, num_classes=10,
                     sigma_w2=1.5, sigma_b2=sigma_b2, image_side=side)


def test_depth_lrs_scale_as_one_over_depth():
  assert dc.depth_lrs(50, [2.0]) == [pytest.approx(0.04)]
  assert dc.depth_lrs(1000, [1, 2]) == [pytest.approx(0.001), pytest.approx(0.002)]
  for d in (10, 100, 1000):  # lr * depth is the scale at every depth
    assert [lr * d for lr in dc.depth_lrs(d, [0.5, 2])] == pytest.approx([0.5, 2])
  for bad in ([], [0.0], [-1.0], [math.inf]):
    with pytest.raises(ValueError, match="lr scales"):
      dc.depth_lrs(10, bad)
  with pytest.raises(ValueError, match="depth"):
    dc.depth_lrs(0, [1.0])


def test_cosine_lr_factor_decays_from_one_to_zero_per_chunk():
  chunks = 10
  f = [deep_cnn.lr_factor("cosine", c, chunks) for c in range(chunks)]
  assert f == pytest.approx([0.5 * (1 + math.cos(math.pi * (c + 0.5) / chunks))
                             for c in range(chunks)])
  assert all(a > b for a, b in zip(f, f[1:])) and 0 < f[-1] < 0.01 < 0.99 < f[0] <= 1
  assert sum(f) == pytest.approx(chunks / 2)  # the mean lr is half the peak
  assert [deep_cnn.lr_factor("none", c, 3) for c in range(3)] == [1.0, 1.0, 1.0]
  with pytest.raises(ValueError, match="lr_decay"):
    deep_cnn.lr_factor("linear", 0, 3)
  with pytest.raises(ValueError, match="chunk"):
    deep_cnn.lr_factor("cosine", 3, 3)


def test_quick_and_full_protocols():
  # --quick: the depth-1,000 headline (1,000 steps, cosine decay, lr 2 / depth, sigma_b2 1e-4);
  # the full run: 10,000 layers, 400 constant steps at lr 1 / depth and sigma_b2 1e-8.
  for argv, want in [(["--quick"], ([1000], 1000, [2.0], "cosine", 1e-4)),
                     ([], ([10000], 400, [1.0], "none", 1e-8)),
                     (["--quick", "--lr-decay", "none", "--sigma-b2", "1e-6", "--steps", "20"],
                      ([1000], 20, [2.0], "none", 1e-6))]:
    args = deep_cnn.build_parser().parse_args(argv + ["--dataset", "digits"])
    cfg = deep_cnn.make_config(args)
    assert (cfg["depths"], cfg["steps"], cfg["scales"], args.lr_decay, args.sigma_b2) == want


def test_pick_lr_is_the_best_final_accuracy_ties_to_smaller_lr():
  assert dc.pick_lr([0.2, 0.9, 0.5], [1e-3, 2e-3, 4e-3]) == 1
  assert dc.pick_lr([0.9, 0.9], [2e-3, 1e-3]) == 1  # tie: the smaller lr
  assert dc.pick_lr([math.nan, 0.1], [1e-3, 2e-3]) == 1  # a diverged run is never chosen


def test_im2col_conv_equals_lax_conv_with_circular_padding():
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
  w = jax.random.normal(jax.random.key(2), (3, 3, 3, 4))
  np.testing.assert_allclose(dc.conv_im2col(x, w), dc.conv_lax(x, w), rtol=1e-5, atol=1e-5)
  # Circular: a pixel shifted across the border comes back on the other side.
  shifted = dc.conv_im2col(jnp.roll(x, 2, axis=1), w)
  np.testing.assert_allclose(shifted, jnp.roll(dc.conv_im2col(x, w), 2, axis=1), atol=1e-5)


@pytest.mark.parametrize("name", dc.INITS)
def test_scan_model_equals_unrolled_model(name):
  p = _params(name)
  x = jax.random.normal(jax.random.key(3), (2, 5, 5, 1))
  np.testing.assert_allclose(dc.apply_cnn(p, x), dc.apply_unrolled(p, x), rtol=1e-4,
                             atol=1e-5)


def test_delta_orthogonal_conv_jacobian_is_isometric():
  # The circular conv with a delta-orthogonal kernel is an orthogonal matrix times the gain:
  # all singular values of its (side^2 C) x (side^2 C) matrix equal sqrt(sigma_w2).
  w = _params("delta_orthogonal")["w_hid"][0]  # the shapes the tests above compiled
  sv = np.linalg.svd(dc.conv_matrix(w, side=5), compute_uv=False)
  np.testing.assert_allclose(sv, math.sqrt(1.5), rtol=1e-5)
  # A Gaussian kernel of the same variance is not.
  sv_g = np.linalg.svd(dc.conv_matrix(_params("gaussian")["w_hid"][0], 5),
                       compute_uv=False)
  assert sv_g.max() / sv_g.min() > 3


def test_network_jacobian_singular_values_match_the_linear_case():
  # The hidden map's Jacobian at x is a product of diag(tanh') times the conv matrices;
  # at a zero input with zero biases tanh' = 1, so every singular value is gain^(depth-1).
  p = _params("delta_orthogonal", depth=3, sigma_b2=1e-2)
  p = {**p, "b_in": jnp.zeros_like(p["b_in"]), "b_hid": jnp.zeros_like(p["b_hid"])}
  sv = dc.jacobian_singular_values(p, jnp.zeros((1, 5, 5, 1)))
  assert sv.shape == (5 * 5 * 3,)
  np.testing.assert_allclose(sv, 1.5 ** ((3 - 1) / 2), rtol=1e-5)


@pytest.mark.slow  # draws every init in both precisions (~11 s on 2 cores)
def test_inits_have_the_stated_variances_and_float32_under_x64():
  channels = 32
  p = {n: _params(n, depth=3, channels=channels) for n in dc.INITS}
  fan_in = 9 * channels
  tol = 6 * math.sqrt(2.0 / p["xavier"]["w_hid"].size)  # 6 sds of a sample variance
  assert float(jnp.var(p["gaussian"]["w_hid"])) * fan_in == pytest.approx(1.5, rel=tol)
  assert float(jnp.var(p["xavier"]["w_hid"])) * fan_in == pytest.approx(1.0, rel=tol)
  assert float(jnp.var(p["he"]["w_hid"])) * fan_in == pytest.approx(2.0, rel=tol)
  assert not np.any(np.asarray(p["he"]["b_hid"]))
  assert np.any(np.asarray(p["gaussian"]["b_hid"]))
  center = np.asarray(p["delta_orthogonal"]["w_hid"])[:, 1, 1]
  for m in center:
    np.testing.assert_allclose(m.T @ m, 1.5 * np.eye(channels), atol=1e-4)
  with jax.enable_x64(True):  # issue 18 #13: every leaf stays float32, the conv runs
    q = _params("gaussian")
    assert {a.dtype for a in jax.tree.leaves(q)} == {jnp.dtype(jnp.float32)}
    out = dc.apply_cnn(q, jnp.zeros((1, 5, 5, 1), jnp.float64))
    assert out.dtype == jnp.float32


def test_train_sgd_stacks_nets_with_their_own_lr():
  p = _params("delta_orthogonal", depth=2, side=4)
  stacked = jax.tree.map(lambda a: jnp.stack([a, a]), p)
  x = jax.random.normal(jax.random.key(4), (16, 4, 4, 1))
  y = jnp.arange(16) % 10
  final, losses, accs = dc.train_sgd(stacked, jnp.asarray([0.0, 0.5]), jax.random.key(5), x, y,
                                     x, y, steps=4, eval_every=2, batch_size=8)
  assert losses.shape == accs.shape == (2, 2)
  np.testing.assert_array_equal(final["w_out"][0], p["w_out"])  # lr 0: unchanged
  assert not np.allclose(final["w_out"][1], p["w_out"])


def test_readout_lr_applies_to_the_readout_only():
  # lrs (nets, 2) = (conv lr, readout lr): conv lr 0 leaves every conv parameter unchanged.
  p = _params("delta_orthogonal", depth=2, side=4)
  stacked = jax.tree.map(lambda a: jnp.stack([a, a]), p)
  x = jax.random.normal(jax.random.key(4), (16, 4, 4, 1))
  y = jnp.arange(16) % 10
  lrs = jnp.asarray([[0.0, 0.5], [0.5, 0.0]])
  final, _, _ = dc.train_sgd(stacked, lrs, jax.random.key(5), x, y, x, y, steps=2,
                             eval_every=2, batch_size=8)
  for k in p:
    moved = [not np.allclose(final[k][i], p[k]) for i in range(2)]
    # net 0 moves only its readout, net 1 only its convolutions (b_out starts at 0 and
    # gets a nonzero gradient, so it moves too)
    assert moved == ([True, False] if k in dc.READOUT else [False, True]), k


def test_nets_vmapped_mapped_and_sharded_train_alike():
  # The three layouts of the nets axis are one computation: same batches, same updates.
  from jinit import sharding as js

  p = _params("delta_orthogonal", depth=2, side=4)
  q = _params("gaussian", depth=2, side=4)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), p, q)
  x = jax.random.normal(jax.random.key(4), (16, 4, 4, 1))
  y = jnp.arange(16) % 10
  args = (stacked, jnp.asarray([0.1, 0.3]), jax.random.key(5), x, y, x, y)
  kw = {"steps": 4, "eval_every": 2, "batch_size": 8}
  ref = dc.train_sgd(*args, over_nets="vmap", **kw)
  mapped = dc.train_sgd(*args, over_nets="map", **kw)
  sharded = dc.sharded_train_sgd(js.make_mesh(1, ("runs",)), **kw)(*args)
  for out in (mapped, sharded):
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="over_nets"):
    dc.train_sgd(*args, over_nets="pmap", **kw)


def test_pad_nets_to_a_multiple_of_the_devices():
  assert [dc.pad_nets(n, 2) for n in (1, 2, 3, 4)] == [1, 0, 1, 0]
  assert [dc.pad_nets(n, 3) for n in (1, 2, 3, 4)] == [2, 1, 0, 2]
  assert dc.pad_nets(5, 1) == 0


def _record(depth, inits, acc):
  runs = {n: {"final_train_acc": a, "lr": 2.0 / depth, "test_acc": a, "steps_to_90": None}
          for n, a in zip(inits, acc)}
  return {"depth": depth, "runs": runs, "seconds_per_step_per_net": 0.1,
          "jacobian": {n: {"median": 1.0} for n in inits}, "readout_only_acc": 0.5}


def test_depth_json_schema_one_value_per_depth():
  # The schema: {"depths": [...], "final_train_acc": {init: [...]}, "steps": N,
  # "lr": {init: [...]}}, one value per depth, None where an init did not run.
  recs = [_record(50, dc.INITS, [0.9, 0.2, 0.5, 0.4]),
          _record(1000, deep_cnn.CORE, [0.95, 0.1])]
  out = deep_cnn.collect(recs, steps=300)
  assert out["depths"] == [50, 1000] and out["steps"] == 300
  assert out["final_train_acc"] == {"delta_orthogonal": [0.9, 0.95], "gaussian": [0.2, 0.1],
                                    "xavier": [0.5, None], "he": [0.4, None]}
  assert out["lr"]["gaussian"] == [pytest.approx(0.04), pytest.approx(0.002)]
  assert out["lr"]["he"] == [pytest.approx(0.04), None]
  json.dumps(out)  # plain JSON


@pytest.mark.slow  # a whole study end to end (20-35 s on 2 cores); its parts run by default
def test_tiny_run_writes_depth_json_and_resumes(tmp_path, capsys):
  out = str(tmp_path / "cnn")
  argv = TINY + ["--depths", "3,2", "--baselines-up-to", "2", "--lr-scales", "1,2",
                 "--out", out]
  summary = deep_cnn.main(argv)
  with open(os.path.join(out, "depth.json")) as f:
    saved = json.load(f)
  assert saved["depths"] == [2, 3] and saved["steps"] == 4
  assert set(saved["final_train_acc"]) == set(dc.INITS)
  assert saved["final_train_acc"]["xavier"][1] is None  # baselines only up to depth 2
  for name in ("delta_orthogonal", "gaussian"):
    assert len(saved["final_train_acc"][name]) == 2
    for lr, d in zip(saved["lr"][name], saved["depths"]):
      assert lr * d == pytest.approx(1.0) or lr * d == pytest.approx(2.0)
  assert summary["depths"] == [2, 3]
  for name in ("deep_cnn.png", "summary.md", "depth_2.json", "depth_3.json", "run.json"):
    assert os.path.exists(os.path.join(out, name))
  # --resume: the depths done are read back, not retrained.
  os.remove(os.path.join(out, "depth.json"))
  before = os.path.getmtime(os.path.join(out, "depth_2.json"))
  deep_cnn.main(["--resume", out])
  assert "done before (resumed)" in capsys.readouterr().out
  assert os.path.getmtime(os.path.join(out, "depth_2.json")) == before
  with open(os.path.join(out, "depth.json")) as f:
    assert json.load(f)["final_train_acc"] == saved["final_train_acc"]


@pytest.mark.slow  # the study end to end with the Jacobian compiled (5-13 s on 2 cores)
def test_spectra_only_writes_the_jacobian_table_without_training(tmp_path):
  out = str(tmp_path / "spectra")
  deep_cnn.main(TINY + ["--depths", "2", "--spectra", "1e-4,1e-8", "--out", out])
  with open(os.path.join(out, "spectra.json")) as f:
    rows = json.load(f)["rows"]
  assert [(r["depth"], r["sigma_b2"], r["init"]) for r in rows] == [
      (2, s, n) for s in (1e-4, 1e-8) for n in deep_cnn.CORE]
  for r in rows:  # the critical sigma_w2 of each sigma_b2, and a spectrum summary
    assert r["sigma_w2"] == pytest.approx(
        float(deep_cnn.theory.critical_sigma_w2(jnp.tanh, r["sigma_b2"])))
    assert 0 < r["min"] <= r["median"] <= r["max"] and 0 <= r["frac_in_half_to_2"] <= 1
  assert not os.path.exists(os.path.join(out, "depth.json"))  # nothing trained
  assert "| 2 | 0.0001 |" in open(os.path.join(out, "spectra.md")).read()


@pytest.mark.parametrize("flags, says", [
    (["--train-size", "-5"], "--train-size"),
    (["--lr-scales", "-0.05"], "--lr-scales"),
    (["--lr-scales", "inf"], "--lr-scales"),
    (["--readout-lr", "0"], "--readout-lr"),
    (["--lr-decay", "linear"], "--lr-decay"),
    (["--spectra", "0,1e-4"], "--spectra"),
    (["--parallel", "data"], "--parallel"),
    (["--batch-size", "0"], "--batch-size"),
    (["--depths", "0,5"], "--depths"),
    (["--steps", "5", "--eval-every", "2"], "must divide"),
    (["--eval-size", "500", "--train-size", "100"], "--eval-size"),
    (["--batch-size", "200", "--train-size", "100"], "--batch-size"),
])
def test_bad_flags_one_line_exit_2_before_any_work(tmp_path, capsys, flags, says):
  out = tmp_path / "bad"
  with pytest.raises(SystemExit) as e:
    deep_cnn.main(["--dataset", "digits", "--cache-dir", "", "--out", str(out)] + flags)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert says in err and len(err.splitlines()) == 1
  assert not out.exists()


@pytest.mark.slow  # runs the deep_residual study end to end (~9 s on 2 cores)
def test_residual_inits_and_tiny_run(tmp_path):
  kw = {"depth": 6, "width": 8, "in_dim": 5, "num_classes": 3}
  p = {n: deep_residual.init_resmlp(jax.random.key(0), n, **kw) for n in deep_residual.INITS}
  assert not np.any(np.asarray(p["fixup"]["w2"])) and np.all(p["fixup"]["alpha"] == 1)
  assert not np.any(np.asarray(p["rezero"]["alpha"]))
  # Fixup scales W1 by L^(-1/2) (m = 2): the He variance 2 / width times 1 / 6.
  np.testing.assert_allclose(float(jnp.var(p["fixup"]["w1"])) * 8 * 6 / 2,
                             float(jnp.var(p["standard"]["w1"])) * 8 / 2, rtol=0.5)
  x = jax.random.normal(jax.random.key(1), (4, 5))
  # Fixup and ReZero start as the identity through the blocks: logits = x W_in W_out.
  for n in ("fixup", "rezero"):
    np.testing.assert_allclose(deep_residual.apply_resmlp(p[n], x),
                               x @ p[n]["w_in"] @ p[n]["w_out"], rtol=1e-5, atol=1e-6)
  out = str(tmp_path / "res")
  res = deep_residual.main(["--dataset", "digits", "--digits-repeat", "1", "--depth", "40",
                            "--width", "8", "--steps", "4", "--eval-every", "2",
                            "--train-size", "100", "--eval-size", "50", "--pool", "2",
                            "--cache-dir", "", "--out", out])
  assert set(res["runs"]) == set(deep_residual.INITS)
  assert not res["runs"]["fixup"]["diverged"] and not res["runs"]["rezero"]["diverged"]
  # Standard He residual blocks double the variance: 40 blocks, logits ~ 2^20 larger.
  assert res["runs"]["standard"]["init_logit_rms"] > 1e3 * res["runs"]["fixup"]["init_logit_rms"]
  assert os.path.exists(os.path.join(out, "residual.json"))


@pytest.mark.slow  # a whole study end to end (8-15 s on 2 cores); its parts run by default
def test_stopped_depth_resumes_from_its_saved_chunk(tmp_path):
  x = jax.random.normal(jax.random.key(6), (40, 4, 4, 1))
  y = jnp.arange(40) % 10
  kw = {"depth": 3, "inits": ("delta_orthogonal", "gaussian"), "channels": 3, "eval_every": 2,
        "batch_size": 8, "lr_scales": [1.0], "sigma_b2": 1e-4, "seed": 0, "num_classes": 10,
        "jacobian": False, "readout": False}
  args = (x, y, x[:20], y[:20], x[:20], y[:20])
  whole = deep_cnn.run_depth(*args, steps=6, **kw)
  partial = str(tmp_path / "p.npz")
  deep_cnn.run_depth(*args, steps=2, partial=partial, **kw)  # stopped after one chunk
  resumed = deep_cnn.run_depth(*args, steps=6, partial=partial, **kw)
  for name in kw["inits"]:
    np.testing.assert_allclose(resumed["runs"][name]["train_loss"],
                               whole["runs"][name]["train_loss"], rtol=1e-5)
    assert resumed["runs"][name]["train_acc"] == whole["runs"][name]["train_acc"]


@pytest.mark.slow  # a whole study end to end (8-15 s on 2 cores); its parts run by default
def test_ctrl_c_writes_the_report_of_the_depths_done(tmp_path, monkeypatch, capsys):
  real = deep_cnn.run_depth

  def stop_at_depth_3(*args, **kw):
    if kw["depth"] == 3:
      raise KeyboardInterrupt
    return real(*args, **kw)

  monkeypatch.setattr(deep_cnn, "run_depth", stop_at_depth_3)
  out = tmp_path / "cnn"
  with pytest.raises(SystemExit) as e:
    deep_cnn.main(TINY + ["--depths", "2,3", "--no-jacobian", "--no-readout", "--out", str(out)])
  assert e.value.code == 130
  assert f"--resume {out}" in capsys.readouterr().err
  with open(out / "depth.json") as f:
    saved = json.load(f)
  assert saved["depths"] == [2] and saved["stopped_at_depth"] == 3
  assert "stopped during depth 3" in (out / "summary.md").read_text()
