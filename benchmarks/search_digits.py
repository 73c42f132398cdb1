"""A grid search on the CPU: sklearn's digits (1,797 x 64, standardised), 24 candidates (6
learning rates x 4 alphas) of a 64-64-10 MLP (Adam, at most 50 epochs at batch 200, sklearn's
default stopping rule) x 5 stratified folds, best estimator refit, two ways, interleaved
round by round (the median of the rounds is reported):

- ``MLPSearchCV``: ``gpunet.sklearn.MLPSearchCV`` over ``gpunet.sklearn.MLPClassifier``
  (the 120 fits as stacks; float32 networks, as measured on 2026-12-06: the estimator has
  since followed X's dtype, float64 here);
- ``GridSearchCV``: ``sklearn.model_selection.GridSearchCV(sklearn.neural_network
  .MLPClassifier, n_jobs=-1)`` (the fits one by one, on every core).

``--threads`` sets the BLAS threads of MLPSearchCV's process (default 2, the cores;
GridSearchCV's two workers run one each). Prints each run's time and best_score_, and a
summary; ``--json PATH`` writes them.

    python benchmarks/search_digits.py [--rounds 3] [--threads 2] [--json out.json]
"""
import argparse
import json
import statistics
import time
import warnings

import numpy as np

GRID = {"learning_rate_init": [3e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2],
        "alpha": [1e-5, 1e-4, 1e-3, 1e-2]}
SETTINGS = {"hidden_layer_sizes": (64,), "max_iter": 50, "batch_size": 200, "random_state": 0}


def digits():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def run_gpunet(X, y):
    from gpunet.sklearn import MLPClassifier, MLPSearchCV

    search = MLPSearchCV(MLPClassifier(**SETTINGS, dtype="float32", device="cpu"), GRID, cv=5)
    started = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - started, search


def run_sklearn(X, y):
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier

    search = GridSearchCV(MLPClassifier(**SETTINGS), GRID, cv=5, n_jobs=-1)
    started = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - started, search


WAYS = {"MLPSearchCV": run_gpunet, "GridSearchCV": run_sklearn}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2,
                        help="BLAS threads of MLPSearchCV's process (default: 2, the cores; "
                             "GridSearchCV's workers run 1 each)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # loky's workers set their own (cores / workers)
    warnings.filterwarnings("ignore", message=".*Maximum iterations.*")
    warnings.filterwarnings("ignore", message=".*reached their max_iter.*")
    X, y = digits()
    times: dict = {name: [] for name in WAYS}
    best: dict = {}
    for round_ in range(args.rounds):
        for name, run in WAYS.items():
            seconds, search = run(X, y)
            times[name].append(seconds)
            best[name] = {"score": search.best_score_, "params": search.best_params_,
                          "mean_test_score": search.cv_results_["mean_test_score"].tolist()}
            print(f"round {round_ + 1}: {name:<12} {seconds:7.2f} s  best_score_ "
                  f"{100 * search.best_score_:.2f}%  {search.best_params_}", flush=True)
    median = {name: statistics.median(t) for name, t in times.items()}
    gap = 100 * (best["MLPSearchCV"]["score"] - best["GridSearchCV"]["score"])
    print(f"24 candidates x 5 folds of 64-64-10 on {len(X)} samples; median of {args.rounds} "
          f"rounds: MLPSearchCV {median['MLPSearchCV']:.2f} s, GridSearchCV(n_jobs=-1) "
          f"{median['GridSearchCV']:.2f} s: {median['GridSearchCV'] / median['MLPSearchCV']:.2f}x"
          f" faster; best_score_ {gap:+.2f} points")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "times": times, "median": median,
                       "best": best}, f, indent=1,
                      default=lambda v: v.item() if isinstance(v, np.generic) else str(v))


if __name__ == "__main__":
    main()
