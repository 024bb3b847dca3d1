"""Experiments: data, run specs, the compiled training engine, results, and smoke runs.

Compiles are slow on small CPUs, so each test that trains compiles one small program
on tiny data, and the smoke runs go through the real command-line entry points.
"""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments import sigmoid_mnist
from experiments.common import data
from experiments.common import models
from experiments.common import results
from experiments.common import train


def _blobs(n=240, dim=16, classes=3, seed=0, spread=0.5):
  """Gaussian blobs: linearly separable for small ``spread``."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(0, 3, (classes, dim))
  y = rng.integers(0, classes, n)
  x = (centers[y] + rng.normal(0, spread, (n, dim))).astype(np.float32)
  return data.from_arrays("blobs", x, y, x[:60], y[:60], classes)


# --------------------------------------------------------------------------- data


def test_stratified_split_keeps_class_proportions():
  y = np.repeat(np.arange(10), [100 + 10 * c for c in range(10)])
  keep, held = data.stratified_split(y, 0.1)
  assert len(held) == round(0.1 * len(y)) and len(keep) + len(held) == len(y)
  assert not set(keep) & set(held)
  counts = np.bincount(y[held], minlength=10)
  expected = 0.1 * np.bincount(y)
  assert np.all(np.abs(counts - expected) <= 1)  # stratified: within one example per class


def test_unknown_dataset_lists_allowed_values():
  with pytest.raises(ValueError, match="'mnist', 'digits'"):
    data.load_dataset("cifar")


def test_missing_mnist_says_how_to_prepare(tmp_path):
  with pytest.raises(data.DatasetNotAvailableError) as e:
    data.load_mnist(data_dir=str(tmp_path), cache_dir=None, download=False)
  message = str(e.value)
  for hint in ("tfds build mnist", "jinit[prepare]", "--data-dir", "--dataset digits"):
    assert hint in message


def test_mnist_through_tfds_mock_data_is_split_scaled_and_cached(tmp_path):
  with tfds.testing.mock_data(num_examples=200):
    ds = data.load_mnist(cache_dir=str(tmp_path))
  assert ds.sizes() == {"train": 180, "val": 20, "test": 200}
  assert ds.x_train.shape == (180, 784) and ds.x_train.dtype == np.float32
  assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
  cached = [f for f in os.listdir(tmp_path) if f.endswith(".npz")]
  assert len(cached) == 1 and not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
  again = data.load_mnist(cache_dir=str(tmp_path))  # from the cache: no TFDS needed
  np.testing.assert_array_equal(again.x_val, ds.x_val)
  np.testing.assert_array_equal(again.y_test, ds.y_test)


def test_digits_offline():
  ds = data.load_dataset("digits")
  assert ds.input_dim == 64 and ds.num_classes == 10
  assert sum(ds.sizes().values()) == 1797
  assert ds.x_train.max() == 1.0


# --------------------------------------------------------------------------- specs


def test_parse_init_with_hyperparameters():
  assert models.parse_init("kaiming_normal:nonlinearity=relu:a=0") == (
      "kaiming_normal", {"nonlinearity": "relu", "a": 0})
  spec = models.RunSpec.parse("xavier_uniform:gain=2.0", seed=3)
  assert spec.label == "xavier_uniform:gain=2.0" and spec.bias_label == "zeros"
  assert models.RunSpec("torch_linear_default").bias_label == "torch_linear_default"


@pytest.mark.parametrize("bad", ["xavier", "kaiming_normal:relu"])
def test_bad_init_names_are_rejected(bad):
  with pytest.raises(ValueError, match="known: .*xavier_uniform|NAME:key=value"):
    models.parse_init(bad)


def test_bad_config_values_name_the_argument():
  with pytest.raises(ValueError, match="'sigmoid', 'relu', 'tanh'"):
    train.TrainConfig(activation="gelu")
  with pytest.raises(ValueError, match="batch_size"):
    train.TrainConfig(batch_size=0)
  with pytest.raises(ValueError, match="shuffle"):
    train.TrainConfig(shuffle="never")


def test_too_many_devices_fail_before_any_work(tmp_path, capsys):
  n = len(jax.devices())
  with pytest.raises(ValueError, match=f"n_devices={n + 1} but only {n}"):
    train.engine_mesh(n + 1)
  with pytest.raises(TypeError, match="n_devices must be a positive int, got float"):
    train.engine_mesh(2.0)  # a wrong type is a TypeError naming the argument
  # Through the CLI: one line naming the flag, exit 2, before the data (which does not
  # exist here) and before any folder.
  with pytest.raises(SystemExit) as e:
    sigmoid_mnist.main(["--dataset", "mnist", "--data-dir", str(tmp_path / "none"),
                        "--devices", "999", "--out", str(tmp_path / "out")])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "--devices 999" in err and "n_devices=999" in err
  assert not (tmp_path / "out").exists()


def test_mlp_has_the_pages_layers():
  model = models.build_model(models.RunSpec("torch_linear_default"), hidden=50, depth=5,
                             num_classes=10, activation="sigmoid")
  params = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 784), np.float32))["params"]
  shapes = [params[f"dense_{i}"]["kernel"].shape for i in range(6)]
  assert shapes == [(784, 50)] + [(50, 50)] * 4 + [(50, 10)]
  bias = np.asarray(params["dense_0"]["bias"])  # PyTorch default: U(+-1/sqrt(784))
  assert np.abs(bias).max() <= 1 / np.sqrt(784) and np.abs(bias).max() > 0


# --------------------------------------------------------------------------- engine


def test_training_decreases_loss_and_vmap_matches_separate_runs():
  ds = _blobs()
  config = train.TrainConfig(activation="tanh", hidden=16, depth=2, lr=0.01, batch_size=16,
                             epochs=3)
  both = [models.RunSpec("xavier_uniform", 0), models.RunSpec("torch_linear_default", 1)]
  batched = train.train(ds, both, config, log=None)
  alone = train.train(ds, both[1:], config, log=None)
  first = batched.runs[0]
  assert first.train_loss[-1] < 0.5 * first.train_loss[0]  # it learns the separable blobs
  assert first.val_acc[-1] > 0.9
  # Run 1 inside the vmapped batch == run 1 trained alone (same init, same batch order);
  # only float summation order in batched vs single matmuls may differ.
  for name in ("train_loss", "val_loss", "val_acc"):
    np.testing.assert_allclose(getattr(batched.runs[1], name), getattr(alone.runs[0], name),
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(batched.params["dense_0"]["kernel"][1]),
                             np.asarray(alone.params["dense_0"]["kernel"][0]), rtol=1e-4,
                             atol=1e-6)
  assert len(batched.epoch_seconds) == 3 and batched.runs[1].test_acc is not None


def test_nonfinite_loss_stops_the_run_and_keeps_history(tmp_path):
  ds = _blobs(spread=5.0)
  config = train.TrainConfig(activation="relu", hidden=16, depth=2, lr=1e6, batch_size=16,
                             epochs=3)
  messages = []
  history = sigmoid_mnist.run_study(ds, [models.RunSpec("kaiming_normal", 7)], config,
                                    str(tmp_path), log=messages.append, progress=False)
  run = history["runs"][0]
  assert run["stopped"] and "kaiming_normal" in run["stopped"] and "seed 7" in run["stopped"]
  epoch = int(run["stopped"].split("epoch ")[1].split()[0])
  assert len(run["train_loss"]) == epoch - 1 and run["test_loss"] is None
  assert any(m.startswith("WARNING: non-finite") for m in messages)
  on_disk = json.loads((tmp_path / "history.json").read_text())
  assert on_disk["runs"][0]["stopped"] == run["stopped"]


def test_post_init_hook_sees_each_run_and_changes_training():
  ds = _blobs()
  config = train.TrainConfig(activation="tanh", hidden=16, depth=1, lr=0.01, batch_size=16,
                             epochs=1, init_batch_size=32)
  calls = []

  def zero_output_layer(params, key, x_batch):
    calls.append((x_batch.shape, jax.random.key_data(key).shape))
    params = dict(params)
    params["dense_1"] = {"kernel": np.zeros_like(params["dense_1"]["kernel"]),
                         "bias": np.zeros_like(params["dense_1"]["bias"])}
    return params

  specs = [models.RunSpec("xavier_uniform", s) for s in range(2)]
  result = train.train(ds, specs, config, post_init=zero_output_layer, log=None)
  assert [c[0] for c in calls] == [(32, 16), (32, 16)]
  # With a zero output layer, the first step's gradient reaches only that layer: the
  # first-epoch train loss starts from exactly ln(3) on the first batch; the mean over
  # the epoch is below it once training moves.
  assert result.runs[0].train_loss[0] < np.log(3)
  assert result.runs[0].train_loss[0] != result.runs[1].train_loss[0]


# --------------------------------------------------------------------------- results


def test_summary_escape_epochs_and_chance_fractions():
  def run(init, val_acc):
    return {"init": init, "bias_init": "zeros", "seed": 0, "stopped": None,
            "train_loss": [1.0] * len(val_acc), "val_loss": [1.0] * len(val_acc),
            "train_acc": val_acc, "val_acc": val_acc, "test_loss": 1.0, "test_acc": 0.9}

  flat = [0.1] * 6
  history = {"config": {"epochs": 6},
             "runs": [run("a", [0.1, 0.1, 0.6, 0.9, 0.9, 0.9]), run("a", flat),
                      run("a", [0.1, 0.3, 0.4, 0.45, 0.55, 0.9])]}
  (row,) = results.summary_rows(history)
  assert row["escape_epochs"] == [3, None, 5]
  assert row["escape_epoch_median"] == 5.0  # median of (3, 5, never)
  assert row["at_chance_after_5"] == pytest.approx(1 / 3)
  assert row["at_chance_after_6"] == pytest.approx(1 / 3)
  table = results.format_table([row], 6)
  assert "5 [3-5], 1 never" in table


def test_write_json_is_atomic_and_strict(tmp_path):
  path = tmp_path / "x.json"
  results.write_json(str(path), {"a": [1.0, float("nan")], "b": np.float32(2.5)})
  assert json.loads(path.read_text()) == {"a": [1.0, None], "b": 2.5}
  assert os.listdir(tmp_path) == ["x.json"]


# --------------------------------------------------------------------------- smoke runs


def test_sigmoid_mnist_cli_on_mock_mnist(tmp_path):
  out = tmp_path / "run"
  with tfds.testing.mock_data(num_examples=200):
    sigmoid_mnist.main(["--epochs", "2", "--seeds", "2", "--hidden", "8", "--depth", "2",
                        "--batch-size", "16", "--init", "torch_linear_default,xavier_uniform",
                        "--out", str(out), "--cache-dir", "", "--no-progress"])
  history = json.loads((out / "history.json").read_text())
  assert set(history) >= {"config", "runs", "epoch_seconds"}
  assert [(r["init"], r["seed"]) for r in history["runs"]] == [
      ("torch_linear_default", 0), ("torch_linear_default", 1), ("xavier_uniform", 0),
      ("xavier_uniform", 1)]
  assert all(len(r[k]) == 2 for r in history["runs"]
             for k in ("train_loss", "val_loss", "train_acc", "val_acc"))
  assert len(history["epoch_seconds"]) == 2
  assert history["config"]["sizes"] == {"train": 180, "val": 20, "test": 200}
  assert (out / "metrics.png").stat().st_size > 10_000
  assert "| xavier_uniform + zero bias | 2 |" in (out / "summary.md").read_text()


def test_cli_rejects_unknown_init_listing_the_known_ones(capsys):
  with pytest.raises(SystemExit):
    sigmoid_mnist.main(["--init", "torch_linear_default,xavier", "--dataset", "digits"])
  err = capsys.readouterr().err
  assert "unknown initializer 'xavier'" in err and "xavier_uniform" in err
  assert err.count("\n") == 1 and "--init" in err  # one line naming the flag
