"""Alias kept for code written against ``jinit.flax``: see :mod:`jinit.linen` and :mod:`jinit.nnx`.

``jinit.flax.Dense``, ``kernel_init`` and ``bias_init`` are ``jinit.linen``'s;
``jinit.flax.nnx_linear`` is ``jinit.nnx.linear``. Model-level reinit lives in
``jinit.linen.reinit`` and ``jinit.nnx.reinit``.
"""

from jinit.linen import Dense as Dense
from jinit.linen import bias_init as bias_init
from jinit.linen import kernel_init as kernel_init
from jinit.nnx import linear as nnx_linear

__all__ = ["Dense", "bias_init", "kernel_init", "nnx_linear"]
