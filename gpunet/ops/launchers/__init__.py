"""Kernel launchers: one module per ``kernels/NAME.cu``, owning its launch geometry.

Each declares ``SOURCE`` (a :class:`~gpunet.ops.kernels.KernelSource`: the kernels and the
launch sizes passed to the compiler) and one function per kernel family that takes CuPy
arrays, checks nothing the caller (``CupyOps``) already checked, and launches.
"""
