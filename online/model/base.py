"""The model interface, Qlib's ``fit(dataset)`` / ``predict(dataset, segment)`` (Qlib:
``qlib.model.base``), and the helpers its models share.

A dataset is anything with ``segments`` (name -> (start, end)) and
``prepare(segment, col_set)`` returning frames indexed ``(datetime, instrument)``:
``col_set="__all"`` gives two-level columns ``("feature", name)`` / ``("label", "LABEL0")``,
``col_set="feature"`` the feature columns only.

The models, as Qlib keeps them: :class:`~tracker.online.model.gbdt.LGBModel` (LightGBM,
early-stopped on ``valid``) and :class:`~tracker.online.model.linear.RidgeModel` (closed-form
ridge regression on numpy, a cheap baseline); both are still importable from here, where
earlier configs and pickles name them. Both train on the ``train`` rows whose label is not NaN,
are deterministic for a seed, print nothing, and pickle (predictions after unpickling are
identical).
"""

from __future__ import annotations

import abc
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tracker.errors import InvalidInputError

__all__ = ["Model", "Reweighter", "feature_frame", "score_series", "training_frame"]


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


def training_frame(
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


def score_series(values: np.ndarray, index: pd.Index) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float), index=index, name="score")


def feature_frame(dataset: Any, segment: str, columns: list[Any]) -> pd.DataFrame:
    """The segment's features in the training column order (the model depends on it)."""
    x = dataset.prepare(segment, col_set="feature")
    missing = [c for c in columns if c not in x.columns]
    if missing:
        raise InvalidInputError(f"segment {segment!r} lacks the trained feature columns {missing}")
    return x[columns]


def __getattr__(name: str) -> Any:
    """``LGBModel`` and ``RidgeModel`` where tracker 0.1 kept them (configs, pickles), imported
    on first use: their modules import this one."""
    if name == "LGBModel":
        from tracker.online.model.gbdt import LGBModel

        return LGBModel
    if name == "RidgeModel":
        from tracker.online.model.linear import RidgeModel

        return RidgeModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
