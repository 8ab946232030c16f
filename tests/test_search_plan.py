"""SQLite's key-first plan for ordered pages returns exactly what the plain plan returns."""

from __future__ import annotations

import math
import random
import time

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


# ---------------------------------------------------------------------------------------------
# Filters of many clauses: the plan grows linearly with them


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def wide(request, tmp_path_factory):
    """40 runs with 200 metrics, 3 params and 3 tags each."""
    if request.param == "postgres":
        from tests.conftest import postgres_base_uri

        base = postgres_base_uri()
        if not base:
            pytest.skip("set TRACKER_TEST_POSTGRES_URI to run against PostgreSQL")
        import sqlalchemy as sa

        schema = f"wide_{random.randrange(16**8):08x}"
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        uri = f"{base}?options=-csearch_path%3D{schema}"
    else:
        uri = f"sqlite:///{tmp_path_factory.mktemp('wide') / 'w.db'}"
    manager = tracker.connect(uri, str(tmp_path_factory.mktemp("wide-art")))
    exp = manager.create_experiment("wide")
    for i in range(40):
        info = manager.create_run(exp.experiment_id, f"r{i}", start_time=i)
        metrics = [Metric(f"k{j}", (i + j) % 5 - 1.0, 0, 0) for j in range(200)]
        metrics[7] = Metric("k7", math.nan, 0, 0) if i % 4 == 0 else metrics[7]
        params = {f"p{j}": str((i * j) % 3) for j in range(3)}
        tags = {f"t{j}": "ab"[(i + j) % 2] for j in range(3) if (i + j) % 7}
        manager.log_batch(info.run_id, params=params, metrics=metrics, tags=tags)
    yield manager, exp.experiment_id
    manager.close()
    if request.param == "postgres":
        tracker.store.clear_cache()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


WIDE_FILTERS = {
    "200 distinct metric keys": " and ".join(f"metrics.k{j} >= -1" for j in range(200)),
    "200 clauses on 3 keys": " AND ".join(
        [f"metrics.k0 > {-1.5 - j / 1000}", f"metrics.k1 < {3.5 + j / 1000}", "metrics.k2 >= 0"][
            j % 3
        ]
        for j in range(200)
    ),
    "200 mixed clauses": " and ".join(
        [f"metrics.k{j} != {j % 5}" for j in range(150)]
        + [f"params.p{j % 3} IN ('0', '1', '2')" for j in range(20)]
        + [f"(tags.t{j % 3} IS NULL or tags.t{j % 3} NOT LIKE 'a%')" for j in range(15)]
        + ["metrics.absent IS NULL", "metrics.k7 NOT IN (5, 6)", "status = 'running'"] * 5
    ),
}


@pytest.mark.parametrize("flt", list(WIDE_FILTERS.values()), ids=list(WIDE_FILTERS))
def test_wide_and_filter_plans_and_runs_fast(wide, flt):
    """PostgreSQL planned N AND-ed EXISTS in time growing about cubically (200: 12 s); each key
    is now one subquery the planner leaves alone."""
    from tracker.search import parse_filter, search_in_python

    manager, exp_id = wide
    t0 = time.perf_counter()
    found = manager.search_run_infos([exp_id], flt, max_results=100)
    elapsed = time.perf_counter() - t0
    runs = manager.search_runs([exp_id])
    expected = search_in_python(runs, parse_filter(flt), [])
    assert [r.run_id for r in found] == [r.info.run_id for r in expected]
    assert 0 < len(found) < 40  # the filter splits the runs
    assert elapsed < 2.0, f"{elapsed:.2f} s"
