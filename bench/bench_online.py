"""Wall time of the rolling-online simulation (examples/rolling_online.py) with the sequential
trainer versus K worker processes, and the tracker's share of the sequential run's time.

Run: python bench/bench_online.py [--data ../shared/data/sp500_5yr_2013_2018.parquet] [-k 2]

The tracker's share counts calls into Recorder methods made in this process (the sequential run
trains here, so it is complete there; the K-worker run trains in the workers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("TRACKER_NO_CODE_STATE", "1")

from bench_workflow import TRACKED, spent, timed  # noqa: E402
from rolling_online import DATA, SYNTHETIC, run  # noqa: E402

from tracker.recorder import Recorder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("-k", "--workers", type=int, default=2)
    args = parser.parse_args()
    data = SYNTHETIC if args.synthetic else Path(args.data)
    for name in TRACKED:
        setattr(Recorder, name, timed(getattr(Recorder, name)))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        seq = run(data, f"{tmp}/seq", "bench_seq", workers=0)
        seq_wall = time.perf_counter() - t0
        seq_tracking = spent["tracking"]
        t0 = time.perf_counter()
        par = run(data, f"{tmp}/par", "bench_par", workers=args.workers)
        par_wall = time.perf_counter() - t0
    same = seq["signals"].round(10).equals(par["signals"].round(10))
    print(f"models: {seq['models']} (sequential), {par['models']} ({args.workers} workers)")
    print(
        f"simulation, sequential TrainerR: {seq['seconds']:.1f} s",
        f"(with backtest {seq_wall:.1f} s)",
    )
    print(
        f"simulation, {args.workers} tracker workers: {par['seconds']:.1f} s",
        f"(with backtest {par_wall:.1f} s)",
    )
    print(f"speed-up: {seq['seconds'] / par['seconds']:.2f}x; identical signals: {same}")
    print(f"tracker share of the sequential run: {seq_tracking:.1f} s "
          f"= {100 * seq_tracking / seq_wall:.1f}%")  # fmt: skip


if __name__ == "__main__":
    main()
