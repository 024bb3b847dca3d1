"""Signal propagation at initialization: deep MLPs on an MNIST batch, across inits.

For MLPs of several depths (default 5, 10, 30, 50 hidden layers of width 256) with
tanh, sigmoid and ReLU, and the initializers of Glorot & Bengio (2010) and He et al.
(2015), :func:`jinit.diagnostics.diagnose` measures per layer the std of the
activations h and of the back-propagated gradients dL/dz (cross-entropy on the
batch's labels), plus the saturated (tanh/sigmoid) or dead (ReLU) share. Biases
are zero, as in both papers. Inits (weights):

* ``standard``: Glorot's "standard" U(+-1/sqrt(fan_in)) = ``jinit.torch_linear_default``
* ``normal(0.1)``: N(0, 0.1^2); ``uniform(0.5)``: U(-0.5, 0.5) (the course page's examples)
* ``xavier``: ``xavier_uniform``; ``kaiming``: ``kaiming_normal(nonlinearity="relu")``;
  ``lecun``: ``lecun_normal``; ``orthogonal``: ``orthogonal`` (gain 1)

Expected (the papers): tanh + standard shrinks activations layer by layer while the
gradients grow toward the output (Glorot & Bengio Figs. 6-7); Xavier keeps both
roughly flat; ReLU + Xavier decays about 2^(-L/2) while Kaiming stays flat (He et
al. §2.2).

  python -m experiments.signal_propagation
  python -m experiments.signal_propagation --depths 5,50 --activations relu --dataset digits

Writes ``signal.json`` (every statistic per activation, depth, init and layer),
``std_<activation>.png`` (std vs layer), ``depth_<activation>.png`` (last-layer
activation std and first-layer gradient std vs depth) and ``glorot_fig6_7.png``
(histograms per layer, tanh, standard vs Xavier), and prints a table.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jinit
from experiments.common import cli
from experiments.common import models
from experiments.common import results
from experiments.common import study
from jinit import diagnostics

# name -> (jinit initializer, hyperparameters)
INITS: dict[str, tuple[str, dict]] = {
    "standard": ("torch_linear_default", {}),
    "normal(0.1)": ("normal", {"std": 0.1}),
    "uniform(0.5)": ("uniform", {"a": 0.5}),
    "xavier": ("xavier_uniform", {}),
    "kaiming": ("kaiming_normal", {"nonlinearity": "relu"}),
    "lecun": ("lecun_normal", {}),
    "orthogonal": ("orthogonal", {}),
}
ACTIVATIONS = ("tanh", "sigmoid", "relu")
DEFAULT_DEPTHS = (5, 10, 30, 50)
REPORT_LAYERS = (1, 10, 30, 50)  # columns of the console table (those that exist)


def init_params(init: str, key: jax.Array, input_dim: int, hidden: int, depth: int,
                num_classes: int) -> dict:
  """Params of ``models.MLP`` with ``INITS[init]`` kernels (explicit fans) and zero biases.

  One key per layer (``split(key, depth + 1)``), so the first k layers of a deep
  net equal those of a shallower one built with the same key.
  """
  name, hyper = INITS[init]
  fn = jinit.get_initializer(name, **hyper)
  dims = [input_dim] + [hidden] * depth + [num_classes]
  keys = jax.random.split(key, depth + 1)
  return {f"dense_{i}": {"kernel": fn(keys[i], (dims[i], dims[i + 1]), dims[i], dims[i + 1]),
                         "bias": jnp.zeros((dims[i + 1],), jnp.float32)}
          for i in range(depth + 1)}


@functools.cache
def _model(activation: str, depth: int, hidden: int, num_classes: int) -> models.MLP:
  # Inits enter through the params only: one model (one compiled program) per shape.
  return models.MLP(hidden=hidden, depth=depth, num_classes=num_classes,
                    activation=activation, kernel_init=jinit.zeros, bias_init=jinit.zeros)


def measure(x: np.ndarray, y: np.ndarray, *, activations: Sequence[str], depths: Sequence[int],
            inits: Sequence[str], hidden: int, seed: int, num_classes: int,
            log=print) -> tuple[dict, dict]:
  """``(stats, reports)``: stats[act][depth][init] = per-layer lists; reports for figures."""
  stats: dict = {}
  reports: dict = {}
  x, y = jnp.asarray(x), jnp.asarray(y)
  for act in activations:
    for depth in depths:
      model = _model(act, depth, hidden, num_classes)
      t0 = time.perf_counter()
      for init in inits:
        params = init_params(init, jax.random.key(seed), x.shape[1], hidden, depth, num_classes)
        report = diagnostics.diagnose(model, {"params": params}, x, y)
        reports[(act, depth, init)] = report
        hid = report.layers[:-1]  # hidden layers (the output layer is reported apart)
        share = "saturated" if act in ("tanh", "sigmoid") else "dead"
        stats.setdefault(act, {}).setdefault(str(depth), {})[init] = {
            "act_std": [l.act_std for l in hid],
            "act_mean": [l.act_mean for l in hid],
            "preact_std": [l.preact_std for l in hid],
            "grad_preact_std": [l.grad_preact_std for l in hid],
            "grad_kernel_std": [l.grad_kernel_std for l in report.layers],
            share: [getattr(l, share) for l in hid],
            "output_std": report.layers[-1].preact_std,
            "loss": report.loss,
        }
      if log:
        log(f"  {act:<8} depth {depth:>3}: {len(inits)} inits in "
            f"{time.perf_counter() - t0:.1f} s")
  return stats, reports


def _fmt(v: float | None) -> str:
  if v is None or not math.isfinite(v):
    return "   nan/inf"
  return f"{v:10.3g}"


def summary_table(stats: dict, depth: int) -> str:
  """Per activation and init: activation and gradient std at layers 1/10/30/50 of ``depth``."""
  layers = [k for k in REPORT_LAYERS if k <= depth]
  if depth not in layers:
    layers.append(depth)
  lines = []
  for act, by_depth in stats.items():
    if str(depth) not in by_depth:
      continue
    share = "saturated" if act in ("tanh", "sigmoid") else "dead"
    head = (f"{act} MLP, depth {depth}: | init | " + " | ".join(f"h std L{k}" for k in layers)
            + " | " + " | ".join(f"dL/dz std L{k}" for k in layers)
            + f" | grad L1/L{depth} | {share} L{depth} |")
    lines += ["", head, "|" + "---|" * (2 * len(layers) + 3)]
    for init, s in by_depth[str(depth)].items():
      g = s["grad_preact_std"]
      ratio = g[0] / g[depth - 1] if g[depth - 1] else float("nan")
      frac = s[share][depth - 1]
      lines.append(
          f"| {init} | " + " | ".join(_fmt(s["act_std"][k - 1]) for k in layers) + " | "
          + " | ".join(_fmt(g[k - 1]) for k in layers) + f" | {_fmt(ratio)} | "
          + ("-" if frac is None else f"{frac:.0%}") + " |")
  return "\n".join(lines)


def claims(stats: dict, depth: int) -> list[dict]:
  """The papers' claims, checked on the measured numbers of the ``depth`` nets."""
  out = []

  def get(act, init):
    return stats.get(act, {}).get(str(depth), {}).get(init)

  s = get("tanh", "standard")
  if s:
    a, g = s["act_std"], s["grad_preact_std"]
    out.append({
        "depth": depth,
        "claim": "tanh + standard: activations shrink with depth, gradients grow toward the "
                 "output (Glorot & Bengio Figs. 6-7)",
        "measured": f"h std L1 {a[0]:.3g} -> L{depth} {a[-1]:.3g}; dL/dz std L1 {g[0]:.3g} "
                    f"-> L{depth} {g[-1]:.3g}",
        "agrees": bool(a[-1] < a[0] and g[-1] > g[0])})
  s = get("tanh", "xavier")
  if s:
    a, g = s["act_std"], s["grad_preact_std"]
    ra, rg = a[-1] / a[0], g[0] / g[-1]
    out.append({
        "depth": depth,
        "claim": "tanh + Xavier: activation and gradient std roughly flat (within 2x over the "
                 "net)",
        "measured": f"h std L{depth}/L1 = {ra:.3g}; dL/dz std L1/L{depth} = {rg:.3g}",
        "agrees": bool(0.5 <= ra <= 2 and 0.5 <= rg <= 2)})
  for init, expect, text in (("xavier", 2.0**(-(depth - 1) / 2), "decays ~2^(-L/2)"),
                             ("kaiming", 1.0, "stays flat")):
    s = get("relu", init)
    if s:
      z = s["preact_std"]
      r = z[-1] / z[0]
      ok = (0.25 * expect <= r <= 4 * expect) if init == "xavier" else (0.5 <= r <= 2)
      out.append({
          "depth": depth,
          "claim": f"ReLU + {init}: pre-activation std {text} (He et al. 2015, §2.2)",
          "measured": f"z std L{depth}/L1 = {r:.3g} (2^(-(L-1)/2) = {2.0**(-(depth - 1) / 2):.3g})",
          "agrees": bool(ok)})
  return out


def _positive(values) -> np.ndarray:
  """``values`` as floats, None / non-finite / non-positive as NaN (gaps on a log axis)."""
  vals = np.array([np.nan if v is None else v for v in values], float)
  vals[~np.isfinite(vals) | (vals <= 0)] = np.nan
  return vals


def _plot_pair(lines: dict, titles: Sequence[str], xlabel: str, path: str, fmt: str = "-"):
  """Two log-scale panels, one line per init: ``lines[init] = (x, (left, right))``."""
  plt = results.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for init, (x, pair) in lines.items():
    for ax, vals in zip(axes, pair):
      ax.semilogy(x, _positive(vals), fmt, label=init)
  for ax, title in zip(axes, titles):
    ax.set_title(title)
    ax.set_xlabel(xlabel)
  axes[0].legend(fontsize="small")
  fig.tight_layout()
  results.save_figure(fig, path)


def plot_std(stats: dict, act: str, depth: int, path: str) -> None:
  lines = {init: (np.arange(1, len(s["act_std"]) + 1), (s["act_std"], s["grad_preact_std"]))
           for init, s in stats[act][str(depth)].items()}
  _plot_pair(lines, (f"{act}, depth {depth}: activation std per layer",
                     "back-propagated gradient std (dL/dz) per layer"), "layer", path)


def plot_depth(stats: dict, act: str, path: str) -> None:
  depths = sorted(int(d) for d in stats[act])
  lines = {init: (depths, ([stats[act][str(d)][init]["act_std"][-1] for d in depths],
                           [stats[act][str(d)][init]["grad_preact_std"][0] for d in depths]))
           for init in stats[act][str(depths[0])]}
  _plot_pair(lines, (f"{act}: activation std of the last hidden layer",
                     f"{act}: gradient std (dL/dz) of the first layer"),
             "depth (hidden layers)", path, "o-")


def plot_glorot(reports: dict, depth: int, path: str) -> None:
  """Glorot & Bengio Figs. 6-7: tanh, standard vs Xavier, one histogram curve per layer."""
  plt = results.pyplot()
  fig, axes = plt.subplots(2, 2, figsize=(11, 7))
  for col, init in enumerate(("standard", "xavier")):
    report = reports[("tanh", depth, init)]
    diagnostics.plot_histograms(report, "activations", ax=axes[0, col],
                                title=f"tanh, {init} init: activations (Fig. 6)")
    diagnostics.plot_histograms(report, "gradients", ax=axes[1, col],
                                title=f"tanh, {init} init: back-propagated gradients (Fig. 7)")
  fig.tight_layout()
  results.save_figure(fig, path)


def _parse_list(text: str, name: str, allowed=None, cast=str) -> list:
  items = [t.strip() for t in text.split(",") if t.strip()]
  try:
    items = [cast(t) for t in items]
  except ValueError:
    raise ValueError(f"{name} must be a comma-separated list, got {text!r}") from None
  if not items:
    raise ValueError(f"{name} must not be empty")
  if allowed is not None:
    for t in items:
      if t not in allowed:
        raise ValueError(f"{name}: {t!r} is not one of {', '.join(allowed)}")
  return items


def add_flags(p) -> None:
  p.add_argument("--depths", default=",".join(map(str, DEFAULT_DEPTHS)),
                 help="hidden-layer counts, comma-separated. Default: %(default)s")
  p.add_argument("--activations", default=",".join(ACTIVATIONS), help="Default: %(default)s")
  p.add_argument("--inits", default=",".join(INITS), help="Default: %(default)s")
  study.flags(p, hidden=(256, "width. Default: %(default)s"),
              batch=(256, "training examples in the batch. Default: %(default)s"),
              seed=(0, "weights and batch seed"))


def make_config(args) -> tuple[list[int], list[str], list[str]]:
  """Every check of the flags (before any data or folder): depths, activations, inits."""
  depths = _parse_list(args.depths, "--depths", cast=int)
  if any(d < 1 for d in depths):
    raise ValueError(f"--depths must be positive ints, got {args.depths!r}")
  return (depths, _parse_list(args.activations, "--activations", ACTIVATIONS),
          _parse_list(args.inits, "--inits", tuple(INITS)))


def run(ctx) -> dict:
  """Measures every (activation, depth, init); writes signal.json, the figures, summary.md."""
  args, dataset, out_dir = ctx.args, ctx.dataset, ctx.out_dir
  depths, activations, inits = ctx.config
  rng = np.random.default_rng(args.seed)
  idx = np.sort(rng.choice(len(dataset.y_train), min(args.batch, len(dataset.y_train)),
                           replace=False))
  x, y = dataset.x_train[idx], dataset.y_train[idx]
  print(f"{dataset.name}: batch of {len(idx)} training examples, width {args.hidden}, depths "
        f"{depths}, {len(activations)} activations x {len(inits)} inits")
  t0 = time.perf_counter()
  stats, reports = measure(x, y, activations=activations, depths=depths, inits=inits,
                           hidden=args.hidden, seed=args.seed,
                           num_classes=dataset.num_classes)
  deepest = max(depths)
  # Glorot & Bengio's nets had 5 hidden layers: check the claims at the shallowest depth
  # (their setting) and at the deepest.
  checks = claims(stats, min(depths)) + (claims(stats, deepest) if deepest != min(depths)
                                         else [])
  out = {"config": {"dataset": dataset.name, "batch": len(idx), "hidden": args.hidden,
                    "depths": depths, "activations": activations, "seed": args.seed,
                    "inits": {k: INITS[k] for k in inits}, "bias": "zeros",
                    "loss": "mean softmax cross-entropy"},
         "stats": stats, "claims": checks, "seconds": time.perf_counter() - t0}
  results.write_json(os.path.join(out_dir, "signal.json"), out)
  for act in activations:
    plot_std(stats, act, deepest, os.path.join(out_dir, f"std_{act}.png"))
    plot_depth(stats, act, os.path.join(out_dir, f"depth_{act}.png"))
  figures = [f"std_{a}.png" for a in activations] + [f"depth_{a}.png" for a in activations]
  glorot_depth = min(depths)
  if "tanh" in activations and {"standard", "xavier"} <= set(inits):
    plot_glorot(reports, glorot_depth, os.path.join(out_dir, "glorot_fig6_7.png"))
    figures.append("glorot_fig6_7.png")
  table = summary_table(stats, deepest)
  lines = [table, "", "Papers' claims vs measured:"]
  lines += [f"  [{'agrees' if c['agrees'] else 'DISAGREES'}] depth {c['depth']}: {c['claim']}: "
            f"{c['measured']}" for c in checks]
  text = "\n".join(lines)
  results.write_text(os.path.join(out_dir, "summary.md"), text + "\n")
  print(text)
  print(f"Wrote {out_dir}/signal.json, summary.md, {', '.join(figures)}")
  return out


RUNNER = study.Runner("signal_propagation", __doc__.split("\n")[0], add_flags, make_config, run)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
