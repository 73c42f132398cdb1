"""The model axis in the optimizer updates: where each model of a stack sits in the flat
parameter buffer, and per-model hyperparameters spread over it.

A stack (``nn/stack.py``) of n models has parameters of shape (n, ...), packed one after the
other into the optimizer's flat buffer, layer-major: ``[W1 (n, out, in) | b1 (n, out) | W2
...]``. Each parameter is a segment of ``n * size`` values, model-major inside it, so every
stacked weight is one contiguous array (the batched GEMMs need that) and model ``i``'s part of
a segment is the slice ``[start + i * size, start + (i + 1) * size)``.

A hyperparameter given per model (a learning rate per model, say) is an (n,) device array.
The reference ops spread it over the flat buffer (:meth:`ModelLayout.spread`: one broadcast
copy per segment into a workspace array) and then run the update's usual elementwise code,
with that array where a scalar was: every model's update is computed exactly as it would be
alone. The GPU kernels read each element's model from the layout's segment table
(``launchers/optim.py``) and the per-model values directly.
"""
from __future__ import annotations

import numpy as np


class ModelLayout:
    """The flat buffer of a stack of ``models`` models whose parameters have ``sizes``
    values each (all models together, in packing order)."""

    def __init__(self, models: int, sizes):
        self.models = int(models)
        self.segments = []  # (first flat index, values per model)
        start = 0
        for size in sizes:
            if size % self.models:
                raise ValueError(f"a stacked parameter of {size} values does not split into "
                                 f"{self.models} models")
            self.segments.append((start, size // self.models))
            start += size
        self.size = start

    def __eq__(self, other):
        return (isinstance(other, ModelLayout) and other.models == self.models
                and other.segments == self.segments)

    def __hash__(self):
        return hash((self.models, tuple(self.segments)))

    def __repr__(self):
        return f"ModelLayout({self.models} models, {len(self.segments)} segments)"

    def spread(self, values, out):
        """``out[j]`` = ``values[model of flat index j]`` for an (n,) array ``values``;
        returns ``out`` (a flat array of :attr:`size` values, cast to its dtype)."""
        column = values.reshape(self.models, 1)
        for start, size in self.segments:
            out[start:start + self.models * size].reshape(self.models, size)[...] = column
        return out

    def select(self, flat, models, out):
        """The values of the models ``models`` (indices) of the flat array ``flat``, packed
        into ``out`` as a stack of those models packs them."""
        start_out = 0
        for start, size in self.segments:
            chosen = flat[start:start + self.models * size].reshape(self.models, size)[models]
            out[start_out:start_out + chosen.size] = chosen.reshape(-1)
            start_out += chosen.size
        return out


def is_per_model(value) -> bool:
    """Whether a hyperparameter passed to an update is per model (an array), not a scalar."""
    return not isinstance(value, (int, float, np.integer, np.floating))


def used(value) -> bool:
    """Whether a hyperparameter takes part in the update: per model, or a nonzero scalar."""
    return is_per_model(value) or value != 0
