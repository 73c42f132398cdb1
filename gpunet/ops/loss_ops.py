"""The reference softmax and cross-entropy (plain and weighted, one model or a stack's), part
of :class:`~gpunet.ops.numpy_ops.NumpyOps`: written once against ``self.xp``, into
workspace buffers, so a step allocates nothing after warm-up.

A softmax of many rows of few classes works on its transpose, (classes, rows), since an
array module reduces over a leading axis in one vector pass per class but along a short
trailing axis in one small loop per row; a few rows, or long rows, stay row-major.
"""
from __future__ import annotations

import numpy as np

#: The softmax works class-major from this many rows per class (``LossOps._class_major``).
CLASS_MAJOR_ROWS_PER_CLASS = 64


class LossOps:
    """The loss primitives of the ops (``self.xp``, ``self.workspace`` and ``_take_rows`` are
    the ops')."""

    def check_labels(self, labels, num_classes):
        """Raise ValueError naming the first label outside ``[0, num_classes)`` (the range is
        checked in workspace buffers; the first bad index is searched only on failure)."""
        if labels.size == 0:
            return
        lowest = self.workspace.get("label_min", (), labels.dtype)
        highest = self.workspace.get("label_max", (), labels.dtype)
        labels.min(out=lowest)
        labels.max(out=highest)
        if int(lowest) >= 0 and int(highest) < num_classes:
            return
        i = int(self.xp.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise ValueError(
            f"label {int(labels[i])} at index {i} is out of range: expected labels in "
            f"[0, {num_classes}) for {num_classes} classes"
        )

    def check_errors(self):
        """Raise any error a device kernel flagged since the last check (none here: the
        reference ops raise at once). Called wherever a loss is read back to the host."""

    @staticmethod
    def _class_major(rows, classes):
        """Whether the softmax of (rows, classes) works on its transpose. An array module
        reduces along a short trailing axis one small loop per row (6,400 rows of 10 classes:
        about 10x slower than one vector pass per class over the transpose), but for a few
        rows, or long rows, the transposing copies cost more than that saves."""
        return rows >= CLASS_MAJOR_ROWS_PER_CLASS * classes

    def _shifted_exps(self, x, class_major, at_max=None, into=None):
        """``(shifted, exps, sums)`` of the rows of 2-D ``x`` (rows, classes): ``x`` minus
        each row's maximum (so no exponential overflows), its exponentials and their sum per
        row, laid out (classes, rows) with sums (1, rows) when ``class_major``, else as ``x``
        with sums (rows, 1). Workspace buffers, but ``shifted`` is ``into`` where given
        (row-major). ``at_max``, if given, is set where ``x`` equals its row's maximum or is
        NaN."""
        xp, ws = self.xp, self.workspace
        rows, classes = x.shape
        axis = 0 if class_major else 1
        sums = ws.get("softmax_sums", (1, rows) if class_major else (rows, 1), x.dtype)
        if class_major:
            shifted = ws.get("softmax_shifted", (classes, rows), x.dtype)
            xp.copyto(shifted, x.T)
            x = shifted
        else:
            shifted = ws.like("softmax_shifted", x) if into is None else into
        x.max(axis=axis, keepdims=True, out=sums)
        if at_max is not None:  # the maxima, and NaNs (argmax takes a row's first NaN)
            xp.equal(x, sums, out=at_max)
            nan = ws.like("softmax_nan", at_max)
            xp.isnan(x, out=nan)
            at_max |= nan
        xp.subtract(x, sums, out=shifted)
        exps = ws.like("softmax_exps", shifted)
        xp.exp(shifted, out=exps)
        if class_major:  # added one class after another: in float64, as exact as pairwise
            wide = ws.get("softmax_sums64", sums.shape, np.float64)
            exps.sum(axis=0, keepdims=True, dtype=np.float64, out=wide)
            xp.copyto(sums, wide, casting="same_kind")
        else:
            exps.sum(axis=1, keepdims=True, out=sums)
        return shifted, exps, sums

    def softmax(self, x, out, *, log=False):
        """Row-wise softmax (or log-softmax) of (batch, classes) ``x`` into ``out``.

        Each row is first shifted by its maximum; the log-softmax is ``shifted -
        log(sum(exp(shifted)))``, exact even where a probability underflows to 0.
        """
        xp = self.xp
        class_major = self._class_major(*x.shape)
        shifted, exps, sums = self._shifted_exps(x, class_major)
        if log:
            xp.log(sums, out=sums)
            shifted -= sums
            result = shifted
        else:
            exps /= sums
            result = exps
        xp.copyto(out, result.T if class_major else result)
        return out

    def _label_positions(self, labels, num_classes, *, class_major=False):
        """Flat indices of each row's label (a workspace) in a (rows, classes) array, or in
        its (classes, rows) transpose when ``class_major``."""
        xp, rows = self.xp, len(labels)
        row_step = 1 if class_major else num_classes
        starts = self.workspace.cached(
            f"row_starts_{row_step}", (rows,), np.int64,
            lambda shape, dtype: xp.arange(0, rows * row_step, row_step, dtype=dtype))
        positions = self.workspace.get("label_positions", (rows,), np.int64)
        # a bad label that a device reports later (check_errors) reads a class in range
        xp.clip(labels, 0, num_classes - 1, out=positions)
        if class_major:
            positions *= rows
        positions += starts
        return positions

    def _argmax_is_label(self, logits, labels, hit):
        """``hit[r]``: row ``r``'s arg-max (its first maximum) is its label."""
        best = self.workspace.get("xent_argmax", hit.shape, np.int64)
        logits.argmax(axis=1, out=best)
        self.xp.equal(best, labels, out=hit)

    def _first_max_is_label(self, at_max, positions, hit):
        """``hit[r]``: row ``r``'s arg-max is its label (its first maximum or NaN, as
        ``argmax``), from class-major ``at_max`` (each row's maxima and NaNs) and the
        labels' class-major ``positions``. Each maximum scores its class's rank from the
        end (``C - c``), so the first one scores highest."""
        xp, ws = self.xp, self.workspace
        classes, rows = at_max.shape
        self._take_rows(at_max.reshape(-1), positions, hit)      # the label is a maximum
        score = ws.get("xent_max_score", at_max.shape, np.float32)
        xp.copyto(score, at_max)
        score *= ws.cached(f"class_rank_{classes}", (classes, 1), score.dtype,
                           lambda shape, dtype: xp.arange(classes, 0, -1,
                                                          dtype=dtype).reshape(shape))
        best = ws.get("xent_best_score", (rows,), score.dtype)
        score.max(axis=0, out=best)
        label_score = ws.get("xent_label_score", (rows,), score.dtype)
        self._take_rows(score.reshape(-1), positions, label_score)
        first = ws.get("xent_first_maximum", (rows,), np.bool_)
        xp.equal(label_score, best, out=first)                   # ... and the first one
        hit &= first

    def softmax_cross_entropy(self, logits, labels, grad, out=None, *, weight=None,
                              sample_weight=None, label_smoothing=0.0):
        """Mean softmax cross-entropy of ``logits`` (B, C) against int ``labels`` (B,).

        Writes ``d loss / d logits = (softmax - onehot) / B`` into ``grad`` and returns
        ``(loss, correct)``: the mean loss and the count of rows whose arg-max is the label,
        0-d device arrays, new ones or the pair ``out`` given (then nothing is allocated).

        ``weight`` (C,), ``sample_weight`` (B,) and ``label_smoothing`` make it torch's
        weighted, smoothed loss (see :meth:`_weighted_cross_entropy`); ``correct`` stays a
        count of rows.

        C-contiguous logits (n, B, C) are n models' (``nn/stack.py``), with labels (B,)
        shared by all or (g, B), one row per group of n / g consecutive models: each model
        gets its own mean loss and gradient, and ``loss`` and ``correct`` have shape (n,)
        (unweighted: the weights are for one model's logits).
        """
        xp, ws = self.xp, self.workspace
        *models, batch, num_classes = logits.shape
        self.check_labels(labels, num_classes)
        loss, correct = out if out is not None else (
            xp.empty(models, logits.dtype), xp.empty(models, np.int64))
        if not grad.flags.c_contiguous:  # the flat views below need contiguous rows
            work = ws.like("xent_grad", grad)
            result = self.softmax_cross_entropy(logits, labels, work, (loss, correct),
                                                weight=weight, sample_weight=sample_weight,
                                                label_smoothing=label_smoothing)
            xp.copyto(grad, work)
            return result
        if models:  # every row of every model, with its label
            logits, grad = logits.reshape(-1, num_classes), grad.reshape(-1, num_classes)
            per_row = ws.get("xent_labels", (len(logits),), labels.dtype)
            per_row.reshape(labels.size // batch, -1, batch)[...] = labels.reshape(-1, 1, batch)
            labels = per_row
        if weight is not None or sample_weight is not None or label_smoothing:
            if models:
                raise ValueError("class weights, sample weights and label smoothing take one "
                                 "model's logits (batch, classes), not a stack's")
            hit = ws.get("xent_hit", (batch,), np.bool_)
            self._argmax_is_label(logits, labels, hit)
            hit.sum(out=correct)
            self.softmax(logits, grad, log=True)
            positions = self._label_positions(labels, num_classes)
            self._weighted_cross_entropy(grad, positions, labels, loss, weight, sample_weight,
                                         label_smoothing)
            return loss, correct
        rows = len(logits)
        class_major = self._class_major(rows, num_classes)
        at_max = ws.get("xent_at_max", (num_classes, rows), np.bool_) if class_major else None
        logp, _, sums = self._shifted_exps(logits, class_major, at_max, into=grad)
        positions = self._label_positions(labels, num_classes, class_major=class_major)
        hit = ws.get("xent_hit", (rows,), np.bool_)
        if class_major:
            self._first_max_is_label(at_max, positions, hit)
        else:
            self._argmax_is_label(logits, labels, hit)
        hit.reshape(*models, batch).sum(axis=-1, out=correct)
        xp.log(sums, out=sums)
        logp -= sums                                  # log-probabilities
        picked = ws.get("xent_picked", (rows,), logits.dtype)
        flat = logp.reshape(-1)
        self._take_rows(flat, positions, picked)
        total = ws.get("xent_total", models, np.float64)
        picked.reshape(*models, batch).sum(axis=-1, dtype=np.float64, out=total)
        xp.multiply(total, -1.0 / batch, out=loss)
        xp.exp(logp, out=logp)                        # softmax
        self._take_rows(flat, positions, picked)
        picked -= 1                                   # minus the one-hot
        flat[positions] = picked
        logp *= 1.0 / batch
        if class_major:
            xp.copyto(grad, logp.T)
        return loss, correct

    def _weighted_cross_entropy(self, logp, positions, labels, loss, weight, sample_weight,
                                smoothing):
        """torch's ``cross_entropy(weight=w, label_smoothing=e)`` with per-row weights
        ``s`` (all 1 when None) from the log-probabilities ``logp``, which become the
        gradient. With ``r_i = s_i w[y_i]`` and ``W = sum r_i``::

            loss = ((1 - e) sum_i r_i (-logp[i, y_i])
                    + e / C sum_i s_i sum_c w_c (-logp[i, c])) / W
            grad[i, c] = (p[i, c] ((1 - e) r_i + e / C s_i sum(w))
                          - (1 - e) r_i [c = y_i] - e / C s_i w_c) / W
        """
        xp, ws = self.xp, self.workspace
        batch, num_classes = logp.shape
        dtype, flat = logp.dtype, logp.reshape(-1)
        row = ws.get("xent_row_weight", (batch,), dtype)          # r_i
        if weight is None:
            row.fill(1)
        else:
            self._take_rows(weight, labels, row)
        if sample_weight is not None:
            row *= sample_weight
        total = ws.get("xent_weight_total", (), np.float64)       # W
        row.sum(dtype=np.float64, out=total)
        inverse = ws.get("xent_inverse_total", (), dtype)
        xp.divide(1.0, total, out=inverse, casting="same_kind")
        picked = ws.get("xent_picked", (batch,), dtype)
        self._take_rows(flat, positions, picked)                  # logp[i, y_i]
        picked *= row
        numerator = ws.get("xent_total", (), np.float64)
        picked.sum(dtype=np.float64, out=numerator)
        numerator *= smoothing - 1.0
        smooth = ws.get("xent_smooth_rows", (batch,), dtype)      # s_i sum_c w_c logp[i, c]
        if smoothing:
            if weight is None:
                logp.sum(axis=1, out=smooth)
            else:
                xp.matmul(logp, weight, out=smooth)
            if sample_weight is not None:
                smooth *= sample_weight
            part = ws.get("xent_smooth_total", (), np.float64)
            smooth.sum(dtype=np.float64, out=part)
            xp.multiply(part, smoothing / num_classes, out=part)
            numerator -= part
        xp.divide(numerator, total, out=loss, casting="same_kind")
        xp.exp(logp, out=logp)                                    # p
        scale = ws.get("xent_row_scale", (batch,), dtype)         # (1 - e) r_i + e/C s_i sum(w)
        xp.multiply(row, 1.0 - smoothing, out=scale)
        if smoothing:
            spread = ws.get("xent_spread", (batch,), dtype)
            if weight is None:
                spread.fill(smoothing)                            # e/C times C classes
            else:
                xp.copyto(spread, weight.sum())
                spread *= smoothing / num_classes
            if sample_weight is not None:
                spread *= sample_weight
            scale += spread
        logp *= scale[:, None]
        self._take_rows(flat, positions, picked)
        xp.multiply(row, 1.0 - smoothing, out=row)
        picked -= row                                             # the label's term
        flat[positions] = picked
        if smoothing:
            each = ws.like("xent_smooth_terms", logp)             # e/C s_i w_c
            if weight is None:
                each.fill(smoothing / num_classes)
            else:
                xp.multiply(weight, smoothing / num_classes, out=each)
            if sample_weight is not None:
                each *= sample_weight[:, None]
            logp -= each
        logp *= inverse
