"""LightGBM with Qlib's ``LGBModel`` semantics (Qlib: ``qlib.contrib.model.gbdt``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tracker.errors import InvalidInputError, InvalidStateError
from tracker.online.model.base import (
    Model,
    Reweighter,
    feature_frame,
    score_series,
    training_frame,
)

__all__ = ["LGBModel"]


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

        x, y, w = training_frame(dataset, "train", reweighter)
        self.feature_names = list(x.columns)
        train = lgb.Dataset(x.to_numpy(dtype=float), label=y, weight=w, params=self.params)
        sets, names = [train], ["train"]
        callbacks: list[Any] = []
        if "valid" in getattr(dataset, "segments", {}):
            xv, yv, wv = training_frame(dataset, "valid", reweighter)
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
        x = feature_frame(dataset, segment, self.feature_names)
        values = self.model.predict(x.to_numpy(dtype=float), num_iteration=self.best_iteration)
        return score_series(values, x.index)
