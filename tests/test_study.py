"""The study pipeline's checks: every bad flag is one line naming it, exit 2, before any work.

Each test here fails before loading data or compiling (except the divergence one,
which trains a 1-layer MLP for one epoch on digits), so they are fast.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from experiments import __main__ as story
from experiments import sigmoid_mnist
from experiments.common import cli
from experiments.common import models
from experiments.common import results
from experiments.common import study

DIGITS = ["--dataset", "digits", "--no-progress"]


def _usage_error(capsys, argv, main=sigmoid_mnist.main):
  """Runs ``main(argv)``; asserts exit 2 and ONE stderr line; returns that line."""
  with pytest.raises(SystemExit) as e:
    main(argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "Traceback" not in err, err
  return err


@pytest.mark.parametrize("init, says", [
    ("kaiming_normal:nonlinearity=bogus", "--init kaiming_normal:nonlinearity=bogus"),
    ("xavier_uniform:gain=abc", "--init xavier_uniform:gain=abc"),
    ("xavier", "unknown initializer 'xavier'"),
])
def test_bad_init_hyperparameters_fail_before_any_work(tmp_path, capsys, init, says):
  out = tmp_path / "out"
  err = _usage_error(capsys, DIGITS + ["--init", init, "--out", str(out)])
  assert says in err
  assert not out.exists()


def test_batch_size_larger_than_the_dataset(tmp_path, capsys):
  err = _usage_error(capsys, DIGITS + ["--batch-size", "100000", "--out", str(tmp_path / "o")])
  assert "--batch-size 100000" in err and "1293 training examples of digits" in err
  assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value, says", [
    ("--seeds", "0", "argument --seeds: must be an int >= 1"),
    ("--epochs", "x", "argument --epochs: must be an int"),
    ("--lr", "-1", "argument --lr: must be a positive finite number"),
    ("--devices", "0", "argument --devices: must be an int >= 1"),
])
def test_bad_numbers_name_the_flag(tmp_path, capsys, flag, value, says):
  err = _usage_error(capsys, DIGITS + [flag, value, "--out", str(tmp_path / "o")])
  assert says in err


def test_bad_out_is_refused_before_any_work(tmp_path, capsys):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  assert "exists and is not a folder" in _usage_error(capsys, DIGITS + ["--out", str(a_file)])
  assert "is a file, not a folder" in _usage_error(
      capsys, DIGITS + ["--out", str(a_file / "sub")])
  if os.geteuid() != 0:  # root may write anywhere
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "not writable" in _usage_error(capsys, DIGITS + ["--out", str(locked / "run")])
  finished = tmp_path / "finished"
  finished.mkdir()
  (finished / "history.json").write_text("{}")
  err = _usage_error(capsys, DIGITS + ["--out", str(finished)])
  assert "not empty" in err and f"--resume {finished}" in err and "--overwrite" in err
  # --overwrite only replaces a folder that holds a run (run.json), never a user's folder.
  assert "no run" in _usage_error(capsys, DIGITS + ["--out", str(finished), "--overwrite"])
  assert (finished / "history.json").read_text() == "{}"


def test_resume_needs_a_results_folder(tmp_path, capsys):
  assert "not a results folder" in _usage_error(capsys, ["--resume", str(tmp_path)])
  (tmp_path / cli.RUN_FILE).write_text(json.dumps({"experiment": "deep_relu", "argv": []}))
  assert "holds a run of 'deep_relu'" in _usage_error(capsys, ["--resume", str(tmp_path)])


def test_too_many_devices_is_a_usage_error(tmp_path, capsys):
  err = _usage_error(capsys, DIGITS + ["--devices", "4096", "--out", str(tmp_path / "o")])
  assert "--devices 4096" in err and "available" in err


def test_story_checks_every_flag_before_part_one(tmp_path, capsys):
  out = tmp_path / "story"
  err = _usage_error(capsys, DIGITS + ["--seeds", "0", "--out", str(out)], main=story.main)
  assert "--seeds" in err and not out.exists()
  err = _usage_error(capsys, DIGITS + ["--devices", "4096", "--out", str(out)], main=story.main)
  assert "--devices" in err and not out.exists()
  assert "=== 1. Symmetry" not in capsys.readouterr().out


def test_dry_run_names_the_init():
  with pytest.raises(ValueError, match="--init kaiming_normal:nonlinearity=bogus"):
    study.dry_run([models.RunSpec.parse("kaiming_normal:nonlinearity=bogus")])
  study.dry_run([models.RunSpec.parse("kaiming_normal:nonlinearity=relu")])  # fine: no error


def test_summary_says_diverged_at_epoch_not_never():
  def run(val_acc, diverged):
    return {"init": "a", "bias_init": "zeros", "seed": 0, "stopped": "x" if diverged else None,
            "diverged_epoch": diverged, "train_loss": [1.0] * len(val_acc),
            "val_loss": [1.0] * len(val_acc), "train_acc": val_acc, "val_acc": val_acc,
            "test_loss": None, "test_acc": None}

  history = {"config": {"epochs": 5}, "runs": [run([], 1), run([0.1], 2)]}
  (row,) = results.summary_rows(history)
  assert row["diverged_epochs"] == [1, 2] and row["never_escaped"] == 0
  table = results.format_table([row], 5)
  assert "diverged at epochs 1-2" in table and "never" not in table
  assert results.all_diverged(history)
  history["runs"].append(run([0.1, 0.6], None))  # one run escapes at epoch 2
  (row,) = results.summary_rows(history)
  assert "diverged at epochs 1-2 (2 of 3); 1 escaped [2-2]" in results.format_table([row], 5)
  history["runs"] += [run([0.1, 0.6], None)] * 2  # now 3 of 5 runs escape
  (row,) = results.summary_rows(history)
  assert "2 [2-2], 2 diverged at epochs 1-2" in results.format_table([row], 5)
  assert not results.all_diverged(history)


def test_all_diverged_study_exits_nonzero(tmp_path, capsys):
  out = tmp_path / "div"
  with pytest.raises(SystemExit) as e:
    sigmoid_mnist.main(DIGITS + ["--init", "kaiming_normal", "--activation", "relu", "--seeds",
                                 "2", "--epochs", "2", "--hidden", "8", "--depth", "1",
                                 "--lr", "1e30", "--devices", "1", "--out", str(out)])
  assert e.value.code == 1
  assert "every run diverged" in capsys.readouterr().err
  summary = (out / "summary.md").read_text()
  assert "diverged at epoch 1" in summary and "never" not in summary
  history = json.loads((out / "history.json").read_text())
  assert [r["diverged_epoch"] for r in history["runs"]] == [1, 1]
  assert np.all([r["train_loss"] == [] for r in history["runs"]])


def test_overwrite_replaces_a_previous_run_and_nothing_else(tmp_path, capsys):
  from experiments import fans

  out = tmp_path / "fans"
  fans.main(["--out", str(out)])
  (out / "stale.txt").write_text("from the old run")
  first = json.loads((out / "fans.json").read_text())
  assert "not empty" in _usage_error(capsys, ["--out", str(out)], main=fans.main)
  assert (out / "stale.txt").exists()  # refused: nothing touched
  fans.main(["--out", str(out), "--overwrite", "--seed", "1"])
  assert not (out / "stale.txt").exists()  # the old run is gone, not mixed with the new one
  assert json.loads((out / "fans.json").read_text())["seed"] == 1 != first["seed"]
  assert json.loads((out / cli.RUN_FILE).read_text())["argv"] == ["--out", str(out), "--seed",
                                                                  "1"]


def test_common_args_leave_an_experiments_own_flags_alone(tmp_path):
  """Experiments that define --overwrite themselves (and use out_dir_from_args) still work."""
  import argparse

  parser = argparse.ArgumentParser()
  parser.add_argument("--overwrite", action="store_true", help="replace my results file")
  cli.add_common_args(parser)  # no "conflicting option string" error
  out = tmp_path / "mine"
  out.mkdir()
  (out / "mine.json").write_text("{}")
  args = parser.parse_args(["--out", str(out), "--overwrite"])
  assert cli.out_dir_from_args(args, "mine") == str(out)  # its --overwrite decides
  with pytest.raises(SystemExit) as e:
    cli.out_dir_from_args(parser.parse_args(["--out", str(out)]), "mine")
  assert e.value.code == 2
