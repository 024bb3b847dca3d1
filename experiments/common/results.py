"""Writing results (atomically), the figure style, the page-style figure, the summary table.

Every file the experiments (and benchmarks) write goes through :func:`atomic_target`:
a temporary file beside the target, renamed over it on success, so a reader (or a
killed run) never sees a half-written file. Every figure starts from :func:`pyplot`,
the one matplotlib set-up (headless backend, one style). Across ``jax.distributed``
processes only process 0 writes: :func:`write_json`, :func:`write_text` and
:func:`save_figure` do nothing in the others (:mod:`experiments.common.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.common import distributed

ESCAPE_ACC = 0.5  # "escape epoch": first epoch with validation accuracy above this


def _umask_mode() -> int:
  """0o666 minus the umask: what ``open(path, "w")`` would give (mkstemp gives 0o600)."""
  mask = os.umask(0)
  os.umask(mask)
  return 0o666 & ~mask


@contextlib.contextmanager
def atomic_target(path: str, suffix: str = ""):
  """Yields a temporary path beside ``path``; on success it replaces ``path`` (mode as
  the umask gives), on error it is removed: readers never see a half-written file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, _umask_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _atomic_write(path: str, data: bytes) -> None:
  if not distributed.is_primary():  # across processes, process 0 alone writes results
    return
  with atomic_target(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


STYLE = {"axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 7, "figure.dpi": 110,
         "axes.spines.top": False, "axes.spines.right": False}


def pyplot():
  """``matplotlib.pyplot`` set up once for every experiment: Agg backend, :data:`STYLE`."""
  import matplotlib

  if matplotlib.get_backend().lower() != "agg":
    matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  plt.rcParams.update(STYLE)
  return plt


def save_figure(fig, path: str, dpi: int = 110) -> None:
  """Saves a matplotlib figure as PNG atomically (temporary file + ``os.replace``), closes it."""
  plt = pyplot()
  try:
    if not distributed.is_primary():  # across processes, process 0 alone writes results
      return
    with atomic_target(path, suffix=".png") as tmp:
      fig.savefig(tmp, dpi=dpi)
  finally:
    plt.close(fig)


def json_safe(obj: Any) -> Any:
  """JSON-safe: non-finite floats become None, numpy scalars/arrays become Python."""
  if isinstance(obj, dict):
    return {str(k): json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return json_safe(obj.tolist())
  if isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as JSON via a temporary file and ``os.replace`` (never half-written)."""
  _atomic_write(path, json.dumps(json_safe(obj), indent=1, allow_nan=False).encode())


def write_text(path: str, text: str) -> None:
  """Writes ``text`` atomically (temporary file + ``os.replace``)."""
  _atomic_write(path, text.encode())


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def save_history(out_dir: str, result) -> str:
  """Writes ``<out_dir>/history.json`` from a ``TrainResult``; returns the path."""
  path = os.path.join(out_dir, "history.json")
  write_json(path, result.to_json())
  return path


# --------------------------------------------------------------------------- summaries


def init_label(init: str, bias_init: str) -> str:
  """``xavier_uniform + zero bias``, ``torch_linear_default (weights and biases)``, ..."""
  if bias_init == "zeros":
    return f"{init} + zero bias"
  if bias_init == init:
    return f"{init} (weights and biases)"
  return f"{init} + {bias_init} bias"


def group_label(run: dict[str, Any], runs: Sequence[dict[str, Any]] = ()) -> str:
  """The label of a run's init (kernel and bias), shared by its seeds."""
  del runs
  return init_label(run["init"], run["bias_init"])


def group_runs(history: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
  groups: dict[str, list[dict[str, Any]]] = {}
  for run in history["runs"]:
    groups.setdefault(group_label(run, history["runs"]), []).append(run)
  return groups


def escape_epoch(val_acc: Sequence[float], threshold: float = ESCAPE_ACC) -> int | None:
  """First epoch (1-based) whose validation accuracy exceeds ``threshold``; None if never."""
  for epoch, acc in enumerate(val_acc, start=1):
    if acc > threshold:
      return epoch
  return None


def chance_threshold(num_classes: int) -> float:
  """A run is "at chance" while its validation accuracy is below twice chance (0.2 for 10)."""
  return 2.0 / num_classes


def _median(values):
  values = [v for v in values if v is not None]
  return float(np.median(values)) if values else None


def summary_rows(history: dict[str, Any], num_classes: int = 10,
                 chance_epochs: Sequence[int] = (5,)) -> list[dict[str, Any]]:
  """Per init: seeds, escape epochs, final medians, fraction of seeds at chance.

  Fractions at chance are over the runs that reached that epoch; the last epoch is
  always included.
  """
  rows = []
  chance = chance_threshold(num_classes)
  epochs = history["config"]["epochs"]
  for label, runs in group_runs(history).items():
    escapes = [escape_epoch(r["val_acc"]) for r in runs]
    diverged = [r.get("diverged_epoch") if e is None else None for r, e in zip(runs, escapes)]
    never = [e is None and d is None for e, d in zip(escapes, diverged)]
    # Median with "never" as +inf: None when at least half the seeds never escaped.
    ranked = sorted(math.inf if e is None else e for e in escapes)
    med = float(np.median(ranked)) if ranked else None
    row = {
        "init": label, "seeds": len(runs), "stopped": sum(r["stopped"] is not None for r in runs),
        "escape_epoch_median": med if med is not None and math.isfinite(med) else None,
        "escape_epochs": escapes, "never_escaped": sum(never),
        # runs that hit a non-finite loss before escaping: the epoch it happened
        "diverged_epochs": [d for d in diverged if d is not None],
    }
    for name in ("train_loss", "val_loss", "train_acc", "val_acc"):
      row[f"final_{name}"] = _median([r[name][-1] if r[name] else None for r in runs])
    row["test_loss"] = _median([r["test_loss"] for r in runs])
    row["test_acc"] = _median([r["test_acc"] for r in runs])
    for e in sorted({e for e in chance_epochs if e < epochs} | {epochs}):
      reached = [r for r in runs if len(r["val_acc"]) >= e]
      row[f"at_chance_after_{e}"] = (sum(r["val_acc"][e - 1] < chance for r in reached)
                                     / len(reached) if reached else None)
    rows.append(row)
  return rows


def _fmt(v, spec=".4f"):
  if v is None:
    return "-"
  if isinstance(v, float):
    return format(v, spec)
  return str(v)


def _diverged_text(epochs: Sequence[int]) -> str:
  lo, hi = min(epochs), max(epochs)
  return f"diverged at epoch {lo}" if lo == hi else f"diverged at epochs {lo}-{hi}"


def all_diverged(history: dict[str, Any]) -> bool:
  """True when every run of a study stopped on a non-finite loss."""
  runs = history.get("runs", [])
  return bool(runs) and all(r.get("stopped") for r in runs)


def format_table(rows: Sequence[dict[str, Any]], epochs: int) -> str:
  """A markdown table (medians over seeds)."""
  chance_cols = sorted(int(k.rsplit("_", 1)[1]) for k in rows[0] if k.startswith("at_chance"))
  head = (["init", "seeds", "escape epoch (median, range)", "train loss", "val loss", "test loss",
           "train acc", "val acc", "test acc"]
          + [f"at chance after {e}" for e in chance_cols])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    esc = [e for e in r["escape_epochs"] if e is not None]
    median = r["escape_epoch_median"]
    div = r.get("diverged_epochs", [])
    span = f" [{min(esc)}-{max(esc)}]" if esc else ""
    if median is not None:
      median = _fmt(median, "g")
    elif div and len(div) * 2 >= r["seeds"]:  # most seeds stopped on a non-finite loss
      median = f"{_diverged_text(div)} ({len(div)} of {r['seeds']})"
      span = f"; {len(esc)} escaped{span}" if esc else ""
      div = []
    else:
      median = f"never (>{epochs})"
    never = f", {r['never_escaped']} never" if r["never_escaped"] and esc else ""
    if div:
      never += f", {len(div)} {_diverged_text(div)}"
    cells = [r["init"], str(r["seeds"]), f"{median}{span}{never}",
             _fmt(r["final_train_loss"]), _fmt(r["final_val_loss"]), _fmt(r["test_loss"]),
             _fmt(r["final_train_acc"]), _fmt(r["final_val_acc"]), _fmt(r["test_acc"])]
    cells += [_fmt(r[f"at_chance_after_{e}"], ".2f") for e in chance_cols]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


# --------------------------------------------------------------------------- figure


def plot_history(history: dict[str, Any], path: str, title: str | None = None) -> str:
  """The page's figure: cross-entropy and accuracy vs epoch, train and validation.

  One color per init; with several seeds the line is the median and the band the
  25-75% quantiles over seeds. Written atomically as PNG.
  """
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for c, (label, runs) in enumerate(group_runs(history).items()):
    color = colors[c % len(colors)]
    for ax, metric in zip(axes, ("loss", "acc")):
      for split, style in (("train", "-"), ("val", "--")):
        series = [r[f"{split}_{metric}"] for r in runs]
        length = max((len(s) for s in series), default=0)
        if not length:
          continue
        epochs = np.arange(1, length + 1)
        med, lo, hi = [], [], []
        for e in range(length):
          vals = [s[e] for s in series if len(s) > e]
          q = np.quantile(vals, [0.5, 0.25, 0.75])
          med.append(q[0]), lo.append(q[1]), hi.append(q[2])
        ax.plot(epochs, med, style, color=color, label=f"{label} ({split})")
        if len(runs) > 1:
          ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, linewidth=0)
  for ax, name in zip(axes, ("Cross-entropy", "Accuracy")):
    ax.set_xlabel("Epoch")
    ax.set_ylabel(name)
  if axes[1].get_legend_handles_labels()[0]:
    axes[1].legend(fontsize=7)
  n = len(history["runs"])
  fig.suptitle(title or f"{history['config'].get('dataset', '')}: {n} run(s)"
               + (" (median, 25-75% band over seeds)" if n > 1 else ""))
  fig.tight_layout()
  save_figure(fig, path)
  return path
