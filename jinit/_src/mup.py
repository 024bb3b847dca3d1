"""abc-parametrizations (SP, μP, depth-μP, CompleteP) as per-parameter rules, and the optax
transforms that apply them.

A parametrization says, for each parameter *role*, how five things scale with width (and,
for the depth parametrizations, with depth):

* the init variance, as a power of ``fan_in``;
* a forward multiplier (the parameter enters the network as ``multiplier * W``);
* the learning-rate multiplier under SGD, a power of ``fan_in`` times a power of ``fan_out``;
* the learning-rate multiplier under Adam (any entrywise-normalizing optimizer);
* the multiplier on Adam's epsilon.

Roles come from which dimensions of a parameter grow with width (its *infinite* dimensions,
found by comparing a model with a narrower base model, as ``mup.set_base_shapes`` does):

==========  =================================================================================
role        what it is
==========  =================================================================================
``input``   a weight whose fan-in is finite and fan-out infinite (input layer, embedding)
``hidden``  a weight with infinite fan-in and fan-out (two or more infinite dims)
``output``  the readout weight: infinite fan-in, finite fan-out
``bias``    a vector with one infinite dimension (biases; its fan-out is its size, fan-in 1)
``norm``    a norm gain with one infinite dimension (treated as a bias, as in the paper)
``fixed``   no infinite dimension (e.g. the readout's bias): never rescaled
==========  =================================================================================

All width dependence is through *width multipliers* ``fan / base_fan`` (``mup``'s
convention), so every parametrization coincides with SP at the base shape and a learning
rate tuned on the base model is the one to transfer.

Tables (Yang et al., "Tensor Programs V", 2022, https://arxiv.org/abs/2203.03466):

* ``"mup"``: Table 8, μP with the readout multiplier ``1/fan_in`` (what ``mup`` implements:
  ``MuReadout`` + ``MuAdam``/``MuSGD``, "μP via learning-rate scaling").
* ``"mup_table3"``: Table 3, μP with readout init variance ``1/fan_in^2`` and no multiplier.
* ``"sp"``: standard parametrization (init variance ``1/fan_in``, nothing else scaled).

For hidden weights under SGD the paper's tables write ``1`` (they assume fan-in and fan-out
grow together); we use ``fan_out/fan_in`` as ``mup.MuSGD`` does, which is 1 then.

Depth (``"depth_mup"``, ``"completep"``): a residual network ``x <- x + a * branch(x)`` with
``L`` blocks, tuned at ``L_base`` blocks. The model multiplies every residual branch by
:func:`branch_multiplier` ``= (L / L_base)^-alpha``; every parameter inside a branch (its
weights, biases and norm gains, whatever their width role) gets, on top of its μP width rule
(``TABLES["mup"]``), the depth powers of :data:`BRANCH_TABLES`, with ``m_L = L / L_base``:

* Adam lr ``m_L^(alpha - 1)``, Adam epsilon ``m_L^-alpha``, SGD lr ``m_L^(2 alpha - 1)``;
* init variance and forward multiplier unchanged in depth.

Parameters outside the branches (input layer, readout, final norm) follow μP. At
``L == L_base`` both are exactly ``"mup"``.

* ``"depth_mup"``, ``alpha = 1/2``: G. Yang, D. Yu, C. Zhu, S. Hayou, "Tensor Programs VI:
  Feature Learning in Infinite-Depth Neural Networks", 2023, https://arxiv.org/abs/2310.02244
  (branch ``1/sqrt(L)``, SGD lr constant, Adam lr ``1/sqrt(L)``), and B. Bordelon, L. Noci,
  M. Li, B. Hanin, C. Pehlevan, "Depthwise Hyperparameter Transfer in Residual Networks",
  2023, https://arxiv.org/abs/2309.16620 (branch ``1/sqrt(L)``, SGD lr constant in depth).
* ``"completep"``, ``alpha = 1``: N. Dey et al., "Don't be lazy: CompleteP enables
  compute-efficient deep transformers", 2025, https://arxiv.org/abs/2505.01618, as its
  reference code (EleutherAI/nanoGPT-mup, branch ``completep``) does: branch ``1/L``, block
  weights / biases / norm gains Adam lr ``m_L^(alpha-1) = 1``, their Adam epsilon
  ``m_L^-alpha``. Deviations: the paper and its code are Adam-only; the SGD entry
  ``m_L^(2 alpha - 1)`` (``m_L`` for CompleteP) follows the same derivation as TP VI's SGD
  rule (a block's gradient carries the branch multiplier once, its effect on the features
  once more; each block must move the features by ``Θ(1/L)``). The reference code also
  scales every epsilon by ``1/width_mult``; jinit's μP follows ``mup``'s ``MuAdam``, which
  does not, so only the depth part of the epsilon rule is applied (identical at the base
  width). Weight decay is not part of these rules.

u-μP (``"u_mup"``): C. Blake et al., "u-μP: The Unit-Scaled Maximal Update Parametrization",
ICLR 2025, https://arxiv.org/abs/2407.17465, as graphcore's ``unit_scaling`` 0.3.5
implements it. Every weight is drawn N(0, 1) and the scale moves into the ops
(:mod:`jinit._src.umup`: a scaled matmul ``1/sqrt(fan_in)``, the readout ``1/fan_in``,
``residual_split``/``residual_add`` with ``tau``, attention logits ``1/head_dim``). Its
rules are in *absolute* fans, not width multipliers: u-μP has no base shape. The table of
the paper (``A``: forward multiplier, ``B``: init std, ``C``: Adam lr):

==========  ===================  ================  ==============
role        multiplier           init variance     Adam / SGD lr
==========  ===================  ================  ==============
``input``   1 (embedding)        1                 ``fan_out^-1/2``
``hidden``  ``fan_in^-1/2``      1                 ``fan_in^-1/2``
``output``  ``1/fan_in``         1                 1
bias, norm  1                    (zeros, ones)     1
==========  ===================  ================  ==============

``input`` is an embedding table (a gather, whose "fan-in" is one-hot); every other kernel,
a Dense on real-valued features included, enters through the scaled matmul and is
``hidden`` (``unit_scaling``'s ``mup_type="weight"``, whose lr uses its own fan-in,
finite or not). SGD uses the Adam rules (``unit_scaling.optim.lr_scale_func_sgd(None)``:
with unit-scaled gradients the updates are unit-scaled too). Depth: every parameter
inside the residual branches gets its lr times ``depth^-1/2`` (``depth``: the number of
blocks, ``unit_scaling``'s ``mup_scaling_depth``); the branches are weighted by
``residual_taus``, not by :func:`branch_multiplier`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jinit._src import validation
from jinit._src.paths import path_strs

PARAM_ROLES = ("input", "hidden", "output", "bias", "norm", "fixed")
OPTIMIZERS = ("sgd", "adam")
PARAMETRIZATIONS = ("sp", "mup", "mup_table3", "depth_mup", "completep", "u_mup")
# Parametrizations whose rules are powers of the absolute fans and depth (u-μP has no base
# shape); the others use width multipliers fan / base_fan and depth / base_depth.
ABSOLUTE_PARAMETRIZATIONS = ("u_mup",)
# The residual-branch exponent alpha of the depth parametrizations: branch multiplier
# (L / L_base)^-alpha (Tensor Programs VI: 1/2; CompleteP: 1).
DEPTH_ALPHA: dict[str, float] = {"depth_mup": 0.5, "completep": 1.0}


@dataclasses.dataclass(frozen=True)
class Power:
  """``fan_in ** fan_in_exp * fan_out ** fan_out_exp * depth ** depth_exp`` (a table entry)."""
  fan_in_exp: float = 0.0
  fan_out_exp: float = 0.0
  depth_exp: float = 0.0

  def __call__(self, fan_in: float, fan_out: float, depth: float = 1.0) -> float:
    return (float(fan_in) ** self.fan_in_exp * float(fan_out) ** self.fan_out_exp
            * float(depth) ** self.depth_exp)

  def __mul__(self, other: Power) -> Power:
    return Power(self.fan_in_exp + other.fan_in_exp, self.fan_out_exp + other.fan_out_exp,
                 self.depth_exp + other.depth_exp)

  def __str__(self) -> str:
    parts = []
    for name, e in (("fan_in", self.fan_in_exp), ("fan_out", self.fan_out_exp),
                    ("depth", self.depth_exp)):
      if e == 1:
        parts.append(name)
      elif e != 0:
        parts.append(f"{name}^{e:g}")
    return " * ".join(parts) or "1"


@dataclasses.dataclass(frozen=True)
class Rule:
  """How one role's init variance, forward multiplier, learning rates and Adam epsilon scale."""
  init_var: Power
  multiplier: Power
  sgd_lr: Power
  adam_lr: Power
  eps: Power = Power()

  def lr(self, optimizer: str) -> Power:
    return self.sgd_lr if optimizer == "sgd" else self.adam_lr

  def __mul__(self, other: Rule) -> Rule:
    """The entrywise product (a width rule times a depth rule)."""
    return Rule(*(getattr(self, f.name) * getattr(other, f.name)
                  for f in dataclasses.fields(self)))


ONE = Power()
_FAN_IN = Power(1.0, 0.0)
_FAN_OUT = Power(0.0, 1.0)
_INV_FAN_IN = Power(-1.0, 0.0)
# Hidden weights under SGD: fan_out / fan_in (mup.MuSGD); the paper writes 1 (fan_in ∝ fan_out).
_SGD_HIDDEN = Power(-1.0, 1.0)
_SP = Rule(init_var=_INV_FAN_IN, multiplier=ONE, sgd_lr=ONE, adam_lr=ONE)
_MUP_VECTOR = Rule(init_var=_INV_FAN_IN, multiplier=ONE, sgd_lr=_FAN_OUT, adam_lr=ONE)
_MUP_HIDDEN = Rule(init_var=_INV_FAN_IN, multiplier=ONE, sgd_lr=_SGD_HIDDEN, adam_lr=_INV_FAN_IN)

# TABLES[parametrization][role]. "input", "bias" and "norm" are the paper's "input weights &
# all biases" column; "fixed" has no infinite dimension, so nothing about it scales.
TABLES: dict[str, dict[str, Rule]] = {
    "sp": {role: _SP for role in PARAM_ROLES},
    "mup": {  # Tensor Programs V, Table 8
        "input": _MUP_VECTOR, "bias": _MUP_VECTOR, "norm": _MUP_VECTOR,
        "hidden": _MUP_HIDDEN,
        "output": Rule(init_var=ONE, multiplier=_INV_FAN_IN, sgd_lr=_FAN_IN, adam_lr=ONE),
        "fixed": _SP,
    },
    "mup_table3": {  # Tensor Programs V, Table 3
        "input": _MUP_VECTOR, "bias": _MUP_VECTOR, "norm": _MUP_VECTOR,
        "hidden": _MUP_HIDDEN,
        "output": Rule(init_var=Power(-2.0, 0.0), multiplier=ONE, sgd_lr=_INV_FAN_IN,
                       adam_lr=_INV_FAN_IN),
        "fixed": _SP,
    },
}
# Outside the residual branches the depth parametrizations are μP.
TABLES.update({p: TABLES["mup"] for p in DEPTH_ALPHA})
# u-μP, the table of Blake et al. 2025 (§4), in absolute fans; the lr rules are unit_scaling.optim's
# lr_scale_func_adam (SGD: lr_scale_func_sgd(readout_constraint=None), the same).
_UNIT_ONE = Rule(init_var=ONE, multiplier=ONE, sgd_lr=ONE, adam_lr=ONE)
_INV_SQRT_FAN_IN = Power(-0.5, 0.0)
_INV_SQRT_FAN_OUT = Power(0.0, -0.5)
TABLES["u_mup"] = {
    "input": Rule(init_var=ONE, multiplier=ONE, sgd_lr=_INV_SQRT_FAN_OUT,
                  adam_lr=_INV_SQRT_FAN_OUT),
    "hidden": Rule(init_var=ONE, multiplier=_INV_SQRT_FAN_IN, sgd_lr=_INV_SQRT_FAN_IN,
                   adam_lr=_INV_SQRT_FAN_IN),
    "output": Rule(init_var=ONE, multiplier=_INV_FAN_IN, sgd_lr=ONE, adam_lr=ONE),
    "bias": _UNIT_ONE, "norm": _UNIT_ONE, "fixed": _UNIT_ONE,
}
# u-μP inside a residual branch: lr x depth^-1/2 (unit_scaling.optim.lr_scale_for_depth).
UNIT_DEPTH_RULE = Rule(init_var=ONE, multiplier=ONE, sgd_lr=Power(depth_exp=-0.5),
                       adam_lr=Power(depth_exp=-0.5))


def depth_rule(alpha: float) -> Rule:
  """The depth factors of a parameter inside a residual branch scaled by ``L^-alpha``.

  With ``m_L = L / L_base``: Adam lr ``m_L^(alpha-1)``, Adam epsilon ``m_L^-alpha``, SGD lr
  ``m_L^(2 alpha-1)``; init variance and forward multiplier unchanged (the branch
  multiplier is applied by the model, :func:`branch_multiplier`). Derivation (Tensor
  Programs VI; CompleteP): an Adam update moves a block's features by ``lr * m_L^-alpha``,
  an SGD update by ``lr * m_L^-2alpha`` (the gradient carries the branch multiplier too);
  each of the ``L`` blocks must move them by ``Θ(1/L)``. Adam's epsilon scales like the
  block's gradients, ``m_L^-alpha``.

  Args:
    alpha: the branch exponent (1/2: depth-μP; 1: CompleteP).

  Returns:
    A :class:`Rule` whose powers have only depth exponents.
  """
  return Rule(init_var=ONE, multiplier=ONE, sgd_lr=Power(depth_exp=2.0 * alpha - 1.0),
              adam_lr=Power(depth_exp=alpha - 1.0), eps=Power(depth_exp=-alpha))


# BRANCH_TABLES[parametrization][role]: the rule of a parameter inside a residual branch.
# Without a depth rule (sp, mup, mup_table3) it is TABLES' rule.
BRANCH_TABLES: dict[str, dict[str, Rule]] = {
    p: ({role: r * depth_rule(DEPTH_ALPHA[p]) for role, r in TABLES[p].items()}
        if p in DEPTH_ALPHA else TABLES[p])
    for p in PARAMETRIZATIONS
}
BRANCH_TABLES["u_mup"] = {role: r * UNIT_DEPTH_RULE for role, r in TABLES["u_mup"].items()}


def check_optimizer(optimizer: Any) -> str:
  if not isinstance(optimizer, str):
    raise TypeError(f"optimizer must be a str, one of {OPTIMIZERS}, got {type(optimizer).__name__}")
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
  return optimizer


def check_parametrization(parametrization: Any) -> str:
  if not isinstance(parametrization, str):
    raise TypeError(f"parametrization must be a str, one of {PARAMETRIZATIONS}, got "
                    f"{type(parametrization).__name__}")
  if parametrization not in PARAMETRIZATIONS:
    raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got "
                     f"{parametrization!r}")
  return parametrization


def rule(parametrization: str, role: str, *, branch: bool = False) -> Rule:
  """The table entry for ``role`` under ``parametrization`` (inside a residual branch or not)."""
  check_parametrization(parametrization)
  if role not in PARAM_ROLES:
    raise ValueError(f"role must be one of {PARAM_ROLES}, got {role!r}")
  if not isinstance(branch, bool):
    raise TypeError(f"branch must be a bool, got {type(branch).__name__}")
  return (BRANCH_TABLES if branch else TABLES)[parametrization][role]


def branch_multiplier(parametrization: str, depth: int, base_depth: int) -> float:
  """The factor on every residual branch: ``x <- x + branch_multiplier * branch(x)``.

  ``(depth / base_depth)^-alpha`` with ``alpha = 1/2`` for ``"depth_mup"`` (Tensor Programs
  VI, https://arxiv.org/abs/2310.02244; Bordelon et al., https://arxiv.org/abs/2309.16620)
  and ``alpha = 1`` for ``"completep"`` (Dey et al., https://arxiv.org/abs/2505.01618); 1
  for ``"sp"``, ``"mup"`` and ``"mup_table3"``. 1 at the base depth, so the base model is
  the μP model whose hyperparameters transfer.

  Args:
    parametrization: one of :data:`PARAMETRIZATIONS`.
    depth: the number of residual blocks ``L`` of the model.
    base_depth: ``L`` of the base model the learning rate is tuned on.

  Returns:
    The multiplier, a python float.

  Raises:
    TypeError, ValueError: a bad ``parametrization``, a non-int or non-positive ``depth`` /
      ``base_depth``; ``"u_mup"``, whose branches are weighted by ``tau`` instead
      (:func:`jinit.mup.residual_taus`, :func:`jinit.mup.residual_add`).
  """
  check_parametrization(parametrization)
  if parametrization == "u_mup":
    raise ValueError("parametrization='u_mup' weights its residual branches with "
                     "jinit.mup.residual_add(branch, skip, tau) and the taus of "
                     "jinit.mup.residual_taus(layers), not with a branch multiplier")
  depth = validation.check_int(depth, "depth")
  base_depth = validation.check_int(base_depth, "base_depth")
  return (depth / base_depth) ** -DEPTH_ALPHA.get(parametrization, 0.0)


@dataclasses.dataclass(frozen=True)
class ParamMeta:
  """One parameter's place in a width-scaled family of models.

  Attributes:
    path: the parameter's path, ``"/"``-joined (``"layers/0/kernel"``).
    shape, base_shape: its shape in the target and the base model.
    infinite: the axes whose size differs between them (they grow with width).
    fan_in_axes: the infinite axes counted as fan-in (the rest are fan-out).
    role: one of :data:`PARAM_ROLES`.
    parametrization: one of :data:`PARAMETRIZATIONS`.
    depth_mult: ``depth / base_depth`` (residual blocks of the model over the base's;
      under ``"u_mup"`` the model's blocks, u-μP's rules being absolute).
    branch: whether the parameter lies inside a residual branch (depth rules apply).
    fan_in, fan_out: the absolute fans (products of the fan-in axes, finite ones included,
      and of the other axes; a vector has fan-in 1). ``"u_mup"`` evaluates its rules at
      these; the width parametrizations at ``fan_in_mult`` / ``fan_out_mult``.
  """
  path: str
  shape: tuple[int, ...]
  base_shape: tuple[int, ...]
  infinite: tuple[int, ...]
  fan_in_axes: tuple[int, ...]
  role: str
  parametrization: str
  depth_mult: float = 1.0
  branch: bool = False
  fan_in: int = 1
  fan_out: int = 1

  def _mult(self, axes) -> float:
    return math.prod(self.shape[a] / self.base_shape[a] for a in axes)

  @property
  def fan_in_mult(self) -> float:
    """``fan_in / base_fan_in`` (1 when no fan-in axis grows)."""
    return self._mult(self.fan_in_axes)

  @property
  def fan_out_mult(self) -> float:
    """``fan_out / base_fan_out`` over the infinite axes that are not fan-in."""
    return self._mult(a for a in self.infinite if a not in self.fan_in_axes)

  @property
  def rule(self) -> Rule:
    return (BRANCH_TABLES if self.branch else TABLES)[self.parametrization][self.role]

  def _at(self, power: Power) -> float:
    if self.parametrization in ABSOLUTE_PARAMETRIZATIONS:
      return power(self.fan_in, self.fan_out, self.depth_mult)
    return power(self.fan_in_mult, self.fan_out_mult, self.depth_mult)

  def lr_multiplier(self, optimizer: str) -> float:
    """The factor on the base learning rate: the table's entry at the width/depth multipliers."""
    check_optimizer(optimizer)
    return self._at(self.rule.lr(optimizer))

  @property
  def eps_multiplier(self) -> float:
    """The factor on Adam's epsilon (CompleteP: ``depth_mult^-alpha`` inside branches)."""
    return self._at(self.rule.eps)

  @property
  def multiplier(self) -> float:
    """The forward multiplier relative to the base model (readout: ``1/width_mult``).

    Under ``"u_mup"``: the absolute multiplier its op applies (``fan_in^-1/2``, ``1/fan_in``).
    """
    return self._at(self.rule.multiplier)

  @property
  def init_std_mult(self) -> float:
    """Init std relative to the base model's: ``sqrt(init_var(width_mult))``.

    Under ``"u_mup"``: the absolute init std of a weight, 1.
    """
    return math.sqrt(self._at(self.rule.init_var))

  @property
  def init_std_vs_sp(self) -> float:
    """Init std relative to SP (variance ``1/fan_in``) at the same width.

    1 for everything but the μP readout: ``sqrt(width_mult)`` under Table 8 (what
    ``mup``'s ``_rescale_parameters`` multiplies by) and ``1/sqrt(width_mult)`` under Table 3.
    """
    if self.parametrization in ABSOLUTE_PARAMETRIZATIONS:
      return self.init_std_mult * math.sqrt(self.fan_in)  # SP's std is 1/sqrt(fan_in)
    return self.init_std_mult / math.sqrt(_INV_FAN_IN(self.fan_in_mult, 1.0))


def _infinite_axes(shape, base_shape) -> tuple[int, ...]:
  return tuple(a for a, (n, b) in enumerate(zip(shape, base_shape)) if n != b)


def _default_fan_in(ndim: int, infinite: tuple[int, ...]) -> tuple[int, ...]:
  """Flax layouts put fan-in axes before fan-out axes (Dense (in, out), Conv (H, W, in, out),
  DenseGeneral (in, heads, head_dim) / (heads, head_dim, out), Embed (vocab, features)).
  Vectors (biases, gains) have no fan-in. Of a kernel's infinite axes, the first is fan-in
  and the rest fan-out; a kernel with one infinite axis is fan-in when it is not the last
  axis (a readout), fan-out when it is (an input layer). Override with ``fan_in_axes``.
  """
  if ndim <= 1 or not infinite:
    return ()
  if len(infinite) == 1:
    return infinite if infinite[0] != ndim - 1 else ()
  return infinite[:1]


def _absolute_fan_in_axes(ndim: int, infinite_fan_in: tuple[int, ...],
                          override: Sequence[int] | None) -> tuple[int, ...]:
  """All fan-in axes of a kernel, finite ones included (Flax layouts put them first).

  Up to the last infinite fan-in axis when there is one (``(d, heads, head_dim)``: axis 0;
  ``(heads, head_dim, d)``: axes 0 and 1; ``(H, W, in, out)``: 0-2), else every axis but
  the last (an input layer, an embedding ``(vocab, features)``: one-hot fan-in ``vocab``).
  """
  if override is not None:
    return tuple(sorted(a % ndim for a in override))
  if ndim <= 1:
    return ()
  if infinite_fan_in:
    return tuple(range(max(infinite_fan_in) + 1))
  return tuple(range(ndim - 1))


def build_meta(shapes: Mapping[str, Sequence[int]], base_shapes: Mapping[str, Sequence[int]], *,
               parametrization: str = "mup", readout: str | Sequence[str] | None = None,
               fan_in_axes: Mapping[str, Sequence[int]] | None = None,
               norm_names: Sequence[str] = ("scale",),
               bias_names: Sequence[str] = ("bias",), depth: int | None = None,
               base_depth: int | None = None,
               branches: str | Sequence[str] | Callable[[str], bool] | None = None,
               embed_names: Sequence[str] = ("embedding",)) -> dict[str, ParamMeta]:
  """Per-parameter :class:`ParamMeta` from the target's and the base's ``{path: shape}``.

  Args:
    shapes, base_shapes: ``{"a/b/kernel": shape}`` of the target and the base model.
    parametrization: one of :data:`PARAMETRIZATIONS`.
    readout: the path (or paths) of the readout weight, or of its layer. ``None``: the one
      kernel whose only infinite axis is fan-in; an error if there is not exactly one.
    fan_in_axes: ``{path: axes}`` overrides of the default fan-in axes (see above).
    norm_names: leaf names of norm gains (role ``norm``).
    bias_names: leaf names of biases (role ``bias``, whatever their rank: attention biases
      are ``(heads, head_dim)``). Vectors (rank <= 1) with other names are biases too.
    depth, base_depth: residual blocks of the model and of the base model (the base is
      compared at the same depth; only these numbers carry depth). Required, with
      ``branches``, by ``"depth_mup"`` and ``"completep"``; optional otherwise.
    branches: the parameters inside residual branches: a path prefix (``"blocks"`` matches
      ``"blocks/0/fc/kernel"`` and stacked ``"blocks/fc/kernel"``), a sequence of them, or a
      predicate ``path -> bool``.
    embed_names: leaf names of embedding tables (Flax ``Embed``'s ``"embedding"``): u-μP's
      ``input`` role; every other kernel is ``hidden`` or the readout under ``"u_mup"``.

  Returns:
    ``{path: ParamMeta}`` in the order of ``shapes``.

  Raises:
    ValueError: different parameter sets or ranks (naming ``base_model``), a readout that
      cannot be identified or does not exist (naming ``readout``), a depth parametrization
      without ``depth``/``base_depth``/``branches``, a prefix matching no parameter.
    TypeError: a non-int ``depth``/``base_depth``, ``branches`` of another type.
  """
  check_parametrization(parametrization)
  depth_mult, in_branch = check_depth(parametrization, depth, base_depth, branches, shapes)
  missing = sorted(set(base_shapes) - set(shapes))
  extra = sorted(set(shapes) - set(base_shapes))
  if missing or extra:
    raise ValueError(
        f"base_model must have the same parameters as model ({len(base_shapes)} vs "
        f"{len(shapes)}); only in base_model: {missing[:5]}, only in model: {extra[:5]}")
  for path, shape in shapes.items():
    if len(shape) != len(base_shapes[path]):
      raise ValueError(f"base_model's {path!r} has rank {len(base_shapes[path])} "
                       f"(shape {tuple(base_shapes[path])}), model's has rank {len(shape)} "
                       f"(shape {tuple(shape)}): they must match")
  fan_in_axes = dict(fan_in_axes or {})
  for path in fan_in_axes:
    if path not in shapes:
      raise ValueError(f"fan_in_axes names {path!r}, which is not a parameter; parameters: "
                       f"{list(shapes)[:8]}...")
  infinite = {p: _infinite_axes(tuple(s), tuple(base_shapes[p])) for p, s in shapes.items()}
  leaf = {p: p.rsplit("/", 1)[-1] for p in shapes}
  # Vectors: rank <= 1, or named like a bias / norm gain (attention biases are (heads, dim)).
  vector = {p: len(s) <= 1 or leaf[p] in bias_names or leaf[p] in norm_names
            for p, s in shapes.items()}
  fan_in = {p: tuple(a % len(shapes[p]) for a in fan_in_axes[p]) if p in fan_in_axes
            else () if vector[p] else _default_fan_in(len(shapes[p]), inf)
            for p, inf in infinite.items()}
  for p, axes in fan_in.items():
    if not set(axes) <= set(infinite[p]):
      fan_in[p] = tuple(a for a in axes if a in infinite[p])  # finite fan-in axes don't scale

  def readout_like(p):
    return (not vector[p] and infinite[p] and set(infinite[p]) == set(fan_in[p]))

  absolute = parametrization in ABSOLUTE_PARAMETRIZATIONS
  if readout is None and not any(infinite.values()):
    if absolute:
      raise ValueError("readout: parametrization='u_mup' with a model that has no axis "
                       "growing with width (base_model has its shapes) cannot find the readout; "
                       "pass readout='path/to/kernel' (or the layer's path)")
    readouts = set()  # the base model itself: nothing scales, every role is "fixed"
  elif readout is None:
    found = [p for p in shapes if readout_like(p)]
    if len(found) != 1:
      raise ValueError(
          "readout: cannot identify the readout weight (the kernel whose only infinite axes "
          f"are fan-in); found {len(found)}: {found[:6]}. Pass readout='path/to/kernel' "
          "(or the layer's path)")
    readouts = set(found)
  else:
    names = [readout] if isinstance(readout, str) else list(readout)
    readouts = set()
    for name in names:
      if not isinstance(name, str):
        raise TypeError(f"readout must be a path str or a sequence of them, got {name!r}")
      hits = [p for p in shapes if (p == name or p.startswith(name.rstrip("/") + "/"))
              and not vector[p]]
      if not hits:
        raise ValueError(f"readout {name!r} matches no weight (not a bias or gain) of the model; "
                         f"parameters: {list(shapes)[:8]}...")
      readouts.update(hits)

  out = {}
  for p, shape in shapes.items():
    inf = infinite[p]
    axes = () if vector[p] else _absolute_fan_in_axes(len(shape), fan_in[p],
                                                      fan_in_axes.get(p))
    fans = (math.prod(shape[a] for a in axes), math.prod(shape) // max(
        math.prod(shape[a] for a in axes), 1))
    if absolute:
      role = ("output" if p in readouts else
              ("norm" if leaf[p] in norm_names else "bias") if vector[p] else
              "input" if leaf[p] in embed_names else "hidden")
    elif p in readouts:
      role = "output" if inf else "fixed"
    elif not inf:
      role = "fixed"
    elif vector[p]:
      role = "norm" if leaf[p] in norm_names else "bias"
    elif fan_in[p] and len(inf) > len(fan_in[p]):
      role = "hidden"
    elif not fan_in[p]:
      role = "input"
    else:
      role = "output"  # infinite fan-in only, but not the readout: scale it like one
    out[p] = ParamMeta(p, tuple(shape), tuple(base_shapes[p]), inf, fan_in[p], role,
                       parametrization, depth_mult, in_branch(p), *fans)
  return out


def check_depth(parametrization, depth, base_depth, branches, shapes=None):
  """``(depth_mult, path -> in a branch)`` from build_meta's depth arguments, all checked.

  With ``shapes`` (``{path: shape}``), every ``branches`` prefix must match a parameter.
  """
  if parametrization in DEPTH_ALPHA:
    for name, value in (("depth", depth), ("base_depth", base_depth), ("branches", branches)):
      if value is None:
        raise ValueError(f"{name} is required by parametrization={parametrization!r} (depth, "
                         "base_depth: residual blocks of the model and the base; branches: "
                         "the path prefix(es) of the residual branches' parameters)")
  if parametrization in ABSOLUTE_PARAMETRIZATIONS and depth is not None:
    if base_depth is not None and validation.check_int(base_depth, "base_depth") != 1:
      raise ValueError(f"base_depth: parametrization={parametrization!r} has no base depth "
                       "(its lr rule is depth^-1/2 in the model's own blocks, unit_scaling's "
                       f"mup_scaling_depth); pass depth=L alone, got base_depth={base_depth!r}")
    base_depth = 1
  if (depth is None) != (base_depth is None):
    raise ValueError("depth and base_depth go together: give both (residual blocks of the "
                     f"model and of the base model) or neither, got depth={depth!r}, "
                     f"base_depth={base_depth!r}")
  depth_mult = 1.0
  if depth is not None:
    depth_mult = (validation.check_int(depth, "depth")
                  / validation.check_int(base_depth, "base_depth"))
  if branches is None:
    return depth_mult, lambda path: False
  if callable(branches):
    return depth_mult, lambda path: bool(branches(path))
  names = [branches] if isinstance(branches, str) else branches
  if not isinstance(names, Sequence) or not all(isinstance(n, str) and n for n in names):
    raise TypeError("branches must be a path prefix str, a sequence of them or a predicate "
                    f"path -> bool, got {branches!r}")
  prefixes = [n.rstrip("/") for n in names]

  def in_branch(path):
    return any(path == n or path.startswith(n + "/") for n in prefixes)

  if shapes is not None:
    for n in prefixes:
      if not any(path == n or path.startswith(n + "/") for path in shapes):
        raise ValueError(f"branches: {n!r} matches no parameter; parameters: "
                         f"{list(shapes)[:8]}...")
  return depth_mult, in_branch


def format_meta(meta: Mapping[str, ParamMeta], optimizer: str | None = None) -> str:
  """A markdown table: path, shape, base shape, role, width multipliers, lr multiplier(s)."""
  opts = OPTIMIZERS if optimizer is None else (check_optimizer(optimizer),)
  depth = any(m.branch or m.depth_mult != 1.0 for m in meta.values())
  absolute = any(m.parametrization in ABSOLUTE_PARAMETRIZATIONS for m in meta.values())
  head = ["path", "shape", "base", "role", "fan_in x", "fan_out x", "forward x", "init std x"]
  head += ["fan_in", "fan_out"] if absolute else []
  head += ["branch", "depth x", "adam eps x"] if depth else []
  head += [f"{o} lr x" for o in opts]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for m in meta.values():
    cells = [m.path, str(m.shape), str(m.base_shape), m.role, f"{m.fan_in_mult:g}",
             f"{m.fan_out_mult:g}", f"{m.multiplier:g}", f"{m.init_std_mult:g}"]
    cells += [str(m.fan_in), str(m.fan_out)] if absolute else []
    cells += ["yes" if m.branch else "no", f"{m.depth_mult:g}",
              f"{m.eps_multiplier:g}"] if depth else []
    cells += [f"{m.lr_multiplier(o):g}" for o in opts]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


# --------------------------------------------------------------------------- paths


def flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """``{path: shape}`` of every array-like leaf of ``tree``."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return dict(zip(path_strs([kp for kp, _ in leaves]),
                  (tuple(jnp.shape(leaf)) for _, leaf in leaves)))


# --------------------------------------------------------------------------- optax


class ScaleUpdatesState(NamedTuple):
  """No state: the multipliers are constants of the transform."""


def lr_multipliers(params_meta: Mapping[str, ParamMeta], optimizer: str) -> dict[str, float]:
  """``{path: learning-rate multiplier}`` for ``optimizer`` ("adam" or "sgd")."""
  check_optimizer(optimizer)
  return {p: m.lr_multiplier(optimizer) for p, m in params_meta.items()}


def _check_meta(params_meta: Any) -> None:
  if not isinstance(params_meta, Mapping) or not all(
      isinstance(m, ParamMeta) for m in params_meta.values()):
    raise TypeError("params_meta must be the {path: ParamMeta} mapping that "
                    f"jinit.mup.infinite_dims returns, got {type(params_meta).__name__}")


def _scale_tree(params_meta: Mapping[str, ParamMeta], mults: Mapping[str, float], tree: Any,
                what: str) -> Any:
  """``tree`` with each leaf times ``mults[path]``; its paths and shapes checked first."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  paths = path_strs([kp for kp, _ in leaves])
  unknown = [p for p in paths if p not in mults]
  if unknown:  # a subset is fine: optax.multi_transform masks the other parameters out
    raise ValueError(
        f"params_meta does not match the {what}: {len(unknown)} of {len(paths)} {what} "
        f"have no entry in params_meta, e.g. {unknown[:5]}; params_meta has "
        f"{list(mults)[:5]}...")
  wrong = [f"{p} {tuple(jnp.shape(u))} (params_meta: {params_meta[p].shape})"
           for p, (_, u) in zip(paths, leaves)
           if tuple(jnp.shape(u)) != tuple(params_meta[p].shape)]
  if wrong:  # meta built for another width: its multipliers would be silently wrong
    raise ValueError(f"params_meta was built for other shapes than these {what}: "
                     f"{'; '.join(wrong[:5])}; rebuild it with jinit.mup.infinite_dims "
                     "for this model")
  not_float = [f"{p} ({jnp.result_type(u)})" for p, (_, u) in zip(paths, leaves)
               if not jnp.issubdtype(jnp.result_type(u), jnp.inexact)]
  if not_float:  # an int update times 0.25 would be cast to int (0)
    raise TypeError(f"jinit.mup needs floating {what}, got {', '.join(not_float[:5])}")
  new = [u if mults[p] == 1.0 else u * jnp.asarray(mults[p], jnp.result_type(u))
         for p, (_, u) in zip(paths, leaves)]
  return jax.tree_util.tree_unflatten(treedef, new)


def scale_updates(params_meta: Mapping[str, ParamMeta], optimizer: str = "adam"):
  """An optax transform that multiplies each parameter's update by its μP lr multiplier.

  ``optax.chain(optax.adam(lr), scale_updates(meta, "adam"))`` gives every parameter the
  learning rate ``lr * m`` with ``m`` from the parametrization's table (Tensor Programs V,
  Tables 3/8; for μP + Adam ``m = 1/width_mult`` for hidden weights, 1 otherwise; for μP +
  SGD ``m = width_mult`` for input weights, biases and the readout). Under ``"depth_mup"``
  and ``"completep"`` the parameters inside residual branches get the depth factor too
  (Adam: ``depth_mult^(alpha-1)``; SGD: ``depth_mult^(2 alpha-1)``). It is linear in the
  updates, so it composes with any chain (momentum, clipping before it, schedules) and with
  ``optax.multi_transform``. For decoupled weight decay as ``mup.MuAdamW`` applies it
  (``lr * wd``, not rescaled), put ``optax.add_decayed_weights`` after this transform and
  before the ``-lr`` scaling; after ``optax.adamw`` it would be rescaled with the update.

  Args:
    params_meta: ``{path: ParamMeta}`` from :func:`jinit.mup.infinite_dims`.
    optimizer: ``"adam"`` (any entrywise-normalizing optimizer) or ``"sgd"``.

  Returns:
    An ``optax.GradientTransformation``. Its update raises ``ValueError`` for an updates
    tree whose paths are not those of ``params_meta``.

  References: G. Yang et al., "Tensor Programs V", 2022, https://arxiv.org/abs/2203.03466;
  "Tensor Programs VI", 2023, https://arxiv.org/abs/2310.02244; N. Dey et al., "CompleteP",
  2025, https://arxiv.org/abs/2505.01618.
  """
  import optax

  _check_meta(params_meta)
  mults = lr_multipliers(params_meta, optimizer)

  def init_fn(params):
    del params
    return ScaleUpdatesState()

  def update_fn(updates, state, params=None):
    del params
    return _scale_tree(params_meta, mults, updates, "updates"), state

  return optax.GradientTransformation(init_fn, update_fn)


def scale_eps(params_meta: Mapping[str, ParamMeta]):
  """An optax transform giving Adam a per-parameter epsilon ``eps * eps_multiplier``.

  Put it right before Adam: ``optax.chain(scale_eps(meta), optax.adam(lr, eps=eps),
  scale_updates(meta, "adam"))``. It divides each gradient by ``c = m.eps_multiplier``, and
  Adam is invariant to the gradient's scale except for epsilon:
  ``(m_t / c) / (sqrt(v_t) / c + eps) = m_t / (sqrt(v_t) + c * eps)``, i.e. Adam with
  epsilon ``c * eps``, exactly. ``c`` is 1 except inside the residual branches of
  ``"depth_mup"`` / ``"completep"`` models: ``depth_mult^-alpha`` (CompleteP, Eq. 40 and its
  reference code; the branch's gradients shrink by the same factor). Only for Adam-like
  optimizers: before SGD it would rescale the learning rate.

  Args:
    params_meta: ``{path: ParamMeta}`` from :func:`jinit.mup.infinite_dims`.

  Returns:
    An ``optax.GradientTransformation``.

  References: N. Dey et al., "Don't be lazy: CompleteP enables compute-efficient deep
  transformers", 2025, https://arxiv.org/abs/2505.01618.
  """
  import optax

  _check_meta(params_meta)
  inverse = {p: 1.0 / m.eps_multiplier for p, m in params_meta.items()}

  def init_fn(params):
    del params
    return ScaleUpdatesState()

  def update_fn(updates, state, params=None):
    del params
    return _scale_tree(params_meta, inverse, updates, "gradients"), state

  return optax.GradientTransformation(init_fn, update_fn)
