"""Haiku adapters: jinit initializers as Haiku ``w_init``/``b_init``, and params-dict reinit.

* :func:`w_init` / :func:`b_init`: a jinit initializer as a Haiku initializer
  ``init(shape, dtype)`` drawing with ``hk.next_rng_key()``, with fans from Haiku's
  layouts (Linear ``(in, out)``, ConvND ``(*window, in/groups, out)``, transposed
  conv, Embed, LSTM/GRU gates).
* :func:`reinit`: a copy of a Haiku params dict re-drawn with each module's true
  fans, read off its Haiku name (``linear_1``, ``conv2_d``, ``mlp/~/linear_0``),
  with ordered ``(pattern, init)`` rules as :func:`jinit.nnx.reinit`.

Needs the ``dm-haiku`` package (``pip install jinit[haiku]``).
"""

from jinit._src.haiku import LAYOUTS as LAYOUTS
from jinit._src.haiku import UncoveredParametersWarning as UncoveredParametersWarning
from jinit._src.haiku import b_init as b_init
from jinit._src.haiku import reinit as reinit
from jinit._src.haiku import w_init as w_init

__all__ = ["LAYOUTS", "UncoveredParametersWarning", "b_init", "reinit", "w_init"]
