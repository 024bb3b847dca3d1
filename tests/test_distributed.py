"""sharded_init across processes (issue 20): jax.distributed on local CPU processes.

Two local processes, 2 simulated CPU devices each, join one runtime with
``jax.distributed.initialize(coordinator_address="localhost:<free port>",
num_processes=2, process_id=i)`` and JAX's gloo CPU collectives; each calls the same
``jinit.sharding.sharded_init`` over the global 2 x 2 mesh and reports its
addressable shards. Checked: each process holds only its own 2 of the 4 shards, the
shards of both processes tile the array exactly once, and their values equal the
one-process unsharded call (bit for bit for the elementwise initializers; orthogonal,
whose panel products are all-reduced across the processes, to float32 rounding).
Localhost only, every step bounded by a timeout. Marked slow (two jax starts and
their compiles: tens of seconds on a loaded 2-core machine); ``.ci/run`` runs it.

The same two processes also run a whole study, ``python -m experiments.sigmoid_mnist
--coordinator localhost:<port> --num-processes 2 --process-id i`` on scikit-learn's
offline digits (tiny: 256 training images, 2 epochs, 6 runs padded to 8 on the 4
global devices), next to the one-process run on 4 devices: the two ``history.json``
agree exactly but for wall times, process 0 alone wrote the results folder (its
checkpoints included), and process 1 wrote nothing at all; both studies resumed to a
third epoch (``--resume``, process 0 reading the checkpoint for both) agree exactly too.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jinit

ROOT = pathlib.Path(__file__).resolve().parents[1]
N_PROCESSES = 2
SHAPE = (64, 32)
CASES = {"normal": {}, "kaiming_normal": {"fan_in": 64, "fan_out": 32}, "orthogonal": {}}

_WORKER = textwrap.dedent(r"""
  import json, sys
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
  jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=n,
                             process_id=pid, initialization_timeout=120)
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P
  import jinit
  from jinit import sharding as js
  cases = json.loads(sys.argv[4])
  mesh = js.make_mesh(None, ("data", "model"), (2, -1))  # all devices of all processes
  s = NamedSharding(mesh, P("data", "model"))
  out = {"process_index": jax.process_index(), "process_count": jax.process_count(),
         "global_devices": jax.device_count(), "local_devices": jax.local_device_count(),
         "inits": {}}
  for name, fans in cases.items():
    w = js.sharded_init(jinit.INITIALIZERS[name], jax.random.key(7), (64, 32),
                        fans.get("fan_in"), fans.get("fan_out"), s)
    out["inits"][name] = [
        {"index": [[sl.start, sl.stop] for sl in sh.index], "data": np.asarray(sh.data).tolist(),
         "device_process": sh.device.process_index} for sh in w.addressable_shards]
  jax.distributed.shutdown()
  print("RESULT " + json.dumps(out))
""")


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def processes():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get(
                 "PYTHONPATH", ""))
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-c", _WORKER, str(port), str(i), str(N_PROCESSES), json.dumps(CASES)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
      for i in range(N_PROCESSES)]
  results = []
  try:
    for proc in procs:
      stdout, stderr = proc.communicate(timeout=600)
      lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
      assert proc.returncode == 0 and lines, f"worker failed:\n{stderr[-3000:]}"
      results.append(json.loads(lines[-1][len("RESULT "):]))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  return results


def test_processes_form_one_runtime(processes):
  assert sorted(r["process_index"] for r in processes) == list(range(N_PROCESSES))
  for r in processes:
    assert r["process_count"] == N_PROCESSES
    assert r["local_devices"] == 2 and r["global_devices"] == 2 * N_PROCESSES


@pytest.mark.parametrize("name", sorted(CASES))
def test_sharded_init_across_processes_equals_one_process(processes, name):
  fans = CASES[name]
  ref = np.asarray(jinit.INITIALIZERS[name](jax.random.key(7), SHAPE, fans.get("fan_in"),
                                            fans.get("fan_out")))
  covered = np.zeros(SHAPE, int)
  for r in processes:
    shards = r["inits"][name]
    # Each process holds only its own shards: 2 of the 4, on its own devices.
    assert len(shards) == 2
    assert all(sh["device_process"] == r["process_index"] for sh in shards)
    for sh in shards:
      idx = tuple(slice(a, b) for a, b in sh["index"])
      data = np.asarray(sh["data"], np.float32)
      assert data.shape == (SHAPE[0] // 2, SHAPE[1] // 2)
      covered[idx] += 1
      if name == "orthogonal":  # all-reduced panel products: float32 rounding
        np.testing.assert_allclose(data, ref[idx], atol=1e-5)
      else:
        np.testing.assert_array_equal(data, ref[idx])
  assert np.all(covered == 1)  # the shards of all processes tile the array once


# --------------------------------------------------------------------------- a study


# Tiny, offline and deterministic: digits subsampled to 256 training images (8 SGD steps
# per epoch), 2 inits x 3 seeds = 6 runs, padded to 8 over the 4 devices (2 per device).
STUDY_FLAGS = ["--dataset", "digits", "--digits-repeat", "1", "--train-size", "256",
               "--epochs", "2", "--seeds", "3", "--cache-dir", "", "--no-progress"]
TIMES = ("epoch_seconds", "compile_seconds", "init_seconds")  # wall clock: differ run to run


def _round(tmp: pathlib.Path, tag: str, multi: list[str], one: list[str]) -> dict:
  """sigmoid_mnist as 2 processes x 2 devices (flags ``multi``) and 1 x 4 (``one``), at once.

  A loaded machine runs the three programs interleaved; each runs in its own empty
  working directory, the compilation cache set outside them. Returns each program's
  stdout, working directory and PID.
  """
  base = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp / "jax-cache"),
              PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  join = ["--coordinator", f"localhost:{_free_port()}", "--num-processes", "2", "--process-id"]
  jobs = {}
  for name, devices, flags in (("process0", 2, [*multi, *join, "0"]),
                               ("process1", 2, [*multi, *join, "1"]), ("one", 4, one)):
    cwd = tmp / f"cwd-{tag}-{name}"
    cwd.mkdir()
    env = dict(base, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    jobs[name] = (cwd, subprocess.Popen(
        [sys.executable, "-m", "experiments.sigmoid_mnist", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd))
  out = {}
  try:
    for name, (cwd, proc) in jobs.items():
      stdout, stderr = proc.communicate(timeout=600)
      assert proc.returncode == 0, f"{tag} {name} failed:\n{stderr[-3000:]}"
      out[name] = {"stdout": stdout, "cwd": cwd, "pid": proc.pid}
  finally:
    for _, proc in jobs.values():
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  return out


def _history(folder: pathlib.Path) -> dict:
  history = json.loads((folder / "history.json").read_text())
  return {k: v for k, v in history.items() if k not in TIMES}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """2 epochs across processes and in one, then both resumed to 3 epochs.

  Used by ONE test: under pytest-xdist (``-n auto``) a module fixture runs again in
  every worker that gets one of its tests, and this one costs minutes on 2 cores.
  """
  tmp = tmp_path_factory.mktemp("study")
  multi, one = tmp / "multi", tmp / "one"
  first = _round(tmp, "first", [*STUDY_FLAGS, "--out", str(multi)],
                 [*STUDY_FLAGS, "--out", str(one)])
  first.update(multi=multi, files=sorted(p.name for p in multi.iterdir()),
               history={"multi": _history(multi), "one": _history(one)})
  # Extended by one epoch from their checkpoints: process 0 reads run.json and the
  # checkpoint and sends them to process 1; the one-process resume is tested against an
  # uninterrupted run in tests/test_resume.py.
  more = ["--epochs", "3", "--no-progress"]
  resumed = _round(tmp, "resumed", ["--resume", str(multi), *more], ["--resume", str(one), *more])
  resumed["history"] = {"multi": _history(multi), "one": _history(one)}
  return {"first": first, "resumed": resumed}


def test_study_across_processes(study):
  """Equal to one process, resumed equal to one process resumed, process 0 alone writes."""
  # Across processes == one process, exactly, floats included: each run lives on one
  # device and runs the same per-device program in both layouts (the runs axis needs no
  # communication); the metrics cross processes only by an all-gather, a copy.
  # Measured: 0 ulp apart.
  multi, one = study["first"]["history"]["multi"], study["first"]["history"]["one"]
  assert multi["config"]["devices"] == 4 and multi["config"]["parallel"] == "runs"
  assert multi["finished"] and len(multi["runs"]) == 6
  assert all(len(r["val_loss"]) == 2 and r["test_acc"] is not None for r in multi["runs"])
  assert multi == one

  # Resumed to a 3rd epoch: exactly equal again (the checkpoint holds host arrays, sent whole).
  multi, one = study["resumed"]["history"]["multi"], study["resumed"]["history"]["one"]
  assert multi["resumed_from"] == 2 and multi["finished"]
  assert all(len(r["val_loss"]) == 3 for r in multi["runs"])
  assert multi == one

  # Only process 0 writes: the folder is its own, the working directories stay empty.
  first = study["first"]
  assert first["files"] == [".lock", "checkpoints", "history.json", "metrics.png", "run.json",
                            "summary.md"]
  run = json.loads((first["multi"] / "run.json").read_text())
  assert run["pid"] == first["process0"]["pid"]
  for rnd in ("first", "resumed"):
    r = study[rnd]
    for name in ("process0", "process1"):
      assert not any(r[name]["cwd"].iterdir()), (rnd, name)
    assert "Wrote " in r["process0"]["stdout"] and "Epoch:" in r["process0"]["stdout"]
    assert "Epoch:" not in r["process1"]["stdout"]  # process 0 alone prints the study


def test_a_refusal_on_process_0_ends_every_process(tmp_path):
  """--out already holds files: process 0 refuses it (exit 2) and process 1 exits with it.

  Without the broadcast process 1 would wait for process 0 at its first collective
  until gloo's timeout and end with a traceback.
  """
  taken = tmp_path / "taken"
  taken.mkdir()
  (taken / "notes.txt").write_text("a previous run's file\n")
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
             PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  procs = [subprocess.Popen(
      [sys.executable, "-m", "experiments.sigmoid_mnist", *STUDY_FLAGS, "--out",
       str(taken), "--coordinator", f"localhost:{port}", "--num-processes",
       "2", "--process-id", str(i)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
      for i in range(2)]
  try:
    errs = [proc.communicate(timeout=300)[1] for proc in procs]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  assert [proc.returncode for proc in procs] == [2, 2], errs
  assert "error: --out " in errs[0] and "folder exists and is not empty" in errs[0]
  assert "process 1: process 0 stopped (exit code 2)" in errs[1]
  assert "Traceback" not in errs[1]
