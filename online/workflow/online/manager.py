"""``OnlineManager`` (Qlib's ``qlib/workflow/online/manager.py``): runs online strategies day
after day, live or simulated, and merges their models' predictions into signals.

The four modes of Qlib's table all work:

=============  =========================================  ======================================
               Trainer (``TrainerR``/``TrainerRM``)        DelayTrainer (``DelayTrainerR``/``RM``)
=============  =========================================  ======================================
online         ``routine()`` each day: train, put online,  same; the delayed training runs in the
               update predictions, signals                 same routine (``end_train``)
simulation     ``simulate(end)``: ``routine`` per trading  only task records per day; all models
               day (no prediction updates)                 train at the end, in parallel, then
                                                           the signals are replayed day by day
=============  =========================================  ======================================

Simulation + DelayTrainer is only right when models do not depend on each other in time.

Fixes over Qlib (bug 11): appended signals never duplicate the boundary date; the global log
level is left alone; ``model_kwargs`` mean ``prepare_online_models`` kwargs everywhere. Signals
never reach past the manager's current time, so a model cannot leak predictions for days the
simulation has not reached (which makes delayed and immediate training give the same signals).
The manager pickles without open connections (recorders are kept as ids), so a daily job can
``OnlineManager.load`` it, call ``routine()`` and ``to_pickle`` it again.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tracker import R, Recorder
from tracker.errors import InvalidInputError
from tracker.online.model.ens import AverageEnsemble
from tracker.online.model.trainer import Trainer, TrainerR
from tracker.online.workflow.online.strategy import OnlineStrategy
from tracker.online.workflow.task.collect import MergeCollector
from tracker.online.workflow.task.utils import trading_calendar

__all__ = ["OnlineManager"]

log = logging.getLogger(__name__)

Signals = pd.Series | pd.DataFrame


def _has_data(d: Any) -> bool:
    """Whether a collected (nested) dict holds any prediction."""
    if isinstance(d, Mapping):
        return any(_has_data(v) for v in d.values())
    return d is not None


def _dates(signals: Signals) -> pd.Index:
    return signals.index.get_level_values("datetime")


class OnlineManager:
    """Runs ``strategies`` with ``trainer`` (default :class:`TrainerR`).

    Args:
        strategies: an :class:`OnlineStrategy` or a list of them.
        trainer: trains the strategies' tasks into their experiments.
        begin_time: the first day (default: the last day of the strategies' data).
        freq: only ``"day"``.
    """

    STATUS_ONLINE = "online"
    STATUS_SIMULATING = "simulating"

    def __init__(
        self,
        strategies: OnlineStrategy | Sequence[OnlineStrategy],
        trainer: Trainer | None = None,
        begin_time: Any = None,
        freq: str = "day",
    ) -> None:
        self.strategies: list[OnlineStrategy] = (
            [strategies] if isinstance(strategies, OnlineStrategy) else list(strategies)
        )
        self._check_freq(freq)
        self.freq = freq
        self.trainer = trainer if trainer is not None else TrainerR()
        self.begin_time = self._last_day() if begin_time is None else pd.Timestamp(begin_time)
        self.cur_time = self.begin_time
        # {time: {strategy name: [online recorder ids]}}: ids, so that the manager pickles.
        self.history: dict[pd.Timestamp, dict[str, list[str]]] = {}
        self.signals: Signals | None = None
        self.status = self.STATUS_ONLINE
        self._pending: dict[str, list[str]] = {}  # delayed models not trained yet, by strategy

    def __repr__(self) -> str:
        names = [s.name_id for s in self.strategies]
        return f"OnlineManager({names}, {type(self.trainer).__name__}, cur_time={self.cur_time})"

    # ---------------------------------------------------------------------------- calendar

    @staticmethod
    def _check_freq(freq: str) -> None:
        if freq != "day":
            raise InvalidInputError(f"OnlineManager: freq {freq!r} is not supported; use 'day'")

    def calendar(self) -> pd.DatetimeIndex:
        """The trading days of the first strategy's data (its task template's handler);
        plain business days up to today when the strategies carry no data."""
        for strategy in self.strategies:
            templates = getattr(strategy, "task_template", None)
            if templates:
                return trading_calendar(templates[0])
        return pd.bdate_range("1990-01-01", pd.Timestamp.today().normalize())

    def _last_day(self) -> pd.Timestamp:
        return self.calendar()[-1]

    # ------------------------------------------------------------------------------ steps

    def _postpone_action(self) -> bool:
        return self.status == self.STATUS_SIMULATING and self.trainer.is_delay()

    def _record(self, strategy: OnlineStrategy, models: list, online: list) -> None:
        self.history.setdefault(self.cur_time, {})[strategy.name_id] = [r.id for r in online]
        if self._postpone_action() and models:
            self._pending.setdefault(strategy.name_id, []).extend(r.id for r in models)

    def _train(
        self, strategy: OnlineStrategy, tasks: list[dict], model_kwargs: Mapping[str, Any]
    ) -> list[Recorder]:
        models = self.trainer.train(tasks, experiment_name=strategy.name_id)
        online = strategy.prepare_online_models(models, **model_kwargs)
        self._record(strategy, models, online)
        return models

    def first_train(
        self,
        strategies: Sequence[OnlineStrategy] | None = None,
        model_kwargs: Mapping[str, Any] = {},  # noqa: B006 - Qlib's signature; never mutated
    ) -> None:
        """Train each strategy's first tasks and put them online (all of them, as Qlib)."""
        trained = [
            (s, self._train(s, s.first_tasks(), model_kwargs))
            for s in (self.strategies if strategies is None else strategies)
        ]
        if not self._postpone_action():
            for strategy, models in trained:
                self.trainer.end_train(models, experiment_name=strategy.name_id)

    def routine(
        self,
        cur_time: Any = None,
        task_kwargs: Mapping[str, Any] = {},  # noqa: B006
        model_kwargs: Mapping[str, Any] = {},  # noqa: B006
        signal_kwargs: Mapping[str, Any] = {},  # noqa: B006
    ) -> None:
        """One day: each strategy's new tasks are trained and put online; online, the online
        models' predictions are extended to the data's last day; then the signals."""
        self.cur_time = self._last_day() if cur_time is None else pd.Timestamp(cur_time)
        trained = []
        for strategy in self.strategies:
            tasks = strategy.prepare_tasks(self.cur_time, **task_kwargs)
            trained.append((strategy, self._train(strategy, tasks, model_kwargs)))
            if self.status == self.STATUS_ONLINE:  # last: the online set may just have changed
                strategy.tool.update_online_pred()
        if not self._postpone_action():
            for strategy, models in trained:
                self.trainer.end_train(models, experiment_name=strategy.name_id)
            self.prepare_signals(**signal_kwargs)

    def simulate(
        self,
        end_time: Any = None,
        frequency: str = "day",
        task_kwargs: Mapping[str, Any] = {},  # noqa: B006
        model_kwargs: Mapping[str, Any] = {},  # noqa: B006
        signal_kwargs: Mapping[str, Any] = {},  # noqa: B006
    ) -> Signals | None:
        """``first_train``, then ``routine`` on every trading day from the current time to
        ``end_time`` (default: the data's last day); with a delay trainer the training runs
        at the end (:meth:`delay_prepare`). Returns the signals."""
        self._check_freq(frequency)
        cal = self.calendar()
        end = cal[-1] if end_time is None else pd.Timestamp(end_time)
        days = cal[(cal >= self.cur_time) & (cal <= end)]
        if days.empty:
            raise InvalidInputError(
                f"simulate: no trading day between {self.cur_time:%Y-%m-%d} and {end:%Y-%m-%d}"
            )
        self.status = self.STATUS_SIMULATING
        try:
            self.first_train(model_kwargs=model_kwargs)
            for day in days:
                self.routine(day, task_kwargs, model_kwargs, signal_kwargs)
            if self._postpone_action():
                self.delay_prepare(model_kwargs, signal_kwargs)
        finally:
            self.status = self.STATUS_ONLINE
        return self.get_signals()

    def delay_prepare(
        self,
        model_kwargs: Mapping[str, Any] = {},  # noqa: B006
        signal_kwargs: Mapping[str, Any] = {},  # noqa: B006
    ) -> None:
        """Train every delayed model at once (in parallel if the trainer has workers), then
        replay the signals at each recorded time, as if they had been trained on the way."""
        for strategy in self.strategies:
            ids = self._pending.pop(strategy.name_id, [])
            if ids:
                models = self._resolve(strategy.name_id, ids)
                self.trainer.end_train(models, experiment_name=strategy.name_id)
        latest: dict[str, list[str]] = {}
        for when in sorted(self.history):
            self.cur_time = when
            latest.update(self.history[when])
            self.prepare_signals(**signal_kwargs)
        # The routines tagged the online sets already; re-apply the final one with the same
        # model_kwargs as routine (Qlib passed them to end_train here instead).
        for strategy in self.strategies:
            if latest.get(strategy.name_id):
                models = self._resolve(strategy.name_id, latest[strategy.name_id])
                strategy.prepare_online_models(models, **model_kwargs)

    @staticmethod
    def _resolve(name: str, ids: list[str]) -> list[Recorder]:
        exp = R.get_exp(experiment_name=name, create=False)
        return [exp.get_recorder(rec_id, create=False) for rec_id in ids]

    # ----------------------------------------------------------------------------- signals

    def get_collector(self, **kwargs: Any) -> MergeCollector:
        """All strategies' collectors: ``{(name_id, artifact): {group key: data}}``."""
        collectors = {s.name_id: s.get_collector(**kwargs) for s in self.strategies}
        return MergeCollector(collectors, process_list=[])

    def add_strategy(self, strategies: OnlineStrategy | Sequence[OnlineStrategy]) -> None:
        """Train the new strategies' first tasks and run them from now on."""
        new = [strategies] if isinstance(strategies, OnlineStrategy) else list(strategies)
        self.first_train(new)
        self.strategies.extend(new)

    def prepare_signals(
        self, prepare_func: Callable[[dict], Signals] | None = None, over_write: bool = False
    ) -> Signals | None:
        """Merge the strategies' predictions (default :class:`AverageEnsemble`) up to the
        current time. Without ``over_write`` the signals already made are kept and only later
        dates are appended (the boundary date once). Returns the new part."""
        collected = self.get_collector()()
        if not _has_data(collected):
            log.warning("OnlineManager: no prediction to make signals from at %s", self.cur_time)
            return None
        signals = (prepare_func or AverageEnsemble())(collected)
        signals = signals[_dates(signals) <= self.cur_time]
        if self.signals is not None and len(self.signals) and not over_write:
            old_max = _dates(self.signals).max()
            new = signals[_dates(signals) > old_max]  # Qlib kept old_max twice
            self.signals = pd.concat([self.signals, new])
            return new
        self.signals = signals
        return signals

    def get_signals(self) -> Signals | None:
        """The signals made so far (indexed ``(datetime, instrument)``)."""
        return self.signals

    # ------------------------------------------------------------------------ persistence

    def to_pickle(self, path: str | Path) -> None:
        """Save the manager (strategies, trainer, history, signals) to ``path``."""
        with open(path, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: str | Path) -> OnlineManager:
        """A manager saved with :meth:`to_pickle` (the store is ``R``'s, as when saved)."""
        with open(path, "rb") as f:
            obj = pickle.load(f)
        if not isinstance(obj, cls):
            raise InvalidInputError(f"{path} holds a {type(obj).__name__}, not an OnlineManager")
        return obj
