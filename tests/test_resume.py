"""Checkpoints: a study killed with SIGKILL resumes to the uninterrupted run's numbers;
Ctrl-C (SIGINT) and SIGTERM end cleanly with a summary, one line on how to resume, and
exit code 130 / 143; a running study owns its folder against other real processes.

The signals hit real ``python -m experiments.sigmoid_mnist`` subprocesses on digits
(offline), started together so their jax start-up overlaps. The engine's resume rules
(post-init redone without a checkpoint, --epochs extension, a corrupted checkpoint) are
tested in-process on a tiny dataset at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from experiments import sigmoid_mnist

ROOT = pathlib.Path(__file__).resolve().parents[1]
EPOCHS = 40  # ~60 ms each (mostly the checkpoint): the kill lands mid-study
ARGS = ["--dataset", "digits", "--init", "xavier_uniform,torch_linear_default", "--seeds", "1",
        "--hidden", "16", "--depth", "2", "--batch-size", "32", "--epochs", str(EPOCHS),
        "--devices", "1", "--log-every", "1000", "--no-progress"]


_JAX_CACHE = tempfile.mkdtemp(prefix="jinit-test-jax-cache-")  # shared by this module's runs


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=_JAX_CACHE,
              PYTHONPATH=os.pathsep.join(
                  [str(ROOT)] + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ
                                 else [])))


@contextlib.contextmanager
def _sigint_not_ignored():
  """Children started inside get SIGINT's default, as from a shell: pytest-xdist's workers
  ignore SIGINT, a child inherits an ignored signal (a caught one is reset at exec), and
  Python then installs no KeyboardInterrupt handler."""
  old = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, old)


def _command(*argv):
  return [sys.executable, "-m", "experiments.sigmoid_mnist", *argv]


def _checkpoints(out: pathlib.Path) -> list[int]:
  """Finished Orbax checkpoints (step folders; a save in progress has another name)."""
  folder = out / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() \
      else []


def _interrupt(proc, out: pathlib.Path, sig, min_epoch: int = 2, timeout: float = 240):
  """Sends ``sig`` once ``out`` holds a checkpoint of epoch >= ``min_epoch``."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and proc.poll() is None:
    done = _checkpoints(out)
    if done and done[-1] >= min_epoch:
      proc.send_signal(sig)
      return
    time.sleep(0.005)
  raise AssertionError(f"no checkpoint >= {min_epoch} before the study ended "
                       f"(rc {proc.poll()}): {proc.communicate()[1][-2000:]}")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
  """Three studies started together: killed (SIGKILL), interrupted (SIGINT), terminated
  (SIGTERM). Before the SIGTERM, that run is paused (SIGSTOP) and two more real runs try
  its folder: both must be refused while it lives (it owns the folder)."""
  base = tmp_path_factory.mktemp("resume")
  outs = {"kill": base / "killed", "int": base / "interrupted", "term": base / "terminated"}
  with _sigint_not_ignored():
    procs = {name: subprocess.Popen(_command(*ARGS, "--out", str(out)), cwd=ROOT, env=_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, out in outs.items()}
  _interrupt(procs["kill"], outs["kill"], signal.SIGKILL)
  _interrupt(procs["int"], outs["int"], signal.SIGINT)
  _interrupt(procs["term"], outs["term"], signal.SIGSTOP)
  contenders = {name: subprocess.Popen(_command(*argv), cwd=ROOT, env=_env(),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for name, argv in (("resume", ["--resume", str(outs["term"])]),
                                   ("overwrite", ARGS + ["--out", str(outs["term"]),
                                                         "--overwrite"]))}
  refused = {name: (p.wait(timeout=240), *p.communicate()) for name, p in contenders.items()}
  procs["term"].send_signal(signal.SIGCONT)
  procs["term"].send_signal(signal.SIGTERM)
  done = {name: (p.wait(timeout=240), *p.communicate()) for name, p in procs.items()}
  return {**{name: (outs[name], done[name]) for name in outs}, "refused": refused,
          "term_pid": procs["term"].pid, "base": base}


@pytest.mark.slow  # three real studies started, killed, interrupted and resumed (~75 s on 2 cores)
def test_sigkill_then_resume_equals_the_uninterrupted_run(interrupted, tmp_path):
  out, (rc, _, _) = interrupted["kill"]
  assert rc == -signal.SIGKILL
  killed_at = _checkpoints(out)
  assert 2 <= killed_at[-1] < EPOCHS and len(killed_at) <= 2  # Orbax keeps the last 2
  resumed = subprocess.run(_command("--resume", str(out), "--no-progress"), cwd=ROOT,
                           env=_env(), capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming after epoch" in resumed.stdout
  history = json.loads((out / "history.json").read_text())
  assert history["finished"] and history["resumed_from"] >= killed_at[-1]
  # The reference: the same study, uninterrupted, in this process.
  reference = sigmoid_mnist.main(ARGS + ["--out", str(tmp_path / "ref")])
  assert len(history["epoch_seconds"]) == EPOCHS
  for got, want in zip(history["runs"], reference["runs"], strict=True):
    assert (got["init"], got["seed"]) == (want["init"], want["seed"])
    for k in ("train_loss", "val_loss", "train_acc", "val_acc"):
      assert len(got[k]) == EPOCHS
      # Same batches (fold_in(key, epoch)) and restored float32 state: the bound.
      np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(got["test_loss"], want["test_loss"], rtol=0, atol=1e-6)
  assert (out / "summary.md").exists() and (out / "metrics.png").stat().st_size > 0


@pytest.mark.slow  # three real studies started, killed, interrupted and resumed (~75 s on 2 cores)
@pytest.mark.parametrize("name, code", [("int", 130), ("term", 143)])
def test_sigint_and_sigterm_write_the_summary(interrupted, name, code):
  """Finding 12: SIGTERM left no summary and no hint; now it behaves as SIGINT (exit 143)."""
  out, (rc, stdout, stderr) = interrupted[name]
  assert rc == code, stderr[-3000:]
  assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
  hint = [line for line in stderr.splitlines() if "resume with:" in line]
  assert hint == [f"Interrupted after epoch {hint[0].split('epoch ')[1].split(';')[0]}; summary "
                  f"of the epochs done in {out}; resume with: python -m "
                  f"experiments.sigmoid_mnist --resume {out}"]
  done = int(hint[0].split("epoch ")[1].split(";")[0])
  assert 2 <= done < EPOCHS
  summary = (out / "summary.md").read_text()
  assert f"interrupted after epoch {done} of {EPOCHS}" in summary
  assert (out / "metrics.png").stat().st_size > 0
  history = json.loads((out / "history.json").read_text())
  assert not history["finished"] and all(len(r["val_acc"]) == done for r in history["runs"])


@pytest.mark.slow  # three real studies started, killed, interrupted and resumed (~75 s on 2 cores)
def test_a_run_owns_its_folder_against_real_processes(interrupted):
  """Finding 2 / "runs own their folders": while a study runs (paused here), a second
  real run on its folder (--resume, or --overwrite) is refused in one line, exit 2, and
  the first run's folder is intact (it then ends on SIGTERM with its own summary)."""
  out = interrupted["term"][0]
  for name, (rc, _, stderr) in interrupted["refused"].items():
    assert rc == 2, (name, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by another run (PID {interrupted['term_pid']})" \
        in lines[0], (name, stderr)
  run = json.loads((out / "run.json").read_text())
  assert run["pid"] == interrupted["term_pid"] and "--overwrite" not in run["argv"]
  history = json.loads((out / "history.json").read_text())
  assert all(len(r["val_acc"]) == len(history["epoch_seconds"]) >= 2 for r in history["runs"])


# --------------------------------------------------------------------------- in-process engine


def _tiny():
  from experiments.common import data as data_lib

  rng = np.random.default_rng(0)
  x = rng.normal(0, 1, (96, 8)).astype(np.float32)
  y = rng.integers(0, 3, 96)
  return data_lib.from_arrays("tiny", x, y, x[:24], y[:24], 3)


@pytest.fixture(scope="module")
def engine():
  """Tiny dataset and config, a two-epoch study with checkpoints, and a post-init hook."""
  from experiments.common import models
  from experiments.common import train as train_lib

  config = train_lib.TrainConfig(activation="tanh", hidden=8, depth=1, lr=0.05, batch_size=16,
                                 epochs=2, init_batch_size=16, train_metrics="running")
  calls = []

  def scale_kernels(params, key, x_batch):  # a data-dependent post-init step (as LSUV)
    calls.append(x_batch.shape)
    return {k: {**v, "kernel": np.asarray(v["kernel"]) * 0.5} for k, v in params.items()}

  return {"ds": _tiny(), "config": config, "specs": [models.RunSpec("xavier_uniform", 0)],
          "hook": scale_kernels, "calls": calls, "train": train_lib}


def _train(engine, folder, *, resume=False, epochs=2, post_init=True, log=None):
  import dataclasses

  tl = engine["train"]
  ckpt = tl.Checkpointer(str(folder))
  try:
    return tl.train(engine["ds"], engine["specs"],
                    dataclasses.replace(engine["config"], epochs=epochs),
                    post_init=engine["hook"] if post_init else None, checkpointer=ckpt,
                    resume=resume, log=log)
  finally:
    ckpt.close()


@pytest.mark.slow  # ~8 s on 2 cores
def test_post_init_is_redone_when_no_checkpoint_exists(engine, tmp_path):
  """Finding 1: a run killed before its first checkpoint, resumed, skipped LSUV."""
  engine["calls"].clear()
  fresh = _train(engine, tmp_path / "fresh")
  resumed_early = _train(engine, tmp_path / "killed_early", resume=True)  # no checkpoint yet
  assert len(engine["calls"]) == 2 and resumed_early.post_init
  assert resumed_early.runs[0].train_loss == fresh.runs[0].train_loss  # the hook was applied
  # With a checkpoint, the post-init state is restored, not redone.
  again = _train(engine, tmp_path / "fresh", resume=True)
  assert len(engine["calls"]) == 2 and again.resumed_from == 2
  assert again.to_json()["post_init"] is True
  # A checkpoint made with the hook cannot continue a study without it (or the reverse).
  with pytest.raises(engine["train"].ResumeError, match="post-init"):
    _train(engine, tmp_path / "fresh", resume=True, post_init=False)


def test_resume_extends_epochs_exactly(engine, tmp_path):
  """--epochs may grow on --resume: 1 epoch + 1 more == 2 epochs uninterrupted."""
  straight = _train(engine, tmp_path / "straight")
  _train(engine, tmp_path / "short", epochs=1)
  longer = _train(engine, tmp_path / "short", resume=True, epochs=2)
  assert longer.resumed_from == 1 and longer.epochs_done == 2
  for k in ("train_loss", "val_loss", "val_acc"):
    np.testing.assert_allclose(getattr(longer.runs[0], k), getattr(straight.runs[0], k),
                               rtol=0, atol=1e-6)
  with pytest.raises(engine["train"].ResumeError, match="below the 2 epochs"):
    _train(engine, tmp_path / "short", resume=True, epochs=1)


def test_corrupted_latest_checkpoint_falls_back_to_the_previous_one(engine, tmp_path):
  """Finding 9: a corrupted latest checkpoint gave a 7-exception Orbax traceback."""
  folder = tmp_path / "ck"
  _train(engine, folder)
  steps = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
  assert steps == [1, 2]
  for f in (folder / "2").rglob("*"):
    if f.is_file():
      f.write_bytes(b"\x00garbage")
  warnings = []
  _, meta = engine["train"].Checkpointer(str(folder)).restore(warn=warnings.append)
  assert meta["epoch"] == 1 and len(warnings) == 1
  assert warnings[0].startswith("WARNING: checkpoint 2 in") and "resuming from checkpoint 1" \
      in warnings[0] and "\n" not in warnings[0]
  resumed = _train(engine, folder, resume=True, log=warnings.append)
  assert resumed.resumed_from == 1 and resumed.epochs_done == 2
  for f in (folder / "1").rglob("*"):  # now every checkpoint is damaged: one clear error
    if f.is_file():
      f.write_bytes(b"\x00garbage")
  shutil.rmtree(folder / "2")
  with pytest.raises(engine["train"].ResumeError, match="unreadable .* no older one"):
    engine["train"].Checkpointer(str(folder)).restore()


def test_resume_from_another_configs_checkpoint_is_one_line(engine, tmp_path, capsys):
  """Finding 15: resuming another config's checkpoints ended in a traceback."""
  import dataclasses

  from experiments.common import study

  _train(engine, tmp_path / "run" / "checkpoints", epochs=1, post_init=False)
  other = dataclasses.replace(engine["config"], lr=0.5)
  with pytest.raises(SystemExit) as e:
    study.run_study(engine["ds"], engine["specs"], other, str(tmp_path / "run"), resume=True,
                    log=None, progress=False, command="python -m experiments.mine",
                    checkpoints=True)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("python -m experiments.mine: error: --resume: ")
  assert "other values of lr (saved: lr=0.05)" in err
