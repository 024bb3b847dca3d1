"""Residual nets at depth >= 1,000 without normalization: Fixup and ReZero/SkipInit vs standard.

Zhang, Dauphin & Ma (2019, Fixup) train 10,000-layer residual networks without
normalization by initializing each residual branch's last layer at zero and scaling the
others by L^(-1/(2m-2)); ReZero (Bachlechner et al. 2020) / SkipInit (De & Smith 2020)
gate every branch by a scalar initialized at zero. A standard He-initialized residual
net without normalization doubles its activation variance per block and overflows.

Here: a residual MLP on mean-pooled MNIST (7 x 7, flattened), a dense input layer to
``--width``, ``--depth`` blocks ``h + alpha * relu(h W1 + b1) W2`` (layers inside one
``lax.scan``), a dense readout, trained by plain SGD (the same batches and lr for each
init) in one compiled program (:func:`experiments.common.deep_conv.train_sgd`). Inits,
all from :mod:`jinit` / :mod:`jinit.residual`:

* ``standard``: W1, W2 He normal, alpha = 1;
* ``fixup``: W1 He normal times :func:`jinit.residual.fixup_scale` (L blocks, m = 2:
  L^(-1/2)) through :func:`jinit.residual.scaled`, W2 = 0, alpha = 1 (Fixup's multiplier);
* ``rezero``: W1, W2 He normal, alpha from :func:`jinit.residual.rezero_rules` (0).

  python -m experiments.deep_residual --quick   # depth 1000, width 32, 300 steps

Writes ``residual.json`` and ``summary.md``.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jinit
from experiments.common import cli
from experiments.common import deep_conv as dc
from experiments.common import results
from experiments.common import study
from experiments.common.provenance import format_provenance

NAME = "deep_residual"
PROG = f"python -m experiments.{NAME}"
INITS = ("standard", "fixup", "rezero")
F32 = jnp.float32


def _he(key, shape):
  return jinit.kaiming_normal(key, shape, shape[0], shape[1], nonlinearity="relu", dtype=F32)


def init_resmlp(key, name: str, *, depth: int, width: int, in_dim: int,
                num_classes: int) -> dict[str, jax.Array]:
  """Parameters of the residual MLP (``depth`` blocks) for one init, blocks stacked."""
  if name not in INITS:
    raise ValueError(f"init must be one of {INITS}, got {name!r}")
  k_in, k1, k2, k_out = jax.random.split(key, 4)
  shape = (width, width)
  he = functools.partial(jinit.kaiming_normal, nonlinearity="relu", dtype=F32)
  if name == "fixup":
    w1_init = jinit.residual.scaled(he, jinit.residual.fixup_scale(depth, 2))
  else:
    w1_init = he
  w1 = jax.vmap(lambda k: w1_init(k, shape, width, width))(jax.random.split(k1, depth))
  if name == "fixup":
    w2 = jnp.zeros((depth,) + shape, F32)
  else:
    w2 = jax.vmap(lambda k: he(k, shape, width, width))(jax.random.split(k2, depth))
  if name == "rezero":
    (_, gate_init), = jinit.residual.rezero_rules()
    alpha = gate_init(k2, (depth,), dtype=F32)
  else:
    alpha = jnp.ones((depth,), F32)
  return {"w_in": _he(k_in, (in_dim, width)), "w1": w1, "b1": jnp.zeros((depth, width), F32),
          "w2": w2, "alpha": alpha,
          "w_out": jinit.xavier_normal(k_out, (width, num_classes), width, num_classes,
                                       dtype=F32),
          "b_out": jnp.zeros((num_classes,), F32)}


def apply_resmlp(params, x: jax.Array) -> jax.Array:
  """x: (batch, ...) flattened to (batch, in_dim) -> logits."""
  h = x.reshape(x.shape[0], -1).astype(F32) @ params["w_in"]

  def block(h, p):
    w1, b1, w2, a = p
    return h + a * (jax.nn.relu(h @ w1 + b1[None, :]) @ w2), None

  h, _ = jax.lax.scan(block, h, (params["w1"], params["b1"], params["w2"], params["alpha"]))
  return h @ params["w_out"] + params["b_out"][None, :]


def add_flags(p) -> None:
  p.add_argument("--quick", action="store_true", help="depth 1000, width 32, 300 steps")
  study.flags(p, depth=(1000, "residual blocks", cli.positive_int), width=32, steps=300,
              eval_every=(None, "default steps / 10; must divide --steps"), eval_size=256,
              batch_size=32, lr=0.05, pool=4, seed=0,
              train_size=(10000, "use only the first N training examples. Default: %(default)s"),
              no_progress=(False, "no download progress bar"))


def run(ctx) -> dict[str, Any]:
  """Trains the three inits in one program; writes residual.json and summary.md."""
  from experiments.deep_cnn import prepare_images
  from experiments.deep_cnn import steps_to

  args, dataset, out_dir, prov, eval_every = (ctx.args, ctx.dataset, ctx.out_dir, ctx.provenance,
                                              ctx.config)
  x = prepare_images(dataset.x_train, args.pool)
  load = os.getloadavg()[0]
  x, y = jnp.asarray(x), jnp.asarray(dataset.y_train)
  n_eval = min(args.eval_size, len(y))
  keys = jax.random.split(jax.random.key(args.seed), len(INITS))
  per = [init_resmlp(k, n, depth=args.depth, width=args.width, in_dim=int(np.prod(x.shape[1:])),
                     num_classes=dataset.num_classes) for k, n in zip(keys, INITS)]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *per)
  init_logit_rms = [float(jnp.sqrt(jnp.mean(apply_resmlp(p, x[:n_eval]) ** 2))) for p in per]
  fn = jax.jit(functools.partial(dc.train_sgd, steps=args.steps, eval_every=eval_every,
                                 batch_size=args.batch_size, apply=apply_resmlp))
  print(f"Residual MLP, {args.depth} blocks of width {args.width}, {args.steps} SGD steps (lr "
        f"{args.lr}, batch {args.batch_size}); results in {out_dir}")
  t0 = time.time()
  _, losses, accs = jax.block_until_ready(fn(stacked, jnp.full((len(INITS),), args.lr, F32),
                                             jax.random.key(args.seed + 1), x, y,
                                             x[:n_eval], y[:n_eval]))
  seconds = time.time() - t0
  losses, accs = np.asarray(losses), np.asarray(accs)
  runs = {}
  for i, name in enumerate(INITS):
    runs[name] = {"train_acc": accs[i].tolist(), "train_loss": losses[i].tolist(),
                  "final_train_acc": float(accs[i][-1]),
                  "diverged": bool(not np.all(np.isfinite(losses[i]))),
                  "init_logit_rms": init_logit_rms[i],
                  "steps_to_90": steps_to(accs[i], 0.9, eval_every)}
  res = {"depth": args.depth, "width": args.width, "steps": args.steps, "lr": args.lr,
         "batch_size": args.batch_size, "eval_every": eval_every, "eval_size": n_eval,
         "fixup_scale": jinit.residual.fixup_scale(args.depth, 2), "runs": runs,
         "seconds": seconds, "load_avg_1min_at_start": load, "provenance": prov}
  results.write_json(os.path.join(out_dir, "residual.json"), res)
  head = (f"| init (depth {args.depth}, width {args.width}) | logit rms at init | diverged | "
          "steps to 90% | final train acc |")
  lines = [head, "|---|---|---|---|---|"]
  for name, r in runs.items():
    s90 = r["steps_to_90"] if r["steps_to_90"] is not None else f"never (> {args.steps})"
    rms = r["init_logit_rms"]
    lines.append(f"| {name} | {rms:.3g} | {'yes' if r['diverged'] else 'no'} | {s90} | "
                 f"{r['final_train_acc']:.3f} |")
  table = "\n".join(lines)
  results.write_text(os.path.join(out_dir, "summary.md"), (
      f"# Residual MLP without normalization at depth {args.depth}\n\n"
      f"{format_provenance(prov)}\n- wall time: {seconds:.0f} s (1-min load average at start "
      f"{load:.1f})\n\nplain SGD lr {args.lr}, batch {args.batch_size}, {args.steps} steps, "
      f"same batches; train accuracy on the first {n_eval} training examples.\n\n{table}\n"))
  print(table)
  if not math.isfinite(seconds):
    raise SystemExit(1)
  return res


RUNNER = study.Runner(NAME, __doc__.split("\n")[0], add_flags,
                      lambda args: study.check_image_sgd(args, args.steps, PROG), run)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
