"""Dynamical isometry (Pennington et al. 2017): Jacobian spectra at init, and learning speed.

At the edge of chaos (chi1 = 1, :func:`jinit.theory.critical_sigma_w2`) the mean
squared singular value of a deep net's input-output Jacobian J = prod_l D_l W_l stays
1 at any depth. Pennington, Schoenholz & Ganguli showed that its *spread* still
depends on the weights: with orthogonal W and tanh (at small q*) the singular values
concentrate near 1 at any depth (dynamical isometry); with Gaussian W they spread
with depth (the product of random matrices); ReLU cannot be isometric at all (D_l
zeroes about half the units, for any weights).

Part 1 computes the full N x N Jacobian dz^L/dz^0 (``jax.jacfwd``) at init for

* tanh at criticality, Gaussian weights;
* tanh at criticality, orthogonal weights;
* ReLU with He init (sigma_w2 = 2, Gaussian), and ReLU with orthogonal weights;

at depths 2, 8, 32, 128 (``--depths``), with inputs at the fixed point q*. It reports
per depth the std of log(singular value), max/min, the mean of s^2 and the share of
singular values in [1/2, 2], and plots the densities.

Part 2 trains a deep tanh MLP on MNIST at criticality with orthogonal and with
Gaussian weights (same sigma_w2, sigma_b2, SGD, learning rate, batches), several
seeds each in one compiled program, and reports the training accuracy curve and the
steps to reach ``--target`` accuracy.

  python -m experiments.isometry --quick
  python -m experiments.isometry

Writes ``isometry.json``, ``spectra.png``, ``learning.png`` and ``summary.md``.

Reference: J. Pennington, S. S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid in
deep learning through dynamical isometry: theory and practice", NeurIPS 2017,
https://arxiv.org/abs/1711.04735 (Figs. 4-5 and 7 style).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jinit
from experiments.common import cli
from experiments.common import mean_field_mlp as mlp
from experiments.common import results
from experiments.common import study
from experiments.common.provenance import format_provenance
from jinit import theory

# sigma_b2 small so that q* at criticality is small (Pennington et al.: isometry of
# orthogonal tanh improves as q* -> 0); tanh's critical sigma_w2 there is ~1.09.
SIGMA_B2_TANH = 1e-4
DEPTHS = (2, 8, 32, 128)
CONFIGS = ("tanh-critical-gaussian", "tanh-critical-orthogonal", "relu-he-gaussian",
           "relu-he-orthogonal")


def config_params(name: str) -> dict[str, Any]:
  """activation, sigma_w2, sigma_b2, distribution, q* of a named configuration."""
  act, _, dist = name.rpartition("-")
  if act.startswith("tanh"):
    sb2 = SIGMA_B2_TANH
    sw2 = float(theory.critical_sigma_w2(jnp.tanh, sb2))
    return {"phi": jnp.tanh, "activation": "tanh", "sigma_w2": sw2, "sigma_b2": sb2,
            "distribution": dist, "q_star": float(theory.q_star(jnp.tanh, sw2, sb2))}
  # He init: sigma_w2 = 2, no bias; relu's q is then any value, chosen 1.
  return {"phi": jax.nn.relu, "activation": "relu", "sigma_w2": 2.0, "sigma_b2": 0.0,
          "distribution": dist, "q_star": 1.0}


def jacobian_singular_values(key, cfg: dict[str, Any], depth: int, width: int) -> np.ndarray:
  """Singular values of dz^depth / dz^0 for one random net and one input with q = q*."""
  kx, kn = jax.random.split(key)
  phi, sw2, sb2 = cfg["phi"], cfg["sigma_w2"], cfg["sigma_b2"]
  keys = jax.random.split(kn, depth)

  def params_for(k):
    kw, kb = jax.random.split(k)
    if cfg["distribution"] == "orthogonal":
      w = jinit.orthogonal(kw, (width, width), width, width, gain=math.sqrt(sw2))
    else:
      w = jinit.variance_scaling(kw, (width, width), width, width, scale=sw2, mode="fan_in",
                                 distribution="normal")
    b = (jinit.normal(kb, (width,), std=math.sqrt(sb2)) if sb2 > 0
         else jnp.zeros((width,), jnp.float32))
    return w, b

  ws, bs = jax.vmap(params_for)(keys)
  z0 = jax.random.normal(kx, (width,), jnp.float32) * math.sqrt(cfg["q_star"])
  jac = _jacobian_fn(phi)(ws, bs, z0)
  return np.linalg.svd(np.asarray(jac, np.float64), compute_uv=False)


@functools.cache
def _jacobian_fn(phi):
  """jit(dz^L/dz^0) for stacked (ws, bs): one compile per activation and shape."""

  def net(ws, bs, z0):
    def layer(z, wb):
      w, b = wb
      return phi(z) @ w + b, None
    return jax.lax.scan(layer, z0, (ws, bs))[0]

  return jax.jit(jax.jacfwd(net, argnums=2))


ZERO = 1e-6  # singular values below ZERO * s_max count as zero (rank lost, e.g. dead relu)


def spread_stats(s: np.ndarray) -> dict[str, float]:
  """Spread of a spectrum: Pennington et al.'s variance of the eigenvalues s^2 of J J^T,
  the std of log s over the nonzero s, the 95%/5% quantile ratio, max/min, and more."""
  nonzero = s > ZERO * s.max()
  q5, q95 = np.quantile(s, [0.05, 0.95])
  return {
      "var_s2": float(np.var(s * s)),
      "std_log_s": float(np.std(np.log(s[nonzero]))),
      "q95_over_q5": float(q95 / q5) if q5 > 0 else float("inf"),
      "max_over_min": float(s.max() / s.min()) if s.min() > 0 else float("inf"),
      "mean_s2": float(np.mean(s * s)),
      "frac_zero": float(np.mean(~nonzero)),
      "frac_in_half_to_2": float(np.mean((s >= 0.5) & (s <= 2.0))),
      "s_max": float(s.max()), "s_min": float(s.min()),
  }


def spectra(depths: Sequence[int], width: int, nets: int, seed: int,
            configs: Sequence[str] = CONFIGS) -> dict[str, Any]:
  out = {}
  for name in configs:
    cfg = config_params(name)
    out[name] = {"sigma_w2": cfg["sigma_w2"], "sigma_b2": cfg["sigma_b2"],
                 "q_star": cfg["q_star"], "activation": cfg["activation"],
                 "distribution": cfg["distribution"], "by_depth": {}}
    for depth in depths:
      keys = jax.random.split(jax.random.key(seed + depth), nets)
      s = np.concatenate([jacobian_singular_values(k, cfg, depth, width) for k in keys])
      stats = spread_stats(s)
      stats["singular_values"] = s.tolist()
      out[name]["by_depth"][str(depth)] = stats
  return out


def format_spectra(spec: dict[str, Any], depths: Sequence[int]) -> str:
  lines = ["| configuration | sigma_w2 | depth | mean s^2 | var of s^2 | std of log s (s > 0) "
           "| s95/s5 | max/min | share s = 0 | share in [1/2, 2] |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for name, entry in spec.items():
    for d in depths:
      st = entry["by_depth"][str(d)]
      lines.append(f"| {name} | {entry['sigma_w2']:.4g} | {d} | {st['mean_s2']:.3g} | "
                   f"{st['var_s2']:.3g} | {st['std_log_s']:.3f} | {st['q95_over_q5']:.3g} | "
                   f"{st['max_over_min']:.3g} | {st['frac_zero']:.0%} | "
                   f"{st['frac_in_half_to_2']:.0%} |")
  return "\n".join(lines)


def plot_spectra(spec: dict[str, Any], depths: Sequence[int], path: str) -> None:
  plt = results.pyplot()  # the experiments' one figure style

  fig, axes = plt.subplots(1, len(depths), figsize=(3.2 * len(depths), 3.2), sharey=False)
  axes = np.atleast_1d(axes)
  bins = np.linspace(-6, 3, 91)
  for ax, d in zip(axes, depths):
    for name, entry in spec.items():
      s = np.asarray(entry["by_depth"][str(d)]["singular_values"])
      ax.hist(np.log10(np.maximum(s, 1e-6)), bins=bins, histtype="step", density=True,
              label=name)
    ax.set_title(f"depth {d}")
    ax.set_xlabel("log10 singular value of J (< 1e-6 drawn at -6)", fontsize=8)
  axes[0].set_ylabel("density")
  axes[-1].legend(fontsize=6)
  fig.tight_layout()
  results.save_figure(fig, path)


def learning_speed(dataset, *, depth: int, width: int, steps: int, eval_every: int,
                   seeds: int, lr: float, batch_size: int, target: float) -> dict[str, Any]:
  """Orthogonal vs Gaussian weights at criticality (tanh), same everything else."""
  sb2 = SIGMA_B2_TANH
  sw2 = float(theory.critical_sigma_w2(jnp.tanh, sb2))
  n_eval = min(2000, len(dataset.y_train))
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  out = {"sigma_w2": sw2, "sigma_b2": sb2, "depth": depth, "width": width, "steps": steps,
         "eval_every": eval_every, "lr": lr, "batch_size": batch_size, "seeds": seeds,
         "target": target, "runs": {}}
  # Both inits in ONE compiled program: parameters stacked on a run axis
  # (orthogonal seeds, then Gaussian seeds); every pair of seeds sees the same batches.
  dists = ("orthogonal", "normal")
  init_keys = jax.random.split(jax.random.key(0), seeds)
  params = [jax.vmap(lambda k, d=d: mlp.init_mlp(k, sw2, sb2, dataset.input_dim, width, depth,
                                                  dataset.num_classes, d))(init_keys)
            for d in dists]
  stacked = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *params)
  batch_keys = jax.random.split(jax.random.key(1), seeds)
  fn = mlp.make_train_params_fn(steps=steps, batch_size=batch_size, lr=lr,
                                eval_every=eval_every)
  acc, loss, curve = fn(stacked, jnp.concatenate([batch_keys, batch_keys]), x, y, x[:n_eval],
                        y[:n_eval])
  acc, loss, curve = np.asarray(acc), np.asarray(loss), np.asarray(curve)
  for i, dist in enumerate(dists):
    part = slice(i * seeds, (i + 1) * seeds)
    reach = []
    for c in curve[part]:
      hit = np.nonzero(c >= target)[0]
      reach.append(int((hit[0] + 1) * eval_every) if hit.size else None)
    out["runs"][dist] = {"final_acc": acc[part].tolist(), "final_loss": loss[part].tolist(),
                         "curve": curve[part].tolist(), "steps_to_target": reach}
  return out


def format_learning(ls: dict[str, Any]) -> str:
  lines = [f"| weights (tanh, sigma_w2 {ls['sigma_w2']:.4g}, depth {ls['depth']}) | "
           f"steps to {ls['target']:.0%} train acc (per seed) | final train acc (median) |",
           "|---|---|---|"]
  for dist, run in ls["runs"].items():
    reach = ", ".join("never" if r is None else str(r) for r in run["steps_to_target"])
    lines.append(f"| {dist} | {reach} | {float(np.median(run['final_acc'])):.3f} |")
  return "\n".join(lines)


def plot_learning(ls: dict[str, Any], path: str) -> None:
  plt = results.pyplot()  # the experiments' one figure style

  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for dist, run in ls["runs"].items():
    curve = np.asarray(run["curve"])
    steps = (np.arange(curve.shape[1]) + 1) * ls["eval_every"]
    for i, c in enumerate(curve):
      ax.plot(steps, c, color="C0" if dist == "orthogonal" else "C1", alpha=0.8,
              label=dist if i == 0 else None)
  ax.axhline(ls["target"], color="gray", ls=":", lw=1)
  ax.set_xlabel("SGD step")
  ax.set_ylabel("training accuracy")
  ax.set_title(f"tanh MLP depth {ls['depth']} at criticality (sigma_w2 {ls['sigma_w2']:.3f})",
               fontsize=9)
  ax.legend()
  fig.tight_layout()
  results.save_figure(fig, path)


FULL = {"width": 256, "nets": 3, "learn_depth": 64, "learn_width": 128, "steps": 2000,
        "seeds": 3, "train_size": 20000}
QUICK = {"width": 128, "nets": 2, "learn_depth": 32, "learn_width": 64, "steps": 600,
         "seeds": 2, "train_size": 10000}


def add_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument("--configs", type=cli.subset_of(CONFIGS), default=list(CONFIGS),
                 metavar="NAME,...",
                 help=f"configurations of the spectra, comma-separated subset of "
                      f"{','.join(CONFIGS)} (default: all)")
  p.add_argument("--target", type=cli.fraction, default=0.8,
                 help="train accuracy to reach. Default: %(default)s")
  p.add_argument("--skip-learning", action="store_true", help="only the Jacobian spectra")
  study.flags(p, depths=(list(DEPTHS), "depths of the Jacobian spectra, comma-separated. "
                                       f"Default: {','.join(map(str, DEPTHS))}"),
              width=(None, "Jacobian width (default 256, --quick 128)"),
              nets=(None, "random nets per cell (default 3, --quick 2)"),
              learn_depth=(None, "depth of the trained MLP (default 64, --quick 32)"),
              learn_width=(None, "width of the trained MLP (default 128, --quick 64)"),
              steps=(None, "SGD steps (default 2000, --quick 600)"),
              seeds=(None, "seeds per init (default 3, --quick 2)"), lr=0.01, batch_size=64,
              train_size=(None, "first N training examples (default 20000, --quick 10000)"),
              seed=0)


def make_config(args) -> dict[str, Any]:
  """Every check of the flags (before any data or folder); the study's settings."""
  v = functools.partial(RUNNER.value, args)
  args.train_size = v("train_size")
  if not args.skip_learning:
    cli.check_batch_size(args, args.batch_size, RUNNER.prog)
  return {k: v(k) for k in FULL}


def run(ctx) -> dict[str, Any]:
  """Part 1 (spectra) and part 2 (learning speed); writes json, figures, summary."""
  args, c, prov = ctx.args, ctx.config, ctx.provenance
  q, width, nets = args.quick, c["width"], c["nets"]
  t0 = time.time()
  ctx.log(f"Jacobian spectra at init: width {width}, {nets} nets per cell, depths {args.depths}")
  spec = spectra(args.depths, width, nets, args.seed, args.configs)
  spec_table = format_spectra(spec, args.depths)
  ctx.log(spec_table)
  res: dict[str, Any] = {"spectra": spec, "depths": args.depths, "width": width, "nets": nets,
                         "provenance": prov, "quick": bool(q)}
  learn_table = ""
  if not args.skip_learning:
    dataset = ctx.dataset
    steps = c["steps"]
    every = next(d for d in range(max(steps // 30, 1), 0, -1) if steps % d == 0)
    ls = learning_speed(dataset, depth=c["learn_depth"], width=c["learn_width"], steps=steps,
                        eval_every=every, seeds=c["seeds"], lr=args.lr,
                        batch_size=args.batch_size, target=args.target)
    ls["dataset"] = {"name": dataset.name, "train_size": len(dataset.y_train)}
    res["learning"] = ls
    learn_table = format_learning(ls)
    ctx.log(learn_table)
  res["seconds"] = time.time() - t0
  ctx.write_json("isometry.json", res)
  plot_spectra(spec, args.depths, ctx.path("spectra.png"))
  if "learning" in res:
    plot_learning(res["learning"], ctx.path("learning.png"))
  tanh = config_params("tanh-critical")
  summary = (f"# Dynamical isometry ({'--quick' if q else 'full'} run)\n\n"
             f"{format_provenance(prov)}\n- wall time: {res['seconds']:.0f} s\n\n"
             f"## Jacobian singular values at init\n\nwidth {width}, {nets} random nets per "
             f"cell (their singular values pooled); inputs with q = q*. tanh at criticality: "
             f"sigma_b2 = {tanh['sigma_b2']:g}, sigma_w2 = {tanh['sigma_w2']:.4f}, q* = "
             f"{tanh['q_star']:.4f}. ReLU: He init (sigma_w2 = 2, zero bias).\n\n{spec_table}\n")
  if learn_table:
    ls = res["learning"]
    summary += (f"\n## Learning speed at criticality\n\ntanh MLP depth {ls['depth']}, width "
                f"{ls['width']}, plain SGD lr {ls['lr']}, batch {ls['batch_size']}, "
                f"{ls['steps']} steps, {ls['seeds']} seeds (same batches for both), "
                f"{ls['dataset']['train_size']} {ls['dataset']['name']} examples; training "
                f"accuracy on the first 2000 training examples every {ls['eval_every']} "
                f"steps.\n\n{learn_table}\n")
  ctx.write_text("summary.md", summary)
  ctx.log(f"Done in {res['seconds']:.0f} s: {ctx.out_dir}")
  return res


RUNNER = study.Runner("isometry", __doc__.split("\n")[0], add_flags, make_config, run,
                      presets={"full": FULL, "quick": QUICK},
                      needs_data=lambda args: not args.skip_learning)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
