"""μP learning-rate transfer: the best Adam lr of an MNIST MLP vs width, SP against μP.

Tensor Programs V (G. Yang et al., 2022, https://arxiv.org/abs/2203.03466, Fig. 1 and
mup's README figure) claims that under the standard parametrization (SP) the best learning
rate shifts as a model widens, while under μP it stays put, so it can be tuned on a narrow
model and transferred. This study trains an MLP ``784 -> width -> width -> 10`` (ReLU) on
MNIST with Adam at every width, learning rate (powers of 2) and seed, for both:

* ``sp``: LeCun-normal init (variance ``1/fan_in``), biases zero, one Adam lr for all;
* ``mup``: the same model with :class:`jinit.mup.LinenReadout` (readout multiplier
  ``base_width/width``, width-independent readout init), its metadata from
  :func:`jinit.mup.infinite_dims` against the base (smallest) width, and
  ``optax.chain(optax.adam(lr), jinit.mup.scale_updates(meta, "adam"))`` (hidden weight lr
  ``lr * base_width/width``; Table 8 of the paper). At the base width the two coincide.

All learning rates x seeds of one width train in one compiled program (``jax.vmap`` over
runs inside ``jax.lax.map`` chunks, a ``lax.scan`` over steps); a seed fixes the init and
the batch order, shared by every learning rate. The loss of a run is the mean training
cross-entropy on a fixed subset of the training set after the last step (mup's figure plots
training loss); a diverged run counts as +inf.

Outputs (in ``--out``, default ``results/mup_transfer-<UTC time>``):

* ``transfer.json``: ``{"widths", "lrs", "parametrizations": {"sp": {"best_lr",
  "final_loss"}, "mup": {...}}}``; ``best_lr[i]`` is the argmin over lrs at ``widths[i]``
  of the median over seeds, ``final_loss[i][j]`` that median at ``widths[i]``, ``lrs[j]``;
* ``runs.json``: every run's final loss (per seed), validation accuracy, and the config;
* ``loss_vs_lr.png``: loss vs learning rate, one line per width (SP and μP side by side);
* ``coord_check_sp.png``, ``coord_check_mup.png`` and ``coord_check.json``: a coordinate
  check (:func:`jinit.mup.coord_check`, 3 Adam steps at the transferred lr);
* ``summary.md`` / ``summary.json``: the best-lr table, the claims held against the paper,
  the command, date and machine.

``--paper`` is Tensor Programs V's MLP protocol (mup's ``examples/MLP/main.py``): SGD with
momentum 0.9, no biases, zero readout, one epoch, and ``input_mult``/``output_mult``
(:class:`MLP`) tuned with the lr at the base width, then held for every width;
``transfer.json`` then also has ``"multipliers"`` and ``runs.json`` the base width's grid.

  python -m experiments.mup_transfer --quick     # 3 widths, 64 -> 1024, a few minutes
  python -m experiments.mup_transfer             # 6 widths, 64 -> 2048, 9 lrs
  python -m experiments.mup_transfer --paper     # 5 widths, 64 -> 1024, SGD, one epoch
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.common import cli
from experiments.common import data as data_lib
from experiments.common import provenance as provenance_lib
from experiments.common import results
from experiments.common import study
from jinit import mup
from jinit._src import validation

PARAMETRIZATIONS = ("sp", "mup")
OPTIMIZERS = ("adam", "sgd")
SEED = 20221  # the root of every run's keys: run_keys(SEED, seed) -> (init key, data key)


@dataclasses.dataclass(frozen=True)
class Config:
  widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
  log2_lrs: tuple[int, ...] = tuple(range(-13, -4))  # 2^-13 .. 2^-5
  seeds: int = 3
  steps: int = 150
  batch_size: int = 64
  eval_size: int = 4096  # training examples the final loss is measured on
  val_size: int = 2000  # validation examples for the accuracy (not used to pick the lr)
  chunk: int = 12  # runs vmapped together inside lax.map (bounds memory at the widest width)
  coord_steps: int = 3
  coord_batch: int = 256
  coord_seeds: int = 1  # seeds the coord check's sizes are averaged over
  zero_readout: bool = False  # zero-init readout for SP and μP (mup's MLP example does)
  optimizer: str = "adam"  # "adam", or "sgd" with momentum (mup's MLP example: MuSGD, 0.9)
  momentum: float = 0.9  # SGD's momentum (torch.optim.SGD's: no dampening, not Nesterov)
  bias: bool = True  # Dense biases in the MLP (mup's MLP example has none)
  # The paper's protocol (mup's MLP example): the input and output multipliers are tuned
  # with the lr at the base width (every pair of these powers of 2), then held for every
  # width. The default (one pair, 1 and 1) is no tuning.
  log2_input_mults: tuple[int, ...] = (0,)
  log2_output_mults: tuple[int, ...] = (0,)

  def __post_init__(self):
    if len(self.widths) < 2 or any(b <= a for a, b in zip(self.widths, self.widths[1:])):
      raise ValueError(f"widths must be at least 2 strictly increasing ints, got {self.widths}")
    if any(b != a + 1 for a, b in zip(self.log2_lrs, self.log2_lrs[1:])) or len(self.log2_lrs) < 3:
      raise ValueError("log2_lrs must be at least 3 consecutive ints (a grid of powers of 2), "
                       f"got {self.log2_lrs}")
    for name in ("seeds", "steps", "batch_size", "eval_size", "val_size", "chunk",
                 "coord_steps", "coord_batch", "coord_seeds"):
      validation.check_int(getattr(self, name), name)
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
    if not (0.0 <= self.momentum < 1.0):
      raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
    for name in ("log2_input_mults", "log2_output_mults"):
      grid = getattr(self, name)
      if not grid or len(set(grid)) != len(grid) or any(
          isinstance(v, bool) or not isinstance(v, int) for v in grid):
        raise ValueError(f"{name} must be distinct ints (exponents of 2), got {grid}")

  @property
  def tunes_multipliers(self) -> bool:
    """Whether the input/output multipliers are tuned at the base width (more than one pair)."""
    return len(self.log2_input_mults) * len(self.log2_output_mults) > 1

  @property
  def lrs(self) -> list[float]:
    return [2.0 ** k for k in self.log2_lrs]


QUICK = Config(widths=(64, 256, 1024), log2_lrs=tuple(range(-12, -4)), seeds=3, steps=150,
               eval_size=2048)
# Tensor Programs V's MLP protocol (mup's examples/MLP/main.py): SGD with momentum 0.9, no
# biases, zero readout, batch 64, the input/output multipliers tuned with the lr at the base
# width 64 (the example's relu/cross-entropy optimum, input 2^-8 and output 2^5, is in the
# grid), then held for every width; one epoch of MNIST (54,000 examples / 64 = 844 steps).
PAPER = Config(widths=(64, 128, 256, 512, 1024), log2_lrs=tuple(range(-7, 2)), seeds=3,
               steps=844, optimizer="sgd", bias=False, zero_readout=True,
               log2_input_mults=(-8, -6, -4, -2, 0), log2_output_mults=(0, 2, 4, 6))


class MLP(nn.Module):
  """``784 -> width -> width -> 10``, ReLU; SP when ``base_width`` is None, else μP's readout.

  ``input_mult``/``output_mult`` are mup's MLP example's: the first layer's output times
  ``sqrt(input_mult)`` with its kernel's init variance divided by ``input_mult`` (its
  init output is unchanged; its effective lr is not), and the readout's input times
  ``output_mult`` (``mup.MuReadout``'s, on top of μP's ``base_width / width``).
  """
  width: int
  base_width: int | None
  zero_readout: bool = False
  num_classes: int = 10
  bias: bool = True
  input_mult: float = 1.0
  output_mult: float = 1.0

  @nn.compact
  def __call__(self, x):
    # LeCun normal (flax's default) with variance 1 / (fan_in * input_mult).
    first = nn.initializers.variance_scaling(1.0 / self.input_mult, "fan_in", "truncated_normal")
    x = nn.Dense(self.width, use_bias=self.bias, kernel_init=first, name="in")(x)
    x = nn.relu(x * math.sqrt(self.input_mult) if self.input_mult != 1.0 else x)
    x = nn.relu(nn.Dense(self.width, use_bias=self.bias, name="hidden")(x))
    parametrization = "sp" if self.base_width is None else "mup"
    # mup.MuReadout's output_mult: (output_mult / width_mult) * x @ W + b.
    return mup.LinenReadout(self.num_classes, base_in_features=self.base_width,
                            output_mult=self.output_mult, zero_init=self.zero_readout,
                            use_bias=self.bias, parametrization=parametrization,
                            name="out")(x)


def make_model(parametrization: str, width: int, base_width: int,
               zero_readout: bool = False, bias: bool = True, input_mult: float = 1.0,
               output_mult: float = 1.0) -> MLP:
  return MLP(width, base_width if parametrization == "mup" else None, zero_readout,
             bias=bias, input_mult=input_mult, output_mult=output_mult)


def _as_is(x: np.ndarray) -> np.ndarray:
  return x


@dataclasses.dataclass(frozen=True)
class Family:
  """What a width study trains: a linen model per parametrization and width, and its inputs.

  Attributes:
    title: the model and its data, for the summary and the figure (``"MNIST MLP"``).
    make_model: ``(parametrization, width, base_width, **multipliers) -> nn.Module``; the
      two coincide at the base width up to the zero inits μP may add. ``multipliers``
      (``input_mult``, ``output_mult``) are passed only when the family has them.
    inputs: the dataset's rows ``(N, features)`` -> the model's inputs (default: as they are).
    multipliers: whether ``make_model`` takes ``input_mult``/``output_mult`` (mup's MLP
      example's), so that they can be tuned at the base width.
  """
  title: str
  make_model: Callable[..., nn.Module]
  inputs: Callable[[np.ndarray], np.ndarray] = _as_is
  multipliers: bool = False


def mlp_family(config: Config) -> Family:
  """This study's model: :class:`MLP`, its readout and biases as ``config`` says."""
  def make(p, width, base, input_mult=1.0, output_mult=1.0):
    return make_model(p, width, base, config.zero_readout, config.bias, input_mult, output_mult)
  return Family("MNIST MLP", make, multipliers=True)


def optimizer(config: Any, lr, meta) -> optax.GradientTransformation:
  """``config.optimizer`` at base lr ``lr`` with μP's per-parameter lr multipliers of ``meta``.

  Adam: ``optax.adam(lr)``; SGD: ``optax.sgd(lr, momentum)`` (``torch.optim.SGD``'s
  momentum: no dampening, not Nesterov). Then :func:`jinit.mup.scale_updates` (Table 8 of
  Tensor Programs V: ``mup.MuAdam``/``mup.MuSGD``'s multipliers; all 1 under SP).
  """
  name = getattr(config, "optimizer", "adam")
  if name == "sgd":
    return optax.chain(optax.sgd(lr, momentum=config.momentum or None),
                       mup.scale_updates(meta, "sgd"))
  return optax.chain(optax.adam(lr), mup.scale_updates(meta, "adam"))


def family_meta(family: Family, parametrization: str, width: int, base_width: int, x):
  """:func:`jinit.mup.infinite_dims` of ``family``'s model at ``width`` against the base."""
  return mup.infinite_dims(family.make_model(parametrization, width, base_width),
                           family.make_model(parametrization, base_width, base_width), x,
                           parametrization=parametrization)


def params_meta(parametrization: str, width: int, base_width: int, input_dim: int):
  x = jnp.zeros((1, input_dim), jnp.float32)
  return family_meta(mlp_family(Config()), parametrization, width, base_width, x)


def run_keys(root: int, seed):
  """``(init_key, data_key)`` of run ``seed``: ``split(fold_in(key(root), seed))``.

  A seed fixes the init and the batch order, shared by every learning rate (the microsoft/mup
  reference scripts under benchmarks/ draw their batches with this and :func:`batch_indices`).
  """
  return jax.random.split(jax.random.fold_in(jax.random.key(root), seed))


def batch_indices(step_key, batch_size: int, n_train: int):
  """One step's batch: ``batch_size`` indices into the ``n_train`` training examples."""
  return jax.random.randint(step_key, (batch_size,), 0, n_train)


def _loss(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_sweep(model: nn.Module, meta, config: Any, x_train, y_train, x_eval, y_eval, x_val,
               y_val, *, root_seed: int = SEED,
               make_tx: Callable[[Any, Any], optax.GradientTransformation] | None = None):
  """``sweep(lrs_R, seeds_R) -> (eval_loss_R, val_acc_R)``: R runs in one compiled program.

  Seed ``s`` of a run has the keys :func:`run_keys` ``(root_seed, s)`` (init, batches);
  ``make_tx(meta, lr)`` is its optimizer (default: :func:`optimizer` with ``config``'s).
  """
  n_train = x_train.shape[0]

  def one_run(lr, seed):
    init_key, data_key = run_keys(root_seed, seed)
    params = model.init(init_key, x_train[:1])["params"]
    tx = optimizer(config, lr, meta) if make_tx is None else make_tx(meta, lr)

    def loss_fn(p, step_key):  # one step's batch, drawn from its key
      idx = batch_indices(step_key, config.batch_size, n_train)
      return _loss(model.apply({"params": p}, x_train[idx]), y_train[idx])

    params, _, _, _ = study.scan_sgd(loss_fn, params, tx,
                                     jax.random.split(data_key, config.steps))
    eval_loss = _loss(model.apply({"params": params}, x_eval), y_eval)
    val_logits = model.apply({"params": params}, x_val)
    hits = jnp.argmax(val_logits, -1).astype(y_val.dtype) == y_val
    val_acc = jnp.mean(hits.astype(jnp.float32))
    return eval_loss, val_acc

  @jax.jit
  def sweep(lrs, seeds):
    return jax.lax.map(lambda a: one_run(*a), (lrs, seeds), batch_size=config.chunk)

  return sweep


def best_lrs(final_loss: np.ndarray, lrs: Sequence[float]) -> list[float | None]:
  """Per width, the lr minimizing the (median) loss; None when every lr diverged."""
  out = []
  for row in final_loss:
    finite = np.where(np.isfinite(row), row, np.inf)
    out.append(None if not np.isfinite(finite).any() else float(lrs[int(np.argmin(finite))]))
  return out


def claims(transfer: dict[str, Any]) -> dict[str, Any]:
  """The issue's three claims, evaluated on ``transfer.json``'s content."""
  widths, lrs = transfer["widths"], transfer["lrs"]
  sp, mu = transfer["parametrizations"]["sp"], transfer["parametrizations"]["mup"]

  def shift(best):
    if best[0] is None or best[-1] is None:
      return None
    return abs(round(math.log2(best[-1]) - math.log2(best[0])))

  mup_shift, sp_shift = shift(mu["best_lr"]), shift(sp["best_lr"])
  out = {
      "mup_shift_steps": mup_shift, "sp_shift_steps": sp_shift,
      "mup_best_lr_moves_at_most_1_step": mup_shift is not None and mup_shift <= 1,
      "sp_best_lr_moves_at_least_2_steps": sp_shift is not None and sp_shift >= 2,
  }
  transferred = mu["best_lr"][0]
  sp_best = sp["best_lr"][-1]
  mup_loss = (mu["final_loss"][-1][lrs.index(transferred)] if transferred is not None else None)
  sp_loss = sp["final_loss"][-1][lrs.index(sp_best)] if sp_best is not None else None
  # Wider is better (Fig. 1/3): at the transferred lr, each width's loss is at most the
  # narrower one's.
  at_transferred = ([row[lrs.index(transferred)] for row in mu["final_loss"]]
                    if transferred is not None else None)
  out.update({
      "mup_loss_per_width_at_transferred_lr": at_transferred,
      "mup_wider_is_better_at_transferred_lr": at_transferred is not None and all(
          b <= a for a, b in zip(at_transferred, at_transferred[1:])),
      "widest": widths[-1], "transferred_lr": transferred,
      "mup_widest_loss_at_transferred_lr": mup_loss,
      "sp_widest_best_lr": sp_best, "sp_widest_loss_at_its_best_lr": sp_loss,
      "mup_transferred_at_least_as_good_as_sp_tuned": (
          mup_loss is not None and sp_loss is not None and mup_loss <= sp_loss),
  })
  return out


def _fmt_lr(lr):
  return "-" if lr is None else f"2^{round(math.log2(lr))}"


def summary_markdown(transfer, claim, coord, meta_info, grid: dict | None = None,
                     opt: str = "Adam") -> str:
  widths = transfer["widths"]
  lines = [f"# μP learning-rate transfer: {meta_info['model']} ({meta_info['dataset']})", "",
           f"Command: `{meta_info['command']}`  ", f"Date: {meta_info['date']}  ",
           f"Machine: {meta_info['machine']}  ",
           f"Wall time: {meta_info['seconds']:.0f} s (CPU time {meta_info['cpu_seconds']:.0f} s; "
           f"1-min load average {meta_info['load_average_1min_at_start_and_end'][0]:.1f} at "
           f"start, {meta_info['load_average_1min_at_start_and_end'][1]:.1f} at the end)", "",
           ]
  if grid is not None:
    ins, outs = grid["log2_input_mults"], grid["log2_output_mults"]
    lines += [f"## Multipliers tuned at the base width {widths[0]} (best {opt} lr's median loss)",
              "", "| input_mult \\ output_mult | " + " | ".join(f"2^{b}" for b in outs) + " |",
              "|---" * (len(outs) + 1) + "|"]
    for a, la in enumerate(ins):
      lines.append(f"| 2^{la} | " + " | ".join(
          f"{_fmt(grid['best_loss'][a][b])} ({_fmt_lr(grid['best_lr'][a][b])})"
          for b in range(len(outs))) + " |")
    lines += ["", f"Chosen: input_mult 2^{grid['best_log2_input_mult']}, output_mult "
              f"2^{grid['best_log2_output_mult']}, held for every width (SP and μP).", ""]
  lines += ["## Best learning rate per width (median training loss over seeds)", "",
            "| width | SP best lr | SP loss | μP best lr | μP loss |", "|---|---|---|---|---|"]
  for i, w in enumerate(widths):
    row = [str(w)]
    for p in ("sp", "mup"):
      best = transfer["parametrizations"][p]["best_lr"][i]
      loss = (transfer["parametrizations"][p]["final_loss"][i][transfer["lrs"].index(best)]
              if best is not None else None)
      row += [_fmt_lr(best), "-" if loss is None else f"{loss:.4f}"]
    lines.append("| " + " | ".join(row) + " |")
  yes = {True: "agrees", False: "disagrees"}
  lines += ["", "## Claims (Tensor Programs V, Fig. 1 and 3)", "",
            f"- μP best lr moves by at most one grid step from width {widths[0]} to "
            f"{widths[-1]}: moved {claim['mup_shift_steps']} step(s) -> "
            f"**{yes[claim['mup_best_lr_moves_at_most_1_step']]}**.",
            f"- SP best lr moves by at least two grid steps: moved {claim['sp_shift_steps']} "
            f"step(s) -> **{yes[claim['sp_best_lr_moves_at_least_2_steps']]}**.",
            f"- Widest μP at the lr transferred from width {widths[0]} "
            f"({_fmt_lr(claim['transferred_lr'])}) is at least as good as widest SP at its own "
            f"best lr ({_fmt_lr(claim['sp_widest_best_lr'])}): "
            f"{_fmt(claim['mup_widest_loss_at_transferred_lr'])} vs "
            f"{_fmt(claim['sp_widest_loss_at_its_best_lr'])} -> "
            f"**{yes[claim['mup_transferred_at_least_as_good_as_sp_tuned']]}**.",
            f"- Wider is better under μP at the transferred lr (each width's loss at most the "
            f"narrower one's): "
            f"{', '.join(_fmt(v) for v in claim['mup_loss_per_width_at_transferred_lr'] or [])}"
            f" -> **{yes[claim['mup_wider_is_better_at_transferred_lr']]}**.", "",
            f"## Coordinate check ({coord['steps']} {opt} steps at lr "
            f"{_fmt_lr(coord['lr'])}, widths {widths[0]}-{widths[-1]})", "",
            "Slope of log RMS(layer output) vs log width (0: width-independent).", ""]
  for p in PARAMETRIZATIONS:
    lines += [f"### {p}", "", coord[p]["table"], ""]
  return "\n".join(lines)


def _fmt(v):
  return "-" if v is None else f"{v:.4f}"


def plot_loss_vs_lr(transfer, path, title: str = "MNIST MLP", opt: str = "Adam", *,
                    axis: str = "widths", value_label: str = "width {}",
                    names: dict[str, str] | None = None, suptitle: str | None = None):
  """Loss vs lr, one line per ``transfer[axis]`` value, one panel per parametrization.

  ``names``: the panels, ``{parametrization: title}`` (default SP and μP), in order; those
  missing from ``transfer`` are left out.
  """
  plt = results.pyplot()  # the experiments' one figure style

  names = names or {"sp": "SP", "mup": "μP"}
  ps = [p for p in names if p in transfer["parametrizations"]]
  fig, axes = plt.subplots(1, len(ps), figsize=(max(10, 3.6 * len(ps)), 4), sharey=True,
                           squeeze=False)
  values, lrs = transfer[axis], np.asarray(transfer["lrs"])
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(values)))
  finite = [v for p in ps for row in transfer["parametrizations"][p]["final_loss"]
            for v in row if v is not None and math.isfinite(v)]
  top = min(max(finite), 2.5) if finite else 2.5
  for ax, p in zip(axes[0], ps):
    d = transfer["parametrizations"][p]
    for i, value in enumerate(values):
      loss = np.array([np.nan if v is None else v for v in d["final_loss"][i]], float)
      ax.plot(lrs, loss, "o-", ms=3, color=colors[i], label=value_label.format(value))
      if d["best_lr"][i] is not None:
        j = list(lrs).index(d["best_lr"][i])
        ax.plot(lrs[j], loss[j], "*", ms=11, color=colors[i], markeredgecolor="k")
    ax.set_xscale("log", base=2)
    ax.set_ylim(min(finite) * 0.8 if finite else 0, top)
    ax.set_xlabel(f"{opt} learning rate (base)")
    ax.set_title(names[p])
    ax.grid(alpha=0.3)
  axes[0][0].set_ylabel("training loss (median over seeds)")
  axes[0][-1].legend(fontsize=8)
  fig.suptitle(suptitle or f"{title}: training loss vs learning rate (star: best lr per width)")
  fig.tight_layout()
  results.save_figure(fig, path)


def run_coord_check(family: Family, x, y, config, lr, mults: dict | None = None):
  """coord_check for SP and μP at ``lr`` on one batch ``(x, y)`` of model inputs.

  ``mults``: the family's multipliers (``input_mult``, ``output_mult``), if it has them.
  """
  base = config.widths[0]
  x1 = jnp.asarray(x[:1])
  mults = mults or {}
  out = {"steps": config.coord_steps, "lr": lr,
         "optimizer": getattr(config, "optimizer", "adam")}
  for p in PARAMETRIZATIONS:
    def make(width, seed, p=p):
      model = family.make_model(p, width, base, **mults)
      return model, model.init(jax.random.key(seed), x1)

    def opt(width, p=p):
      return optimizer(config, lr, family_meta(family, p, width, base, x1))

    # optax's Adam raises a python float to its int32 step count, which strict dtype
    # promotion rejects (as in study.scan_sgd): the coord check traces with standard rules.
    with jax.numpy_dtype_promotion("standard"):
      cc = mup.coord_check(make, config.widths, x, y, steps=config.coord_steps,
                           optimizer=opt, seeds=config.coord_seeds)
    out[p] = {**cc.to_dict(), "table": cc.table(),
              "max_abs_slope_last_step": cc.max_abs_slope(-1)}
    out[p]["_figure"] = cc.plot(title=f"{p.upper() if p == 'sp' else 'μP'}: coordinate check "
                                      f"({_opt_name(config)} lr {_fmt_lr(lr)})")
  return out


def _opt_name(config) -> str:
  return {"adam": "Adam", "sgd": "SGD"}[getattr(config, "optimizer", "adam")]


@dataclasses.dataclass(frozen=True)
class SweepData:
  """What every sweep of a study trains and measures on, as device arrays.

  ``lr_r``/``seed_r``: the runs' (lr, seed), lr-major (``lrs x seeds``).
  """
  x_train: Any
  y_train: Any
  x_eval: Any
  y_eval: Any
  x_val: Any
  y_val: Any
  lr_r: Any
  seed_r: Any

  @property
  def arrays(self) -> tuple:
    """The data arguments of :func:`make_sweep`, in order."""
    return (self.x_train, self.y_train, self.x_eval, self.y_eval, self.x_val, self.y_val)


def sweep_data(dataset: data_lib.Dataset, config: Any, inputs=_as_is) -> SweepData:
  """The study's data: the loss on the first ``eval_size`` training examples, the accuracy
  on ``val_size`` validation ones; ``inputs`` maps the rows to the model's inputs."""
  x_train = jnp.asarray(inputs(dataset.x_train))
  y_train = jnp.asarray(dataset.y_train)
  n_eval = min(config.eval_size, len(dataset.y_train))
  n_l, n_s = len(config.lrs), config.seeds
  return SweepData(x_train, y_train, x_train[:n_eval], y_train[:n_eval],
                   jnp.asarray(inputs(dataset.x_val[:config.val_size])),
                   jnp.asarray(dataset.y_val[:config.val_size]),
                   jnp.asarray(np.repeat(config.lrs, n_s), jnp.float32),
                   jnp.asarray(np.tile(np.arange(n_s), n_l), jnp.int32))


def sweep_axis(axis: str, values: Sequence[int], parametrizations: Sequence[str],
               build: Callable[[str, int], Callable], config: Any, data: SweepData,
               out_dir: str, log=print, extra: dict | None = None) -> dict[str, dict]:
  """Every lr x seed at every (value, parametrization): ``build(p, value)`` gives the sweep.

  After each value, ``runs.json`` is rewritten with what is done (``{"config",
  "done_<axis>s", **extra, "runs"}``) so a killed study leaves its progress.

  Returns:
    ``{p: {"loss", "val_acc"}}``, arrays ``(values, lrs, seeds)``.
  """
  n_l, n_s = len(config.lrs), config.seeds
  per_run = {p: {"loss": np.full((len(values), n_l, n_s), np.nan),
                 "val_acc": np.full((len(values), n_l, n_s), np.nan)} for p in parametrizations}
  for i, value in enumerate(values):
    for p in parametrizations:
      t0 = time.time()
      loss, acc = jax.device_get(build(p, value)(data.lr_r, data.seed_r))
      per_run[p]["loss"][i] = np.asarray(loss).reshape(n_l, n_s)
      per_run[p]["val_acc"][i] = np.asarray(acc).reshape(n_l, n_s)
      med = np.median(np.where(np.isfinite(per_run[p]["loss"][i]), per_run[p]["loss"][i],
                               np.inf), axis=1)
      log(f"{axis} {value:5d} {p:9s}: {n_l * n_s} runs in {time.time() - t0:6.1f} s; best lr "
          f"{_fmt_lr(config.lrs[int(np.argmin(med))]) if np.isfinite(med).any() else '-'}, "
          f"loss {np.min(med):.4f}")
    results.write_json(os.path.join(out_dir, "runs.json"), {  # progress, rewritten per value
        "config": dataclasses.asdict(config), f"done_{axis}s": list(values[:i + 1]),
        **(extra or {}),
        "runs": {p: {k: v[:i + 1] for k, v in d.items()} for p, d in per_run.items()}})
  return per_run


def transfer_table(axis: str, values: Sequence[int], lrs: Sequence[float],
                   per_run: dict[str, dict]) -> dict[str, Any]:
  """``transfer.json``: ``{axis: values, "lrs", "parametrizations": {p: {"best_lr",
  "final_loss"}}}``, the median over seeds (a diverged run +inf) and its argmin lr."""
  transfer: dict[str, Any] = {axis: list(values), "lrs": list(lrs), "parametrizations": {}}
  for p, d in per_run.items():
    loss = np.where(np.isfinite(d["loss"]), d["loss"], np.inf)
    median = np.median(loss, axis=2)
    transfer["parametrizations"][p] = {"best_lr": best_lrs(median, lrs),
                                       "final_loss": median.tolist()}
  return transfer


def run_info(command: str, prov: dict | None, dataset: data_lib.Dataset,
             clock: tuple[float, float, float], **extra) -> dict[str, Any]:
  """The summary's provenance: command, date, machine, data, wall/CPU time and load.

  ``clock``: ``(time.time(), time.process_time(), os.getloadavg()[0])`` at the start.
  """
  prov = prov or {}
  return {"command": command,
          "date": prov.get("date") or datetime.datetime.now(datetime.timezone.utc).strftime(
              "%Y-%m-%d %H:%M UTC"),
          "machine": f"{provenance_lib.machine()}, jax {jax.__version__} on "
                     f"{jax.default_backend()}",
          **extra,
          "dataset": f"{dataset.name}, {len(dataset.y_train)} training examples",
          "seconds": time.time() - clock[0],
          # CPU time of this process (all threads): on a shared machine, what the run
          # would take with the cores to itself is closer to cpu_seconds / cores.
          "cpu_seconds": time.process_time() - clock[1],
          "load_average_1min_at_start_and_end": [clock[2], os.getloadavg()[0]]}


def given_multipliers(family: Family, config: Config) -> dict[str, float]:
  """The one (input_mult, output_mult) pair ``config`` gives: ``{}`` for (1, 1) or a grid."""
  pair = (config.log2_input_mults, config.log2_output_mults)
  if config.tunes_multipliers or pair == ((0,), (0,)):
    return {}
  if not family.multipliers:
    raise ValueError(f"{family.title} has no input/output multipliers: log2_input_mults and "
                     "log2_output_mults must be (0,)")
  return {"input_mult": 2.0 ** pair[0][0], "output_mult": 2.0 ** pair[1][0]}


def tune_multipliers(family: Family, config: Config, data: SweepData,
                     log=print) -> dict[str, Any]:
  """The paper's protocol: every (input_mult, output_mult, lr) at the base width, best pair.

  At the base width SP and μP are the same model, so the pair tuned there is both's. A
  pair's loss is its best lr's median over seeds (``best_lrs``).

  Returns:
    ``{"log2_input_mults", "log2_output_mults", "loss"`` (``[input][output][lr][seed]``),
    ``"best_loss"`` (``[input][output]``, None where every lr diverged), ``"best_lr"``
    (same shape), ``"best_log2_input_mult"``, ``"best_log2_output_mult"}``.
  """
  if not family.multipliers:
    raise ValueError(f"{family.title} has no input/output multipliers to tune: "
                     "log2_input_mults and log2_output_mults must be (0,)")
  base = config.widths[0]
  n_l, n_s = len(config.lrs), config.seeds
  ins, outs = config.log2_input_mults, config.log2_output_mults
  loss = np.full((len(ins), len(outs), n_l, n_s), np.nan)
  meta = family_meta(family, "mup", base, base, data.x_train[:1])
  for a, la in enumerate(ins):
    for b, lb in enumerate(outs):
      t0 = time.time()
      model = family.make_model("mup", base, base, input_mult=2.0 ** la, output_mult=2.0 ** lb)
      sweep = make_sweep(model, meta, config, *data.arrays)
      loss[a, b] = np.asarray(jax.device_get(sweep(data.lr_r, data.seed_r)[0])).reshape(n_l, n_s)
      med = np.median(np.where(np.isfinite(loss[a, b]), loss[a, b], np.inf), axis=1)
      log(f"base width {base}: input_mult 2^{la}, output_mult 2^{lb}: {n_l * n_s} runs in "
          f"{time.time() - t0:5.1f} s; best loss {np.min(med):.4f}")
  return multiplier_grid(ins, outs, loss, config.lrs)


def multiplier_grid(ins: Sequence[int], outs: Sequence[int], loss: np.ndarray,
                    lrs: Sequence[float]) -> dict[str, Any]:
  """The tuned grid's record from its losses ``[input][output][lr][seed]`` (+inf or NaN:
  diverged): per pair its best lr and that lr's median loss, and the best pair.

  Raises:
    FloatingPointError: every (input_mult, output_mult, lr) diverged.
  """
  median = np.median(np.where(np.isfinite(loss), loss, np.inf), axis=3)
  best = median.min(axis=2)
  if not np.isfinite(best).any():
    raise FloatingPointError("every (input_mult, output_mult, lr) diverged at the base width")
  a, b = np.unravel_index(int(np.argmin(best)), best.shape)
  return {"log2_input_mults": list(ins), "log2_output_mults": list(outs),
          "loss": loss,  # json_safe writes a non-finite loss as null
          "best_loss": [[float(v) if np.isfinite(v) else None for v in row] for row in best],
          "best_lr": [[best_lrs(median[i, j][None], lrs)[0] for j in range(len(outs))]
                      for i in range(len(ins))],
          "best_log2_input_mult": int(ins[a]), "best_log2_output_mult": int(outs[b])}


def grid_multipliers(grid: dict[str, Any]) -> dict[str, float]:
  """The best pair of :func:`multiplier_grid`'s record, as ``make_model``'s keywords."""
  return {"input_mult": 2.0 ** grid["best_log2_input_mult"],
          "output_mult": 2.0 ** grid["best_log2_output_mult"]}


def multipliers_entry(mults: dict[str, float], grid: dict | None, base: int) -> dict:
  """``transfer.json``'s ``"multipliers"``: the pair every width used, tuned at ``base``
  (``grid`` given) or given (``tuned_at_width`` None)."""
  return {**mults, "tuned_at_width": base if grid is not None else None}


def run(dataset: data_lib.Dataset, config: Any, out_dir: str, command: str,
        log=print, prov: dict | None = None, family: Family | None = None) -> dict[str, Any]:
  """The whole study; writes every output atomically in ``out_dir`` and returns transfer.json.

  ``config`` is a :class:`Config`, or any config with its fields (widths, lrs, seeds, steps,
  batch_size, eval_size, val_size, chunk, coord_steps, coord_batch); ``family`` the model
  trained (default: :func:`mlp_family`).
  """
  clock = time.time(), time.process_time(), os.getloadavg()[0]
  family = family or mlp_family(config)
  data = sweep_data(dataset, config, family.inputs)
  lrs = config.lrs
  base = config.widths[0]
  mults = given_multipliers(family, config)
  grid = None
  if config.tunes_multipliers:
    grid = tune_multipliers(family, config, data, log)
    mults = grid_multipliers(grid)

  def build(p, width):
    return make_sweep(family.make_model(p, width, base, **mults),
                      family_meta(family, p, width, base, data.x_train[:1]), config,
                      *data.arrays)

  per_run = sweep_axis("width", config.widths, PARAMETRIZATIONS, build, config, data, out_dir,
                       log, {"multiplier_grid": grid} if grid is not None else None)
  transfer = transfer_table("widths", config.widths, lrs, per_run)
  if mults:
    transfer["multipliers"] = multipliers_entry(mults, grid, base)
  claim = claims(transfer)
  transferred = claim["transferred_lr"] or lrs[len(lrs) // 2]
  log(f"coordinate check at lr {_fmt_lr(transferred)} ...")
  coord = run_coord_check(family, data.x_train[:config.coord_batch],
                          data.y_train[:config.coord_batch], config, transferred, mults)
  for p in PARAMETRIZATIONS:
    results.save_figure(coord[p].pop("_figure"), os.path.join(out_dir, f"coord_check_{p}.png"))
  results.write_json(os.path.join(out_dir, "coord_check.json"), coord)
  results.write_json(os.path.join(out_dir, "transfer.json"), transfer)
  plot_loss_vs_lr(transfer, os.path.join(out_dir, "loss_vs_lr.png"), family.title,
                  _opt_name(config))
  info = run_info(command, prov, dataset, clock, model=family.title)
  summary = {"info": info, "config": dataclasses.asdict(config), "claims": claim,
             "coord_check_max_abs_slope_last_step": {
                 p: coord[p]["max_abs_slope_last_step"] for p in PARAMETRIZATIONS},
             "coord_check_slopes_last_step": {
                 p: dict(zip(coord[p]["layers"], np.asarray(coord[p]["slopes"])[:, -1].tolist()))
                 for p in PARAMETRIZATIONS}}
  if grid is not None:
    summary["multiplier_grid"] = {k: grid[k] for k in (
        "log2_input_mults", "log2_output_mults", "best_log2_input_mult",
        "best_log2_output_mult", "best_loss", "best_lr")}
  results.write_json(os.path.join(out_dir, "summary.json"), summary)
  text = summary_markdown(transfer, claim, coord, info, grid, _opt_name(config))
  results.write_text(os.path.join(out_dir, "summary.md"), text + "\n")
  log(text)
  return transfer


def add_sweep_flags(p: argparse.ArgumentParser, full: Any, axis: str, example: str) -> None:
  """The lr-sweep flags every μP study has (lr grid, seeds, steps, batch and eval sizes), with
  ``full``'s defaults shown; ``axis`` names what the study varies ("width", "depth")."""
  p.add_argument("--log2-lrs", default=None, metavar="FIRST:LAST",
                 help=f"exponents of the lr grid, e.g. --log2-lrs={example} (default "
                      f"{full.log2_lrs[0]}:{full.log2_lrs[-1]})")
  p.add_argument("--seeds", type=cli.positive_int, default=None,
                 help=f"seeds per ({axis}, lr) (default {full.seeds})")
  p.add_argument("--steps", type=cli.positive_int, default=None,
                 help=f"Adam steps per run (default {full.steps})")
  p.add_argument("--batch-size", type=cli.positive_int, default=None,
                 help=f"examples per step (default {full.batch_size})")
  p.add_argument("--eval-size", type=cli.positive_int, default=None,
                 help=f"training examples the final loss is measured on (default "
                      f"{full.eval_size})")


def add_width_flags(p: argparse.ArgumentParser, full: Config, quick: Config) -> None:
  """The flags of a width study (widths, lr grid, seeds, steps, sizes), defaults shown."""
  p.add_argument("--widths", type=cli.positive_int_list, default=None, metavar="W,W,...",
                 help="comma-separated increasing widths (default "
                      f"{','.join(map(str, full.widths))}; --quick "
                      f"{','.join(map(str, quick.widths))})")
  add_sweep_flags(p, full, "width", "-14:-4")
  p.add_argument("--zero-readout", action=argparse.BooleanOptionalAction, default=None,
                 help="zero-init the readout kernel (SP and μP alike)")
  p.add_argument("--coord-steps", type=cli.positive_int, default=None,
                 help=f"Adam steps of the coord check (default {full.coord_steps})")
  p.add_argument("--train-size", type=cli.positive_int, default=None,
                 help="subsample the training split to this many examples")


def add_flags(p: argparse.ArgumentParser) -> None:
  add_width_flags(p, Config(), QUICK)
  p.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                 help="adam (default) or sgd with momentum (--paper: sgd)")
  p.add_argument("--momentum", type=cli.fraction, default=None,
                 help=f"SGD's momentum (default {Config().momentum})")
  p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                 help="Dense biases (default on; --paper: off, as mup's MLP example)")
  p.add_argument("--log2-input-mults", type=cli.int_list, default=None, metavar="A,B,...",
                 help="input multipliers 2^A, 2^B, ... tuned with the lr at the base width "
                      "(give it as --log2-input-mults=-8,-4,0; --paper: "
                      f"{','.join(map(str, PAPER.log2_input_mults))})")
  p.add_argument("--log2-output-mults", type=cli.int_list, default=None, metavar="A,B,...",
                 help="output multipliers 2^A, ... tuned with them (--paper: "
                      f"{','.join(map(str, PAPER.log2_output_mults))})")


ConfigT = TypeVar("ConfigT", bound=Config)


def sweep_config(args, base: Any, names: Sequence[str]) -> Any:
  """``base`` (a config dataclass) with the sweep flags given: ``--log2-lrs FIRST:LAST`` and
  the flags ``names`` (attribute = field name; a list, e.g. ``--widths``, becomes a tuple)."""
  changes: dict[str, Any] = {}
  if args.log2_lrs:
    try:
      lo, hi = (int(v) for v in args.log2_lrs.split(":"))
    except ValueError:
      raise ValueError(f"--log2-lrs must be 'first:last' ints, got {args.log2_lrs!r}") from None
    changes["log2_lrs"] = tuple(range(lo, hi + 1))
  for name in names:
    value = getattr(args, name)
    if isinstance(value, list):
      if value:
        changes[name] = tuple(value)
    elif value is not None:
      changes[name] = value
  return dataclasses.replace(base, **changes)


def width_config(args, full: ConfigT, quick: ConfigT, prog: str,
                 extra: Sequence[str] = ()) -> ConfigT:
  """Every check of a width study's flags (before any data or folder): ``full`` or ``quick``
  (``--quick``) with the flags given, ``extra`` naming the study's own flags (same names)."""
  config = sweep_config(args, quick if args.quick else full,
                        ("widths", "seeds", "steps", "batch_size", "eval_size", "coord_steps",
                         "zero_readout", *extra))
  cli.check_batch_size(args, config.batch_size, prog)
  return config


def config_from_args(args) -> Config:
  """Every check of the flags (before any data or folder); the study's :class:`Config`."""
  if args.paper and args.quick:
    raise ValueError("--paper and --quick are two presets: give one")
  return width_config(args, PAPER if args.paper else Config(), QUICK, RUNNER.prog,
                      extra=("optimizer", "momentum", "bias", "log2_input_mults",
                             "log2_output_mults"))


def _run(ctx) -> dict[str, Any]:
  return run(ctx.dataset, ctx.config, ctx.out_dir, ctx.provenance["command"], log=ctx.log,
             prov=ctx.provenance)


RUNNER = study.Runner("mup_transfer", __doc__.split("\n")[0], add_flags, config_from_args, _run,
                      presets={"quick": {"widths": QUICK.widths, "steps": QUICK.steps,
                                         "lrs": f"2^{QUICK.log2_lrs[0]}..2^{QUICK.log2_lrs[-1]}"},
                               "paper": {"widths": PAPER.widths, "steps": PAPER.steps,
                                         "optimizer": "SGD momentum 0.9, no biases, zero "
                                                      "readout, multipliers tuned at width 64",
                                         "lrs": f"2^{PAPER.log2_lrs[0]}..2^{PAPER.log2_lrs[-1]}"}})


build_parser, main = RUNNER.parser, RUNNER.main


if __name__ == "__main__":
  cli.entry(main)
