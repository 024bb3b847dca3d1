r"""Implementation of :mod:`jinit.recipes`: the LLM init recipes people copy by hand.

A *recipe* is a dict ``{"init": ..., "bias_init": ..., "rules": [...]}`` that every
model-level reinit takes as keyword arguments::

  jinit.nnx.reinit(model, key=k, **jinit.recipes.gpt_neox(num_layers=24, d_model=1024))
  jinit.equinox.reinit(model, key=k, **jinit.recipes.deepnorm(48, "decoder"))
  jinit.haiku.reinit(params, key=k, **jinit.recipes.olmo2())

and :func:`apply_recipe` applies to a params pytree (linen variables, ``nnx.state``,
Haiku params). ``init`` draws every kernel/weight/embedding with its layer's true fans,
``rules`` override the residual-writing projections. Default rule patterns know the
names of Flax (``value``, ``out``, ``mlp/...``), Equinox (``value_proj``,
``output_proj``, ``mlp/layers/<i>``), Haiku (``value``, ``multi_head_attention/linear``,
``mlp/~/linear_<i>``) and the PyTorch codebases (``v_proj``, ``out_proj``, ``fc1``,
``fc2``, ``c_proj``).

=====================  ==========================================  ============================
recipe                 formula                                     paper / codebases
=====================  ==========================================  ============================
small_init(d)          N(0, 2 / (5 d))                             Nguyen & Salazar 2019;
                                                                   gpt-neox ``small_init``
wang_init(L, d)        N(0, (2 / (L sqrt(d)))^2)                   Wang & Komatsuzaki (GPT-J);
                                                                   gpt-neox ``wang_init``
gpt_neox(L, d)         small_init, residual outputs wang_init,     gpt-neox configs (125M..20B)
                       zero biases
deepnorm(N, part)      xavier_normal; ffn, value, out: gain beta;  Wang et al. 2022 (DeepNet);
                       residual x_{l+1} = LN(alpha x_l + G(x_l))   torchscale, xformers
olmo(d, L)             trunc. N(0, 1/d) (3 sigma); attn out        OLMo-1 ``init_fn: mitchell``
                       1/(2 d (l+1)), ffn out 1/(2 d_ff (l+1))
olmo2()                trunc. N(0, 0.02^2) (3 sigma) everywhere    OLMo-2 ``init_fn: normal``
mimetic_attention      W_q W_k^T = alpha Z + beta I,               Trockman & Kolter 2023
                       W_v W_o = alpha Z - beta I
=====================  ==========================================  ============================
"""

from __future__ import annotations

import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jinit._src import initializers as inits
from jinit._src import residual
from jinit._src import validation
from jinit._src.paths import path_str

Recipe = dict[str, Any]

_W = r"(kernel|weight|w)$"
#: Value projections (Flax ``value``, Equinox ``value_proj``, Haiku ``value``, torch ``v_proj``).
VALUE = r"(^|/)(value|value_proj|v_proj)/" + _W
#: Attention output projections (Flax ``out``, Equinox ``output_proj``, Haiku MHA ``linear``).
ATTN_OUT = r"((^|/)(out|output_proj|out_proj|o_proj|c_proj)|attention(/~)?/linear)/" + _W
#: Every kernel of an MLP / feed-forward block (Flax ``mlp/<name>``, Equinox ``mlp/layers/<i>``,
#: Haiku ``mlp/~/linear_<i>``, torch ``fc1``/``fc2``).
FFN = r"((^|/)(mlp|ffn|feed_forward)/(.*/)?|(^|/)(fc1|fc2|c_fc|wi|wo)/)" + _W
#: The output kernel of an MLP (the one writing into the residual stream), by name: torch's
#: ``fc2``/``w2``/``down_proj``, T5's ``wo``, gpt-neox's ``dense_4h_to_h``, ``mlp/out``. An
#: index-named last layer (Equinox ``mlp/layers/1``, Haiku ``mlp/~/linear_1``) needs its own
#: pattern (a regex cannot tell which index is last).
FFN_OUT = r"((^|/)(fc2|wo|w2|dense_4h_to_h|down_proj)|(^|/)(mlp|ffn)/(out|output))/" + _W
#: Kernels and embeddings of every framework (Equinox norm weights are excluded by reinit).
KERNELS = r"(^|/)(kernel|weight|w|embedding|embeddings)$"
BIASES = r"(^|/)(bias|b)$"

OLMO2_STD = 0.02  # OLMo-2 configs: init_std 0.02, init_cutoff_factor 3
OLMO_CUTOFF = 3.0  # OLMo: truncation at +-3 std


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {value!r}")
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
  return int(value)


def _normal(std: float, name: str, cutoff: float | None = None) -> inits.Initializer:
  """N(0, std^2), or that normal truncated at +-cutoff std (torch's trunc_normal_ convention)."""

  def init(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
    if cutoff is None:
      return inits.normal(key, shape, fan_in, fan_out, std=std, dtype=dtype)
    return inits.truncated_normal(key, shape, fan_in, fan_out, std=std, lower=-cutoff,
                                  upper=cutoff, dtype=dtype)

  init.__name__ = init.__qualname__ = name
  return init


# --------------------------------------------------------------------------- SmallInit, Wang


def small_init_std(d_model: int) -> float:
  """SmallInit's std sqrt(2 / (5 d)) (Nguyen & Salazar 2019)."""
  return math.sqrt(2.0 / (5.0 * _check_int(d_model, "d_model")))


def small_init(d_model: int) -> inits.Initializer:
  r"""SmallInit: N(0, 2/(5d)) for a transformer of width d, fans ignored.

  .. math:: W \sim \mathcal{N}\big(0, \tfrac{2}{5d}\big)

  2/(5d) is Xavier's 2/(d + 4d) for a d x 4d MLP kernel, used for every kernel and
  embedding. gpt-neox's ``init_method: small_init`` (``small_init_init_method``).

  Args:
    d_model: d, the residual stream width.

  Returns:
    A jinit initializer (pass as reinit's ``init``).

  References: Nguyen & Salazar 2019, "Transformers without Tears",
  https://arxiv.org/abs/1910.05895
  """
  std = small_init_std(d_model)
  return _normal(std, f"small_init(d={d_model})")


def wang_init_std(num_layers: int, d_model: int) -> float:
  """Wang init's std 2 / (L sqrt(d))."""
  return 2.0 / (_check_int(num_layers, "num_layers") * math.sqrt(_check_int(d_model, "d_model")))


def wang_init(num_layers: int, d_model: int) -> inits.Initializer:
  r"""Wang init for the projections writing into the residual stream: N(0, (2/(L sqrt d))^2).

  .. math:: W \sim \mathcal{N}\big(0, (2 / (L\sqrt{d}))^2\big)

  From Ben Wang's Mesh-Transformer-JAX (GPT-J); gpt-neox's ``output_layer_init_method:
  wang_init`` (``wang_init_method``: ``std = 2 / n_layers / sqrt(dim)``).

  Args:
    num_layers: L, the number of transformer blocks.
    d_model: d, the residual stream width.

  Returns:
    A jinit initializer.

  References: gpt-neox ``megatron/model/init_functions.py``;
  https://github.com/kingoflolz/mesh-transformer-jax
  """
  std = wang_init_std(num_layers, d_model)
  return _normal(std, f"wang_init(L={num_layers}, d={d_model})")


def wang_rules(num_layers: int, d_model: int, *, attn_out: str = ATTN_OUT,
               ffn_out: str = FFN_OUT) -> list[residual.Rule]:
  """Wang init on the attention output and last MLP kernels, as reinit rules."""
  init = wang_init(num_layers, d_model)
  return [(validation.check_pattern(attn_out, "attn_out"), init),
          (validation.check_pattern(ffn_out, "ffn_out"), init)]


def gpt_neox(num_layers: int, d_model: int, *, attn_out: str = ATTN_OUT,
             ffn_out: str = FFN_OUT) -> Recipe:
  """gpt-neox's configs' init: SmallInit everywhere, Wang init on residual outputs, zero biases.

  Every config under gpt-neox ``configs/`` (125M ... 20B) sets ``init_method:
  small_init`` and ``output_layer_init_method: wang_init``; biases are zero.

  Args:
    num_layers, d_model: L and d.
    attn_out, ffn_out: regexes of the residual-writing kernels.

  Returns:
    A recipe ``{"init", "bias_init", "rules"}``.
  """
  return {"init": small_init(d_model), "bias_init": inits.zeros,
          "rules": wang_rules(num_layers, d_model, attn_out=attn_out, ffn_out=ffn_out)}


# --------------------------------------------------------------------------- DeepNorm


def deepnorm_constants(encoder_layers: int = 0, decoder_layers: int = 0) -> dict[str, tuple]:
  r"""DeepNet's (alpha, beta) per part, from the paper's Figure 2 / Table 1.

  * encoder-only (N layers): alpha = (2N)^{1/4}, beta = (8N)^{-1/4};
  * decoder-only (M layers): alpha = (2M)^{1/4}, beta = (8M)^{-1/4};
  * encoder-decoder: encoder alpha = 0.81 (N^4 M)^{1/16}, beta = 0.87 (N^4 M)^{-1/16};
    decoder alpha = (3M)^{1/4}, beta = (12M)^{-1/4}.

  (torchscale's encoder-decoder code divides by (N^4 M)^{1/16} / 1.15, i.e. beta =
  1.15 (N^4 M)^{-1/16}; the paper's 0.87 = 1/1.15 is used here.)

  Args:
    encoder_layers: N (0: no encoder).
    decoder_layers: M (0: no decoder).

  Returns:
    ``{"encoder": (alpha, beta), "decoder": (alpha, beta)}`` for the parts present.
  """
  n = _check_int(encoder_layers, "encoder_layers", 0)
  m = _check_int(decoder_layers, "decoder_layers", 0)
  if n == 0 and m == 0:
    raise ValueError("deepnorm needs encoder_layers >= 1 or decoder_layers >= 1")
  if n and m:
    return {"encoder": (0.81 * (n ** 4 * m) ** (1 / 16), 0.87 * (n ** 4 * m) ** (-1 / 16)),
            "decoder": ((3.0 * m) ** 0.25, (12.0 * m) ** -0.25)}
  if n:
    return {"encoder": ((2.0 * n) ** 0.25, (8.0 * n) ** -0.25)}
  return {"decoder": ((2.0 * m) ** 0.25, (8.0 * m) ** -0.25)}


def _xavier_normal(gain: float) -> inits.Initializer:
  def init(key, shape, fan_in=None, fan_out=None, *, dtype=jnp.float32):
    return inits.xavier_normal(key, shape, fan_in, fan_out, gain=gain, dtype=dtype)

  init.__name__ = init.__qualname__ = f"xavier_normal(gain={gain:.6g})"
  return init


def deepnorm(num_layers: int, part: str = "encoder", *, other_layers: int = 0,
             value: str = VALUE, attn_out: str = ATTN_OUT, ffn: str = FFN) -> Recipe:
  r"""DeepNorm's init (Wang et al. 2022): Xavier, with gain beta on ffn, value and output.

  .. math:: x_{l+1} = \mathrm{LN}(\alpha x_l + G_l(x_l)), \qquad
            W_{ffn}, W_V, W_O \sim \text{xavier\_normal}(\text{gain}=\beta),
            \quad W_Q, W_K \sim \text{xavier\_normal}(\text{gain}=1)

  The init is half of DeepNorm: the model must compute its Post-LN residual as
  ``LN(alpha * x + G(x))``, with :func:`deepnorm_residual` and ``alpha`` from
  :func:`deepnorm_constants`.

  Args:
    num_layers: the layers of ``part`` (N for an encoder, M for a decoder).
    part: ``"encoder"`` or ``"decoder"``.
    other_layers: the layers of the other part of an encoder-decoder (0: only one part).
    value, attn_out, ffn: regexes of the value, attention-output and MLP kernels.

  Returns:
    A recipe ``{"init", "bias_init", "rules"}`` (biases zero).

  References: Wang, Ma, Dong, Huang, Zhang & Wei 2022, "DeepNet: Scaling Transformers to
  1,000 Layers", https://arxiv.org/abs/2203.00555; torchscale ``architecture/encoder.py``.
  """
  validation.check_choice(part, "part", ("encoder", "decoder"))
  n = _check_int(num_layers, "num_layers")
  other = _check_int(other_layers, "other_layers", 0)
  enc, dec = (n, other) if part == "encoder" else (other, n)
  _, beta = deepnorm_constants(enc, dec)[part]
  scaled = _xavier_normal(beta)
  return {"init": _xavier_normal(1.0), "bias_init": inits.zeros,
          "rules": [(validation.check_pattern(value, "value"), scaled),
                    (validation.check_pattern(attn_out, "attn_out"), scaled),
                    (validation.check_pattern(ffn, "ffn"), scaled)]}


def deepnorm_alpha(num_layers: int, part: str = "encoder", *, other_layers: int = 0) -> float:
  """DeepNorm's residual scale alpha for ``part`` (see :func:`deepnorm_constants`)."""
  validation.check_choice(part, "part", ("encoder", "decoder"))
  n = _check_int(num_layers, "num_layers")
  other = _check_int(other_layers, "other_layers", 0)
  enc, dec = (n, other) if part == "encoder" else (other, n)
  return deepnorm_constants(enc, dec)[part][0]


def deepnorm_residual(x: jax.Array, branch: jax.Array, alpha: float, norm=None) -> jax.Array:
  r"""DeepNorm's residual connection ``norm(alpha * x + branch)`` (Post-LN with alpha).

  .. math:: x_{l+1} = \mathrm{LN}(\alpha\, x_l + G_l(x_l))

  Args:
    x: the residual stream.
    branch: ``G(x)``, the sub-layer's output (same shape and dtype).
    alpha: the residual scale (:func:`deepnorm_alpha`).
    norm: the layer norm to apply (a callable), or None to return the sum.

  Returns:
    ``norm(alpha * x + branch)``.
  """
  alpha = validation.check_real(alpha, "alpha", positive=True)
  if jnp.shape(x) != jnp.shape(branch):
    raise ValueError(f"x and branch must have the same shape, got {jnp.shape(x)} and "
                     f"{jnp.shape(branch)}")
  x = jnp.asarray(x)
  out = x * jnp.asarray(alpha, x.dtype) + branch
  return out if norm is None else norm(out)


# --------------------------------------------------------------------------- OLMo


def olmo2(std: float = OLMO2_STD) -> Recipe:
  r"""OLMo-2's init (``init_fn: normal``): N(0, 0.02^2) truncated at +-3 std, zero biases.

  Every linear and embedding (``olmo/initialization.py::init_normal`` with
  ``init_std: 0.02``, ``init_cutoff_factor: 3``; ``std`` is the normal's before
  truncation, as ``torch.nn.init.trunc_normal_``: the samples' std is 0.0197).

  Args:
    std: the normal's std (0.02).

  Returns:
    A recipe ``{"init", "bias_init", "rules"}``.

  References: OLMo 2 (Team OLMo 2024), https://arxiv.org/abs/2501.00656;
  allenai/OLMo ``configs/official-0425/OLMo2-1B-stage1.yaml``.
  """
  std = validation.check_real(std, "std", positive=True)
  return {"init": _normal(std, f"trunc_normal(std={std:g}, 3 std)", OLMO_CUTOFF),
          "bias_init": inits.zeros, "rules": []}


def olmo(d_model: int, num_layers: int, *, d_ff: int | None = None,
         block: str = r"(blocks|layers|h)/{i}/", attn_out: str = ATTN_OUT,
         ffn_out: str = FFN_OUT) -> Recipe:
  r"""OLMo-1's init (``init_fn: mitchell``): truncated normals scaled by width and layer index.

  All truncated at +-3 std: every input projection (q/k/v, MLP in) and embedding
  N(0, 1/d); in block l (0-based) the attention output N(0, 1/(2 d (l+1))) and the MLP
  output N(0, 1/(2 d_ff (l+1))) (``olmo/model.py``, ``InitFnType.mitchell``).

  Args:
    d_model: d.
    num_layers: the number of blocks.
    d_ff: the MLP output layer's input width (default 4 d).
    block: regex of block ``{i}``'s path prefix (``{i}`` is replaced by the index).
    attn_out, ffn_out: regexes of the residual-writing kernels inside a block.

  Returns:
    A recipe ``{"init", "bias_init", "rules"}`` with two rules per block.

  References: Groeneveld et al. 2024, "OLMo", https://arxiv.org/abs/2402.00838;
  allenai/OLMo ``configs/official-0724/OLMo-1B.yaml``.
  """
  d = _check_int(d_model, "d_model")
  n = _check_int(num_layers, "num_layers")
  d_ff = 4 * d if d_ff is None else _check_int(d_ff, "d_ff")
  if not isinstance(block, str) or "{i}" not in block:
    raise ValueError(f"block must be a regex containing '{{i}}' for the block index, got "
                     f"{block!r}")
  validation.check_pattern(attn_out, "attn_out")
  validation.check_pattern(ffn_out, "ffn_out")
  rules = []
  for i in range(n):
    # The block's prefix as a lookahead, then the projection's own pattern.
    within = rf"^(?=(.*/)?{block.replace('{i}', str(i))})"
    rules.append((validation.check_pattern(within + ".*" + attn_out, "block"),
                  _normal(1 / math.sqrt(2 * d * (i + 1)), f"olmo_attn_out(l={i})", OLMO_CUTOFF)))
    rules.append((within + ".*" + ffn_out,
                  _normal(1 / math.sqrt(2 * d_ff * (i + 1)), f"olmo_ffn_out(l={i})",
                          OLMO_CUTOFF)))
  return {"init": _normal(1 / math.sqrt(d), f"trunc_normal(1/sqrt({d}))", OLMO_CUTOFF),
          "bias_init": inits.zeros, "rules": rules}


# --------------------------------------------------------------------------- pytrees


def apply_recipe(params: Any, recipe: Recipe, *, key: jax.Array, kernels: str = KERNELS,
                 biases: str = BIASES, fans: Any = None) -> Any:
  """Applies a recipe to a params pytree (linen ``params``, ``nnx.state``, Haiku params).

  The recipe's rules first, then ``init`` on the leaves ``kernels`` matches and
  ``bias_init`` on those ``biases`` matches (:func:`jinit.residual.apply_rules`, fans
  from shapes). The recipes here need no fans (normals of fixed std) except
  :func:`deepnorm`'s Xavier: for rank >= 3 kernels pass ``fans`` (or use a model
  reinit, which knows each layer). An Equinox model's norm weights are named
  ``weight`` too: use :func:`jinit.equinox.reinit` for Equinox.

  Args:
    params: a params pytree.
    recipe: ``{"init", "bias_init", "rules"}``.
    key: a PRNG key.
    kernels, biases: regexes of the leaves ``init`` and ``bias_init`` draw.
    fans: as in :func:`jinit.residual.apply_rules`.

  Returns:
    The new params pytree.
  """
  if not isinstance(recipe, dict) or not set(recipe) <= {"init", "bias_init", "rules"}:
    raise TypeError(f"recipe must be a dict with keys init, bias_init, rules, got {recipe!r}")
  rules = list(recipe.get("rules", []))
  paths = residual.param_paths(params)
  for pattern, init in ((kernels, recipe.get("init")), (biases, recipe.get("bias_init"))):
    validation.check_pattern(pattern, "kernels/biases")
    if init is not None and any(re.search(pattern, p) for p in paths):
      rules.append((pattern, init))
  used = [r for r in rules if any(re.search(r[0], p) for p in paths)]
  return residual.apply_rules(params, used, key=key, fans=fans)


# --------------------------------------------------------------------------- mimetic


MIMETIC_NAMES = {
    # layout: (query, key, value, out, parameter name)
    "flax": ("query", "key", "value", "out", "kernel"),
    "equinox": ("query_proj", "key_proj", "value_proj", "output_proj", "weight"),
    "haiku": ("query", "key", "value", "linear", "w"),
}


def mimetic_factors(key: jax.Array, d: int, k: int, alpha: float, beta: float,
                    dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  r"""``(L, R)`` of shapes ``(d, k)`` and ``(k, d)`` with ``L R`` ~ ``alpha Z + beta I``.

  Z has iid entries of variance 1/d (uniform, as the reference code's default); the
  d x d target is factored by its SVD, ``L = U_k S_k^{1/2}``, ``R = S_k^{1/2} V_k^T``
  (exact for k = d, the best rank-k approximation otherwise). A negative ``beta``
  gives ``alpha Z - |beta| I`` (the value/output pair).
  """
  bound = math.sqrt(3.0 / d)
  z = jax.random.uniform(key, (d, d), jnp.float32, -bound, bound)
  target = alpha * z + beta * jnp.eye(d, dtype=jnp.float32)
  u, s, vt = jnp.linalg.svd(target)
  root = jnp.sqrt(s[:k])
  return (u[:, :k] * root[None, :]).astype(dtype), (root[:, None] * vt[:k]).astype(dtype)


def mimetic_attention(params: Any, *, key: jax.Array, alpha: float, beta: float,
                      value_alpha: float | None = None, value_beta: float | None = None,
                      layout: str = "flax") -> Any:
  r"""Mimetic initialization of every attention layer of a params pytree.

  .. math:: W_Q W_K^\top \approx \alpha_1 Z_1 + \beta_1 I, \qquad
            W_V W_O \approx \alpha_2 Z_2 - \beta_2 I

  over the full width (all heads together, as the reference code), Z with iid
  entries of variance 1/d, factored by SVD (:func:`mimetic_factors`). Attention maps
  start near the identity-plus-noise pattern trained ViTs show. q/k and v/o are
  drawn *jointly*, so this is a pytree function, not a per-parameter rule: call it
  after a model reinit (on linen ``params``, ``nnx.state(model, nnx.Param)`` then
  ``nnx.update``, an Equinox model, or Haiku params).

  Layouts: ``"flax"`` (q/k/v ``(d, heads, head_dim)``, out ``(heads, head_dim, d)``),
  ``"equinox"`` (``query_proj/weight`` ``(heads*head_dim, d)``, ``output_proj/weight``
  ``(d, heads*head_dim)``), ``"haiku"`` (``query/w`` ``(d, heads*head_dim)``,
  ``linear/w`` ``(heads*head_dim, d)``). Needs heads*head_dim <= d.

  Args:
    params: a pytree holding attention layers named as ``layout``'s.
    key: a PRNG key (layer i uses ``fold_in(key, i)``).
    alpha, beta: alpha_1, beta_1 of the query-key product.
    value_alpha, value_beta: alpha_2, beta_2 of the value-output product (default:
      alpha, beta).
    layout: ``"flax"``, ``"equinox"`` or ``"haiku"``.

  Returns:
    A pytree of the same structure.

  Raises:
    ValueError: no attention layer found, or a query/key/value/out set is incomplete.

  References: Trockman & Kolter 2023, "Mimetic Initialization of Self-Attention
  Layers", ICML, https://arxiv.org/abs/2305.09828
  """
  validation.check_choice(layout, "layout", tuple(MIMETIC_NAMES))
  key = validation.check_key(key)
  a1 = validation.check_real(alpha, "alpha")
  b1 = validation.check_real(beta, "beta")
  a2 = a1 if value_alpha is None else validation.check_real(value_alpha, "value_alpha")
  b2 = b1 if value_beta is None else validation.check_real(value_beta, "value_beta")
  q, k, v, o, w = MIMETIC_NAMES[layout]
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [path_str(p) for p, _ in leaves]
  index = {p: i for i, p in enumerate(paths)}
  suffix = f"{q}/{w}"
  prefixes = [p[:-len(suffix)] for p in paths if p == suffix or p.endswith("/" + suffix)]
  if not prefixes:
    raise ValueError(f"mimetic_attention: no '{suffix}' parameter in params (layout="
                     f"{layout!r}); the parameters are: {', '.join(paths[:20])}")
  new = [leaf for _, leaf in leaves]
  for n, prefix in enumerate(prefixes):
    names = [f"{prefix}{x}/{w}" for x in (q, k, v, o)]
    missing = [x for x in names if x not in index]
    if missing:
      raise ValueError(f"mimetic_attention: {', '.join(missing)} missing next to "
                       f"{names[0]!r}")
    arrs = [new[index[x]] for x in names]
    if layout == "flax":
      d, width = arrs[0].shape[0], math.prod(arrs[0].shape[1:])
    elif layout == "equinox":
      width, d = arrs[0].shape
    else:
      d, width = arrs[0].shape
    if width > d:
      raise ValueError(f"mimetic_attention: {names[0]!r} projects d={d} to {width} > d "
                       "features; the construction needs heads*head_dim <= d")
    kq, kv = jax.random.split(jax.random.fold_in(key, n))
    dtype = jnp.result_type(arrs[0])
    wq, wkt = mimetic_factors(kq, d, width, a1, b1, dtype)  # (d, w), (w, d)
    wv, wo = mimetic_factors(kv, d, width, a2, -b2, dtype)
    if layout == "flax":
      vals = (wq.reshape(arrs[0].shape), wkt.T.reshape(arrs[1].shape),
              wv.reshape(arrs[2].shape), wo.reshape(arrs[3].shape))
    elif layout == "equinox":  # weights are (out, in): W^T of the math layout
      vals = (wq.T, wkt, wv.T, wo.T)
    else:
      vals = (wq, wkt.T, wv, wo)
    for name, arr, val in zip(names, arrs, vals):
      if val.shape != arr.shape:
        raise ValueError(f"mimetic_attention: {name!r} has shape {arr.shape}, expected "
                         f"{val.shape} for layout {layout!r}")
      new[index[name]] = val
  return jax.tree_util.tree_unflatten(treedef, new)

