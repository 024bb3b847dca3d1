"""Writes docs/results/diagnostics/{summary.md,tables.json}: diagnose and lsuv on the four
test models of tests/signal_models.py (the same models and weights the tests check).

  python docs/results/diagnostics/make_tables.py
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import jax  # noqa: E402

import jinit  # noqa: E402
import signal_models as sm  # noqa: E402
from experiments.common import results  # noqa: E402

COMMAND = "python docs/results/diagnostics/make_tables.py"
TITLES = {"nnx_mlp": "nnx MLP (Linear x 6; relu, gelu, silu, tanh, sigmoid between)",
          "nnx_block": "nnx pre-LN transformer block (MultiHeadAttention, Einsum up, Linear down)",
          "linen_transformer": "linen 2-block pre-LN transformer (issue 10's model)",
          "residual_mlp": "linen residual MLP (embed, 2 blocks x + W2 relu(W1 x), readout)"}


def mean_square(y, labels):
  """The transformers' loss here: their output is the residual stream (no head)."""
  del labels
  return (y.astype("float32") ** 2).mean()


def loss_kwargs(name, x):
  if name in ("nnx_mlp", "residual_mlp"):  # classifiers: cross-entropy on made-up labels
    return {"labels": jax.numpy.arange(x.shape[0]) % sm.CLASSES}
  return {"loss_fn": mean_square}


def kernel_count(model, variables):
  from flax import nnx
  if variables is None:
    return sum(1 for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)) if p[-1] == "kernel")
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  return sum(1 for p, _ in flat if p[-1].key == "kernel")


def main():
  out = {"command": COMMAND, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "machine": f"{platform.machine()} {platform.system()}, "
      f"{os.cpu_count()} cores (shared), jax {jax.__version__}", "models": {}}
  md = ["# diagnose and lsuv on models that are not chains", "",
        f"Written by `{COMMAND}` on {out['date']} ({out['machine']}).", "",
        "| model | kernels | rows | layer | norm | residual | uninstrumented | "
        "lsuv layers converged |", "|---|---|---|---|---|---|---|---|"]
  tables = []
  for name in sm.MODELS:
    model, variables, x, _ = sm.build(name)
    t0 = time.perf_counter()
    if variables is None:
      report = jinit.diagnostics.diagnose(model, x, **loss_kwargs(name, x))
    else:
      report = jinit.diagnostics.diagnose(model, variables, x, **loss_kwargs(name, x))
    seconds = time.perf_counter() - t0
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      if variables is None:
        _, info = jinit.lsuv.lsuv(model, x, jax.random.key(5), return_info=True)
        after = jinit.diagnostics.diagnose(model, x, **loss_kwargs(name, x))
      else:
        v, info = jinit.lsuv.lsuv(model, variables, x, jax.random.key(5), return_info=True)
        after = jinit.diagnostics.diagnose(model, v, x, **loss_kwargs(name, x))
    counts = {r: len(report.by_role(r)) for r in jinit.diagnostics.REPORT_ROLES}
    entry = {"title": TITLES[name], "kernels": kernel_count(model, variables),
             "rows": len(report.rows), "by_role": counts, "diagnose_seconds": seconds,
             "table": report.table(), "rows_detail": report.to_dict(histograms=False)["rows"],
             "lsuv": [i.to_dict() for i in info], "lsuv_warnings": [str(w.message)
                                                                    for w in caught],
             "table_after_lsuv": after.table()}
    out["models"][name] = entry
    md.append(f"| {TITLES[name]} | {entry['kernels']} | {entry['rows']} | {counts['layer']} | "
              f"{counts['norm']} | {counts['residual']} | {counts['uninstrumented']} | "
              f"{sum(i.converged for i in info)} / {len(info)} |")
    tables += ["", f"## {TITLES[name]}", "", "At initialization (flax defaults):", "", "```",
               report.table(), "```", "", "After `lsuv`:", "", "```", after.table(), "```"]
  md += ["", "Roles: `#` = kernel layer, `n` = norm, `r` = residual stream (after the add; "
         "`x` = the skip), `u` = kernel not instrumented. `f = ?`: no later tensor is an "
         "elementwise f(z) of the layer's output (attention projections, a branch's last "
         "layer). Backward columns: cross-entropy on labels `i mod 5` for the two MLPs, the mean "
         "square of the output for the two transformers (no head)."] + tables
  results.write_json(os.path.join(HERE, "tables.json"), out)
  results.write_text(os.path.join(HERE, "summary.md"), "\n".join(md) + "\n")
  print("\n".join(md))


if __name__ == "__main__":
  main()
