"""What is particular to the MLflow adapter (the shared contract runs on it from
test_contract.py): how our data fits MLflow's limits, and reads back unchanged."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tracker
from tracker import (
    AlreadyExistsError,
    ConfigError,
    InvalidInputError,
    InvalidTransition,
    Lifecycle,
    Metric,
    RunStatus,
    ViewType,
    objects,
)
from tracker.search import parse_filter

pytestmark = pytest.mark.mlflow
MAX = sys.float_info.max


@pytest.fixture
def mgr(request, tmp_path):
    from tests.conftest import _mlflow_manager

    yield from _mlflow_manager(request, tmp_path)


def started(mgr, exp_name="exp", name="rec"):
    return objects.get_exp(mgr, experiment_name=exp_name).start(recorder_name=name)


def raw_run(mgr, run_id):
    """The run as MLflow itself has it."""
    return mgr.client.get_run(run_id)


def test_import_tracker_does_not_import_mlflow():
    code = (
        "import sys, tracker, tracker.backends.mlflow, tracker.backends.mlflow_artifacts\n"
        "loaded = [m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# ------------------------------------------------------------------------ limits and values


def test_long_params_and_tags_are_artifacts_read_back_whole(mgr):
    rec = started(mgr)
    long_param, long_tag = "p" * 7000, "t" * 9000
    rec.log_params(big=long_param, small="1")
    rec.set_tags(big=long_tag)
    rec.flush()
    raw = raw_run(mgr, rec.id).data
    assert raw.params["big"] == "tracker:artifact:.tracker/long_params/big.txt"
    assert raw.tags["big"] == "tracker:artifact:.tracker/long_tags/big.txt"
    stored = Path(rec.get_local_dir(), "artifacts/.tracker/long_params/big.txt")
    assert stored.read_text() == long_param
    data = mgr.get_run(rec.id).data
    assert data.params["big"] == long_param and data.tags["big"] == long_tag
    rec.log_params(big=long_param)  # the same value again: a no-op
    with pytest.raises(InvalidInputError, match="immutable"):
        rec.log_params(big="q" * 7000)
    assert mgr.get_run(rec.id).data.params["big"] == long_param
    # a value that looks like a pointer is stored the same way, so it reads back verbatim
    rec.log_params(fake="tracker:artifact:nothing")
    assert mgr.get_run(rec.id).data.params["fake"] == "tracker:artifact:nothing"
    assert rec.list_artifacts() == []  # the adapter's own files are hidden
    found = mgr.search_run_infos(filter_string=f"params.big = '{long_param}'")
    assert [r.run_id for r in found] == [rec.id]


def test_log_batch_is_split_within_mlflow_limits(mgr, monkeypatch):
    rec = started(mgr)
    rec.flush()
    calls = []
    original = mgr.client.log_batch

    def spy(run_id, **kwargs):
        calls.append({k: len(v) for k, v in kwargs.items() if k != "synchronous"})
        return original(run_id, **kwargs)

    monkeypatch.setattr(mgr.client, "log_batch", spy)
    points = [Metric("m", float(i), i, i) for i in range(2500)] + [Metric("inf", math.inf)]
    params = {f"p{i}": str(i) for i in range(250)}
    tags = {f"t{i}": str(i) for i in range(150)}
    mgr.log_batch(rec.id, params=params, metrics=points, tags=tags)
    for i, call in enumerate(calls):
        assert call["metrics"] <= 1000 and call["params"] <= 100 and call["tags"] <= 100
        assert sum(call.values()) <= 1000
        if call["metrics"] or call["tags"]:  # params go first: they may be refused
            assert not any(c["params"] for c in calls[i + 1 :])
    assert sum(c["metrics"] for c in calls) == 2502  # with the companion of inf
    assert len(calls) == 5  # 250 params, 150 tags and 2502 points need no more
    data = mgr.get_run(rec.id).data
    assert {k: v for k, v in data.params.items() if k.startswith("p")} == params
    assert data.tags == tags
    assert data.metrics == {"m": 2499.0, "inf": math.inf}
    assert [m.value for m in mgr.get_metric_history(rec.id, "m")] == [float(i) for i in range(2500)]


def test_batches_respect_the_rest_body_size():
    from tracker.backends.mlflow_artifacts import batches

    params = [(f"p{i}", "é" * 5000) for i in range(100)]  # 1 MB of UTF-8 in one call is refused
    chunks = list(batches(params, [], []))
    assert len(chunks) == 2 and sum(len(p) for p, _, _ in chunks) == 100


def test_inf_nan_and_max_are_told_apart(mgr):
    rec = started(mgr)
    mgr.log_batch(
        rec.id,
        metrics=[
            Metric("up", math.inf, 0, 1),
            Metric("down", -math.inf, 0, 1),
            Metric("max", MAX, 0, 1),
            Metric("nan", math.nan, 0, 1),
            Metric("mixed", math.inf, 0, 1),
            Metric("mixed", MAX, 1, 2),
            Metric("mixed", -math.inf, 2, 3),
        ],
    )
    raw = raw_run(mgr, rec.id).data.metrics
    assert raw["up"] == MAX and raw["down"] == -MAX  # what MLflow keeps
    assert raw["tracker.inf/up"] == 1.0 and raw["tracker.inf/down"] == -1.0
    data = mgr.get_run(rec.id).data.metrics
    assert set(data) == {"up", "down", "max", "nan", "mixed"}  # companions are hidden
    assert data["up"] == math.inf and data["down"] == -math.inf and data["max"] == MAX
    assert math.isnan(data["nan"]) and data["mixed"] == -math.inf
    history = [m.value for m in mgr.get_metric_history(rec.id, "mixed")]
    assert history == [math.inf, MAX, -math.inf]
    exp = rec.experiment_id
    assert [r.run_id for r in mgr.search_run_infos([exp], "metrics.up >= 1000")] == [rec.id]
    assert [r.run_id for r in mgr.search_run_infos([exp], "metrics.up > 1e300")] == [rec.id]
    assert mgr.search_run_infos([exp], f"metrics.max > {MAX!r}") == []


def test_keys_mlflow_refuses_are_escaped_reversibly(mgr):
    from tracker.backends.mlflow_artifacts import decode_key, encode_key

    keys = ["lr=0.1", "a!b", "x/../y", "a//b", ":colon", "IC(1d)", "😀 smile", "..", "日本語"]
    rec = started(mgr)
    rec.log_params(**{k: k for k in keys})
    rec.log_metrics(step=1, **dict.fromkeys(keys, 1.5))
    rec.set_tags(**dict.fromkeys(keys, "t"))
    rec.flush()
    data = mgr.get_run(rec.id).data
    assert {k: data.params[k] for k in keys} == {k: k for k in keys}
    assert {k: data.metrics[k] for k in keys} == dict.fromkeys(keys, 1.5)
    assert {k: data.tags[k] for k in keys} == dict.fromkeys(keys, "t")
    assert [m.value for m in mgr.get_metric_history(rec.id, "a!b")] == [1.5]
    assert encode_key("日本語") == "日本語" and encode_key("1day.excess_return") == (
        "1day.excess_return"
    )
    raw = raw_run(mgr, rec.id).data.params
    assert "lr=0.1" not in raw and encode_key("lr=0.1") in raw
    assert decode_key(":made:by:someone") == ":made:by:someone"  # not ours: left alone
    with pytest.raises(InvalidInputError, match="MLflow"):
        encode_key("!" * 60)
    found = mgr.search_run_infos([rec.experiment_id], "params.`lr=0.1` = 'lr=0.1'")
    assert [r.run_id for r in found] == [rec.id]


# ---------------------------------------------------------------------------------- search


PUSHDOWN = [
    ("metrics.IC > 0.1 and params.model = 'lgb'", "metrics.`IC` > 0.1 and params.`model` = 'lgb'"),
    ("metrics.a > 1 or params.b = 'x'", ""),
    ("(metrics.a > 1 or metrics.b < 0) and status = 'FINISHED'", "attributes.status = 'FINISHED'"),
    ("params.lr > 0.1 and params.m IN ('a', 'b') and metrics.x IS NULL", ""),
    ("params.x LIKE 'a%' and tags.t != 'b' and heartbeat < 5", ""),
    ("metrics.x = 1e-05 and run_name = 'it''s'", ""),
    ("run_id = 'ab' and status != 'X'", "attributes.run_id = 'ab' and attributes.status != 'X'"),
    ("status = 'finished'", "attributes.status = 'FINISHED'"),
    ("status = 'stale' and status != 'failed'",
     "attributes.status = 'RUNNING' and attributes.status != 'FAILED'"),
    ("status != 'Stale'", ""),
    ("tags.mlflow.runName = 'x'", "attributes.run_name = 'x'"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "mlflow"), PUSHDOWN)
def test_pushdown_keeps_only_what_mlflow_evaluates_like_us(text, mlflow):
    from tracker.backends.mlflow import pushdown

    assert pushdown(parse_filter(text)) == mlflow


def test_filters_mlflow_cannot_evaluate_run_client_side(mgr):
    exp = objects.get_exp(mgr, experiment_name="s")
    recs = []
    for i in range(5):
        time.sleep(0.002)
        rec = exp.start(recorder_name=f"r{i}")
        rec.log_params(model="lgb" if i % 2 else "linear", lr=0.1 * i)
        if i != 2:
            rec.log_metrics(IC=i / 10)
        rec.end_run("FINISHED" if i < 4 else "FAILED")
        recs.append(rec)
    with pytest.raises(Exception, match="(?i)invalid"):  # MLflow itself refuses OR
        mgr.client.search_runs([exp.id], "metrics.IC > 0.1 or params.model = 'lgb'")

    def names(text, **kw):
        return [r.name for r in mgr.search_run_infos([exp.id], text, **kw)]

    assert names("metrics.IC > 0.25 or params.model = 'lgb'") == ["r4", "r3", "r1"]
    assert names("params.model IN ('lgb') and params.lr >= 0.2") == ["r3"]
    assert names("metrics.IC IS NULL") == ["r2"]
    assert names("(metrics.IC < 0.05 or status = 'FAILED') and params.lr < 1") == ["r4", "r0"]
    assert names("", order_by=["metrics.IC DESC"], max_results=2) == ["r4", "r3"]
    assert names("metrics.IC <= -1 or run_id LIKE 'zz%'") == []


# ------------------------------------------------------------------------------- lifecycle


def test_killed_status_end_time_and_resume(mgr):
    rec = started(mgr)
    rec.end_run("KILLED")
    raw = raw_run(mgr, rec.id).info
    assert raw.status == "KILLED" and raw.end_time
    info = mgr.get_run_info(rec.id)
    assert info.status is RunStatus.KILLED and info.end_time == raw.end_time
    with pytest.raises(InvalidTransition, match="KILLED to SCHEDULED"):
        mgr.update_run(rec.id, status=RunStatus.SCHEDULED)
    time.sleep(0.002)
    resumed = objects.get_exp(mgr, experiment_name="exp").start(recorder_id=rec.id, resume=True)
    info = resumed.run_info
    assert info.status is RunStatus.RUNNING and info.end_time is None  # MLflow keeps its own
    assert info.start_time > raw.start_time and info.pid and info.host
    assert mgr.get_run(rec.id).data.tags == {}  # the bookkeeping tags are hidden


def test_deleted_runs_can_be_updated_and_stay_deleted(mgr):
    rec = started(mgr)
    rec.flush()
    mgr.delete_run(rec.id)
    info = mgr.update_run(rec.id, status=RunStatus.FAILED, heartbeat=7)
    assert info.lifecycle is Lifecycle.DELETED and info.status is RunStatus.FAILED
    assert info.heartbeat == 7
    assert mgr.update_run(rec.id, heartbeat=9).heartbeat == 7  # a beat alone is dropped
    assert mgr.restore_run(rec.id).lifecycle is Lifecycle.ACTIVE


def test_experiment_names_are_freed_and_restored(mgr):
    exp = mgr.create_experiment("x")
    kept = mgr.create_run(exp.experiment_id, "kept")
    gone = mgr.create_run(exp.experiment_id, "gone")
    mgr.delete_run(gone.run_id)
    mgr.set_experiment_lifecycle(exp.experiment_id, Lifecycle.DELETED)
    assert mgr.client.get_experiment(exp.experiment_id).name.startswith("x (deleted ")
    assert mgr.get_experiment(exp.experiment_id).name == "x"
    other = mgr.create_experiment("x")
    with pytest.raises(AlreadyExistsError, match="restore"):
        mgr.set_experiment_lifecycle(exp.experiment_id, Lifecycle.ACTIVE)
    mgr.set_experiment_lifecycle(other.experiment_id, Lifecycle.DELETED)
    mgr.set_experiment_lifecycle(exp.experiment_id, Lifecycle.ACTIVE)
    assert mgr.find_experiment("x").experiment_id == exp.experiment_id
    # MLflow restores every run of a restored experiment; the one deleted alone stays deleted
    assert [r.name for r in mgr.search_run_infos([exp.experiment_id])] == ["kept"]
    assert mgr.get_run_info(gone.run_id).lifecycle is Lifecycle.DELETED
    assert mgr.get_run_info(kept.run_id).lifecycle is Lifecycle.ACTIVE


def test_experiments_deleted_by_mlflow_free_their_name_too(mgr):
    eid = mgr.client.create_experiment("old")
    mgr.client.delete_experiment(eid)
    new = mgr.create_experiment("old")
    assert new.experiment_id != eid
    assert mgr.get_experiment(eid).lifecycle is Lifecycle.DELETED


def test_default_experiment_hidden_until_it_has_runs(mgr):
    assert mgr.list_experiment_infos() == []
    assert mgr.get_experiment("0").name == "Default"
    mgr.client.create_run("0")
    assert [e.name for e in mgr.list_experiment_infos()] == ["Default"]


def test_runs_written_by_mlflow_itself_are_read(mgr, tmp_path):
    eid = mgr.client.create_experiment("native-mlflow")
    run = mgr.client.create_run(eid, run_name="theirs", tags={"mlflow.source.name": "x.py"})
    mgr.client.log_metric(run.info.run_id, "loss", 0.5)
    (tmp_path / "model.txt").write_text("m")
    mgr.client.log_artifact(run.info.run_id, str(tmp_path / "model.txt"), "model")
    mgr.client.set_terminated(run.info.run_id)
    info = mgr.get_run_info(run.info.run_id)
    assert info.name == "theirs" and info.status is RunStatus.FINISHED and info.heartbeat is None
    data = mgr.get_run(run.info.run_id).data
    assert data.metrics == {"loss": 0.5} and data.tags == {"mlflow.source.name": "x.py"}
    [entry] = mgr.list_artifact_entries(run.info.run_id)
    assert (entry.path, entry.size, entry.checksum) == ("model/model.txt", 1, "")
    rec = objects.get_exp(mgr, experiment_name="native-mlflow").get_recorder(recorder_name="theirs")
    assert rec.load_object("model/model.txt") == "m"


def test_purge_refused_before_files_go_when_mlflow_cannot_hard_delete(mgr, monkeypatch):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from tracker.backends.mlflow import MLflowLimitation

    rec = started(mgr)
    rec.save_objects(**{"a.pkl": 1})
    rec.end_run()
    monkeypatch.delattr(SqlAlchemyStore, "_hard_delete_run")
    with pytest.raises(MLflowLimitation, match="mlflow gc"):
        mgr.purge_run(rec.id)
    assert rec.load_object("a.pkl") == 1
    with pytest.raises(MLflowLimitation, match="run ids"):
        mgr.create_run(rec.experiment_id, "r", run_id="cd" * 16)


# ----------------------------------------------------------------------------- configuration


def test_uri_forms_and_defaults(request, tmp_path, monkeypatch):
    template = request.getfixturevalue("mlflow_db_template")
    shutil.copyfile(template, tmp_path / "rel.db")
    m = tracker.connect("mlflow+sqlite:///rel.db")  # relative to the working directory
    assert m.tracking_uri == f"sqlite:///{tmp_path / 'rel.db'}"
    assert m.artifact_uri == str(tmp_path / "mlartifacts")
    with pytest.raises(ConfigError, match="artifact"):
        tracker.connect("mlflow+postgresql://u@h/db")
    with pytest.raises(ConfigError, match="storage_options"):
        tracker.connect("mlflow+sqlite:///rel.db", storage_options={"key": "x"})
    with pytest.raises(ConfigError, match="memory"):
        tracker.connect("mlflow+sqlite:///:memory:")


def test_file_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    m = tracker.connect(f"mlflow+file:{tmp_path / 'mlruns'}")
    rec = objects.get_exp(m, experiment_name="f").start(recorder_name="r")
    rec.log_params(a=1)
    rec.log_metrics(step=0, b=math.inf)
    rec.save_objects(**{"x.pkl": [1]})
    rec.end_run()
    assert m.get_run(rec.id).data.metrics == {"b": math.inf}
    assert rec.load_object("x.pkl") == [1]
    assert Path(rec.get_local_dir()).is_relative_to(tmp_path / "mlruns")
    assert [r.run_id for r in m.search_run_infos(view=ViewType.ALL)] == [rec.id]
