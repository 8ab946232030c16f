"""Large stores for the benchmarks, built through the public API and cached under bench/out/."""

from __future__ import annotations

import random
import time

import tracker
from tracker import Metric, RunStatus

MODELS = ["lgb", "linear", "mlp", "gru", "xgb"]
METRICS = ("IC", "ICIR", "Rank IC", "loss", "ret")


def fill(
    manager: tracker.ExpManager,
    experiment: str,
    runs: int,
    *,
    steps: int = 1,
    seed: int = 0,
    base_ts: int = 0,
) -> tuple[str, float]:
    """Add FINISHED runs (10 params, 5 metrics of ``steps`` points) until the experiment has
    ``runs``; returns its id and the creation rate in runs/s (0 when nothing was added)."""
    exp = manager.get_or_create_experiment(experiment)
    have = len(manager.search_run_infos([exp.experiment_id], max_results=runs))
    if have >= runs:
        return exp.experiment_id, 0.0
    rng = random.Random(seed)
    t0 = time.perf_counter()
    for i in range(have, runs):
        info = manager.create_run(exp.experiment_id, f"run{i}", RunStatus.RUNNING)
        params = {f"p{j}": str(rng.randint(0, 1000)) for j in range(8)}
        params |= {"model": rng.choice(MODELS), "lr": str(rng.choice([0.01, 0.05, 0.1]))}
        metrics = [
            Metric(key, rng.gauss(0.03, 0.03), step, base_ts + step)
            for key in METRICS
            for step in range(steps)
        ]
        manager.log_batch(info.run_id, params=params, metrics=metrics)
        manager.update_run(info.run_id, status=RunStatus.FINISHED)
    return exp.experiment_id, (runs - have) / (time.perf_counter() - t0)
