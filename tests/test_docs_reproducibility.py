"""The reproducibility the docs promise (docs/experiments.md, "Reproducibility").

* The same command on the same machine gives the same numbers, bit for bit: a small
  study (``experiments.sigmoid_mnist`` on digits, 2 inits x 2 seeds, 2 epochs) run twice,
  each in a fresh process (fresh compilation), gives identical history.json metrics.
* The measured result file under docs/results/reproducibility/ records what its numbers
  depend on (jax and jaxlib versions, device count) and is what the docs quote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_DIR = os.path.join(ROOT, "docs", "results", "reproducibility")
sys.path.insert(0, RESULT_DIR)
import measure  # noqa: E402  (docs/results/reproducibility/measure.py, found through sys.path)

TINY = ["--dataset", "digits", "--digits-repeat", "1", "--epochs", "2", "--seeds", "2",
        "--hidden", "8", "--depth", "2", "--init", "torch_linear_default,xavier_uniform",
        "--devices", "1", "--no-progress"]


def _study(out) -> dict:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
  proc = subprocess.run([sys.executable, "-m", "experiments.sigmoid_mnist", *TINY, "--out",
                         str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(out, "history.json"), encoding="utf-8") as f:
    return json.load(f)


@pytest.mark.slow  # the same study run twice in subprocesses (~20 s on 2 cores)
def test_same_command_twice_is_bit_for_bit_equal(tmp_path):
  first, second = _study(tmp_path / "a"), _study(tmp_path / "b")
  assert len(first["runs"]) == 4
  diffs = measure.compare(first, second)
  assert set(diffs) == set(measure.METRICS)
  for metric, d in diffs.items():
    assert d["bit_equal"] and d["max_abs_diff"] == 0.0, (metric, d)
  # compare() itself sees a one-ulp change.
  changed = json.loads(json.dumps(second))
  changed["runs"][0]["val_loss"][-1] = float(
      np.nextafter(changed["runs"][0]["val_loss"][-1], 10.0))
  assert not measure.compare(first, changed)["val_loss"]["bit_equal"]


def test_result_file_records_versions_and_devices():
  path = os.path.join(RESULT_DIR, "result.json")
  if not os.path.exists(path):
    pytest.fail("docs/results/reproducibility/result.json is missing: run measure.py")
  with open(path, encoding="utf-8") as f:
    result = json.load(f)
  for field in ("jax", "jaxlib", "device_count", "machine", "date", "command"):
    assert result["provenance"].get(field), field
  assert set(result["vs_repeat_a"]) == {"repeat_b", "runs_2", "data_2"}
  with open(os.path.join(RESULT_DIR, "summary.md"), encoding="utf-8") as f:
    summary = f.read()
  assert f"- jaxlib: {result['provenance']['jaxlib']}" in summary
  assert "| repeat_b |" in summary and "| data_2 |" in summary
