"""Versions of ``jinit/_src/rbg_cpu.py`` against each other and torch, in one process.

Run from the repository root, e.g. against the version of another commit::

    git show main:jinit/_src/rbg_cpu.py > /tmp/rbg_main.py
    python -m benchmarks.bench_rbg_versions --version main=/tmp/rbg_main.py
    python -m benchmarks.bench_rbg_versions --version main=/tmp/rbg_main.py \\
        --out docs/results/bench_rbg_versions

Each version (the checkout's ``jinit._src.rbg_cpu`` as ``current``, and each ``--version
NAME=PATH`` file, loaded as a module of its own) draws bench_init's xavier pair at 4096x4096
float32 with an ``rbg`` key: ``uniform(key, shape, -1, 1, post)`` and ``normal(key, shape,
post)`` with xavier's scale as ``post`` (what ``jinit.xavier_uniform``/``xavier_normal`` call),
each under ``jax.jit`` with the key as argument. Every version must give the current one's
numbers bit for bit (checked before timing: a faster version that draws other numbers is
no candidate). torch's ``xavier_uniform_``/``xavier_normal_`` on ``torch.empty`` run on one
thread. The pieces are timed as in ``bench_prng`` (warm-up, interleaved, rotated); each
row gives the median wall and CPU time per call (``time.process_time``: all threads) and
both against torch's. On a machine shared with other jobs the wall column moves with their
load; the CPU column (the work per call) moves less.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_init: idle torch threads sleep

import jax
import numpy as np

from benchmarks.bench_prng import time_pieces
from jinit._src import rbg_cpu

SHAPE = (4096, 4096)


def _load(name: str, path: str):
  """The module in file ``path``, under the name ``name``."""
  spec = importlib.util.spec_from_file_location(f"rbg_cpu_{name}", path)
  if spec is None or spec.loader is None:
    raise ValueError(f"--version {name}={path}: not a Python file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _pieces(versions: dict, use_torch: bool) -> dict:
  """name -> a callable that draws once and waits; checks every version's numbers first."""
  key = jax.random.key(0, impl="rbg")
  fan = SHAPE[0] + SHAPE[1]
  scale_u, scale_n = np.float32(np.sqrt(6.0 / fan)), np.float32(np.sqrt(2.0 / fan))
  fns, reference = {}, None
  for name, module in versions.items():
    unif = jax.jit(lambda k, m=module: m.uniform(k, SHAPE, -1.0, 1.0, lambda x: x * scale_u))
    norm = jax.jit(lambda k, m=module: m.normal(k, SHAPE, lambda x: x * scale_n))
    drawn = (np.asarray(unif(key)), np.asarray(norm(key)))
    if reference is None:
      reference = drawn
    elif not all(np.array_equal(a, b) for a, b in zip(drawn, reference)):
      raise ValueError(f"version {name} draws other numbers than version current")
    fns[f"{name} xavier_u"] = lambda f=unif: f(key).block_until_ready()
    fns[f"{name} xavier_n"] = lambda f=norm: f(key).block_until_ready()
  if use_torch:
    import torch

    def torch_fn(op):
      def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        w = torch.empty(SHAPE)
        getattr(torch.nn.init, op)(w)
        torch.set_num_threads(threads)
        return w
      return run

    fns["torch xavier_u t1"] = torch_fn("xavier_uniform_")
    fns["torch xavier_n t1"] = torch_fn("xavier_normal_")
  return fns


def main(argv=None):
  p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
  p.add_argument("--version", action="append", default=[], metavar="NAME=PATH",
                 help="another rbg_cpu.py to time (repeatable)")
  p.add_argument("--repeats", type=int, default=15)
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--out", help="write console.txt and provenance.json to this directory")
  args = p.parse_args(argv)
  if args.repeats < 1:
    p.error(f"--repeats must be >= 1, got {args.repeats}")
  versions = {"current": rbg_cpu}
  for item in args.version:
    name, sep, path = item.partition("=")
    if not sep or not name or not os.path.isfile(path) or name in versions:
      p.error(f"--version must be NAME=PATH of an existing file, NAME new and not 'current'; "
              f"got {item!r}")
    versions[name] = _load(name, path)
  use_torch = not args.no_torch
  started = time.gmtime()
  stats = time_pieces(_pieces(versions, use_torch), args.repeats)
  lines = [f"jax {jax.__version__}, {os.cpu_count()} CPU(s); {SHAPE[0]}x{SHAPE[1]} float32, "
           f"rbg key; median of {args.repeats} after a warm-up; x torch: against torch's "
           "one-thread row of the same init",
           f"{'piece':<22} {'wall ms':>9} {'CPU ms':>9} {'CPU/wall':>8} {'wall x torch':>12} "
           f"{'CPU x torch':>11}"]
  rows = []
  for name, (wall, cpu, _) in stats.items():
    torch_name = f"torch {name.split()[1]} t1"
    ref = stats.get(torch_name)
    ratio_w = f"{wall / ref[0]:11.3f}x" if ref else f"{'-':>12}"
    ratio_c = f"{cpu / ref[1]:10.3f}x" if ref else f"{'-':>11}"
    lines.append(f"{name:<22} {1e3 * wall:9.2f} {1e3 * cpu:9.2f} {cpu / wall:8.2f} {ratio_w} "
                 f"{ratio_c}")
    rows.append({"piece": name, "wall_ms": 1e3 * wall, "cpu_ms": 1e3 * cpu,
                 "wall_vs_torch": wall / ref[0] if ref else None,
                 "cpu_vs_torch": cpu / ref[1] if ref else None})
  print("\n".join(lines), flush=True)
  if args.out:
    import platform

    from experiments.common import results

    results.write_text(os.path.join(args.out, "console.txt"), "\n".join(lines) + "\n")
    results.write_json(os.path.join(args.out, "provenance.json"), {
        "command": " ".join(["python -m benchmarks.bench_rbg_versions",
                             *(sys.argv[1:] if argv is None else argv)]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", started),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "os": platform.platform(), "jax": jax.__version__,
                    "torch": sys.modules["torch"].__version__ if "torch" in sys.modules
                    else None},
        "versions": {name: getattr(m, "__file__", None) for name, m in versions.items()},
        "load_average_at_end": list(os.getloadavg()),
        "rows": rows})


if __name__ == "__main__":
  main()
