"""``tracker.qlib``: Qlib's own ``R`` (``qlib.workflow.R``) on tracker's store, checked against
Qlib's documented behaviour (``qlib/workflow/{__init__,expm,exp,recorder}.py``) and read back
through tracker's API."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from qlib.utils.exceptions import ExpAlreadyExistError, LoadObjectError, RecorderInitializationError
from qlib.utils.serial import Serializable
from qlib.workflow import R
from qlib.workflow.exp import Experiment as QlibExperiment
from qlib.workflow.record_temp import SigAnaRecord
from qlib.workflow.recorder import Recorder as QlibRecorder

import tracker
from tracker import objects
from tracker.entities import RunStatus
from tracker.errors import InvalidStateError
from tracker.qlib import TrackerExperiment, TrackerRecorder


def store(uri: str) -> tracker.ExpManager:
    return tracker.connect(uri)


def run_info(uri: str, run_id: str) -> tracker.RunInfo:
    return store(uri).get_run_info(run_id)


def test_r_start_logs_into_the_tracker_store(qlib_store):
    frame = pd.DataFrame({"score": [0.1, 0.2]})
    with R.start(experiment_name="exp", recorder_name="rec") as exp:
        assert isinstance(exp, TrackerExperiment) and isinstance(exp, QlibExperiment)
        R.log_params(lr=0.1, model="lgb")
        R.log_metrics(step=0, loss=1.0)
        R.log_metrics(step=1, loss=0.5)
        R.set_tags(stage="dev")
        R.save_objects(**{"pred.pkl": frame})
        recorder = R.get_recorder()
        assert isinstance(recorder, QlibRecorder) and recorder.status == "RUNNING"
        run_id = recorder.id

    run = store(qlib_store).get_run(run_id)
    assert run.info.status is RunStatus.FINISHED and run.info.name == "rec"
    assert run.data.params["lr"] == "0.1" and run.data.params["model"] == "lgb"
    assert run.data.metrics == {"loss": 0.5} and run.data.tags["stage"] == "dev"
    assert [m.value for m in store(qlib_store).get_metric_history(run_id, "loss")] == [1.0, 0.5]
    again = R.get_recorder(recorder_id=run_id, experiment_name="exp")
    assert isinstance(again, TrackerRecorder) and again.status == "FINISHED"
    assert again.list_metrics() == {"loss": 0.5} and again.list_tags()["stage"] == "dev"
    assert again.list_params()["cmd-sys.argv"] == " ".join(sys.argv)
    pd.testing.assert_frame_equal(again.load_object("pred.pkl"), frame)


def test_an_exception_in_r_start_ends_the_run_failed(qlib_store):
    with pytest.raises(ZeroDivisionError), R.start(experiment_name="exp"):
        run_id = R.get_recorder().id
        1 / 0  # noqa: B018
    assert run_info(qlib_store, run_id).status is RunStatus.FAILED
    assert R.exp_manager.active_experiment is None


def test_a_nested_start_is_refused_and_the_outer_run_goes_on(qlib_store):
    with R.start(experiment_name="outer"):
        outer = R.get_recorder()
        with pytest.raises(InvalidStateError, match="'outer' is already active"):
            R.start_exp(experiment_name="inner")
        assert R.get_recorder() is outer
        R.log_metrics(m=1.0)
    assert run_info(qlib_store, outer.id).status is RunStatus.FINISHED
    assert "inner" not in R.list_experiments()


def test_missing_experiments_and_recorders_raise_value_error(qlib_store):
    with R.start(experiment_name="exp"):
        run_id = R.get_recorder().id
    with pytest.raises(ValueError, match="nope"):
        R.get_exp(experiment_name="nope", create=False)
    with pytest.raises(ValueError):
        R.get_exp(experiment_id="999", create=False)
    with pytest.raises(ValueError):
        R.get_recorder(recorder_id="0" * 32, experiment_name="exp")
    with pytest.raises(ValueError, match="ghost"):
        R.get_recorder(recorder_name="ghost", experiment_name="exp")
    with pytest.raises(ValueError):
        R.delete_exp(experiment_name="nope")
    with pytest.raises(ValueError):
        R.get_exp(experiment_name="exp").delete_recorder(recorder_id="0" * 32)
    # No default experiment exists yet, and nothing is active (Qlib: "raise Error").
    with pytest.raises(ValueError):
        R.get_recorder()
    R.get_exp(experiment_name="exp").delete_recorder(recorder_id=run_id)
    with pytest.raises(ValueError, match="deleted"):
        R.get_recorder(recorder_id=run_id, experiment_name="exp")
    R.delete_exp(experiment_name="exp")
    with pytest.raises(ValueError):
        R.get_exp(experiment_name="exp", create=False)
    assert "exp" not in R.list_experiments()


def test_creating_an_existing_experiment_raises_exp_already_exist(qlib_store):
    R.exp_manager.create_exp("dup")
    with pytest.raises(ExpAlreadyExistError):
        R.exp_manager.create_exp("dup")
    # get_exp's get-or-create returns the existing one.
    assert R.get_exp(experiment_name="dup").id == R.get_exp(experiment_name="dup").id
    assert list(R.list_experiments()) == ["dup"]


def test_logging_with_nothing_active_starts_the_default_recorder(qlib_store):
    R.log_metrics(m=1.0)
    exp = R.exp_manager.active_experiment
    assert exp is not None and exp.name == "Experiment"
    recorder = exp.active_recorder
    assert recorder.name == "mlflow_recorder" and recorder.status == "RUNNING"
    R.log_params(p="x")
    assert R.get_recorder() is recorder
    R.end_exp()
    info = run_info(qlib_store, recorder.id)
    assert info.status is RunStatus.FINISHED
    assert store(qlib_store).get_run(recorder.id).data.metrics == {"m": 1.0}


def test_resume_without_id_or_name_resumes_the_newest_default_recorder(qlib_store):
    with R.start(experiment_name="exp", resume=True):  # none yet: one is created
        first = R.get_recorder().id
    with R.start(experiment_name="exp"):
        second = R.get_recorder().id
    with R.start(experiment_name="exp", recorder_name="other"):
        pass
    with R.start(experiment_name="exp", resume=True):
        assert R.get_recorder().id == second
        R.log_metrics(after_resume=1.0)
    with R.start(experiment_name="exp", recorder_id=first, resume=True):
        assert R.get_recorder().id == first
    assert run_info(qlib_store, second).status is RunStatus.FINISHED
    assert store(qlib_store).get_run(second).data.metrics == {"after_resume": 1.0}
    assert len(R.list_recorders(experiment_name="exp")) == 3


class Model(Serializable):
    def __init__(self) -> None:
        self.weights = [1.0, 2.0]
        self._fitted_cache = "dropped by Serializable, as in Qlib"


def test_save_objects_pickles_whatever_the_name(qlib_store):
    objects = {"config.json": {"a": (1, 2)}, "frame.parquet": (1, "x"), "task": {"k": None}}
    with R.start(experiment_name="exp"):
        R.save_objects(**objects, artifact_path="sub")
        R.save_objects(model=Model())
        recorder = R.get_recorder()
    for name, obj in objects.items():
        assert recorder.load_object(f"sub/{name}") == obj  # a tuple survives: a pickle
        raw = store(qlib_store).artifacts.get_bytes(
            recorder.run_info.artifact_prefix, f"sub/{name}"
        )
        assert pickle.loads(raw) == obj
    model = recorder.load_object("model")
    assert model.weights == [1.0, 2.0] and not hasattr(model, "_fitted_cache")


def test_load_object_reads_what_trackers_own_r_wrote(qlib_store):
    frame = pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index(["x", "y"], name="k"))
    native = objects.get_exp(store(qlib_store), experiment_name="exp").start()
    native.save_objects(**{"frame.parquet": frame, "meta.json": {"n": 1}})
    native.end_run()
    recorder = R.get_recorder(recorder_id=native.id, experiment_name="exp")
    pd.testing.assert_frame_equal(recorder.load_object("frame.parquet"), frame)
    assert recorder.load_object("meta.json") == {"n": 1}


def test_record_templates_fall_back_to_the_parent_on_load_object_error(qlib_store):
    pred = pd.DataFrame({"score": [0.3]})
    with R.start(experiment_name="exp"):
        R.save_objects(**{"pred.pkl": pred})
        recorder = R.get_recorder()
    with pytest.raises(LoadObjectError, match="missing.pkl"):
        recorder.load_object("missing.pkl")
    # SigAnaRecord looks in sig_analysis/ first; Qlib's RecordTemp.load catches
    # qlib's LoadObjectError and reads SignalRecord's pred.pkl instead.
    pd.testing.assert_frame_equal(SigAnaRecord(recorder).load("pred.pkl"), pred)
    with pytest.raises(LoadObjectError):
        SigAnaRecord(recorder).load("pred.pkl", parents=False)


def test_an_artifact_changed_outside_tracker_is_refused(qlib_store):
    with R.start(experiment_name="exp"):
        R.save_objects(**{"pred.pkl": pd.DataFrame({"score": [0.3]})})
        recorder = R.get_recorder()
    path = Path(recorder.get_local_dir()) / "artifacts" / "pred.pkl"
    path.write_bytes(pickle.dumps(pd.DataFrame({"score": [9.9]})))
    with pytest.raises(LoadObjectError, match="pred.pkl.*sha256"):
        recorder.load_object("pred.pkl")


def test_params_and_metrics_go_to_a_finished_run_which_stays_finished(qlib_store):
    with R.start(experiment_name="exp"):
        run_id = R.get_recorder().id
    recorder = R.get_recorder(recorder_id=run_id, experiment_name="exp")
    recorder.log_metrics(IC=0.05)
    recorder.log_params(analysed="later")
    run = store(qlib_store).get_run(run_id)
    assert run.info.status is RunStatus.FINISHED
    assert run.data.metrics == {"IC": 0.05} and run.data.params["analysed"] == "later"


def test_get_local_dir_exists_for_a_run_without_artifacts(qlib_store):
    with R.start(experiment_name="exp"):
        recorder = R.get_recorder()
        assert recorder.list_artifacts() == []  # not a git work tree: no code files
    folder = Path(R.get_recorder(recorder_id=recorder.id, experiment_name="exp").get_local_dir())
    assert folder.is_dir() and folder.name == recorder.id
    assert recorder.get_artifact_uri() == f"file://{folder / 'artifacts'}"
    unsaved = R.get_exp(experiment_name="exp").create_recorder()
    with pytest.raises(ValueError):
        unsaved.get_local_dir()
    with pytest.raises(ValueError):
        unsaved.get_artifact_uri()


def test_list_and_get_recorders_as_qlib(qlib_store):
    ids = []
    for name in ("a", "b", "a"):
        with R.start(experiment_name="exp", recorder_name=name):
            ids.append(R.get_recorder().id)
    with pytest.raises(KeyError), R.start(experiment_name="exp", recorder_name="c"):
        ids.append(R.get_recorder().id)
        raise KeyError("fails")
    exp = R.get_exp(experiment_name="exp")
    recorders = exp.list_recorders()
    assert list(recorders) == ids[::-1]  # {id: recorder}, newest first
    assert all(isinstance(r, TrackerRecorder) for r in recorders.values())
    listed = exp.list_recorders(rtype=exp.RT_L, status=QlibRecorder.STATUS_FI)
    assert [r.id for r in listed] == ids[2::-1]
    assert list(R.list_recorders(experiment_name="exp")) == ids[::-1]
    assert exp.get_recorder(recorder_name="a").id == ids[2]  # the newest of the name
    got = R.get_recorder(recorder_id=ids[0], recorder_name="b", experiment_name="exp")
    assert got.id == ids[0] and got == recorders[ids[0]]  # the id wins
    assert exp.get_recorder(recorder_id=ids[1], create=False).name == "b"
    assert exp.info["recorders"] == ids[::-1]


def test_uri_switches_stores_and_get_uri_returns_what_was_given(qlib_store, tmp_path):
    assert R.get_uri() == qlib_store
    other = str(tmp_path / "other")  # a plain directory is a tracker store too
    with R.start(experiment_name="exp", uri=other):
        assert R.get_uri() == other
        run_id = R.get_recorder().id
    assert R.get_uri() == qlib_store  # the default is unchanged (test_all_pipeline's check)
    assert store(other).get_run_info(run_id).status is RunStatus.FINISHED
    assert store(qlib_store).find_experiment("exp") is None
    with pytest.raises(ValueError):
        R.get_recorder(recorder_id=run_id, experiment_name="exp")
    # Qlib's test_get_local_dir: no active run, the default recorder found under uri_context.
    with R.uri_context(other):
        assert R.get_uri() == other
        found = R.get_recorder(experiment_name="exp")
        assert found.id == run_id and Path(found.get_local_dir()).is_dir()
    R.set_uri(other)
    assert R.get_uri() == other and "exp" in R.list_experiments()


def test_search_records_returns_a_dataframe(qlib_store):
    for value in (0.1, 0.3, 0.2):
        with R.start(experiment_name="exp"):
            R.log_metrics(IC=value)
    exp_id = R.get_exp(experiment_name="exp").id
    frame = R.search_records([exp_id], order_by=["metrics.IC DESC"])
    assert list(frame["metrics.IC"]) == [0.3, 0.2, 0.1]
    picked = R.search_records([exp_id], filter_string="metrics.IC > 0.15", max_results=1)
    assert len(picked) == 1 and picked["metrics.IC"].iloc[0] in (0.3, 0.2)
    assert len(R.get_exp(experiment_name="exp").search_records()) == 3


def test_qlib_refuses_to_reinitialise_while_an_experiment_is_active(qlib_store, provider_dir):
    import qlib

    R.start_exp(experiment_name="exp")
    with pytest.raises(RecorderInitializationError):
        qlib.init(provider_uri=str(provider_dir), region="us")
    R.end_exp()


SCRIPT = """
import os, sys, time
import qlib
from qlib.workflow import R
qlib.init(provider_uri={provider!r}, region="us", exp_manager={{
    "class": "TrackerExpManager", "module_path": "tracker.qlib",
    "kwargs": {{"uri": {uri!r}}}}})
print("ready", flush=True)
while not os.path.exists("go"):
    time.sleep(0.01)
R.log_metrics(started=1.0)  # starts the default experiment and recorder
print(R.get_recorder().id, flush=True)
mode = sys.argv[1]
if mode == "raise":
    raise RuntimeError("boom")
if mode == "hang":
    time.sleep(600)
"""


def spawn(tmp_path: Path, uri: str, provider: Path, *modes: str) -> list[subprocess.Popen[str]]:
    """Processes logging through Qlib's R once all of them are ready (``go`` appears)."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SCRIPT.format(provider=str(provider), uri=uri)))
    env = {**os.environ, "TRACKER_HEARTBEAT_INTERVAL": "0.2"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), mode],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for mode in modes
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    (tmp_path / "go").touch()
    return procs


@pytest.mark.slow
def test_qlib_exit_hooks_end_runs_and_concurrent_processes_share_one_experiment(
    qlib_store, provider_dir, tmp_path
):
    procs = spawn(tmp_path, qlib_store, provider_dir, "exit", "exit", "raise")
    done = [p.communicate(timeout=120) for p in procs]
    run_ids = [out.split()[0] for out, _ in done]  # Qlib's excepthook prints after it
    statuses = [run_info(qlib_store, r).status.value for r in run_ids]
    assert statuses == ["FINISHED", "FINISHED", "FAILED"], [err for _, err in done]
    # Three processes created the default experiment at once: one experiment, three runs.
    assert [e.name for e in store(qlib_store).list_experiment_infos()] == ["Experiment"]
    assert set(R.list_recorders(experiment_name="Experiment")) == set(run_ids)
    for run_id in run_ids:
        assert store(qlib_store).get_run(run_id).data.metrics == {"started": 1.0}


@pytest.mark.slow
def test_a_killed_qlib_process_leaves_a_stale_run_that_reap_ends(
    qlib_store, provider_dir, tmp_path
):
    (proc,) = spawn(tmp_path, qlib_store, provider_dir, "hang")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    time.sleep(0.5)  # a few heartbeats
    assert run_info(qlib_store, run_id).heartbeat is not None
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert run_info(qlib_store, run_id).status is RunStatus.RUNNING
    time.sleep(1.0)
    reaped = store(qlib_store).reap(stale_after=0.5)
    assert [r.run_id for r in reaped] == [run_id]
    assert run_info(qlib_store, run_id).status is RunStatus.FAILED


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_end_the_qlib_run_killed(qlib_store, provider_dir, tmp_path, signum):
    (proc,) = spawn(tmp_path, qlib_store, provider_dir, "hang")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    proc.send_signal(signum)
    proc.communicate(timeout=60)
    assert run_info(qlib_store, run_id).status is RunStatus.KILLED
    assert store(qlib_store).get_run(run_id).data.metrics == {"started": 1.0}
