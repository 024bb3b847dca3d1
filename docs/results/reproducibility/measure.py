"""Measures what is reproducible: the same study run twice, and run over 1 vs 2 devices.

Runs ``python -m experiments.sigmoid_mnist`` on scikit-learn's digits (offline, small)
four times, each in its own process with two simulated CPU devices available:

* ``repeat_a``, ``repeat_b``: the same command twice, one device;
* ``runs_2``: ``--devices 2 --parallel runs`` (whole runs split over the devices);
* ``data_2``: ``--devices 2 --parallel data`` (each batch split over the devices).

and writes ``result.json`` (every metric's largest difference from ``repeat_a``, and
whether it is bit-for-bit equal) and ``summary.md`` next to this file, with the
provenance of the measuring machine (jax/jaxlib versions, device count).

    python docs/results/reproducibility/measure.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
STUDY = ["--dataset", "digits", "--digits-repeat", "1", "--epochs", "5", "--seeds", "2",
         "--init", "torch_linear_default,xavier_uniform", "--no-progress"]
VARIANTS = {"repeat_a": ["--devices", "1"], "repeat_b": ["--devices", "1"],
            "runs_2": ["--devices", "2", "--parallel", "runs"],
            "data_2": ["--devices", "2", "--parallel", "data"]}
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "test_loss", "test_acc")


def _run(flags: list[str], out: str) -> dict:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT,
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  cmd = [sys.executable, "-m", "experiments.sigmoid_mnist", *STUDY, *flags, "--out", out]
  subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
  with open(os.path.join(out, "history.json"), encoding="utf-8") as f:
    return json.load(f)


def _values(history: dict) -> dict[str, list[float]]:
  """Every run's value of each metric, per epoch (test_*: once, at the end)."""
  def flat(value):
    return list(value) if isinstance(value, list) else [value]
  return {k: [v for run in history["runs"] for v in flat(run[k])] for k in METRICS}


def compare(reference: dict, other: dict) -> dict:
  """Per metric: bit-for-bit equal?, largest absolute difference."""
  ref, got = _values(reference), _values(other)
  return {k: {"bit_equal": ref[k] == got[k],
              "max_abs_diff": max(abs(a - b) for a, b in zip(ref[k], got[k], strict=True))}
          for k in METRICS}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                      help="where result.json and summary.md go (default: next to this file)")
  args = parser.parse_args(argv)
  sys.path.insert(0, ROOT)
  os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  from experiments.common import provenance
  with tempfile.TemporaryDirectory() as tmp:
    histories = {name: _run(flags, os.path.join(tmp, name)) for name, flags in VARIANTS.items()}
  record = provenance.provenance("measure", argv)
  record["command"] = " ".join(["python", "docs/results/reproducibility/measure.py",
                                *(sys.argv[1:] if argv is None else argv)])
  result = {
      "provenance": record,
      "study": "python -m experiments.sigmoid_mnist " + " ".join(STUDY),
      "variants": {name: " ".join(flags) for name, flags in VARIANTS.items()},
      "vs_repeat_a": {name: compare(histories["repeat_a"], h)
                      for name, h in histories.items() if name != "repeat_a"}}
  with open(os.path.join(args.out, "result.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
  lines = ["# Reproducibility: the same study twice, and over 1 vs 2 devices", "",
           provenance.format_provenance(result["provenance"]), "",
           (f"Study: `{result['study']}` (2 inits x 2 seeds, 5 epochs; every metric of "
            "every epoch and run compared with `repeat_a`)."), "",
           "Largest absolute difference from `repeat_a` per metric (0 = bit-for-bit equal):",
           "",
           "| variant | flags | " + " | ".join(METRICS) + " |",
           "|---|---|" + "---|" * len(METRICS)]
  for name, diffs in result["vs_repeat_a"].items():
    cells = " | ".join(f"{diffs[k]['max_abs_diff']:.3g}" for k in METRICS)
    lines.append(f"| {name} | `{result['variants'][name]}` | {cells} |")
  with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
