"""Search latency on a large store (issue: tracking core, section 8).

Builds (once, cached under bench/out/) a SQLite store of N runs with 10 params and 5 metrics
each, through the public ExpManager API, then times a filter on one param and one metric,
ordered by a metric, first 100 rows, the way ``R.search_records`` and ``tracker ls`` call it.

Run: python bench/bench_search.py [--runs 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRACKER_NO_CODE_STATE", "1")

import tracker  # noqa: E402
from bench.stores import fill  # noqa: E402
from tracker import objects

FILTER = "params.model = 'lgb' and metrics.IC > 0.05"
ORDER = ["metrics.IC DESC"]


def build(store: Path, runs: int) -> tuple[tracker.ExpManager, float]:
    manager = tracker.connect(store)
    return manager, fill(manager, "search", runs, seed=42)[1]


def timed(fn, repeat: int = 20) -> float:
    fn()  # warm the page cache and the statement cache
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    store = Path(__file__).resolve().parent / "out" / f"search_{args.runs}"
    manager, rate = build(store, args.runs)
    if rate:
        print(f"built {args.runs:,} runs through the API at {rate:,.0f} runs/s")
    exp = manager.get_experiment_by_name("search")
    ids = [exp.experiment_id]
    hits = manager.search_run_infos(ids, FILTER, ORDER, max_results=100)
    assert len(hits) == 100
    ms = timed(lambda: manager.search_run_infos(ids, FILTER, ORDER, max_results=100))
    ms_df = timed(lambda: objects.search_records(manager, ids, FILTER, ORDER, max_results=100))
    ms_plain = timed(lambda: manager.search_run_infos(ids, max_results=100))
    print(f"store: {args.runs:,} runs x 10 params x 5 metrics")
    print(f"filter + order, first 100 (run infos)   : median {ms:.1f} ms")
    print(f"filter + order, first 100 (DataFrame)   : median {ms_df:.1f} ms")
    print(f"newest 100, no filter                   : median {ms_plain:.1f} ms")
    print(f"  filter: {FILTER!r}  order_by: {ORDER}")


if __name__ == "__main__":
    main()
