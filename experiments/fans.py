"""Fans: fan_in and fan_out of the page's 2-3-2 network, Xavier's bounds, kaiming_uniform.

The page's example: 2 inputs -> 3 hidden -> 2 outputs. Layer 1 has fan_in 2 and
fan_out 3, layer 2 the reverse, so both get the same Xavier scale:

  uniform U(-a, a), a = sqrt(6 / (fan_in + fan_out)) = sqrt(6/5) ~ 1.095
  normal  N(0, s^2), s = sqrt(2 / (fan_in + fan_out)) = sqrt(2/5) ~ 0.632

and ``kaiming_uniform`` on a 5x5 matrix (PyTorch's defaults: a=0, leaky_relu, gain
sqrt(2)) samples U(-b, b) with b = sqrt(6 / fan_in) = sqrt(6/5) ~ 1.095, printed like
the page's ``torch.empty(5, 5)`` example.

  python -m experiments.fans

References: Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html;
He et al. 2015, https://arxiv.org/abs/1502.01852
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import jinit
from experiments.common import cli
from experiments.common import results
from experiments.common import study

LAYERS = ((2, 3), (3, 2))  # the page's 2-3-2 network, (in, out) per layer


def layer_table(layers: Sequence[tuple[int, int]] = LAYERS, seed: int = 0) -> list[dict]:
  """Fans (``dense`` layout (in, out)), Xavier bound and sigma, and the sampled extremes."""
  rows = []
  key = jax.random.key(seed)
  for i, shape in enumerate(layers, start=1):
    fan_in, fan_out = jinit.compute_fans(shape, layout="dense")
    key, k1, k2 = jax.random.split(key, 3)
    w_u = np.asarray(jinit.xavier_uniform(k1, shape, fan_in, fan_out))
    w_n = np.asarray(jinit.xavier_normal(k2, shape, fan_in, fan_out))
    rows.append({
        "layer": i, "shape": list(shape), "fan_in": fan_in, "fan_out": fan_out,
        "xavier_uniform_bound": math.sqrt(6.0 / (fan_in + fan_out)),
        "xavier_normal_std": math.sqrt(2.0 / (fan_in + fan_out)),
        "xavier_uniform_sample": w_u.tolist(), "xavier_normal_sample": w_n.tolist(),
    })
  return rows


def format_torch_like(w: np.ndarray) -> str:
  """``tensor([[-0.9263, ...], ...])`` as PyTorch prints a 2-D float tensor."""
  rows = [", ".join(f"{v:7.4f}" for v in row) for row in w]
  return "tensor([[" + "],\n        [".join(rows) + "]])"


def run(out_dir: str, seed: int = 0, log=print) -> dict[str, Any]:
  """Prints the tables and writes ``fans.json`` and ``fans.png`` to ``out_dir``."""
  say = log or (lambda _: None)
  os.makedirs(out_dir, exist_ok=True)
  say(f"Results folder: {out_dir}")
  rows = layer_table(seed=seed)
  say("The page's 2-3-2 network (Flax Dense kernels are (in, out): layout 'dense')")
  say(f"{'layer':<7}{'shape':<9}{'fan_in':>7}{'fan_out':>8}{'Xavier U bound':>16}"
      f"{'Xavier N sigma':>16}")
  for r in rows:
    say(f"{r['layer']:<7}{str(tuple(r['shape'])):<9}{r['fan_in']:>7}{r['fan_out']:>8}"
        f"{r['xavier_uniform_bound']:>16.4f}{r['xavier_normal_std']:>16.4f}")
  say("Both layers see fan_in + fan_out = 5: bound sqrt(6/5), sigma sqrt(2/5).")

  w = np.asarray(jinit.kaiming_uniform(jax.random.key(seed), (5, 5), 5, 5))
  bound = math.sqrt(6.0 / 5.0)
  say("\nW = jinit.kaiming_uniform(key, (5, 5), fan_in=5, fan_out=5)  # like "
      "nn.init.kaiming_uniform_(torch.empty(5, 5))")
  say(format_torch_like(w))
  say(f"bound sqrt(6/fan_in) = {bound:.4f}; max |W| = {np.abs(w).max():.4f}")

  big = np.asarray(jinit.kaiming_uniform(jax.random.key(seed + 1), (100_000, 5), 5, 100_000,
                                         ))
  out = {"layers": rows, "kaiming_uniform_5x5": w.tolist(), "kaiming_bound": bound,
         "kaiming_sample_max_abs": float(np.abs(big).max()),
         "kaiming_sample_std": float(big.std()), "kaiming_expected_std": bound / math.sqrt(3),
         "seed": seed,
         "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  results.write_json(os.path.join(out_dir, "fans.json"), out)
  _plot(big, bound, rows, os.path.join(out_dir, "fans.png"))
  say(f"Wrote {out_dir}/fans.json, fans.png")
  return out


def _plot(sample: np.ndarray, bound: float, rows, path: str) -> None:
  plt = results.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  axes[0].hist(sample.ravel(), bins=60, density=True, color="C0", alpha=0.7)
  for b in (-bound, bound):
    axes[0].axvline(b, color="k", ls="--")
  axes[0].set(title="kaiming_uniform, fan_in = 5: U(-sqrt(6/5), sqrt(6/5))", xlabel="weight")
  for r in rows:
    axes[1].bar(f"layer {r['layer']}\n{r['fan_in']}->{r['fan_out']}", r["xavier_uniform_bound"],
                color="C1")
  axes[1].set(title="Xavier uniform bound sqrt(6/(fan_in+fan_out))", ylabel="bound")
  fig.tight_layout()
  results.save_figure(fig, path)


RUNNER = study.Runner(
    "fans", __doc__.split("\n")[0],
    lambda p: study.flags(p, seed=(0, "PRNG seed of the sampled layers. Default: %(default)s")),
    lambda args: None, lambda ctx: run(ctx.out_dir, ctx.args.seed), data_flags=False,
    announce=False)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
