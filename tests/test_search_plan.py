"""SQLite's key-first plan for ordered pages returns exactly what the plain plan returns."""

from __future__ import annotations

import math
import random

import pytest

import tracker
from tracker import Metric, RunStatus

ORDERS = [
    ["metrics.m DESC"],
    ["metrics.m"],
    ["metrics.m DESC", "params.p"],
    ["params.p DESC", "metrics.m"],
    ["tags.t", "-metrics.m"],
    ["metrics.absent"],
]
FILTERS = [
    "",
    "params.p IN ('p1', 'p3', 'p5')",
    "metrics.m > 0 or tags.t = 'b'",
    "status = 'FINISHED'",
]


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    manager = tracker.connect(tmp_path_factory.mktemp("plan") / "s")
    rng = random.Random(7)
    exp = manager.create_experiment("e")
    other = manager.create_experiment("other")
    for i in range(300):
        target = exp if i % 3 else other
        info = manager.create_run(target.experiment_id, f"r{i}", start_time=rng.randint(0, 50))
        metrics = []
        if rng.random() < 0.8:
            value = rng.choice([math.nan, rng.randint(-3, 3) / 2, math.inf, -math.inf])
            metrics.append(Metric("m", value, 0, 0))
        params = {"p": f"p{rng.randint(0, 6)}"} if rng.random() < 0.7 else {}
        tags = {"t": rng.choice("abc")} if rng.random() < 0.6 else {}
        manager.log_batch(info.run_id, params=params, metrics=metrics, tags=tags)
        if rng.random() < 0.5:
            manager.update_run(info.run_id, status=RunStatus.FINISHED)
    yield manager, [exp.experiment_id]
    manager.close()


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: ",".join(o))
@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: f or "all")
@pytest.mark.parametrize("limit", [1, 7, 150, 400])
def test_key_first_plan_matches_plain_plan(populated, order, flt, limit):
    manager, ids = populated
    manager.lead_min_runs = 10**9
    plain = [r.run_id for r in manager.search_run_infos(ids, flt, order, max_results=limit)]
    manager.lead_min_runs = 0
    if limit * 10 <= 200:  # the plan needs a page much smaller than the experiment
        with manager.db.read() as conn:
            from tracker.search import parse_order_by

            assert manager._lead_by_key(
                conn, parse_order_by(order), [int(ids[0])], ("active",), limit
            )
    fast = [r.run_id for r in manager.search_run_infos(ids, flt, order, max_results=limit)]
    assert fast == plain
