"""Qlib task configs for the synthetic market of ``conftest.py``: Qlib's own classes
(Alpha158, DatasetH, LGBModel, the record templates, the backtest), kept small so that a
training takes seconds on one thread."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

from tests.qlib.market import BENCH, DAYS, MARKET

END = f"{DAYS[-1]:%Y-%m-%d}"
SEGMENTS = {
    "train": ("2020-01-01", "2020-06-30"),
    "valid": ("2020-07-01", "2020-08-31"),
    "test": ("2020-09-01", END),
}

_LGB = {
    "class": "LGBModel",
    "module_path": "qlib.contrib.model.gbdt",
    "kwargs": {
        "loss": "mse",
        "num_boost_round": 30,
        "early_stopping_rounds": 10,
        "num_leaves": 16,
        "learning_rate": 0.1,
        "num_threads": 1,
        "seed": 1,
        "verbose": -1,
    },
}


def lgb_task(segments: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """Qlib's LightGBM/Alpha158 task (the benchmark YAML's shape) on the synthetic market,
    recording the prediction and its IC."""
    segments = copy.deepcopy(segments or SEGMENTS)
    train_start, train_end = segments["train"]
    return {
        "model": copy.deepcopy(_LGB),
        "dataset": {
            "class": "DatasetH",
            "module_path": "qlib.data.dataset",
            "kwargs": {
                "handler": {
                    "class": "Alpha158",
                    "module_path": "qlib.contrib.data.handler",
                    "kwargs": {
                        "instruments": MARKET,
                        "start_time": train_start,
                        "end_time": segments["test"][1],
                        "fit_start_time": train_start,
                        "fit_end_time": train_end,
                    },
                },
                "segments": segments,
            },
        },
        "record": [
            {"class": "SignalRecord", "module_path": "qlib.workflow.record_temp"},
            {"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp"},
        ],
    }


def port_analysis_config() -> dict[str, Any]:
    """PortAnaRecord's config as in Qlib's workflow_by_code (top-k dropout, daily executor),
    with the synthetic market's benchmark; ``<PRED>`` is filled by PortAnaRecord."""
    return {
        "executor": {
            "class": "SimulatorExecutor",
            "module_path": "qlib.backtest.executor",
            "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True},
        },
        "strategy": {
            "class": "TopkDropoutStrategy",
            "module_path": "qlib.contrib.strategy.signal_strategy",
            "kwargs": {"signal": "<PRED>", "topk": 10, "n_drop": 2},
        },
        "backtest": {
            "start_time": SEGMENTS["test"][0],
            "end_time": f"{DAYS[-2]:%Y-%m-%d}",  # the backtest steps to the next day
            "account": 10_000_000,
            "benchmark": BENCH,
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


def tracker_cli(uri: str, *args: str) -> Any:
    """``tracker --uri URI ARGS --json`` in a subprocess of this interpreter; the parsed JSON.

    The command runs ``tracker.cli.main:main``, the ``tracker`` console script's entry point, so it
    works with the checkout on PYTHONPATH as well as installed."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tracker.cli.main import main; main()",
            "--uri",
            uri,
            *args,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
