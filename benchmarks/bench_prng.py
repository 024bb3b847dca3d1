"""Where the time of a 4096x4096 float32 normal/uniform draw goes, per PRNG implementation.

Run from the repository root::

    python -m benchmarks.bench_prng                       # table on stdout
    python -m benchmarks.bench_prng --out docs/results/bench_prng --hlo
    python -m benchmarks.bench_prng --impls rbg unsafe_rbg --only xavier   # the pair vs torch

Each piece is one jitted function of the key (shape static), timed as in
``bench_init``: a warm-up call, then ``--repeats`` samples interleaved between the
pieces, the order rotated each round, each call ending in ``block_until_ready()``.
Besides the wall time per call (median, and ns per element) the process's CPU time
per call is measured (``time.process_time``, all threads): CPU / wall says how many
cores the piece kept busy (1.0: one core; up to ``os.cpu_count()``).

Pieces, for each key implementation (``threefry2x32``, ``rbg``, ``unsafe_rbg``):

* ``bits``: ``jax.random.bits(key, shape, uint32)`` (for rbg keys: XLA's
  ``RngBitGenerator`` with the default algorithm),
* ``uniform``: ``jax.random.uniform(key, shape, float32, -1, 1)`` (bits -> floats),
* ``normal``: ``jax.random.normal`` (uniform -> ``sqrt(2) erf_inv(u)``),
* for rbg/unsafe_rbg keys, the same three the way jinit draws them (rows ``... jinit``):
  the bits with ``rbg_cpu.fast_key`` (the same Philox4x32-10 bits, computed in
  cache-sized chunks), uniform and normal with ``rbg_cpu.uniform``/``rbg_cpu.normal``
  (jax's formulas on those bits, chunk by chunk: the same numbers), and
  ``jinit.xavier_uniform``/``xavier_normal`` (the draw and its scale: ``xavier_u jinit``,
  ``xavier_n jinit``),

and once: ``erf_inv`` alone on a uniform array given as input (and ``log``, ``sin``,
``cos``: Box-Muller's pieces, of its absolute value); ``RngBitGenerator``
on a raw uint32[4] key with each ``algorithm`` (default, philox, threefry); torch's
``uniform_``, ``normal_`` and ``random_`` (bits) on ``torch.empty(shape)``, with
torch's default number of threads and with one; ``torch.nn.init.xavier_uniform_`` and
``xavier_normal_`` on one thread (``torch xavier_u t1``, ``torch xavier_n t1``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_init: idle torch threads sleep

import jax
import jax.numpy as jnp
import numpy as np

import jinit
from jinit._src import rbg_cpu

SHAPE = (4096, 4096)
IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def _pieces(shape, impls, use_torch: bool) -> dict:
  """name -> a callable that draws once and waits for the result."""
  f32 = jnp.float32
  fns = {}
  for impl in impls:
    key = jax.random.key(0, impl=impl)
    tag = impl[:6]
    bits = jax.jit(lambda k: jax.random.bits(k, shape, jnp.uint32))
    unif = jax.jit(lambda k: jax.random.uniform(k, shape, f32, -1.0, 1.0))
    norm = jax.jit(lambda k: jax.random.normal(k, shape, f32))
    fns[f"{tag} bits"] = lambda f=bits, k=key: f(k).block_until_ready()
    fns[f"{tag} uniform"] = lambda f=unif, k=key: f(k).block_until_ready()
    fns[f"{tag} normal"] = lambda f=norm, k=key: f(k).block_until_ready()
    if impl != "threefry2x32":
      fast = rbg_cpu.fast_key(key)
      j_unif = jax.jit(lambda k: rbg_cpu.uniform(k, shape, -1.0, 1.0))
      j_norm = jax.jit(lambda k: rbg_cpu.normal(k, shape))
      fns[f"{tag} bits jinit"] = lambda f=bits, k=fast: f(k).block_until_ready()
      fns[f"{tag} uniform jinit"] = lambda f=j_unif, k=key: f(k).block_until_ready()
      fns[f"{tag} normal jinit"] = lambda f=j_norm, k=key: f(k).block_until_ready()
      # bench_init's xavier pair: the draw with its scale (applied inside jinit's chunk loop).
      for name in ("xavier_uniform", "xavier_normal"):
        init = jax.jit(lambda k, name=name: getattr(jinit, name)(k, shape))
        fns[f"{tag} {name[:8]} jinit"] = lambda f=init, k=key: f(k).block_until_ready()
  u = jax.random.uniform(jax.random.key(1), shape, f32, -1.0, 1.0).block_until_ready()
  erfinv = jax.jit(lambda u: jnp.float32(np.sqrt(2.0)) * jax.lax.erf_inv(u))
  fns["erf_inv only"] = lambda: erfinv(u).block_until_ready()
  # Box-Muller's pieces (what torch's normal_ computes), on the same array.
  for label, op in (("log only", jnp.log), ("sin only", jnp.sin), ("cos only", jnp.cos)):
    f = jax.jit(lambda u, op=op: op(jnp.abs(u)))
    fns[label] = lambda f=f: f(u).block_until_ready()
  raw = jnp.zeros((4,), jnp.uint32)
  algos = jax.lax.RandomAlgorithm
  for label, algo in (("default", algos.RNG_DEFAULT), ("philox", algos.RNG_PHILOX),
                      ("threefry", algos.RNG_THREE_FRY)):
    rbg = jax.jit(lambda k, algo=algo: jax.lax.rng_bit_generator(k, shape, jnp.uint32, algo)[1])
    fns[f"RBG {label}"] = lambda f=rbg: f(raw).block_until_ready()
  if use_torch:
    try:
      import torch
    except ImportError:
      return fns
    n_threads = torch.get_num_threads()

    def torch_fn(op, threads, module=None):
      def run():
        torch.set_num_threads(threads)
        w = torch.empty(shape)
        getattr(module, op)(w) if module is not None else getattr(w, op)()
        torch.set_num_threads(n_threads)
        return w
      return run

    for op in ("uniform_", "normal_", "random_"):
      fns[f"torch {op} t{n_threads}"] = torch_fn(op, n_threads)
      if n_threads != 1:
        fns[f"torch {op} t1"] = torch_fn(op, 1)
    for op in ("xavier_uniform_", "xavier_normal_"):  # torch.nn.init's, on one thread
      fns[f"torch {op[:8]} t1"] = torch_fn(op, 1, torch.nn.init)
  return fns


def time_pieces(fns: dict, repeats: int) -> dict:
  """name -> (median wall s, median CPU s, min wall s) per call, samples interleaved."""
  wall, cpu = {n: [] for n in fns}, {n: [] for n in fns}
  for fn in fns.values():
    fn()  # warm-up (compilation)
  names = list(fns)
  for i in range(repeats):
    for name in names[i % len(names):] + names[:i % len(names)]:
      c, t = time.process_time(), time.perf_counter()
      fns[name]()
      wall[name].append(time.perf_counter() - t)
      cpu[name].append(time.process_time() - c)
  return {n: (statistics.median(wall[n]), statistics.median(cpu[n]), min(wall[n])) for n in fns}


def hlo_texts(shape) -> dict:
  """Compiled (optimized) HLO of the rbg normal and bits draws (jax's and jinit's bits) and
  of the threefry normal."""
  out = {}
  for impl, what in (("rbg", "normal"), ("rbg", "bits"), ("threefry2x32", "normal")):
    key = jax.random.key(0, impl=impl)
    fn = getattr(jax.random, what)
    dtype = jnp.uint32 if what == "bits" else jnp.float32
    jitted = jax.jit(lambda k, fn=fn, dtype=dtype: fn(k, shape, dtype))
    out[f"{impl}_{what}"] = jitted.lower(key).compile().as_text()
    if impl == "rbg" and what == "bits":
      out[f"{impl}_{what}_jinit"] = jitted.lower(rbg_cpu.fast_key(key)).compile().as_text()
    elif impl == "rbg":
      out[f"{impl}_{what}_jinit"] = jax.jit(lambda k: rbg_cpu.normal(k, shape)).lower(
          key).compile().as_text()
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
  p.add_argument("--repeats", type=int, default=9)
  p.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--only", nargs="+", metavar="SUBSTRING",
                 help="time only the pieces whose name contains one of these (e.g. xavier)")
  p.add_argument("--hlo", action="store_true", help="also write the compiled HLO (with --out)")
  p.add_argument("--out", help="write console.txt, provenance.json (and HLO) to this directory")
  args = p.parse_args(argv)
  if args.repeats < 1:
    p.error(f"--repeats must be >= 1, got {args.repeats}")
  n = int(np.prod(SHAPE))
  started = time.gmtime()
  lines = [f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU(s); "
           f"{SHAPE[0]}x{SHAPE[1]} float32 ({n} elements); median of {args.repeats} after a "
           "warm-up; CPU/wall = cores kept busy",
           f"{'piece':<24} {'wall ms':>9} {'ns/elem':>8} {'CPU ms':>9} {'CPU/wall':>8} "
           f"{'min ms':>9}"]
  print("\n".join(lines), flush=True)
  fns = _pieces(SHAPE, args.impls, not args.no_torch)
  if args.only:
    kept = {name: fn for name, fn in fns.items() if any(part in name for part in args.only)}
    if not kept:
      p.error(f"--only {args.only} matches no piece; pieces: {list(fns)}")
    fns = kept
  stats = time_pieces(fns, args.repeats)
  rows = []
  for name, (w, c, best) in stats.items():
    rows.append({"piece": name, "wall_ms": 1e3 * w, "cpu_ms": 1e3 * c, "min_ms": 1e3 * best,
                 "ns_per_element": 1e9 * w / n})
    line = (f"{name:<24} {1e3 * w:9.2f} {1e9 * w / n:8.2f} {1e3 * c:9.2f} {c / w:8.2f} "
            f"{1e3 * best:9.2f}")
    lines.append(line)
    print(line, flush=True)
  if args.out:
    import platform

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from experiments.common import results

    results.write_text(os.path.join(args.out, "console.txt"), "\n".join(lines) + "\n")
    if args.hlo:
      for name, text in hlo_texts(SHAPE).items():
        results.write_text(os.path.join(args.out, f"hlo_{name}.txt"), text)
    torch_version = sys.modules["torch"].__version__ if "torch" in sys.modules else None
    results.write_json(os.path.join(args.out, "provenance.json"), {
        "command": " ".join(["python -m benchmarks.bench_prng",
                             *(sys.argv[1:] if argv is None else argv)]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", started),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "os": platform.platform(), "jax": jax.__version__, "torch": torch_version},
        "load_average_at_end": list(os.getloadavg()),
        "rows": rows})


if __name__ == "__main__":
  main()
