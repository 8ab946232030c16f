"""The backend contract as a pytest suite, for every backend, ours or a plug-in's.

Every ``test_*`` here takes a ``manager`` fixture: an empty :class:`~tracker.ExpManager` with
an artifact location. The one defined here opens the in-memory reference backend; a backend
runs the suite by importing it into a test module and defining its own ``manager`` there (or
in a conftest.py), which overrides this one::

    # test_my_backend.py
    import pytest
    import tracker
    from tracker.testing import *  # noqa: F403

    @pytest.fixture
    def manager(tmp_path):
        m = tracker.connect("myscheme://...", str(tmp_path / "artifacts"))
        yield m
        m.close()

It needs pytest and hypothesis (tracker's ``test`` extra). ``tests/test_contract.py`` runs it on
SQLite, PostgreSQL, MLflow and memory://, with artifacts on the local disk, memory:// and S3.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec.core
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracker
from tracker import (
    AlreadyExistsError,
    ArtifactEntry,
    ExperimentNotFound,
    InvalidArtifactPath,
    InvalidInputError,
    InvalidQueryError,
    InvalidStateError,
    InvalidTransition,
    Lifecycle,
    LoadObjectError,
    Metric,
    Recorder,
    RunNotFound,
    RunStatus,
    ViewType,
    objects,
)
from tracker.errors import ArtifactChecksumError
from tracker.manager import now_ms
from tracker.manifest import check_run, repair


@pytest.fixture
def manager() -> Iterator[tracker.ExpManager]:
    """The in-memory reference backend, a fresh store per test; override it to test another."""
    from tracker import exit_hooks

    name = f"contract-{uuid.uuid4().hex[:12]}"
    m = tracker.connect(f"memory://{name}", f"memory://{name}-artifacts")
    yield m
    exit_hooks.end_live_runs(tracker.RunStatus.FINISHED)
    m.close()


def started(manager, exp_name="exp", name="rec", **kw) -> Recorder:
    exp = objects.get_exp(manager, experiment_name=exp_name)
    return exp.start(recorder_name=name, **kw)


# ------------------------------------------------------------------------------ experiments


def test_experiment_create_get_find_list(manager):
    a = manager.create_experiment("alpha")
    assert manager.get_experiment(a.experiment_id) == a
    assert manager.find_experiment("alpha") == a
    assert manager.find_experiment("nope") is None
    manager.create_experiment("beta")
    assert [e.name for e in manager.list_experiment_infos()] == ["alpha", "beta"]
    with pytest.raises(AlreadyExistsError, match="alpha"):
        manager.create_experiment("alpha")
    with pytest.raises(ExperimentNotFound):
        manager.get_experiment("999999")
    with pytest.raises(ExperimentNotFound):
        manager.get_experiment("not-a-number")


def test_deleted_experiment_frees_its_name_and_restore_conflicts(manager):
    old = manager.create_experiment("x")
    objects.delete_exp(manager, experiment_name="x")
    assert manager.find_experiment("x") is None
    assert manager.get_experiment(old.experiment_id).lifecycle is Lifecycle.DELETED
    assert [e.name for e in manager.list_experiment_infos(ViewType.DELETED_ONLY)] == ["x"]
    new = manager.create_experiment("x")
    assert new.experiment_id != old.experiment_id
    with pytest.raises(AlreadyExistsError, match="restore"):
        manager.set_experiment_lifecycle(old.experiment_id, Lifecycle.ACTIVE)
    with pytest.raises(ExperimentNotFound):
        objects.get_exp(manager, experiment_id=old.experiment_id)


def test_get_exp_create_flag_and_default_name(manager):
    with pytest.raises(ExperimentNotFound, match="missing"):
        objects.get_exp(manager, experiment_name="missing", create=False)
    exp = objects.get_exp(manager)
    assert exp.name == "Experiment"
    assert objects.get_exp(manager, experiment_id=exp.id) == exp
    assert set(objects.list_experiments(manager)) == {"Experiment"}


# ----------------------------------------------------------------------------------- runs


def test_run_create_update_and_transitions(manager):
    exp = manager.create_experiment("e")
    info = manager.create_run(exp.experiment_id, "r", RunStatus.SCHEDULED)
    assert info.status is RunStatus.SCHEDULED and len(info.run_id) == 32
    assert manager.get_run_info(info.run_id) == info
    running = manager.update_run(info.run_id, status=RunStatus.RUNNING, heartbeat=5)
    assert running.status is RunStatus.RUNNING and running.heartbeat == 5
    done = manager.update_run(info.run_id, status=RunStatus.FINISHED, end_time=now_ms())
    assert done.status is RunStatus.FINISHED and done.end_time
    with pytest.raises(InvalidTransition, match="FINISHED to SCHEDULED"):
        manager.update_run(info.run_id, status=RunStatus.SCHEDULED)
    with pytest.raises(InvalidTransition, match="expected"):
        manager.update_run(info.run_id, status=RunStatus.FAILED, expect=[RunStatus.RUNNING])
    assert manager.get_run_info(info.run_id).status is RunStatus.FINISHED
    with pytest.raises(RunNotFound):
        manager.get_run_info("0" * 32)
    with pytest.raises(TypeError):
        manager.update_run(info.run_id, bogus=1)  # a typed update: unknown fields do not pass


def test_create_run_in_deleted_or_missing_experiment(manager):
    exp = manager.create_experiment("gone")
    manager.set_experiment_lifecycle(exp.experiment_id, Lifecycle.DELETED)
    with pytest.raises(ExperimentNotFound):
        manager.create_run(exp.experiment_id, "r")
    with pytest.raises(ExperimentNotFound):
        manager.create_run("424242", "r")


def test_log_batch_params_metrics_tags(manager):
    rec = started(manager)
    rid = rec.id
    manager.log_batch(
        rid,
        params={"lr": "0.1", "model": "lgb"},
        metrics=[Metric("IC", 0.5, 0, 1), Metric("IC", 0.7, 1, 2), Metric("IC", 0.1, 1, 1)],
        tags={"stage": "dev"},
    )
    data = manager.get_run(rid).data
    assert data.params == {"lr": "0.1", "model": "lgb", "cmd-sys.argv": data.params["cmd-sys.argv"]}
    # latest = highest step, then newest timestamp
    assert data.metrics == {"IC": 0.7}
    assert data.tags == {"stage": "dev"}
    hist = manager.get_metric_history(rid, "IC")
    assert [(m.step, m.value) for m in hist] == [(0, 0.5), (1, 0.1), (1, 0.7)]
    manager.log_batch(rid, tags={"stage": "online"})
    manager.delete_tags(rid, ["missing"])
    assert manager.get_run(rid).data.tags == {"stage": "online"}


def test_param_same_value_noop_other_value_refused_atomically(manager):
    rec = started(manager)
    rec.log_params(lr=0.1)
    rec.log_params(lr="0.1")  # same string: no-op
    with pytest.raises(InvalidInputError, match="immutable"):
        manager.log_batch(rec.id, params={"lr": "0.2", "new": "x"}, metrics=[Metric("m", 1.0)])
    # nothing of the refused batch was written
    data = manager.get_run(rec.id).data
    assert data.params["lr"] == "0.1" and "new" not in data.params
    assert data.metrics == {}


def test_special_floats_round_trip_exactly(manager):
    rec = started(manager)
    values = [float("nan"), float("inf"), float("-inf"), 0.0, 5e-324, -2.5, 1.7976931348623157e308]
    manager.log_batch(rec.id, metrics=[Metric("v", v, i, i) for i, v in enumerate(values)])
    got = [m.value for m in manager.get_metric_history(rec.id, "v")]
    for a, b in zip(got, values, strict=True):
        assert (math.isnan(a) and math.isnan(b)) or a == b
    manager.log_batch(rec.id, metrics=[Metric("n", float("nan"), 0, 0)])
    assert math.isnan(manager.get_run(rec.id).data.metrics["n"])


def test_ended_runs_accept_data_and_keep_their_status(manager):
    rec = started(manager)
    rec.log_params(lr="0.1")
    rec.end_run("FINISHED")
    manager.log_batch(rec.id, metrics=[Metric("ic", 0.5, 0, 1)], params={"extra": "1"})
    rec.log_metrics(step=1, ic=0.6)  # Qlib's records analyse finished recorders
    rec.log_params(lr="0.1", more="2")  # the same value again is fine
    rec.set_tags(online="true")
    with pytest.raises(InvalidInputError, match="already '0.1'"):
        rec.log_params(lr="0.2")
    info = manager.get_run_info(rec.id)
    assert info.status is RunStatus.FINISHED and info.end_time
    data = manager.get_run(rec.id).data
    assert data.metrics == {"ic": 0.6} and data.params["more"] == "2"
    assert data.tags["online"] == "true"
    manager.delete_run(rec.id)
    for kwargs in ({"metrics": [Metric("m", 1.0)]}, {"params": {"p": "1"}}, {"tags": {"x": "1"}}):
        with pytest.raises(InvalidStateError, match="deleted"):
            manager.log_batch(rec.id, **kwargs)
    manager.restore_run(rec.id)
    manager.log_batch(rec.id, tags={"x": "1"})
    rec.save_objects(**{"pred.pkl": [1, 2]})  # artifacts too (Qlib's PredUpdater)


def test_invalid_values_refused_in_caller(manager):
    rec = started(manager)
    for bad in ("0.5", None, [1], {"a": 1}, 1j):
        with pytest.raises(InvalidInputError, match="metric 'm'"):
            rec.log_metrics(m=bad)
    with pytest.raises(InvalidInputError, match="empty"):
        rec.log_metrics(**{"": 1.0})
    with pytest.raises(InvalidInputError, match="at most 250"):
        rec.log_params(**{"k" * 251: 1})
    with pytest.raises(InvalidInputError, match="step"):
        rec.log_metrics(step="1", m=1.0)
    rec.flush()
    assert rec.list_metrics() == {}


def test_out_of_range_step_refused_at_the_call_and_the_run_finishes(manager):
    import numpy as np

    rec = started(manager)
    for step in range(5):
        rec.log_metrics(step=step, m=float(step))
    for bad in (2**63, -(2**63) - 1, np.uint64(2**63), 1e19, float("inf")):
        with pytest.raises(InvalidInputError, match=r"step .* metric 'm'") as info:
            rec.log_metrics(step=bad, m=1.0)
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidInputError, match=r"9223372036854775808 .*-2\*\*63, 2\*\*63-1"):
        manager.log_metrics(rec.id, {"m": 1.0}, step=2**63)
    with pytest.raises(InvalidInputError, match="step True"):
        rec.log_metrics(step=True, m=1.0)
    with pytest.raises(InvalidInputError, match="metric 'big'"):
        rec.log_metrics(big=10**400)
    rec.log_metrics(step=np.int64(5), m=5.0)
    rec.log_metrics(step=2**63 - 1, m=6.0)
    rec.log_metrics(step=-(2**63), m=-1.0)
    rec.end_run()
    assert manager.get_run_info(rec.id).status is RunStatus.FINISHED
    history = manager.get_metric_history(rec.id, "m")
    assert [(p.step, p.value) for p in history] == [
        (-(2**63), -1.0),
        *((s, float(s)) for s in range(6)),
        (2**63 - 1, 6.0),
    ]


def test_out_of_range_point_in_a_batch_is_refused_whole(manager):
    rec = started(manager)
    points = [Metric("a", 1.0, 0, 0), Metric("b", 2.0, 2**64, 0)]
    with pytest.raises(InvalidInputError, match=r"metric 'b' .*step 18446744073709551616"):
        manager.log_batch(rec.id, metrics=points)
    with pytest.raises(InvalidInputError, match=r"metric 'a' .*timestamp"):
        manager.log_batch(rec.id, metrics=[Metric("a", 1.0, 0, -(2**70))])
    assert manager.get_metric_history(rec.id, "a") == []
    manager.log_batch(rec.id, metrics=points[:1])
    assert manager.get_run(rec.id).data.metrics == {"a": 1.0}


# --------------------------------------------------------------------------------- search


def _population(manager):
    exp = objects.get_exp(manager, experiment_name="s")
    recs = []
    for i in range(6):
        time.sleep(0.002)  # distinct start times: runs started in the same ms tie on run id
        r = exp.start(recorder_name=f"r{i}")
        r.log_params(model="lgb" if i % 2 else "linear", lr=0.1 * i)
        r.log_metrics(IC=i / 10, **{"Rank IC": -i})
        r.set_tags(stage="online" if i < 2 else "dev")
        r.end_run("FINISHED" if i != 5 else "FAILED")
        recs.append(r)
    return exp, recs


def test_search_filter_order_limit(manager):
    exp, recs = _population(manager)
    found = manager.search_run_infos(
        [exp.id], "metrics.IC > 0.15 and params.model = 'lgb'", order_by=["metrics.IC DESC"]
    )
    assert [r.name for r in found] == ["r5", "r3"]
    found = manager.search_run_infos([exp.id], "metrics.`Rank IC` <= -4 or tags.stage = 'online'")
    assert {r.name for r in found} == {"r0", "r1", "r4", "r5"}
    found = manager.search_run_infos([exp.id], "params.lr >= 0.3 and status = 'FINISHED'")
    assert {r.name for r in found} == {"r3", "r4"}
    assert len(manager.search_run_infos([exp.id], max_results=2)) == 2
    newest_first = [r.name for r in manager.search_run_infos([exp.id])]
    assert newest_first == [f"r{i}" for i in reversed(range(6))]
    with pytest.raises(InvalidQueryError):
        manager.search_run_infos([exp.id], "metrics.IC >")


def test_search_records_dataframe(manager):
    exp, _ = _population(manager)
    df = objects.search_records(manager, [exp.id], order_by=["metrics.IC"])
    assert list(df.columns[:6]) == [
        "run_id",
        "experiment_id",
        "name",
        "status",
        "start_time",
        "end_time",
    ]
    assert {"metrics.IC", "metrics.Rank IC", "params.model", "params.lr", "tags.stage"} <= set(
        df.columns
    )
    assert list(df["metrics.IC"]) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    by_name = objects.search_records(
        manager, experiment_names=["s"], filter_string="tags.stage = 'online'"
    )
    assert len(by_name) == 2
    empty = objects.search_records(manager, [exp.id], filter_string="metrics.IC > 100")
    assert empty.empty and list(empty.columns)[:2] == ["run_id", "experiment_id"]


def test_deleted_runs_hidden_from_default_view(manager):
    exp, recs = _population(manager)
    exp.delete_recorder(recorder_id=recs[0].id)
    assert recs[0].id not in exp.list_recorders()
    assert [r.id for r in exp.list_deleted()] == [recs[0].id]
    all_ids = {r.run_id for r in manager.search_run_infos([exp.id], view=ViewType.ALL)}
    assert recs[0].id in all_ids


# ------------------------------------------------------------------------------- artifacts


def test_save_and_load_objects(manager):
    rec = started(manager)
    pred = pd.DataFrame(
        {"score": [0.1, 0.2]},
        index=pd.MultiIndex.from_tuples(
            [(pd.Timestamp("2020-01-02"), "AAPL"), (pd.Timestamp("2020-01-02"), "MSFT")],
            names=["datetime", "instrument"],
        ),
    )
    rec.save_objects(**{"pred.pkl": pred, "params.pkl": {"a": 1}, "task": {"model": {}}})
    rec.save_objects(artifact_path="sig_analysis", **{"ic.pkl": pred["score"]})
    rec.save_objects(**{"pred.parquet": pred, "meta.json": {"k": [1, 2]}})
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), pred)
    pd.testing.assert_frame_equal(rec.load_object("pred.parquet"), pred)
    assert rec.load_object("meta.json") == {"k": [1, 2]}
    pd.testing.assert_series_equal(rec.load_object("sig_analysis/ic.pkl"), pred["score"])
    rec.save_objects(**{"params.pkl": {"a": 2}})  # overwrite
    assert rec.load_object("params.pkl") == {"a": 2}
    assert rec.list_artifacts() == [
        "meta.json",
        "params.pkl",
        "pred.parquet",
        "pred.pkl",
        "sig_analysis",
        "task",
    ]
    assert rec.list_artifacts("sig_analysis") == ["sig_analysis/ic.pkl"]
    assert "sig_analysis/ic.pkl" in rec.list_artifacts(recursive=True)
    entries = {e.path: e for e in manager.list_artifact_entries(rec.id)}
    assert entries["params.pkl"].size == len(pickle.dumps({"a": 2}, protocol=5))
    assert entries["params.pkl"].checksum.startswith("sha256:")


def test_a_file_changed_outside_tracker_is_refused_and_verify_repairs_it(manager, tmp_path):
    rec = started(manager)
    rec.save_objects(**{"pred.pkl": [1, 2], "meta.json": {"k": 1}})
    rec.save_objects(**{"pred.pkl": [3, 4]})  # an overwrite leaves one entry, the new one
    prefix = rec.run_info.artifact_prefix
    stored = manager.artifacts.get_bytes(prefix, "pred.pkl")
    [entry] = [e for e in manager.list_artifact_entries(rec.id) if e.path == "pred.pkl"]
    assert entry.checksum == "sha256:" + hashlib.sha256(stored).hexdigest()
    url = manager.artifacts.url(prefix, "pred.pkl")
    fs, path = fsspec.core.url_to_fs(url, **(manager.storage_options or {}))
    fs.pipe_file(path, pickle.dumps([5, 6]))  # behind tracker's back
    with pytest.raises(ArtifactChecksumError, match=f"'pred.pkl' of run {rec.id}"):
        rec.load_object("pred.pkl")
    with pytest.raises(ArtifactChecksumError, match=entry.checksum):
        rec.download_artifact("pred.pkl", str(tmp_path / "dst"))
    [mismatch] = check_run(manager, rec.run_info).mismatches
    assert (mismatch.path, mismatch.problem) == ("pred.pkl", "checksum")
    repair(manager, [mismatch])
    assert check_run(manager, rec.run_info).mismatches == []
    assert rec.load_object("pred.pkl") == [5, 6] and rec.load_object("meta.json") == {"k": 1}
    manager.forget_artifacts(rec.id, ["meta.json", "never-stored"])
    checksums = {e.path: e.checksum for e in manager.list_artifact_entries(rec.id)}
    # MLflow's adapter still lists the stored file, as it lists files MLflow logged itself.
    assert checksums.get("meta.json", "") == "" and checksums["pred.pkl"].startswith("sha256:")


def test_load_object_errors_name_the_artifact(manager):
    rec = started(manager)
    with pytest.raises(LoadObjectError, match="missing.pkl"):
        rec.load_object("missing.pkl")
    rec.save_objects(**{"x.pkl": 1})

    class Refuse(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"{module}.{name} not allowed")

    rec.save_objects(**{"obj.pkl": ValueError("x")})
    with pytest.raises(LoadObjectError, match="obj.pkl"):
        rec.load_object("obj.pkl", unpickler=Refuse)


@pytest.mark.parametrize(
    "bad", ["/abs.pkl", "../up.pkl", "a/../../b", "a\\b"], ids=["abs", "up", "climb", "bslash"]
)
def test_bad_artifact_paths_refused_nothing_written(manager, bad):
    rec = started(manager)
    with pytest.raises(InvalidArtifactPath):
        rec.save_objects(**{bad: 1})
    with pytest.raises(InvalidArtifactPath):
        rec.save_objects(artifact_path=bad, **{"ok.pkl": 1})
    assert manager.list_artifact_entries(rec.id) == []


def test_log_and_download_artifacts(manager, tmp_path):
    rec = started(manager)
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "nested" / "deeper" / "b.txt").write_text("B")
    rec.log_artifact(src, "bundle")
    rec.log_artifact(src / "a.txt")
    assert rec.list_artifacts() == ["a.txt", "bundle"]
    assert rec.list_artifacts("bundle", recursive=True) == [
        "bundle/a.txt",
        "bundle/nested/deeper/b.txt",
    ]
    local = rec.download_artifact("bundle/nested/deeper/b.txt", str(tmp_path / "dl"))
    assert Path(local).read_text() == "B"
    folder = rec.download_artifact("bundle", str(tmp_path / "dl2"))
    assert Path(folder, "nested/deeper/b.txt").read_text() == "B"
    assert rec.get_artifact_uri().endswith(f"{rec.experiment_id}/{rec.id}/artifacts")


# ------------------------------------------------------------------------ recorder lifecycle


def test_recorder_lifecycle_and_resume(manager):
    exp = objects.get_exp(manager, experiment_name="life")
    rec = exp.create_recorder("r")
    assert rec.status == "SCHEDULED" and rec.id is None
    with pytest.raises(InvalidStateError, match="start_run"):
        rec.log_params(a=1)
    exp.start(recorder_name="r")
    rec = exp.active_recorder
    rec.log_metrics(step=0, loss=1.0)
    exp.end("FAILED")
    assert rec.refresh().status == "FAILED"
    resumed = exp.start(recorder_id=rec.id, resume=True)
    assert resumed.id == rec.id and resumed.status == "RUNNING"
    resumed.log_metrics(step=1, loss=0.5)
    exp.end()
    assert resumed.refresh().status == "FINISHED"
    assert [m.value for m in resumed.get_metric_history("loss")] == [1.0, 0.5]
    with pytest.raises(RunNotFound):
        exp.start(recorder_id="f" * 32, resume=True)
    by_name = exp.start(recorder_name="r", resume=True)
    assert by_name.id == rec.id  # newest of that name
    exp.end()


@pytest.mark.parametrize("name", ["it's", 'say "hi"', 'it\'s "x"\\', "a''b", "100%", "é\\"])
def test_recorder_found_by_any_name(manager, name):
    exp = objects.get_exp(manager, experiment_name="names")
    rec = exp.start(recorder_name=name)
    exp.end()
    assert exp.get_recorder(recorder_name=name).id == rec.id


def test_queued_points_are_read_back_and_written_by_end(manager):
    rec = started(manager)
    for step in range(1000):
        rec.log_metrics(step=step, a=step, b=-step)
    assert rec.list_metrics() == {"a": 999.0, "b": -999.0}  # flush before read
    for step in range(1000, 1500):
        rec.log_metrics(step=step, a=step)
    rec.end_run()
    assert len(manager.get_metric_history(rec.id, "a")) == 1500


def test_background_write_error_is_raised_not_swallowed(manager):
    rec = started(manager)
    rec.log_metrics(m=1.0)
    rec.flush()
    # Another process deletes the run under our feet: the queued points cannot be written.
    manager.delete_run(rec.id)
    rec.log_metrics(m=2.0)
    with pytest.raises(InvalidStateError, match="deleted.*1 queued metric point"):
        rec.flush()
    rec.log_metrics(m=3.0)
    with pytest.raises(InvalidStateError, match="deleted"):
        rec.end_run()  # a write that fails at the end is raised after ending the run FAILED
    assert manager.get_run_info(rec.id).status is RunStatus.FAILED


def test_sync_mode_writes_each_call(manager, monkeypatch):
    exp = objects.get_exp(manager, experiment_name="sync")
    rec = Recorder(manager, exp.id, "s", async_log=False).start_run()
    rec.log_metrics(m=1.0)
    assert manager._get_runs_data([rec.id])[rec.id].metrics == {"m": 1.0}  # no flush needed
    rec.end_run()
    monkeypatch.setenv("TRACKER_SYNC_LOGGING", "1")
    assert Recorder(manager, exp.id, "s").async_log is False


def test_stale_runs_are_reaped(manager):
    rec = started(manager)
    fresh = started(manager, name="fresh")
    rec.flush()  # its process "dies" with nothing queued
    gone = subprocess.Popen(["true"])
    gone.wait()
    manager.update_run(rec.id, heartbeat=now_ms() - 120_000, pid=gone.pid)
    stale = manager.stale_runs(stale_after=60)
    assert [r.run_id for r in stale] == [rec.id]
    reaped = manager.reap(stale_after=60)
    assert [r.status for r in reaped] == [RunStatus.FAILED]
    info = manager.get_run_info(rec.id)
    assert info.status is RunStatus.FAILED and info.end_time
    assert manager.get_run(rec.id).data.tags["tracker.reaped"] == "heartbeat lost"
    assert manager.get_run_info(fresh.id).status is RunStatus.RUNNING


# ------------------------------------------------------------------------------- properties

keys = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
).filter(lambda k: k.strip() == k)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    metrics=st.dictionaries(keys, st.floats(allow_nan=True, allow_infinity=True), max_size=5),
    params=st.dictionaries(
        keys,
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=2000
        ),
        max_size=5,
    ),
)
def test_round_trip_property(manager, metrics, params):
    exp = objects.get_exp(manager, experiment_name="prop")
    info = manager.create_run(exp.id, "p")
    manager.log_params(info.run_id, params)
    manager.log_metrics(info.run_id, metrics, step=3)
    data = manager.get_run(info.run_id).data
    assert data.params == params
    assert data.metrics.keys() == metrics.keys()
    for k, v in metrics.items():
        got = data.metrics[k]
        assert (math.isnan(v) and math.isnan(got)) or got == v


def test_purge_run_removes_rows_and_files(manager):
    rec = started(manager)
    rec.log_metrics(m=1.0)
    rec.save_objects(**{"pred.pkl": [1]})
    rec.end_run()
    keep = started(manager, name="keep")
    keep.save_objects(**{"pred.pkl": [2]})
    manager.purge_run(rec.id)
    with pytest.raises(RunNotFound):
        manager.get_run_info(rec.id)
    assert not manager.artifacts.exists(rec.run_info.artifact_prefix, "pred.pkl")
    assert keep.load_object("pred.pkl") == [2]


def test_purged_run_id_never_reaches_a_new_run(manager):
    """A long-lived manager (a notebook, a daily OnlineManager) keeps asking for run X after
    another process purged X and created Y, which on SQLite reuses X's row key."""
    from tracker import registry

    exp = manager.create_experiment("e")
    x = manager.create_run(exp.experiment_id, "x").run_id
    manager.log_batch(x, metrics=[Metric("m", 1.0, 0, 0)])
    manager.record_artifacts(x, [ArtifactEntry("a.txt", 1, "sha256:x", 0)])
    assert [m.value for m in manager.get_metric_history(x, "m")] == [1.0]
    assert [e.path for e in manager.list_artifact_entries(x)] == ["a.txt"]
    other = registry.build(
        manager.uri,
        artifact_uri=manager.artifact_uri,
        storage_options=manager.storage_options,
    )
    try:
        old_key = _row_key(other, x)
        other.delete_run(x)
        other.purge_run(x)
        y = other.create_run(exp.experiment_id, "y").run_id
        other.log_batch(y, metrics=[Metric("m", 2.0, 0, 0)])
        other.record_artifacts(y, [ArtifactEntry("b.txt", 1, "sha256:y", 0)])
        if old_key is not None and "sqlite" in manager.uri:
            assert _row_key(other, y) == old_key  # the case this test is about
        with pytest.raises(RunNotFound):
            manager.get_metric_history(x, "m")
        with pytest.raises(RunNotFound):
            manager.list_artifact_entries(x)
        with pytest.raises(RunNotFound):
            manager.delete_run_permanently(x)
        assert [m.value for m in other.get_metric_history(y, "m")] == [2.0]
        assert [e.path for e in other.list_artifact_entries(y)] == ["b.txt"]
        assert manager.get_run(y).data.metrics == {"m": 2.0}
    finally:
        other.close()


def _row_key(manager, run_id: str) -> int | None:
    """The native stores' integer row key of a run (None for other backends)."""
    db = getattr(manager, "db", None)
    if db is None:
        return None
    with db.read() as conn:
        return conn.exec_driver_sql(f"SELECT pk FROM runs WHERE id = '{run_id}'").scalar()


def test_create_run_with_given_id(manager):
    exp = manager.create_experiment("imp")
    run_id = "ab" * 16
    try:
        info = manager.create_run(exp.experiment_id, "r", run_id=run_id, start_time=5)
    except NotImplementedError as e:  # a backend that cannot keep ids (MLflow) must say so
        assert "run id" in str(e) and "tracker import mlflow" in str(e)
        return
    assert info.run_id == run_id and manager.get_run_info(run_id).start_time == 5
    with pytest.raises(AlreadyExistsError, match=run_id):
        manager.create_run(exp.experiment_id, "r", run_id=run_id)
    with pytest.raises(InvalidInputError, match="32 lowercase hex"):
        manager.create_run(exp.experiment_id, "r", run_id="../x")


__all__ = [
    "manager",
    "test_experiment_create_get_find_list",
    "test_deleted_experiment_frees_its_name_and_restore_conflicts",
    "test_get_exp_create_flag_and_default_name",
    "test_run_create_update_and_transitions",
    "test_create_run_in_deleted_or_missing_experiment",
    "test_log_batch_params_metrics_tags",
    "test_param_same_value_noop_other_value_refused_atomically",
    "test_special_floats_round_trip_exactly",
    "test_ended_runs_accept_data_and_keep_their_status",
    "test_invalid_values_refused_in_caller",
    "test_out_of_range_step_refused_at_the_call_and_the_run_finishes",
    "test_out_of_range_point_in_a_batch_is_refused_whole",
    "test_search_filter_order_limit",
    "test_search_records_dataframe",
    "test_deleted_runs_hidden_from_default_view",
    "test_save_and_load_objects",
    "test_a_file_changed_outside_tracker_is_refused_and_verify_repairs_it",
    "test_load_object_errors_name_the_artifact",
    "test_bad_artifact_paths_refused_nothing_written",
    "test_log_and_download_artifacts",
    "test_recorder_lifecycle_and_resume",
    "test_recorder_found_by_any_name",
    "test_queued_points_are_read_back_and_written_by_end",
    "test_background_write_error_is_raised_not_swallowed",
    "test_sync_mode_writes_each_call",
    "test_stale_runs_are_reaped",
    "test_round_trip_property",
    "test_purge_run_removes_rows_and_files",
    "test_purged_run_id_never_reaches_a_new_run",
    "test_create_run_with_given_id",
]
