"""Parameter and layer paths as text: the one joiner (no flax needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax


def key_name(k: Any) -> str:
  """One entry of a path as text: a jax key-path entry (dict key, attribute, index) or a
  plain name or index."""
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def path_str(path: Sequence[Any], *, drop_params: bool = False, drop_value: bool = True) -> str:
  """``"a/b/kernel"``: a jax key path or a tuple of names joined by "/".

  nnx's ``.value`` attribute of a Variable is not part of a parameter's path
  (``fc/kernel``, not ``fc/kernel/value``); ``drop_value=False`` keeps every attribute
  (an Equinox module's field may be named ``value``). ``drop_params`` also drops a
  leading ``params`` collection, so that linen variables, linen params and nnx state
  share paths (μP's base shapes do; residual's rules keep it).
  """
  names = [key_name(k) for k in path
           if not (drop_value and isinstance(k, jax.tree_util.GetAttrKey) and k.name == "value")]
  if drop_params and len(names) > 1 and names[0] == "params":
    names = names[1:]
  return "/".join(names)


def layer_name(path: Sequence[Any], kind: str) -> str:
  """A recorded layer's name in reports: its path, or its class name for the root module."""
  return path_str(path) or kind


def path_strs(keypaths: Sequence[Any]) -> list[str]:
  """:func:`path_str` of every key path, with linen's ``params`` prefix dropped only when
  every path has it (a ``{"params": ...}`` tree): an nnx attribute named ``params``
  beside others keeps its name, so ``params/kernel`` and ``kernel`` stay two paths."""
  full = [path_str(kp) for kp in keypaths]
  if full and all(p.startswith("params/") for p in full):
    return [p[len("params/"):] for p in full]
  return full
