"""Shared pieces of the experiments: data (TFDS), models (Flax MLP), training, results.

The training engine is :func:`experiments.common.train.train`; see its docstring.
"""
