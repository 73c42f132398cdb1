"""scikit-learn estimators trained by gpunet: :class:`MLPClassifier` and
:class:`MLPRegressor`, with the parameters of ``sklearn.neural_network`` plus ``device``.

They live in Pipelines, ``GridSearchCV``, ``cross_val_score`` and joblib files and pass
``sklearn.utils.estimator_checks.check_estimator``. scikit-learn is an optional extra
(``pip install -e ".[sklearn]"``); the rest of gpunet never imports it.
"""
from __future__ import annotations

MIN_SKLEARN = (1, 6)  # validate_data and __sklearn_tags__


def _require_sklearn():
    try:
        import sklearn
    except ImportError as exc:
        raise ImportError(f"gpunet.sklearn needs scikit-learn >= {'.'.join(map(str, MIN_SKLEARN))}: "
                          f'pip install "scikit-learn>=1.6" (or the extra: pip install -e '
                          f'".[sklearn]")') from exc
    version = tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_SKLEARN:
        raise ImportError(f"gpunet.sklearn needs scikit-learn >= 1.6, found "
                          f"{sklearn.__version__}: pip install -U scikit-learn")


_require_sklearn()

from .estimators import MLPClassifier, MLPRegressor  # noqa: E402  (after the version check)
from .search import MLPSearchCV  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor", "MLPSearchCV"]
