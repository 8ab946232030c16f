"""Wall time of the LightGBM workflow on the real S&P 500 file, and the share spent in tracking.

Runs ``task_train`` on ``examples/workflows/lightgbm_sp500.yaml`` (features, training, the
three records) into a fresh store, timing every call into the tracker (Recorder methods,
which ``R`` delegates to, plus run start and end) separately from the rest.

Run: python bench/bench_workflow.py [--data ../shared/data/sp500_5yr_2013_2018.parquet]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRACKER_NO_CODE_STATE", "1")

import tracker  # noqa: E402
from tracker.online.model.train import task_train  # noqa: E402
from tracker.online.workflow.config import load_config, validate_task  # noqa: E402
from tracker.recorder import Recorder  # noqa: E402

TRACKED = ("start_run", "end_run", "log_params", "log_metrics", "set_tags", "save_objects",
           "load_object", "list_artifacts", "list_metrics", "log_artifact", "flush")  # fmt: skip
spent = {"tracking": 0.0}
depth = [0]


def timed(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:  # nested tracker calls count once
                spent["tracking"] += time.perf_counter() - start

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(ROOT.parent / "shared/data/sp500_5yr_2013_2018.parquet")
    )
    parser.add_argument("--config", default=str(ROOT / "examples/workflows/lightgbm_sp500.yaml"))
    args = parser.parse_args()
    os.environ["TRACKER_DATA"] = args.data
    for name in TRACKED:
        setattr(Recorder, name, timed(getattr(Recorder, name)))
    config = load_config(args.config)
    validate_task(config["task"])
    with tempfile.TemporaryDirectory() as tmp:
        tracker.init(Path(tmp) / "store")
        start = time.perf_counter()
        rec = task_train(config["task"], "bench_workflow")
        wall = time.perf_counter() - start
        metrics = rec.list_metrics()
    share = spent["tracking"] / wall
    print(f"LightGBM workflow on {Path(args.data).name}: {wall:.1f} s wall")
    print(f"  in tracking calls: {spent['tracking'] * 1000:.0f} ms = {share:.2%} of the wall time")
    for key in ("IC", "Rank IC", "1day.excess_return_with_cost.annualized_return"):
        print(f"  {key}: {metrics[key]:.4f}")


if __name__ == "__main__":
    main()
