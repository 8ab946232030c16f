"""Logging throughput and latency of the native store (issue: tracking core, section 7).

Measures, on a fresh SQLite store in a temporary directory:
- end-to-end points/s through ``R.log_metrics`` called once per step
  (RUNS runs x 5 metrics x STEPS steps), every point verified in the database afterwards;
- the median and p99 cost of one ``R.log_metrics`` call (5 metrics);
- creating and ending an empty run;
- 4 processes logging into one store at once (points lost, errors raised).

Run: python bench/bench_logging.py [--runs 200] [--steps 1000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRACKER_NO_CODE_STATE", "1")  # measure the store, not `git diff`

import tracker  # noqa: E402
from tracker import R  # noqa: E402

KEYS = ("loss", "IC", "ICIR", "Rank IC", "lr")


def count_points(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM metrics").fetchone()[0]


def throughput(root: Path, runs: int, steps: int) -> dict[str, float]:
    tracker.init(root)
    call_ns: list[int] = []
    t0 = time.perf_counter()
    for r in range(runs):
        with R.start(experiment_name="bench", recorder_name=f"run{r}"):
            for step in range(steps):
                v = step * 1e-3
                a = time.perf_counter_ns()
                R.log_metrics(step=step, loss=v, IC=v, ICIR=v, **{"Rank IC": v}, lr=v)
                call_ns.append(time.perf_counter_ns() - a)
    elapsed = time.perf_counter() - t0
    points = runs * steps * len(KEYS)
    stored = count_points(root / "tracker.db")
    assert stored == points, f"{stored} of {points} points stored"
    call_ns.sort()
    return {
        "points": points,
        "seconds": elapsed,
        "points_per_s": points / elapsed,
        "call_median_us": statistics.median(call_ns) / 1000,
        "call_p99_us": call_ns[int(len(call_ns) * 0.99)] / 1000,
    }


def empty_runs(root: Path, n: int = 2000) -> float:
    tracker.init(root)
    exp = R.get_exp(experiment_name="empty")
    times = []
    for _ in range(n):
        t = time.perf_counter()
        exp.start(recorder_name="e")
        exp.end()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _worker(root: str, worker: int, runs: int, steps: int, queue: mp.Queue) -> None:
    try:
        tracker.init(root)
        for r in range(runs):
            with R.start(experiment_name="parallel", recorder_name=f"w{worker}-{r}"):
                for step in range(steps):
                    R.log_metrics(step=step, **{k: float(step) for k in KEYS})
        queue.put(None)
    except BaseException as e:  # report, do not hide
        queue.put(repr(e))


def concurrent(root: Path, procs: int = 4, runs: int = 10, steps: int = 1000) -> dict[str, float]:
    tracker.init(root)
    R.get_exp(experiment_name="parallel")  # create the store before the race on rows
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    t0 = time.perf_counter()
    workers = [
        ctx.Process(target=_worker, args=(str(root), w, runs, steps, queue)) for w in range(procs)
    ]
    for w in workers:
        w.start()
    errors = [e for e in (queue.get() for _ in workers) if e is not None]
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    expected = procs * runs * steps * len(KEYS)
    stored = count_points(root / "tracker.db")
    return {
        "processes": procs,
        "expected": expected,
        "stored": stored,
        "errors": len(errors),
        "points_per_s": stored / elapsed,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = throughput(Path(tmp) / "a", args.runs, args.steps)
        print(
            f"log_metrics end to end : {t['points_per_s']:,.0f} points/s "
            f"({t['points']:,} points in {t['seconds']:.2f} s, all verified in the database)"
        )
        print(
            f"log_metrics call cost  : median {t['call_median_us']:.1f} us, "
            f"p99 {t['call_p99_us']:.1f} us (5 metrics per call)"
        )
        print(f"empty run create + end : median {empty_runs(Path(tmp) / 'b'):.3f} ms")
        c = concurrent(Path(tmp) / "c")
        print(
            f"{c['processes']} processes, one store : {c['stored']:,} of {c['expected']:,} points "
            f"stored, {c['errors']} errors, {c['points_per_s']:,.0f} points/s in total"
        )


if __name__ == "__main__":
    main()
