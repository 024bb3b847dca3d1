"""experiments.deep_transformer: the ViT variants' inits, the model as data, a tiny offline run."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import deep_transformer as dt

CFG = dt.ViTConfig(tokens=16, patch_dim=49, depth=4, width=64, heads=4, mlp=128)


def _blocks(params, path):
  """One array of every block's leaf at ``path`` (e.g. "attn/out/kernel")."""
  out = []
  for b in params["blocks"]:
    for k in path.split("/"):
      b = b[k]
    out.append(np.ravel(b))
  return np.concatenate(out)


def test_patchify_is_row_major_patches():
  x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 784)
  p = dt.patchify(x, 7)
  assert p.shape == (2, 16, 49)
  img = x[1].reshape(28, 28)
  np.testing.assert_array_equal(p[1, 5], img[7:14, 7:14].ravel())  # patch (row 1, col 1)
  with pytest.raises(ValueError, match="patch"):
    dt.patchify(x, 5)


def test_variant_inits():
  key = jax.random.key(3)
  std = dt.init_params("preln_standard", CFG, key)
  gpt2 = dt.init_params("preln_gpt2", CFG, key)
  rezero = dt.init_params("noln_rezero", CFG, key)
  tfixup = dt.init_params("noln_tfixup", CFG, key)
  # Standard: Xavier uniform, bound sqrt(6 / (64 + 64)), gates 1, biases 0, LN scale 1.
  q = _blocks(std, "attn/query/kernel")
  bound = math.sqrt(6 / 128)
  assert 0.95 * bound < np.max(np.abs(q)) <= bound * (1 + 1e-6)
  assert np.all(_blocks(std, "gate/alpha") == 1) and not np.any(_blocks(std, "mlp/fc1/bias"))
  assert np.all(_blocks(std, "ln1/scale") == 1)
  # GPT-2: N(0, 0.02^2), out and fc2 N(0, (0.02 / sqrt(2 * 4))^2). Sample variance within
  # 6 standard errors (6 sqrt(2/n) relative) of the law's.
  for path, s in (("attn/query/kernel", 0.02), ("attn/out/kernel", 0.02 / math.sqrt(8)),
                  ("mlp/fc2/kernel", 0.02 / math.sqrt(8))):
    w = _blocks(gpt2, path)
    assert np.var(w) == pytest.approx(s * s, rel=6 * math.sqrt(2 / w.size)), path
  # ReZero: every gate 0; T-Fixup: value/out/mlp = Xavier x 0.67 N^(-1/4), q/k plain Xavier.
  assert not np.any(_blocks(rezero, "gate/alpha"))
  factor = 0.67 * 4 ** -0.25
  for path, fans in (("attn/value/kernel", (64, 64)), ("mlp/fc1/kernel", (64, 128)),
                     ("mlp/fc2/kernel", (128, 64))):
    b = math.sqrt(6 / sum(fans)) * factor
    assert 0.95 * b < np.max(np.abs(_blocks(tfixup, path))) <= b * (1 + 1e-6), path
  np.testing.assert_array_equal(_blocks(tfixup, "attn/query/kernel"), q)  # same key, untouched
  emb = tfixup["embed"]["kernel"]  # N(0, 1/d) x (9N)^(-1/4), 3136 samples
  assert np.std(emb) == pytest.approx(64 ** -0.5 * 36 ** -0.25, rel=6 * math.sqrt(0.5 / emb.size))
  with pytest.raises(ValueError, match="variant"):
    dt.init_params("postln_fixup", CFG, key)


def test_forward_streams_at_init():
  cfg = dt.ViTConfig(tokens=16, patch_dim=49, depth=6, width=32, heads=4, mlp=64)
  x = jax.random.normal(jax.random.key(0), (8, 16, 49))
  std = {}
  forward = jax.jit(dt.forward, static_argnums=3)  # one program for every variant
  for v in dt.VARIANTS:
    params = dt.stack_blocks(dt.init_params(v, cfg, jax.random.key(1)))
    logits, std[v] = forward(params, jnp.asarray(dt.ARCH[v]), x, cfg)
    assert logits.shape == (8, 10) and np.all(np.isfinite(logits))
    assert std[v].shape == (7,)
  # ReZero: alpha = 0 makes every block the identity, the stream keeps the embedding's std.
  np.testing.assert_array_equal(std["noln_rezero"], np.full(7, std["noln_rezero"][0]))
  # Post-LN: each block ends with a LayerNorm of scale 1, bias 0: std 1 (up to eps).
  np.testing.assert_allclose(std["postln_standard"][1:], 1.0, rtol=1e-4)
  # Without LN the standard stream grows with depth; Pre-LN's grows more slowly.
  assert std["noln_standard"][-1] > 2 * std["noln_standard"][0]
  assert std["noln_standard"][-1] > std["preln_standard"][-1]


def test_smoke_run_digits(tmp_path, capsys):
  out = tmp_path / "dt"
  args = ["--dataset", "digits", "--patch", "4", "--depths", "2,3", "--steps", "4", "--seeds",
          "2", "--batch-size", "16", "--width", "16", "--heads", "2", "--mlp", "16",
          "--test-size", "50", "--no-progress", "--out", str(out)]
  record = dt.main(args)
  saved = json.loads((out / "results.json").read_text())
  for name in ("summary.md", "residual_std.png", "loss.png"):
    assert (out / name).stat().st_size > 0, name
  assert saved["complete"] and saved["config"]["tokens"] == 4
  assert "python -m experiments.deep_transformer" in saved["command"] and saved["machine"]
  assert [(r["depth"], r["variant"]) for r in saved["rows"]] == [
      (d, v) for d in (2, 3) for v in dt.VARIANTS]
  for res in saved["depth_results"]:
    assert len(res["runs"]) == 2 * len(dt.VARIANTS)  # every seed of every variant
    for r in res["runs"]:
      assert len(r["loss"]) == 4 and len(r["stream_std_at_init"]) == res["depth"] + 1
  assert {c["claim"].split(":")[0] for c in saved["claims"]} >= {"ReZero", "T-Fixup",
                                                                   "Xiong et al."}
  assert "| 3 | noln_tfixup |" in capsys.readouterr().out
  assert record["rows"] == saved["rows"]
  assert saved["cpu_seconds"] > 0 and all(
      c["verdict"] in ("agrees", "partly agrees", "disagrees") for c in saved["claims"])
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:  # refused before any work
    dt.main(args)  # never overwrites a finished run
  assert exit_info.value.code == 2
  assert "folder exists and is not empty" in capsys.readouterr().err
  again = dt.main(["--resummarize", str(out)])  # recomputes rows/claims, keeps the numbers
  assert again["depth_results"] == saved["depth_results"] and again["rows"] == saved["rows"]
  assert "**" in (out / "summary.md").read_text()
  with pytest.raises(SystemExit, match="no results.json"):
    dt.main(["--resummarize", str(tmp_path / "nothing")])


@pytest.mark.parametrize("flags, message", [
    (["--variants", "preln_standard,bogus"], "--variants: must be a comma-separated subset"),
    (["--depths", "6,0"], "--depths: must be an int >= 1"),
    (["--steps", "-1"], "--steps: must be an int >= 1"),
    (["--lr", "inf"], "--lr: must be a positive finite number"),  # finding 14: ran, exit 0
    (["--heads", "3"], "--heads 3 must divide --width 32"),  # finding 15: a late traceback
    (["--patch", "3"], "--patch 3 must divide the image side 8"),
    (["--batch-size", "0"], "--batch-size: must be an int >= 1"),
])
def test_bad_cli_input(tmp_path, capsys, flags, message):
  with pytest.raises(SystemExit) as exit_info:
    dt.main(["--dataset", "digits", "--out", str(tmp_path / "x")] + flags)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1, err
  assert not (tmp_path / "x").exists()  # before any data or folder


def test_vit_config_checks_heads():
  with pytest.raises(ValueError, match="divisible"):
    dt.ViTConfig(tokens=4, patch_dim=16, depth=2, width=30, heads=4)
