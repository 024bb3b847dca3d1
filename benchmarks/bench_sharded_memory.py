"""Peak memory per device: initializing a >= 256M-parameter model on 8 devices vs 1.

Run from the repository root (the script simulates the devices on CPU itself)::

    python -m benchmarks.bench_sharded_memory             # 16 x Dense(4096): 268.5M params
    python -m benchmarks.bench_sharded_memory --layers 4 --width 2048 --devices 4

The model is a Flax linen MLP of ``--layers`` Dense(``--width``) layers whose
kernels are created by a jinit initializer wrapped in ``nn.with_partitioning``
(kernel ``(None, "model")``, bias ``("model",)``: split along the output axis).
``model.init`` is compiled twice in the same process:

* on one device (no shardings), and
* over a ``--devices``-way mesh with ``out_shardings=nn.get_sharding(...)``.

For each, XLA's compiled memory analysis (``jit(...).lower(...).compile()
.memory_analysis()``, per device for an SPMD program) gives the output, temp
and argument bytes; peak = their sum (an upper bound: XLA's buffer assignment
reuses temp space). The script also checks the claim "no full copy anywhere":
the largest array in the per-device program (parsed from the compiled HLO) is
smaller than one full kernel, and after running the sharded init every device
holds exactly 1/N of every parameter (``addressable_shards``) and nothing else.
Target: peak per device ~1/N of the single-device peak.

``--orthogonal`` measures ``jinit.orthogonal`` instead (issue 20), compile only:
for each ``--kernels`` shape, the unsharded program on one device vs
``jinit.sharding.sharded_init``'s program (``out_sharding``: the draw split by
rows) with the kernel split ``(None, "model")`` over ``--devices``; target: peak
per device <= 1/4 of the unsharded peak, no array of a whole kernel::

    python -m benchmarks.bench_sharded_memory --orthogonal --out docs/results/sharded-orthogonal
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--layers", type=int, default=16)
  p.add_argument("--width", type=int, default=4096)
  p.add_argument("--devices", type=int, default=8, help="simulated CPU devices for the mesh")
  p.add_argument("--init", default="kaiming_normal", help="jinit initializer for the kernels")
  p.add_argument("--no-run", action="store_true",
                 help="compile only (skip running the sharded init and checking its shards)")
  p.add_argument("--orthogonal", action="store_true",
                 help="measure jinit.orthogonal on --kernels instead of the MLP (compile only)")
  p.add_argument("--kernels", nargs="+", default=["16384x16384", "65536x4096"],
                 help="kernel shapes ROWSxCOLS for --orthogonal")
  p.add_argument("--out", help="also write console.txt and provenance.json to this directory")
  args = p.parse_args(argv)
  try:
    args.kernels = [tuple(int(d) for d in k.split("x")) for k in args.kernels]
  except ValueError:
    p.error(f"--kernels must be ROWSxCOLS shapes, got {args.kernels}")
  if any(len(k) != 2 or min(k) < 1 for k in args.kernels):
    p.error(f"--kernels must be ROWSxCOLS shapes of positive ints, got {args.kernels}")
  for name in ("layers", "width", "devices"):
    if getattr(args, name) < 1:
      p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
  if args.width % args.devices:
    p.error(f"--width {args.width} must be divisible by --devices {args.devices} "
            "(each kernel is split along its output axis)")
  return args


def main(argv=None):
  args = _parse(argv)
  if "jax" in sys.modules:
    raise RuntimeError("run this benchmark as a script: XLA_FLAGS must be set before jax loads")
  flag = f"--xla_force_host_platform_device_count={args.devices}"
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()

  import math
  import re
  import time

  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  import jinit
  import jinit.linen
  from jinit import sharding as js

  if args.orthogonal:
    return _orthogonal(args, argv)

  if args.init not in jinit.INITIALIZERS:
    raise SystemExit(f"--init must be one of {', '.join(sorted(jinit.INITIALIZERS))}")
  init_fn = jinit.INITIALIZERS[args.init]
  mesh = js.make_mesh(args.devices, ("model",))
  w = args.width

  class MLP(nn.Module):
    partitioned: bool

    @nn.compact
    def __call__(self, x):
      k_init = jinit.linen.kernel_init(init_fn)
      b_init = nn.initializers.zeros
      if self.partitioned:
        k_init = nn.with_partitioning(k_init, (None, "model"))
        b_init = nn.with_partitioning(b_init, ("model",))
      for i in range(args.layers):
        x = nn.Dense(w, kernel_init=k_init, bias_init=b_init, name=f"dense_{i}")(x)
        x = nn.relu(x)
      return x

  key = jax.random.key(0)
  x = jnp.ones((1, w), jnp.float32)
  n_params = args.layers * (w * w + w)
  full_kernel = w * w
  shape_re = re.compile(r"\b(?:f16|bf16|f32|f64|s8|s32|s64|u8|u32|u64|pred)\[([0-9,]*)\]")

  def largest(compiled):
    return max(math.prod(int(d) for d in dims.split(",") if d)
               for dims in shape_re.findall(compiled.as_text()))

  def analyse(label, jitted):
    t = time.perf_counter()
    compiled = jitted.lower(key, x).compile()
    ma = compiled.memory_analysis()
    row = {"label": label, "output": ma.output_size_in_bytes, "temp": ma.temp_size_in_bytes,
           "argument": ma.argument_size_in_bytes, "largest": largest(compiled),
           "compile_s": time.perf_counter() - t}
    row["peak"] = row["output"] + row["temp"] + row["argument"]
    return compiled, row

  print(f"jax {jax.__version__}, {jax.device_count()} simulated CPU devices; model: "
        f"{args.layers} x Dense({w}) = {n_params / 1e6:.1f}M params "
        f"({n_params * 4 / 2**20:.0f} MiB float32), kernels by jinit.{args.init}", flush=True)

  single = jax.jit(MLP(partitioned=False).init,
                   out_shardings=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  _, one = analyse("1 device", single)

  model = MLP(partitioned=True)
  shardings = nn.get_sharding(jax.eval_shape(model.init, key, x), mesh)
  compiled, many = analyse(f"{args.devices} devices", jax.jit(model.init, out_shardings=shardings))

  mib = lambda b: f"{b / 2**20:10.1f}"
  print(f"\n{'per device':<14} {'output MiB':>10} {'temp MiB':>10} {'peak MiB':>10} "
        f"{'largest array (elements)':>26}")
  for r in (one, many):
    print(f"{r['label']:<14} {mib(r['output'])} {mib(r['temp'])} {mib(r['peak'])} "
          f"{r['largest']:>26,}")
  ratio = many["peak"] / one["peak"]
  print(f"{'ratio':<14} {many['output'] / one['output']:10.3f} "
        f"{many['temp'] / max(one['temp'], 1):10.3f} {ratio:10.3f}   "
        f"(target ~{1 / args.devices:.3f})")
  ok = True
  if many["largest"] >= full_kernel:
    ok = False
    print(f"FAIL: the per-device program has an array of {many['largest']:,} elements "
          f">= one full kernel ({full_kernel:,})")
  else:
    print(f"ok: largest array per device {many['largest']:,} elements < one full kernel "
          f"({full_kernel:,}); expected shard {full_kernel // args.devices:,}")

  if not args.no_run:
    t = time.perf_counter()
    params = compiled(key, x)
    jax.block_until_ready(params)
    run_s = time.perf_counter() - t
    per_device = {d: 0 for d in jax.devices()}
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(nn.unbox(params)):
      for shard in leaf.addressable_shards:
        per_device[shard.device] += shard.data.nbytes
        if shard.data.size * args.devices != leaf.size:
          bad.append((jax.tree_util.keystr(path), shard.device, shard.data.shape, leaf.shape))
    total = n_params * 4
    worst = max(per_device.values())
    print(f"ran sharded init in {run_s:.1f} s: parameter bytes per device "
          f"min {mib(min(per_device.values())).strip()} / max {mib(worst).strip()} MiB = "
          f"{worst / total:.4f} of the model")
    if bad:
      ok = False
      print(f"FAIL: {len(bad)} shards are not 1/{args.devices} of their array, e.g. {bad[0]}")
    else:
      print(f"ok: every device holds exactly 1/{args.devices} of every parameter, no full copy")
  if ratio > 1.5 / args.devices:
    ok = False
    print(f"FAIL: peak per device is {ratio:.3f} of the single-device peak "
          f"(> 1.5 x 1/{args.devices})")
  return 0 if ok else 1


def _orthogonal(args, argv):
  """Per-device compiled memory of jinit.orthogonal: 1 device vs sharded_init's program."""
  import datetime
  import json
  import math
  import platform
  import re
  import time

  import jax
  from jax.sharding import NamedSharding, PartitionSpec

  import jinit
  from jinit import sharding as js

  started = datetime.datetime.now(datetime.timezone.utc)
  lines = []

  def say(text=""):
    print(text, flush=True)
    lines.append(text)

  mesh = js.make_mesh(args.devices, ("model",))
  key = jax.random.key(0)
  shape_re = re.compile(r"\b(?:f16|bf16|f32|f64|s8|s32|s64|u8|u32|u64|pred)\[([0-9,]*)\]")
  say(f"jax {jax.__version__}, {jax.device_count()} simulated CPU devices; jinit.orthogonal "
      f"float32, kernels split (None, 'model'); XLA compiled memory analysis per device")
  say(f"{'kernel':>12} {'program':<10} {'output MiB':>10} {'temp MiB':>10} {'arg MiB':>8} "
      f"{'peak MiB':>10} {'largest array':>14} {'compile s':>9}")
  ok, rows = True, []
  for shape in args.kernels:
    sharding = NamedSharding(mesh, PartitionSpec(None, "model"))
    one = jax.jit(lambda k, shape=shape: jinit.orthogonal(k, shape),
                  out_shardings=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    many = jax.jit(lambda k, shape=shape, s=sharding: jinit.orthogonal(k, shape, out_sharding=s),
                   out_shardings=sharding)
    row = {"kernel": "x".join(map(str, shape))}
    for label, fn in (("1 device", one), (f"{args.devices} devices", many)):
      t = time.perf_counter()
      compiled = fn.lower(key).compile()
      ma = compiled.memory_analysis()
      largest = max(math.prod(int(d) for d in dims.split(",") if d)
                    for dims in shape_re.findall(compiled.as_text()))
      peak = ma.output_size_in_bytes + ma.temp_size_in_bytes + ma.argument_size_in_bytes
      row[label] = {"output": ma.output_size_in_bytes, "temp": ma.temp_size_in_bytes,
                    "argument": ma.argument_size_in_bytes, "peak": peak, "largest": largest,
                    "compile_s": time.perf_counter() - t}
      r = row[label]
      say(f"{row['kernel']:>12} {label:<10} {r['output'] / 2**20:10.1f} {r['temp'] / 2**20:10.1f} "
          f"{r['argument'] / 2**20:8.3f} {peak / 2**20:10.1f} {largest:>14,} {r['compile_s']:9.1f}")
    ratio = row[f"{args.devices} devices"]["peak"] / row["1 device"]["peak"]
    largest = row[f"{args.devices} devices"]["largest"]
    verdict = "ok" if ratio <= 0.25 and largest < math.prod(shape) else "FAIL"
    ok = ok and verdict == "ok"
    say(f"{row['kernel']:>12} per-device peak / unsharded peak = {ratio:.3f} (target <= 0.25); "
        f"largest array {largest / math.prod(shape):.3f} of the kernel: {verdict}")
    rows.append(row)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    finished = datetime.datetime.now(datetime.timezone.utc)
    command = " ".join(["python -m benchmarks.bench_sharded_memory", *(argv or sys.argv[1:])])
    prov = {"command": command,
            "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "os": platform.platform(), "python": platform.python_version(),
                        "jax": jax.__version__},
            "load_average": os.getloadavg(), "rows": rows}
    with open(os.path.join(args.out, "console.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "provenance.json"), "w") as f:
      json.dump(prov, f, indent=1)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
