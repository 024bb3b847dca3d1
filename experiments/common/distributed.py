"""Studies across processes: the ``jax.distributed`` flags, global arrays, one writer.

A multi-run study (``python -m experiments.sigmoid_mnist`` and the other
:func:`experiments.common.study.run_study` studies) runs unchanged over several
processes: every process runs the same program, ``jax.devices()`` lists the devices
of all of them, the runs axis is sharded over that global mesh, every process
computes its own runs, and the metrics are gathered so that every process holds the
whole history. Only process 0 writes the results folder (``run.json``, ``history.json``,
figures, summary) and prints; the others write nothing.

How a process joins (JAX's own ``jax.distributed.initialize``, before any jax work):

* ``--distributed``: no arguments: JAX reads the cluster's settings (SLURM ``srun``:
  ``SLURM_STEP_NODELIST``, ``SLURM_NTASKS``, ``SLURM_PROCID``; Open MPI ``mpirun``;
  Cloud TPU pods: the TPU metadata server; or ``JAX_COORDINATOR_ADDRESS`` with the
  cluster's counts).
* ``--coordinator HOST:PORT --num-processes N --process-id I``: explicit (all three),
  e.g. local processes on one machine.

On CPU the processes exchange data with JAX's ``gloo`` collectives (jaxlib's default).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

FLAGS = ("--coordinator", "--num-processes", "--process-id")
INIT_TIMEOUT_S = 300  # jax.distributed.initialize's default: how long processes wait for all


def add_args(parser: argparse.ArgumentParser) -> None:
  """Adds ``--distributed``, ``--coordinator``, ``--num-processes``, ``--process-id``."""
  from experiments.common import cli

  group = parser.add_argument_group("across processes (jax.distributed)")
  group.add_argument("--distributed", action="store_true",
                     help="join a multi-process run with jax.distributed.initialize(): the "
                          "settings come from the cluster (SLURM srun, Open MPI, Cloud TPU) or "
                          "from the three flags below; the runs are sharded over the devices "
                          "of all processes and process 0 writes the results")
  group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help="address of process 0's coordinator (with --num-processes and "
                          "--process-id; implies --distributed)")
  group.add_argument("--num-processes", type=cli.positive_int, default=None,
                     help="how many processes take part (with --coordinator)")
  group.add_argument("--process-id", type=cli.nonneg_int, default=None,
                     help="this process's id, 0 .. N-1 (with --coordinator); 0 writes results")


def check_coordinator(text: str) -> str:
  """``HOST:PORT`` with a port in 1..65535; ValueError naming ``--coordinator`` otherwise."""
  if not isinstance(text, str):
    raise TypeError(f"--coordinator must be a str HOST:PORT, got {type(text).__name__}")
  host, sep, port = text.rpartition(":")
  if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise ValueError(f"--coordinator must be HOST:PORT with a port in 1..65535 (e.g. "
                     f"localhost:12355), got {text!r}")
  return text


def settings(args: argparse.Namespace) -> dict[str, Any] | None:
  """The keyword arguments of ``jax.distributed.initialize`` the flags name; None: one process.

  Raises:
    ValueError: naming the flag: a malformed ``--coordinator``, only some of
      ``--coordinator``/``--num-processes``/``--process-id``, or ``--process-id`` >=
      ``--num-processes``.
  """
  coordinator = getattr(args, "coordinator", None)
  n = getattr(args, "num_processes", None)
  i = getattr(args, "process_id", None)
  named = [flag for flag, v in zip(FLAGS, (coordinator, n, i)) if v is not None]
  if not named:
    return {} if getattr(args, "distributed", False) else None
  if coordinator is None or n is None or i is None:
    missing = [flag for flag in FLAGS if flag not in named]
    verb = "needs" if len(named) == 1 else "need"
    raise ValueError(f"{' and '.join(named)} {verb} {' and '.join(missing)} too: give "
                     "--coordinator HOST:PORT --num-processes N --process-id I together, or "
                     "--distributed alone to take them from the cluster (SLURM, Open MPI, "
                     "Cloud TPU)")
  check_coordinator(coordinator)
  if i >= n:  # argparse checked both are ints, n >= 1 and i >= 0
    raise ValueError(f"--process-id must be in 0..{n - 1} (--num-processes {n}), got {i}")
  return {"coordinator_address": coordinator, "num_processes": n, "process_id": i}


def initialize_from_args(args: argparse.Namespace, parser) -> bool:
  """Joins the processes the flags name (``jax.distributed.initialize``); False: one process.

  Must run before any jax computation. A bad flag, or a cluster that cannot be
  detected, ends the program with one line naming the flag (exit 2).
  """
  from experiments.common import cli

  try:
    kwargs = settings(args)
  except (TypeError, ValueError) as e:
    cli.fail(parser, str(e))
  if kwargs is None:
    return False
  import jax

  if jax.distributed.is_initialized():  # already joined (e.g. by the caller): nothing to do
    return True
  try:
    jax.distributed.initialize(**kwargs, initialization_timeout=INIT_TIMEOUT_S)
  except (RuntimeError, ValueError) as e:
    flag = "--coordinator" if kwargs else "--distributed"
    first = (str(e).strip().splitlines() or [""])[0]
    hint = ("" if kwargs else " (no SLURM, Open MPI or Cloud TPU settings found; pass "
            "--coordinator HOST:PORT --num-processes N --process-id I)")
    cli.fail(parser, f"{flag}: jax.distributed.initialize failed: {first}{hint}")
  return True


def process_index() -> int:
  """This process's index (0 without ``jax.distributed``, or when jax is not imported)."""
  if "jax" not in sys.modules:
    return 0
  import jax

  return int(jax.process_index())


def is_primary() -> bool:
  """True in the process that writes results and prints: process 0 (the only one, usually)."""
  return process_index() == 0


def multi_process() -> bool:
  """True when this program is one of several ``jax.distributed`` processes."""
  if "jax" not in sys.modules:
    return False
  import jax

  return jax.process_count() > 1


def on_primary(fn: Callable[[], Any], fallback: Any = None, *, share: bool = False) -> Any:
  """``fn()`` in process 0 alone; its failure ends every process, ``share``: its value too.

  One process: just ``fn()``. Across processes, process 0's outcome is broadcast (a
  collective: every process must call this, in the same order), so no process waits
  for process 0 at a later collective after it stopped:

  * ``fn`` exits (``SystemExit``, e.g. a refused flag): every process exits with the
    same code, the others after one line;
  * ``fn`` raises: ``share=True``: the same exception is raised in every process;
    ``share=False``: process 0 raises it, the others exit with code 1;
  * ``fn`` returns: ``share=True``: every process returns process 0's value (pickled,
    e.g. a checkpoint it alone can read); ``share=False``: the others return ``fallback``.
  """
  if not multi_process():
    return fn()
  from jax.experimental import multihost_utils

  code, error, value = 0, None, fallback
  if is_primary():
    try:
      value = fn()
    except SystemExit as e:
      code, error = (e.code if isinstance(e.code, int) else 1) or 0, e
    except BaseException as e:  # noqa: BLE001  re-raised below, after the others are told
      code, error = (0 if share else 1), e
  code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
  if code:
    if error is not None:
      raise error
    sys.stderr.write(f"process {process_index()}: process 0 stopped (exit code {code}); its "
                     "error says why\n")
    raise SystemExit(code)
  if not share:
    if error is not None:
      raise error
    return value
  try:
    payload = pickle.dumps(("error", error) if error is not None else ("value", value))
  except Exception as e:  # noqa: BLE001  unpicklable: the others still get an error
    payload = pickle.dumps(("error", RuntimeError(f"process 0: {error or e!r}")))
  size = int(multihost_utils.broadcast_one_to_all(np.int32(len(payload))))
  buf = np.frombuffer(payload, np.uint8) if is_primary() else np.zeros(size, np.uint8)
  kind, value = pickle.loads(np.asarray(multihost_utils.broadcast_one_to_all(buf)).tobytes())
  if kind == "error":
    raise error if error is not None else value
  return value


def to_host(x) -> np.ndarray:
  """The whole of array ``x`` as numpy on every process (gathered when processes hold parts).

  With several processes this is a collective: every process must call it, in the
  same order.
  """
  import jax

  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return np.asarray(x)
  from jax.experimental import multihost_utils

  if jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key):
    raise TypeError("to_host: pass jax.random.key_data(keys), not a key array")
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def put(tree, sharding=None):
  """``jax.device_put(tree, sharding)``, also when ``sharding`` spans several processes.

  Across processes each leaf must be the same host value in every process (the
  experiments compute it from the same seeds everywhere); each process then places
  only its own shards (``jax.make_array_from_callback``). Key arrays travel as their
  key data and are wrapped again.
  """
  import jax

  if sharding is None or sharding.is_fully_addressable:
    return jax.device_put(tree, sharding)

  def one(leaf):
    if isinstance(leaf, jax.Array) and jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      impl = jax.random.key_impl(leaf)
      return jax.random.wrap_key_data(one(jax.random.key_data(leaf)), impl=impl)
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return jax.device_put(leaf, sharding)  # already global: resharded by jax
    host = to_host(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(one, tree)
