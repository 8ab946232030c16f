"""Ridge regression in closed form, a cheap deterministic baseline (Qlib keeps its linear
model in ``qlib.contrib.model.linear``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tracker.errors import InvalidInputError, InvalidStateError
from tracker.online.model.base import (
    Model,
    Reweighter,
    feature_frame,
    score_series,
    training_frame,
)

__all__ = ["RidgeModel"]


class RidgeModel(Model):
    """Ridge regression solved in closed form: ``(Xc' W Xc + alpha I) w = Xc' W yc`` with
    ``Xc``/``yc`` centred (so the intercept is not penalised) and ``W`` the optional
    sample weights. Uses ``train`` only; ``seed`` is accepted for a uniform interface (the
    solution is deterministic)."""

    def __init__(self, alpha: float = 1.0, seed: int = 0, fit_intercept: bool = True) -> None:
        if alpha < 0:
            raise InvalidInputError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.seed = seed
        self.fit_intercept = fit_intercept
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.feature_names: list[Any] = []

    def fit(self, dataset: Any, reweighter: Reweighter | None = None) -> None:
        x_df, y, w = training_frame(dataset, "train", reweighter)
        x = x_df.to_numpy(dtype=float)
        if not np.isfinite(x).all():
            raise InvalidInputError(
                "RidgeModel needs finite features; the train segment has NaN/inf"
            )
        w = np.ones(len(y)) if w is None else w
        if self.fit_intercept:
            x_mean = np.average(x, axis=0, weights=w)
            y_mean = float(np.average(y, weights=w))
        else:
            x_mean, y_mean = np.zeros(x.shape[1]), 0.0
        xc, yc = x - x_mean, y - y_mean
        xw = xc * w[:, None]
        gram = xc.T @ xw + self.alpha * np.eye(x.shape[1])
        # solve, not inv: cheaper and numerically sounder; lstsq if alpha=0 leaves it singular.
        try:
            coef = np.linalg.solve(gram, xw.T @ yc)
        except np.linalg.LinAlgError:
            coef = np.linalg.lstsq(gram, xw.T @ yc, rcond=None)[0]
        self.coef_ = coef
        self.intercept_ = y_mean - float(x_mean @ coef)
        self.feature_names = list(x_df.columns)

    def predict(self, dataset: Any, segment: str = "test") -> pd.Series:
        if self.coef_ is None:
            raise InvalidStateError("RidgeModel is not fitted yet; call fit(dataset) first")
        x = feature_frame(dataset, segment, self.feature_names)
        return score_series(x.to_numpy(dtype=float) @ self.coef_ + self.intercept_, x.index)
