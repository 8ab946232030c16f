"""Qlib's record templates (``qlib.workflow.record_temp``) on a :class:`tracker.Recorder`:
same class names, constructor arguments, artifact names and metric names.

* :class:`SignalRecord` - ``pred.pkl`` (column ``score``) and ``label.pkl`` (the test
  segment's label).
* :class:`SigAnaRecord` - ``sig_analysis/ic.pkl``, ``ric.pkl``; ``IC``, ``ICIR``,
  ``Rank IC``, ``Rank ICIR`` (plus Qlib's long-short metrics with ``ana_long_short``).
* :class:`PortAnaRecord` - a top-k / dropout backtest: ``portfolio_analysis/`` holds
  ``report_normal_1day.pkl``, ``positions_normal_1day.pkl`` and ``port_analysis_1day.pkl``;
  metrics ``1day.excess_return_{without,with}_cost.{mean,std,annualized_return,
  information_ratio,max_drawdown}``.

PortAnaRecord's realised returns come from ``label.pkl``: Qlib's label
``close[t+2]/close[t+1] - 1`` is exactly the return of a book formed on day ``t``'s signal
and traded at the close of ``t+1`` (see :mod:`tracker.online.backtest`), so no price data is needed
and nothing is looked ahead. This requires ``label.pkl`` to hold the *raw* (unnormalised)
return. Qlib's indicator analysis (``ffr``, ``pa``, ``pos``) is not reproduced.

Differences from Qlib, deliberately: a parent record's artifacts are found through
``depend_cls.get_path`` (no temporary ``__class__`` swap), and ``check`` reads the
recursive artifact list once.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tracker.errors import ArtifactNotFound, InvalidInputError, LoadObjectError
from tracker.online.backtest import backtest_topk_dropout, from_qlib_config
from tracker.online.evaluate import calc_ic, calc_long_short_return, risk_analysis, safe_div

__all__ = ["ACRecordTemp", "PortAnaRecord", "RecordTemp", "SigAnaRecord", "SignalRecord"]

logger = logging.getLogger(__name__)


class RecordTemp(abc.ABC):
    """A step that reads and writes artifacts of one recorder.

    ``artifact_path`` is the subfolder of the record's artifacts; ``depend_cls`` the record
    whose artifacts it needs. Parent records are instantiated as ``depend_cls(recorder=…)``
    for ``check``, so their other constructor arguments must have defaults (Qlib's do).
    """

    artifact_path: str | None = None
    depend_cls: type[RecordTemp] | None = None

    def __init__(self, recorder: Any = None) -> None:
        self._recorder = recorder

    @classmethod
    def get_path(cls, path: str | None = None) -> str:
        """``artifact_path/path`` (either part may be empty)."""
        return "/".join(p for p in (cls.artifact_path, path) if p)

    def __str__(self) -> str:
        return f"{type(self).__name__}(recorder={self._recorder!r})"

    @property
    def recorder(self) -> Any:
        if self._recorder is None:
            raise InvalidInputError(f"{type(self).__name__} has no recorder; pass recorder=… to it")
        return self._recorder

    @recorder.setter
    def recorder(self, recorder: Any) -> None:
        self._recorder = recorder

    def save(self, **objs: Any) -> None:
        """Store ``objs`` (name -> object) under this record's ``artifact_path``."""
        self.recorder.save_objects(artifact_path=self.get_path() or None, **objs)

    def load(self, name: str, parents: bool = True) -> Any:
        """The artifact ``name`` of this record, else (with ``parents``) of its ancestors,
        e.g. ``SigAnaRecord.load("pred.pkl")`` finds SignalRecord's root ``pred.pkl``."""
        tried: list[str] = []
        cls: type[RecordTemp] | None = type(self)
        error: LoadObjectError | None = None
        while cls is not None:
            path = cls.get_path(name)
            try:
                return self.recorder.load_object(path)
            except LoadObjectError as e:
                tried.append(path)
                error = error or e
            cls = cls.depend_cls if parents else None
        raise LoadObjectError(f"{type(self).__name__}: cannot load {name!r} (tried {tried})") from (
            error
        )

    def list(self) -> list[str]:
        """Names (relative to ``artifact_path``) of the artifacts this record writes."""
        return []

    def _missing(self, existing: set[str], include_self: bool, parents: bool) -> list[str]:
        missing = []
        if include_self:
            missing = [self.get_path(n) for n in self.list() if self.get_path(n) not in existing]
        if parents and self.depend_cls is not None:
            parent = self.depend_cls(recorder=self._recorder)
            missing += parent._missing(existing, include_self=True, parents=True)
        return missing

    def check(self, include_self: bool = False, parents: bool = True) -> None:
        """Raise ArtifactNotFound (a FileNotFoundError) naming every missing artifact: this
        record's own with ``include_self``, and (with ``parents``) those of the records it
        depends on."""
        if not include_self and (not parents or self.depend_cls is None):
            return
        existing = set(self.recorder.list_artifacts(recursive=True))
        missing = self._missing(existing, include_self, parents)
        if missing:
            run = getattr(self.recorder, "id", None)
            raise ArtifactNotFound(
                f"{type(self).__name__}: run {run} lacks the artifacts {missing}"
                + ("" if include_self else "; generate the records it depends on first")
            )

    @abc.abstractmethod
    def generate(self, **kwargs: Any) -> Any:
        """Compute and save this record's artifacts and metrics."""


class ACRecordTemp(RecordTemp):
    """A record that only analyses what earlier records saved (Qlib's auto-checking
    template): it skips when its inputs are missing, or when its results exist and
    ``skip_existing`` is set."""

    def __init__(self, recorder: Any = None, skip_existing: bool = False) -> None:
        super().__init__(recorder)
        self.skip_existing = skip_existing

    def generate(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        if self.skip_existing:
            try:
                self.check(include_self=True, parents=False)
            except FileNotFoundError:
                pass
            else:
                logger.info("%s: results exist, generation skipped", type(self).__name__)
                return None
        try:
            self.check()
        except FileNotFoundError as e:
            # Qlib warns and carries on, so one missing input does not fail a whole workflow.
            logger.warning("%s; generation skipped", e)
            return None
        artifacts = self._generate(*args, **kwargs)
        if isinstance(artifacts, dict):
            self.save(**artifacts)
        return artifacts

    @abc.abstractmethod
    def _generate(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Compute the results; a returned dict (name -> object) is saved."""


class SignalRecord(RecordTemp):
    """Predict the ``test`` segment: ``pred.pkl`` (DataFrame, column ``score``) and
    ``label.pkl`` (DataFrame, the test segment's ``LABEL0``). Re-running overwrites both."""

    def __init__(self, model: Any = None, dataset: Any = None, recorder: Any = None) -> None:
        super().__init__(recorder=recorder)
        self.model = model
        self.dataset = dataset

    @staticmethod
    def generate_label(dataset: Any) -> pd.DataFrame | None:
        """The test segment's label as a DataFrame (None if the dataset has none)."""
        label = dataset.prepare("test", col_set="label")
        if isinstance(label, pd.Series):
            label = label.to_frame()
        return label

    def generate(self, **kwargs: Any) -> None:
        if self.model is None or self.dataset is None:
            raise InvalidInputError(
                "SignalRecord needs model= and dataset= to generate predictions"
            )
        pred = self.model.predict(self.dataset)
        if isinstance(pred, pd.Series):
            pred = pred.to_frame("score")
        label = self.generate_label(self.dataset)
        self.save(**{"pred.pkl": pred, "label.pkl": label})
        logger.info("SignalRecord: %d predictions saved to run %s", len(pred), self.recorder.id)

    def list(self) -> list[str]:
        return ["pred.pkl", "label.pkl"]


class SigAnaRecord(ACRecordTemp):
    """Signal analysis: daily IC and Rank IC of ``pred.pkl`` against ``label.pkl``.

    ``ICIR`` is ``mean / std`` of the daily IC, not annualised. With ``ana_long_short`` it
    adds Qlib's long-short metrics annualised by ``ann_scaler`` (Qlib's default 252, while
    PortAnaRecord uses 238: Qlib's quirk 15, kept). "Long-Avg" is, as in Qlib, the plain
    mean label of the day (quirk 13)."""

    artifact_path = "sig_analysis"
    depend_cls = SignalRecord

    def __init__(
        self,
        recorder: Any = None,
        ana_long_short: bool = False,
        ann_scaler: int = 252,
        label_col: int = 0,
        skip_existing: bool = False,
    ) -> None:
        super().__init__(recorder=recorder, skip_existing=skip_existing)
        self.ana_long_short = ana_long_short
        self.ann_scaler = ann_scaler
        self.label_col = label_col

    def _generate(self, label: pd.DataFrame | None = None, **kwargs: Any) -> dict[str, Any] | None:
        pred = self.load("pred.pkl")
        if label is None:
            label = self.load("label.pkl")
        if not isinstance(label, pd.DataFrame) or label.empty:
            logger.warning("SigAnaRecord: the label is empty; generation skipped")
            return None
        score, lab = pred.iloc[:, 0], label.iloc[:, self.label_col]
        ic, ric = calc_ic(score, lab)
        metrics = {
            "IC": float(ic.mean()),
            "ICIR": safe_div(ic.mean(), ic.std()),
            "Rank IC": float(ric.mean()),
            "Rank ICIR": safe_div(ric.mean(), ric.std()),
        }
        objects: dict[str, Any] = {"ic.pkl": ic, "ric.pkl": ric}
        if self.ana_long_short:
            long_short_r, long_avg_r = calc_long_short_return(score, lab)
            root = self.ann_scaler**0.5
            metrics.update(
                {
                    "Long-Short Ann Return": float(long_short_r.mean()) * self.ann_scaler,
                    "Long-Short Ann Sharpe": safe_div(long_short_r.mean(), long_short_r.std())
                    * root,
                    "Long-Avg Ann Return": float(long_avg_r.mean()) * self.ann_scaler,
                    "Long-Avg Ann Sharpe": safe_div(long_avg_r.mean(), long_avg_r.std()) * root,
                }
            )
            objects.update({"long_short_r.pkl": long_short_r, "long_avg_r.pkl": long_avg_r})
        self.recorder.log_metrics(**metrics)
        logger.info("SigAnaRecord: %s", metrics)
        return objects

    def list(self) -> list[str]:
        names = ["ic.pkl", "ric.pkl"]
        if self.ana_long_short:
            names += ["long_short_r.pkl", "long_avg_r.pkl"]
        return names


class PortAnaRecord(ACRecordTemp):
    """Portfolio analysis: a daily top-k / dropout long-only backtest of ``pred.pkl``
    (:func:`tracker.online.backtest.backtest_topk_dropout`) and Qlib's risk metrics of its excess
    return over the benchmark, without and with costs, annualised by ``ann_scaler``
    (Qlib: 238; use 252 for US markets).

    ``config`` may be Qlib's dict (``strategy.kwargs.{topk,n_drop,risk_degree}``,
    ``backtest.{account,benchmark,start_time,end_time}``,
    ``backtest.exchange_kwargs.{open_cost,close_cost,min_cost}``); its values override the
    keyword arguments. ``benchmark`` is a Series of daily returns indexed by date and aligned
    like the label (None: the equal-weighted universe). ``returns`` overrides the realised
    returns (default: ``label.pkl``). ``model``/``dataset`` passed by the trainer are ignored.
    """

    artifact_path = "portfolio_analysis"
    depend_cls = SignalRecord
    FREQ = "1day"

    def __init__(
        self,
        recorder: Any = None,
        config: Mapping[str, Any] | None = None,
        risk_analysis_freq: str | list[str] | None = None,
        skip_existing: bool = False,
        topk: int = 50,
        n_drop: int = 5,
        open_cost: float = 0.0005,
        close_cost: float = 0.0015,
        min_cost: float = 5.0,
        risk_degree: float = 0.95,
        account: float = 1e8,
        ann_scaler: int = 238,
        benchmark: pd.Series | None = None,
        returns: pd.Series | None = None,
        start_time: Any = None,
        end_time: Any = None,
        show_progress: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(recorder=recorder, skip_existing=skip_existing)
        settings: dict[str, Any] = {
            "topk": topk,
            "n_drop": n_drop,
            "open_cost": open_cost,
            "close_cost": close_cost,
            "min_cost": min_cost,
            "risk_degree": risk_degree,
            "account": account,
            "benchmark": benchmark,
            "start_time": start_time,
            "end_time": end_time,
        }
        settings.update(from_qlib_config(config or {}))
        if settings["benchmark"] is not None and not isinstance(settings["benchmark"], pd.Series):
            raise InvalidInputError(
                f"PortAnaRecord: benchmark must be a Series of daily returns or None (the "
                f"equal-weighted universe), not {settings['benchmark']!r}"
            )
        freqs = [risk_analysis_freq] if isinstance(risk_analysis_freq, str) else risk_analysis_freq
        for freq in freqs or []:
            if freq not in ("day", "1day", "1d"):
                raise InvalidInputError(
                    f"PortAnaRecord: only daily analysis is supported, not {freq!r}"
                )
        self.start_time = settings.pop("start_time")
        self.end_time = settings.pop("end_time")
        self.backtest_kwargs = settings
        self.ann_scaler = ann_scaler
        self.returns = returns
        self.show_progress = show_progress

    def _generate(self, **kwargs: Any) -> dict[str, Any] | None:
        pred = self.load("pred.pkl")
        if isinstance(pred, pd.DataFrame):
            pred = pred.iloc[:, 0]
        returns = self.returns
        if returns is None:
            label = self.load("label.pkl")
            if not isinstance(label, pd.DataFrame) or label.empty:
                logger.warning("PortAnaRecord: label.pkl is empty; no realised returns, skipped")
                return None
            returns = label.iloc[:, 0]
        dates = pred.index.get_level_values(0)
        keep = pd.Series(True, index=pred.index)
        if self.start_time is not None:
            keep &= dates >= pd.Timestamp(self.start_time)
        if self.end_time is not None:
            keep &= dates <= pd.Timestamp(self.end_time)
        report, positions = backtest_topk_dropout(
            pred[keep.to_numpy()],
            returns,
            show_progress=self.show_progress,
            **self.backtest_kwargs,
        )
        excess = report["return"] - report["bench"]
        analysis = pd.concat(
            {
                "excess_return_without_cost": risk_analysis(excess, N=self.ann_scaler),
                "excess_return_with_cost": risk_analysis(
                    excess - report["cost"], N=self.ann_scaler
                ),
            }
        )
        metrics = {
            f"{self.FREQ}.{name}.{metric}": float(v)
            for (name, metric), v in analysis["risk"].items()
        }
        self.recorder.log_metrics(**metrics)
        logger.info("PortAnaRecord: %s", metrics)
        return dict(zip(self.list(), (report, positions, analysis), strict=True))

    def list(self) -> list[str]:
        return [
            f"{n}_{self.FREQ}.pkl" for n in ("report_normal", "positions_normal", "port_analysis")
        ]
