"""Smoke runs of signal_propagation, deep_relu and lsuv on tiny offline data (8x8 digits)."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import deep_relu
from experiments import lsuv as lsuv_exp
from experiments import signal_propagation as sp
from experiments.common import models
from experiments.common import train as train_lib


@pytest.mark.slow  # a whole study end to end (8-15 s on 2 cores); its parts run by default
def test_signal_propagation_smoke(tmp_path, capsys):
  out = tmp_path / "sp"
  result = sp.main(["--dataset", "digits", "--depths", "2,3", "--hidden", "16", "--batch", "32",
                    "--activations", "tanh,relu", "--inits", "standard,xavier,kaiming",
                    "--out", str(out)])
  for name in ("signal.json", "summary.md", "std_tanh.png", "std_relu.png", "depth_relu.png",
               "glorot_fig6_7.png"):
    assert (out / name).stat().st_size > 0, name
  saved = json.loads((out / "signal.json").read_text())
  assert saved["stats"].keys() == {"tanh", "relu"}
  for act in ("tanh", "relu"):
    for depth in (2, 3):
      for init in ("standard", "xavier", "kaiming"):
        s = saved["stats"][act][str(depth)][init]
        assert len(s["act_std"]) == depth and len(s["grad_preact_std"]) == depth
        assert all(math.isfinite(v) and v > 0 for v in s["act_std"] + s["grad_preact_std"])
      # One key per layer: layer 1 of the depth-2 and depth-3 nets is the same layer.
      assert (saved["stats"][act]["2"]["xavier"]["act_std"][0]
              == saved["stats"][act]["3"]["xavier"]["act_std"][0])
  assert len(saved["claims"]) == 8 and all(isinstance(c["agrees"], bool)
                                           for c in saved["claims"])
  printed = capsys.readouterr().out
  assert "Results folder" in printed and "| kaiming |" in printed
  assert result["config"]["depths"] == [2, 3]


def test_signal_propagation_init_params():
  # Kaiming (relu) kernels: variance 2 / fan_in, zero biases; 6 standard errors of the
  # sample variance of 256*512 Gaussian draws: 6 * sqrt(2 / n) relative.
  params = sp.init_params("kaiming", jax.random.key(0), 256, 512, 2, 10)
  w = np.asarray(params["dense_1"]["kernel"])
  assert w.shape == (512, 512)
  assert np.var(w) == pytest.approx(2 / 512, rel=6 * math.sqrt(2 / w.size))
  assert not np.any(np.asarray(params["dense_0"]["bias"]))
  with pytest.raises(SystemExit):
    sp.main(["--dataset", "digits", "--activations", "gelu"])


@pytest.mark.slow  # a whole study end to end (8-15 s on 2 cores); its parts run by default
def test_deep_relu_smoke(tmp_path):
  out = tmp_path / "dr"
  history = deep_relu.main(["--dataset", "digits", "--depth", "3", "--hidden", "16", "--seeds",
                            "2", "--epochs", "2", "--batch-size", "32", "--lr", "0.002",
                            "--no-progress", "--out", str(out)])
  saved = json.loads((out / "history.json").read_text())
  assert (out / "metrics.png").stat().st_size > 0 and (out / "summary.md").exists()
  assert [r["init"] for r in saved["runs"]] == (["xavier_uniform"] * 2
                                               + ["kaiming_normal:nonlinearity=relu"] * 2)
  assert all(len(r["val_acc"]) == 2 and r["test_acc"] is not None for r in saved["runs"])
  signal = saved["signal_at_init"]
  assert set(signal) == {"xavier_uniform", "kaiming_normal:nonlinearity=relu"}
  assert all(len(s["preact_std"]) == 4 for s in signal.values())  # 3 hidden + output
  assert {r["init"] for r in history["summary"]} == {
      "xavier_uniform + zero bias", "kaiming_normal:nonlinearity=relu + zero bias"}


def test_lsuv_hook_gives_unit_variance():
  config = train_lib.TrainConfig(activation="relu", hidden=16, depth=3)
  info = []
  hook = lsuv_exp.lsuv_hook(config, 10, info)
  spec = models.RunSpec("xavier_uniform", bias_init="zeros")
  model = models.build_model(spec, hidden=16, depth=3, num_classes=10, activation="relu")
  x = jax.random.uniform(jax.random.key(0), (64, 20))
  params = jax.jit(model.init)(jax.random.key(1), x)["params"]
  new = hook(params, jax.random.key(2), x)
  assert set(new) == set(params)
  _, state = model.apply({"params": new}, x, capture_intermediates=True,
                         mutable=["intermediates"])
  for i in range(4):
    z = state["intermediates"][f"dense_{i}"]["__call__"][0]
    assert abs(float(jnp.var(z)) - 1.0) < 0.1
  assert len(info) == 1 and [l["name"] for l in info[0]] == [f"dense_{i}" for i in range(4)]


@pytest.mark.slow  # a whole study end to end (8-15 s on 2 cores); its parts run by default
def test_lsuv_experiment_smoke(tmp_path):
  out = tmp_path / "lsuv"
  res = lsuv_exp.main(["--dataset", "digits", "--study", "sigmoid", "--seeds", "1",
                       "--epochs", "1", "--no-progress", "--out", str(out)])
  saved = json.loads((out / "sigmoid" / "history.json").read_text())
  assert os.path.getsize(out / "sigmoid" / "metrics.png") > 0
  assert [r["init"] for r in saved["runs"]] == ["lsuv", "xavier_uniform",
                                               "torch_linear_default"]
  assert all(len(r["val_acc"]) == 1 for r in saved["runs"])
  layers = saved["lsuv"]["per_run_layers"][0]
  assert len(layers) == 6 and all(l["converged"] for l in layers)
  assert [r["init"] for r in res["sigmoid"]["summary"]][0] == "lsuv + zero bias"
