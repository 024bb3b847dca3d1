"""fan_in / fan_out from a kernel shape and a named layout.

Layouts (``receptive`` is the product of the spatial window dims):

- ``dense``: Flax ``(in, out)``; fan_in = in, fan_out = out.
- ``conv``: Flax ``(*window, in, out)``; fan_in = in * receptive, fan_out = out * receptive.
- ``flax``: either of the two above (``dense`` for rank 2, ``conv`` for rank >= 3):
  what Flax's ``Dense``/``Conv`` pass to ``kernel_init``.
- ``torch_linear``: PyTorch ``(out, in)``; fan_in = in, fan_out = out.
- ``torch_conv``: PyTorch ``(out, in/groups, *window)``; fan_in = in/groups * receptive,
  fan_out = out * receptive.

``torch_conv`` matches ``torch.nn.init._calculate_fan_in_and_fan_out``. For any
other layout (say an attention kernel ``(d_model, heads, head_dim)``) pass
``in_axis``/``out_axis`` (ints or tuples of ints) and optionally ``batch_axis``:
fan_in = prod(shape[in_axis]) * receptive, fan_out = prod(shape[out_axis]) *
receptive, where receptive is the product of the remaining, non-batch axes
(the convention of ``jax.nn.initializers.variance_scaling``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jinit._src import validation

LAYOUTS = ("dense", "conv", "flax", "torch_linear", "torch_conv")

AxisSpec = int | Sequence[int]


def _axes(axis: AxisSpec, rank: int, name: str) -> tuple[int, ...]:
  axes = ((axis,) if isinstance(axis, int) and not isinstance(axis, bool)
          else tuple(axis))  # pyright: ignore[reportArgumentType]  (a bool fails below)
  out = []
  for a in axes:
    a = validation.check_int(a, f"{name} (an int or a tuple of ints)", minimum=None)
    if not -rank <= a < rank:
      raise ValueError(f"{name}={axis!r} is out of range for a shape of rank {rank}")
    out.append(a % rank)
  return tuple(out)


def compute_fans(shape: Sequence[int], layout: str | None = None, *,
                 in_axis: AxisSpec | None = None, out_axis: AxisSpec | None = None,
                 batch_axis: AxisSpec = ()) -> tuple[int, int]:
  """Computes ``(fan_in, fan_out)`` of a kernel shape.

  Args:
    shape: the kernel's shape.
    layout: one of ``"dense"``, ``"conv"``, ``"flax"``, ``"torch_linear"``,
      ``"torch_conv"`` (see the module docstring). Omit it only when giving
      ``in_axis`` and ``out_axis``.
    in_axis, out_axis: explicit fan axes, instead of a layout.
    batch_axis: axes that are neither fan nor receptive field (explicit axes only).

  Returns:
    ``(fan_in, fan_out)`` as Python ints. A zero-size shape may give fans of 0,
    which the initializers accept for that (empty) shape only.

  Raises:
    ValueError: for an unknown layout, a shape of the wrong rank for it, axes out
      of range or overlapping, or a negative dimension.

  Examples:
    >>> import jinit
    >>> jinit.compute_fans((784, 128), layout="flax")  # a Flax Dense kernel (in, out)
    (784, 128)
    >>> jinit.compute_fans((3, 3, 64, 128), layout="conv")  # (*window, in, out)
    (576, 1152)
  """
  shape = validation.check_shape(shape, allow_zero=True)
  rank = len(shape)
  if layout is not None and (in_axis is not None or out_axis is not None):
    raise ValueError("give either layout or in_axis/out_axis, not both")
  if layout is None:
    if in_axis is None or out_axis is None:
      raise ValueError(
          f"layout must be one of {', '.join(map(repr, LAYOUTS))}, "
          "or in_axis and out_axis must both be given")
  else:
    validation.check_choice(layout, "layout", LAYOUTS)
    if layout == "flax":
      if rank < 2:
        raise ValueError(f"layout='flax' needs a kernel of rank >= 2 (dense (in, out) or conv "
                         f"(*window, in, out)), got shape {shape!r}")
      layout = "dense" if rank == 2 else "conv"
    need = {"dense": (2, 2), "torch_linear": (2, 2), "conv": (3, None),
            "torch_conv": (3, None)}[layout]
    if rank < need[0] or (need[1] is not None and rank > need[1]):
      what = f"exactly {need[0]}" if need[1] else f">= {need[0]}"
      raise ValueError(f"layout={layout!r} needs a shape of rank {what}, got {shape!r}")
    if layout in ("dense", "conv"):
      in_axis, out_axis = -2, -1
    else:
      in_axis, out_axis = 1, 0
  ins = _axes(in_axis, rank, "in_axis")
  outs = _axes(out_axis, rank, "out_axis")
  batch = _axes(batch_axis, rank, "batch_axis")
  if len(set(ins) | set(outs) | set(batch)) != len(ins) + len(outs) + len(batch):
    raise ValueError(
        f"in_axis={in_axis!r}, out_axis={out_axis!r}, batch_axis={batch_axis!r} overlap")
  receptive = math.prod(d for i, d in enumerate(shape) if i not in (*ins, *outs, *batch))
  fan_in = math.prod(shape[i] for i in ins) * receptive
  fan_out = math.prod(shape[i] for i in outs) * receptive
  return fan_in, fan_out


