"""Trainability phase diagram (Schoenholz et al. 2017, Fig. 5 style): tanh MLPs on MNIST.

Schoenholz et al. trained fully connected tanh nets with weights N(0, sigma_w2 / N) and
biases N(0, sigma_b2 = 0.05) for a fixed number of SGD steps, over a grid of sigma_w2
and depth L. Nets trained exactly where signals can travel through them: the trainable
region is bounded by L ~ 6 xi_c (xi_c the correlation depth scale of
:func:`jinit.theory.xi_c`), a band that widens without bound at the critical
sigma_w2 ~ 1.76 where xi_c diverges.

Here: for each depth, every sigma_w2 of the grid trains in ONE compiled program
(``jax.vmap`` over sigma_w2 of ``lax.scan`` over SGD steps; the hidden layers are a
``lax.scan`` too, so compile time does not grow with depth; see
:mod:`experiments.common.mean_field_mlp`). After the fixed number
of steps the training accuracy is measured on a fixed subset of the training split.
A cell is "trainable" when that accuracy is >= ``--threshold`` (default 0.5: five
times chance); the agreement fraction is the share of cells where "trainable" equals
"L <= 6 xi_c".

  python -m experiments.trainability --quick          # 7 x 5 grid, ~1-3 min on 2 cores
  python -m experiments.trainability                  # 13 x 5 grid, depths up to 100

Writes ``trainability.json`` (``{"sigma_w2", "depths", "train_acc" (depth-major),
"xi_c", "agreement", ...}``), ``trainability.png`` (the heat map with the 6 xi_c
curve) and ``summary.md``.

Reference: S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, "Deep
Information Propagation", ICLR 2017, https://arxiv.org/abs/1611.01232, Fig. 5.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import cli
from experiments.common import mean_field_mlp as mlp
from experiments.common import results
from experiments.common import study
from experiments.common.provenance import format_provenance
from jinit import theory
from jinit._src import validation

SIGMA_B2 = 0.05
FULL = dict(sigma_w2=tuple(float(v) for v in np.round(np.linspace(1.0, 4.0, 13), 4)),
            depths=(10, 20, 40, 70, 100), steps=500, width=64, train_size=20000)
QUICK = dict(sigma_w2=tuple(float(v) for v in np.round(np.linspace(1.0, 4.0, 7), 4)),
             depths=(5, 10, 20, 40, 80), steps=300, width=64, train_size=10000)


@dataclasses.dataclass(frozen=True)
class Config:
  sigma_w2: tuple[float, ...]
  depths: tuple[int, ...]
  sigma_b2: float = SIGMA_B2
  width: int = 64
  steps: int = 500
  batch_size: int = 64
  lr: float = 0.01
  threshold: float = 0.5
  eval_size: int = 2000
  seed: int = 0

  def __post_init__(self):
    if not self.sigma_w2 or any(not (s > 0 and math.isfinite(s)) for s in self.sigma_w2):
      raise ValueError(f"sigma_w2 must be a non-empty list of finite values > 0, got "
                       f"{self.sigma_w2!r}")
    if not self.depths:
      raise ValueError(f"depths must be a non-empty list of ints >= 1, got {self.depths!r}")
    for d in self.depths:
      validation.check_int(d, "depths (each)")
    for name in ("width", "steps", "batch_size", "eval_size"):
      validation.check_int(getattr(self, name), name)
    if not (self.sigma_b2 >= 0 and math.isfinite(self.sigma_b2)):
      raise ValueError(f"sigma_b2 must be >= 0, got {self.sigma_b2!r}")
    if not (self.lr > 0 and math.isfinite(self.lr)):
      raise ValueError(f"lr must be > 0, got {self.lr!r}")
    if not 0.0 < self.threshold < 1.0:
      raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")


# --------------------------------------------------------------------------- study


CURVE_POINTS = 200  # sigma_w2 points of the 6 xi_c curve drawn on the heat map


def theory_curves(sigma_w2: Sequence[float], sigma_b2: float) -> dict[str, Any]:
  """xi_c and chi1 on the grid, xi_c on a fine grid for the figure, and the critical sigma_w2."""
  grid = np.asarray(sigma_w2, np.float64)
  fine = np.linspace(grid.min(), grid.max(), CURVE_POINTS)
  # One call (one compiled program) for the grid and the fine curve.
  xi = np.asarray(theory.xi_c(jnp.tanh, jnp.asarray(np.concatenate([grid, fine]), jnp.float32),
                              sigma_b2))
  return {
      "xi_c": xi[:len(grid)].tolist(),
      "xi_c_curve": {"sigma_w2": fine.tolist(), "xi_c": xi[len(grid):].tolist()},
      "chi1": np.asarray(theory.chi1(jnp.tanh, grid, sigma_b2)).tolist(),
      "critical_sigma_w2": float(theory.critical_sigma_w2(jnp.tanh, sigma_b2)),
  }


def agreement(train_acc: np.ndarray, depths: Sequence[int], xi_c: Sequence[float],
              threshold: float) -> tuple[float, np.ndarray, np.ndarray]:
  """Share of cells where (acc >= threshold) == (depth <= 6 xi_c); also both masks."""
  trainable = np.asarray(train_acc) >= threshold
  predicted = np.asarray(depths, float)[:, None] <= 6.0 * np.asarray(xi_c, float)[None, :]
  return float(np.mean(trainable == predicted)), trainable, predicted


def run_study(dataset, config: Config, progress: bool = True) -> dict[str, Any]:
  """Trains the grid; returns the result dict (``trainability.json``'s content)."""
  n_eval = min(config.eval_size, len(dataset.y_train))
  x = jnp.asarray(dataset.x_train)
  y = jnp.asarray(dataset.y_train)
  x_eval, y_eval = x[:n_eval], y[:n_eval]
  sigmas = jnp.asarray(config.sigma_w2, jnp.float32)
  keys = jax.random.split(jax.random.key(config.seed), len(config.sigma_w2))
  accs, losses, seconds = [], [], []
  for depth in config.depths:
    t0 = time.time()
    fn = mlp.make_train_fn(depth=depth, width=config.width, input_dim=dataset.input_dim,
                           num_classes=dataset.num_classes, sigma_b2=config.sigma_b2,
                           steps=config.steps, batch_size=config.batch_size, lr=config.lr)
    acc, loss, _ = fn(sigmas, keys, x, y, x_eval, y_eval)
    acc, loss = np.asarray(acc), np.asarray(loss)
    seconds.append(time.time() - t0)
    accs.append(acc.tolist())
    losses.append(loss.tolist())
    if progress:
      cells = " ".join(f"{a:.2f}" for a in acc)
      done = config.depths[:len(seconds)]
      left = study.time_left(done, seconds, config.depths[len(seconds):])
      eta = f"; about {study.how_long(left)} left" if left else ""
      print(f"  depth {depth:4d}: train acc {cells}  ({seconds[-1]:.1f} s{eta})", flush=True)
  curves = theory_curves(config.sigma_w2, config.sigma_b2)
  frac, _, _ = agreement(np.array(accs), config.depths, curves["xi_c"], config.threshold)
  return {
      "sigma_w2": list(config.sigma_w2), "depths": list(config.depths), "train_acc": accs,
      "xi_c": curves["xi_c"], "agreement": frac, "xi_c_curve": curves["xi_c_curve"],
      "six_xi_c": [6.0 * v for v in curves["xi_c"]], "chi1": curves["chi1"],
      "critical_sigma_w2": curves["critical_sigma_w2"], "final_loss": losses,
      "threshold": config.threshold, "sigma_b2": config.sigma_b2,
      "config": dataclasses.asdict(config), "seconds_per_depth": seconds,
  }


def variance_check(dataset, sigma_w2: float, sigma_b2: float, *, depth: int = 10,
                   width: int = 1000, n: int = 64, seed: int = 0) -> dict[str, Any]:
  """q_map's predicted per-layer variance next to one random width-``width`` net's, on MNIST."""
  x = jnp.asarray(dataset.x_train[:n])
  cmp = theory.compare_variances(jnp.tanh, sigma_w2, sigma_b2, x, depth=depth,
                                 key=jax.random.key(seed), width=width)
  return {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2, "width": width, "inputs": int(x.shape[0]),
          "predicted": cmp.predicted.tolist(), "measured": cmp.measured.tolist(),
          "rel_error": cmp.rel_error.tolist(), "table": cmp.format()}


def format_table(res: dict[str, Any]) -> str:
  """Markdown: depth rows, sigma_w2 columns, accuracy; * where depth <= 6 xi_c."""
  head = ["depth \\ sigma_w2"] + [f"{s:g}" for s in res["sigma_w2"]]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  lines.append("| 6 xi_c | " + " | ".join(
      "inf" if v is None or not math.isfinite(v) else f"{v:.0f}" for v in res["six_xi_c"]) + " |")
  for depth, row in zip(res["depths"], res["train_acc"]):
    cells = []
    for acc, xi in zip(row, res["xi_c"]):
      inside = xi is None or depth <= 6.0 * xi
      cells.append(f"{acc:.2f}{'*' if inside else ''}")
    lines.append(f"| {depth} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(res: dict[str, Any], path: str) -> None:
  plt = results.pyplot()  # the experiments' one figure style

  sig = np.asarray(res["sigma_w2"], float)
  depths = np.asarray(res["depths"], float)
  acc = np.asarray(res["train_acc"], float)
  fig, ax = plt.subplots(figsize=(7, 4.5))
  # Cell edges halfway between grid points (the grids need not be uniform).
  def edges(v):
    mid = (v[1:] + v[:-1]) / 2 if len(v) > 1 else np.array([])
    first = v[0] - (mid[0] - v[0] if len(mid) else 0.5)
    last = v[-1] + (v[-1] - mid[-1] if len(mid) else 0.5)
    return np.concatenate([[first], mid, [last]])
  mesh = ax.pcolormesh(edges(sig), edges(depths), acc, cmap="viridis", vmin=0.0, vmax=1.0,
                       shading="flat")
  fig.colorbar(mesh, ax=ax, label=f"training accuracy after {res['config']['steps']} SGD steps")
  if "xi_c_curve" in res:
    fine = np.asarray(res["xi_c_curve"]["sigma_w2"], float)
    xi = np.array([np.inf if v is None else v for v in res["xi_c_curve"]["xi_c"]], float)
  else:  # results written before the curve was stored
    fine = np.linspace(sig.min(), sig.max(), CURVE_POINTS)
    xi = np.asarray(theory.xi_c(jnp.tanh, jnp.asarray(fine, jnp.float32), res["sigma_b2"]))
  ax.plot(fine, np.minimum(6.0 * xi, 1e9), "w-", lw=2, label=r"$6\,\xi_c$ (jinit.theory)")
  ax.axvline(res["critical_sigma_w2"], color="w", ls=":", lw=1,
             label=fr"critical $\sigma_w^2$ = {res['critical_sigma_w2']:.3f}")
  ax.set_ylim(edges(depths)[0], edges(depths)[-1])
  ax.set_xlabel(r"$\sigma_w^2$")
  ax.set_ylabel("depth L (tanh layers)")
  ax.set_title(fr"tanh MLP, $\sigma_b^2$ = {res['sigma_b2']}, width {res['config']['width']}: "
               f"agreement {res['agreement']:.0%}", fontsize=10)
  ax.legend(loc="upper right", fontsize=8, framealpha=0.4)
  fig.tight_layout()
  results.save_figure(fig, path)


def add_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--sigma-w2", type=cli.positive_float_list, default=None, metavar="S,S,...",
                 help="sigma_w2 grid, comma-separated (default: 13 values in [1, 4]; --quick 7)")
  p.add_argument("--threshold", type=cli.fraction, default=0.5,
                 help="training accuracy that counts as trainable. Default: %(default)s")
  study.flags(p, depths=(None, "depths (tanh layers), comma-separated (default: 10,20,40,70,"
                               "100; --quick 5,10,20,40,80)"),
              steps=(None, "SGD steps per net (default 500, --quick 300)"),
              width=(None, "hidden width (default 64)"),
              lr=(0.01, "SGD step size (mean cross-entropy). Default: %(default)s"),
              batch_size=64,
              train_size=(None, "first N training examples (default: 20000, --quick 10000)"),
              seed=0, check_width=(1000, "width of the random net whose per-layer variance is "
                                         "compared with jinit.theory.q_map. Default: %(default)s"))


def make_config(args) -> Config:
  """Every check of the flags (before any data or folder); the study's :class:`Config`."""
  args.train_size = RUNNER.value(args, "train_size")
  cli.check_batch_size(args, args.batch_size, RUNNER.prog)
  return Config(sigma_w2=tuple(RUNNER.value(args, "sigma_w2")),
                depths=tuple(RUNNER.value(args, "depths")), width=RUNNER.value(args, "width"),
                steps=RUNNER.value(args, "steps"), batch_size=args.batch_size, lr=args.lr,
                threshold=args.threshold, seed=args.seed)


def run(ctx) -> dict[str, Any]:
  """The study: the grid, the theory, the variance check; writes json, figure, summary."""
  args, config, dataset, prov = ctx.args, ctx.config, ctx.dataset, ctx.provenance
  ctx.log(f"Trainability: tanh MLP width {config.width}, sigma_b2 {config.sigma_b2}, "
          f"{config.steps} SGD steps (lr {config.lr}, batch {config.batch_size}) on "
          f"{len(dataset.y_train)} {dataset.name} examples")
  t0 = time.time()
  res = run_study(dataset, config, progress=not args.no_progress)
  res["provenance"] = prov
  res["dataset"] = {"name": dataset.name, "train_size": len(dataset.y_train)}
  res["seconds"] = time.time() - t0
  res["quick"] = bool(args.quick)
  res["variance_check"] = variance_check(dataset, res["critical_sigma_w2"], config.sigma_b2,
                                         width=args.check_width, seed=config.seed)
  table = format_table(res)
  ctx.write_json("trainability.json", res)
  plot(res, ctx.path("trainability.png"))
  summary = (f"# Trainability phase diagram ({'--quick' if args.quick else 'full'} run)\n\n"
             f"{format_provenance(prov)}\n- wall time: {res['seconds']:.0f} s\n\n"
             f"tanh MLP, width {config.width}, sigma_b2 = {config.sigma_b2}, {config.steps} SGD "
             f"steps, lr {config.lr}, batch {config.batch_size}, {len(dataset.y_train)} "
             f"{dataset.name} training examples. Training accuracy on the first "
             f"{min(config.eval_size, len(dataset.y_train))} training examples; `*` marks "
             f"cells with depth <= 6 xi_c. Critical sigma_w2 = "
             f"{res['critical_sigma_w2']:.4f}.\n\n{table}\n\n"
             f"Agreement ((acc >= {config.threshold}) == (depth <= 6 xi_c)): "
             f"**{res['agreement']:.1%}** of {len(config.depths) * len(config.sigma_w2)} cells.\n"
             f"\n## Mean-field prediction vs one random net at criticality\n\n"
             f"tanh, sigma_w2 = {res['critical_sigma_w2']:.4f}, sigma_b2 = {config.sigma_b2}, "
             f"width {res['variance_check']['width']}, the first "
             f"{res['variance_check']['inputs']} training images (layer 1 is linear in the "
             f"pixels):\n\n{res['variance_check']['table']}\n")
  ctx.write_text("summary.md", summary)
  ctx.log(table)
  ctx.log(f"Agreement: {res['agreement']:.1%} ({res['seconds']:.0f} s)")
  return res


RUNNER = study.Runner("trainability", __doc__.split("\n")[0], add_flags, make_config, run,
                      presets={"full": FULL, "quick": QUICK})

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
