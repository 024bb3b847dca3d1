"""A deep vanilla tanh CNN on MNIST (Xiao et al. 2018): delta-orthogonal vs Xavier vs He.

Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington trained plain convolutional
networks (no BatchNorm, no skip connections) 10,000 layers deep by initializing every
conv kernel delta-orthogonal (zero except an orthogonal channel matrix at the window's
center) at the edge of chaos. The mean-field theory of CNNs has the same q* and chi1
as the fully connected one (:mod:`jinit.theory`), and the delta-orthogonal kernel
makes the network's Jacobian an orthogonal matrix times the tanh derivatives, as in
:mod:`experiments.isometry`.

Here: MNIST images mean-pooled to 14 x 14 (``--quick``: 7 x 7), a first 3 x 3 conv
1 -> C, then ``depth - 1`` 3 x 3 convs C -> C (SAME padding, tanh after each) and a
dense readout of the flattened last feature map. (Not global average pooling: a
delta-orthogonal conv is a 1 x 1 conv at init, so after average pooling the net would
start blind to where anything is in the image, which a short run cannot recover.) Three
initializations of every kernel, biases as noted:

* ``delta_orthogonal``: :func:`jinit.delta_orthogonal`, gain sqrt(sigma_w2*) with
  sigma_w2* = :func:`jinit.theory.critical_sigma_w2` (tanh, sigma_b2 = 1e-4), biases
  N(0, sigma_b2);
* ``xavier``: :func:`jinit.xavier_normal` (variance 2 / (fan_in + fan_out)), zero biases;
* ``he``: :func:`jinit.kaiming_normal` with the relu gain (variance 2 / fan_in), zero
  biases;

all three trained in ONE compiled program (parameters stacked, ``jax.vmap``) with the
same batches, plain SGD, and compared by the steps to reach ``--target`` (default
90%) training accuracy (measured on a fixed subset of the training split).

  python -m experiments.deep_cnn --quick     # depth 50, width 8, 7x7 images, 800 steps
  python -m experiments.deep_cnn             # depth 100, width 8, 14x14 images, 1000 steps

Writes ``deep_cnn.json``, ``deep_cnn.png`` and ``summary.md``.

Reference: L. Xiao et al., "Dynamical Isometry and a Mean Field Theory of CNNs: How to
Train 10,000-Layer Vanilla Convolutional Neural Networks", ICML 2018,
https://arxiv.org/abs/1806.05393
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jinit
from experiments.common import cli
from experiments.common import results
from experiments.common.provenance import format_provenance
from experiments.common.provenance import provenance
from jinit import theory

PROG = "python -m experiments.deep_cnn"  # names the program in one-line errors

SIGMA_B2 = 1e-4
INITS = ("delta_orthogonal", "xavier", "he")
LOWER_TARGETS = (0.8, 0.85)  # also reported, for runs too short to reach the target
KERNEL = 3
POOL = 2  # default mean-pooling factor: 28 x 28 -> 14 x 14 (--quick: 4, 7 x 7)


def _kernel(name: str, key, shape, sigma_w2: float):
  fan_in, fan_out = jinit.compute_fans(shape, layout="flax")
  if name == "delta_orthogonal":
    return jinit.delta_orthogonal(key, shape, gain=math.sqrt(sigma_w2))
  if name == "xavier":
    return jinit.xavier_normal(key, shape, fan_in, fan_out)
  if name == "he":
    return jinit.kaiming_normal(key, shape, fan_in, fan_out, nonlinearity="relu")
  raise ValueError(f"init must be one of {INITS}, got {name!r}")


def init_cnn(key, name: str, *, depth: int, channels: int, num_classes: int,
             sigma_w2: float, image_side: int) -> dict[str, jax.Array]:
  """Parameters of the vanilla CNN for one initialization."""
  k_in, k_hid, k_out, kb = jax.random.split(key, 4)
  shape = (KERNEL, KERNEL, channels, channels)
  hid = [_kernel(name, k, shape, sigma_w2) for k in jax.random.split(k_hid, depth - 1)]
  biased = name == "delta_orthogonal"
  std = math.sqrt(SIGMA_B2)
  kb_in, kb_hid = jax.random.split(kb)
  return {
      "w_in": _kernel(name, k_in, (KERNEL, KERNEL, 1, channels), sigma_w2),
      "b_in": jinit.normal(kb_in, (channels,), std=std) if biased else jnp.zeros((channels,)),
      "w_hid": jnp.stack(hid) if hid else jnp.zeros((0,) + shape),
      "b_hid": (jinit.normal(kb_hid, (depth - 1, channels), std=std) if biased
                else jnp.zeros((depth - 1, channels))),
      # Readout from the flattened feature map: xavier for every init (the comparison is
      # about the conv stack).
      "w_out": jinit.xavier_normal(k_out, (image_side * image_side * channels, num_classes),
                                   image_side * image_side * channels, num_classes),
      "b_out": jnp.zeros((num_classes,)),
  }


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def apply_cnn(params, x):
  """x: (batch, H, W, 1) -> logits."""
  h = jnp.tanh(_conv(x, params["w_in"]) + params["b_in"][None, None, None, :])

  def layer(h, wb):
    w, b = wb
    return jnp.tanh(_conv(h, w) + b[None, None, None, :]), None

  h, _ = jax.lax.scan(layer, h, (params["w_hid"], params["b_hid"]))
  return h.reshape(h.shape[0], -1) @ params["w_out"] + params["b_out"][None, :]


def prepare_images(x_flat: np.ndarray, pool: int = POOL) -> np.ndarray:
  """(N, side^2) in [0, 1] -> (N, side/pool, side/pool, 1), mean-pooled, centered (mean 0)."""
  side = int(round(math.sqrt(x_flat.shape[1])))
  if side * side != x_flat.shape[1] or side % pool:
    raise ValueError(f"expected square images with a side divisible by pool={pool}, got "
                     f"{x_flat.shape[1]} pixels")
  x = x_flat.reshape(-1, side // pool, pool, side // pool, pool).mean(axis=(2, 4))
  x = x - x.mean()
  return x[..., None].astype(np.float32)


def make_train_fn(*, steps: int, eval_every: int, batch_size: int, lr: float):
  tx = optax.sgd(lr)

  def loss_fn(params, x, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(apply_cnn(params, x), y))

  def train_one(params, key, x, y, x_eval, y_eval):
    def step(carry, k):
      params, opt_state = carry
      idx = jax.random.randint(k, (batch_size,), 0, x.shape[0])
      loss, grads = jax.value_and_grad(loss_fn)(params, x[idx], y[idx])
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    def chunk(carry, ks):
      carry, losses = jax.lax.scan(step, carry, ks)
      pred = jnp.argmax(apply_cnn(carry[0], x_eval), axis=-1)
      return carry, (jnp.mean(losses), jnp.mean((pred == y_eval).astype(jnp.float32)))

    keys = jax.random.split(key, steps).reshape(steps // eval_every, eval_every)
    _, (losses, accs) = jax.lax.scan(chunk, (params, tx.init(params)), keys)
    return losses, accs

  return jax.jit(jax.vmap(train_one, in_axes=(0, None, None, None, None, None)))


def steps_to(curve: Sequence[float], target: float, every: int) -> int | None:
  hit = np.nonzero(np.asarray(curve) >= target)[0]
  return int((hit[0] + 1) * every) if hit.size else None


def run(dataset, *, depth: int, channels: int, steps: int, eval_every: int, batch_size: int,
        lr: float, target: float, seed: int, pool: int = POOL,
        eval_size: int = 1000) -> dict[str, Any]:
  sigma_w2 = float(theory.critical_sigma_w2(jnp.tanh, SIGMA_B2))
  x = jnp.asarray(prepare_images(dataset.x_train, pool))
  y = jnp.asarray(dataset.y_train)
  n_eval = min(eval_size, len(dataset.y_train))
  keys = jax.random.split(jax.random.key(seed), len(INITS))
  per_init = [init_cnn(k, name, depth=depth, channels=channels,
                       num_classes=dataset.num_classes, sigma_w2=sigma_w2,
                       image_side=int(x.shape[1]))
              for k, name in zip(keys, INITS)]
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_init)
  fn = make_train_fn(steps=steps, eval_every=eval_every, batch_size=batch_size, lr=lr)
  losses, accs = fn(stacked, jax.random.key(seed + 1), x, y, x[:n_eval], y[:n_eval])
  losses, accs = np.asarray(losses), np.asarray(accs)
  runs = {}
  for i, name in enumerate(INITS):
    runs[name] = {"train_acc": accs[i].tolist(), "train_loss": losses[i].tolist(),
                  "steps_to_target": steps_to(accs[i], target, eval_every),
                  "final_train_acc": float(accs[i][-1]),
                  "best_train_acc": float(accs[i].max())}
  # Mean-field view of each init (a CNN has the fully connected q* and chi1 with fan_in =
  # 9 C; xavier's 2 / (fan_in + fan_out) is 1 / fan_in here since in = out channels).
  mean_field = {name: {"sigma_w2": sw, "sigma_b2": sb,
                       "chi1": float(theory.chi1(jnp.tanh, sw, sb)),
                       "xi_c": float(theory.xi_c(jnp.tanh, sw, sb))}
                for name, sw, sb in (("delta_orthogonal", sigma_w2, SIGMA_B2),
                                     ("xavier", 1.0, 0.0), ("he", 2.0, 0.0))}
  return {"mean_field": mean_field,
          "depth": depth, "channels": channels, "steps": steps, "eval_every": eval_every,
          "batch_size": batch_size, "lr": lr, "target": target, "seed": seed,
          "sigma_w2_critical": sigma_w2, "sigma_b2": SIGMA_B2, "eval_size": n_eval,
          "image_side": int(x.shape[1]), "runs": runs}


def format_table(res: dict[str, Any]) -> str:
  lower = [t for t in LOWER_TARGETS if t < res["target"]]
  lines = [f"| init (depth {res['depth']}, {res['channels']} channels) | sigma_w2 (per fan_in) | "
           + "".join(f"steps to {t:.0%} | " for t in lower)
           + f"steps to {res['target']:.0%} train acc | best train acc | final train acc |",
           "|---|---|" + "---|" * len(lower) + "---|---|---|"]
  sw = {"delta_orthogonal": f"{res['sigma_w2_critical']:.4f} (critical)",
        "xavier": "1 (9C in = 9C out)", "he": "2"}
  for name, run in res["runs"].items():
    never = f"never (> {res['steps']})"
    fmt = lambda r, never=never: never if r is None else str(r)  # noqa: E731
    lows = "".join(f"{fmt(steps_to(run['train_acc'], t, res['eval_every']))} | " for t in lower)
    lines.append(f"| {name} | {sw[name]} | {lows}{fmt(run['steps_to_target'])} | "
                 f"{run['best_train_acc']:.3f} | {run['final_train_acc']:.3f} |")
  return "\n".join(lines)


def plot(res: dict[str, Any], path: str) -> None:
  plt = results.pyplot()  # the experiments' one figure style

  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for name, run in res["runs"].items():
    acc = np.asarray(run["train_acc"])
    ax.plot((np.arange(len(acc)) + 1) * res["eval_every"], acc, label=name)
  ax.axhline(res["target"], color="gray", ls=":", lw=1)
  ax.set_xlabel("SGD step")
  ax.set_ylabel("training accuracy")
  ax.set_ylim(0, 1)
  ax.set_title(f"vanilla tanh CNN, depth {res['depth']}, {res['channels']} channels", fontsize=9)
  ax.legend()
  fig.tight_layout()
  results.save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m experiments.deep_cnn",
                              description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true",
                 help="depth 50, 8 channels, 7x7 images, 800 steps, 10000 training examples")
  p.add_argument("--pool", type=int, default=None,
                 help="mean-pool the images by this factor (default 2: 14x14; --quick 4: 7x7)")
  p.add_argument("--depth", type=int, default=None, help="conv layers (default 100)")
  p.add_argument("--channels", type=int, default=None, help="default 8")
  p.add_argument("--steps", type=int, default=None, help="default 1000 (--quick 800)")
  p.add_argument("--eval-every", type=int, default=None, help="default ~steps / 20")
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--lr", type=float, default=0.05)
  p.add_argument("--target", type=float, default=0.9)
  p.add_argument("--train-size", type=int, default=None, help="default 20000 (--quick 10000)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--overwrite", action="store_true")
  cli.add_common_args(p)
  return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = build_parser().parse_args(argv)
  q = args.quick
  depth = args.depth or (50 if q else 100)
  channels = args.channels or 8
  steps = args.steps or (800 if q else 1000)
  pool = args.pool or (4 if q else POOL)
  # Default: about 20 evaluations, at a step count that divides ``steps``.
  eval_every = args.eval_every or next(d for d in range(max(steps // 20, 1), 0, -1)
                                       if steps % d == 0)
  if depth < 1 or channels < 1 or steps < 1 or eval_every < 1 or steps % eval_every:
    cli.fail(PROG, f"--depth, --channels, --steps, --eval-every must be >= 1 and eval-every "
                   f"must divide steps; got {depth}, {channels}, {steps}, {eval_every}")
  if not 0.0 < args.target < 1.0:
    cli.fail(PROG, f"--target must be in (0, 1), got {args.target}")
  if args.train_size is None:
    args.train_size = 10000 if q else 20000
  out_dir = cli.out_dir_from_args(args, "deep_cnn")
  out_json = os.path.join(out_dir, "deep_cnn.json")
  dataset = cli.load_from_args(args)
  prov = provenance("experiments.deep_cnn", argv)
  print(f"Deep vanilla tanh CNN: depth {depth}, {channels} channels, {steps} SGD steps (lr "
        f"{args.lr}, batch {args.batch_size}) on {len(dataset.y_train)} {dataset.name} "
        f"examples; results in {out_dir}")
  t0 = time.time()
  res = run(dataset, depth=depth, channels=channels, steps=steps, eval_every=eval_every,
            batch_size=args.batch_size, lr=args.lr, target=args.target, seed=args.seed,
            pool=pool)
  res["seconds"] = time.time() - t0
  res["provenance"] = prov
  res["quick"] = bool(q)
  res["dataset"] = {"name": dataset.name, "train_size": len(dataset.y_train)}
  table = format_table(res)
  results.write_json(out_json, res)
  plot(res, os.path.join(out_dir, "deep_cnn.png"))
  summary = (f"# Deep vanilla CNN ({'--quick' if q else 'full'} run)\n\n"
             f"{format_provenance(prov)}\n- wall time: {res['seconds']:.0f} s\n\n"
             f"tanh CNN, no BatchNorm, no skips: {depth} 3x3 convs ({channels} channels) on "
             f"{res['image_side']}x{res['image_side']} MNIST, dense readout of the flattened "
             f"last feature map; plain SGD lr {args.lr}, batch {args.batch_size}, {steps} steps, "
             f"same batches for every init; training accuracy on the first {res['eval_size']} "
             f"training examples every {eval_every} steps.\n\n{table}\n")
  results.write_text(os.path.join(out_dir, "summary.md"), summary)
  print(table)
  print(f"Done in {res['seconds']:.0f} s: {out_dir}")
  return res


if __name__ == "__main__":
  main()
