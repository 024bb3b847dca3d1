"""Model parallelism: one large Dense layer split along its output axis over a mesh.

    python -m experiments.model_parallel                     # 1, 2, 4, 8 devices
    python -m experiments.model_parallel --devices 4 --out-features 8192

The kernel ``(in, out)`` is created already sharded by
:func:`jinit.sharding.sharded_init` with ``PartitionSpec(None, "model")``: device
i holds columns ``[i * out / n, (i + 1) * out / n)`` and computes only those
output features of ``y = relu(x @ W + b)``; the input batch is replicated. A
loss/gradient step shows the backward pass keeps the gradient sharded like the
kernel. Each mesh size is checked against the 1-device result (same key, so the
same weights bit for bit; outputs agree to float32 rounding).

On a CPU the devices are simulated (``XLA_FLAGS=--xla_force_host_platform_device_count``,
set here before jax is imported unless already set): they share the same cores,
so the time column shows overhead, not speed-up. Memory per device is what scales.
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--devices", type=int, default=8, help="largest mesh (also tries 1, 2, 4, ...)")
  p.add_argument("--in-features", type=int, default=4096)
  p.add_argument("--out-features", type=int, default=16384)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--init", default="kaiming_normal", help="jinit initializer for the kernel")
  p.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
  args = p.parse_args(argv)
  for name in ("devices", "in_features", "out_features", "batch", "repeats"):
    if getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
  if args.out_features % args.devices:
    p.error(f"--out-features {args.out_features} must be divisible by --devices {args.devices}")
  return args


def main(argv=None):
  args = _parse(argv)
  if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in \
      os.environ.get("XLA_FLAGS", ""):
    # Only affects the CPU platform; real accelerators are used as they are.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}").strip()

  import statistics
  import time

  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  import jinit
  from jinit import sharding as js

  if args.init not in jinit.INITIALIZERS:
    raise SystemExit(f"--init must be one of {', '.join(sorted(jinit.INITIALIZERS))}")
  init = jinit.INITIALIZERS[args.init]
  n_in, n_out = args.in_features, args.out_features
  k_w, k_x = jax.random.split(jax.random.key(0))
  x = jax.random.normal(k_x, (args.batch, n_in))

  def loss_fn(w, b, x):
    y = jax.nn.relu(x @ w + b)
    return jnp.mean(y * y), y

  step = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))

  sizes = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= args.devices and n_out % n == 0]
  if args.devices not in sizes:
    sizes.append(args.devices)
  print(f"Dense({n_in} -> {n_out}) = {n_in * n_out / 1e6:.1f}M kernel params, "
        f"kernel by jinit.{args.init}, batch {args.batch}, {jax.device_count()} "
        f"{jax.devices()[0].platform} device(s)\n")
  header = (f"{'devices':>7} {'kernel shard':>14} {'MiB/device':>10} {'step ms':>8} "
            f"{'max|y-y1|':>10} {'max|g-g1|':>10} {'grad spec':>16}")
  print(header)
  ref = None
  for n in sizes:
    mesh = js.make_mesh(n, ("model",))  # clear ValueError if n > available devices
    w_sharding = NamedSharding(mesh, P(None, "model"))
    w = js.sharded_init(init, k_w, (n_in, n_out), n_in, n_out, w_sharding)
    b = js.sharded_init(jinit.zeros, k_w, (n_out,), sharding=P("model"), mesh=mesh)
    xr = jax.device_put(x, js.replicated(mesh))
    (loss, y), (gw, gb) = step(w, b, xr)  # compile + warm-up
    times = []
    for _ in range(args.repeats):
      t = time.perf_counter()
      jax.block_until_ready(step(w, b, xr))
      times.append(time.perf_counter() - t)
    grad_spec = tuple(gw.sharding.spec)
    y, gw = np.asarray(y), np.asarray(gw)
    if ref is None:
      ref = (y, gw)
    per_device = max(sum(s.data.nbytes for a in (w, b) for s in a.addressable_shards
                         if s.device == d) for d in mesh.devices.flat)
    shard = w.addressable_shards[0].data.shape
    print(f"{n:>7} {str(shard):>14} {per_device / 2**20:10.1f} "
          f"{1e3 * statistics.median(times):8.1f} {np.abs(y - ref[0]).max():10.2e} "
          f"{np.abs(gw - ref[1]).max():10.2e} {str(grad_spec):>16}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
