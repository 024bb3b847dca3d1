"""experiments.deep_transformer: the ViT variants' inits, the model as data, a tiny offline run."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import deep_transformer as dt
from experiments.common import transformer_inits as extra
from jinit import recipes
from jinit import residual

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


@pytest.mark.slow  # the forward of every variant (~8 s on 2 cores)
def test_forward_streams_at_init():
  cfg = dt.ViTConfig(tokens=16, patch_dim=49, depth=6, width=32, heads=4, mlp=64)
  x = jax.random.normal(jax.random.key(0), (8, 16, 49))
  std = {}
  forward = jax.jit(dt.forward, static_argnums=3)  # one program for every variant
  for v in dt.VARIANTS:
    params = dt.stack_blocks(dt.init_params(v, cfg, jax.random.key(1)))
    logits, std[v] = forward(params, jnp.asarray(dt.arch_vector(v, 6)), x, cfg)
    assert logits.shape == (8, 10) and np.all(np.isfinite(logits))
    assert std[v].shape == (7,)
  # ReZero: alpha = 0 makes every block the identity, the stream keeps the embedding's std.
  np.testing.assert_array_equal(std["noln_rezero"], np.full(7, std["noln_rezero"][0]))
  # Post-LN: each block ends with a LayerNorm of scale 1, bias 0: std 1 (up to eps).
  np.testing.assert_allclose(std["postln_standard"][1:], 1.0, rtol=1e-4)
  # Without LN the standard stream grows with depth; Pre-LN's grows more slowly.
  assert std["noln_standard"][-1] > 2 * std["noln_standard"][0]
  assert std["noln_standard"][-1] > std["preln_standard"][-1]


def _var_close(w, s, what):
  """Sample variance of ``w`` within 6 standard errors (6 sqrt(2/n) relative) of s^2."""
  assert np.var(w) == pytest.approx(s * s, rel=6 * math.sqrt(2 / w.size)), what


def test_extra_variant_inits_follow_their_papers():
  key = jax.random.key(3)
  n, d = CFG.depth, CFG.width
  xavier = lambda fi, fo: math.sqrt(2 / (fi + fo))
  # DeepNorm (encoder, N = 4): Xavier normal, gain beta = (8N)^(-1/4) on value, out, fc1, fc2,
  # gain 1 on query and key; the residual add is alpha x + G(x), alpha = (2N)^(1/4).
  deep = dt.init_params("postln_deepnorm", CFG, key)
  beta = (8 * n) ** -0.25
  for path, fans, gain in (("attn/query/kernel", (d, d), 1), ("attn/key/kernel", (d, d), 1),
                           ("attn/value/kernel", (d, d), beta), ("attn/out/kernel", (d, d), beta),
                           ("mlp/fc1/kernel", (d, 128), beta), ("mlp/fc2/kernel", (128, d), beta)):
    _var_close(_blocks(deep, path), gain * xavier(*fans), f"deepnorm {path}")
  assert dt.arch_vector("postln_deepnorm", n) == (0.0, 1.0, 0.0, pytest.approx((2 * n) ** 0.25))
  assert np.all(_blocks(deep, "gate/alpha") == 1)  # alpha is the model's constant, not a gate
  for v in dt.VARIANTS + ("postln_gradinit", "noln_metainit", "preln_smallinit_wang"):
    assert dt.arch_vector(v, n)[3] == 1.0, v
  # SmallInit + Wang (gpt-neox): N(0, 2/(5d)) everywhere, N(0, (2/(L sqrt d))^2) on the
  # residual outputs (attention out, fc2).
  small = dt.init_params("preln_smallinit_wang", CFG, key)
  for path in ("attn/query/kernel", "attn/value/kernel", "mlp/fc1/kernel"):
    _var_close(_blocks(small, path), math.sqrt(2 / (5 * d)), f"small_init {path}")
  for path in ("attn/out/kernel", "mlp/fc2/kernel"):
    _var_close(_blocks(small, path), 2 / (n * math.sqrt(d)), f"wang {path}")
  _var_close(np.ravel(small["embed"]["kernel"]), math.sqrt(2 / (5 * d)), "small_init embed")
  # Mimetic: W_q W_k^T = a1 Z + b1 I and W_v W_o = a2 Z' - b2 I exactly (full width), Z iid
  # with variance 1/d. The diagonal's mean over the 4 x 64 entries is b (resp. -b) within
  # 6 standard errors a / sqrt(d) / sqrt(4 d); the off-diagonal entries' variance a^2 / d.
  mim = dt.init_params("preln_mimetic", CFG, key)
  a1, b1, a2, b2 = extra.MIMETIC
  for (x, y), a, b in ((("query", "key"), a1, b1), (("value", "out"), a2, -b2)):
    prods = [blk["attn"][x]["kernel"] @ (blk["attn"][y]["kernel"].T if x == "query"
                                        else blk["attn"][y]["kernel"]) for blk in mim["blocks"]]
    diag = np.concatenate([np.diag(m) for m in prods])
    off = np.concatenate([m[~np.eye(d, dtype=bool)] for m in prods])
    assert abs(np.mean(diag) - b) < 6 * a / math.sqrt(d) / math.sqrt(diag.size), (x, y)
    _var_close(off, a / math.sqrt(d), f"mimetic {x}/{y}")
  std = dt.init_params("preln_standard", CFG, key)
  for name in ("query", "value"):  # standard Xavier has no such identity part: mean ~ 0
    prods = [blk["attn"][name]["kernel"] @ blk["attn"]["key" if name == "query" else "out"][
        "kernel"].T for blk in std["blocks"]]
    assert abs(np.mean(np.concatenate([np.diag(m) for m in prods]))) < 0.1
  with pytest.raises(ValueError, match="variant must be one of"):
    dt.arch_vector("postln_fixup", 4)


@pytest.mark.slow  # ~8 s on 2 cores
def test_deepnorm_forward_is_post_ln_of_alpha_x_plus_branch():
  cfg = dt.ViTConfig(tokens=4, patch_dim=6, depth=1, width=8, heads=2, mlp=16)
  params = dt.init_params("postln_deepnorm", cfg, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (3, 4, 6))
  alpha = recipes.deepnorm_alpha(1, "encoder")
  logits = dt.forward(dt.stack_blocks(params), jnp.asarray(dt.arch_vector("postln_deepnorm", 1)),
                      x, cfg)[0]
  p = params["blocks"][0]  # by hand: h <- LN(alpha h + G(h)) for attention, then the MLP
  h = dt._dense(x, params["embed"]) + params["pos_embed"][None, :, :]  # pylint: disable=protected-access
  h = dt._layer_norm(alpha * h + dt._attention(h, p["attn"], 2), p["ln1"])  # pylint: disable=protected-access
  m = dt._dense(jax.nn.gelu(dt._dense(h, p["mlp"]["fc1"])), p["mlp"]["fc2"])  # pylint: disable=protected-access
  h = dt._layer_norm(alpha * h + m, p["ln2"])  # pylint: disable=protected-access
  expected = jnp.mean(h, axis=1) @ params["head"]["kernel"] + params["head"]["bias"][None, :]
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
  plain = dt.forward(dt.stack_blocks(params), jnp.asarray((0.0, 1.0, 0.0, 1.0)), x, cfg)[0]
  assert np.max(np.abs(plain - expected)) > 1e-3  # alpha = 1.68 changes the output


@pytest.mark.slow  # compiles GradInit's and MetaInit's objectives through a ViT (~35 s on 2 cores)
def test_learned_variants_rescale_each_tensor_of_the_xavier_draw():
  """GradInit and MetaInit: each tensor = its own learned factor x the Xavier draw."""
  cfg = dt.ViTConfig(tokens=4, patch_dim=6, depth=1, width=8, heads=2, mlp=16)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(80, 4, 6)).astype(np.float32)
  y = (np.arange(80) % 10).astype(np.int32)
  batch = dt.init_batch(x, y)
  assert batch[0].shape == (extra.LEARN_BATCH, 4, 6)
  np.testing.assert_array_equal(batch[0], dt.init_batch(x, y)[0])  # fixed by data_seed
  key = jax.random.key(5)
  shapes = dt.param_shapes(cfg)
  zeros = jax.tree.map(lambda s: np.zeros(s, np.float32), shapes,
                       is_leaf=lambda s: isinstance(s, tuple))
  base = residual.apply_rules(zeros, dt.STANDARD_RULES, key=jax.random.split(key)[0])
  with pytest.raises(ValueError, match="needs loss_fn and batch"):
    dt.init_params("postln_gradinit", cfg, key)
  for variant in ("postln_gradinit", "noln_metainit"):
    got = dt.init_params(variant, cfg, key, batch=batch)
    factors = []
    for (path, b), g in zip(jax.tree_util.tree_leaves_with_path(base), jax.tree.leaves(got)):
      b, g = np.asarray(b), np.asarray(g)
      if not np.any(b) or (variant == "noln_metainit" and b.ndim < 2):
        # zero biases stay zero; MetaInit learns only the norms of rank >= 2 tensors
        np.testing.assert_allclose(g, b, atol=1e-7, err_msg=f"{variant} {path}")
        continue
      f = np.sum(g * b) / np.sum(b * b)  # least-squares factor; g = f b up to rounding
      np.testing.assert_allclose(g, f * b, rtol=1e-4, atol=1e-6, err_msg=f"{variant} {path}")
      factors.append(f)
    assert np.max(np.abs(np.asarray(factors) - 1)) > 1e-3, variant  # something was learned


def test_claims_of_the_extra_variants():
  def row(depth, variant, loss):
    return {"depth": depth, "variant": variant, "diverged": int(loss is None),
            "loss_after_n": loss}
  losses = {"preln_standard": (1.2, 1.3), "postln_standard": (1.3, 2.3),
            "postln_deepnorm": (1.25, 1.4), "postln_gradinit": (1.5, 2.25),
            "noln_metainit": (1.1, 1.0), "preln_smallinit_wang": (1.1, 1.4),
            "preln_mimetic": (1.3, None)}
  rows = [row(d, v, ls[i]) for i, d in enumerate((6, 48)) for v, ls in losses.items()]
  got = {c["claim"].split(":")[0]: c for c in dt.claims(rows)}
  assert got["DeepNorm"]["verdict"] == "agrees"  # trains at 48 where Post-LN is at chance
  assert got["GradInit"]["verdict"] == "disagrees"  # 2.25 >= 0.9 ln 10
  assert got["MetaInit"]["verdict"] == "agrees"  # trains, below Pre-LN
  assert got["SmallInit + Wang (gpt-neox)"]["verdict"] == "partly agrees"  # lower at 6 only
  assert got["Mimetic init"]["verdict"] == "disagrees"  # tie at 6 is not lower, 48 diverged
  rows = [r if r["variant"] != "postln_standard" else {**r, "loss_after_n": 1.35} for r in rows]
  assert {c["claim"].split(":")[0]: c for c in dt.claims(rows)}["DeepNorm"]["verdict"] == \
      "partly agrees"  # plain Post-LN trains too: the contrast is absent
  # 'all' is the eleven; the learned inits at their papers' settings are named one by one
  assert dt._variants("all") == list(dt.VARIANTS + dt.EXTRA_VARIANTS)  # pylint: disable=protected-access
  assert dt._variants("noln_metainit_paper") == ["noln_metainit_paper"]  # pylint: disable=protected-access


@pytest.mark.slow  # a whole study end to end (20-35 s on 2 cores); its parts run by default
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
  printed = capsys.readouterr().out
  assert "| 3 | noln_tfixup |" in printed
  assert f"{len(dt.VARIANTS)} variant(s) x 2 seed(s) at depth(s) 2, 3: 4 Adam steps" in printed
  assert "the depth(s) left (3) should take about" in printed  # the estimate after depth 2
  assert f"Done. In {out}: " in printed and "summary.md" in printed.split("Done. In")[1]
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
  assert "Incomplete run" not in (out / "summary.md").read_text()
  part = {**saved, "complete": False, "depth_results": saved["depth_results"][:1]}
  (out / "results.json").write_text(json.dumps(part))  # as a run killed after depth 2
  again = dt.main(["--resummarize", str(out)])
  assert [r["depth"] for r in again["rows"]] == [2] * len(dt.VARIANTS)
  assert "**Incomplete run**: finished depths 2 of 2, 3" in (out / "summary.md").read_text()
  with pytest.raises(SystemExit, match="no results.json"):
    dt.main(["--resummarize", str(tmp_path / "nothing")])


def test_time_left_splits_compile_from_per_layer_time():
  # The first chunk's excess over the others' median (compiling) and the inits are fixed costs;
  # the rest of the first depth's training time scales with depth: 6 layers trained in 17 s,
  # of which 8 s compiling, after 1 s of inits.
  first = {"depth": 6, "seconds": 17.0, "init_seconds": 1.0, "chunk_seconds": [11.0, 3.0, 3.0]}
  assert dt.time_left(first, [24, 48]) == pytest.approx(2 * (8 + 1) + (17 - 8) / 6 * 72)
  assert dt.time_left(first, []) == 0
  one_chunk = {**first, "chunk_seconds": [17.0]}  # no steady chunk: all training scales
  assert dt.time_left(one_chunk, [12]) == pytest.approx(1 + 34.0)


@pytest.mark.parametrize("flags, message", [
    (["--variants", "preln_standard,bogus"],
     "--variants: must be 'all' or a comma-separated subset"),
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


@pytest.mark.slow  # compiles the training program twice (two vmap sizes), ~15 s on 2 cores
def test_one_variant_at_a_time_matches_all_together():
  """Per-variant programs (the low-memory default) give the runs of the one joint program.

  Not bitwise: the vmapped batch (2 runs vs 8) changes how XLA tiles the matmuls and
  reductions, so float32 sums round differently (measured: 2e-7 relative after 6 steps,
  ~2 ulp). rtol 1e-5 (~80 ulp of float32) allows that rounding over 4 steps and still
  catches any real difference (a wrong lr, seed or batch changes the loss by > 1e-3).
  """
  rng = np.random.default_rng(0)
  x = rng.normal(size=(120, 4, 6)).astype(np.float32)
  y = (np.arange(120) % 10).astype(np.int32)
  cfg = dt.ViTConfig(tokens=4, patch_dim=6, depth=2, width=8, heads=2, mlp=16)
  kw = {"steps": 4, "batch_size": 8, "lrs": [1e-3, 1e-2], "chunk": 2, "progress": False}
  variants = ["postln_standard", "preln_mimetic"]
  apart = dt.train_depth(cfg, variants, 2, x, y, x[:40], y[:40], **kw)
  joint = dt.train_depth(cfg, variants, 2, x, y, x[:40], y[:40], together=True, **kw)
  key = lambda r: (r["variant"], r["lr"], r["seed"])
  assert [key(r) for r in apart["runs"]] == [key(r) for r in joint["runs"]] == [
      (v, lr, s) for v in variants for lr in (1e-3, 1e-2) for s in range(2)]
  for a, b in zip(apart["runs"], joint["runs"]):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5, err_msg=str(key(a)))
    np.testing.assert_allclose(a["stream_std_at_init"], b["stream_std_at_init"], rtol=1e-5)
  losses = {key(r): r["loss"] for r in apart["runs"]}
  # the lr reaches each run: 10x the lr moves the loss after 4 steps by far more than 1e-5
  assert abs(losses[("postln_standard", 1e-2, 0)][-1]
             - losses[("postln_standard", 1e-3, 0)][-1]) > 1e-3
  np.testing.assert_array_equal(losses[("preln_mimetic", 1e-3, 0)][0],
                                losses[("preln_mimetic", 1e-2, 0)][0])  # same init, same batch


def _sweep_row(depth, variant, lr, losses):
  finite = [x for x in losses if x is not None]
  return {"depth": depth, "variant": variant, "lr": lr, "seeds": len(losses),
          "diverged": len(losses) - len(finite),
          "loss_after_n": float(np.median(finite)) if len(finite) == len(losses) else None,
          "seed_losses": list(losses), "test_acc": None, "stream_std_embed": 1.0,
          "stream_std_mid": 1.0, "stream_std_last": 1.0}


def test_lr_sweep_best_lr_and_claims_at_each_variants_best():
  rows = [_sweep_row(24, "preln_standard", 3e-4, [1.40, 1.42, 1.41]),
          _sweep_row(24, "preln_standard", 1e-3, [1.30, 1.35, 1.33]),
          _sweep_row(24, "preln_standard", 3e-3, [1.50, None, 1.45]),  # a diverged seed
          _sweep_row(24, "preln_mimetic", 3e-4, [1.20, 1.25, 1.40]),  # best at another lr
          _sweep_row(24, "preln_mimetic", 1e-3, [1.60, 1.70, 1.65]),
          _sweep_row(24, "preln_mimetic", 3e-3, [None, None, None]),
          _sweep_row(24, "postln_standard", 1e-3, [2.30, 2.31, 2.30]),
          _sweep_row(24, "postln_gradinit", 3e-4, [1.90, 1.80, 1.85]),
          _sweep_row(24, "postln_gradinit", 1e-3, [2.30, 2.30, 2.30])]
  best = {r["variant"]: r for r in dt.best_rows(rows)}
  assert best["preln_standard"]["lr"] == 1e-3  # 3e-3 had a diverged seed: out
  assert best["preln_mimetic"]["lr"] == 3e-4 and best["postln_gradinit"]["lr"] == 3e-4
  got = {c["claim"].split(":")[0]: c for c in dt.claims(rows)}
  mim = got["Mimetic init"]
  # mimetic at 3e-4 (1.25) against Pre-LN at 1e-3 (1.33): lower; 2 of 3 seeds below 1.33
  assert mim["verdict"] == "agrees" and mim["lr"] == {"24": 3e-4}
  assert mim["preln_lr"] == {"24": 1e-3} and "2/3 seeds below" in mim["status"]
  gi = got["GradInit"]  # 1.85 < 0.9 ln 10 but above Pre-LN's 1.33: trains, partly
  assert gi["verdict"] == "partly agrees" and gi["lr"] == 3e-4
  assert gi["reference"] == "postln_standard" and gi["reference_loss"] == pytest.approx(2.30)
  table = dt.format_sweep(rows, 150)
  assert "| 24 | preln_mimetic | 1.2500 | 1.6500 | diverged 3/3 | 0.0003 | 1.2500 |" in table
  assert "| lr 0.0003 | lr 0.001 | lr 0.003 | best lr |" in table
  assert "at its best lr 0.0003" in dt.format_claims(dt.claims(rows))
  one = [dict(r, lr=None) for r in rows if r["lr"] == 1e-3]  # one lr (or none recorded)
  assert dt.best_rows(one) == one
  assert "lr" not in {k for c in dt.claims(one) for k in c}  # no sweep, no lr numbers


@pytest.mark.slow  # two tiny studies end to end (~30 s on 2 cores)
def test_resume_trains_only_the_unfinished_variants(tmp_path):
  out = tmp_path / "dt"
  args = ["--dataset", "digits", "--patch", "4", "--depths", "2", "--steps", "4", "--seeds", "1",
          "--lrs", "1e-3,1e-2", "--batch-size", "16", "--width", "16", "--heads", "2", "--mlp",
          "16", "--test-size", "50", "--no-progress", "--variants",
          "preln_standard,postln_standard", "--out", str(out)]
  full = dt.main(args)
  saved = json.loads((out / "results.json").read_text())
  # as a run killed after its first variant (results.json is written after each variant)
  first = [r for r in saved["depth_results"][0]["runs"] if r["variant"] == "preln_standard"]
  part = {**saved, "complete": False,
          "depth_results": [{"depth": 2, "runs": first, "partial": True}]}
  (out / "results.json").write_text(json.dumps(part))
  again = dt.main(["--resume", str(out)])
  assert [(r["variant"], r["lr"]) for r in again["rows"]] == [
      (v, lr) for v in ("preln_standard", "postln_standard") for lr in (1e-3, 1e-2)]
  assert again["depth_results"][0]["runs"][:2] == first  # kept as they were
  for a, b in zip(again["rows"], full["rows"]):  # the same program on the same batches
    assert a["loss_after_n"] == pytest.approx(b["loss_after_n"], rel=1e-5), a["variant"]
  assert again["complete"] and "Incomplete" not in (out / "summary.md").read_text()
