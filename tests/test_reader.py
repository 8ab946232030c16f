"""The stdlib SQLite reader (the CLI's fast path) answers exactly as the SQL store does."""

from __future__ import annotations

import math
import random

import pytest

import tracker
from tracker import Metric, RunStatus, ViewType
from tracker.backends.sql.reader import SQLiteReader
from tracker.manager import ExpManager, ExpReader

FILTERS = [
    "",
    "metrics.m > 0",
    "params.p IN ('p1', 'p2') or tags.t = 'a'",
    "status = 'FINISHED' and params.lr >= 0.5",
    "run_name LIKE 'r1%'",
    "metrics.m IS NULL",
]
ORDERS = [
    None,
    ["metrics.m DESC"],
    ["metrics.m"],
    ["params.p DESC"],
    ["tags.t"],
    ["metrics.absent"],
    ["params.p", "-metrics.m"],
    ["attributes.start_time"],
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader") / "s"
    writer = tracker.connect(root)
    rng = random.Random(3)
    exps = [writer.create_experiment(n) for n in ("a", "b")]
    for i in range(120):
        exp = exps[i % 2]
        info = writer.create_run(exp.experiment_id, f"r{i}", start_time=rng.randint(0, 30))
        metrics = [Metric("m", rng.choice([math.nan, -1.0, 0.5, 2.0]), s, s) for s in range(3)]
        writer.log_batch(
            info.run_id,
            params={"p": f"p{rng.randint(0, 3)}", "lr": str(rng.random())},
            metrics=metrics if rng.random() < 0.8 else [],
            tags={"t": rng.choice("ab")},
        )
        writer.record_artifacts(
            info.run_id, [tracker.ArtifactEntry("x/pred.pkl", 3, "sha256:0", 1)]
        )
        if i % 3:
            writer.update_run(info.run_id, status=RunStatus.FINISHED)
        if i % 17 == 0:
            writer.delete_run(info.run_id)
    reader = SQLiteReader(writer.uri, artifact_uri=writer.artifact_uri)
    yield writer, reader, [e.experiment_id for e in exps]
    reader.close()


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: f or "all")
@pytest.mark.parametrize("order", ORDERS, ids=lambda o: ",".join(o or ["default"]))
@pytest.mark.parametrize("view", [ViewType.ACTIVE_ONLY, ViewType.ALL])
def test_search_agrees(stores, flt, order, view):
    writer, reader, ids = stores
    for exp_ids in ([ids[0]], ids, None):
        expected = writer.search_run_infos(exp_ids, flt, order, max_results=25, view=view)
        assert reader.search_run_infos(exp_ids, flt, order, max_results=25, view=view) == expected


def test_reads_agree(stores):
    writer, reader, ids = stores
    infos = writer.search_run_infos(ids, view=ViewType.ALL)
    run_ids = [i.run_id for i in infos]
    assert reader._get_runs_data(run_ids).keys() == writer._get_runs_data(run_ids).keys()
    for run_id in run_ids[:10]:
        assert reader.get_run_info(run_id) == writer.get_run_info(run_id)
        w, r = writer.get_metric_history(run_id, "m"), reader.get_metric_history(run_id, "m")
        assert [(m.step, m.timestamp) for m in r] == [(m.step, m.timestamp) for m in w]
        assert reader.list_artifact_entries(run_id) == writer.list_artifact_entries(run_id)
        assert reader.find_runs(run_id[:6]) == writer.find_runs(run_id[:6])
    assert reader.list_experiment_infos() == writer.list_experiment_infos()
    assert reader.summarize_experiments() == writer.summarize_experiments()
    assert reader.summarize_experiments(ViewType.ALL) == writer.summarize_experiments(ViewType.ALL)
    assert reader.find_experiment("a") == writer.find_experiment("a")


def test_reader_refuses_writes_and_missing_store(stores, tmp_path):
    _, reader, ids = stores
    assert isinstance(reader, ExpReader) and not isinstance(reader, ExpManager)
    assert not hasattr(reader, "create_run") and not hasattr(reader, "update_run")
    with pytest.raises(tracker.ConfigError, match="no tracker store"):
        SQLiteReader(f"sqlite:///{tmp_path}/none.db")
    with pytest.raises(tracker.RunNotFound):
        reader.get_metric_history("0" * 32, "m")
