"""Symmetry: constant init makes every unit of a layer a clone, in value and gradient.

Part 1, the page's network, exactly: two features, a hidden layer of two linear
units, one output; no activation, and the objective is the output itself (no loss)::

  a1 = w1 x1 + w2 x2,   a2 = w3 x1 + w4 x2,   out = w5 a1 + w6 a2

With x = (5, 2) and all weights 1: a1 = a2 = 7, out = 14, and the gradients of out
are dw1 = 5, dw2 = 2, dw3 = 5, dw4 = 2, dw5 = 7, dw6 = 7: the two hidden units have
the same value and the same gradients, so gradient descent keeps them equal. With
all weights 0, the output and every gradient are 0: nothing ever moves.

Part 2, at scale: an MLP whose weights (and biases) start constant is trained with
SGD on real data. The units of each hidden layer stay exact clones for the whole
run (the largest difference between two units stays 0.0), so the network is no
better than one with a single unit per layer; random init breaks the symmetry.

  python -m experiments.symmetry                 # MNIST, 3 epochs
  python -m experiments.symmetry --dataset digits

References: Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import models
from experiments.common import results
from experiments.common import study
from experiments.common import train as train_lib

NAME = "symmetry"
FEATURES = (5.0, 2.0)  # the page's x1, x2
BATCH_SIZE = 32


# --------------------------------------------------------------------------- part 1


def tiny_network(weights: jax.Array, x: jax.Array) -> jax.Array:
  """The page's 2-2-1 linear network; ``weights`` = (w1, ..., w6)."""
  w1, w2, w3, w4, w5, w6 = weights
  a1 = w1 * x[0] + w2 * x[1]
  a2 = w3 * x[0] + w4 * x[1]
  return w5 * a1 + w6 * a2


@jax.jit
def _tiny_forward_backward(w, x):
  out, dw = jax.value_and_grad(tiny_network)(w, x)
  a = jnp.stack([w[0] * x[0] + w[1] * x[1], w[2] * x[0] + w[3] * x[1]])
  da = jax.grad(lambda a: w[4] * a[0] + w[5] * a[1])(a)
  return out, dw, a, da


def tiny_graph(weight: float, x: Sequence[float] = FEATURES) -> dict[str, Any]:
  """Values and gradients (d out / d node) of every node, all six weights = ``weight``."""
  w = np.full((6,), weight, np.float32)
  x = np.asarray(x, np.float32)
  out, dw, a, da = _tiny_forward_backward(w, x)
  return {
      "x": [float(v) for v in x],
      "weights": [float(v) for v in w],
      "output": float(out),
      "hidden": [float(v) for v in a],
      "d_hidden": [float(v) for v in da],
      "d_weights": [float(v) for v in dw],
  }


def format_graph(g: dict[str, Any]) -> str:
  """The computational graph as a tree: ``node  value  gradient``."""
  x1, x2 = g["x"]
  w, dw = g["weights"], g["d_weights"]
  a, da = g["hidden"], g["d_hidden"]
  rows = [("out = w5*a1 + w6*a2", g["output"], 1.0)]
  for unit, (wi, wj, wk) in enumerate(((0, 1, 4), (2, 3, 5))):
    rows += [
        (f"  w{wk + 1}*a{unit + 1}", w[wk] * a[unit], 1.0),
        (f"    w{wk + 1}", w[wk], dw[wk]),
        (f"    a{unit + 1} = w{wi + 1}*x1 + w{wj + 1}*x2", a[unit], da[unit]),
        (f"      w{wi + 1}*x1", w[wi] * x1, da[unit]),
        (f"        w{wi + 1}", w[wi], dw[wi]),
        ("        x1", x1, w[wi] * da[unit]),
        (f"      w{wj + 1}*x2", w[wj] * x2, da[unit]),
        (f"        w{wj + 1}", w[wj], dw[wj]),
        ("        x2", x2, w[wj] * da[unit]),
    ]
  lines = [f"{'node':<34}{'value':>8}{'grad':>8}"]
  lines += [f"{name:<34}{value:>8.2f}{grad:>8.2f}" for name, value, grad in rows]
  return "\n".join(lines)


# --------------------------------------------------------------------------- part 2


def max_unit_difference(params: dict[str, Any], depth: int) -> np.ndarray:
  """Largest difference between two units of any hidden layer, per run (stacked params).

  Unit j of hidden layer l is column j of ``dense_l/kernel``, entry j of
  ``dense_l/bias`` and row j of ``dense_{l+1}/kernel``; each is compared with unit 0.
  """
  worst = None
  for layer in range(depth):
    incoming = np.asarray(params[f"dense_{layer}"]["kernel"])  # (runs, in, units)
    bias = np.asarray(params[f"dense_{layer}"]["bias"])  # (runs, units)
    outgoing = np.asarray(params[f"dense_{layer + 1}"]["kernel"])  # (runs, units, out)
    diffs = [np.abs(incoming - incoming[:, :, :1]).max(axis=(1, 2)),
             np.abs(bias - bias[:, :1]).max(axis=1),
             np.abs(outgoing - outgoing[:, :1, :]).max(axis=(1, 2))]
    layer_worst = np.max(diffs, axis=0)
    worst = layer_worst if worst is None else np.maximum(worst, layer_worst)
  return worst


def collapse_to_width_one(params: dict[str, Any], depth: int) -> dict[str, Any]:
  """The width-1 MLP that computes exactly what a clone network (one run) computes.

  If the H units of a hidden layer are equal (value h), the next layer sees
  ``sum_j h K[j, :] = h * sum_j K[j, :]``: keep unit 0 of each hidden layer and sum
  the rows of the kernel that reads it.
  """
  out = {}
  for layer in range(depth + 1):
    kernel = np.asarray(params[f"dense_{layer}"]["kernel"])
    bias = np.asarray(params[f"dense_{layer}"]["bias"])
    if layer > 0:
      kernel = kernel.sum(axis=0, keepdims=True)
    if layer < depth:
      kernel, bias = kernel[:, :1], bias[:1]
    out[f"dense_{layer}"] = {"kernel": kernel, "bias": bias}
  return out


def train_tracking_symmetry(dataset: data_lib.Dataset, specs: Sequence[models.RunSpec],
                            config: train_lib.TrainConfig, *, mesh=None, log=print):
  """Trains ``specs`` and records :func:`max_unit_difference` after init and every epoch."""
  tracked = []

  def on_epoch(result):  # called at init (epoch 0) and after every epoch
    tracked.append(max_unit_difference(result.params, config.depth).tolist())

  result = train_lib.train(dataset, specs, config, mesh=mesh, on_epoch=on_epoch, log=log,
                           log_every=max(config.epochs, 1))
  return result, tracked


def add_flags(p) -> None:
  p.add_argument("--value", type=float, default=0.01,
                 help="the constant of the constant init (weights; biases are 0)")
  p.add_argument("--random-init", default="xavier_uniform",
                 help="the symmetry-breaking init to compare with")
  study.flags(p, activation=("tanh", "activation of the wide MLP. Default: %(default)s"),
              hidden=64, depth=(2, "hidden layers"), epochs=3,
              lr=(0.01, "SGD learning rate. Default: %(default)s"), batch_size=BATCH_SIZE,
              seeds=(2, "seeds per configuration"))


def make_config(args):
  """Every check of the flags (before any data or folder); the engine's mesh."""
  def check_inits():
    name, hyper = models.parse_init(args.random_init)
    study.dry_run([models.RunSpec(name, 0, "zeros", hyper),
                   models.RunSpec("constant", 0, "zeros", {"value": args.value})],
                  args.activation)

  cli.checked(RUNNER.prog, check_inits, flag="--random-init/--value")
  cli.check_batch_size(args, args.batch_size, RUNNER.prog)
  return cli.mesh_from_args(args, RUNNER.prog)


def run(dataset: data_lib.Dataset, out_dir: str, *, value: float = 0.01,
        random_init: str = "xavier_uniform", activation: str = "tanh", hidden: int = 64,
        depth: int = 2, epochs: int = 3, lr: float = 0.01, batch_size: int = 32,
        seeds: int = 2, mesh=None, log=print) -> dict[str, Any]:
  """Both parts; writes ``symmetry.json`` and ``symmetry.png`` to ``out_dir``."""
  say = log or (lambda _: None)
  os.makedirs(out_dir, exist_ok=True)
  say(f"Results folder: {out_dir}")
  say("Part 1: the page's 2-2-1 network, x = (5, 2), no activation, objective = output")
  graphs = {}
  for weight in (1.0, 0.0):
    graphs[str(weight)] = g = tiny_graph(weight)
    say(f"\nall weights = {weight:g}: output {g['output']:g}, gradients dw1..dw6 = "
        f"{', '.join(f'{v:g}' for v in g['d_weights'])}")
    say(format_graph(g))
  say("\nThe two hidden units are clones: same value, same gradients. All-zero weights: "
      "every gradient is 0.")

  say(f"\nPart 2: {activation} MLP, {depth} hidden layers, SGD lr {lr}, {epochs} epochs on "
      f"{dataset.name}")
  name, hyper = models.parse_init(random_init)
  configs = {
      f"constant {value:g}, width {hidden}": (hidden, models.RunSpec(
          "constant", 0, "zeros", {"value": value})),
      f"{random_init}, width 1": (1, None),
      f"{random_init}, width {hidden}": (hidden, None),
  }
  part2 = {}
  for label, (width, const_spec) in configs.items():
    specs = ([const_spec] if const_spec else
             [models.RunSpec(name, s, "zeros", hyper) for s in range(seeds)])
    config = train_lib.TrainConfig(activation=activation, hidden=width, depth=depth, lr=lr,
                                   batch_size=batch_size, epochs=epochs)
    say(f"\n[{label}]")
    result, diffs = train_tracking_symmetry(dataset, specs, config, mesh=mesh, log=log)
    runs = result.to_json()["runs"]
    if const_spec is not None:  # the trained clone network IS a width-1 network
      one = jax.tree.map(lambda a: np.asarray(a)[0], result.params)
      wide = models.build_model(const_spec, hidden=width, depth=depth,
                                num_classes=dataset.num_classes, activation=activation)
      narrow = models.build_model(const_spec, hidden=1, depth=depth,
                                  num_classes=dataset.num_classes, activation=activation)
      logits = jax.jit(wide.apply)({"params": one}, dataset.x_test)
      logits_1 = jax.jit(narrow.apply)({"params": collapse_to_width_one(one, depth)},
                                       dataset.x_test)
      collapse_diff = float(np.abs(np.asarray(logits) - np.asarray(logits_1)).max())
      say(f"Collapsed to width 1 (unit 0 of each layer, rows of the next kernel summed): "
          f"max |logits difference| on the test set = {collapse_diff:.3g}")
    part2[label] = {
        "width": width, "runs": runs,
        "max_unit_difference": [float(np.max(d)) for d in diffs],  # init, then each epoch
        "width_one_logits_difference": collapse_diff if const_spec is not None else None,
        "test_acc": float(np.median([r["test_acc"] for r in runs if r["test_acc"] is not None]))
        if any(r["test_acc"] is not None for r in runs) else None,
    }
  say("\n| configuration | max difference between units (init -> epochs) | test acc (median) |")
  say("|---|---|---|")
  for label, r in part2.items():
    diffs = (" -> ".join(f"{d:.3g}" for d in r["max_unit_difference"]) if r["width"] > 1
             else "n/a (one unit)")
    say(f"| {label} | {diffs} | {r['test_acc']:.4f} |")
  say("Constant init: every hidden unit stays an exact clone (difference 0.0), so the trained "
      "wide net computes a width-1 function (collapsing it to width 1 gives the same logits); "
      "random init breaks the symmetry and uses the width.")
  out = {"tiny_network": graphs, "at_scale": part2,
         "config": {"dataset": dataset.name, "activation": activation, "hidden": hidden,
                    "depth": depth, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                    "value": value, "random_init": random_init, "seeds": seeds}}
  results.write_json(os.path.join(out_dir, "symmetry.json"), out)
  _plot(part2, os.path.join(out_dir, "symmetry.png"))
  say(f"Wrote {out_dir}/symmetry.json, symmetry.png")
  return out


def _plot(part2: dict[str, Any], path: str) -> None:
  plt = results.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for i, (label, r) in enumerate(part2.items()):
    # Lines can coincide (the constant init's accuracy sits on the other's): a different
    # line style and hollow, larger markers for each later line keep every one visible.
    style = {"marker": "os^D"[i % 4], "linestyle": ("-", "--", ":", "-.")[i % 4],
             "label": label, "markersize": 6 + 3 * i,
             "markerfacecolor": "none" if i else None, "zorder": 3 + i}
    accs = np.asarray([run["val_acc"] for run in r["runs"]])
    axes[0].plot(np.arange(1, accs.shape[1] + 1), np.median(accs, 0), **style)
    axes[1].plot(np.arange(len(r["max_unit_difference"])), r["max_unit_difference"], **style)
  axes[0].set(xlabel="Epoch", ylabel="Validation accuracy", title="Accuracy")
  axes[1].set(xlabel="Epoch (0 = init)", ylabel="max |unit i - unit j|",
              title="Largest difference between hidden units")
  for ax in axes:
    ax.legend()
  fig.tight_layout()
  results.save_figure(fig, path)


def _run(ctx) -> dict[str, Any]:
  a = ctx.args
  return run(ctx.dataset, ctx.out_dir, value=a.value, random_init=a.random_init,
             activation=a.activation, hidden=a.hidden, depth=a.depth, epochs=a.epochs, lr=a.lr,
             batch_size=a.batch_size, seeds=a.seeds, mesh=ctx.config)


RUNNER = study.Runner(NAME, __doc__.split("\n")[0], add_flags, make_config, _run,
                      announce=False)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
