"""What the microsoft/mup reference scripts share: data, batches, init laws, the training loop.

The scripts (``benchmarks/mup_reference_transformer.py``, ``benchmarks/mup_reference_depth.py``)
rerun a jinit μP study in PyTorch with microsoft/mup (``mup`` 1.0.0: ``set_base_shapes``,
``MuReadout``, ``MuAdam``) on the same examples, in the same batch order (the indices drawn
with the study's own ``jax.random`` calls, :func:`experiments.mup_transfer.run_keys` and
:func:`~experiments.mup_transfer.batch_indices`), with the same evaluation subset, so a verdict
that disagrees with the paper can be told apart: μP's (mup fails the same way) or jinit's.
The weights are drawn here by ``torch`` (an independent draw) with the law jinit's study
uses: LeCun truncated normal (jax's ``lecun_normal``: variance ``1/fan_in`` after truncation at
two standard deviations), readouts N(0, 1/fan_in) (SP) or N(0, 1/base_fan_in) (μP: what
``MuReadout`` holds after ``set_base_shapes`` rescales it), biases zero, LayerNorm 1 and 0.

``mup`` and ``torch`` are not jinit dependencies: these scripts run in an environment that
has them (``pip install torch mup``); the tests import them behind ``pytest.importorskip``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# jax.nn.initializers.truncated_normal's correction: the std of a unit normal truncated to
# [-2, 2]; jax divides the target std by it so the truncated draw has the target std.
TRUNC_STD = 0.87962566103423978


def lecun_(weight: torch.Tensor, fan_in: int, gen: torch.Generator) -> None:
  """Fills ``weight`` as jax's ``lecun_normal``: truncated normal, variance ``1/fan_in``.

  Args:
    weight: the tensor to fill in place.
    fan_in: its fan-in (a torch Linear's ``in_features``).
    gen: the torch generator to draw from.
  """
  s = math.sqrt(1.0 / fan_in) / TRUNC_STD
  with torch.no_grad():
    torch.nn.init.trunc_normal_(weight, 0.0, s, -2 * s, 2 * s, generator=gen)


def normal_(weight: torch.Tensor, std: float, gen: torch.Generator) -> None:
  """Fills ``weight`` with N(0, std^2) draws (zeros when ``std`` is 0)."""
  with torch.no_grad():
    if std == 0:
      weight.zero_()
    else:
      weight.normal_(0.0, std, generator=gen)


def init_linears_(model: torch.nn.Module, readout: torch.nn.Module, *, base_width: int,
                  mu: bool, gen: torch.Generator, zero_readout: bool = False,
                  zero: Callable[[str], bool] = lambda name: False) -> None:
  """The jinit studies' init law on every Linear and LayerNorm of ``model`` (in place).

  Kernels LeCun truncated normal (:func:`lecun_`), biases zero, LayerNorm 1 and 0; the
  ``readout`` N(0, 1/fan_in) under SP, N(0, 1/base_width) under μP (``mu``), zero with
  ``zero_readout``; a Linear whose module name satisfies ``zero`` (e.g. μP's zero query)
  zero.
  """
  for name, m in model.named_modules():
    if isinstance(m, torch.nn.Linear):
      if m is readout:
        std = 0.0 if zero_readout else 1 / math.sqrt(base_width if mu else m.in_features)
        normal_(m.weight, std, gen)
      elif zero(name):
        normal_(m.weight, 0.0, gen)
      else:
        lecun_(m.weight, m.in_features, gen)
      normal_(m.bias, 0.0, gen)
    elif isinstance(m, torch.nn.LayerNorm):
      with torch.no_grad():
        m.weight.fill_(1.0)
        m.bias.zero_()


def flax_path(name: str) -> tuple[str, int | None]:
  """A torch parameter name -> (the jinit study's flax path, index into a scanned stack).

  The scripts name their modules as the flax studies do: ``block0.attn.query.weight`` ->
  ``block0/attn/query/kernel``; ``blocks.3.fc1.weight`` -> (``blocks/fc1/kernel``, 3), the
  ``nn.scan``-stacked blocks; a LayerNorm's ``weight`` -> ``scale``.
  """
  parts = name.split(".")
  index = None
  if parts[0] == "blocks" and len(parts) > 2 and parts[1].isdigit():
    index = int(parts[1])
    parts = [parts[0]] + parts[2:]
  leaf = parts[-1]
  if leaf == "weight":
    is_norm = parts[-2].startswith("ln") or parts[-2] == "final_ln"
    parts[-1] = "scale" if is_norm else "kernel"
  return "/".join(parts), index


def load_flax_params(model: torch.nn.Module, params: Any) -> None:
  """Copies a jinit study's flax ``params`` into the same-named torch ``model`` (in place).

  Kernels are stored (in, ..., out) by flax, (out, in) by torch: a kernel is reshaped to
  (in, out) over its leading/trailing axes as the torch weight needs, and transposed.
  """
  import jax

  flat = {"/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v)
          for kp, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  with torch.no_grad():
    for name, p in model.named_parameters():
      path, index = flax_path(name)
      a = flat[path] if index is None else flat[path][index]
      if path.endswith("kernel"):
        out_features, in_features = p.shape
        a = a.reshape(in_features, out_features).T
      p.copy_(torch.from_numpy(np.array(a, np.float32).reshape(p.shape)))


def batch_schedule(root: int, seed: int, steps: int, batch_size: int,
                   n_train: int) -> np.ndarray:
  """Run ``seed``'s batch indices ``(steps, batch_size)``, drawn as the jinit study draws them."""
  import jax

  from experiments import mup_transfer

  _, data_key = mup_transfer.run_keys(root, seed)
  keys = jax.random.split(data_key, steps)
  draw = jax.vmap(lambda k: mup_transfer.batch_indices(k, batch_size, n_train))
  return np.asarray(draw(keys))


def train_run(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: np.ndarray,
              x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor,
              y_eval: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor
              ) -> tuple[float, float]:
  """One run: Adam steps over ``batches``; (final training loss on the eval subset, val acc).

  A non-finite loss stops the run: it counts as +inf, as in the jinit study (its diverged
  parameters evaluate to NaN there, counted as +inf).
  """
  idx = torch.from_numpy(batches.astype(np.int64))
  for b in idx:
    loss = F.cross_entropy(model(x_train[b]), y_train[b])
    if not torch.isfinite(loss):
      return math.inf, math.nan
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
  with torch.no_grad():
    eval_loss = float(F.cross_entropy(model(x_eval), y_eval))
    acc = float((model(x_val).argmax(-1) == y_val).float().mean())
  return (eval_loss if math.isfinite(eval_loss) else math.inf), acc


def sweep(points: Sequence[int], parametrizations: Sequence[str], lrs: Sequence[float],
          seeds: int, run: Callable[[str, int, float, int], tuple[float, float]],
          log: Callable[[str], None] = print, axis: str = "width",
          progress: Callable[[dict, int], None] | None = None) -> dict[str, dict[str, Any]]:
  """Every (point, parametrization, lr, seed) run, sequentially; per-run losses and accuracies.

  Args:
    points: the widths or depths.
    parametrizations: their names.
    lrs: the learning-rate grid.
    seeds: seeds per (point, lr).
    run: ``run(parametrization, point, lr, seed) -> (final loss, val acc)``.
    log: where a line per (point, parametrization) goes.
    axis: the name of ``points`` in the log.
    progress: called with the per-run arrays and the number of points done.

  Returns:
    ``{p: {"loss": (points, lrs, seeds), "val_acc": (...)}}`` as numpy arrays.
  """
  shape = (len(points), len(lrs), seeds)
  out = {p: {"loss": np.full(shape, np.nan), "val_acc": np.full(shape, np.nan)}
         for p in parametrizations}
  for i, point in enumerate(points):
    for p in parametrizations:
      t0 = time.time()
      for j, lr in enumerate(lrs):
        for s in range(seeds):
          out[p]["loss"][i, j, s], out[p]["val_acc"][i, j, s] = run(p, point, lr, s)
      med = np.median(out[p]["loss"][i], axis=1)
      best = int(np.argmin(med))
      log(f"{axis} {point:4d} {p:9s}: {len(lrs) * seeds} runs in {time.time() - t0:6.1f} s; "
          f"best lr 2^{round(math.log2(lrs[best]))}, loss {med[best]:.4f}")
    if progress is not None:
      progress(out, i + 1)
  return out


def data_tensors(dataset: Any, config: Any, inputs: Callable[[np.ndarray], np.ndarray] | None = None
                 ) -> tuple[torch.Tensor, ...]:
  """The study's data as torch tensors, as its jax sweep takes them (``sweep_data``).

  ``(x_train, y_train, x_eval, y_eval, x_val, y_val)``: the loss on the first ``eval_size``
  training examples, the accuracy on ``val_size`` validation ones; ``inputs`` maps the rows
  to the model's inputs (a ViT's patches), float32; labels int64.
  """
  inputs = inputs or (lambda x: x)
  x_train = torch.from_numpy(np.asarray(inputs(dataset.x_train), np.float32))
  y_train = torch.from_numpy(np.asarray(dataset.y_train, np.int64))
  n_eval = min(config.eval_size, len(y_train))
  x_val = torch.from_numpy(np.asarray(inputs(dataset.x_val[:config.val_size]), np.float32))
  y_val = torch.from_numpy(np.asarray(dataset.y_val[:config.val_size], np.int64))
  return x_train, y_train, x_train[:n_eval], y_train[:n_eval], x_val, y_val


def info(command: str, start: float, cpu_start: float, load_start: float) -> dict[str, Any]:
  """Command, date, machine, library versions, wall and CPU time, load: for the summary."""
  import datetime

  import mup

  from experiments.common import provenance

  return {"command": command,
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
          "machine": provenance.machine(),
          "libraries": f"torch {torch.__version__} ({torch.get_num_threads()} thread(s)), "
                       f"mup {getattr(mup, '__version__', '1.0.0')}",
          "seconds": time.time() - start, "cpu_seconds": time.process_time() - cpu_start,
          "load_average_1min_at_start_and_end": [load_start, os.getloadavg()[0]]}


def header(title: str, inf: dict[str, Any]) -> list[str]:
  """The summary's first lines: title, command, date, machine, libraries, times."""
  return [f"# {title}", "", f"Command: `{inf['command']}`  ", f"Date: {inf['date']}  ",
          f"Machine: {inf['machine']}  ", f"Libraries: {inf['libraries']}  ",
          f"Wall time: {inf['seconds']:.0f} s (CPU time {inf['cpu_seconds']:.0f} s; 1-min load "
          f"average {inf['load_average_1min_at_start_and_end'][0]:.1f} at start, "
          f"{inf['load_average_1min_at_start_and_end'][1]:.1f} at the end)", ""]


def fmt_lr(lr: float | None) -> str:
  return "-" if lr is None else f"2^{round(math.log2(lr))}"


def fmt(v: float | None) -> str:
  return "-" if v is None or not math.isfinite(v) else f"{v:.4f}"


def add_sweep_flags(p: argparse.ArgumentParser, axis: str) -> None:
  """The flags both study scripts share: data, output, preset, the ``--<axis>s`` list, seeds,
  steps, the lr grid and torch's threads."""
  p.add_argument("--data-dir", default=None, help="TFDS data dir holding mnist")
  p.add_argument("--out", required=True, help="folder for transfer.json, runs.json, summary")
  p.add_argument("--quick", action="store_true", help="the study's --quick preset")
  p.add_argument(f"--{axis}s", default=None,
                 help=f"comma-separated {axis}s (default the study's)")
  p.add_argument("--seeds", type=int, default=None)
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--log2-lrs", default=None, metavar="FIRST:LAST")
  p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def sweep_config(p: argparse.ArgumentParser, args: argparse.Namespace, full: Any, quick: Any,
                 axis: str, extra: Sequence[str] = ()) -> Any:
  """The study's config (``quick`` with ``--quick``) with the flags given; a bad value exits
  through ``p.error`` (one line, before any data is loaded or folder made).

  Args:
    p, args: the parser and its parsed flags (:func:`add_sweep_flags`'s).
    full, quick: the study's two preset configs (frozen dataclasses that check their fields).
    axis: ``"width"`` or ``"depth"``: ``--<axis>s`` sets the config's ``<axis>s``.
    extra: more flags copied to the config field of the same name when given.
  """
  config = quick if args.quick else full
  values = getattr(args, f"{axis}s")
  changes: dict[str, Any] = {}
  try:
    if values:
      changes[f"{axis}s"] = tuple(int(v) for v in values.split(","))
    if args.log2_lrs:
      lo, hi = (int(v) for v in args.log2_lrs.split(":"))
      changes["log2_lrs"] = tuple(range(lo, hi + 1))
  except ValueError:
    p.error(f"--{axis}s must be comma-separated ints and --log2-lrs FIRST:LAST ints, got "
            f"{values!r} and {args.log2_lrs!r}")
  for name in ("seeds", "steps", *extra):
    if getattr(args, name) is not None:
      changes[name] = getattr(args, name)
  try:
    return dataclasses.replace(config, **changes)  # Config checks every field
  except (TypeError, ValueError) as e:
    p.error(str(e))
