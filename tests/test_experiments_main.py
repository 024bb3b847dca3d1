"""Smoke run of the whole story (``python -m experiments``) on scikit-learn's digits."""

import json

import numpy as np
import pytest

from experiments import __main__ as story


@pytest.mark.slow  # a whole study end to end (20-35 s on 2 cores); its parts run by default
def test_the_whole_story_on_digits(tmp_path, capsys):
  story.main(["--dataset", "digits", "--seeds", "2", "--epochs", "2", "--symmetry-epochs", "1",
              "--out", str(tmp_path), "--no-progress"])
  printed = capsys.readouterr().out
  assert "Epoch: 2/2 | Train Loss:" in printed and "=== Done" in printed
  for part, files in {"symmetry": ["symmetry.json", "symmetry.png"],
                      "fans": ["fans.json", "fans.png"],
                      "sigmoid_mnist": ["history.json", "metrics.png", "summary.md"]}.items():
    for f in files:
      assert (tmp_path / part / f).stat().st_size > 0
  sym = json.loads((tmp_path / "symmetry" / "symmetry.json").read_text())
  assert sym["tiny_network"]["1.0"]["d_weights"] == [5.0, 2.0, 5.0, 2.0, 7.0, 7.0]
  const = next(v for k, v in sym["at_scale"].items() if k.startswith("constant"))
  assert const["max_unit_difference"] == [0.0, 0.0]  # init, after epoch 1
  assert const["width_one_logits_difference"] < 1e-4  # the clone net is a width-1 net
  fans = json.loads((tmp_path / "fans" / "fans.json").read_text())
  assert [(r["fan_in"], r["fan_out"]) for r in fans["layers"]] == [(2, 3), (3, 2)]
  assert np.abs(fans["kaiming_uniform_5x5"]).max() <= np.sqrt(6 / 5)
