"""Fans of an einsum kernel, read from its equation.

A kernel used as ``jnp.einsum(equation, inputs, kernel)`` (Flax's ``Einsum``
layers, Keras' ``EinsumDense``) has three kinds of axes, found by where its
label appears:

* contracted: in the inputs, not in the output (summed over): fan_in;
* free output: not in the inputs, in the output: fan_out;
* batch: in the inputs AND the output (one independent map per index, e.g.
  per-head weights ``"bhd,hdk->bhk"``): in neither fan.

A kernel label in neither the inputs nor the output is summed over by the
einsum on its own: every output adds up its entries, so it counts in fan_in.

So for an attention query kernel ``"btd,dhk->bthk"`` of shape ``(d, h, k)``:
fan_in = d, fan_out = h * k (reading it as a conv kernel instead gives fan_in =
d * h and fan_out = h * k * h). Keras made the same fix to ``EinsumDense``,
which now derives its kernel's input and output axes from the equation
(https://github.com/keras-team/keras/pull/22789).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jinit._src import validation


def _parse(equation: object) -> tuple[str, str, str]:
  """``(inputs, kernel, output)`` labels of ``"inputs,kernel->output"`` (spaces dropped)."""
  if not isinstance(equation, str):
    raise TypeError(f"equation must be an einsum string such as 'btd,dhk->bthk', "
                    f"got {equation!r}")
  eq = equation.replace(" ", "")
  if eq.count("->") != 1 or eq.count(",") != 1 or eq.index(",") > eq.index("->"):
    raise ValueError(f"equation must have the form 'inputs,kernel->output' (two operands, "
                     f"explicit output), got {equation!r}")
  lhs, out = eq.split("->")
  inputs, kernel = lhs.split(",")
  if "." in kernel:
    raise ValueError(f"equation: the kernel operand cannot use an ellipsis, got {equation!r}")
  for part in (inputs.replace("...", ""), kernel, out.replace("...", "")):
    if not all(c.isalpha() for c in part):
      raise ValueError(f"equation must use letters (and '...' outside the kernel), "
                       f"got {equation!r}")
  if len(set(kernel)) != len(kernel):
    raise ValueError(f"equation: a kernel label appears twice (a diagonal), which has no "
                     f"fans, in {equation!r}")
  return inputs, kernel, out


def einsum_axes(equation: str, rank: int) -> tuple[tuple[int, ...], tuple[int, ...],
                                                   tuple[int, ...]]:
  """``(in_axes, out_axes, batch_axes)`` of the kernel of ``equation`` (see module docstring).

  Args:
    equation: ``"inputs,kernel->output"``, the kernel being the second operand.
    rank: the kernel's rank; must equal the number of kernel labels.

  Returns:
    Three tuples of kernel axis indices: contracted (and kernel-only) axes, free
    output axes, batch axes.

  Raises:
    ValueError: for a malformed equation or one whose kernel rank is not ``rank``.
  """
  inputs, kernel, out = _parse(equation)
  if len(kernel) != rank:
    raise ValueError(f"equation {equation!r} has a rank-{len(kernel)} kernel "
                     f"({kernel!r}) but the kernel has rank {rank}")
  ins, outs, batch = [], [], []
  for i, c in enumerate(kernel):
    in_inputs, in_out = c in inputs, c in out
    if in_inputs and in_out:
      batch.append(i)
    elif in_out:
      outs.append(i)
    else:
      ins.append(i)
  return tuple(ins), tuple(outs), tuple(batch)


def einsum_fans(equation: str, shape: Sequence[int]) -> tuple[int, int]:
  """``(fan_in, fan_out)`` of an einsum kernel of ``shape``, from ``equation``.

  fan_in is the product of the contracted axes, fan_out the product of the
  kernel's free output axes; batch axes (in the inputs, the kernel and the
  output) count in neither. Example::

    einsum_fans("btd,dhk->bthk", (512, 8, 64)) == (512, 512)   # attention query
    einsum_fans("bthk,hkd->btd", (8, 64, 512)) == (512, 512)   # attention output
    einsum_fans("bhd,hdk->bhk", (8, 64, 32)) == (64, 32)        # per-head weights

  Args:
    equation: ``"inputs,kernel->output"`` as passed to ``jnp.einsum(equation,
      inputs, kernel)`` (Flax ``Einsum``'s ``einsum_str``).
    shape: the kernel's shape.

  Returns:
    ``(fan_in, fan_out)`` as Python ints (1 for an empty product).

  Raises:
    TypeError: ``equation`` is not a string or ``shape`` not a sequence of ints.
    ValueError: a malformed equation, or a kernel rank that does not match it.
  """
  shape = validation.check_shape(shape)
  ins, outs, _ = einsum_axes(equation, len(shape))
  return math.prod(shape[i] for i in ins), math.prod(shape[i] for i in outs)
