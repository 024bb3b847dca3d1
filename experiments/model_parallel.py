"""Model parallelism: one large Dense layer split along its output axis over a mesh.

    python -m experiments.model_parallel                     # 1, 2, 4, ... all devices
    python -m experiments.model_parallel --devices 4 --out-features 8192

The kernel ``(in, out)`` is created already sharded by
:func:`jinit.sharding.sharded_init` with ``PartitionSpec(None, "model")``: device
i holds columns ``[i * out / n, (i + 1) * out / n)`` and computes only those
output features of ``y = relu(x @ W + b)``; the input batch is replicated. A
loss/gradient step shows the backward pass keeps the gradient sharded like the
kernel. Each mesh size is checked against the 1-device result (same key, so the
same weights bit for bit; outputs agree to float32 rounding).

On a CPU the devices are simulated: ``python -m experiments...`` gives the CPU one
device per core; for more, start it with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``. Simulated devices share the
same cores, so the time column shows overhead, not speed-up. Memory per device is
what scales.

Writes ``model_parallel.json`` (one row per mesh size) and ``summary.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from experiments.common import cli
from experiments.common import study


def _init_name(text: str) -> str:
  import jinit

  if text not in jinit.INITIALIZERS:
    raise argparse.ArgumentTypeError(f"must be one of {', '.join(sorted(jinit.INITIALIZERS))}, "
                                     f"got {text!r}")
  return text


def add_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--init", type=_init_name, default="kaiming_normal",
                 help="jinit initializer for the kernel. Default: %(default)s")
  study.flags(p, devices=(None, "largest mesh (also tries 1, 2, 4, ...). Default: all devices"),
              in_features=(4096, "input features of the layer. Default: %(default)s"),
              out_features=(16384, "output features (split over the devices). "
                                   "Default: %(default)s"),
              batch=(64, "examples per step. Default: %(default)s"),
              repeats=(5, "timed steps (median). Default: %(default)s"))


def make_config(args) -> int:
  """Checks the flags; returns the largest mesh size."""
  import jax

  available = jax.device_count()
  devices = available if args.devices is None else args.devices
  if devices > available:
    raise ValueError(f"--devices {devices} exceeds the {available} available devices (on CPU: "
                     "XLA_FLAGS=--xla_force_host_platform_device_count=N)")
  if args.out_features % devices:
    raise ValueError(f"--out-features {args.out_features} must be divisible by --devices "
                     f"{devices}")
  return devices


def run(ctx) -> dict[str, Any]:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  import jinit
  from jinit import sharding as js

  args, devices = ctx.args, ctx.config
  init = jinit.INITIALIZERS[args.init]
  n_in, n_out = args.in_features, args.out_features
  k_w, k_x = jax.random.split(jax.random.key(0))
  x = jax.random.normal(k_x, (args.batch, n_in), jnp.float32)

  def loss_fn(w, b, x):
    y = jax.nn.relu(x @ w + b[None, :])
    return jnp.mean(y * y), y

  step = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))
  sizes = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= devices and n_out % n == 0]
  if devices not in sizes:
    sizes.append(devices)
  ctx.log(f"Dense({n_in} -> {n_out}) = {n_in * n_out / 1e6:.1f}M kernel params, "
          f"kernel by jinit.{args.init}, batch {args.batch}, {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s)\n")
  head = ("| devices | kernel shard | MiB/device | step ms | max abs(y - y1) | max abs(g - g1) "
          "| grad spec |")
  lines = [head, "|---|---|---|---|---|---|---|"]
  ctx.log(head)
  rows, ref = [], None
  for n in sizes:
    mesh = js.make_mesh(n, ("model",))
    w_sharding = NamedSharding(mesh, P(None, "model"))
    w = js.sharded_init(init, k_w, (n_in, n_out), n_in, n_out, w_sharding)
    b = js.sharded_init(jinit.zeros, k_w, (n_out,), sharding=P("model"), mesh=mesh)
    xr = jax.device_put(x, js.replicated(mesh))
    (_, y), (gw, _) = step(w, b, xr)  # compile + warm-up
    times = []
    for _ in range(args.repeats):
      t = time.perf_counter()
      jax.block_until_ready(step(w, b, xr))
      times.append(time.perf_counter() - t)
    grad_spec = str(tuple(gw.sharding.spec))
    y, gw = np.asarray(y), np.asarray(gw)
    if ref is None:
      ref = (y, gw)
    per_device = max(sum(s.data.nbytes for a in (w, b) for s in a.addressable_shards
                         if s.device == d) for d in mesh.devices.flat)
    row = {"devices": n, "kernel_shard": list(w.addressable_shards[0].data.shape),
           "mib_per_device": per_device / 2**20, "step_ms": 1e3 * statistics.median(times),
           "max_abs_y_diff": float(np.abs(y - ref[0]).max()),
           "max_abs_grad_diff": float(np.abs(gw - ref[1]).max()), "grad_spec": grad_spec}
    rows.append(row)
    line = (f"| {n} | {tuple(row['kernel_shard'])} | {row['mib_per_device']:.1f} | "
            f"{row['step_ms']:.1f} | {row['max_abs_y_diff']:.2e} | "
            f"{row['max_abs_grad_diff']:.2e} | {grad_spec} |")
    lines.append(line)
    ctx.log(line)
  res = {"rows": rows, "in_features": n_in, "out_features": n_out, "batch": args.batch,
         "init": args.init, "provenance": ctx.provenance}
  ctx.write_json("model_parallel.json", res)
  prov = "\n".join(f"- {k}: {v}" for k, v in ctx.provenance.items())
  ctx.write_text("summary.md", f"# Model parallelism: Dense({n_in} -> {n_out}) split over its "
                               f"output axis\n\n{prov}\n\n" + "\n".join(lines) + "\n")
  return res


RUNNER = study.Runner("model_parallel", __doc__.split("\n")[0], add_flags, make_config, run,
                      data_flags=False)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
