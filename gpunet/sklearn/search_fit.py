"""The training behind :class:`~gpunet.sklearn.MLPSearchCV`: the fits of many candidates on
many folds that share an architecture, trained as one stack (``gn.stack``), each model as the
estimator would train alone.

Each model starts from the weights its estimator would draw (its ``random_state``), updates
with its own hyperparameters (per-model ``learning_rate_init``, ``alpha``, ``momentum``,
``beta_1``, ``beta_2``, ``epsilon``), reads its own fold's rows in the order its
``random_state`` shuffles them, and stops by scikit-learn's rules (``tol`` and
``n_iter_no_change`` on the training loss, ``max_iter``; ``learning_rate`` "invscaling" and
"adaptive" for SGD), each model on its own: a stopped model is frozen at a learning rate of
0. Models whose rows and order coincide (the same fold and integer ``random_state``) read one
input batch together (a group of the stack: one wide GEMM for its first layer). Once half of
a stack's models stopped, the others continue in a stack of their own (weights, optimizer
state and rules carried over), so stopped models cost no more work.
"""
from __future__ import annotations

import copy
import math
import time

import numpy as np
from sklearn.utils import check_random_state

from .. import optim
from ..backend import to_numpy
from ..nn.boundary import inside
from ..nn.losses import CrossEntropyLoss
from ..nn.stack import quietly, stack
from .base import MIN_ADAPTIVE_LR

#: Hyperparameters a stack takes per model, and the optimizer keyword each becomes.
PER_MODEL = ("learning_rate_init", "alpha", "momentum", "beta_1", "beta_2", "epsilon",
             "tol", "n_iter_no_change", "max_iter", "learning_rate", "power_t",
             "random_state", "shuffle", "verbose")


def stack_key(estimator, n_train, classes):
    """What the models of one stack must share: everything but :data:`PER_MODEL`, the
    batch (resolved for ``n_train`` rows) and the training rows' count and classes."""
    params = {k: v for k, v in estimator.get_params().items() if k not in PER_MODEL}
    params["hidden_layer_sizes"] = tuple(estimator._hidden_sizes())
    params["batch_size"] = estimator._batch(n_train)
    params["nesterov"] = (estimator.solver == "sgd" and estimator.nesterovs_momentum
                          and estimator.momentum > 0)
    return repr(sorted(params.items())), n_train, tuple(classes)


class Member:
    """One model of a stack: candidate ``candidate`` (an unfitted estimator with its
    parameters set) on the rows ``train`` of ``X``."""

    def __init__(self, candidate, fold, estimator, train):
        self.candidate, self.fold, self.estimator, self.train = candidate, fold, estimator, train
        self.random_state = check_random_state(copy.deepcopy(estimator.random_state))
        self.seed = self.random_state.randint(2**31)  # as the estimator draws its weights
        self.loss_curve: list = []
        self.n_iter = 0
        self.converged = False
        self.model = None  # its trained network, once fit_stack is done with it

    def order_key(self):
        """Members with equal keys read the same rows in the same order."""
        state = self.estimator.random_state
        same = isinstance(state, (int, np.integer)) and not isinstance(state, bool)
        return (self.fold, int(state), self.estimator.shuffle) if same else id(self)


def _optimizer(members, parameters, batch):
    """The members' optimizer over the stack: their hyperparameters, one value per model."""
    first = members[0].estimator
    values = {name: [getattr(m.estimator, name) for m in members]
              for name in ("learning_rate_init", "alpha", "momentum", "beta_1", "beta_2",
                           "epsilon")}
    decay = [alpha / batch for alpha in values["alpha"]]  # as the estimator does
    if first.solver == "sgd":
        return optim.SGD(parameters, lr=values["learning_rate_init"],
                         momentum=values["momentum"],
                         nesterov=first.nesterovs_momentum and min(values["momentum"]) > 0,
                         weight_decay=decay)
    return optim.Adam(parameters, lr=values["learning_rate_init"],
                      betas=(values["beta_1"], values["beta_2"]), eps=values["epsilon"],
                      weight_decay=decay)


def _grouped(members):
    """The members reordered so that those reading the same rows in the same order sit
    together in equal groups, sharing one generator (else one group each, each its own
    copy of its generator); ``(members, groups)``."""
    keys: dict = {}
    for m in members:
        keys.setdefault(m.order_key(), []).append(m)
    groups = list(keys.values())
    if len({len(group) for group in groups}) != 1:
        groups = [[m] for m in members]
    for group in groups:
        shared = copy.deepcopy(group[0].random_state)
        for m in group:
            m.random_state = shared
    return [m for group in groups for m in group], groups


class _Training:
    """The stack of the members still training: its models, optimizer and rules; a new
    one, :meth:`compacted`, once half of them stopped (a stopped model costs no more work)."""

    def __init__(self, members, template, batch, previous=None):
        self.members, self.groups = _grouped(members)
        self.models = stack(template, len(self.members), seeds=[m.seed for m in self.members])
        self.optimizer = _optimizer(self.members, self.models.parameters(), batch)
        self.rules = _Rules(self.members, self.optimizer)
        if previous is not None:
            self._continue(previous)

    def _continue(self, previous):
        """Take over the previous stack's weights, optimizer state and rules for these
        members (a subset of its own)."""
        chosen = [previous.members.index(m) for m in self.members]
        layout, old = previous.optimizer.model_layout, previous.optimizer
        layout.select(old.flat.data, chosen, self.optimizer.flat.data)
        for name, buffer in old.buffers.items():
            layout.select(buffer, chosen, self.optimizer.buffers[name])
        self.optimizer.step_count = old.step_count
        self.optimizer._step[...] = old._step
        self.rules.take(previous.rules, chosen)

    def compacted(self, template, batch):
        """The stack of the members still training, or this one while most still do."""
        active = self.rules.active
        if active.all() or 2 * active.sum() > len(active):
            return self
        return _Training([m for m, on in zip(self.members, active) if on], template, batch,
                         previous=self)


def fit_stack(members, X, codes, n_out, backend):
    """Train ``members`` (sharing :func:`stack_key`) on the device array ``X`` (in their
    network's dtype) and class codes ``codes`` as one stack; returns the seconds it took.
    Each member gets its ``model`` (a plain model with its final weights), ``loss_curve``,
    ``n_iter`` and ``converged``."""
    first = members[0].estimator
    n_train = len(members[0].train)
    batch = first._batch(n_train)
    template = quietly(lambda: _architecture(first, backend, X.shape[1], n_out, X.dtype))
    training = _Training(members, template, batch)
    loss_fn = CrossEntropyLoss()
    alphas = [m.estimator.alpha for m in training.members]
    started = time.perf_counter()
    for _ in range(training.rules.max_iter):
        models, rules = training.models, training.rules
        rows = backend.asarray(np.stack([_epoch_rows(g[0]) for g in training.groups]))
        total = backend.xp.zeros(len(training.members), dtype=np.float64)
        with inside():
            for start in range(0, n_train, batch):
                index = rows[:, start:start + batch]
                # sklearn's L2 term is alpha over the batch's rows: the last batch has fewer
                training.optimizer.weight_decay = tuple(a / index.shape[1] for a in alphas)
                total += loss_fn(models(X[index]), codes[index]) * index.shape[1]
                models.backward(loss_fn.backward(), input_grad=False)
                training.optimizer.step()
        backend.ops.check_errors()
        done = rules.epoch_done(to_numpy(total) / n_train)
        for i in np.flatnonzero(rules.stopped_now):
            training.members[i].model = models[int(i)]
        if not done:
            break
        training = training.compacted(template, batch)
        alphas = [m.estimator.alpha for m in training.members]
    for i, member in enumerate(training.members):
        if training.rules.active[i]:  # max_iter reached by the last of them
            member.model = training.models[i]
    return time.perf_counter() - started


def _architecture(estimator, backend, n_in, n_out, dtype):
    """The estimator's network in ``dtype`` (its weights are redrawn per model by the
    stack)."""
    probe = copy.copy(estimator)
    probe._random_state, probe._dtype = np.random.RandomState(0), np.dtype(dtype)
    return probe._build(backend, estimator._hidden_sizes(), n_in, n_out)


def _epoch_rows(member):
    """The rows of the next epoch of the member (and of its group, which shares its
    generator), as its estimator would shuffle them."""
    if not member.estimator.shuffle:
        return member.train
    return member.train[member.random_state.permutation(len(member.train))]


class _Rules:
    """scikit-learn's stopping and learning-rate rules (``base.py``), one model each."""

    def __init__(self, members, optimizer):
        self.members, self.optimizer = members, optimizer
        get = lambda name: np.array([getattr(m.estimator, name) for m in members])  # noqa
        self.tol, self.patience, self.limit = get("tol"), get("n_iter_no_change"), get("max_iter")
        self.power_t, self.lr_init = get("power_t"), get("learning_rate_init")
        sgd = members[0].estimator.solver == "sgd"
        schedule = get("learning_rate")
        self.invscaling = sgd & (schedule == "invscaling")
        self.adaptive = sgd & (schedule == "adaptive")
        self.max_iter = int(self.limit.max())
        self.best = np.full(len(members), math.inf)
        self.count = np.zeros(len(members), dtype=np.int64)
        self.seen = np.zeros(len(members), dtype=np.int64)
        self.active = np.ones(len(members), dtype=bool)
        self.stopped_now = np.zeros(len(members), dtype=bool)
        self.lr = self.lr_init.astype(np.float64)

    def take(self, previous, chosen):
        """Continue the rules of ``previous`` for its members ``chosen`` (indices)."""
        for name in ("best", "count", "seen", "lr"):
            setattr(self, name, getattr(previous, name)[chosen].copy())
        self.max_iter = previous.max_iter
        self.optimizer.lr = self.lr

    def epoch_done(self, losses):
        """Note an epoch's mean losses; update the rates; False when every model stopped."""
        n_train = len(self.members[0].train)
        was_active = self.active.copy()
        for i in np.flatnonzero(self.active):
            member, loss = self.members[i], float(losses[i])
            if not math.isfinite(loss):
                raise ValueError(f"the training loss became {loss} at iteration "
                                 f"{member.n_iter + 1} of candidate {member.candidate} on "
                                 f"fold {member.fold}; scale the features (e.g. "
                                 f"StandardScaler) or lower learning_rate_init")
            member.n_iter += 1
            member.loss_curve.append(loss)
            self.seen[i] += n_train
            self.count[i] = self.count[i] + 1 if loss > self.best[i] - self.tol[i] else 0
            self.best[i] = min(self.best[i], loss)
            if self.invscaling[i]:
                self.lr[i] = self.lr_init[i] / (self.seen[i] + 1) ** self.power_t[i]
            if self.count[i] > self.patience[i]:
                if self.adaptive[i] and self.lr[i] > MIN_ADAPTIVE_LR:
                    self.lr[i] /= 5
                else:
                    member.converged = True
                    self.active[i] = False
                self.count[i] = 0
            if self.active[i] and member.n_iter >= self.limit[i]:
                self.active[i] = False
        self.stopped_now = was_active & ~self.active
        self.optimizer.lr = np.where(self.active, self.lr, 0.0)
        return bool(self.active.any())
