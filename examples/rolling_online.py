"""Rolling online serving, simulated: Qlib's ``rolling_online_management`` story on the S&P 500.

A ``RollingStrategy`` of LightGBM (the task of ``examples/workflows/lightgbm_sp500.yaml``)
retrains every 20 trading days; ``OnlineManager.simulate`` walks the last year of data day by
day, puts each new model online and merges the predictions into signals, which are then
backtested (top-k / dropout, returns from the label).

    python examples/rolling_online.py                  # sequential TrainerR
    python examples/rolling_online.py --workers 2      # a task pool drained by 2 `tracker worker`
    python examples/rolling_online.py --synthetic      # without the data file

Then: ``tracker --uri STORE online EXPERIMENT``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRACKER_NO_CODE_STATE", "1")

import pandas as pd  # noqa: E402

import tracker  # noqa: E402
from tracker.online.backtest import backtest_topk_dropout  # noqa: E402
from tracker.online.model.ens import RollingGroup  # noqa: E402
from tracker.online.model.trainer import DelayTrainerRM, TrainerR  # noqa: E402
from tracker.online.workflow.config import load_config  # noqa: E402
from tracker.online.workflow.online.manager import OnlineManager  # noqa: E402
from tracker.online.workflow.online.strategy import RollingStrategy  # noqa: E402
from tracker.online.workflow.task.collect import RecorderCollector  # noqa: E402
from tracker.online.workflow.task.gen import RollingGen  # noqa: E402
from tracker.online.workflow.task.utils import trading_calendar  # noqa: E402

DATA = ROOT.parent / "shared/data/sp500_5yr_2013_2018.parquet"
CONFIG = ROOT / "examples/workflows/lightgbm_sp500.yaml"
SYNTHETIC = {"synthetic": {"n_instruments": 60, "n_days": 700, "seed": 0, "signal": 0.1}}
YEAR = 252


def rolling_task(data: Any, step: int) -> tuple[dict, pd.Timestamp]:
    """The LightGBM task with a first test window of ``step`` days a year before the end;
    train on everything up to a year before that, validate on that year."""
    os.environ["TRACKER_DATA"] = str(data) if not isinstance(data, dict) else "unused"
    task = load_config(CONFIG)["task"]
    task["dataset"]["kwargs"]["handler"]["kwargs"]["data"] = data
    task["record"] = [r for r in task["record"] if r["class"] == "SignalRecord"]  # backtest below
    cal = trading_calendar(task)
    start = len(cal) - YEAR
    task["dataset"]["kwargs"]["segments"] = {
        "train": (cal[0], cal[start - YEAR - 1]),
        "valid": (cal[start - YEAR], cal[start - 1]),
        "test": (cal[start], cal[start + step - 1]),
    }
    return task, cal[start]


def start_workers(uri: str, pool: str, experiment: str, n: int) -> list[subprocess.Popen]:
    """``n`` ``tracker worker`` processes training the pool's recorded tasks until stopped."""
    cmd = [
        sys.executable,
        "-c",
        "from tracker.cli.main import main; main()",
        "--uri",
        uri,
        "worker",
    ]
    cmd += ["--pool", pool, "--experiment", experiment, "--phase", "end", "--forever"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL) for _ in range(n)]


def run(data: Any, store: str, experiment: str, workers: int = 0, step: int = 20) -> dict:
    """Simulate the rolling strategy over the last year; the signals, backtest and timings."""
    manager_store = tracker.init(store)
    task, begin = rolling_task(data, step)
    strategy = RollingStrategy(experiment, task, RollingGen(step=step, rtype=RollingGen.ROLL_EX))
    procs: list[subprocess.Popen] = []
    if workers > 1:  # tasks recorded here, trained by the workers as they appear
        # One core per worker: K LightGBM processes with 2 threads each would fight over cores.
        task["model"].setdefault("kwargs", {})["num_threads"] = max(
            1, (os.cpu_count() or 1) // workers
        )
        strategy = RollingStrategy(
            experiment, task, RollingGen(step=step, rtype=RollingGen.ROLL_EX)
        )
        trainer: Any = DelayTrainerRM(experiment, experiment, skip_run_task=True)
        procs = start_workers(manager_store.uri, experiment, experiment, workers)
    else:
        trainer = TrainerR()
    manager = OnlineManager(strategy, trainer, begin_time=begin)
    t0 = time.perf_counter()
    try:
        signals = manager.simulate()
    finally:
        for p in procs:  # the workers we started: SIGTERM hands a task back uncounted
            p.terminate()
            p.wait()
    seconds = time.perf_counter() - t0
    label = RecorderCollector(
        experiment,
        process_list=[RollingGroup()],
        rec_key_func=strategy._rec_key,
        artifacts_path={"label": "label.pkl"},
    )()["label"]
    returns = next(iter(label.values())).iloc[:, 0]
    signals = signals[signals.index.get_level_values("datetime") >= begin]
    report, _ = backtest_topk_dropout(signals, returns.reindex(signals.index), topk=50, n_drop=5)
    n_models = len(tracker.R.list_recorders(experiment_name=experiment))
    manager.to_pickle(Path(store) / f"{experiment}.manager.pkl")
    return {"signals": signals, "report": report, "seconds": seconds, "models": n_models}


def summary(report: pd.DataFrame) -> pd.Series:
    excess = report["return"] - report["bench"] - report["cost"]
    return pd.Series(
        {
            "days": len(report),
            "strategy ann. return": report["return"].mean() * YEAR,
            "benchmark ann. return": report["bench"].mean() * YEAR,
            "excess ann. return (after cost)": excess.mean() * YEAR,
            "excess information ratio": excess.mean() / excess.std() * YEAR**0.5,
            "excess max drawdown": (excess.cumsum() - excess.cumsum().cummax()).min(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_path", nargs="?", default=None, help=f"default: {DATA}")
    parser.add_argument("--data", default=None, help="same as the positional path")
    parser.add_argument("--synthetic", action="store_true", help="a synthetic market instead")
    parser.add_argument("--workers", type=int, default=0, help="tracker worker processes")
    parser.add_argument("--store", default=None, help="store directory (default: a temp dir)")
    parser.add_argument("--experiment", default="rolling_online")
    parser.add_argument("--step", type=int, default=20)
    args = parser.parse_args()
    data: Any = SYNTHETIC if args.synthetic else Path(args.data or args.data_path or DATA)
    if not isinstance(data, dict) and not data.is_file():
        parser.error(f"no data file {data}; pass --data PATH or --synthetic")
    store = args.store or tempfile.mkdtemp(prefix="rolling_online_")
    out = run(data, store, args.experiment, args.workers, args.step)
    sig = out["signals"].index.get_level_values("datetime")
    print(f"{out['models']} models trained in {out['seconds']:.1f} s; signals {sig.min():%Y-%m-%d}"
          f" .. {sig.max():%Y-%m-%d} ({sig.nunique()} days)")  # fmt: skip
    print(summary(out["report"]).to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"\nstore: {store}\nmanager: {store}/{args.experiment}.manager.pkl")
    print(f"next: tracker --uri {store} online {args.experiment}")


if __name__ == "__main__":
    main()
