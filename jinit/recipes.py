"""The LLM init recipes people copy by hand, as recipes for every reinit and pytree functions.

A recipe is ``{"init", "bias_init", "rules"}``: pass it to any model reinit with
``**recipe`` (``jinit.nnx.reinit``, ``jinit.linen.reinit``, ``jinit.equinox.reinit``,
``jinit.haiku.reinit``) or to :func:`apply_recipe` for a params pytree.

* :func:`small_init` (Nguyen & Salazar 2019), :func:`wang_init` (GPT-J), :func:`gpt_neox`;
* :func:`deepnorm` with :func:`deepnorm_constants`/:func:`deepnorm_alpha` and the
  model-side :func:`deepnorm_residual` (Wang et al. 2022);
* :func:`olmo` (OLMo-1, "mitchell") and :func:`olmo2` (OLMo-2, "normal");
* :func:`mimetic_attention` (Trockman & Kolter 2023): a joint q/k, v/o draw on a
  params pytree.
"""

from jinit._src.recipes import ATTN_OUT as ATTN_OUT
from jinit._src.recipes import BIASES as BIASES
from jinit._src.recipes import FFN as FFN
from jinit._src.recipes import FFN_OUT as FFN_OUT
from jinit._src.recipes import KERNELS as KERNELS
from jinit._src.recipes import VALUE as VALUE
from jinit._src.recipes import apply_recipe as apply_recipe
from jinit._src.recipes import deepnorm as deepnorm
from jinit._src.recipes import deepnorm_alpha as deepnorm_alpha
from jinit._src.recipes import deepnorm_constants as deepnorm_constants
from jinit._src.recipes import deepnorm_residual as deepnorm_residual
from jinit._src.recipes import gpt_neox as gpt_neox
from jinit._src.recipes import mimetic_attention as mimetic_attention
from jinit._src.recipes import mimetic_factors as mimetic_factors
from jinit._src.recipes import olmo as olmo
from jinit._src.recipes import olmo2 as olmo2
from jinit._src.recipes import small_init as small_init
from jinit._src.recipes import small_init_std as small_init_std
from jinit._src.recipes import wang_init as wang_init
from jinit._src.recipes import wang_init_std as wang_init_std
from jinit._src.recipes import wang_rules as wang_rules

__all__ = [
    "ATTN_OUT", "BIASES", "FFN", "FFN_OUT", "KERNELS", "VALUE", "apply_recipe", "deepnorm",
    "deepnorm_alpha", "deepnorm_constants", "deepnorm_residual", "gpt_neox", "mimetic_attention",
    "mimetic_factors", "olmo", "olmo2", "small_init", "small_init_std", "wang_init",
    "wang_init_std", "wang_rules",
]
