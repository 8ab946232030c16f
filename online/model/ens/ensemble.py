"""Merging a dict of collected predictions into one (Qlib: ``qlib.model.ens.ensemble``).

Differences from Qlib, deliberately:

- :class:`RollingEnsemble` lets the later model own a whole overlapping *date*: Qlib dropped
  duplicate ``(datetime, instrument)`` rows, so an instrument missing from the later model kept
  the earlier model's score and one day's cross-section mixed two models;
- :class:`AverageEnsemble` returns a single model's scores unchanged (Qlib quirk 12: it
  z-scored them per date anyway, which changes their scale for no benefit: averaging needs a
  common scale only when there is something to average).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tracker.errors import InvalidInputError

__all__ = ["AverageEnsemble", "Ensemble", "RollingEnsemble", "SingleKeyEnsemble"]

logger = logging.getLogger(__name__)

Frame = pd.DataFrame | pd.Series


class Ensemble:
    """Merge a dict of objects (usually predictions) into one."""

    def __call__(self, ensemble_dict: Mapping[Any, Any], *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")


class SingleKeyEnsemble(Ensemble):
    """Unwrap single-key dicts, recursively: ``{"a": {"b": x}}`` becomes ``x``; dicts with
    several keys are kept (their single-key values are still unwrapped). The input is not
    modified."""

    def __call__(self, data: Any, recursion: bool = True) -> Any:  # type: ignore[override]
        if not isinstance(data, dict):
            return data
        if recursion:
            data = {k: self(v, recursion) for k, v in data.items()}
        if len(data) == 1:
            return next(iter(data.values()))
        return data


def _dates(frame: Frame) -> pd.Index:
    if "datetime" not in (frame.index.names or []):
        raise InvalidInputError(
            f"expected predictions indexed by (datetime, instrument), got index levels "
            f"{list(frame.index.names)}"
        )
    return frame.index.get_level_values("datetime")


def _key_rank(keys: list[Any]) -> list[int]:
    """Each key's position in sorted order; insertion order when keys do not compare."""
    try:
        order = sorted(range(len(keys)), key=lambda i: keys[i])
    except TypeError:
        return list(range(len(keys)))
    rank = [0] * len(keys)
    for pos, i in enumerate(order):
        rank[i] = pos
    return rank


class RollingEnsemble(Ensemble):
    """Concatenate rolling models' predictions along time.

    Models are ordered by their first prediction date (ties: by key, e.g. a later test
    segment). On a date predicted by several models the later one supplies that whole date,
    so no ``(datetime, instrument)`` is duplicated and no date mixes models. Returns the
    frames' type, sorted by index.
    """

    def __call__(self, ensemble_dict: Mapping[Any, Frame]) -> Frame:  # type: ignore[override]
        if not ensemble_dict:
            raise InvalidInputError("RollingEnsemble: nothing to ensemble (the dict is empty)")
        logger.info("RollingEnsemble: keys in group: %s", list(ensemble_dict))
        keys, frames = list(ensemble_dict), list(ensemble_dict.values())
        dates = [_dates(f) for f in frames]
        rank = _key_rank(keys)
        # Empty frames have no dates (NaT): they sort first and own nothing.
        first = [d.min() if len(d) else pd.Timestamp.min for d in dates]
        order = sorted(range(len(frames)), key=lambda i: (first[i], rank[i]))
        owner: dict[pd.Timestamp, int] = {}
        for i in order:
            owner.update(dict.fromkeys(dates[i].unique(), i))
        parts = []
        for i in order:
            own = dates[i].map(owner).to_numpy() == i
            part = frames[i][own]
            parts.append(part[~part.index.duplicated(keep="last")])
        return pd.concat(parts).sort_index()


def _flatten(d: Mapping[Any, Any], parent: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    """Nested dicts to one level with tuple keys (Qlib's ``flatten_dict(sep=FLATTEN_TUPLE)``)."""
    out: dict[tuple[Any, ...], Any] = {}
    for key, value in d.items():
        path = (*parent, *(key if isinstance(key, tuple) else (key,)))
        if isinstance(value, Mapping):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


class AverageEnsemble(Ensemble):
    """Average several models' scores: each score column is z-scored within each date
    (``(x - mean) / std``, std with ddof=1), then the columns are averaged (NaN skipped).

    Nested dicts are flattened first. Returns a Series named ``score`` sorted by index. With a
    single score column the scores are returned unchanged (see the module docstring).
    """

    def __call__(self, ensemble_dict: Mapping[Any, Any]) -> pd.Series:  # type: ignore[override]
        flat = _flatten(ensemble_dict)
        if not flat:
            raise InvalidInputError("AverageEnsemble: nothing to ensemble (the dict is empty)")
        logger.info("AverageEnsemble: keys in group: %s", list(flat))
        values = [v.to_frame() if isinstance(v, pd.Series) else v for v in flat.values()]
        for value in values:
            _dates(value)
        results = pd.concat(values, axis=1)
        if results.shape[1] == 1:
            return results.iloc[:, 0].rename("score").sort_index()
        by_day = results.groupby(level="datetime")
        zscored = (results - by_day.transform("mean")) / by_day.transform("std")
        return zscored.mean(axis=1).rename("score").sort_index()
