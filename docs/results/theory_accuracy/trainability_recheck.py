"""Recomputes the theory values stored in docs/results/trainability/ with the current jinit.theory.

  PYTHONPATH=. python docs/results/theory_accuracy/trainability_recheck.py > docs/results/theory_accuracy/trainability_recheck.txt
"""
import json

import jax.numpy as jnp
import numpy as np

from jinit import theory

for path in ("docs/results/trainability/trainability.json", "docs/results/trainability/full/trainability.json"):
  d = json.load(open(path)); sw = np.asarray(d["sigma_w2"]); sb = d["sigma_b2"]
  xi = np.asarray(theory.xi_c(jnp.tanh, sw, sb)); chi = np.asarray(theory.chi1(jnp.tanh, sw, sb))
  crit = float(theory.critical_sigma_w2(jnp.tanh, sb))
  rel = lambda a, b: np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b)))
  depths = np.asarray(d["depths"], float)
  old_mask = depths[:, None] <= 6 * np.asarray(d["xi_c"])[None]; new_mask = depths[:, None] <= 6 * xi[None]
  print(path, "sigma_w2", sw.tolist(), "sb", sb)
  print("  max rel change xi_c %.2e chi1 %.2e critical %.2e (old %.6f new %.6f); 6xi_c masks equal: %s" % (
      rel(xi, d["xi_c"]), rel(chi, d["chi1"]), abs(crit - d["critical_sigma_w2"]) / d["critical_sigma_w2"],
      d["critical_sigma_w2"], crit, bool((old_mask == new_mask).all())))
