"""The reference optimizer updates over the flat parameter buffer (SGD, Adam, AdamW), part
of :class:`~gpunet.ops.numpy_ops.NumpyOps`: one call updates every parameter, the learning
rate and step count read from device arrays (no host synchronisation).

With ``models`` (a :class:`~gpunet.ops.models.ModelLayout`: the flat buffer of a stack),
``lr`` and any hyperparameter may be an (n,) per-model device array; it is spread over the
flat buffer and used where a scalar is otherwise, so each model updates as alone.
"""
from __future__ import annotations

import numpy as np

from .models import is_per_model, used


class UpdateOps:
    """The optimizer updates of the ops (``self.xp`` and ``self.workspace`` are the ops')."""

    def _each(self, models, name, value, dtype):
        """``value`` for the elementwise update: a scalar as it is, a per-model array
        spread over the flat buffer (a workspace array named ``name``)."""
        if models is None or not is_per_model(value):
            return value
        return models.spread(value, self.workspace.get(name, (models.size,), dtype))

    def _one_minus(self, value, name):
        """``1 - value`` in float64, for a scalar or a per-model array (into a workspace)."""
        if not is_per_model(value):
            return 1 - value
        return self.xp.subtract(1.0, value, out=self.workspace.like(name, value))

    def _decayed(self, param, grad, weight_decay):
        """``grad + weight_decay * param`` (L2 decay) in a reused workspace."""
        g = self.workspace.like("decayed", param)
        self.xp.multiply(param, weight_decay, out=g)
        g += grad
        return g

    def sgd_update(self, param, grad, velocity, lr, *, momentum, weight_decay, nesterov,
                   models=None):
        """One SGD step in place; ``lr`` is a 1-element device array (n with ``models``).

        ``g = grad + wd * param``; with momentum ``v = momentum * v + g`` and the step uses
        ``v`` (or ``g + momentum * v`` for Nesterov); ``param -= lr * step``.
        """
        xp, dtype = self.xp, param.dtype
        lr = self._each(models, "lr_each", lr, dtype)
        momentum = self._each(models, "momentum_each", momentum, dtype)
        weight_decay = self._each(models, "decay_each", weight_decay, dtype)
        g = self._decayed(param, grad, weight_decay) if used(weight_decay) else grad
        direction = g
        if used(momentum):
            velocity *= momentum
            velocity += g
            direction = velocity
            if nesterov:
                direction = self.workspace.like("nesterov", param)
                xp.multiply(velocity, momentum, out=direction)
                direction += g
        update = self.workspace.like("update", param)
        xp.multiply(direction, lr, out=update)
        param -= update

    def _adam_scalars(self, lr, step, beta1, beta2, weight_decay, dtype, models=None):
        """``[1 - lr * wd, -lr / (1 - beta1^t), sqrt(1 - beta2^t)]`` on the device: computed
        in float64 from the step count (``1 - beta^t`` cancels in float32), then rounded once
        to the parameters' dtype, as PyTorch does with its Python-float corrections. With
        ``models``, one value per model, each spread over the flat buffer."""
        xp, ws = self.xp, self.workspace
        width = 1 if models is None else models.models
        wide = ws.get("adam_scalars64", (4, width), np.float64)
        t, decay, step_size, bias2 = wide
        xp.copyto(t, step[:1])
        xp.power(beta1, t, out=step_size)
        xp.power(beta2, t, out=bias2)
        xp.copyto(t, lr[:width])
        xp.multiply(t, weight_decay, out=decay)
        xp.subtract(1.0, decay, out=decay)
        xp.subtract(step_size, 1.0, out=step_size)   # -(1 - beta1^t)
        xp.divide(t, step_size, out=step_size)
        xp.subtract(1.0, bias2, out=bias2)
        xp.sqrt(bias2, out=bias2)
        scalars = ws.get("adam_scalars", (3, width), dtype)
        xp.copyto(scalars, wide[1:])
        if models is None:
            return scalars[0], scalars[1], scalars[2]
        return tuple(models.spread(row, ws.get(f"adam_scalar_each{i}", (models.size,), dtype))
                     for i, row in enumerate(scalars))

    def _lerp(self, g, exp_avg, work, weight):
        """``exp_avg = lerp(exp_avg, g, weight)`` as PyTorch computes it: from ``exp_avg``
        where ``weight < 0.5``, else from ``g``; ``work`` holds ``g - exp_avg``."""
        xp = self.xp
        if not is_per_model(weight):
            if weight < 0.5:
                work *= weight
                exp_avg += work
            else:
                work *= 1 - weight
                xp.subtract(g, work, out=exp_avg)
            return
        from_avg = self.workspace.like("lerp_from_avg", work)
        xp.multiply(work, weight, out=from_avg)
        from_avg += exp_avg
        rest = self.workspace.like("lerp_rest", work)
        xp.subtract(1, weight, out=rest)
        work *= rest
        xp.subtract(g, work, out=exp_avg)
        below = self.workspace.get("lerp_below", work.shape, np.bool_)
        xp.less(weight, 0.5, out=below)
        xp.copyto(exp_avg, from_avg, where=below)

    def adam_update(self, param, grad, exp_avg, exp_avg_sq, lr, step, *, beta1, beta2, eps,
                    weight_decay, decoupled, models=None):
        """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step in place, in
        PyTorch's order of operations. ``lr`` and ``step`` (already incremented) are
        1-element device arrays (``lr`` n-element with ``models``).
        """
        xp, ws, dtype = self.xp, self.workspace, param.dtype
        decay, neg_step_size, bias2_sqrt = self._adam_scalars(lr, step, beta1, beta2,
                                                              weight_decay, dtype, models)
        g = grad
        if used(weight_decay) and decoupled:
            param *= decay
        elif used(weight_decay):
            g = self._decayed(param, grad, self._each(models, "decay_each", weight_decay,
                                                      dtype))
        work = ws.like("update", param)
        weight = self._each(models, "beta1_rest_each", self._one_minus(beta1, "beta1_rest"),
                            dtype)
        xp.subtract(g, exp_avg, out=work)              # m = lerp(m, g, 1 - beta1)
        self._lerp(g, exp_avg, work, dtype.type(weight) if not is_per_model(weight) else weight)
        exp_avg_sq *= self._each(models, "beta2_each", beta2, dtype)
        xp.multiply(g, self._each(models, "beta2_rest_each",                # v = beta2 v
                                  self._one_minus(beta2, "beta2_rest"), dtype), out=work)
        work *= g                                                           # + (1 - beta2) g g
        exp_avg_sq += work
        xp.sqrt(exp_avg_sq, out=work)                  # sqrt(v) / sqrt(1 - beta2^t) + eps
        work /= bias2_sqrt
        work += self._each(models, "eps_each", eps, dtype)
        numerator = ws.like("adam_numerator", param)
        xp.multiply(exp_avg, neg_step_size, out=numerator)
        numerator /= work
        param += numerator
