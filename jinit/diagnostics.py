"""Signal-propagation diagnostics for Flax models (linen and nnx), chains or not.

Before spending compute on training, look at what a model does to its signal at
initialization (Glorot & Bengio 2010, Figs. 6-7; He et al. 2015, §2.2). One call of
:func:`diagnose` runs a batch forward (and backward, given labels) and reports one
row per recorded tensor, in forward order:

* ``role="layer"``: every call of a kernel-bearing layer (Dense/Linear, Conv,
  ConvTranspose, DenseGeneral/LinearGeneral, Einsum, the q/k/v/out projections of
  attention, any module owning a ``kernel``). ``x``: the layer's own input; ``z``:
  its own output; ``h``: its activation, i.e. ``f(z)`` as the model goes on to use it
  (found, see below), or unknown (``None``) when no later tensor is ``f(z)``.
* ``role="norm"``: every LayerNorm/RMSNorm/BatchNorm/GroupNorm/InstanceNorm call
  (its own input ``x`` and output ``z``).
* ``role="residual"``: a residual stream after a residual add, where it can be found:
  a tensor the model goes on to use that equals ``a + c * z`` for an earlier tensor
  ``a`` (the skip, reported as ``x``) and the output ``z`` of the latest layer or norm
  call of its shape (``c`` a scalar gate: 1 for a plain add, ReZero's alpha, ...).
  The stream itself is reported as ``z``.
* ``role="uninstrumented"``: a ``kernel`` that no recorded call used (called inside
  ``nn.scan``/``nn.vmap``/``nn.remat``/``nnx.scan``, through a method other than
  ``__call__``, or excluded by ``layer_types``): listed, with the reason, never
  skipped silently.

Statistics: mean and std of ``x``, ``z`` and ``h``; the share of saturated units (tanh/
sigmoid: ``h`` within 0.05 of a bound) or dead units (ReLU: ``h == 0`` for every
example); backward: the std of ``dL/dz`` (Glorot & Bengio's back-propagated
gradients, for layers and norms) and of ``dL/dkernel``; histograms of ``h`` and
``dL/dz`` (:func:`plot_histograms`).

How the activation is found: layer ``k``'s ``h`` is the first later tensor (an input
of a later recorded call, or the model output; at most :data:`MAX_CANDIDATES`
distinct ones of ``z``'s size) that equals ``f(z)`` for ``f`` in
:data:`DETECTED_ACTIVATIONS` (first match; ``z`` itself passed on unchanged reads as
``identity``). A linear layer whose outputs are all below ~0.01 reads as tanh
(tanh(z) == z there); stating ``nonlinearity=`` removes the ambiguity. In a chain
(MLP, plain CNN) ``h`` is the next layer's input, as before; in a transformer the
q/k/v projections have no elementwise activation (``h`` unknown), and a residual
branch's last layer feeds a residual add (``h`` unknown, the stream gets its own
row) -- no row shows another layer's input as its activation.

Example::

  report = jinit.diagnostics.diagnose(model, variables, x, labels)  # linen
  report = jinit.diagnostics.diagnose(nnx_model, x, labels)         # nnx
  print(report.table())
  jinit.diagnostics.plot_histograms(report).savefig("activations.png")

References: X. Glorot and Y. Bengio, "Understanding the difficulty of training
deep feedforward neural networks", AISTATS 2010,
http://proceedings.mlr.press/v9/glorot10a.html. K. He et al., "Delving Deep into
Rectifiers", ICCV 2015, https://arxiv.org/abs/1502.01852.
"""

from jinit._src.diagnostics import DETECTED_ACTIVATIONS as DETECTED_ACTIVATIONS
from jinit._src.diagnostics import Diagnostics as Diagnostics
from jinit._src.diagnostics import Histogram as Histogram
from jinit._src.diagnostics import LayerCall as LayerCall
from jinit._src.diagnostics import LayerReport as LayerReport
from jinit._src.diagnostics import MAX_CANDIDATES as MAX_CANDIDATES
from jinit._src.diagnostics import REPORT_ROLES as REPORT_ROLES
from jinit._src.diagnostics import SATURATION_MARGIN as SATURATION_MARGIN
from jinit._src.diagnostics import capture_layers as capture_layers
from jinit._src.diagnostics import cross_entropy as cross_entropy
from jinit._src.diagnostics import diagnose as diagnose
from jinit._src.diagnostics import plot_histograms as plot_histograms

__all__ = [
    "DETECTED_ACTIVATIONS", "Diagnostics", "Histogram", "LayerCall", "LayerReport",
    "MAX_CANDIDATES", "REPORT_ROLES", "SATURATION_MARGIN", "capture_layers", "cross_entropy",
    "diagnose", "plot_histograms",
]

# Kept for code written before the renames (not in __all__): the detected activations (not
# jinit.NONLINEARITIES, the gain names) and the report's row roles.
NONLINEARITIES = DETECTED_ACTIVATIONS
ROLES = REPORT_ROLES
