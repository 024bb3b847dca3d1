"""Mean-field signal propagation: q*, c*, chi1, depth scales, the edge of chaos.

Depends on jax and numpy only. See :mod:`jinit._src.theory` and ``docs/theory.md``.

References: Schoenholz et al. 2017, https://arxiv.org/abs/1611.01232; Poole et al. 2016,
https://arxiv.org/abs/1606.05340; Pennington et al. 2017, https://arxiv.org/abs/1711.04735
"""

from jinit._src.theory import DEFAULT_SEARCH as DEFAULT_SEARCH
from jinit._src.theory import Dense as Dense
from jinit._src.theory import EdgeOfChaos as EdgeOfChaos
from jinit._src.theory import KernelMap as KernelMap
from jinit._src.theory import QUAD_NODES_2D as QUAD_NODES_2D
from jinit._src.theory import VarianceComparison as VarianceComparison
from jinit._src.theory import c_map as c_map
from jinit._src.theory import c_star as c_star
from jinit._src.theory import chi1 as chi1
from jinit._src.theory import compare_variances as compare_variances
from jinit._src.theory import critical_sigma_w2 as critical_sigma_w2
from jinit._src.theory import edge_of_chaos as edge_of_chaos
from jinit._src.theory import kernel_map as kernel_map
from jinit._src.theory import nngp_kernel as nngp_kernel
from jinit._src.theory import predicted_variances as predicted_variances
from jinit._src.theory import q_map as q_map
from jinit._src.theory import q_star as q_star
from jinit._src.theory import wide_net_variances as wide_net_variances
from jinit._src.theory import xi_c as xi_c
from jinit._src.theory import xi_q as xi_q
from jinit._src.theory_activations import Activation as Activation
from jinit._src.theory_activations import as_activation as as_activation

__all__ = [
    "DEFAULT_SEARCH", "QUAD_NODES_2D", "Activation", "Dense", "EdgeOfChaos", "KernelMap",
    "VarianceComparison", "as_activation", "c_map", "c_star", "chi1", "compare_variances",
    "critical_sigma_w2", "edge_of_chaos", "kernel_map", "nngp_kernel", "predicted_variances",
    "q_map", "q_star", "wide_net_variances", "xi_c", "xi_q",
]
