"""Time per SGD step of the deep vanilla CNN: the convolution, the nets layout, the extras.

Two tables, each timed in one process (ratios, not absolute times, are the result when
the machine is shared; the 1-min load average is printed):

* ``--conv``: im2col vs ``lax.conv`` per depth and number of vmapped nets;
* the default: at each ``--depths``, one chunk of ``--steps`` SGD steps of ``--nets``
  networks laid out three ways -- vmapped on one device, one after another
  (``lax.map``) on one device, and split over the CPU devices (``shard_map``, one
  XLA device per core) -- with the compile time of each, then the extras one depth
  of ``experiments.deep_cnn`` adds: an evaluation on 256 examples, the test accuracy on
  1,000, the Jacobian spectrum, the readout-only control.

Run: ``python -m benchmarks.deep_conv [--depths 1000] [--conv --depths 100 --nets 1,4]``.
"""

from __future__ import annotations

import experiments  # noqa: I001  (before jax: one XLA device per core)

experiments.use_host_devices()

import argparse  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.common import deep_conv as dc  # noqa: E402
from jinit import sharding as js  # noqa: E402


def _params(depth: int, nets: int, channels: int = 8, side: int = 7):
  keys = jax.random.split(jax.random.key(0), nets)
  return jax.vmap(lambda k: dc.init_cnn(k, "delta_orthogonal", depth=depth, channels=channels,
                                        num_classes=10, sigma_w2=1.086, sigma_b2=1e-4,
                                        image_side=side))(keys)


def _data(n: int = 1000, side: int = 7):
  x = jax.random.normal(jax.random.key(1), (n, side, side, 1))
  return x, jnp.arange(n) % 10


def time_step(depth: int, nets: int, conv, *, reps: int = 3, steps: int = 5,
              batch: int = 32) -> float:
  """Seconds per SGD step of ``nets`` vmapped networks (compile excluded, best of reps)."""
  params = _params(depth, nets)
  x, y = _data(256)
  fn = jax.jit(functools.partial(dc.train_sgd, steps=steps, eval_every=steps, batch_size=batch,
                                 apply=functools.partial(dc.apply_cnn, conv=conv)))
  lrs = jnp.full((nets,), 1.0 / depth)
  jax.block_until_ready(fn(params, lrs, jax.random.key(2), x, y, x[:32], y[:32]))
  best = np.inf
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn(params, lrs, jax.random.key(2), x, y, x[:32], y[:32]))
    best = min(best, (time.perf_counter() - t) / steps)
  return best


def _timed(fn, *args) -> tuple[float, float]:
  """(compile seconds, run seconds) of a jitted fn (one run after compiling)."""
  t = time.perf_counter()
  compiled = fn.lower(*args).compile()
  t_compile = time.perf_counter() - t
  t = time.perf_counter()
  jax.block_until_ready(compiled(*args))
  return t_compile, time.perf_counter() - t


def layouts(depth: int, nets: int, steps: int, batch: int = 32,
            only: tuple[str, ...] = ("vmap", "map", "shard", "shard_remat"),
            extras: bool = True) -> None:
  """Prints seconds per step (all nets) of each layout, and the extras' seconds."""
  params = _params(depth, nets)
  x, y = _data()
  lrs = jnp.full((nets,), 2.0 / depth)
  args = (params, lrs, jax.random.key(2), x, y, x[:32], y[:32])  # eval cost: an extra
  kw = {"steps": steps, "eval_every": steps, "batch_size": batch}
  n_dev = len(jax.devices())
  fns = {"vmap": ("vmap, 1 device", lambda: jax.jit(functools.partial(
             dc.train_sgd, over_nets="vmap", **kw))),
         "map": ("map, 1 device", lambda: jax.jit(functools.partial(
             dc.train_sgd, over_nets="map", **kw))),
         "shard": (f"shard_map over {n_dev} devices", lambda: dc.sharded_train_sgd(
             js.make_mesh(n_dev, ("runs",)), **kw)),
         "shard_remat": (f"shard_map, remat, {n_dev} dev", lambda: dc.sharded_train_sgd(
             js.make_mesh(n_dev, ("runs",)), apply=functools.partial(dc.apply_cnn, remat=True),
             **kw))}
  for key, (name, make) in fns.items():
    if key not in only or (key.startswith("shard") and (n_dev == 1 or nets % n_dev)):
      continue
    c, r = _timed(make(), *args)
    print(f"depth {depth:5d} nets {nets}, {name:28s}: {r / steps:7.3f} s/step ({steps} steps "
          f"incl. one eval on 32), compile {c:5.1f} s", flush=True)
  if not extras:
    return
  one = jax.tree.map(lambda a: a[0], params)
  dc.accuracy(one, x[:256], y[:256])  # compiled
  t = time.perf_counter()
  dc.accuracy(one, x[:256], y[:256])
  print(f"depth {depth:5d} extras, per init: one eval on 256 examples "
        f"{time.perf_counter() - t:6.1f} s", flush=True)
  t = time.perf_counter()
  dc.accuracy(one, x, y)
  print(f"depth {depth:5d} extras, per init: test accuracy on 1000 "
        f"{time.perf_counter() - t:6.1f} s (incl. compile)", flush=True)
  t = time.perf_counter()
  dc.spectrum_stats(dc.jacobian_singular_values(one, x[:1]))
  print(f"depth {depth:5d} extras, per init: Jacobian spectrum "
        f"{time.perf_counter() - t:6.1f} s (incl. compile)", flush=True)
  t = time.perf_counter()
  dc.readout_only(one, x, y, x[:256], y[:256])
  print(f"depth {depth:5d} extras, once: readout-only control {time.perf_counter() - t:6.1f} s "
        "(incl. compile)", flush=True)


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--conv", action="store_true", help="im2col vs lax.conv (the old table)")
  p.add_argument("--depths", default="1000")
  p.add_argument("--nets", default="2")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--only", default="vmap,map,shard,shard_remat", help="the layouts timed")
  p.add_argument("--no-extras", action="store_true", help="time the training layouts only")
  a = p.parse_args()
  print(f"# 1-min load average {os.getloadavg()[0]:.1f}, {len(jax.devices())} CPU devices",
        flush=True)
  for d in [int(v) for v in a.depths.split(",")]:
    for n in [int(v) for v in a.nets.split(",")]:
      if not a.conv:
        layouts(d, n, a.steps, only=tuple(a.only.split(",")), extras=not a.no_extras)
        continue
      t_col = time_step(d, n, dc.conv_im2col)
      t_lax = time_step(d, n, dc.conv_lax)
      print(f"depth {d:5d} nets {n}: im2col {t_col * 1e3:7.1f} ms/step, lax.conv "
            f"{t_lax * 1e3:7.1f} ms/step, lax/im2col {t_lax / t_col:.2f}", flush=True)


if __name__ == "__main__":
  main()
