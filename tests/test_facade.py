"""``R`` with Qlib's semantics, on a local store in the test's working directory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import tracker
from tracker import (
    ExperimentNotFound,
    InvalidInputError,
    InvalidStateError,
    R,
    RunNotFound,
)


def test_start_yields_recorder_and_finishes(tmp_path):
    tracker.init(tmp_path / "s")
    with R.start(experiment_name="e", recorder_name="r") as rec:
        assert R.get_recorder() is rec
        assert R.get_exp().name == "e"
        R.log_params(a=1)
        R.log_metrics(step=0, m=1.0)
        R.set_tags(t="x")
    assert rec.refresh().status == "FINISHED"
    assert rec.list_params()["a"] == "1"
    assert rec.list_tags()["t"] == "x"
    assert R.active_experiment is None


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ValueError("boom"), "FAILED"),
        (KeyboardInterrupt(), "KILLED"),
        (SystemExit(3), "FAILED"),
        (SystemExit(0), "FINISHED"),
    ],
    ids=["exception", "ctrl-c", "exit-3", "exit-0"],
)
def test_start_ends_by_how_the_block_ends(tmp_path, exc, status):
    tracker.init(tmp_path / "s")
    with pytest.raises(type(exc)), R.start(experiment_name="e") as rec:
        raise exc
    assert rec.refresh().status == status
    assert R.active_experiment is None


def test_one_active_experiment(tmp_path):
    tracker.init(tmp_path / "s")
    with R.start(experiment_name="a"):
        with pytest.raises(InvalidStateError, match="already active"), R.start(experiment_name="b"):
            pass
        with pytest.raises(InvalidStateError, match="re-initialise"):
            tracker.init(tmp_path / "other")


def test_logging_with_nothing_active_auto_starts_default(tmp_path):
    tracker.init(tmp_path / "s")
    R.log_metrics(x=1.0)
    rec = R.get_recorder()
    assert rec.name == "mlflow_recorder" and R.get_exp().name == "Experiment"
    assert rec.status == "RUNNING"
    R.end_exp()
    assert rec.refresh().status == "FINISHED"


def test_reset_ends_the_active_run_and_forgets_the_default_store(tmp_path, monkeypatch):
    tracker.init(tmp_path / "s", default_exp_name="Mine")
    R.log_metrics(x=1.0)  # auto-started in the default experiment
    rec = R.get_recorder()
    R.reset()
    assert R.active_experiment is None
    assert rec.refresh().status == "FINISHED"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("TRACKER_URI", str(tmp_path / "elsewhere"))
    assert R.get_uri() == f"sqlite:///{tmp_path}/elsewhere/tracker.db"  # resolved again
    assert R.exp_manager.default_exp_name == "Experiment"
    R.reset()  # nothing active: a no-op apart from forgetting the store


def test_get_recorder_resolution(tmp_path):
    tracker.init(tmp_path / "s")
    with R.start(experiment_name="e", recorder_name="same"):
        pass
    with R.start(experiment_name="e", recorder_name="same") as newer:
        pass
    got = R.get_recorder(recorder_name="same", experiment_name="e")
    assert got.id == newer.id  # newest of the name
    assert R.get_recorder(recorder_id=newer.id, experiment_name="e") == newer
    with pytest.raises(RunNotFound):
        R.get_recorder(recorder_name="missing", experiment_name="e")
    with pytest.raises(ExperimentNotFound):
        R.get_recorder(recorder_name="same", experiment_name="nope")
    # list_recorders of an unknown experiment does not create it (a Qlib bug)
    with pytest.raises(ExperimentNotFound):
        R.list_recorders(experiment_name="nope")
    assert "nope" not in R.list_experiments()
    assert list(R.list_recorders(experiment_name="e"))[0] == newer.id


def test_delete_recorder_in_named_experiment(tmp_path):
    tracker.init(tmp_path / "s")
    with R.start(experiment_name="e", recorder_name="r") as rec:
        pass
    R.delete_recorder(recorder_id=rec.id, experiment_name="e")
    assert R.list_recorders(experiment_name="e") == {}
    R.delete_exp(experiment_name="e")
    assert "e" not in R.list_experiments()


def test_objects_and_artifacts_through_r(tmp_path):
    tracker.init(tmp_path / "s")
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with R.start(experiment_name="e") as rec:
        R.save_objects(**{"pred.pkl": frame})
        (tmp_path / "f.txt").write_text("hi")
        R.log_artifact(tmp_path / "f.txt", "files")
        with pytest.raises(InvalidInputError, match="not both"):
            R.save_objects(tmp_path / "f.txt", **{"a.pkl": 1})
        assert R.list_artifacts() == ["files", "pred.pkl"]
        path = R.download_artifact("files/f.txt")
        assert open(path).read() == "hi"  # noqa: SIM115
    pd.testing.assert_frame_equal(
        R.get_recorder(recorder_id=rec.id, experiment_name="e").load_object("pred.pkl"), frame
    )
    assert rec.get_local_dir().endswith(rec.id)


def test_search_records_through_r(tmp_path):
    tracker.init(tmp_path / "s")
    for i in range(3):
        with R.start(experiment_name="e"):
            R.log_metrics(IC=i / 10)
            R.log_params(i=i)
    exp = R.get_exp(experiment_name="e")
    df = R.search_records([exp.id], filter_string="metrics.IC >= 0.1", order_by=["metrics.IC DESC"])
    assert list(df["params.i"]) == ["2", "1"]


def test_uri_context_and_set_uri(tmp_path):
    tracker.init(tmp_path / "a")
    with R.start(experiment_name="e", uri=str(tmp_path / "b")) as rec:
        assert str(tmp_path / "b") in R.get_uri()
    assert str(tmp_path / "a") in R.get_uri()
    with pytest.raises(LookupError):
        R.get_recorder(recorder_id=rec.id, experiment_name="e")
    with R.uri_context(str(tmp_path / "b")):
        assert R.get_recorder(recorder_id=rec.id, experiment_name="e").status == "FINISHED"
    R.set_uri(str(tmp_path / "b"))
    assert str(tmp_path / "b") in R.get_uri()


def test_init_accepts_qlib_config_form(tmp_path):
    manager = tracker.init(
        exp_manager={
            "class": "MLflowExpManager",
            "module_path": "qlib.workflow.expm",
            "kwargs": {"uri": f"file:{tmp_path}/mlruns", "default_exp_name": "Default"},
        }
    )
    assert manager.uri == f"sqlite:///{tmp_path}/mlruns/tracker.db"
    with R.start() as rec:
        pass
    assert R.get_exp(experiment_id=rec.experiment_id).name == "Default"


def test_default_store_is_found_upwards(tmp_path, monkeypatch):
    (tmp_path / "project" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    with R.start(experiment_name="e"):
        pass
    assert (tmp_path / "project" / ".tracker" / "tracker.db").exists()
    R.reset()
    monkeypatch.chdir(tmp_path / "project" / "deep")
    assert "project/.tracker" in R.get_uri()


QLIB_SCRIPT = """
from tracker import R
import pandas as pd
with R.start(experiment_name="qlib_style"):
    R.log_params(model="lgb", lr=0.05)
    for step in range(50):
        R.log_metrics(step=step, IC=step / 100)
    R.save_objects(**{"pred.pkl": pd.DataFrame({"score": [1.0, 2.0]})})
    print(R.get_recorder().id)
"""

READ_SCRIPT = """
import sys
from tracker import R
rec = R.get_recorder(recorder_id=sys.argv[1], experiment_name="qlib_style")
print(rec.status, rec.list_metrics()["IC"], rec.load_object("pred.pkl")["score"].sum())
"""


@pytest.mark.slow
def test_qlib_style_script_then_new_process(tmp_path):
    """Qlib code ported by changing its imports, read back from another process."""
    run = subprocess.run(
        [sys.executable, "-c", QLIB_SCRIPT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    run_id = run.stdout.strip()
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(READ_SCRIPT), run_id],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert out.stdout.split() == ["FINISHED", "0.49", "3.0"]


def test_heartbeat_is_refreshed_in_the_background(tmp_path, use_writer):
    import time

    use_writer(heartbeat_interval=0.05)
    tracker.init(tmp_path / "s")
    with R.start(experiment_name="hb") as rec:
        first = rec.refresh().run_info.heartbeat
        info = rec.run_info
        assert info.pid is not None and info.host
        time.sleep(0.5)
        assert rec.refresh().run_info.heartbeat > first
        assert R.exp_manager.stale_runs(stale_after=5) == []


def test_not_found_is_a_value_error_as_in_qlib(tmp_path):
    """Qlib raises ValueError for a missing experiment or recorder, and Qlib code catches
    ValueError (examples/run_all_model.py, qlib/contrib/rolling); LookupError still works."""
    R.set_uri(str(tmp_path / "store"))
    with R.start(experiment_name="exp"):
        pass
    missing = [
        lambda: R.get_exp(experiment_name="nope", create=False),
        lambda: R.get_recorder(recorder_id="0" * 32, experiment_name="exp"),
        lambda: R.get_recorder(recorder_name="nope", experiment_name="exp"),
        lambda: R.delete_exp(experiment_name="nope"),
        lambda: R.delete_recorder(recorder_id="0" * 32, experiment_name="exp"),
    ]
    for call in missing:
        with pytest.raises(ValueError) as info:
            call()
        assert isinstance(info.value, LookupError)
