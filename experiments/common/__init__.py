"""Shared pieces of the experiments: data, models, the engine, the study pipeline, flags, results.

The training engine is :func:`experiments.common.train.train`; the pipeline every
multi-run study shares is :mod:`experiments.common.study` (see docs/engine.md).
"""
