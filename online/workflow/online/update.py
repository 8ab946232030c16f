"""Extending a finished run's predictions and labels as new data arrives (Qlib's
``qlib.workflow.online.update``).

:class:`PredUpdater` reloads the run's model (``params.pkl``) and dataset config
(``dataset``), points the handler at ``[from_date - hist_ref days, to_date]``, predicts the
new dates and writes ``pred.pkl`` back with only ``[from_date, to_date]`` replaced.
:class:`LabelUpdater` does the same for ``label.pkl``. ``from_date`` defaults to the day after
the last non-NaN row (so a label's NaN tail, whose future prices were unknown, is recomputed
next time) and ``to_date`` to the last date of the data; both are clipped to the data.

The trading calendar is the set of dates of the dataset's own data (``handler.load()``).

Differences from Qlib, deliberately:

- a ``to_date`` past the data is clipped with an info log (Qlib warned even when equal);
- the replaced range is the update's ``[from_date, to_date]`` (Qlib used the new rows'
  min/max, which is the same whenever the dataset covers the range);
- the history buffer is clipped at the first date of the data instead of failing;
- an update that changes nothing does not rewrite the artifact;
- :class:`LabelUpdater` extends labels up to the last date of ``pred.pkl`` by default, so the
  two artifacts keep covering the same dates (Qlib: the last date of the data);
- ``get_dataset`` always sets the handler's end (Qlib's ``handler_mod`` skipped an open
  ``None`` end, PR #2068, so open-ended runs were updated on truncated data).
"""

from __future__ import annotations

import abc
import logging
import pickle
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tracker import Recorder
from tracker.errors import InvalidInputError, InvalidStateError, LoadObjectError
from tracker.online.workflow.record_temp import SignalRecord

__all__ = ["DSBasedUpdater", "LabelUpdater", "PredUpdater", "RMDLoader", "RecordUpdater"]

logger = logging.getLogger(__name__)


def _ts(value: Any) -> pd.Timestamp:
    try:
        return pd.Timestamp(value)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{value!r} is not a date ({e}); pass e.g. '2021-03-31'") from e


def data_calendar(dataset: Any) -> pd.DatetimeIndex:
    """The sorted trading dates of the dataset's data (its handler's ``load()`` panel)."""
    load = getattr(getattr(dataset, "handler", None), "load", None)
    if load is None:
        raise InvalidInputError(
            f"{type(dataset).__name__} has no handler with load(); updaters need a dataset "
            "such as tracker.online.data.dataset.Dataset over a FeatureHandler"
        )
    dates = load().index.get_level_values("datetime").unique()
    return pd.DatetimeIndex(dates).sort_values()


class RMDLoader:
    """Recorder-Model-Dataset loader: a run's model and its dataset re-pointed at new dates."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def get_dataset(
        self,
        start_time: Any,
        end_time: Any,
        segments: Mapping[str, tuple[Any, Any]] | None = None,
        unprepared_dataset: Any = None,
    ) -> Any:
        """The run's ``dataset`` (or a copy of ``unprepared_dataset``) with the handler's data
        range set to ``[start_time, end_time]`` and ``segments`` (default
        ``{"test": (start_time, end_time)}``), data computed."""
        if unprepared_dataset is None:
            dataset = self.rec.load_object("dataset")
        else:
            # A pickle round trip copies it without cached data (Dataset pickles config only),
            # so the caller's object is left as it was.
            dataset = pickle.loads(pickle.dumps(unprepared_dataset))
        handler = getattr(dataset, "handler", None)
        if not (hasattr(handler, "start_time") and hasattr(handler, "end_time")):
            raise InvalidInputError(
                f"run {self.rec.id}: the dataset's handler has no start_time/end_time to "
                "re-point; use a FeatureHandler-based Dataset"
            )
        handler.start_time, handler.end_time = _ts(start_time), _ts(end_time)
        if segments is None:
            segments = {"test": (start_time, end_time)}
        dataset.segments = {str(k): (_ts(s), _ts(e)) for k, (s, e) in segments.items()}
        dataset.setup_data()
        return dataset

    def get_model(self) -> Any:
        """The run's fitted model (``params.pkl``)."""
        return self.rec.load_object("params.pkl")


class RecordUpdater(abc.ABC):
    """Updates an artifact of one recorder."""

    def __init__(self, record: Recorder, *args: Any, **kwargs: Any) -> None:
        self.record = record

    @abc.abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> Any:
        """Bring the artifact up to date."""


def _replace_range(
    data: pd.DataFrame, new_data: pd.DataFrame, start: Any = None, end: Any = None
) -> pd.DataFrame:
    """``data`` with its rows dated in ``[start, end]`` (default: ``new_data``'s date range)
    replaced by ``new_data``; the rows outside are kept exactly; sorted, no duplicate index."""
    new_dates = new_data.index.get_level_values("datetime")
    start = new_dates.min() if start is None else _ts(start)
    end = new_dates.max() if end is None else _ts(end)
    data = data.sort_index()
    dates = data.index.get_level_values("datetime")
    kept = data[(dates < start) | (dates > end)]
    out = pd.concat([kept, new_data])
    return out[~out.index.duplicated(keep="last")].sort_index()


class DSBasedUpdater(RecordUpdater):
    """Recompute artifact ``fname`` of a run for ``[from_date, to_date]`` from its dataset.

    Args:
        record: the run (usually FINISHED; artifacts may be overwritten then).
        to_date: last date to compute; default and upper bound: the last date of the data.
        from_date: first date to recompute; default: the day after the last non-NaN row.
        hist_ref: trading days of data loaded before ``from_date`` for lookback windows;
            default ``step_len - 1`` for a time-series dataset (one with ``step_len``), else 0.
        freq: only ``"day"``.
        fname: the artifact to update.
        loader_cls: builds the model and dataset (``loader_cls(rec=record)``).

    Raises LoadObjectError if the run lacks ``fname`` or its ``dataset``.
    """

    def __init__(
        self,
        record: Recorder,
        to_date: Any = None,
        from_date: Any = None,
        hist_ref: int | None = None,
        freq: str = "day",
        fname: str = "pred.pkl",
        loader_cls: type[RMDLoader] = RMDLoader,
    ) -> None:
        super().__init__(record)
        if freq != "day":
            raise InvalidInputError(f"freq {freq!r} is not supported; updaters handle 'day' only")
        if hist_ref is not None and hist_ref < 0:
            raise InvalidInputError(f"hist_ref must be >= 0 trading days, got {hist_ref}")
        self.fname, self.freq, self.hist_ref = fname, freq, hist_ref
        self.rmdl = loader_cls(rec=record)
        self.old_data: pd.DataFrame = record.load_object(fname)
        self.dataset_template = record.load_object("dataset")
        self.calendar = data_calendar(self.dataset_template)
        last_date = self.calendar[-1]
        self.to_date = last_date if to_date is None else _ts(to_date)
        if self.to_date > last_date:
            logger.info(
                "run %s: to_date %s is past the data; clipped to %s",
                record.id,
                f"{self.to_date:%Y-%m-%d}",
                f"{last_date:%Y-%m-%d}",
            )
            self.to_date = last_date
        if from_date is None:
            valid = self.old_data.dropna()
            if valid.empty:
                raise InvalidStateError(
                    f"run {record.id}: {fname} has no non-NaN rows to continue from; pass "
                    "from_date= to say where the update starts"
                )
            self.last_end = valid.index.get_level_values("datetime").max()
        else:
            first = _ts(from_date)
            pos = self.calendar.searchsorted(first, side="left")
            self.last_end = self.calendar[pos - 1] if pos else first - pd.Timedelta(days=1)
        pos = self.calendar.searchsorted(self.last_end, side="right")
        #: first date to recompute (None: the data has nothing after ``last_end``)
        self.from_date: pd.Timestamp | None = (
            self.calendar[pos] if pos < len(self.calendar) else None
        )

    def _up_to_date(self) -> bool:
        return self.from_date is None or self.from_date > self.to_date

    def prepare_data(self, unprepared_dataset: Any = None) -> Any:
        """The dataset whose ``test`` segment is ``[from_date, to_date]``, with its data
        loaded from ``hist_ref`` trading days earlier."""
        if self._up_to_date():
            raise InvalidStateError(
                f"run {self.record.id}: {self.fname} is already up to date "
                f"(last {self.last_end:%Y-%m-%d}, to_date {self.to_date:%Y-%m-%d})"
            )
        assert self.from_date is not None
        template = self.dataset_template if unprepared_dataset is None else unprepared_dataset
        hist_ref = self.hist_ref
        if hist_ref is None:
            step_len = getattr(template, "step_len", None)
            hist_ref = int(step_len) - 1 if step_len else 0
        pos = int(self.calendar.searchsorted(self.from_date, side="left"))
        start_buffer = self.calendar[max(pos - hist_ref, 0)]
        return self.rmdl.get_dataset(
            start_time=start_buffer,
            end_time=self.to_date,
            segments={"test": (self.from_date, self.to_date)},
            unprepared_dataset=template,
        )

    def update(
        self, dataset: Any = None, write: bool = True, ret_new: bool = False
    ) -> pd.DataFrame | None:
        """Recompute ``[from_date, to_date]`` and save the combined artifact (only if it
        changed). Returns the combined data with ``ret_new``; None when already up to date."""
        if self._up_to_date():
            logger.info(
                "run %s: %s is already up to date (last %s, to_date %s)",
                self.record.id,
                self.fname,
                f"{self.last_end:%Y-%m-%d}",
                f"{self.to_date:%Y-%m-%d}",
            )
            return None
        if dataset is None:
            dataset = self.prepare_data()
        updated = self.get_update_data(dataset)
        if write:
            if updated.equals(self.old_data.sort_index()):
                logger.info("run %s: %s unchanged; not rewritten", self.record.id, self.fname)
            else:
                self.record.save_objects(**{self.fname: updated})
                logger.info(
                    "run %s: %s updated for %s..%s",
                    self.record.id,
                    self.fname,
                    f"{self.from_date:%Y-%m-%d}",
                    f"{self.to_date:%Y-%m-%d}",
                )
        return updated if ret_new else None

    @abc.abstractmethod
    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        """The old data with ``[from_date, to_date]`` recomputed on ``dataset``."""


class PredUpdater(DSBasedUpdater):
    """Extend ``pred.pkl`` (column ``score``) with the run's model."""

    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        new_pred = self.rmdl.get_model().predict(dataset)
        if isinstance(new_pred, pd.Series):
            new_pred = new_pred.to_frame("score")
        return _replace_range(self.old_data, new_pred, self.from_date, self.to_date)


class LabelUpdater(DSBasedUpdater):
    """Extend ``label.pkl`` (column ``LABEL0``); ``to_date`` defaults to the last date of the
    run's ``pred.pkl`` (else the data's). Rows whose label is not known yet stay NaN."""

    def __init__(self, record: Recorder, to_date: Any = None, **kwargs: Any) -> None:
        if to_date is None:
            try:
                pred = record.load_object("pred.pkl")
                last = pred.index.get_level_values("datetime").max()
                to_date = None if pd.isna(last) else last
            except LoadObjectError:
                pass  # no pred: up to the end of the data
        kwargs.setdefault("fname", "label.pkl")
        super().__init__(record, to_date=to_date, **kwargs)

    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        new_label = SignalRecord.generate_label(dataset)
        return _replace_range(self.old_data, new_label, self.from_date, self.to_date)
