"""Cost of checking an artifact's sha256 as ``load_object`` reads it (issue 9, item 13).

Saves a pickled 1M-row DataFrame (Qlib's ``pred.pkl`` shape: a (datetime, instrument)
MultiIndex and two float columns) to a local store, then times, from the page cache, median
of R runs each:

- the limit: ``pickle.load`` on the stored file (no check);
- ``Recorder.load_object`` (unpickles from the file while hashing it, then checks the
  manifest);
- sha256 of the file's bytes alone: the floor any check of the manifest's checksum pays.

Budget: load_object within 1.5x of pickle.load + sha256 (the check adds no second read).

Run: python bench/bench_artifacts.py [--rows 1000000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRACKER_NO_CODE_STATE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import tracker  # noqa: E402
from tracker import objects

BUDGET = 1.5  # the check should cost one sha256 pass, not a second read; the rest is noise


def frame(rows: int) -> pd.DataFrame:
    days = pd.date_range("2000-01-01", periods=rows // 500 + 1)
    index = pd.MultiIndex.from_product(
        [days, [f"SH{600000 + i}" for i in range(500)]], names=["datetime", "instrument"]
    )[:rows]
    rng = np.random.default_rng(0)
    return pd.DataFrame({"score": rng.normal(size=rows), "label": rng.normal(size=rows)}, index)


def median_s(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm-up: page cache, imports
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rec = objects.get_exp(tracker.connect(tmp), experiment_name="bench").start(
            recorder_name="r"
        )
        rec.save_objects(**{"pred.pkl": frame(args.rows)})
        path = Path(rec.manager.artifacts.local_dir(rec.run_info.artifact_prefix), "pred.pkl")
        data = path.read_bytes()

        def plain() -> None:
            with open(path, "rb") as f:
                pickle.load(f)

        limit = median_s(plain, args.repeat)
        ours = median_s(lambda: rec.load_object("pred.pkl"), args.repeat)
        digest = median_s(lambda: hashlib.sha256(data).digest(), args.repeat)
        rec.end_run()
    mb = len(data) / 1e6
    print(f"pred.pkl: {args.rows:,} rows, {mb:.1f} MB, median of {args.repeat}")
    print(f"  pickle.load (limit)   {limit * 1000:8.1f} ms")
    print(f"  sha256 alone          {digest * 1000:8.1f} ms  ({mb / digest / 1000:.2f} GB/s)")
    print(f"  load_object (checked) {ours * 1000:8.1f} ms  {ours / limit:.2f}x pickle.load")
    ratio = ours / (limit + digest)
    verdict = "ok" if ratio <= BUDGET else "OVER BUDGET"
    print(f"  load_object / (pickle.load + sha256) = {ratio:.2f} (budget {BUDGET}): {verdict}")


if __name__ == "__main__":
    main()
