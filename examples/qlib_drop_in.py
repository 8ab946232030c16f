"""Real Qlib, tracked by tracker: Qlib's by-code workflow on five years of S&P 500 prices.

Qlib's own ``examples/workflow_by_code.py`` (Alpha158 features, LightGBM, SignalRecord,
SigAnaRecord, PortAnaRecord with Qlib's backtest), unchanged except for the one line that
matters here: ``qlib.init(exp_manager=…)`` names ``tracker.qlib.TrackerExpManager``, so every
run, param, metric and artifact goes to a tracker store and nothing to MLflow.

Needs pyqlib (``pip install pyqlib==0.9.7`` next to tracker). The prices are
``../shared/data/sp500_5yr_2013_2018.parquet`` beside this repository (its README there says
where it comes from); they are written into Qlib's provider format first, with
``tracker.qlib_data.write_qlib_data``.

    python examples/qlib_drop_in.py [--data FILE] [--store DIR]
    tracker --uri DIR ls qlib_drop_in        # then: tracker --uri DIR show <run id>

It prints the wall time and the share of it spent inside tracker's calls.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

DATA = ROOT.parent / "shared/data/sp500_5yr_2013_2018.parquet"
EXPERIMENT = "qlib_drop_in"
SEGMENTS = {
    "train": ("2013-02-08", "2015-12-31"),
    "valid": ("2016-01-01", "2016-12-31"),
    "test": ("2017-01-01", "2018-02-07"),
}


def task(universe: str) -> dict[str, Any]:
    """Qlib's LightGBM/Alpha158 benchmark task (workflow_config_lightgbm_Alpha158.yaml's
    model parameters) on the S&P 500 dates."""
    train_start, train_end = SEGMENTS["train"]
    return {
        "model": {
            "class": "LGBModel",
            "module_path": "qlib.contrib.model.gbdt",
            "kwargs": {
                "loss": "mse",
                "colsample_bytree": 0.8879,
                "learning_rate": 0.2,
                "subsample": 0.8789,
                "lambda_l1": 205.6999,
                "lambda_l2": 580.9768,
                "max_depth": 8,
                "num_leaves": 210,
                "num_threads": 2,
                "verbose": -1,
            },
        },
        "dataset": {
            "class": "DatasetH",
            "module_path": "qlib.data.dataset",
            "kwargs": {
                "handler": {
                    "class": "Alpha158",
                    "module_path": "qlib.contrib.data.handler",
                    "kwargs": {
                        "instruments": universe,
                        "start_time": train_start,
                        "end_time": SEGMENTS["test"][1],
                        "fit_start_time": train_start,
                        "fit_end_time": train_end,
                    },
                },
                "segments": SEGMENTS,
            },
        },
    }


def port_analysis_config(benchmark: Any) -> dict[str, Any]:
    """workflow_by_code's backtest: top-50 dropout-5 on the predictions, daily, with costs.
    The data has no index, so the benchmark is the universe's equal-weight daily change."""
    return {
        "executor": {
            "class": "SimulatorExecutor",
            "module_path": "qlib.backtest.executor",
            "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True},
        },
        "strategy": {
            "class": "TopkDropoutStrategy",
            "module_path": "qlib.contrib.strategy.signal_strategy",
            "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5},
        },
        "backtest": {
            "start_time": "2017-01-03",
            "end_time": "2018-02-06",
            "account": 100_000_000,
            "benchmark": benchmark,
            "exchange_kwargs": {
                "freq": "day",
                "limit_threshold": None,
                "deal_price": "close",
                "open_cost": 0.0005,
                "close_cost": 0.0015,
                "min_cost": 5,
            },
        },
    }


class TrackingClock:
    """Wall time spent inside tracker's Qlib classes; a call made from inside another one
    counts once. Logging that tracker's background writer does meanwhile is not counted:
    it overlaps the work."""

    METHODS = {
        "TrackerExpManager": "start_exp end_exp create_exp _get_exp _get_or_create_exp "
        "search_records delete_exp list_experiments",
        "TrackerExperiment": "start end create_recorder _get_recorder list_recorders "
        "search_records delete_recorder",
        "TrackerRecorder": "start_run end_run log_params log_metrics set_tags delete_tags "
        "save_objects load_object log_artifact list_artifacts download_artifact "
        "list_metrics list_params list_tags get_local_dir get_artifact_uri",
    }

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._depth = 0

    def install(self) -> None:
        import tracker.qlib

        for cls_name, names in self.METHODS.items():
            cls = getattr(tracker.qlib, cls_name)
            for name in names.split():
                setattr(cls, name, self._timed(getattr(cls, name)))

    def _timed(self, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - start
                    self.calls += 1

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help=f"default: {DATA}")
    parser.add_argument("--store", type=Path, default=Path("runs/qlib_drop_in"))
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(
            f"no price file at {args.data}; pass --data PATH to "
            "sp500_5yr_2013_2018.parquet (see shared/data/README.md)"
        )

    t0 = time.perf_counter()
    import qlib
    from qlib.data import D
    from qlib.utils import flatten_dict, init_instance_by_config
    from qlib.workflow import R
    from qlib.workflow.record_temp import PortAnaRecord, SigAnaRecord, SignalRecord

    from tracker.qlib_data import write_qlib_data

    prices = pd.read_parquet(args.data)
    provider = write_qlib_data(prices, args.store / "qlib_data", overwrite=True)
    t_data = time.perf_counter()

    store_uri = f"sqlite:///{(args.store / 'tracker.db').resolve()}"
    qlib.init(
        provider_uri=str(provider),
        region="us",
        logging_level=logging.WARNING,
        exp_manager={
            "class": "TrackerExpManager",
            "module_path": "tracker.qlib",
            "kwargs": {"uri": store_uri, "default_exp_name": "Experiment"},
        },
    )
    clock = TrackingClock()
    clock.install()

    # From here on, Qlib's workflow_by_code as it is.
    config = task("all")
    model = init_instance_by_config(config["model"])
    dataset = init_instance_by_config(config["dataset"])
    t_features = time.perf_counter()
    with R.start(experiment_name=EXPERIMENT):
        R.log_params(**flatten_dict(config))
        model.fit(dataset)
        R.save_objects(**{"params.pkl": model})
        recorder = R.get_recorder()
        SignalRecord(model, dataset, recorder).generate()
        SigAnaRecord(recorder).generate()
        PortAnaRecord(recorder, port_analysis_config(D.instruments("all")), "day").generate()
    t_end = time.perf_counter()
    wall = t_end - t0

    metrics = R.get_recorder(recorder_id=recorder.id, experiment_name=EXPERIMENT).list_metrics()
    shown = ["IC", "ICIR", "Rank IC", "1day.excess_return_with_cost.annualized_return"]
    shown += ["1day.excess_return_with_cost.information_ratio"]
    shown += ["1day.excess_return_with_cost.max_drawdown"]
    print(f"\nrun        {recorder.id} in experiment {EXPERIMENT!r}")
    for key in shown:
        print(f"  {key:48s} {metrics[key]: .4f}")
    print(
        f"wall time  {wall:.1f} s (provider files {t_data - t0:.1f} s, Alpha158 features "
        f"{t_features - t_data:.1f} s, training + records + backtest {t_end - t_features:.1f} s)"
    )
    print(
        f"tracking   {clock.seconds:.2f} s in {clock.calls} calls = "
        f"{100 * clock.seconds / wall:.2f}% of the wall time"
    )
    print(f"\n  tracker --uri {args.store} ls {EXPERIMENT}")
    print(f"  tracker --uri {args.store} show {recorder.id}")


if __name__ == "__main__":
    main()
