"""The real thing: the lecture's 784-512-512-10 MLP on Fashion-MNIST for two epochs.

Reads the dataset from disk (a source checkout ships it in ``data/fashion-mnist``); skips with
the reason where it cannot be found. It never downloads.
"""
import pytest

import gpunet as gn

pytestmark = pytest.mark.slow


def test_two_epochs_reach_84_percent(fashion_mnist):
    (X, y), (X_test, y_test) = fashion_mnist
    gn.manual_seed(0)
    model = gn.Sequential(gn.Flatten(), gn.Linear(784, 512), gn.ReLU(),
                          gn.Linear(512, 512), gn.ReLU(), gn.Linear(512, 10))
    loss_fn = gn.CrossEntropyLoss()
    opt = gn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = gn.fit(model, loss_fn, opt, (X, y), epochs=2, batch_size=64,
                     schedule=gn.schedules.CosineLR(2), seed=0, progress=False)
    assert history["train_loss"][1] < history["train_loss"][0]
    result = gn.evaluate(model, X_test, y_test, loss_fn)
    print(f"Fashion-MNIST after 2 epochs: test accuracy {result.accuracy:.4f}")
    assert result.accuracy >= 0.84
