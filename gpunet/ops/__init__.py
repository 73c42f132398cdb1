"""The seam between layers and devices: one signature per primitive, one class per backend.

``NumpyOps`` (numpy_ops.py) is the reference, written against an array module ``xp``;
``CupyOps`` (cupy_ops.py) subclasses it and overrides what its fused kernels accelerate.
Layers get the right instance from ``backend.ops`` and never ask which device they are on.
"""
