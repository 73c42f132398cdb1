"""``gpunet bench``: the batch-size sweep (``sweep``), its variants (``variants``) and its
report (``report``); ``python -m gpunet.bench`` runs it."""
