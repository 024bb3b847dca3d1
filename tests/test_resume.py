"""Checkpoints: a study killed with SIGKILL resumes to the uninterrupted run's numbers, and
Ctrl-C (SIGINT) ends cleanly with a summary, one line on how to resume, and exit code 130.

Both signals hit a real ``python -m experiments.sigmoid_mnist`` subprocess on digits
(offline). The two subprocesses start together, so their jax start-up overlaps.
"""

from __future__ import annotations

import json
import os
import pathlib
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
  """Two studies started together: one killed (SIGKILL), one interrupted (SIGINT)."""
  base = tmp_path_factory.mktemp("resume")
  kill_out, int_out = base / "killed", base / "interrupted"
  procs = {name: subprocess.Popen(_command(*ARGS, "--out", str(out)), cwd=ROOT, env=_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for name, out in (("kill", kill_out), ("int", int_out))}
  _interrupt(procs["kill"], kill_out, signal.SIGKILL)
  _interrupt(procs["int"], int_out, signal.SIGINT)
  outs = {name: (p.wait(timeout=240), *p.communicate()) for name, p in procs.items()}
  return {"kill": (kill_out, outs["kill"]), "int": (int_out, outs["int"]), "base": base}


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


def test_sigint_writes_the_summary_and_exits_130(interrupted):
  out, (rc, stdout, stderr) = interrupted["int"]
  assert rc == 130, stderr[-3000:]
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
