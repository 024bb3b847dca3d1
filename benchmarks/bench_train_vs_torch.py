"""Per-epoch training time: our compiled, vmapped engine vs the same model in PyTorch eager.

Both run in this process on the same data (MNIST by default; ``--dataset digits``
offline), the page's model and settings: sigmoid MLP 784-50x5-10, summed
cross-entropy, SGD lr 0.01, batch 32, last partial batch dropped, reshuffled every
epoch. The PyTorch loop is the fast eager loop: data held in memory as tensors,
a ``randperm`` per epoch, batches by indexing (no DataLoader, no per-batch
``.item()``). Only training epochs are timed (no evaluation); our compile time is
reported separately.

Printed ratios (PyTorch time / ours):
  * one run: a PyTorch epoch vs our epoch of one run;
  * N runs (``--runs``, seeds x inits as in a study): N PyTorch epochs (N x the
    measured single-run epoch; PyTorch trains them one after another) vs one epoch of
    our program that trains all N at once.

Needs the ``bench`` extra (``pip install 'jinit[bench]'``: torch 2.13.0 CPU).

  python benchmarks/bench_train_vs_torch.py --data-dir ~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from experiments.common import cli  # noqa: E402
from experiments.common import models  # noqa: E402
from experiments.common import train as train_lib  # noqa: E402


def torch_epochs(dataset, epochs: int, hidden: int, depth: int, lr: float, batch_size: int,
                 seed: int = 0, threads: int = 0, steps: int = 0) -> list[float]:
  """Seconds per training epoch of the page's model in PyTorch eager (CPU).

  ``threads``: ``torch.set_num_threads`` (0: PyTorch's default). ``steps`` > 0 times
  only the first ``steps`` batches of each epoch and scales to the full epoch.
  """
  import torch
  from torch import nn

  default_threads = torch.get_num_threads()
  torch.set_num_threads(threads or default_threads)
  torch.manual_seed(seed)
  layers = [nn.Flatten(), nn.Linear(dataset.input_dim, hidden), nn.Sigmoid()]
  for _ in range(depth - 1):
    layers += [nn.Linear(hidden, hidden), nn.Sigmoid()]
  model = nn.Sequential(*layers, nn.Linear(hidden, dataset.num_classes))  # default init
  criterion = nn.CrossEntropyLoss(reduction="sum")
  optimizer = torch.optim.SGD(model.parameters(), lr=lr)
  x = torch.from_numpy(dataset.x_train)
  y = torch.from_numpy(dataset.y_train.astype(np.int64))
  n = len(y) // batch_size * batch_size
  times = []
  for _ in range(epochs):
    t0 = time.perf_counter()
    perm = torch.randperm(len(y))[:n].view(-1, batch_size)
    total = torch.zeros(())
    for idx in (perm[:steps] if steps else perm):
      optimizer.zero_grad()
      loss = criterion(model(x[idx]), y[idx])
      loss.backward()
      optimizer.step()
      total += loss.detach()
    float(total)  # the epoch's loss, as a training loop would report it
    seconds = time.perf_counter() - t0
    times.append(seconds * len(perm) / min(steps, len(perm)) if steps else seconds)
  torch.set_num_threads(default_threads)
  return times


def jax_epochs(dataset, runs: int, epochs: int, hidden: int, depth: int, lr: float,
               batch_size: int):
  """(seconds per epoch, compile seconds) of ``runs`` runs in one compiled program."""
  inits = ("torch_linear_default", "xavier_uniform")
  specs = [models.RunSpec(inits[i % 2], i // 2) for i in range(runs)]
  config = train_lib.TrainConfig(hidden=hidden, depth=depth, lr=lr, batch_size=batch_size,
                                 epochs=epochs)
  result = train_lib.train(dataset, specs, config, log=None)
  return result.epoch_seconds, result.compile_seconds


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--epochs", type=int, default=2, help="timed epochs per side (median kept)")
  p.add_argument("--runs", type=int, default=16, help="runs in the vmapped comparison")
  p.add_argument("--hidden", type=int, default=50)
  p.add_argument("--depth", type=int, default=5)
  p.add_argument("--lr", type=float, default=0.01)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--torch-threads", default="0,1",
                 help="torch.set_num_threads values to try (0: default); the fastest is the "
                      "reference. Default: %(default)s")
  p.add_argument("--torch-steps", type=int, default=0,
                 help="time only this many PyTorch steps per epoch and scale to the epoch "
                      "(0: full epochs)")
  cli.add_common_args(p)
  args = p.parse_args(argv)
  try:
    import torch
  except ImportError:
    sys.exit("error: this benchmark needs PyTorch: pip install 'jinit[bench]' (torch 2.13.0 CPU)")
  import jax

  dataset = cli.load_from_args(args)
  hp = dict(hidden=args.hidden, depth=args.depth, lr=args.lr, batch_size=args.batch_size)
  print(f"{dataset.name}: {len(dataset.y_train)} training examples, batch {args.batch_size}, "
        f"{len(dataset.y_train) // args.batch_size} steps/epoch; jax {jax.__version__} on "
        f"{jax.devices()[0].platform} ({os.cpu_count()} CPUs), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)")
  torch_runs = {}
  for threads in (int(t) for t in args.torch_threads.split(",")):
    torch_runs[threads] = torch_epochs(dataset, args.epochs, threads=threads,
                                       steps=args.torch_steps, **hp)
    print(f"PyTorch eager, {threads or torch.get_num_threads()} thread(s): "
          f"{', '.join(f'{t:.2f}' for t in torch_runs[threads])} s/epoch"
          + (f" (first {args.torch_steps} steps, scaled)" if args.torch_steps else ""),
          flush=True)
  best_threads = min(torch_runs, key=lambda t: statistics.median(torch_runs[t]))
  t_torch = torch_runs[best_threads]
  t_one, c_one = jax_epochs(dataset, 1, args.epochs, **hp)
  t_many, c_many = jax_epochs(dataset, args.runs, args.epochs, **hp)
  torch_s, one_s, many_s = (statistics.median(t) for t in (t_torch, t_one, t_many))
  print(f"PyTorch eager, 1 run:       {torch_s:8.3f} s/epoch  (fastest thread setting: "
        f"{best_threads or 'default'})")
  print(f"jinit compiled, 1 run:      {one_s:8.3f} s/epoch  (compile {c_one:.1f} s once)")
  print(f"jinit compiled, {args.runs} runs:    {many_s:8.3f} s/epoch  ({many_s / args.runs:.3f} "
        f"s per run; compile {c_many:.1f} s once)")
  print(f"ratio, 1 run:   PyTorch / ours = {torch_s / one_s:.2f}x")
  print(f"ratio, {args.runs} runs: PyTorch ({args.runs} sequential epochs) / ours (one vmapped "
        f"epoch) = {args.runs * torch_s / many_s:.2f}x")


if __name__ == "__main__":
  main()
