"""Depth-scaled residual initializations as ``rules``, and as functions on a params pytree.

A residual network computes ``x_{l+1} = x_l + F_l(x_l)``. With every branch ``F_l``
initialized by a fan-preserving law (Xavier, He), the stream's variance grows with the
depth L (by a factor ~2 per block without normalization), and a Pre-LN stack's output is
dominated by its last branches. The schemes here shrink the branches at init with L:

* GPT-2 (Radford et al. 2019): the projection that writes each branch into the stream
  (attention out, MLP out) is N(0, (0.02 / sqrt(2L))^2): 2L residual additions then add
  up to the variance of one.
* ReZero / SkipInit (Bachlechner et al. 2020; De & Smith 2020): a scalar gate
  ``x + alpha * F(x)`` with ``alpha = 0``: every block is the identity at init
  (the gate modules live in :mod:`jinit.residual`).
* Fixup (Zhang, Dauphin & Ma 2019), for residual MLPs/CNNs with L branches of m layers:
  the classifier and the last layer of each branch are zero, the other branch layers get
  a standard init scaled by ``L^(-1/(2m-2))``; scalar biases and a scalar multiplier per
  branch (the modules in :mod:`jinit.residual`) replace normalization.
* T-Fixup (Huang et al. 2020), for transformers without LayerNorm and without warmup:
  Xavier everywhere; the value and output projections of each attention block and the
  MLP kernels are scaled by ``0.67 N^(-1/4)`` (encoder) or ``(9N)^(-1/4)`` (decoder);
  input embeddings are N(0, d^-1) scaled by ``(9N)^(-1/4)``.

Each scheme is a rule builder returning ``[(pattern, init), ...]`` (the contract of
``jinit.nnx.reinit`` / ``jinit.linen.reinit``: a regex searched in the parameter's path
joined by "/", first matching rule wins) and a function applying it to a params pytree
(:func:`apply_rules`, :func:`apply_gpt2`, :func:`apply_fixup`, :func:`apply_tfixup`).
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from jinit._src import initializers as inits
from jinit._src import layers
from jinit._src import validation
from jinit._src.paths import path_str

Rule = tuple[str, inits.Initializer]
FansFn = Callable[[str, tuple[int, ...]], tuple[Any, Any]]

GPT2_STD = 0.02  # GPT-2's (and BERT's) N(0, 0.02^2) for every kernel and embedding
TFIXUP_ENCODER = 0.67  # T-Fixup's encoder constant, Huang et al. 2020, Algorithm 1 step 3

# Default patterns: Flax's names (attention ``query/key/value/out``) and the usual MLP names.
GPT2_PATTERN = r"(^|/)(out|c_proj|fc2|wo)/kernel$"
TFIXUP_VALUE = r"(^|/)value/kernel$"
TFIXUP_OUT = r"(^|/)out/kernel$"
TFIXUP_MLP = r"(^|/)mlp/[^/]+/kernel$"


# --------------------------------------------------------------------------- building blocks


def scaled(init: inits.Initializer, factor: float) -> inits.Initializer:
  """The initializer ``init`` with its samples multiplied by ``factor``.

  Var[W] becomes factor^2 Var[init]. The base is drawn and scaled in float32 (float64
  for a 64-bit dtype) and cast once, so a bfloat16 request stays bfloat16; a scaled
  sample that overflows the dtype, or most samples flushing to 0, raise ValueError
  (the base initializers' range rule, for the scaled law).

  Args:
    init: a jinit initializer ``f(key, shape, fan_in, fan_out, *, dtype)``.
    factor: a finite positive number.

  Returns:
    An initializer with the same call shape.
  """
  validation.check_init(init, "init")
  factor = validation.check_real(factor, "factor", positive=True)

  def scaled_init(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
    dtype = validation.check_float_dtype(dtype, allow_complex=True)
    # Drawn and scaled in float32 (float64 for 64-bit dtypes), then cast once: in
    # float16 the base's samples times a tiny factor would flush to 0, and a large
    # factor would overflow, after the base's own range check had passed.
    real = inits._sampling_dtype(dtype)  # pylint: disable=protected-access
    wide = inits._complex_of(real) if inits._is_complex(dtype) else real  # pylint: disable=protected-access
    w = init(key, shape, fan_in, fan_out, dtype=wide)
    w = w * jnp.asarray(factor, w.dtype)
    out = w.astype(dtype)
    if not isinstance(w, jax.core.Tracer) and w.size:
      largest = float(np.max(np.abs(np.asarray(w))))
      validation.check_range(largest, f"the largest sample of {scaled_init.__name__}", dtype)
      nonzero = int(np.count_nonzero(np.asarray(w)))
      kept = int(np.count_nonzero(np.asarray(out)))
      if nonzero and kept < nonzero / 2:
        raise ValueError(f"{scaled_init.__name__}: {nonzero - kept} of {nonzero} nonzero "
                         f"samples underflow to 0 in dtype {jnp.dtype(dtype).name} (factor "
                         f"{factor:.6g} is too small for it)")
    return out

  name = getattr(init, "__name__", type(init).__name__)
  scaled_init.__name__ = f"scaled({name}, {factor:.6g})"
  scaled_init.__qualname__ = scaled_init.__name__
  return scaled_init


def embedding_normal(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
  r"""N(0, 1/d) with d = ``shape[-1]`` (the embedding size): T-Fixup's input embeddings.

  .. math:: W \sim \mathcal{N}(0, d^{-1}), \quad d = \text{shape}[-1]

  T-Fixup (Huang et al. 2020, Algorithm 1 step 1) writes N(0, d^{-1/2}) meaning a
  standard deviation of d^{-1/2}; its reference code calls
  ``nn.init.normal_(w, std=d ** -0.5)``. Fans are accepted and ignored.

  Args:
    key: a PRNG key.
    shape: the table's shape, embedding size last.
    fan_in, fan_out: validated, unused.
    dtype: a floating dtype.

  Returns:
    An array of ``shape`` and ``dtype``.

  References: https://proceedings.mlr.press/v119/huang20f.html
  """
  shape = validation.check_shape(shape, min_rank=1)
  return inits.normal(key, shape, fan_in, fan_out, std=shape[-1] ** -0.5, dtype=dtype)


# --------------------------------------------------------------------------- rule builders


def gpt2_scale(num_layers: int) -> float:
  """GPT-2's residual factor 1/sqrt(2L): two residual additions (attention, MLP) per block."""
  num_layers = validation.check_int(num_layers, "num_layers")
  return 1.0 / math.sqrt(2.0 * num_layers)


def gpt2_rules(num_layers: int, pattern: str = GPT2_PATTERN, *, std: float = GPT2_STD,
               init: inits.Initializer | None = None) -> list[Rule]:
  r"""GPT-2's scaled residual projections as one rule.

  .. math:: W_\text{proj} \sim \mathcal{N}\big(0, (\sigma / \sqrt{2L})^2\big), \quad \sigma = 0.02

  for every projection that writes into the residual stream (attention out, MLP out);
  L blocks make 2L residual additions. The rest of GPT-2 is N(0, 0.02^2) for every
  kernel and embedding, zero biases: use ``normal`` with ``std=0.02`` as reinit's
  default ``init``. With ``init`` given, that init is scaled by 1/sqrt(2L) instead of
  the normal law (e.g. a Xavier model with GPT-2's depth scaling).

  Args:
    num_layers: L, the number of transformer blocks (>= 1).
    pattern: regex for the residual projections' kernels. The default matches
      Flax attention's ``out/kernel`` and MLP kernels named ``c_proj``, ``fc2`` or ``wo``.
    std: sigma, GPT-2's 0.02.
    init: optional base initializer to scale instead of N(0, std^2).

  Returns:
    ``[(pattern, init)]`` for ``jinit.nnx.reinit`` / ``jinit.linen.reinit`` / :func:`apply_rules`.

  References: Radford et al. 2019, "Language Models are Unsupervised Multitask
  Learners", section 2.3:
  https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf
  """
  factor = gpt2_scale(num_layers)
  pattern = validation.check_pattern(pattern, "pattern")
  std = validation.check_real(std, "std", positive=True)
  if init is None:
    proj_std = std * factor

    def gpt2_proj(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
      return inits.normal(key, shape, fan_in, fan_out, std=proj_std, dtype=dtype)

    gpt2_proj.__name__ = f"normal(std={proj_std:.6g})"
    return [(pattern, gpt2_proj)]
  return [(pattern, scaled(init, factor))]


def rezero_rules(pattern: str = r"(^|/)alpha$", value: float = 0.0) -> list[Rule]:
  """ReZero / SkipInit: every residual gate ``alpha`` set to ``value`` (0: identity blocks).

  The gate is a scalar parameter of no layer (no fans), so the init is a constant.

  Args:
    pattern: regex for the gates (default: params named ``alpha``, as in
      :class:`jinit.residual.ResidualGate`).
    value: the gate's initial value (ReZero and SkipInit: 0).

  Returns:
    ``[(pattern, init)]``.

  References: Bachlechner et al. 2020, ReZero, https://arxiv.org/abs/2003.04887;
  De & Smith 2020, SkipInit, https://arxiv.org/abs/2002.10444
  """
  pattern = validation.check_pattern(pattern, "pattern")
  value = validation.check_real(value, "value")

  def gate_init(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
    return inits.constant(key, shape, fan_in, fan_out, value=value, dtype=dtype)

  gate_init.__name__ = f"constant({value:g})"
  return [(pattern, gate_init)]


def fixup_scale(num_branches: int, branch_depth: int) -> float:
  """Fixup's factor L^(-1/(2m-2)) for L residual branches of m layers each."""
  num_branches = validation.check_int(
      num_branches, "num_branches", why=" (Fixup needs a model with residual branches)")
  branch_depth = validation.check_int(
      branch_depth, "branch_depth", minimum=2,
      why=" (Fixup scales branches of m >= 2 layers: L^(-1/(2m-2)))")
  return num_branches ** (-1.0 / (2 * branch_depth - 2))


def _kaiming_relu(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
  return inits.kaiming_normal(key, shape, fan_in, fan_out, nonlinearity="relu", dtype=dtype)


_kaiming_relu.__name__ = "kaiming_normal(relu)"


def fixup_rules(num_branches: int, branch_layers: Sequence[str], *,
                classifier: str | None = None,
                init: inits.Initializer = _kaiming_relu) -> list[Rule]:
  r"""Fixup (Zhang et al. 2019) for residual MLPs/CNNs as rules.

  For L residual branches of m weight layers each:

  1. the classifier (last layer) and the last layer of every branch are zero;
  2. the other branch layers get ``init`` (He, for ReLU) scaled by
     .. math:: L^{-1/(2m-2)}
     (m = 2: 1/sqrt(L); m = 3: L^{-1/4});
  3. a scalar multiplier (1) per branch and scalar biases (0) before each layer and
     activation (:class:`jinit.residual.ResidualGate` with ``init_value=1``,
     :class:`jinit.residual.ScalarBias`); they are model structure, not init.

  Layers outside the branches (the stem) keep the default init.

  Args:
    num_branches: L (>= 1; a model without residual branches has nothing to scale).
    branch_layers: m >= 2 regexes, the branch's layers in order (e.g.
      ``[r"blocks/\d+/fc1/kernel", r"blocks/\d+/fc2/kernel"]``); the last one is zeroed.
    classifier: regex of the classifier's kernel (zeroed), or None.
    init: the standard init of the scaled layers (default ``kaiming_normal``, relu gain).

  Returns:
    The rules, branch layers first.

  References: Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without
  Normalization", https://arxiv.org/abs/1901.09321
  """
  branch_layers = validation.check_patterns(branch_layers, "branch_layers")
  if len(branch_layers) < 2:
    raise ValueError(f"branch_layers must name the m >= 2 weight layers of a residual branch "
                     f"in order (Fixup scales by L^(-1/(2m-2))), got {list(branch_layers)!r}")
  factor = fixup_scale(num_branches, len(branch_layers))
  validation.check_init(init, "init")
  rules: list[Rule] = [(p, scaled(init, factor)) for p in branch_layers[:-1]]
  rules.append((branch_layers[-1], inits.zeros))
  if classifier is not None:
    rules.append((validation.check_pattern(classifier, "classifier"), inits.zeros))
  return rules


def tfixup_scale(num_layers: int, decoder: bool = False) -> float:
  """T-Fixup's factor: 0.67 N^(-1/4) for an encoder, (9N)^(-1/4) for a decoder."""
  num_layers = validation.check_int(
      num_layers, "num_layers", why=" (T-Fixup needs a model with residual branches)")
  if not isinstance(decoder, bool):
    raise TypeError(f"decoder must be a bool, got {decoder!r}")
  return (9.0 * num_layers) ** -0.25 if decoder else TFIXUP_ENCODER * num_layers ** -0.25


def tfixup_rules(num_layers: int, *, value: str = TFIXUP_VALUE, out: str = TFIXUP_OUT,
                 mlp: str = TFIXUP_MLP, embeddings: str | Sequence[str] = (),
                 decoder: bool = False,
                 init: inits.Initializer = inits.xavier_uniform) -> list[Rule]:
  r"""T-Fixup (Huang et al. 2020) for a transformer without LayerNorm and warmup, as rules.

  Algorithm 1 of the paper, for N layers:

  1. Xavier for every parameter but the input embeddings, which are N(0, d^{-1})
     (:func:`embedding_normal`; use xavier_uniform as reinit's default ``init``);
  2. input embeddings scaled by (9N)^{-1/4};
  3. in every block, the attention's value and output projections and the MLP's
     kernels scaled by
     .. math:: 0.67\, N^{-1/4} \text{ (encoder)}, \qquad (9N)^{-1/4} \text{ (decoder)}.

  Query and key projections keep plain Xavier. (The reference code multiplies the value
  projection by an extra sqrt(2) because fairseq draws it with Xavier gain 1/sqrt(2);
  here it starts from plain Xavier, the paper's step 1.)

  Args:
    num_layers: N (>= 1).
    value, out, mlp: regexes of the value projection, output projection and MLP kernels
      (defaults: Flax names ``value/kernel``, ``out/kernel``, ``mlp/<layer>/kernel``).
    embeddings: regex(es) of the input embeddings (token tables, a ViT's patch projection
      and position embedding); none by default.
    decoder: use the decoder's (9N)^{-1/4} for the blocks.
    init: the base init of the blocks' scaled kernels (Xavier, the paper's).

  Returns:
    The rules: embeddings, then value, out and mlp.

  References: Huang, Perez, Ba & Volkovs 2020, "Improving Transformer Optimization Through
  Better Initialization", ICML, https://proceedings.mlr.press/v119/huang20f.html
  """
  factor = tfixup_scale(num_layers, decoder)
  embed_factor = (9.0 * num_layers) ** -0.25
  validation.check_init(init, "init")
  rules: list[Rule] = [(p, scaled(embedding_normal, embed_factor))
                       for p in validation.check_patterns(embeddings, "embeddings")]
  for name, p in (("value", value), ("out", out), ("mlp", mlp)):
    rules.append((validation.check_pattern(p, name), scaled(init, factor)))
  return rules


# --------------------------------------------------------------------------- params pytrees


def param_paths(params: Any) -> list[str]:
  """The "/"-joined paths of a pytree's leaves (``{"a": {"b": x}}`` -> ``["a/b"]``).

  For an ``nnx.State`` the Variables' ``.value`` is left out: ``blocks/0/fc/kernel``.
  """
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return [path_str(path) for path, _ in leaves]


def shape_fans(path: str, shape: tuple[int, ...]) -> tuple[int | None, int | None]:
  """Fans a params pytree's shape can tell without guessing: dense ``(in, out)`` kernels.

  Rank 0 and 1 (gates, biases, scales): no fans (None, None). Rank 2: ``(in, out)``.
  Rank >= 3 is ambiguous (a conv ``(H, W, in, out)`` kernel or an attention
  ``(d, heads, head_dim)`` one): :class:`ValueError`, pass ``fans=`` to
  :func:`apply_rules` (or use ``jinit.nnx.reinit``, which knows each layer).
  """
  if len(shape) <= 1:
    return None, None
  if len(shape) == 2:
    return shape[0], shape[1]
  raise ValueError(
      f"cannot tell the fans of {path!r} (shape {shape}) from its shape: pass "
      "fans='conv' for Flax conv kernels (*window, in, out), or fans=callable(path, shape); "
      "for layers stacked by nnx.vmap/nnx.scan pass the nnx Module itself (its layers' fans)")


def _conv_fans(path: str, shape: tuple[int, ...]):
  if len(shape) <= 1:
    return None, None
  from jinit._src import fans as fans_lib
  return fans_lib.compute_fans(shape, layout="flax")


def _rule_for(rules: Sequence[Rule], path: str) -> str:
  return next(p for p, _ in rules if re.search(p, path))


def _match_counts(paths: Sequence[str], rules: Sequence[Rule]) -> list[int]:
  return [sum(re.search(p, path) is not None for path in paths) for p, _ in rules]


def _check_rules(rules: Any) -> list[Rule]:
  """``rules`` checked by reinit's own check (:func:`jinit._src.layers.check_rules`)."""
  return [(pattern, init) for pattern, _, init in layers.check_rules(rules)]


def apply_rules(params: Any, rules: Sequence[Rule], *, key: jax.Array,
                fans: str | FansFn | None = None) -> Any:
  """Re-draws the leaves of a params pytree that ``rules`` name; the others are kept.

  Each leaf's path is its keys joined by "/" (``{"blocks": [{"out": {"kernel": w}}]}``
  -> ``blocks/0/out/kernel``); the first rule whose pattern ``re.search``-matches the
  path draws the leaf with its shape, its dtype and fans from ``fans``. Leaf i gets
  ``jax.random.fold_in(key, i)`` (i in the pytree's flattening order). The same rules
  drive ``jinit.nnx.reinit`` / ``jinit.linen.reinit``, which know every layer's true fans;
  this function only sees shapes. A leaf whose fans its shape cannot tell (rank >= 3
  with ``fans=None``) is fine for an init that needs no fans (GPT-2's normal, zeros);
  one that needs them raises.

  Args:
    params: a pytree of arrays (nested dicts, lists, an ``nnx.State``, ...).
    rules: ordered ``(pattern, init)`` pairs.
    key: a PRNG key.
    fans: None (:func:`shape_fans`: dense kernels only, an error on rank >= 3),
      ``"conv"`` (Flax ``(*window, in, out)`` for rank >= 3), or
      ``callable(path, shape) -> (fan_in, fan_out)``.

  Returns:
    A pytree of the same structure.

  Raises:
    ValueError: a pattern matches no parameter (naming the pattern), or a matched
      leaf's init needs fans its shape cannot tell.
  """
  rules = _check_rules(rules)
  if fans is None:
    fans_fn = shape_fans
  elif fans == "conv":
    fans_fn = _conv_fans
  elif callable(fans):
    fans_fn = fans
  else:
    raise ValueError(f"fans must be None, 'conv' or a callable(path, shape), got {fans!r}")
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [path_str(path) for path, _ in leaves]
  for (pattern, _), count in zip(rules, _match_counts(paths, rules)):
    if count == 0:
      raise ValueError(f"rule pattern {pattern!r} matches no parameter; the parameters "
                       f"are: {', '.join(paths[:20])}{' ...' if len(paths) > 20 else ''}")
  new = []
  for i, (path, (_, leaf)) in enumerate(zip(paths, leaves)):
    init = next((f for p, f in rules if re.search(p, path)), None)
    if init is None:
      new.append(leaf)
      continue
    shape = tuple(np.shape(leaf))
    try:
      fan_in, fan_out = fans_fn(path, shape)
      unknown = None
    except ValueError as e:  # ambiguous shape: fine for an init that needs no fans
      fan_in, fan_out, unknown = None, None, e
    dtype = getattr(leaf, "dtype", None)
    dtype = jnp.result_type(leaf) if dtype is None and isinstance(leaf, (int, float)) else dtype
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
      raise TypeError(f"apply_rules: rule {_rule_for(rules, path)!r} matches {path!r}, a leaf "
                      f"of dtype {dtype} (not a floating parameter: an RNG key, a counter?); "
                      "pass the parameters only (nnx.state(model, nnx.Param)) or narrow the "
                      "pattern")
    try:
      new.append(init(jax.random.fold_in(key, i), shape, fan_in, fan_out, dtype=dtype))
    except ValueError as e:
      if unknown is not None and "required" in str(e):
        raise ValueError(f"{unknown} (the init of rule {_rule_for(rules, path)!r} needs "
                         f"them: {e})") from None
      raise ValueError(f"apply_rules: parameter {path!r} of shape {shape}: {e}") from e
    except TypeError as e:
      raise TypeError(f"apply_rules: parameter {path!r} of shape {shape}: {e}") from e
  return jax.tree_util.tree_unflatten(treedef, new)


def _is_nnx_module(params: Any) -> bool:
  if "flax.nnx" not in sys.modules:  # no Flax import for plain pytrees
    return False
  from flax import nnx  # pylint: disable=import-outside-toplevel
  return isinstance(params, nnx.Module)


def _count(params: Any, pattern: str) -> int:
  """How many layers ``pattern`` names: stacked layers (nnx.vmap/scan) count their copies.

  For an nnx Module each matched parameter counts as its stack length (from its
  layer's own shape, wherever ``out_axes`` put the stack axis); a plain pytree
  cannot tell a stacked parameter, so each counts 1.
  """
  if _is_nnx_module(params):
    from jinit._src import nnx as nnx_lib  # pylint: disable=import-outside-toplevel
    return sum(n for p, n in nnx_lib.stack_lengths(params).items() if re.search(pattern, p))
  return sum(re.search(pattern, p) is not None for p in param_paths(params))


def _apply(params: Any, rules: list[Rule], key: jax.Array, fans: Any) -> Any:
  """:func:`apply_rules` on a pytree; on an nnx Module, its layers' fans, in place."""
  if not _is_nnx_module(params):
    return apply_rules(params, rules, key=key, fans=fans)
  if fans is not None:
    raise ValueError("fans must be None for an nnx Module: each parameter gets its layer's "
                     f"own fans (stack axes skipped), got fans={fans!r}")
  from jinit._src import nnx as nnx_lib  # pylint: disable=import-outside-toplevel
  with warnings.catch_warnings():  # the parameters no rule names are kept, by design
    warnings.simplefilter("ignore", layers.UncoveredParametersWarning)
    return nnx_lib.reinit(params, None, key=key, rules=rules)


def apply_gpt2(params: Any, *, key: jax.Array, num_layers: int | None = None,
               pattern: str = GPT2_PATTERN, std: float = GPT2_STD,
               init: inits.Initializer | None = None, fans: str | FansFn | None = None) -> Any:
  """Re-draws the residual projections of a params pytree with :func:`gpt2_rules`.

  Args:
    params: the params pytree, or an nnx Module (re-drawn in place, each parameter with
      its layer's fans; layers stacked by ``nnx.vmap``/``nnx.scan`` count as their stack
      length). For a stacked model pass the Module, not its state: a pytree cannot tell
      a stacked parameter from one layer's.
    key: a PRNG key.
    num_layers: L; default: the number of layers ``pattern`` matches, halved (one
      attention and one MLP projection per block).
    pattern, std, init: as in :func:`gpt2_rules`.
    fans: as in :func:`apply_rules`.

  Returns:
    The new params pytree.
  """
  pattern = validation.check_pattern(pattern, "pattern")
  if num_layers is None:
    n = _count(params, pattern)
    if n == 0 or n % 2:
      raise ValueError(f"pattern {pattern!r} matches {n} parameters; GPT-2 scaling expects "
                       "two residual projections per block: pass num_layers explicitly")
    num_layers = n // 2
  return _apply(params, gpt2_rules(num_layers, pattern, std=std, init=init), key, fans)


def apply_fixup(params: Any, *, key: jax.Array, branch_layers: Sequence[str],
                classifier: str | None = None, init: inits.Initializer = _kaiming_relu,
                fans: str | FansFn | None = None) -> Any:
  """Fixup on a params pytree; L is the number of layers the last branch layer matches.

  Args:
    params: the params pytree, or an nnx Module (as in :func:`apply_gpt2`: stacked
      layers count as their stack length).
    key: a PRNG key.
    branch_layers, classifier, init: as in :func:`fixup_rules`.
    fans: as in :func:`apply_rules`.

  Returns:
    The new params pytree.

  Raises:
    ValueError: ``branch_layers`` finds no residual branch in ``params``.
  """
  branch_layers = validation.check_patterns(branch_layers, "branch_layers")
  if len(branch_layers) < 2:
    raise ValueError(f"branch_layers must name the m >= 2 weight layers of a residual branch "
                     f"in order (Fixup scales by L^(-1/(2m-2))), got {list(branch_layers)!r}")
  num_branches = _count(params, branch_layers[-1])
  if num_branches == 0:
    raise ValueError(
        f"branch_layers={list(branch_layers)!r}: the last pattern matches no parameter, so "
        "the model has no residual branches Fixup could scale (Fixup is for residual "
        f"networks); the parameters are: {', '.join(param_paths(params)[:20])}")
  return _apply(params, fixup_rules(num_branches, branch_layers, classifier=classifier,
                                    init=init), key, fans)


def apply_tfixup(params: Any, *, key: jax.Array, num_layers: int | None = None,
                 value: str = TFIXUP_VALUE, out: str = TFIXUP_OUT, mlp: str = TFIXUP_MLP,
                 embeddings: str | Sequence[str] = (), decoder: bool = False,
                 init: inits.Initializer = inits.xavier_uniform,
                 fans: str | FansFn | None = None) -> Any:
  """T-Fixup on a params pytree; N defaults to the number of attention ``out`` kernels.

  Only the parameters the rules name are re-drawn: draw the rest with Xavier first.

  Args:
    params: the params pytree, or an nnx Module (as in :func:`apply_gpt2`: stacked
      layers count as their stack length).
    key: a PRNG key.
    num_layers: N; default: the number of parameters ``out`` matches (one per block).
    value, out, mlp, embeddings, decoder, init: as in :func:`tfixup_rules`.
    fans: as in :func:`apply_rules`.

  Returns:
    The new params pytree.

  Raises:
    ValueError: ``out`` finds no attention block (no residual branches) in ``params``.
  """
  out = validation.check_pattern(out, "out")
  if num_layers is None:
    num_layers = _count(params, out)
    if num_layers == 0:
      raise ValueError(
          f"out={out!r} matches no parameter, so the model has no residual attention "
          "branches T-Fixup could scale (T-Fixup is for transformers); the parameters are: "
          f"{', '.join(param_paths(params)[:20])}")
  rules = tfixup_rules(num_layers, value=value, out=out, mlp=mlp, embeddings=embeddings,
                       decoder=decoder, init=init)
  return _apply(params, rules, key, fans)
