"""abc-parametrizations (SP, μP) as per-parameter rules, and the optax transform that applies them.

A parametrization says, for each parameter *role*, how four things scale with width:

* the init variance, as a power of ``fan_in``;
* a forward multiplier (the parameter enters the network as ``multiplier * W``);
* the learning-rate multiplier under SGD, a power of ``fan_in`` times a power of ``fan_out``;
* the learning-rate multiplier under Adam (any entrywise-normalizing optimizer).

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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jinit._src.paths import path_strs

PARAM_ROLES = ("input", "hidden", "output", "bias", "norm", "fixed")
OPTIMIZERS = ("sgd", "adam")
PARAMETRIZATIONS = ("sp", "mup", "mup_table3")


@dataclasses.dataclass(frozen=True)
class Power:
  """``fan_in ** fan_in_exp * fan_out ** fan_out_exp`` (the paper's table entries)."""
  fan_in_exp: float = 0.0
  fan_out_exp: float = 0.0

  def __call__(self, fan_in: float, fan_out: float) -> float:
    return float(fan_in) ** self.fan_in_exp * float(fan_out) ** self.fan_out_exp

  def __str__(self) -> str:
    parts = []
    for name, e in (("fan_in", self.fan_in_exp), ("fan_out", self.fan_out_exp)):
      if e == 1:
        parts.append(name)
      elif e != 0:
        parts.append(f"{name}^{e:g}")
    return " * ".join(parts) or "1"


@dataclasses.dataclass(frozen=True)
class Rule:
  """How one role's init variance, forward multiplier and learning rates scale with width."""
  init_var: Power
  multiplier: Power
  sgd_lr: Power
  adam_lr: Power

  def lr(self, optimizer: str) -> Power:
    return self.sgd_lr if optimizer == "sgd" else self.adam_lr


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


def rule(parametrization: str, role: str) -> Rule:
  """The table entry for ``role`` under ``parametrization``."""
  check_parametrization(parametrization)
  if role not in PARAM_ROLES:
    raise ValueError(f"role must be one of {PARAM_ROLES}, got {role!r}")
  return TABLES[parametrization][role]


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
  """
  path: str
  shape: tuple[int, ...]
  base_shape: tuple[int, ...]
  infinite: tuple[int, ...]
  fan_in_axes: tuple[int, ...]
  role: str
  parametrization: str

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
    return TABLES[self.parametrization][self.role]

  def lr_multiplier(self, optimizer: str) -> float:
    """The factor on the base learning rate: the table's entry at the width multipliers."""
    check_optimizer(optimizer)
    return self.rule.lr(optimizer)(self.fan_in_mult, self.fan_out_mult)

  @property
  def multiplier(self) -> float:
    """The forward multiplier relative to the base model (readout: ``1/width_mult``)."""
    return self.rule.multiplier(self.fan_in_mult, self.fan_out_mult)

  @property
  def init_std_mult(self) -> float:
    """Init std relative to the base model's: ``sqrt(init_var(width_mult))``."""
    return math.sqrt(self.rule.init_var(self.fan_in_mult, self.fan_out_mult))

  @property
  def init_std_vs_sp(self) -> float:
    """Init std relative to SP (variance ``1/fan_in``) at the same width.

    1 for everything but the μP readout: ``sqrt(width_mult)`` under Table 8 (what
    ``mup``'s ``_rescale_parameters`` multiplies by) and ``1/sqrt(width_mult)`` under Table 3.
    """
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


def build_meta(shapes: Mapping[str, Sequence[int]], base_shapes: Mapping[str, Sequence[int]], *,
               parametrization: str = "mup", readout: str | Sequence[str] | None = None,
               fan_in_axes: Mapping[str, Sequence[int]] | None = None,
               norm_names: Sequence[str] = ("scale",),
               bias_names: Sequence[str] = ("bias",)) -> dict[str, ParamMeta]:
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

  Returns:
    ``{path: ParamMeta}`` in the order of ``shapes``.

  Raises:
    ValueError: different parameter sets or ranks (naming ``base_model``), a readout that
      cannot be identified or does not exist (naming ``readout``).
  """
  check_parametrization(parametrization)
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

  if readout is None and not any(infinite.values()):
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
    if p in readouts:
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
                       parametrization)
  return out


def format_meta(meta: Mapping[str, ParamMeta], optimizer: str | None = None) -> str:
  """A markdown table: path, shape, base shape, role, width multipliers, lr multiplier(s)."""
  opts = OPTIMIZERS if optimizer is None else (check_optimizer(optimizer),)
  head = ["path", "shape", "base", "role", "fan_in x", "fan_out x", "forward x", "init std x"]
  head += [f"{o} lr x" for o in opts]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for m in meta.values():
    cells = [m.path, str(m.shape), str(m.base_shape), m.role, f"{m.fan_in_mult:g}",
             f"{m.fan_out_mult:g}", f"{m.multiplier:g}", f"{m.init_std_mult:g}"]
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


def scale_updates(params_meta: Mapping[str, ParamMeta], optimizer: str = "adam"):
  """An optax transform that multiplies each parameter's update by its μP lr multiplier.

  ``optax.chain(optax.adam(lr), scale_updates(meta, "adam"))`` gives every parameter the
  learning rate ``lr * m`` with ``m`` from the parametrization's table (Tensor Programs V,
  Tables 3/8; for μP + Adam ``m = 1/width_mult`` for hidden weights, 1 otherwise; for μP +
  SGD ``m = width_mult`` for input weights, biases and the readout). It is linear in the
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

  References: G. Yang et al., "Tensor Programs V", 2022, https://arxiv.org/abs/2203.03466.
  """
  import optax

  if not isinstance(params_meta, Mapping) or not all(
      isinstance(m, ParamMeta) for m in params_meta.values()):
    raise TypeError("params_meta must be the {path: ParamMeta} mapping that "
                    f"jinit.mup.infinite_dims returns, got {type(params_meta).__name__}")
  mults = lr_multipliers(params_meta, optimizer)

  def init_fn(params):
    del params
    return ScaleUpdatesState()

  def update_fn(updates, state, params=None):
    del params
    leaves, treedef = jax.tree_util.tree_flatten_with_path(updates)
    paths = path_strs([kp for kp, _ in leaves])
    unknown = [p for p in paths if p not in mults]
    if unknown:  # a subset is fine: optax.multi_transform masks the other parameters out
      raise ValueError(
          f"params_meta does not match the updates: {len(unknown)} of {len(paths)} updates "
          f"have no entry in params_meta, e.g. {unknown[:5]}; params_meta has "
          f"{list(mults)[:5]}...")
    wrong = [f"{p} {tuple(jnp.shape(u))} (params_meta: {params_meta[p].shape})"
             for p, (_, u) in zip(paths, leaves)
             if tuple(jnp.shape(u)) != tuple(params_meta[p].shape)]
    if wrong:  # meta built for another width: its multipliers would be silently wrong
      raise ValueError(f"params_meta was built for other shapes than these updates: "
                       f"{'; '.join(wrong[:5])}; rebuild it with jinit.mup.infinite_dims "
                       "for this model")
    not_float = [f"{p} ({jnp.result_type(u)})" for p, (_, u) in zip(paths, leaves)
                 if not jnp.issubdtype(jnp.result_type(u), jnp.inexact)]
    if not_float:  # an int update times 0.25 would be cast to int (0)
      raise TypeError(f"scale_updates needs floating updates, got {', '.join(not_float[:5])}")
    new = [u if mults[p] == 1.0 else u * jnp.asarray(mults[p], jnp.result_type(u))
           for p, (_, u) in zip(paths, leaves)]
    return jax.tree_util.tree_unflatten(treedef, new), state

  return optax.GradientTransformation(init_fn, update_fn)
