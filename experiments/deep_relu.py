"""He et al. (2015) Fig. 3 at MNIST scale: a 30-layer ReLU MLP, Xavier vs Kaiming, SGD.

He et al. trained a 30-layer ReLU convnet on ImageNet: with Xavier init (weight
variance 1/n) it "completely stalls" (does not learn at all), with their init
(variance 2/n, ``kaiming_normal(nonlinearity="relu")``) it converges. Here: an MLP of
30 hidden ReLU layers on MNIST, zero biases, plain SGD on the summed cross-entropy
(the course page's loop), several seeds per init, every run in ONE compiled program
(``experiments.common.train``). Before training, :func:`jinit.diagnostics.diagnose`
shows what each init does to the signal of the first seed's network.

Defaults (chosen so the run takes a few minutes on a 2-core CPU): width 128, 3
seeds per init, 5 epochs, batch 64, lr 0.0005 (summed loss: 0.032 per-example
step), full MNIST train split (54k/6k validation).

  python -m experiments.deep_relu
  python -m experiments.deep_relu --seeds 8 --epochs 10 --hidden 256

Writes ``history.json``, ``metrics.png``, ``summary.md`` (as ``sigmoid_mnist``) and
``signal_at_init.json``; prints per init the escape epoch (first epoch with
validation accuracy > 0.5) and final accuracies, and the signal at init.

Reference: K. He et al., "Delving Deep into Rectifiers", ICCV 2015, Fig. 3.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import models
from experiments.common import results
from experiments.common import study
from experiments.common import train as train_lib
from jinit import diagnostics

NAME = "deep_relu"
INITS = ("xavier_uniform", "kaiming_normal:nonlinearity=relu")
DEPTH = 30


def signal_at_init(dataset: data_lib.Dataset, specs: Sequence[models.RunSpec],
                   config: train_lib.TrainConfig, n: int = 256) -> dict[str, dict]:
  """Per init (its first seed): logits std and the layer-1/last gradient std at init."""
  params, _, _ = train_lib.init_params(specs, config, dataset.input_dim, dataset.num_classes)
  x = jnp.asarray(dataset.x_train[:n])
  y = jnp.asarray(dataset.y_train[:n])
  out = {}
  for i, spec in enumerate(specs):
    if spec.label in out:
      continue
    model = models.build_model(spec, hidden=config.hidden, depth=config.depth,
                               num_classes=dataset.num_classes, activation=config.activation)
    p = jax.tree.map(lambda leaf, i=i: leaf[i], params)
    report = diagnostics.diagnose(model, {"params": p}, x, y)
    grads = report.column("grad_kernel_std")
    out[spec.label] = {
        "seed": spec.seed,
        "preact_std": report.column("preact_std").tolist(),
        "act_std": report.column("act_std").tolist(),
        "dead": report.column("dead").tolist(),
        "grad_preact_std": report.column("grad_preact_std").tolist(),
        "grad_kernel_std": grads.tolist(),
        "logits_std": report.layers[-1].preact_std,
        "loss": report.loss,
    }
  return out


def format_signal(signal: dict[str, dict]) -> str:
  """Markdown table: first and last hidden layer, logits, and weight gradients at init."""
  depth = len(next(iter(signal.values()))["preact_std"]) - 1  # hidden layers
  lines = [f"| init (seed) | z std L1 | z std L{depth} | logits std | dL/dW std L1 | "
           f"dL/dW std L{depth} | dead L{depth} | loss at init |",
           "|---|---|---|---|---|---|---|---|"]
  for label, s in signal.items():
    dead = s["dead"][depth - 1]
    dead = "-" if dead is None or dead != dead else f"{dead:.0%}"
    lines.append(
        f"| {label} ({s['seed']}) | {s['preact_std'][0]:.3g} | {s['preact_std'][depth - 1]:.3g} "
        f"| {s['logits_std']:.3g} | {s['grad_kernel_std'][0]:.3g} | "
        f"{s['grad_kernel_std'][depth - 1]:.3g} | {dead} | {s['loss']:.4f} |")
  return "\n".join(lines)


def build_parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog=f"python -m experiments.{NAME}", description=__doc__.split("\n")[0])
  study.add_args(p, inits=INITS, seeds=3, epochs=5, bias_init="zeros", activation="relu",
                 hidden=128, depth=DEPTH, lr=0.0005, batch_size=64)
  p.set_defaults(log_every=1)
  return p


def main(argv: Sequence[str] | None = None) -> dict:
  parser = build_parser()
  args = cli.parse_args(parser, argv, NAME)
  plan = study.plan_from_args(parser, args, NAME, default_inits=INITS)
  dataset = cli.load_from_args(args)
  out_dir = cli.start_out(args, NAME, parser)
  signal = signal_at_init(dataset, plan.specs, plan.config)
  results.write_json(os.path.join(out_dir, "signal_at_init.json"), signal)
  print(f"Signal at initialization ({args.depth} x {args.hidden} ReLU MLP, zero biases, "
        "256 training examples):")
  print(format_signal(signal))
  title = (f"{args.depth}-layer {args.activation} MLP (width {args.hidden}), {dataset.name}, "
           f"SGD lr {args.lr} (summed loss), batch {args.batch_size}: He et al. Fig. 3")
  history = study.run_study(dataset, plan.specs, plan.config, out_dir, mesh=plan.mesh,
                            log_every=args.log_every, progress=not args.no_progress,
                            title=title, resume=plan.resume, command=parser.prog)
  history["signal_at_init"] = signal
  results.write_json(os.path.join(out_dir, "history.json"), history)
  return study.finish(history, out_dir)


if __name__ == "__main__":
  cli.entry(main)
