"""GradInit's gradient-norm bound on the deep transformer study's Post-LN model (MNIST, depth 24).

Is the bound ||g(m theta; x1)||_1 <= gamma active? Measures, for seed 0's Xavier draw: the
L1 gradient norm on each of the 64 learning examples' two halves (GradInit's x1) at init,
and after the study's GradInit (gamma 1, 100 steps, tau 0.01, eta = lr 1e-3) the same
norm and GradInit's objective history. A step where the norm exceeds gamma descends the
norm instead of the loss after one Adam step (Zhu et al. 2021, Alg. 1), so when the norm
stays above gamma, eta and the loss never enter GradInit.

  PYTHONPATH=. python docs/results/deep_transformer/gradinit_bound/measure.py \
      --data-dir /work/shared/tensorflow_datasets

Writes result.json next to this file (command, date, machine, numbers), then summary.md
(its table; ``--table`` rewrites summary.md from an existing result.json).
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from experiments import deep_transformer as dt
from experiments.common import data as data_lib
from experiments.common import transformer_inits as extra
from jinit import learned


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--data-dir", default=None)
  p.add_argument("--depth", type=int, default=24)
  p.add_argument("--table", action="store_true", help="only summary.md from result.json")
  args = p.parse_args()
  here = os.path.dirname(os.path.abspath(__file__))
  if args.table:
    with open(os.path.join(here, "result.json")) as f:
      write_table(json.load(f), here)
    return
  t0 = time.time()
  ds = data_lib.load_dataset("mnist", args.data_dir)
  mean, std = float(ds.x_train.mean()), float(ds.x_train.std())
  x = dt.patchify(((ds.x_train - mean) / std).astype(np.float32), 7)
  cfg = dt.ViTConfig(tokens=x.shape[1], patch_dim=x.shape[2], depth=args.depth)
  batch = dt.init_batch(x, ds.y_train)
  key = jax.random.key(1000 * 0 + cfg.depth)  # seed 0's run key, as train_depth
  halves = [tuple(b[:32] for b in batch), tuple(b[32:] for b in batch)]
  loss_fn = dt._learn_loss("postln_gradinit", cfg)  # pylint: disable=protected-access

  def norms(params):
    return [learned.gradinit_objective(params, h, loss_fn, optimizer="adam", lr=1e-3)[1]
            for h in halves]

  k_init, k_post = jax.random.split(key)  # as transformer_inits.init_extra
  base = extra.stack(dt.residual.apply_rules(
      jax.tree.map(lambda s: np.zeros(s, np.float32), dt.param_shapes(cfg),
                   is_leaf=lambda s: isinstance(s, tuple)), dt.STANDARD_RULES, key=k_init))
  out = learned.gradinit(base, batch, loss_fn, key=k_post, optimizer="adam", lr=1e-3,
                         stacked=extra.STACKED, **extra.GRADINIT)
  scales = np.asarray(list(out.scales.values()))
  record = {
      "command": "python " + " ".join(sys.argv),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
                 f"jax {jax.__version__}",
      "depth": cfg.depth, "gradinit": extra.GRADINIT, "paper_gamma": extra.GRADINIT_PAPER["gamma"],
      "l1_grad_norm_at_xavier_init": norms(base),
      "l1_grad_norm_after_gradinit": norms(out.model),
      "gradinit_history_first_last": [float(out.history[0]), float(out.history[-1])],
      "gradinit_history_min": float(np.min(out.history)),
      "scales_min_median_max": [float(scales.min()), float(np.median(scales)),
                                float(scales.max())],
      "scales_at_min_scale": int(np.sum(scales <= extra.GRADINIT.get("min_scale", 1e-2) + 1e-6)),
      "scales_count": int(scales.size), "seconds": time.time() - t0,
  }
  path = os.path.join(here, "result.json")
  with open(path, "w") as f:
    json.dump(record, f, indent=1)
  print(json.dumps(record, indent=1))
  write_table(record, here)


def write_table(r: dict, here: str) -> None:
  """summary.md: the measured norms against the two gammas, as a markdown table."""
  g = r["gradinit"]
  fmt = lambda xs: " / ".join(f"{x:.3g}" for x in xs)
  lines = [f"Command: `{r['command']}`  ", f"Date: {r['date']}  ", f"Machine: {r['machine']}",
           "", f"| quantity (Post-LN, depth {r['depth']}, seed 0; x1 = each half of the 64 "
           "learning images) | value |", "|---|---|",
           f"| L1 gradient norm at the Xavier init | {fmt(r['l1_grad_norm_at_xavier_init'])} |",
           f"| the study's gamma / the paper's gamma | {g['gamma']:g} / {r['paper_gamma']:g} |",
           f"| L1 gradient norm after the study's GradInit ({g['steps']} steps, tau "
           f"{g['scale_lr']:g}) | {fmt(r['l1_grad_norm_after_gradinit'])} |",
           f"| GradInit objective, first / last step (min) | "
           f"{fmt(r['gradinit_history_first_last'])} ({r['gradinit_history_min']:.3g}) |",
           f"| learned scales min / median / max | {fmt(r['scales_min_median_max'])} |",
           f"| scales at the lower bound 0.01 | {r['scales_at_min_scale']} of "
           f"{r['scales_count']} |"]
  with open(os.path.join(here, "summary.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
