"""Symmetry experiment: the page's exact numbers, and clones that survive real SGD steps."""

import jax
import numpy as np
import pytest

from experiments import symmetry
from experiments.common import data
from experiments.common import models
from experiments.common import train


def test_tiny_network_all_ones_matches_the_page():
  g = symmetry.tiny_graph(1.0)
  assert g["output"] == 14.0
  assert g["hidden"] == [7.0, 7.0]
  assert g["d_hidden"] == [1.0, 1.0]
  assert g["d_weights"] == [5.0, 2.0, 5.0, 2.0, 7.0, 7.0]


def test_tiny_network_all_zeros_is_dead():
  g = symmetry.tiny_graph(0.0)
  assert g["output"] == 0.0
  assert g["hidden"] == [0.0, 0.0]
  assert g["d_weights"] == [0.0] * 6


def test_format_graph_shows_values_and_gradients():
  text = symmetry.format_graph(symmetry.tiny_graph(1.0))
  lines = {line.split()[0]: line.split()[-2:] for line in text.splitlines()[1:]}
  assert lines["out"] == ["14.00", "1.00"]
  assert lines["w5"] == ["1.00", "7.00"]  # value 1, gradient a1 = 7
  assert lines["w2"] == ["1.00", "2.00"]


def _separable(n=192, dim=16, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(0, 3, (classes, dim))
  y = rng.integers(0, classes, n)
  x = centers[y] + rng.normal(0, 0.5, (n, dim))
  return data.from_arrays("toy", x, y, x[:48], y[:48], classes)


def test_constant_init_stays_clones_under_sgd_and_random_init_breaks_it():
  ds = _separable()
  # 2 epochs x 10 real SGD steps. Widths >= 16: for tiny matrices (e.g. 6 x 8) XLA's CPU
  # dot may round identical columns differently (differences ~1e-8), which is float
  # noise, not the math; at the sizes of real layers the clones are bit-exact.
  config = train.TrainConfig(activation="tanh", hidden=16, depth=2, lr=0.02, batch_size=16,
                             epochs=2)
  specs = [models.RunSpec("constant", 0, "zeros", {"value": 0.1}),
           models.RunSpec("xavier_uniform", 0, "zeros")]
  result, diffs = symmetry.train_tracking_symmetry(ds, specs, config, log=None)
  final = symmetry.max_unit_difference(result.params, config.depth)
  assert final[0] == 0.0  # exact clones, not merely close
  assert all(d[0] == 0.0 for d in diffs)  # at init and after every epoch
  assert final[1] > 0.1  # random init: units differ
  # The constant run really trained: its first kernel moved away from 0.1.
  kernel = np.asarray(result.params["dense_0"]["kernel"][0])
  assert np.abs(kernel - 0.1).max() > 1e-3
  # ... and it is a width-1 network: collapsing it gives the same logits (up to the
  # float order of summing 16 equal terms vs multiplying one by a summed kernel).
  clone = jax.tree.map(lambda a: np.asarray(a)[0], result.params)
  kwargs = dict(depth=2, num_classes=3, activation="tanh")
  wide = models.build_model(specs[0], hidden=16, **kwargs).apply({"params": clone}, ds.x_test)
  narrow = models.build_model(specs[0], hidden=1, **kwargs).apply(
      {"params": symmetry.collapse_to_width_one(clone, 2)}, ds.x_test)
  np.testing.assert_allclose(np.asarray(narrow), np.asarray(wide), rtol=1e-5, atol=1e-5)


def test_max_unit_difference_sees_one_perturbed_unit():
  params = {f"dense_{i}": {"kernel": np.ones((1, 4, 4)), "bias": np.zeros((1, 4))}
            for i in range(3)}
  assert symmetry.max_unit_difference(params, 2)[0] == 0.0
  params["dense_1"]["bias"][0, 2] = 0.25
  assert symmetry.max_unit_difference(params, 2)[0] == pytest.approx(0.25)
