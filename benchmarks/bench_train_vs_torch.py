"""Per-epoch training time: our compiled, vmapped engine vs the same model in PyTorch eager.

Both run in ONE process on the same data (MNIST by default; ``--dataset digits``
offline), the page's model and settings: sigmoid MLP 784-50x5-10, summed
cross-entropy, SGD lr 0.01, batch 32, last partial batch dropped, reshuffled every
epoch. The PyTorch loop is the fast eager loop: data held in memory as tensors,
a ``randperm`` per epoch, batches by indexing (no DataLoader, no per-batch
``.item()``). Only training epochs are timed (no evaluation); compile time is
reported separately.

Ours is measured for 1 run and for ``--runs`` runs (seeds x inits, as a study),
each without run sharding (one device) and with the runs sharded over every
device (on CPU: one XLA device per core, set before jax is imported). The table
gives seconds per run-epoch (an epoch of N runs / N) and the ratio PyTorch / ours.

``--story`` also times ``python -m experiments`` (the whole story, MNIST cached) in
a subprocess. ``--write DIR`` writes ``DIR/summary.md`` and ``DIR/bench.json`` with
the command, date, machine and load average.

Needs the ``bench`` extra (``pip install 'jinit[bench]'``: torch 2.13.0 CPU).

  python benchmarks/bench_train_vs_torch.py --story --write docs/results/bench_train
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import experiments  # noqa: E402  (no jax yet: sets one CPU device per core first)

experiments.use_host_devices()

import numpy as np  # noqa: E402

from experiments.common import cli  # noqa: E402
from experiments.common import models  # noqa: E402
from experiments.common import results  # noqa: E402
from experiments.common import train as train_lib  # noqa: E402


def torch_epochs(dataset, epochs: int, hidden: int, depth: int, lr: float, batch_size: int,
                 seed: int = 0, threads: int = 0, steps: int = 0) -> list[float]:
  """Seconds per training epoch of the page's model in PyTorch eager (CPU).

  ``threads``: ``torch.set_num_threads`` (0: PyTorch's default). ``steps`` > 0 times
  only the first ``steps`` batches of each epoch and scales to the full epoch. One more
  epoch than ``epochs`` runs first, untimed (warm-up).
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
  for _ in range(epochs + 1):  # the first epoch warms up (allocations, kernel selection)
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
  return times[1:]


def jax_epochs(dataset, runs: int, epochs: int, hidden: int, depth: int, lr: float,
               batch_size: int, mesh=None):
  """(seconds per epoch, compile seconds, devices used) of ``runs`` runs in one program."""
  inits = ("torch_linear_default", "xavier_uniform")
  specs = [models.RunSpec(inits[i % 2], i // 2) for i in range(runs)]
  config = train_lib.TrainConfig(hidden=hidden, depth=depth, lr=lr, batch_size=batch_size,
                                 epochs=epochs, train_metrics="running")
  result = train_lib.train(dataset, specs, config, log=None, mesh=mesh)
  return result.epoch_seconds, result.compile_seconds, result.devices


def time_story(data_args) -> dict[str, float]:
  """Wall seconds of ``python -m experiments`` (default flags) in a subprocess, twice:
  ``cold`` with an empty jax compilation cache, then ``warm`` reusing it."""
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(tmp, "jax-cache"))
    for label in ("cold", "warm"):
      t0 = time.perf_counter()
      proc = subprocess.run([sys.executable, "-m", "experiments", "--no-progress", "--out",
                             os.path.join(tmp, f"story-{label}"), *data_args], cwd=ROOT,
                            env=env, capture_output=True, text=True)
      out[label] = time.perf_counter() - t0
      if proc.returncode:
        sys.exit(f"error: python -m experiments failed: {proc.stderr[-2000:]}")
  return out


def _machine() -> str:
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def main(argv=None):
  p = cli.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--epochs", type=cli.positive_int, default=3,
                 help="timed epochs per configuration (median kept)")
  p.add_argument("--runs", type=cli.positive_int, default=16,
                 help="runs in the vmapped comparison")
  p.add_argument("--hidden", type=cli.positive_int, default=50)
  p.add_argument("--depth", type=cli.positive_int, default=5)
  p.add_argument("--lr", type=cli.positive_float, default=0.01)
  p.add_argument("--batch-size", type=cli.positive_int, default=32)
  p.add_argument("--torch-threads", default="0,1",
                 help="torch.set_num_threads values to try (0: default); the fastest is the "
                      "reference. Default: %(default)s")
  p.add_argument("--torch-steps", type=cli.nonneg_int, default=0,
                 help="time only this many PyTorch steps per epoch and scale to the epoch "
                      "(0: full epochs)")
  p.add_argument("--story", action="store_true", help="also time python -m experiments")
  p.add_argument("--write", default=None, metavar="DIR",
                 help="write DIR/summary.md and DIR/bench.json")
  cli.add_common_args(p)
  args = p.parse_args(argv)
  try:
    import torch
  except ImportError:
    sys.exit("error: this benchmark needs PyTorch: pip install 'jinit[bench]' (torch 2.13.0 CPU)")
  import jax

  load_before = os.getloadavg()
  dataset = cli.load_from_args(args)
  hp = dict(hidden=args.hidden, depth=args.depth, lr=args.lr, batch_size=args.batch_size)
  n_dev = jax.local_device_count()
  header = (f"{dataset.name}: {len(dataset.y_train)} training examples, batch "
            f"{args.batch_size}, {len(dataset.y_train) // args.batch_size} steps/epoch; jax "
            f"{jax.__version__} on {n_dev} {jax.devices()[0].platform} device(s) "
            f"({os.cpu_count()} CPUs), torch {torch.__version__}")
  print(header, flush=True)
  torch_runs = {}
  for threads in (int(t) for t in args.torch_threads.split(",")):
    torch_runs[threads] = torch_epochs(dataset, args.epochs, threads=threads,
                                       steps=args.torch_steps, **hp)
    print(f"PyTorch eager, {threads or torch.get_num_threads()} thread(s): "
          f"{', '.join(f'{t:.2f}' for t in torch_runs[threads])} s/epoch", flush=True)
  best_threads = min(torch_runs, key=lambda t: statistics.median(torch_runs[t]))
  torch_s = statistics.median(torch_runs[best_threads])
  rows = []
  meshes = [("no", None)]
  if n_dev > 1:
    meshes.append(("yes", train_lib.engine_mesh(n_dev, "runs")))
  for runs in (1, args.runs):
    for sharded, mesh in meshes:
      times, compile_s, used = jax_epochs(dataset, runs, args.epochs, mesh=mesh, **hp)
      # the engine gives a lone run one device: say how many devices really ran
      sharded = f"{sharded} ({used} device{'s' if used > 1 else ''})"
      epoch_s = statistics.median(times)
      rows.append({"runs": runs, "run_sharding": sharded, "epoch_seconds": epoch_s,
                   "per_run_epoch_seconds": epoch_s / runs, "compile_seconds": compile_s,
                   "ratio_vs_torch": torch_s / (epoch_s / runs)})
      print(f"jinit, {runs:>2} run(s), run sharding {sharded}: {epoch_s:.3f} s/epoch, "
            f"{epoch_s / runs:.4f} s per run-epoch, PyTorch/ours {torch_s * runs / epoch_s:.2f}x "
            f"(compile {compile_s:.1f} s)", flush=True)
  story_s = None
  if args.story:
    data_args = ["--dataset", args.dataset] + (["--data-dir", args.data_dir] if args.data_dir
                                               else [])
    story_s = time_story(data_args)
    print(f"python -m experiments: {story_s['cold']:.1f} s wall (empty compilation cache), "
          f"{story_s['warm']:.1f} s (cache from the first run)", flush=True)
  load_after = os.getloadavg()
  table = ["| runs | run sharding | s per epoch | s per run-epoch | PyTorch / ours |",
           "|---|---|---|---|---|"]
  table += [f"| {r['runs']} | {r['run_sharding']} | {r['epoch_seconds']:.3f} | "
            f"{r['per_run_epoch_seconds']:.4f} | {r['ratio_vs_torch']:.2f}x |" for r in rows]
  text = "\n".join(table)
  print(text)
  if args.write:
    command = "python benchmarks/bench_train_vs_torch.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load = (f"load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load_before)}, "
            f"after {tuple(round(x, 2) for x in load_after)}")
    results.write_json(os.path.join(args.write, "bench.json"), {
        "command": command, "date": now, "machine": _machine(), "load_before": load_before,
        "load_after": load_after, "jax": jax.__version__, "torch": torch.__version__,
        "devices": n_dev, "dataset": dataset.name, "epochs": args.epochs,
        "torch_seconds_per_epoch": torch_s, "torch_threads": best_threads or "default",
        "torch_all": {str(k): v for k, v in torch_runs.items()}, "rows": rows,
        "story_wall_seconds": story_s})
    story = (f"\n`python -m experiments` (whole story, {dataset.name} cached, default flags: 8 "
             f"seeds x 2 inits, 30 epochs): {story_s['cold']:.1f} s wall with an empty jax "
             f"compilation cache, {story_s['warm']:.1f} s with the cache the first run left\n"
             if story_s is not None else "")
    results.write_text(os.path.join(args.write, "summary.md"), (
        f"# Training speed: jinit's engine vs PyTorch eager\n\n{header}\n\n"
        f"PyTorch eager: {torch_s:.3f} s per epoch (1 run, fastest thread setting: "
        f"{best_threads or 'default'}). Median of {args.epochs} epochs per row; training "
        f"metrics from the epoch's batches (no evaluation pass is timed).\n\n{text}\n{story}\n"
        f"Command: `{command}`  \nDate: {now}  \nMachine: {_machine()}  \n{load}\n"))
    print(f"Wrote {args.write}/summary.md, bench.json")


if __name__ == "__main__":
  main()
