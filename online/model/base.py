"""Models with Qlib's ``fit(dataset)`` / ``predict(dataset, segment)`` interface.

A dataset is anything with ``segments`` (name -> (start, end)) and
``prepare(segment, col_set)`` returning frames indexed ``(datetime, instrument)``:
``col_set="__all"`` gives two-level columns ``("feature", name)`` / ``("label", "LABEL0")``,
``col_set="feature"`` the feature columns only.

* :class:`LGBModel` - LightGBM, early-stopped on ``valid`` as Qlib's ``LGBModel``.
* :class:`RidgeModel` - closed-form ridge regression on numpy, a cheap baseline.

Both train on the ``train`` rows whose label is not NaN, are deterministic for a seed,
print nothing, and pickle (predictions after unpickling are identical).
"""

from __future__ import annotations

import abc
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tracker.errors import InvalidInputError, InvalidStateError

__all__ = ["LGBModel", "Model", "RidgeModel"]


class Reweighter(Protocol):
    """Qlib's sample reweighter: one weight per row of the prepared ``__all`` frame."""

    def reweight(self, data: pd.DataFrame) -> Any: ...


class Model(abc.ABC):
    """Qlib's ``Model``: fit on a dataset, then predict a segment."""

    @abc.abstractmethod
    def fit(self, dataset: Any, reweighter: Reweighter | None = None) -> None:
        """Learn from ``dataset`` (its ``train`` segment, ``valid`` if the model uses it)."""

    @abc.abstractmethod
    def predict(self, dataset: Any, segment: str = "test") -> pd.Series:
        """Scores for ``segment``: a Series named ``score`` indexed ``(datetime, instrument)``.
        Raises InvalidStateError before ``fit``."""


def _training_frame(
    dataset: Any, segment: str, reweighter: Reweighter | None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Features, label and optional weights of ``segment``, rows with a NaN label dropped
    (Qlib's learn-time ``DropnaLabel``: such rows have nothing to learn from)."""
    df = dataset.prepare(segment, col_set="__all")
    if df.empty:
        raise InvalidInputError(f"the dataset's {segment!r} segment is empty; check its dates")
    label = df["label"]
    if label.shape[1] != 1:
        raise InvalidInputError(f"one label column is supported, got {list(label.columns)}")
    y = label.iloc[:, 0].to_numpy(dtype=float)
    keep = ~np.isnan(y)
    if not keep.any():
        raise InvalidInputError(f"every label of the {segment!r} segment is NaN")
    df = df[keep]
    weights = None
    if reweighter is not None:
        weights = np.asarray(reweighter.reweight(df), dtype=float)
    return df["feature"], y[keep], weights


def _scores(values: np.ndarray, index: pd.Index) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float), index=index, name="score")


def _features(dataset: Any, segment: str, columns: list[Any]) -> pd.DataFrame:
    """The segment's features in the training column order (the model depends on it)."""
    x = dataset.prepare(segment, col_set="feature")
    missing = [c for c in columns if c not in x.columns]
    if missing:
        raise InvalidInputError(f"segment {segment!r} lacks the trained feature columns {missing}")
    return x[columns]


class LGBModel(Model):
    """LightGBM regressor with Qlib's ``LGBModel`` semantics.

    Trains on ``train``; when the dataset has a ``valid`` segment it stops after
    ``early_stopping_rounds`` rounds without improvement there (else it runs all
    ``num_boost_round`` rounds). Determinism comes from ``seed``, ``deterministic=True`` and
    ``force_col_wise=True``; ``verbosity=-1`` and no logging callback keep stdout clean.

    ``evals_result`` holds the per-round metric history, e.g.
    ``{"train": {"l2": [...]}, "valid": {"l2": [...]}}``, for the trainer to log.
    """

    def __init__(
        self,
        loss: str = "mse",
        num_boost_round: int = 1000,
        early_stopping_rounds: int = 50,
        seed: int = 0,
        num_threads: int = 2,
        **lgb_params: Any,
    ) -> None:
        if loss not in {"mse", "binary"}:
            raise InvalidInputError(f"loss {loss!r} is not supported; use 'mse' or 'binary'")
        self.loss = loss
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.params: dict[str, Any] = {
            "objective": loss,
            "verbosity": -1,
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": num_threads,
        }
        self.params.update(lgb_params)
        self.model: Any = None
        self.feature_names: list[Any] = []
        self.evals_result: dict[str, dict[str, list[float]]] = {}

    def fit(self, dataset: Any, reweighter: Reweighter | None = None) -> None:
        import lightgbm as lgb

        x, y, w = _training_frame(dataset, "train", reweighter)
        self.feature_names = list(x.columns)
        train = lgb.Dataset(x.to_numpy(dtype=float), label=y, weight=w, params=self.params)
        sets, names = [train], ["train"]
        callbacks: list[Any] = []
        if "valid" in getattr(dataset, "segments", {}):
            xv, yv, wv = _training_frame(dataset, "valid", reweighter)
            xv = xv[self.feature_names]
            sets.append(lgb.Dataset(xv.to_numpy(dtype=float), label=yv, weight=wv, reference=train))
            names.append("valid")
            # LightGBM's early stopping ignores the training set, so it watches "valid" only.
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        evals: dict[str, Any] = {}
        callbacks.append(lgb.record_evaluation(evals))
        try:
            self.model = lgb.train(
                self.params,
                train,
                num_boost_round=self.num_boost_round,
                valid_sets=sets,
                valid_names=names,
                callbacks=callbacks,
            )
        except lgb.basic.LightGBMError as e:  # its parameters are checked only here
            raise InvalidInputError(f"LGBModel: LightGBM refused its parameters: {e}") from e
        self.evals_result = {k: {m: list(v) for m, v in d.items()} for k, d in evals.items()}

    @property
    def best_iteration(self) -> int:
        """Rounds used for prediction: the best on ``valid``, else all that were trained."""
        if self.model is None:
            raise InvalidStateError("LGBModel is not fitted yet; call fit(dataset) first")
        return int(self.model.best_iteration or self.model.current_iteration())

    def predict(self, dataset: Any, segment: str = "test") -> pd.Series:
        if self.model is None:
            raise InvalidStateError("LGBModel is not fitted yet; call fit(dataset) first")
        x = _features(dataset, segment, self.feature_names)
        values = self.model.predict(x.to_numpy(dtype=float), num_iteration=self.best_iteration)
        return _scores(values, x.index)


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
        x_df, y, w = _training_frame(dataset, "train", reweighter)
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
        x = _features(dataset, segment, self.feature_names)
        return _scores(x.to_numpy(dtype=float) @ self.coef_ + self.intercept_, x.index)
