"""Depth-scaled residual inits (GPT-2, ReZero/SkipInit, Fixup, T-Fixup) and their gate modules.

The schemes are rule builders (``[(pattern, init), ...]`` for ``jinit.nnx.reinit`` /
``jinit.linen.reinit``) and functions on params pytrees, from
:mod:`jinit._src.residual`; this module adds the small Flax modules the schemes need
as model structure: a residual gate ``x + alpha * branch`` (ReZero/SkipInit with
alpha = 0, Fixup's multiplier with alpha = 1) and Fixup's scalar bias, for nnx and linen.
See ``docs/residual.md``.

Example (ReZero in an nnx block)::

  class Block(nnx.Module):
    def __init__(self, d, rngs):
      self.mlp = nnx.Linear(d, d, rngs=rngs)
      self.gate = jinit.residual.ResidualGate()      # alpha = 0: the block is the identity
    def __call__(self, x):
      return self.gate(x, jax.nn.gelu(self.mlp(x)))
"""


from jinit._src.residual import GPT2_PATTERN as GPT2_PATTERN
from jinit._src.residual import GPT2_STD as GPT2_STD
from jinit._src.residual import TFIXUP_MLP as TFIXUP_MLP
from jinit._src.residual import TFIXUP_OUT as TFIXUP_OUT
from jinit._src.residual import TFIXUP_VALUE as TFIXUP_VALUE
from jinit._src.residual import apply_fixup as apply_fixup
from jinit._src.residual import apply_gpt2 as apply_gpt2
from jinit._src.residual import apply_rules as apply_rules
from jinit._src.residual import apply_tfixup as apply_tfixup
from jinit._src.residual import embedding_normal as embedding_normal
from jinit._src.residual import fixup_rules as fixup_rules
from jinit._src.residual import fixup_scale as fixup_scale
from jinit._src.residual import gpt2_rules as gpt2_rules
from jinit._src.residual import gpt2_scale as gpt2_scale
from jinit._src.residual import param_paths as param_paths
from jinit._src.residual import rezero_rules as rezero_rules
from jinit._src.residual import scaled as scaled
from jinit._src.residual import shape_fans as shape_fans
from jinit._src.residual import tfixup_rules as tfixup_rules
from jinit._src.residual import tfixup_scale as tfixup_scale
from jinit._src.residual_modules import LinenResidualGate as LinenResidualGate
from jinit._src.residual_modules import LinenScalarBias as LinenScalarBias
from jinit._src.residual_modules import ResidualGate as ResidualGate
from jinit._src.residual_modules import ScalarBias as ScalarBias

__all__ = [
    "GPT2_PATTERN", "GPT2_STD", "LinenResidualGate", "LinenScalarBias", "ResidualGate",
    "ScalarBias", "TFIXUP_MLP", "TFIXUP_OUT", "TFIXUP_VALUE", "apply_fixup", "apply_gpt2",
    "apply_rules", "apply_tfixup", "embedding_normal", "fixup_rules", "fixup_scale",
    "gpt2_rules", "gpt2_scale", "param_paths", "rezero_rules", "scaled", "shape_fans",
    "tfixup_rules", "tfixup_scale",
]
