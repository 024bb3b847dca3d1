"""The flags that join a study to ``jax.distributed`` processes: checked before any work.

Fast (no second process joins): each bad combination ends the program with one line
naming the flag, exit 2, no results folder. The multi-process runs themselves are in
``tests/test_distributed.py`` (marked slow).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

import pytest

from experiments import sigmoid_mnist
from experiments.common import cli
from experiments.common import distributed

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _args(**kw) -> argparse.Namespace:
  base = {"distributed": False, "coordinator": None, "num_processes": None, "process_id": None}
  return argparse.Namespace(**{**base, **kw})


def test_settings_one_process_auto_and_explicit():
  assert distributed.settings(_args()) is None  # no flag: one process, no jax.distributed
  assert distributed.settings(_args(distributed=True)) == {}  # initialize() detects them
  assert distributed.settings(_args(coordinator="localhost:12355", num_processes=2,
                                    process_id=1)) == {
      "coordinator_address": "localhost:12355", "num_processes": 2, "process_id": 1}


@pytest.mark.parametrize("kw, match", [
    (dict(coordinator="localhost:1"), "--coordinator needs --num-processes and --process-id"),
    (dict(coordinator="h:1", num_processes=2), "--coordinator and --num-processes need "
                                               "--process-id"),
    (dict(process_id=0), "--process-id needs --coordinator and --num-processes"),
    (dict(coordinator="localhost", num_processes=2, process_id=0), "--coordinator must be "
                                                                   "HOST:PORT"),
    (dict(coordinator="localhost:0", num_processes=2, process_id=0), "port in 1..65535"),
    (dict(coordinator=":80", num_processes=2, process_id=0), "--coordinator must be HOST:PORT"),
    (dict(coordinator="h:80", num_processes=2, process_id=2), r"--process-id must be in 0..1"),
])
def test_settings_bad_flags(kw, match):
  with pytest.raises(ValueError, match=match):
    distributed.settings(_args(**kw))


@pytest.mark.parametrize("argv, match", [
    (["--coordinator", "localhost:5", "--num-processes", "2", "--process-id", "3"],
     "--process-id must be in 0..1"),
    (["--num-processes", "0"], "--num-processes: must be an int >= 1"),
    (["--process-id", "-1"], "--process-id: must be an int >= 0"),
])
def test_cli_refuses_before_any_work(tmp_path, capsys, argv, match):
  out = tmp_path / "out"
  with pytest.raises(SystemExit) as e:
    parser = sigmoid_mnist.build_parser()
    cli.parse_args(parser, [*argv, "--dataset", "digits", "--out", str(out)], "sigmoid_mnist")
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and match in err[0], err
  assert not out.exists()


def test_distributed_without_a_cluster_says_what_to_pass(tmp_path):
  """--distributed outside SLURM/Open MPI/Cloud TPU: one line naming the flags to give."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "TPU_"))}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.sigmoid_mnist", "--distributed", "--dataset",
       "digits", "--out", str(tmp_path / "out")],
      capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("python -m experiments.sigmoid_mnist: error: --distributed:"), line
  assert "--coordinator HOST:PORT --num-processes N --process-id I" in line
  assert not (tmp_path / "out").exists()


def test_one_process_is_primary_and_writes():
  assert distributed.is_primary() and not distributed.multi_process()


def test_devices_must_be_all_of_them_across_processes(monkeypatch):
  """Across processes every process computes: --devices may only name all global devices."""
  import jax

  from experiments.common import train as train_lib

  monkeypatch.setattr(train_lib.distributed, "multi_process", lambda: True)
  n = jax.device_count()
  with pytest.raises(ValueError, match=rf"devices={n + 1}: .* uses all {n} devices of all "
                                       "processes .* leave --devices out"):
    train_lib.engine_mesh(n + 1)
  assert train_lib.engine_mesh(n) is None or train_lib.engine_mesh(n).devices.size == n
