"""Learned initialization: MetaInit and GradInit, for nnx, Equinox and params pytrees.

* :func:`metainit` (Dauphin & Schoenholz 2019; google/init2winit's algorithm): learns
  each weight tensor's norm by descending the gradient quotient
  (:func:`gradient_quotient`).
* :func:`gradinit` (Zhu et al. 2021): learns one scale per tensor so that the first
  Adam/SGD step lowers the loss most under a gradient-norm bound
  (:func:`gradinit_objective`).

Both are one jit-compiled scan, deterministic for a key, and return
:class:`LearnedInit` ``(model, scales, history)``.
"""

from jinit._src.learned import LearnedInit as LearnedInit
from jinit._src.learned import OPTIMIZERS as OPTIMIZERS
from jinit._src.learned import gradient_quotient as gradient_quotient
from jinit._src.learned import gradinit as gradinit
from jinit._src.learned import gradinit_objective as gradinit_objective
from jinit._src.learned import metainit as metainit

__all__ = [
           "OPTIMIZERS",
           "LearnedInit",
           "gradient_quotient",
           "gradinit",
           "gradinit_objective",
           "metainit",
]
