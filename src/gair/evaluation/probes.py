"""Probes on frozen embeddings: linear (logistic / ridge), k-nearest neighbours, and a
linear segmentation head on RS token grids.

Each probe is fitted on the train split, its one hyperparameter (regularisation or k) is
chosen on the val split, and the chosen probe is scored once on the test split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import f1_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

C_GRID = (0.01, 0.1, 1.0, 10.0)
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
K_GRID = (1, 3, 5, 10, 20)


class Labelled(NamedTuple):
    """Features [N, D] (or token grids [N, C, h, w]) and their labels or targets."""

    x: np.ndarray
    y: np.ndarray


SPLITS = ("train", "val", "test")
Splits = dict[str, Labelled]  # keyed by SPLITS


def few_labels(y: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``per_class`` items of each class (all with ``None``): the
    low-label regime downstream users are in."""
    if per_class is None:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(keep))


class EmptySplitError(ValueError):
    """A task has no items in a split it needs (a small world, or a spatial split that put
    every block of a place in one split)."""


def _check(splits: Splits) -> None:
    for name in SPLITS:
        if name not in splits or len(splits[name].y) == 0:
            raise EmptySplitError(f"probe needs a non-empty {name!r} split")


def _best(scores: dict[float, float]) -> float:
    """The hyperparameter with the best val score (the first of equals)."""
    return max(scores, key=lambda k: (scores[k], -list(scores).index(k)))


class LogisticProbe:
    """Multinomial logistic regression with an L2 penalty (scikit-learn's objective:
    ``C * sum(cross-entropy) + ||W||² / 2``), fitted full-batch by L-BFGS in torch: the
    same model as ``sklearn.linear_model.LogisticRegression``, much faster on tens of
    thousands of tokens. ``init`` warm-starts from another probe of the same classes."""

    def __init__(self, c: float, max_iter: int = 100) -> None:
        self.c, self.max_iter = c, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray, init: LogisticProbe | None = None) -> LogisticProbe:
        self.classes_, codes = np.unique(y, return_inverse=True)
        x_t = torch.from_numpy(np.asarray(x, np.float32))
        y_t = torch.from_numpy(codes)
        k = len(self.classes_)
        weight = torch.zeros(x_t.shape[1], k, dtype=torch.float32, requires_grad=True)
        bias = torch.zeros(k, dtype=torch.float32, requires_grad=True)
        if init is not None:
            with torch.no_grad():
                weight.copy_(init.weight)
                bias.copy_(init.bias)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=self.max_iter,
                                      tolerance_grad=1e-6, line_search_fn="strong_wolfe")
        penalty = 1.0 / (2.0 * self.c * len(y))  # the objective divided by C * n

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(x_t @ weight + bias, y_t) + penalty * (weight**2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()
        return self

    def predict_log_proba(self, x: np.ndarray) -> np.ndarray:
        logits = torch.from_numpy(np.asarray(x, np.float32)) @ self.weight + self.bias
        return torch.log_softmax(logits, dim=1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_log_proba(x).argmax(axis=1)]


def _fit_path(x: np.ndarray, y: np.ndarray, c_grid: Sequence[float]) -> dict[float, LogisticProbe]:
    """One probe per C, from the strongest penalty up, each warm-started from the last."""
    fitted: dict[float, LogisticProbe] = {}
    previous = None
    for c in sorted(c_grid):
        previous = fitted[c] = LogisticProbe(c).fit(x, y, init=previous)
    return {c: fitted[c] for c in c_grid}


def linear_classifier(splits: Splits, c_grid: Sequence[float] = C_GRID) -> dict[str, float]:
    """Logistic regression on standardised features; C chosen by val accuracy.

    Returns test ``acc``, ``macro_f1`` and the chosen ``C``.
    """
    _check(splits)
    scaler = StandardScaler().fit(splits["train"].x)
    x = {k: scaler.transform(v.x) for k, v in splits.items()}
    fitted = _fit_path(x["train"], splits["train"].y, c_grid)
    scores = {c: float((m.predict(x["val"]) == splits["val"].y).mean()) for c, m in fitted.items()}
    c = _best(scores)
    predicted = fitted[c].predict(x["test"])
    y = splits["test"].y
    return {"acc": float((predicted == y).mean()),
            "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
            "C": float(c)}


def knn_classifier(splits: Splits, k_grid: Sequence[int] = K_GRID) -> dict[str, float]:
    """k-nearest neighbours by cosine similarity; k chosen by val accuracy."""
    _check(splits)
    n_train = len(splits["train"].y)
    fitted, scores = {}, {}
    for k in sorted({min(k, n_train) for k in k_grid}):
        fitted[k] = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(*splits["train"])
        scores[k] = float((fitted[k].predict(splits["val"].x) == splits["val"].y).mean())
    k = _best(scores)
    predicted = fitted[k].predict(splits["test"].x)
    return {"acc": float((predicted == splits["test"].y).mean()), "k": float(k)}


def r2_per_target(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """R² per target column (1 - SSE / SST around the true mean) of [N, T] arrays."""
    if y.shape != predicted.shape:  # [N] against [N, 1] would broadcast to [N, N]
        raise ValueError(f"targets {y.shape} and predictions {predicted.shape} differ in shape")
    sst = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - ((y - predicted) ** 2).sum(axis=0) / np.maximum(sst, 1e-12)


def _predict(regressor: Ridge | DummyRegressor, x: np.ndarray) -> np.ndarray:
    """Predictions [N, T]: scikit-learn returns [N] for a single target fitted as [N, 1]."""
    return regressor.predict(x).reshape(len(x), -1)


def ridge_regressor(splits: Splits, alpha_grid: Sequence[float] = ALPHA_GRID,
                    target_names: Sequence[str] | None = None) -> dict[str, float]:
    """Ridge regression on standardised features; alpha chosen by mean val R².

    The candidates are ``alpha_grid`` and infinity, the train mean: features that predict
    nothing on the val split fall back to the mean instead of the grid's largest alpha.
    Targets are [N] or [N, T]. Returns test ``r2`` and ``rmse`` (means over targets),
    per-target ``r2/<name>`` and ``rmse/<name>``, and the chosen ``alpha``.
    """
    _check(splits)
    scaler = StandardScaler().fit(splits["train"].x)
    x = {k: scaler.transform(v.x) for k, v in splits.items()}
    y = {k: np.asarray(v.y, np.float64).reshape(len(v.y), -1) for k, v in splits.items()}
    candidates = {alpha: Ridge(alpha=alpha) for alpha in alpha_grid} | {
        math.inf: DummyRegressor(strategy="mean")}
    fitted, scores = {}, {}
    for alpha, regressor in candidates.items():
        fitted[alpha] = regressor.fit(x["train"], y["train"])
        scores[alpha] = float(r2_per_target(y["val"], _predict(fitted[alpha], x["val"])).mean())
    alpha = _best(scores)
    predicted = _predict(fitted[alpha], x["test"])
    r2 = r2_per_target(y["test"], predicted)
    rmse = np.sqrt(((y["test"] - predicted) ** 2).mean(axis=0))
    metrics = {"r2": float(r2.mean()), "rmse": float(rmse.mean()), "alpha": float(alpha)}
    if target_names is not None and len(target_names) > 1:
        for name, r, e in zip(target_names, r2, rmse, strict=True):
            metrics[f"r2/{name}"] = float(r)
            metrics[f"rmse/{name}"] = float(e)
    return metrics


def token_labels(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Majority class per token footprint: masks [N, S, S] -> [N, h, w] (ties: lowest code)."""
    n, size, _ = masks.shape
    h, w = grid
    if size % h or size % w:
        raise ValueError(f"mask size {size} is not a multiple of the token grid {grid}")
    cells = masks.reshape(n, h, size // h, w, size // w).transpose(0, 1, 3, 2, 4)
    cells = cells.reshape(n, h, w, -1)
    codes = int(masks.max()) + 1
    counts = np.stack([(cells == c).sum(-1) for c in range(codes)], axis=-1)
    return counts.argmax(-1).astype(masks.dtype)


def mean_iou(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, dict[int, float]]:
    """Mean IoU over the classes present in the truth or the prediction, and per class."""
    classes = np.union1d(np.unique(truth), np.unique(predicted))
    per_class = {}
    for c in classes:
        t, p = truth == c, predicted == c
        per_class[int(c)] = float((t & p).sum() / (t | p).sum())
    return float(np.mean(list(per_class.values()))), per_class


def segmentation_probe(splits: Splits, c_grid: Sequence[float] = C_GRID) -> dict[str, float]:
    """A linear head on RS token grids, scored at pixel level.

    ``x`` are token grids [N, C, h, w] and ``y`` label masks [N, S, S]. A logistic
    regression is fitted per token on the token's majority label; at test time its
    log-probabilities are upsampled bilinearly to the mask size and the argmax is scored.
    C is chosen by val mIoU. Returns test ``miou``, ``pixel_acc`` and ``C``.
    """
    _check(splits)
    c_dim, h, w = splits["train"].x.shape[1:]

    def tokens(x: np.ndarray) -> np.ndarray:
        return x.transpose(0, 2, 3, 1).reshape(-1, c_dim)

    scaler = StandardScaler().fit(tokens(splits["train"].x))
    train_y = token_labels(splits["train"].y, (h, w)).reshape(-1)

    def predict(model: LogisticProbe, x: np.ndarray, size: int) -> np.ndarray:
        log_p = model.predict_log_proba(scaler.transform(tokens(x)))
        log_p = torch.from_numpy(log_p.reshape(len(x), h, w, -1)).permute(0, 3, 1, 2).float()
        up = F.interpolate(log_p, size=(size, size), mode="bilinear", align_corners=False)
        return model.classes_[up.argmax(dim=1).numpy()]

    fitted = _fit_path(scaler.transform(tokens(splits["train"].x)), train_y, c_grid)
    val = splits["val"]
    scores = {c: mean_iou(val.y, predict(m, val.x, val.y.shape[-1]))[0]
              for c, m in fitted.items()}
    c = _best(scores)
    test = splits["test"]
    predicted = predict(fitted[c], test.x, test.y.shape[-1])
    miou, _ = mean_iou(test.y, predicted)
    return {"miou": miou, "pixel_acc": float((predicted == test.y).mean()), "C": float(c)}
