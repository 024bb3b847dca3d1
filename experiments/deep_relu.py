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

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import models
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


def _signal(ctx) -> None:
  """Writes and prints the signal of each init at init, before training."""
  args = ctx.args
  signal = ctx.state["signal"] = signal_at_init(ctx.dataset, ctx.config.specs,
                                                ctx.config.config)
  ctx.write_json("signal_at_init.json", signal)
  print(f"Signal at initialization ({args.depth} x {args.hidden} ReLU MLP, zero biases, "
        "256 training examples):")
  print(format_signal(signal))


def _add_signal(ctx, history: dict) -> None:
  history["signal_at_init"] = ctx.state["signal"]
  ctx.write_json("history.json", history)


RUNNER = study.training_runner(
    NAME, __doc__.split("\n")[0], inits=INITS, before=_signal, after=_add_signal,
    title=lambda args, data, _: (f"{args.depth}-layer {args.activation} MLP (width "
                                 f"{args.hidden}), {data}, SGD lr {args.lr} (summed loss), batch "
                                 f"{args.batch_size}: He et al. Fig. 3"),
    defaults={"log_every": 1}, seeds=3, epochs=5, bias_init="zeros", activation="relu",
    hidden=128, depth=DEPTH, lr=0.0005, batch_size=64)

build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
