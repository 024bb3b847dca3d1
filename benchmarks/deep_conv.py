"""Time per SGD step of the deep vanilla CNN: im2col vs lax.conv, and vs depth and nets.

Both convolutions are timed in the same process (ratios, not absolute times, are the
result: the machine is shared). Run: ``python -m benchmarks.deep_conv [--depths 50,100]``.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import deep_conv as dc


def time_step(depth: int, nets: int, conv, *, reps: int = 3, steps: int = 5,
              channels: int = 8, side: int = 7, batch: int = 32) -> float:
  """Seconds per SGD step of ``nets`` vmapped networks (compile excluded, best of reps)."""
  keys = jax.random.split(jax.random.key(0), nets)
  params = jax.vmap(lambda k: dc.init_cnn(k, "delta_orthogonal", depth=depth, channels=channels,
                                          num_classes=10, sigma_w2=1.086, sigma_b2=1e-4,
                                          image_side=side))(keys)
  x = jax.random.normal(jax.random.key(1), (256, side, side, 1))
  y = jnp.arange(256) % 10
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


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--depths", default="100")
  p.add_argument("--nets", default="1,4")
  a = p.parse_args()
  for d in [int(v) for v in a.depths.split(",")]:
    for n in [int(v) for v in a.nets.split(",")]:
      t_col = time_step(d, n, dc.conv_im2col)
      t_lax = time_step(d, n, dc.conv_lax)
      print(f"depth {d:5d} nets {n}: im2col {t_col * 1e3:7.1f} ms/step, lax.conv "
            f"{t_lax * 1e3:7.1f} ms/step, lax/im2col {t_lax / t_col:.2f}", flush=True)


if __name__ == "__main__":
  main()
