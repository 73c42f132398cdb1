"""The samples an estimator trains on or predicts for, on its device, handed out as dense
float batches: a dense ``X`` is copied to the device once; a scipy CSR matrix moves as its
three arrays and only a batch of rows at a time is densified, on the device (array
operations of the backend's ``xp``), so the whole matrix is never dense anywhere."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class DeviceRows:
    """``X`` (a NumPy array or a CSR matrix, as ``validate_data`` returns them) on
    ``backend`` in ``dtype``."""

    def __init__(self, X, backend, dtype):
        self.backend, self.dtype = backend, np.dtype(dtype)
        self.shape = X.shape
        self.sparse = sp.issparse(X)
        if self.sparse:
            if not X.has_canonical_format:  # duplicate entries add up, as in toarray()
                X = X.copy()
                X.sum_duplicates()
            self.data = backend.asarray(X.data, dtype=self.dtype)
            self.indices = backend.asarray(X.indices.astype(np.int64))
            self.indptr = backend.asarray(X.indptr.astype(np.int64))
        else:
            self.dense = backend.asarray(X, dtype=self.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows):
        """The dense rows ``rows`` (a device int array): a new (len(rows), features) array."""
        if not self.sparse:
            return self.dense[rows]
        return self._densified(rows)

    def _densified(self, rows):
        """Rows ``rows`` of the canonical CSR matrix as a new dense array: only the gathered
        rows' entries are read."""
        xp = self.backend.xp
        out = xp.zeros((len(rows), self.shape[1]), dtype=self.dtype)
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        total = int(counts.sum())
        if total:
            ends = xp.cumsum(counts)
            filled = xp.flatnonzero(counts)                # the rows with entries
            begin = (ends - counts)[filled]                # where their entries begin
            marker = xp.zeros(total, dtype=np.int64)
            marker[begin[1:]] = 1
            which = xp.cumsum(marker)                      # each entry's filled row
            entry = xp.arange(total) - begin[which] + starts[filled][which]
            out[filled[which], self.indices[entry]] = self.data[entry]
        return out
