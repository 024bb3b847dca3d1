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


def test_overwrite_check_is_shared_by_experiments_without_run_json(tmp_path):
  """Finding 3: out_dir_from_args no longer lets an experiment's --overwrite delete a
  user's folder; the one check refuses any folder without run.json."""
  import argparse

  parser = argparse.ArgumentParser()
  parser.add_argument("--overwrite", action="store_true", help="replace my results file")
  cli.add_common_args(parser)  # no "conflicting option string" error
  out = tmp_path / "mine"
  out.mkdir()
  (out / "mine.json").write_text("{}")
  for argv in (["--out", str(out), "--overwrite"], ["--out", str(out)]):
    with pytest.raises(SystemExit) as e:
      cli.out_dir_from_args(parser.parse_args(argv), "mine")
    assert e.value.code == 2
  assert os.listdir(out) == ["mine.json"]


def _saved_run(path, experiment="sigmoid_mnist", argv=("--dataset", "digits", "--epochs", "2")):
  path.mkdir()
  results.write_json(str(path / cli.RUN_FILE), {"experiment": experiment, "argv": list(argv)})
  return path


def test_resume_refuses_changed_flags_naming_them(tmp_path, capsys):
  """Finding 12: `--resume K --epochs 100 --lr 0.5` silently ran the old config."""
  run = _saved_run(tmp_path / "run")
  err = _usage_error(capsys, ["--resume", str(run), "--epochs", "100", "--lr", "0.5",
                              "--seeds", "3"])
  named = err.split("other values of ")[1].split(";")[0]
  assert sorted(named.split(", ")) == ["--lr", "--seeds"]  # --epochs may change
  assert "other values of --out" in _usage_error(
      capsys, ["--resume", str(run), "--out", str(tmp_path / "elsewhere")])
  # Flags equal to the saved ones, the data location and --epochs may be given.
  parser = sigmoid_mnist.build_parser()
  args = cli.parse_args(parser, ["--resume", str(run), "--dataset", "digits", "--epochs", "5",
                                 "--no-progress", "--cache-dir", ""], "sigmoid_mnist")
  assert args.epochs == 5 and args.no_progress and args.out == str(run) and args.cache_dir == ""
  assert args.argv == ["--dataset", "digits", "--epochs", "5"]  # recorded for the next resume


def test_a_second_run_on_a_folder_in_use_is_refused(tmp_path, capsys):
  """Runs own their folders: a live process holding the lock refuses every other run."""
  import subprocess
  import sys

  run = _saved_run(tmp_path / "run")
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[2]); "
       "from experiments.common import cli; cli.take_folder(sys.argv[1]); print('held', "
       "flush=True); sys.stdin.read()", str(run), os.getcwd()],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(
          [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
          + [os.environ.get("PYTHONPATH", "")])))
  try:
    assert holder.stdout.readline().strip() == "held"
    for argv in (["--resume", str(run)], ["--out", str(run), "--overwrite"]):
      err = _usage_error(capsys, argv)
      assert f"in use by another run (PID {holder.pid})" in err
  finally:
    holder.stdin.close()
    holder.wait(timeout=60)
  assert sorted(os.listdir(run)) == [cli.LOCK_FILE, cli.RUN_FILE]  # untouched
  # The holder has ended: its lock is stale and the folder can be taken.
  assert cli._lock_holder(str(run)) is None
  cli.take_folder(str(run))
  assert "taking over the lock of run PID" in capsys.readouterr().out
  cli.release_folder(str(run))


def test_two_runs_never_share_a_folder(tmp_path, capsys, monkeypatch):
  """Finding 2: two runs started in the same second got the same default folder."""
  import argparse

  monkeypatch.chdir(tmp_path)
  first, second = (argparse.Namespace(out=None, argv=[]) for _ in range(2))
  monkeypatch.setattr(cli, "_default_out", lambda name: os.path.join("results", "x-same"))
  a = cli.start_out(first, "x")
  b = cli.start_out(second, "x")
  assert a != b and b == a + "-2" and all(os.path.isfile(os.path.join(p, cli.RUN_FILE))
                                          for p in (a, b))
  # An explicit --out that another run creates between the check and the start: refused.
  third = argparse.Namespace(out=str(tmp_path / "o"), argv=[])
  cli.check_out(third, "x")
  os.mkdir(tmp_path / "o")
  (tmp_path / "o" / cli.RUN_FILE).write_text("{}")
  with pytest.raises(SystemExit) as e:
    cli.start_out(third, "x")
  assert e.value.code == 2 and "meanwhile" in capsys.readouterr().err
  assert (tmp_path / "o" / cli.RUN_FILE).read_text() == "{}"  # the other run's, untouched
  for p in (a, b):
    cli.release_folder(p)


def test_unwritable_cache_dir_is_refused_before_the_data(tmp_path, capsys):
  """Finding 15: an unwritable --cache-dir failed after loading the data."""
  blocker = tmp_path / "file"
  blocker.write_text("")
  err = _usage_error(capsys, DIGITS + ["--cache-dir", str(blocker / "cache"), "--out",
                                       str(tmp_path / "o")])
  assert "--cache-dir" in err and "is a file" in err
  assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- the runner


@pytest.mark.usefixtures("optax_adam_promotion")  # the reference loop steps optax.adam
def test_scan_sgd_equals_a_python_loop_of_optax_steps():
  """The one training loop: same params, per-step losses and chunk evaluations as a loop."""
  import jax
  import jax.numpy as jnp
  import optax

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(32,)), jnp.float32)
  params = {"w": jnp.zeros((4,), jnp.float32), "b": jnp.zeros((), jnp.float32)}
  idx = jnp.asarray(rng.integers(0, 32, (6, 8)), jnp.int32)

  def loss_fn(p, i):
    return jnp.mean((x[i] @ p["w"] + p["b"] - y[i]) ** 2)

  tx = optax.adam(0.1)
  got, _, losses, evals = jax.jit(lambda p, b: study.scan_sgd(
      loss_fn, p, tx, b, eval_fn=lambda p: p["b"], chunks=3))(params, idx)
  want, state, want_losses, want_evals = params, tx.init(params), [], []
  for k in range(6):
    loss, grads = jax.value_and_grad(loss_fn)(want, idx[k])
    updates, state = tx.update(grads, state, want)
    want = optax.apply_updates(want, updates)
    want_losses.append(loss)
    if k % 2 == 1:
      want_evals.append(want["b"])
  np.testing.assert_allclose(losses, want_losses, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(evals, want_evals, rtol=1e-5, atol=1e-7)
  for k in ("w", "b"):
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="chunks=4 must divide the 6 steps"):
    study.scan_sgd(loss_fn, params, tx, idx, chunks=4)


@pytest.mark.slow  # three compiles of the theory programs (~2-3 min on a loaded 2-core CPU)
def test_theory_studies_train_under_x64_and_strict_promotion():
  """Every theory study's program runs with JAX_ENABLE_X64 and strict dtype promotion."""
  import jax
  import jax.numpy as jnp

  from experiments import deep_transformer as dt
  from experiments.common import mean_field_mlp as mlp

  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 16)).astype(np.float32)
  y = rng.integers(0, 3, 40).astype(np.int32)
  with jax.enable_x64(True), jax.numpy_dtype_promotion("strict"):
    for dist in mlp.DISTRIBUTIONS:
      fn = mlp.make_train_fn(depth=2, width=8, input_dim=16, num_classes=3, sigma_b2=0.05,
                             steps=2, batch_size=4, lr=0.01, distribution=dist)
      acc, loss, _ = fn(jnp.asarray([1.0, 2.0], jnp.float32), jax.random.split(
          jax.random.key(0), 2), x, y, x, y)
      assert acc.dtype == jnp.float32 and np.isfinite(np.asarray(loss)).all()
    cfg = dt.ViTConfig(tokens=4, patch_dim=4, depth=1, width=8, heads=2, mlp=8, num_classes=3)
    res = dt.train_depth(cfg, ["preln_standard", "noln_tfixup"], 1, x.reshape(40, 4, 4), y,
                         x.reshape(40, 4, 4)[:8], y[:8], steps=2, batch_size=4, lr=1e-3,
                         chunk=2, progress=False)
    assert all(np.isfinite(r["loss"]).all() for r in res["runs"])


def test_importing_experiments_sets_nothing_up(tmp_path):
  """Issue 16 item 6: the compilation cache is switched on by cli.entry, not by import."""
  import subprocess
  import sys

  code = ("import os, experiments, experiments.trainability, jax; "
          "print(os.environ.get('JAX_COMPILATION_CACHE_DIR'), "
          "jax.config.jax_compilation_cache_dir, os.environ.get('XLA_FLAGS'))")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_COMPILATION_CACHE_DIR", "XLA_FLAGS")}
  env["PYTHONPATH"] = root
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                       capture_output=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["None", "None", "None"]


def test_help_lists_the_studies_and_missing_extras_get_one_hint(monkeypatch):
  import experiments

  text = story.studies_help()
  for name in story.STUDIES:
    assert f"  {name} " in text
  assert "trainability        Trainability phase diagram" in text
  assert experiments.missing_extras() == []
  monkeypatch.setitem(experiments.EXTRAS, "no_such_module_jinit", "no-such-package")
  assert experiments.missing_extras() == ["no-such-package"]


@pytest.mark.parametrize("signal_exc, code", [(KeyboardInterrupt, 130), (cli.Terminated, 143)])
def test_runner_interrupt_is_one_line_and_releases_the_folder(tmp_path, capsys, signal_exc,
                                                              code):
  """Finding 12: deep_transformer printed a KeyboardInterrupt traceback; the runner says
  what was written and how to run again, exit 130 (Ctrl-C) or 143 (SIGTERM)."""
  def run(ctx):
    ctx.write_json("part.json", {"done": 1})
    raise signal_exc()

  runner = study.Runner("mine", "a study", lambda p: None, lambda args: None, run,
                        data_flags=False)
  out = tmp_path / "o"
  with pytest.raises(SystemExit) as e:
    runner.main(["--out", str(out)])
  assert e.value.code == code
  err = capsys.readouterr().err
  assert err.strip().splitlines() == [
      f"Interrupted; written so far in {out}: part.json, run.json; python -m experiments.mine "
      f"cannot resume: run it again with --out {out} --overwrite"]
  assert cli._lock_holder(str(out)) is None and str(out) not in cli._HELD
  with pytest.raises(SystemExit) as e:  # a runner study cannot resume: one line
    runner.main(["--resume", str(out)])
  assert e.value.code == 2 and "cannot resume" in capsys.readouterr().err


def test_model_parallel_runs_through_the_runner(tmp_path, capsys):
  from experiments import model_parallel

  out = tmp_path / "mp"
  res = model_parallel.main(["--in-features", "8", "--out-features", "8", "--batch", "2",
                             "--repeats", "1", "--out", str(out)])
  saved = json.loads((out / "model_parallel.json").read_text())
  assert saved["rows"] == json.loads(json.dumps(res["rows"])) and saved["rows"][0]["devices"] == 1
  assert saved["rows"][0]["max_abs_y_diff"] == 0.0  # the 1-device reference itself
  assert "python -m experiments.model_parallel" in saved["provenance"]["command"]
  assert (out / "summary.md").read_text().startswith("# Model parallelism")
  capsys.readouterr()
  err = _usage_error(capsys, ["--devices", "4096", "--out", str(tmp_path / "x")],
                     main=model_parallel.main)
  assert "--devices 4096 exceeds the" in err and not (tmp_path / "x").exists()


def test_time_left_fits_a_fixed_plus_proportional_cost():
  # Items cost 5 s (compile) + 0.5 s per layer: two sizes done recover both parts exactly.
  assert study.time_left([10, 50], [10.0, 30.0], [100, 200]) == pytest.approx(55.0 + 105.0)
  assert study.time_left([10, 50], [10.0, 30.0], []) == 0
  # One size done: all of its time is taken as proportional to size.
  assert study.time_left([10], [20.0], [30]) == pytest.approx(60.0)
  # A negative fitted intercept (noise) falls back to proportional, never a negative time.
  assert study.time_left([10, 20], [1.0, 30.0], [40]) == pytest.approx(40 * 31.0 / 30)
  assert study.how_long(42.4) == "42 s" and study.how_long(210) == "3.5 min"
