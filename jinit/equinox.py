"""Equinox adapter: model-level (re)initialization with every layer's true fans.

* :func:`reinit`: a copy of an Equinox model (built with ``eqx.tree_at``) whose
  parameters are re-drawn knowing each layer's type, so its true fans (Linear,
  Conv/ConvTranspose with groups, Embedding, MultiheadAttention, GRUCell/LSTMCell
  per gate, MLP, ``eqx.filter_vmap``-stacked blocks), with ordered
  ``(pattern, init)`` rules, as :func:`jinit.nnx.reinit`.
* :func:`parameters`: ``(path, owner, name, array)`` of every parameter, the paths
  rules match.

Needs the ``equinox`` package (``pip install jinit[equinox]``).
"""

from jinit._src.equinox import UncoveredParametersWarning as UncoveredParametersWarning
from jinit._src.equinox import parameters as parameters
from jinit._src.equinox import reinit as reinit

__all__ = ["UncoveredParametersWarning", "parameters", "reinit"]
