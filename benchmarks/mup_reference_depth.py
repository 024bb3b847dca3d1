"""microsoft/mup on the depth study's setup: best Adam lr of the residual MLP vs depth.

The PyTorch reference of :mod:`experiments.mup_depth`: the same pre-LN residual MLP on MNIST
(``784 -> width``, ``L`` blocks ``x <- x + a * fc2(relu(fc1(LN(x))))``, ``LN -> 10``; LayerNorm
epsilon 1e-6 as flax's), the same depths, lr grid, seeds and steps, trained on the same
examples in the same batch order and scored on the same evaluation subset:

* ``sp``: ``a = 1``, ``torch.optim.Adam`` with one lr;
* ``mup`` (width only): microsoft/mup: ``mup.MuReadout``, ``mup.set_base_shapes`` against the
  model at the base width (same depth), ``mup.MuAdam``; ``a = 1``;
* ``depth_mup`` and ``completep``: **not from microsoft/mup** (it has no depth rules):
  written here in PyTorch from the papers' formulas as ``jinit.mup`` applies them, on top of
  the ``mup`` model and ``MuAdam``: ``a = (L/L_base)^-alpha`` (alpha 1/2: Tensor Programs VI,
  https://arxiv.org/abs/2310.02244, and Bordelon et al. 2023; alpha 1: CompleteP, Dey et al.
  2025, https://arxiv.org/abs/2505.01618), and for every parameter inside a residual block
  Adam's lr ``x (L/L_base)^(alpha-1)`` and epsilon ``x (L/L_base)^-alpha`` (one ``MuAdam``
  parameter group for the blocks).

The weights are an independent ``torch`` draw with the jinit study's law
(:mod:`benchmarks.mup_reference_common`); ``set_base_shapes`` runs with ``rescale_params=False``
because the law already holds μP's readout init (N(0, 1/base_width)). The claims are
:func:`experiments.mup_depth.claims` of the ``transfer.json`` written here (the study's schema,
``"depths"``).

  python benchmarks/mup_reference_depth.py --data-dir DIR --out OUT [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mup  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks import mup_reference_common as common  # noqa: E402
from experiments import mup_depth as study  # noqa: E402
from experiments import mup_transfer  # noqa: E402

LN_EPS = 1e-6  # flax.linen.LayerNorm's default epsilon (torch's is 1e-5)
ADAM_EPS = 1e-8  # optax.adam's and torch.optim.Adam's default
ALPHA = {"sp": 0.0, "mup": 0.0, "depth_mup": 0.5, "completep": 1.0}
JINIT_RESULT = "docs/results/mup_depth/transfer.json"


def depth_rules(parametrization: str, depth: int, base_depth: int) -> dict[str, float]:
  """``{"branch", "lr", "eps"}``: the branch multiplier and a block parameter's Adam lr and
  epsilon factors, ``(L/L0)^-alpha``, ``(L/L0)^(alpha-1)`` and ``(L/L0)^-alpha`` (all 1 for
  SP and width-only μP)."""
  alpha, m = ALPHA[parametrization], depth / base_depth
  if alpha == 0.0:
    return {"branch": 1.0, "lr": 1.0, "eps": 1.0}
  return {"branch": m ** -alpha, "lr": m ** (alpha - 1), "eps": m ** -alpha}


class Block(nn.Module):
  """One pre-LN residual block: ``x + mult * fc2(relu(fc1(LN(x))))``."""

  def __init__(self, width: int, mult: float):
    super().__init__()
    self.mult = mult
    self.ln = nn.LayerNorm(width, eps=LN_EPS)
    self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

  def forward(self, x):
    return x + self.mult * self.fc2(torch.relu(self.fc1(self.ln(x))))


class ResMLP(nn.Module):
  """``in -> depth x Block -> LN -> readout``; μP's ``MuReadout`` when ``mu``."""

  def __init__(self, width: int, depth: int, *, mu: bool, branch_mult: float = 1.0,
               input_dim: int = 784, num_classes: int = 10):
    super().__init__()
    self.add_module("in", nn.Linear(input_dim, width))
    self.blocks = nn.ModuleList(Block(width, branch_mult) for _ in range(depth))
    self.ln_f = nn.LayerNorm(width, eps=LN_EPS)
    self.out = mup.MuReadout(width, num_classes) if mu else nn.Linear(width, num_classes)

  def forward(self, x):
    x = getattr(self, "in")(x)
    for block in self.blocks:
      x = block(x)
    return self.out(self.ln_f(x))


def init_(model: ResMLP, *, base_width: int, mu: bool, gen: torch.Generator) -> None:
  """The jinit study's law: LeCun truncated normal kernels, biases zero, LN 1/0, readout
  N(0, 1/fan_in) (SP) or N(0, 1/base_width) (μP)."""
  common.init_linears_(model, model.out, base_width=base_width, mu=mu, gen=gen)


def build(config: study.Config, parametrization: str, depth: int, seed: int,
          input_dim: int) -> tuple[ResMLP, Any]:
  """``(model, make_optimizer(lr))`` of ``parametrization`` at ``depth``, drawn from ``seed``."""
  mu = parametrization != "sp"
  rules = depth_rules(parametrization, depth, config.base_depth)

  def make(width: int) -> ResMLP:
    return ResMLP(width, depth, mu=mu, branch_mult=rules["branch"], input_dim=input_dim)

  model = make(config.width)
  if mu:
    mup.set_base_shapes(model, make(config.base_width), rescale_params=False)
  init_(model, base_width=config.base_width, mu=mu, gen=torch.Generator().manual_seed(seed))

  def optimizer(lr):
    if not mu:
      return torch.optim.Adam(model.parameters(), lr=lr, eps=ADAM_EPS)
    branch = [p for n, p in model.named_parameters() if n.startswith("blocks.")]
    other = [p for n, p in model.named_parameters() if not n.startswith("blocks.")]
    groups = [{"params": other},
              {"params": branch, "lr": lr * rules["lr"], "eps": ADAM_EPS * rules["eps"]}]
    return mup.MuAdam(groups, lr=lr, eps=ADAM_EPS)

  return model, optimizer


def group_factors(optimizer: torch.optim.Optimizer, model: nn.Module, lr: float
                  ) -> dict[str, tuple[float, float]]:
  """``{torch parameter name: (lr / lr, eps / ADAM_EPS)}`` of its optimizer group."""
  names = {id(p): n for n, p in model.named_parameters()}
  return {names[id(p)]: (g["lr"] / lr, g["eps"] / ADAM_EPS)
          for g in optimizer.param_groups for p in g["params"]}


def adam_step(params: dict, grads: dict, state: dict, step: int, lr_r: torch.Tensor,
              factors: dict, b1: float = 0.9, b2: float = 0.999) -> None:
  """One Adam step on stacked runs, in place: ``p -= lr_r * f_lr * m_hat / (sqrt(v_hat) +
  ADAM_EPS * f_eps)``, torch.optim.Adam's update with a learning rate per run (the leading
  axis) and the parameter's (lr, eps) factors ``f_lr, f_eps`` from its ``MuAdam`` group.

  Args:
    params, grads: ``{name: (R, ...)}`` tensors (``params`` updated in place).
    state: ``{name: (m, v)}``, updated in place (start from zeros).
    step: the 1-based step count (bias correction).
    lr_r: ``(R,)`` base learning rates.
    factors: ``{name: (f_lr, f_eps)}`` (:func:`group_factors`).
  """
  bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
  with torch.no_grad():
    for name, p in params.items():
      g, (m, v) = grads[name], state[name]
      m.mul_(b1).add_(g, alpha=1 - b1)
      v.mul_(b2).addcmul_(g, g, value=1 - b2)
      f_lr, f_eps = factors[name]
      lr = (lr_r * (f_lr / bc1)).view((-1,) + (1,) * (p.ndim - 1))
      p.sub_(lr * m / ((v / bc2).sqrt() + ADAM_EPS * f_eps))


class Ensemble:
  """R runs of one (parametrization, depth) as stacked tensors: one batched forward per step.

  Run ``r`` is the mup-built model of seed ``seeds_r[r]`` (:func:`build`: its init, its
  branch multiplier, its ``MuReadout`` multiplier) trained at lr ``lrs_r[r]`` with the
  (lr, eps) factors of its ``MuAdam`` groups: the same computation as training each
  :func:`build` model with its optimizer (checked by the tests), batched for speed.
  """

  def __init__(self, config: study.Config, parametrization: str, depth: int,
               seeds_r: list[int], input_dim: int):
    models = {s: build(config, parametrization, depth, s, input_dim) for s in set(seeds_r)}
    model, optimizer = models[seeds_r[0]]
    self.factors = group_factors(optimizer(1.0), model, 1.0)
    self.mult = depth_rules(parametrization, depth, config.base_depth)["branch"]
    out = model.out
    self.readout_mult = (out.output_mult / out.width_mult()
                         if isinstance(out, mup.MuReadout) else 1.0)
    self.depth, self.width = depth, config.width
    named = {s: dict(m.named_parameters()) for s, (m, _) in models.items()}
    self.params = {n: torch.stack([named[s][n].detach() for s in seeds_r]).clone()
                   for n in named[seeds_r[0]]}

  def forward(self, params: dict, x: torch.Tensor) -> torch.Tensor:
    """``x (R, B, input_dim)`` -> logits ``(R, B, classes)``."""
    def linear(name, h):
      return torch.baddbmm(params[name + ".bias"].unsqueeze(1), h,
                           params[name + ".weight"].transpose(1, 2))

    def norm(name, h):
      h = nn.functional.layer_norm(h, (self.width,), eps=LN_EPS)
      return h * params[name + ".weight"].unsqueeze(1) + params[name + ".bias"].unsqueeze(1)

    h = linear("in", x)
    for i in range(self.depth):
      b = f"blocks.{i}."
      h = h + self.mult * linear(b + "fc2", torch.relu(linear(b + "fc1", norm(b + "ln", h))))
    return linear("out", norm("ln_f", h) * self.readout_mult)

  def train(self, lrs_r: torch.Tensor, batches_r: np.ndarray, x_train, y_train, x_eval,
            y_eval, x_val, y_val) -> tuple[np.ndarray, np.ndarray]:
    """Adam over ``batches_r (R, steps, B)``; per run (final eval loss, val accuracy)."""
    params = {n: p.clone().requires_grad_() for n, p in self.params.items()}
    state = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}
    idx = torch.from_numpy(batches_r.astype(np.int64))
    n_runs = idx.shape[0]
    for t in range(idx.shape[1]):
      b = idx[:, t]
      logits = self.forward(params, x_train[b])
      # sum of the runs' mean losses: each run's gradient is its own loss's
      loss = nn.functional.cross_entropy(logits.flatten(0, 1), y_train[b].flatten(),
                                         reduction="sum") / b.shape[1]
      grads = torch.autograd.grad(loss, list(params.values()))
      adam_step(params, dict(zip(params, grads)), state, t + 1, lrs_r, self.factors)
    with torch.no_grad():
      def per_run_loss(x, y):
        logits = self.forward(params, x.expand(n_runs, *x.shape))
        return nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(n_runs),
                                           reduction="none").view(n_runs, -1).mean(1)
      eval_loss = per_run_loss(x_eval, y_eval).numpy()
      logits = self.forward(params, x_val.expand(n_runs, *x_val.shape))
      acc = (logits.argmax(-1) == y_val).float().mean(1).numpy()
    eval_loss = np.where(np.isfinite(eval_loss), eval_loss, np.inf)
    return eval_loss, acc


def main(argv=None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
  common.add_sweep_flags(p, "depth")
  p.add_argument("--parametrizations", default=",".join(study.PARAMETRIZATIONS),
                 help="comma-separated, of " + ", ".join(study.PARAMETRIZATIONS))
  args = p.parse_args(argv)
  ps = tuple(args.parametrizations.split(","))
  bad = [x for x in ps if x not in study.PARAMETRIZATIONS]
  if bad:
    p.error(f"--parametrizations must be of {', '.join(study.PARAMETRIZATIONS)}, got {bad}")
  config = common.sweep_config(p, args, study.Config(), study.QUICK, "depth", ())
  torch.set_num_threads(args.threads)
  start, cpu_start, load_start = time.time(), time.process_time(), os.getloadavg()[0]
  command = "python benchmarks/mup_reference_depth.py " + " ".join(
      sys.argv[1:] if argv is None else argv)

  from experiments.common import data as data_lib
  from experiments.common import results

  dataset = data_lib.load_dataset("mnist", data_dir=args.data_dir)
  x_train, y_train, x_eval, y_eval, x_val, y_val = common.data_tensors(dataset, config)
  batches = [common.batch_schedule(study.SEED, s, config.steps, config.batch_size,
                                   len(y_train)) for s in range(config.seeds)]
  os.makedirs(args.out, exist_ok=True)

  n_l, n_s = len(config.lrs), config.seeds
  lrs_r = torch.tensor(np.repeat(config.lrs, n_s), dtype=torch.float32)  # run r = j * n_s + s
  seeds_r = [int(s) for s in np.tile(np.arange(n_s), n_l)]
  batches_r = np.stack([batches[s] for s in seeds_r])
  shape = (len(config.depths), n_l, n_s)
  per_run = {q: {"loss": np.full(shape, np.nan), "val_acc": np.full(shape, np.nan)}
             for q in ps}
  for i, depth in enumerate(config.depths):
    for q in ps:
      t0 = time.time()
      ens = Ensemble(config, q, depth, seeds_r, x_train.shape[1])
      loss, acc = ens.train(lrs_r, batches_r, x_train, y_train, x_eval, y_eval, x_val, y_val)
      per_run[q]["loss"][i] = loss.reshape(n_l, n_s)
      per_run[q]["val_acc"][i] = acc.reshape(n_l, n_s)
      med = np.median(per_run[q]["loss"][i], axis=1)
      print(f"depth {depth:3d} {q:9s}: {n_l * n_s} runs in {time.time() - t0:6.1f} s; best lr "
            f"{common.fmt_lr(config.lrs[int(np.argmin(med))])}, loss {np.min(med):.4f}",
            flush=True)
    results.write_json(os.path.join(args.out, "runs.json"), {  # progress, rewritten per depth
        "config": dataclasses.asdict(config), "parametrizations": list(ps),
        "done_depths": list(config.depths[:i + 1]),
        "runs": {q: {k: v[:i + 1] for k, v in d.items()} for q, d in per_run.items()}})
  transfer = mup_transfer.transfer_table("depths", config.depths, config.lrs, per_run)
  claim = study.claims(transfer)
  results.write_json(os.path.join(args.out, "transfer.json"), transfer)
  study.plot_loss_vs_lr(transfer, os.path.join(args.out, "loss_vs_lr.png"))
  inf = common.info(command, start, cpu_start, load_start)
  inf["dataset"] = f"{dataset.name}, {len(dataset.y_train)} training examples"
  results.write_json(os.path.join(args.out, "summary.json"), {
      "info": inf, "config": dataclasses.asdict(config), "claims": claim})
  text = "\n".join(common.header(
      "microsoft/mup reference: depth transfer on the residual MLP (PyTorch)", inf) + [
      "SP and μP (width only) are microsoft/mup's (`MuReadout`, `set_base_shapes`, "
      "`MuAdam`); **depth-μP and CompleteP are NOT from microsoft/mup** (it has no depth "
      "rules): written in PyTorch from the papers' formulas as jinit applies them (branch "
      "multiplier, block Adam lr and epsilon) on top of the mup model. Same data, batches and "
      "evaluation subset as `experiments.mup_depth`; init: an independent torch draw of "
      "jinit's law.", "",
      "The study's own summary of this transfer.json follows.", "",
      study.summary_markdown(transfer, claim, inf, config)])
  jinit = results.read_json(JINIT_RESULT) if os.path.exists(JINIT_RESULT) else None
  if jinit is not None and jinit["depths"] == transfer["depths"] and jinit["lrs"] == transfer[
      "lrs"]:
    text += "\n\n## jinit's run (`" + JINIT_RESULT + "`), best lr per depth\n\n"
    text += "\n".join(
        f"- {study.NAMES[q]}: jinit "
        + ", ".join(common.fmt_lr(v) for v in jinit["parametrizations"][q]["best_lr"])
        + "; mup reference "
        + ", ".join(common.fmt_lr(v) for v in transfer["parametrizations"][q]["best_lr"])
        for q in ps if q in jinit["parametrizations"])
  results.write_text(os.path.join(args.out, "summary.md"), text + "\n")
  print(text)
  return transfer


if __name__ == "__main__":
  main()
