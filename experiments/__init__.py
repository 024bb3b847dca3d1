"""Experiments that reproduce the course page on weight initialization, and go further.

Run the whole story with ``python -m experiments``, or one part with
``python -m experiments.<name>``:

* ``symmetry``: constant init makes every unit of a layer a clone (the page's 2-2-1
  network, exactly; then a wide MLP under SGD).
* ``fans``: fan_in/fan_out of the page's 2-3-2 network, Xavier bounds, ``kaiming_uniform``.
* ``sigmoid_mnist``: the page's deep sigmoid MLP on MNIST, default vs Xavier init,
  over several seeds in one compiled run.
* ``signal_propagation``, ``deep_relu``, ``lsuv``: beyond the page (Glorot & Bengio
  Figs. 6-7, He et al. Fig. 3, Mishkin & Matas' LSUV).
* ``model_parallel``: one large Dense layer split along its output axis over a mesh.

Shared pieces (data, models, the compiled training engine, result writing) live in
:mod:`experiments.common`.
"""
