"""Speed of every jinit initializer vs jax.nn.initializers and torch.nn.init.

Run from the repository root::

    python -m benchmarks.bench_init                 # all, 4096x4096 and 3x3x256x256
    python -m benchmarks.bench_init --only orthogonal normal --repeats 7

Timing: one warm-up call of each contender first (compilation excluded), then
``--repeats`` timed samples, interleaved between jinit and its references (so
load from other processes hits all alike), each call ending in
``block_until_ready()``; a sample of a fast initializer loops over calls to last
>= 20 ms; the median per-call time is reported (the summary also gives the
targets by the minimum, the usual estimator when other processes share the CPU).
Entries slower than ~20 s per round (sparse 4096x4096) get fewer repeats (column n). All
references are measured in the same run, so the ratios (jinit / reference) are
what to read, not the absolute times. References:

* ``jax.nn.initializers``: the equivalent initializer, under ``jax.jit`` with the
  shape static (its fastest form; jinit initializers are compiled the same way
  by design). ``uniform``'s jax counterpart samples U[0, 2) instead of U(-1, 1)
  (same work).
* ``torch.nn.init`` (if torch is installed): ``torch.empty(shape)`` followed by
  the in-place init, so that both sides allocate the result; torch uses the
  (out, in, *window) layout. Truncated-normal inits map to ``trunc_normal_``.
  ``OMP_WAIT_POLICY=PASSIVE`` is set (unless already set) so that torch's idle
  OpenMP threads do not spin and slow down the next contender.

Targets: jinit within 1.1x of jax.nn.initializers, not slower than torch.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import jinit

DENSE = (4096, 4096)
CONV = (3, 3, 256, 256)  # Flax (*window, in, out)
TRUNC = jinit.truncated_std(-2.0, 2.0)


def _jax_refs():
  """jinit name -> (label, factory(shape) -> jitted fn(key)) for jax.nn.initializers."""
  ji = jax.nn.initializers

  def jitted(init):
    return lambda shape: jax.jit(lambda key: init(key, shape, jnp.float32))

  vs = lambda scale, mode, dist: jitted(ji.variance_scaling(scale, mode, dist))
  return {
      "zeros": ("zeros", jitted(ji.zeros)),
      "ones": ("ones", jitted(ji.ones)),
      "constant": ("constant(0.5)", jitted(ji.constant(0.5))),
      "normal": ("normal(1)", jitted(ji.normal(1.0))),
      "uniform": ("uniform(2) [0,2)", jitted(ji.uniform(2.0))),
      "truncated_normal": ("truncated_normal(1)", jitted(ji.truncated_normal(1.0))),
      "variance_scaling": ("variance_scaling", vs(1.0, "fan_in", "truncated_normal")),
      "xavier_uniform": ("glorot_uniform", jitted(ji.glorot_uniform())),
      "xavier_normal": ("vs(1,fan_avg,normal)", vs(1.0, "fan_avg", "normal")),
      "kaiming_uniform": ("he_uniform", jitted(ji.he_uniform())),
      "kaiming_normal": ("vs(2,fan_in,normal)", vs(2.0, "fan_in", "normal")),
      "lecun_uniform": ("lecun_uniform", jitted(ji.lecun_uniform())),
      "lecun_normal": ("lecun_normal", jitted(ji.lecun_normal())),
      "glorot_uniform": ("glorot_uniform", jitted(ji.glorot_uniform())),
      "glorot_normal": ("glorot_normal", jitted(ji.glorot_normal())),
      "he_uniform": ("he_uniform", jitted(ji.he_uniform())),
      "he_normal": ("he_normal", jitted(ji.he_normal())),
      "orthogonal": ("orthogonal", jitted(ji.orthogonal())),
      "delta_orthogonal": ("delta_orthogonal", jitted(ji.delta_orthogonal())),
      "torch_linear_default": ("vs(1/3,fan_in,uniform)", vs(1.0 / 3.0, "fan_in", "uniform")),
  }


def _torch_refs(torch):
  """jinit name -> (label, fn(torch_shape, fan_in, fan_out)) for torch.nn.init."""
  init = torch.nn.init

  def make(label, f):
    def run(shape, fan_in, fan_out):
      w = torch.empty(shape)
      f(w, fan_in, fan_out)
      return w
    return label, run

  def trunc(std_fn):
    # trunc_normal_ takes absolute bounds: +-2 std before truncation (jax's convention).
    def f(w, fi, fo):
      s = std_fn(fi, fo) / TRUNC
      init.trunc_normal_(w, std=s, a=-2 * s, b=2 * s)
    return f

  return {
      "zeros": make("zeros_", lambda w, fi, fo: init.zeros_(w)),
      "ones": make("ones_", lambda w, fi, fo: init.ones_(w)),
      "constant": make("constant_(0.5)", lambda w, fi, fo: init.constant_(w, 0.5)),
      "normal": make("normal_", lambda w, fi, fo: init.normal_(w)),
      "uniform": make("uniform_(-1,1)", lambda w, fi, fo: init.uniform_(w, -1.0, 1.0)),
      "truncated_normal": make("trunc_normal_", lambda w, fi, fo: init.trunc_normal_(w)),
      "variance_scaling": make("trunc_normal_", trunc(lambda fi, fo: math.sqrt(1 / fi))),
      "xavier_uniform": make("xavier_uniform_", lambda w, fi, fo: init.xavier_uniform_(w)),
      "xavier_normal": make("xavier_normal_", lambda w, fi, fo: init.xavier_normal_(w)),
      "kaiming_uniform": make("kaiming_uniform_", lambda w, fi, fo: init.kaiming_uniform_(w)),
      "kaiming_normal": make("kaiming_normal_", lambda w, fi, fo: init.kaiming_normal_(w)),
      "lecun_uniform": make("kaiming_uniform_(linear)", lambda w, fi, fo: init.kaiming_uniform_(
          w, nonlinearity="linear")),
      "lecun_normal": make("trunc_normal_", trunc(lambda fi, fo: math.sqrt(1 / fi))),
      "glorot_uniform": make("xavier_uniform_", lambda w, fi, fo: init.xavier_uniform_(w)),
      "glorot_normal": make("trunc_normal_", trunc(lambda fi, fo: math.sqrt(2 / (fi + fo)))),
      "he_uniform": make("kaiming_uniform_", lambda w, fi, fo: init.kaiming_uniform_(w)),
      "he_normal": make("trunc_normal_", trunc(lambda fi, fo: math.sqrt(2 / fi))),
      "orthogonal": make("orthogonal_", lambda w, fi, fo: init.orthogonal_(w)),
      "eye": make("eye_", lambda w, fi, fo: init.eye_(w)),
      "dirac": make("dirac_", lambda w, fi, fo: init.dirac_(w)),
      "sparse": make("sparse_(0.1)", lambda w, fi, fo: init.sparse_(w, 0.1)),
      "torch_linear_default": make("kaiming_uniform_(a=sqrt5)", lambda w, fi, fo:
                                   init.kaiming_uniform_(w, a=math.sqrt(5))),
  }


def interleaved_times(fns: dict, repeats: int, budget_s: float = 20.0) -> tuple[dict, int]:
  """(median, min) wall time (s) per call of each ``fns[name]()`` (a callable that syncs).

  Each function gets one untimed warm-up call (compilation excluded) and one
  sizing call; fast functions are then timed over a loop of calls per sample
  (>= ~20 ms per sample, so timer and scheduler noise stay small). Samples are
  interleaved, the order rotated every round (a, b, c, b, c, a, ...), so that load
  from other processes and leftovers of the previous call hit every contender
  alike. Entries that are slow per round get fewer samples (at
  least 1) so one entry stays within about ``budget_s``.
  """
  inner, round_s, times = {}, 0.0, {name: [] for name in fns}
  for name, fn in fns.items():
    fn()  # warm-up
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    inner[name] = max(1, int(0.02 / max(dt, 1e-6)))
    if inner[name] == 1:  # a slow call: the sizing call is a sample too
      times[name].append(dt)
    round_s += dt * inner[name]
  n = max(1, min(repeats, int(budget_s / max(round_s, 1e-9))))
  names = list(fns)
  for i in range(n - (1 if all(inner[k] == 1 for k in names) else 0)):
    # Rotate who goes first: whoever follows torch meets its just-finished threads.
    for name in names[i % len(names):] + names[:i % len(names)]:
      fn = fns[name]
      t = time.perf_counter()
      for _ in range(inner[name]):
        fn()
      times[name].append((time.perf_counter() - t) / inner[name])
  return {name: (statistics.median(ts), min(ts)) for name, ts in times.items()}, n


def _applies(name: str, shape) -> bool:
  if name in ("eye", "sparse"):
    return len(shape) == 2
  if name in ("dirac", "delta_orthogonal"):
    return len(shape) > 2
  return True


# The normal/uniform families: timed again with each --impls key implementation.
FAMILIES = ("normal", "uniform", "xavier_uniform", "xavier_normal", "kaiming_uniform",
            "kaiming_normal", "torch_linear_default")


def run(names, shapes, repeats: int, use_torch: bool, impls=("threefry2x32",),
        budget_s: float = 150.0) -> list[dict]:
  torch = None
  if use_torch:
    # torch's OpenMP threads otherwise spin after each op and slow down whatever
    # runs next on these (few) cores; set before torch loads, unless set already.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
      import torch  # noqa: F401 (optional reference, never a jinit dependency)
    except ImportError:
      torch = None
  jax_refs, torch_refs = _jax_refs(), (_torch_refs(torch) if torch else {})
  entries = [(shape, name, impl) for shape in shapes for impl in impls for name in names
             if _applies(name, shape) and (impl == impls[0] or name in FAMILIES)]
  entry_budget = budget_s / max(len(entries), 1)  # the whole run: about budget_s
  rows = []
  for shape, name, impl in entries:
    key = jax.random.key(0, impl=impl)
    fan_in, fan_out = jinit.compute_fans(shape, "flax")
    torch_shape = (shape[-1], shape[-2], *shape[:-2])
    fn = jinit.INITIALIZERS[name]
    hyper = {"value": 0.5} if name == "constant" else {}
    row = {"shape": "x".join(map(str, shape)), "init": name, "impl": impl}
    fns = {"jinit": lambda fn=fn, hyper=hyper: fn(key, shape, fan_in, fan_out,
                                                  **hyper).block_until_ready()}
    if name in jax_refs:
      row["jax_ref"], factory = jax_refs[name]
      fns["jax"] = lambda ref=factory(shape): ref(key).block_until_ready()
    if name in torch_refs:
      row["torch_ref"], tfn = torch_refs[name]
      torch.manual_seed(0)
      fns["torch"] = lambda tfn=tfn: tfn(torch_shape, fan_in, fan_out)
    stats, row["repeats"] = interleaved_times(fns, repeats, entry_budget)
    for who, (median, best) in stats.items():
      row[f"{who}_ms"], row[f"{who}_min_ms"] = 1e3 * median, 1e3 * best
    rows.append(row)
    _print_row(row)
  return rows


def _fmt_ratio(a, b):
  return f"{a / b:5.2f}x" if b else "    -"


def _print_header():
  print(f"{'shape':>12} {'initializer':<21} {'key':<6} {'jinit ms':>9} | {'jax.nn ms':>9} "
        f"{'ratio':>6} {'jax.nn reference':<22} | {'torch ms':>9} {'ratio':>6} "
        f"{'torch reference':<26} {'n':>2}", flush=True)


def _print_row(r):
  jax_part = (f"{r['jax_ms']:9.2f} {_fmt_ratio(r['jinit_ms'], r['jax_ms']):>6} "
              f"{r['jax_ref']:<22}") if "jax_ms" in r else f"{'-':>9} {'-':>6} {'':<22}"
  torch_part = (f"{r['torch_ms']:9.2f} {_fmt_ratio(r['jinit_ms'], r['torch_ms']):>6} "
                f"{r['torch_ref']:<26}") if "torch_ms" in r else f"{'-':>9} {'-':>6} {'':<26}"
  print(f"{r['shape']:>12} {r['init']:<21} {r['impl'][:6]:<6} {r['jinit_ms']:9.2f} | {jax_part} | "
        f"{torch_part} "
        f"{r['repeats']:>2}", flush=True)


def _summary(rows):
  for stat, suffix in (("median", "_ms"), ("min", "_min_ms")):
    jax_rows = [r for r in rows if "jax_ms" in r]
    torch_rows = [r for r in rows if "torch_ms" in r]
    ratio = lambda r, ref: r["jinit" + suffix] / r[ref + suffix]
    jax_over = [r for r in jax_rows if ratio(r, "jax") > 1.1]
    torch_over = [r for r in torch_rows if ratio(r, "torch") > 1.0]
    print(f"\n[{stat}] within 1.1x of jax.nn.initializers: "
          f"{len(jax_rows) - len(jax_over)}/{len(jax_rows)}; not slower than torch.nn.init: "
          f"{len(torch_rows) - len(torch_over)}/{len(torch_rows)}")
    for r in jax_over:
      print(f"  over 1.1x jax.nn: {r['shape']} {r['init']} [{r['impl']}] {ratio(r, 'jax'):.2f}x")
    for r in torch_over:
      print(f"  slower than torch: {r['shape']} {r['init']} [{r['impl']}] "
            f"{ratio(r, 'torch'):.2f}x")


def _write_json(path, payload):
  """Atomically, through the experiments' one writer (temporary file + os.replace)."""
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from experiments.common import results

  results.write_json(path, payload)


class _Tee:
  """Copies what is printed to stdout, for console.txt."""

  def __init__(self):
    import io
    self._buf, self._stdout = io.StringIO(), sys.stdout
    sys.stdout = self

  def write(self, text):
    self._buf.write(text)
    return self._stdout.write(text)

  def flush(self):
    self._stdout.flush()

  def close(self):
    sys.stdout = self._stdout

  def text(self):
    return self._buf.getvalue()


def _write_out(out_dir, argv, started, rows, console):
  """console.txt and provenance.json (command, dates, machine, load average, rows)."""
  import platform

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from experiments.common import results

  torch_version = sys.modules["torch"].__version__ if "torch" in sys.modules else None
  args = sys.argv[1:] if argv is None else list(argv)
  results.write_text(os.path.join(out_dir, "console.txt"), console)
  results.write_json(os.path.join(out_dir, "provenance.json"), {
      "command": " ".join(["python -m benchmarks.bench_init", *args]),
      "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", started),
      "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                  "os": platform.platform(), "python": platform.python_version(),
                  "jax": jax.__version__, "torch": torch_version},
      "load_average_at_end": list(os.getloadavg()),
      "rows": rows})


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--only", nargs="+", choices=sorted(jinit.INITIALIZERS), metavar="NAME",
                 help="initializers to time (default: all)")
  p.add_argument("--shapes", nargs="+", choices=("dense", "conv"), default=("dense", "conv"))
  p.add_argument("--repeats", type=int, default=7, help="timed samples per entry (median)")
  p.add_argument("--no-torch", action="store_true", help="skip torch.nn.init even if installed")
  p.add_argument("--json", help="also write the rows to this JSON file")
  p.add_argument("--impls", nargs="+", default=["threefry2x32", "rbg"],
                 choices=("threefry2x32", "rbg", "unsafe_rbg"),
                 help="PRNG key implementations; all initializers with the first, the "
                      "normal/uniform families with the others too")
  p.add_argument("--budget", type=float, default=150.0,
                 help="seconds of timed samples for the whole run (split over the entries)")
  p.add_argument("--out", help="write console.txt and provenance.json (command, date, "
                               "machine, load) to this directory, e.g. docs/results/bench_init")
  args = p.parse_args(argv)
  if args.repeats < 1:
    p.error(f"--repeats must be >= 1, got {args.repeats}")
  names = args.only or sorted(jinit.INITIALIZERS)
  shapes = [{"dense": DENSE, "conv": CONV}[s] for s in args.shapes]
  started = time.gmtime()
  tee = _Tee() if args.out else None
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU(s); "
        f"median of {args.repeats} after a warm-up; ratio = jinit / reference "
        f"(targets: <= 1.10 vs jax.nn, <= 1.00 vs torch)", flush=True)
  _print_header()
  rows = run(names, shapes, args.repeats, not args.no_torch, tuple(args.impls), args.budget)
  _summary(rows)
  if args.json:
    _write_json(args.json, {"jax": jax.__version__, "rows": rows})
  if args.out:
    tee.close()
    _write_out(args.out, argv, started, rows, tee.text())


if __name__ == "__main__":
  main()
