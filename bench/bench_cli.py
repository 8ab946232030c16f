"""Wall time of the read commands, whole process included (issue: tracker CLI, performance).

Builds (once, cached under bench/out/) a SQLite store of N runs, each with 10 params and 5
metrics of 5 steps, through the public API, then runs the real ``tracker`` console script in
subprocesses: ``ls``, ``ls EXPERIMENT``, ``show PREFIX``, ``diff A B``; median of R runs each.
Budget: 0.4 s for each.

Run: python bench/bench_cli.py [--runs 10000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRACKER_NO_CODE_STATE", "1")

import tracker  # noqa: E402
from bench.stores import fill  # noqa: E402

EXPERIMENT = "bench"
BUDGET_S = 0.4


def build(store: Path, runs: int) -> list[str]:
    """The two newest run ids; runs are added until there are ``runs``."""
    manager = tracker.connect(store)
    exp_id, rate = fill(manager, EXPERIMENT, runs, steps=5, seed=7, base_ts=1_700_000_000_000)
    if rate:
        print(f"built runs through the API at {rate:,.0f} runs/s")
    ids = [i.run_id for i in manager.search_run_infos([exp_id], max_results=2)]
    manager.close()
    return ids


def timed(argv: list[str], repeat: int) -> float:
    """Median wall seconds of the command, after one warm-up run (page cache, .pyc files)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    store = Path(__file__).resolve().parent / "out" / f"cli_{args.runs}"
    newest, older = build(store, args.runs)
    exe = shutil.which("tracker", path=str(Path(sys.executable).parent)) or shutil.which("tracker")
    if exe is None:
        raise SystemExit("the `tracker` console script is not installed: pip install -e .")
    base = [exe, "--uri", str(store)]
    commands = {
        "tracker ls": ["ls"],
        f"tracker ls {EXPERIMENT}": ["ls", EXPERIMENT],
        "tracker show PREFIX": ["show", newest[:6]],
        "tracker diff A B": ["diff", newest[:6], older[:6]],
        "tracker show PREFIX --metric IC": ["show", newest[:6], "--metric", "IC"],
        f"tracker ls {EXPERIMENT} --sort -metrics.IC": ["ls", EXPERIMENT, "--sort", "-metrics.IC"],
    }
    bare = timed([sys.executable, "-c", "pass"], args.repeat)
    print(f"store: {args.runs:,} runs x 10 params x 5 metrics x 5 steps ({store})")
    print(f"{'python -c pass (interpreter start-up)':44s}: median {bare * 1000:6.0f} ms")
    for label, argv in commands.items():
        seconds = timed(base + argv, args.repeat)
        verdict = "" if seconds < BUDGET_S else f"  OVER the {BUDGET_S} s budget"
        print(f"{label:44s}: median {seconds * 1000:6.0f} ms{verdict}")


if __name__ == "__main__":
    main()
