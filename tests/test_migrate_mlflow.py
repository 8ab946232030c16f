"""`tracker import mlflow` / `tracker export mlflow` against stores made by the real mlflow
package: a file store (mlruns) and a SQLite database with the same content, compared value by
value with what MLflow's own client reads back."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tracker
from tracker import objects
from tracker.cli.main import cli
from tracker.entities import Lifecycle, RunStatus, ViewType

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.entities import ViewType as MLflowView  # noqa: E402

pytestmark = [
    pytest.mark.mlflow,
    # MLflow 3.17's SQL store uses a loader strategy SQLAlchemy 2.1 deprecates; not ours.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]

NAN, INF = float("nan"), float("inf")
T0 = 1_700_000_000_000
MAX = sys.float_info.max
# Tags MLflow adds by itself to runs that an export writes.
EXPORT_TAGS = {"mlflow.runName", "tracker.source_run_id"}


@dataclass
class Source:
    uri: str  # what `tracker import mlflow` is given
    tracking_uri: str  # what MlflowClient is given
    runs: dict[str, str]  # label -> MLflow run id
    kind: str  # "files" | "sqlite"

    @property
    def client(self) -> Any:
        return MlflowClient(tracking_uri=self.tracking_uri)


# -------------------------------------------------------------------------------- helpers


def invoke(uri: Path | str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--uri", str(uri), *args])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def failed(result: Result, *needles: str) -> Result:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def points(history: list[Any], sql: bool = False) -> list[tuple[int, int, float]]:
    """(step, timestamp, value), in MLflow's order; MLflow's SQL store clamps ±inf."""
    out = []
    for m in history:
        value = m.value
        if sql and abs(value) == MAX:
            value = math.copysign(INF, value)
        out.append((m.step, m.timestamp, value))
    return sorted(out, key=lambda p: (p[0], p[1], repr(p[2])))


def same_points(a: list[tuple[int, int, float]], b: list[tuple[int, int, float]]) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and same_float(x[2], y[2]) for x, y in zip(a, b, strict=True)
    )


def mlflow_files(client: Any, run_id: str, tmp: Path) -> dict[str, str]:
    """Every artifact of an MLflow run as path -> sha256, through MLflow's client."""
    out = {}
    local = Path(client.download_artifacts(run_id, "", str(tmp)))
    for path in local.rglob("*"):
        if path.is_file():
            out[path.relative_to(local).as_posix()] = sha(path.read_bytes())
    return out


def native_files(m: tracker.ExpManager, run_id: str) -> dict[str, str]:
    info = m.get_run_info(run_id)
    out = {}
    for entry in m.list_artifact_entries(run_id):
        assert sha(m.artifacts.get_bytes(info.artifact_prefix, entry.path)) == entry.checksum
        out[entry.path] = entry.checksum
    return out


def all_mlflow_runs(client: Any) -> Iterator[tuple[Any, Any]]:
    for exp in client.search_experiments(view_type=MLflowView.ALL):
        for run in client.search_runs([exp.experiment_id], run_view_type=MLflowView.ALL):
            yield exp, run


def assert_imported(source: Source, m: tracker.ExpManager, tmp: Path, deleted: bool) -> int:
    """Every run of ``source`` (deleted ones when ``deleted``) is in ``m`` with every value
    MLflow's client returns; returns how many runs were compared."""
    client, count = source.client, 0
    for exp, run in all_mlflow_runs(client):
        gone = exp.lifecycle_stage == "deleted" or run.info.lifecycle_stage == "deleted"
        rid = run.info.run_id
        if gone and not deleted:
            assert not m.find_runs(rid), f"deleted run {rid} was imported"
            continue
        info = m.get_run_info(rid)
        assert m.get_experiment(info.experiment_id).name == exp.name
        assert info.name == run.info.run_name
        assert info.status.value == run.info.status
        assert (info.start_time, info.end_time) == (run.info.start_time, run.info.end_time)
        assert info.lifecycle is (Lifecycle.DELETED if gone else Lifecycle.ACTIVE)
        data = m.get_runs_data([rid])[rid]
        assert data.params == run.data.params
        assert data.tags == run.data.tags  # mlflow.* system tags included
        assert set(data.metrics) == set(run.data.metrics)
        for key in run.data.metrics:
            if key == "legacy":
                # MLflow 3.17 writes "<ts> <value> <step> <dataset> <digest>" but reads such a
                # line back with step 0; we keep the step written. Checked by the caller.
                continue
            theirs = points(client.get_metric_history(rid, key), sql=source.kind == "sqlite")
            ours = points(m.get_metric_history(rid, key))
            assert same_points(ours, theirs), (key, ours, theirs)
        assert native_files(m, rid) == mlflow_files(client, rid, tmp / rid)
        count += 1
    return count


# ------------------------------------------------------------------------- the MLflow stores


def populate(client: Any, art_root: Path, scratch: Path) -> dict[str, str]:
    """Experiments alpha, beta and gone (deleted), runs in every status, histories with NaN
    and ±inf, "/" in keys, nested artifact folders, a deleted run."""
    runs: dict[str, str] = {}
    alpha = client.create_experiment("alpha", artifact_location=str(art_root / "alpha"))
    beta = client.create_experiment("beta", artifact_location=str(art_root / "beta"))
    gone = client.create_experiment("gone", artifact_location=str(art_root / "gone"))

    def start(exp: str, label: str, offset: int) -> str:
        run = client.create_run(exp, start_time=T0 + offset, run_name=label)
        runs[label] = run.info.run_id
        return run.info.run_id

    rid = start(alpha, "finished", 0)
    loss = [1.0, NAN, INF, -INF, 0.5, 0.25]
    client.log_batch(
        rid,
        metrics=[Metric("loss", v, T0 + i, i) for i, v in enumerate(loss)]
        + [Metric("loss", 0.2, T0 + 99, 5)]  # a second point at step 5
        + [Metric("eval/ic", i / 10, T0 + 10 * i, i * 10) for i in range(4)],
        params=[Param("lr", "0.1"), Param("model/depth", "6"), Param("empty", "")],
        tags=[RunTag("a/b/c", "nested"), RunTag("note", "unicode ✓\r\nline two")],
    )
    files = scratch / "files"
    (files / "model" / "weights").mkdir(parents=True)
    (files / "model" / "weights" / "w.bin").write_bytes(os.urandom(4096))
    (files / "model" / "config.json").write_text('{"depth": 6}')
    client.log_artifacts(rid, str(files))
    (scratch / "pred.pkl").write_bytes(b"\x80\x05pred")
    client.log_artifact(rid, str(scratch / "pred.pkl"), "report/deep/er")
    client.set_terminated(rid, "FINISHED", end_time=T0 + 5000)

    rid = start(alpha, "failed", 10)
    client.log_metric(rid, "loss", 3.0, timestamp=T0 + 11, step=0)
    client.set_terminated(rid, "FAILED", end_time=T0 + 20)
    client.set_terminated(start(alpha, "killed", 30), "KILLED", end_time=T0 + 40)
    start(alpha, "running", 50)  # left RUNNING, as a crashed process leaves it
    rid = start(alpha, "deleted", 60)
    client.log_param(rid, "p", "x")
    client.set_terminated(rid, "FINISHED", end_time=T0 + 70)
    client.delete_run(rid)

    rid = start(beta, "b1", 100)
    client.log_artifact(rid, str(scratch / "pred.pkl"))
    client.set_terminated(rid, "FINISHED", end_time=T0 + 200)
    client.update_run(start(beta, "scheduled", 110), status="SCHEDULED")

    rid = start(gone, "g1", 300)
    client.log_metric(rid, "m", 1.5, timestamp=T0 + 301, step=2)
    client.set_terminated(rid, "FINISHED", end_time=T0 + 400)
    client.delete_experiment(gone)
    return runs


def add_legacy_lines(mlruns: Path, run_id: str) -> None:
    """Metric lines older MLflow versions wrote: no step, dataset fields, 'Infinity'."""
    (metrics,) = mlruns.glob(f"*/{run_id}/metrics")
    (metrics / "legacy").write_text(
        f"{T0} 0.5\n{T0 + 1} Infinity 1\n{T0 + 2} nan 2 train abc123\n{T0 + 3} -inf\n"
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Source]:
    """The same runs in an MLflow file store and in an MLflow SQLite database."""
    base = tmp_path_factory.mktemp("mlflow")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        mp.chdir(base)  # MLflow puts the Default experiment's artifacts under ./mlruns
        mlruns = base / "mlruns"
        runs = populate(MlflowClient(f"file:{mlruns}"), base / "art-files", base / "s1")
        add_legacy_lines(mlruns, runs["finished"])
        out["files"] = Source(str(mlruns), f"file:{mlruns}", runs, "files")
        db = f"sqlite:///{base / 'mlflow.db'}"
        (base / "sql-cwd").mkdir()
        mp.chdir(base / "sql-cwd")  # not beside mlruns: ./mlruns/<id> would land in it
        runs = populate(MlflowClient(db), base / "art-sql", base / "s2")
        out["sqlite"] = Source(db, db, runs, "sqlite")
    return out


@pytest.fixture(params=["files", "sqlite"])
def source(request, sources, monkeypatch) -> Source:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # for MLflow's client in checks
    return sources[request.param]


# ---------------------------------------------------------------------------------- import


def test_import_matches_mlflow_value_by_value(source, tmp_path):
    dst = tmp_path / "native"
    data = json.loads(ok(invoke(dst, "import", "mlflow", source.uri, "--json")).stdout)
    runs = source.runs
    active = {runs[k] for k in ("finished", "failed", "killed", "running", "b1", "scheduled")}
    assert set(data["imported"]) == active and data["skipped"] == []
    assert set(data["excluded"]) == {runs["deleted"], runs["g1"]}
    assert data["experiments"] == ["alpha", "beta"]
    assert data["artifacts"] == 4 and data["artifacts_skipped"] == []
    legacy = 4 if source.kind == "files" else 0
    assert data["metric_points"] == 7 + 4 + 1 + legacy
    m = tracker.connect(dst)
    assert assert_imported(source, m, tmp_path, deleted=False) == 6
    finished = m.get_run_info(runs["finished"])
    assert finished.status is RunStatus.FINISHED and finished.end_time == T0 + 5000
    assert m.get_run_info(runs["running"]).heartbeat is None  # judged by start time, not alive
    if source.kind == "files":  # legacy lines: no step -> 0, Infinity, dataset fields dropped
        got = points(m.get_metric_history(runs["finished"], "legacy"))
        want = [(0, T0, 0.5), (0, T0 + 3, -INF), (1, T0 + 1, INF), (2, T0 + 2, NAN)]
        assert same_points(got, want), got

    again = json.loads(ok(invoke(dst, "import", "mlflow", source.uri, "--json")).stdout)
    assert again["imported"] == [] and set(again["skipped"]) == active
    assert again["metric_points"] == 0 and again["artifacts"] == 0

    out = ok(invoke(dst, "import", "mlflow", source.uri, "--include-deleted")).stdout
    assert "Imported 2 run(s)" in out and "skipped 6" in out
    assert assert_imported(source, m, tmp_path, deleted=True) == 8
    assert m.get_run_info(runs["deleted"]).lifecycle is Lifecycle.DELETED
    (gone,) = [e for e in m.list_experiment_infos(ViewType.ALL) if e.name == "gone"]
    assert gone.lifecycle is Lifecycle.DELETED  # created deleted, like its source
    assert m.find_experiment("gone") is None


def test_import_one_experiment_and_unknown_names(sources, tmp_path):
    source = sources["sqlite"]
    data = json.loads(
        ok(invoke(tmp_path / "n", "import", "mlflow", source.uri, "-e", "beta", "--json")).stdout
    )
    assert set(data["imported"]) == {source.runs["b1"], source.runs["scheduled"]}
    assert tracker.connect(tmp_path / "n").get_run_info(source.runs["scheduled"]).status == (
        RunStatus.SCHEDULED
    )
    failed(invoke(tmp_path / "n", "import", "mlflow", source.uri, "-e", "nope"), "nope")


def test_import_refuses_what_is_not_an_mlflow_store(tmp_path):
    (tmp_path / "empty").mkdir()
    failed(invoke(tmp_path / "n", "import", "mlflow", str(tmp_path / "empty")), "not an MLflow")
    failed(invoke(tmp_path / "n", "import", "mlflow", str(tmp_path / "nope")), "not a directory")
    failed(invoke(tmp_path / "n", "import", "mlflow", "http://localhost:5000"), "backend-store")
    failed(invoke(tmp_path / "n", "import", "mlflow", "sqlite:///nope.db"), "no such SQLite")
    # Our own database has tables of the same names, but not MLflow's columns.
    tracker.connect(f"sqlite:///{tmp_path / 'ours.db'}")
    failed(invoke(tmp_path / "n", "import", "mlflow", str(tmp_path / "ours.db")), "not an MLflow")


def test_a_damaged_file_store_imports_nothing(sources, tmp_path):
    import shutil

    mlruns = tmp_path / "mlruns"
    shutil.copytree(sources["files"].uri, mlruns)
    (metrics,) = mlruns.glob(f"*/{sources['files'].runs['b1']}/metrics")
    (metrics / "bad").write_text(f"{T0} 1.0 0\n{T0} not-a-number 1\n")
    result = failed(invoke(tmp_path / "n", "import", "mlflow", str(mlruns)), "bad:2", "could not")
    assert "b1" not in result.stdout
    assert tracker.connect(tmp_path / "n").search_run_infos(view=ViewType.ALL) == []


@pytest.mark.postgres
def test_import_from_postgresql(pg_uri, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        runs = populate(MlflowClient(pg_uri), tmp_path / "art", tmp_path / "s")
    source = Source(pg_uri, pg_uri, runs, "sqlite")  # same clamping of inf as SQLite
    # MLflow's spelling, which means psycopg2; the reader falls back to psycopg 3.
    uri = pg_uri.replace("postgresql+psycopg://", "postgresql://")
    ok(invoke(tmp_path / "n", "import", "mlflow", uri, "--include-deleted"))
    m = tracker.connect(tmp_path / "n")
    assert assert_imported(source, m, tmp_path, deleted=True) == 8


def small_file_store(root: Path, scratch: Path) -> tuple[str, Path]:
    """One run with an artifact, in a file store keeping artifacts inside mlruns."""
    client = MlflowClient(f"file:{root}")
    run = client.create_run(client.create_experiment("e"), run_name="r")
    (scratch / "d").mkdir(parents=True)
    (scratch / "d" / "f.txt").write_text("payload")
    client.log_artifacts(run.info.run_id, str(scratch / "d"), "sub")
    client.set_terminated(run.info.run_id)
    (meta,) = root.glob(f"*/{run.info.run_id}/meta.yaml")
    return run.info.run_id, meta


def test_a_moved_mlruns_tree_keeps_its_artifacts(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    rid, _ = small_file_store(tmp_path / "old", tmp_path / "s")
    shutil.move(tmp_path / "old", tmp_path / "new")  # meta.yaml still names .../old/...
    ok(invoke(tmp_path / "n", "import", "mlflow", f"file://{tmp_path / 'new'}"))
    m = tracker.connect(tmp_path / "n")
    info = m.get_run_info(rid)
    assert m.artifacts.get_bytes(info.artifact_prefix, "sub/f.txt") == b"payload"


def test_unreachable_artifacts_are_reported_and_the_run_imported(tmp_path, monkeypatch):
    import shutil

    import yaml

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    rid, meta = small_file_store(tmp_path / "mlruns", tmp_path / "s")
    doc = yaml.safe_load(meta.read_text())
    doc["artifact_uri"] = f"mlflow-artifacts:/1/{rid}/artifacts"  # a server's, not reachable
    meta.write_text(yaml.safe_dump(doc))
    shutil.rmtree(meta.parent / "artifacts")
    (meta.parent / "artifacts").mkdir()  # an empty local folder must not hide the skip
    result = ok(invoke(tmp_path / "n", "import", "mlflow", str(tmp_path / "mlruns"), "--json"))
    data = json.loads(result.stdout)
    assert data["imported"] == [rid] and data["artifacts"] == 0
    (skip,) = data["artifacts_skipped"]
    assert skip["run_id"] == rid and "tracking server" in skip["reason"]
    assert f"warning: run {rid}: artifacts not copied" in result.stderr


def test_readers_do_not_import_mlflow(sources):
    code = (
        "import sys\n"
        "from tracker.migrate.mlflow_source import open_mlflow_source\n"
        f"for uri in {[sources['files'].uri, sources['sqlite'].uri]!r}:\n"
        "    src = open_mlflow_source(uri)\n"
        "    assert [r.load() for r in src.runs()]\n"
        "    src.close()\n"
        "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# ------------------------------------------------------------------------------ round trip


def native_store(path: Path) -> tracker.ExpManager:
    m = tracker.connect(path)
    exp = objects.get_exp(m, experiment_name="A")
    rec = exp.start(recorder_name="r1")
    rec.log_params(lr=0.1, model="lgbm", **{"nested/key": "v"})
    for step, value in enumerate([1.0, NAN, INF, -INF, 0.5]):
        rec.log_metrics(step=step, loss=value, ic=step / 10)
    rec.set_tags(note="first", **{"a/b": "c"})
    rec.save_objects(**{"pred.pkl": {"a": [1, 2, 3]}, "sub/deep/x.json": {"k": "v"}})
    rec.end_run()
    r2 = exp.start(recorder_name="r2")
    r2.log_metrics(step=0, loss=3.0)
    r2.end_run("KILLED")
    r3 = objects.get_exp(m, experiment_name="B").start(recorder_name="r3")
    r3.end_run("FAILED")
    return m


def same_run(
    m: tracker.ExpManager, m2: tracker.ExpManager, rid: str, extra: dict[str, str]
) -> None:
    """Run ``rid`` holds the same in both stores; ``m2``'s has the tags ``extra`` on top."""
    a, b = m.get_run_info(rid), m2.get_run_info(rid)
    assert (b.name, b.status, b.lifecycle, b.start_time, b.end_time) == (
        a.name,
        a.status,
        a.lifecycle,
        a.start_time,
        a.end_time,
    )
    assert m.get_experiment(a.experiment_id).name == m2.get_experiment(b.experiment_id).name
    da, db = m.get_runs_data([rid])[rid], m2.get_runs_data([rid])[rid]
    assert da.params == db.params
    assert db.tags == {**da.tags, **extra}
    assert set(da.metrics) == set(db.metrics)
    for key in da.metrics:
        assert same_points(
            points(m.get_metric_history(rid, key)), points(m2.get_metric_history(rid, key))
        ), key
    assert native_files(m, rid) == native_files(m2, rid)


@pytest.mark.parametrize("kind", ["sqlite", "dir"])
def test_round_trip_native_mlflow_native(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    src = tmp_path / "src"
    m = native_store(src)
    dest = f"sqlite:///{tmp_path / 'out.db'}" if kind == "sqlite" else str(tmp_path / "mlruns")
    args = ("export", "mlflow", "-e", "A", "B/r3", dest, "--json")
    data = json.loads(ok(invoke(src, *args)).stdout)
    ours = {i.run_id for i in m.search_run_infos()}
    assert set(data["exported"]) == ours and data["skipped"] == {}
    again = json.loads(ok(invoke(src, *args)).stdout)
    assert again["exported"] == {} and again["skipped"] == data["exported"]

    # Into the store they came from: they are there already, nothing is added.
    home = json.loads(ok(invoke(src, "import", "mlflow", dest, "--json")).stdout)
    assert home["imported"] == [] and set(home["skipped"]) == set(data["exported"].values())
    assert {i.run_id for i in m.search_run_infos(view=ViewType.ALL)} == ours

    # Into a new store: every run comes back under its own id, as it was.
    back = tmp_path / "back"
    ok(invoke(back, "import", "mlflow", dest))
    m2 = tracker.connect(back)
    assert {i.run_id for i in m2.search_run_infos(view=ViewType.ALL)} == ours
    for rid in ours:
        same_run(m, m2, rid, {"mlflow.runName": m.get_run_info(rid).name})
    # ... so that exporting from there, or importing again, adds nothing either.
    again = json.loads(ok(invoke(back, *args)).stdout)
    assert again["exported"] == {} and again["skipped"] == data["exported"]
    twice = json.loads(ok(invoke(back, "import", "mlflow", dest, "--json")).stdout)
    assert twice["imported"] == [] and len(twice["skipped"]) == len(ours)
    if kind == "sqlite":
        assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not in the cwd


def test_round_trip_mlflow_native_mlflow_adds_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(db)
    runs = populate(client, tmp_path / "art", tmp_path / "scratch")
    before = {r.info.run_id for _, r in all_mlflow_runs(client)}
    ok(invoke(tmp_path / "n", "import", "mlflow", db, "--include-deleted"))
    for exp in ("alpha", "beta", "gone"):
        args = ("export", "mlflow", "-e", exp, "--include-deleted", db, "--json")
        data = json.loads(ok(invoke(tmp_path / "n", *args)).stdout)
        assert data["exported"] == {} and data["skipped"]
        assert all(k == v for k, v in data["skipped"].items())  # recognised by their own ids
    assert {r.info.run_id for _, r in all_mlflow_runs(client)} == before
    assert set(runs.values()) <= before


def test_deleted_experiments_and_runs_export_as_deleted(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    src = tmp_path / "src"
    m = native_store(src)
    r2 = m.search_run_infos(filter_string="run_name = 'r2'")[0].run_id
    ok(invoke(src, "rm", "-y", r2))
    ok(invoke(src, "rm", "-y", "-e", "B"))
    (r3,) = [i.run_id for i in m.search_run_infos(view=ViewType.ALL) if i.name == "r3"]
    dest = f"sqlite:///{tmp_path / 'out.db'}"
    failed(invoke(src, "export", "mlflow", "-e", "B", dest), "is deleted", "--include-deleted")

    ok(invoke(src, "export", "mlflow", "-e", "A", dest))  # r1 only: r2 is deleted
    data = json.loads(
        ok(invoke(src, "export", "mlflow", "-e", "A", "--include-deleted", dest, "--json")).stdout
    )
    assert set(data["exported"]) == {r2}
    data = json.loads(
        ok(invoke(src, "export", "mlflow", "-e", "B", "--include-deleted", dest, "--json")).stdout
    )
    assert set(data["exported"]) == {r3}
    client = MlflowClient(dest)
    stages = {
        r.data.tags["tracker.source_run_id"]: (e.name, e.lifecycle_stage, r.info.lifecycle_stage)
        for e, r in all_mlflow_runs(client)
    }
    assert stages[r2] == ("A", "active", "deleted")
    assert stages[r3] == ("B", "deleted", "deleted")
    again = json.loads(
        ok(invoke(src, "export", "mlflow", "-e", "B", "--include-deleted", dest, "--json")).stdout
    )
    assert again["exported"] == {} and set(again["skipped"]) == {r3}
    assert client.get_experiment_by_name("B").lifecycle_stage == "deleted"

    # And back: deleted as they were.
    ok(invoke(tmp_path / "back", "import", "mlflow", dest, "--include-deleted"))
    m2 = tracker.connect(tmp_path / "back")
    assert m2.get_run_info(r2).lifecycle is Lifecycle.DELETED
    assert m2.get_run_info(r3).lifecycle is Lifecycle.DELETED
    assert m2.get_experiment(m2.get_run_info(r3).experiment_id).lifecycle is Lifecycle.DELETED


def test_export_refuses_values_mlflow_would_truncate(tmp_path):
    m = native_store(tmp_path / "src")
    run = m.search_run_infos(filter_string="run_name = 'r1'")[0]
    m.set_tags(run.run_id, {"long": "x" * 9000})
    dest = f"sqlite:///{tmp_path / 'out.db'}"
    failed(invoke(tmp_path / "src", "export", "mlflow", "-e", "A", dest), "'long'", "8000")
    assert not (tmp_path / "out.db").exists()  # checked before MLflow was even opened


def test_export_removes_a_run_mlflow_refused(tmp_path):
    m = native_store(tmp_path / "src")
    run = m.search_run_infos(filter_string="run_name = 'r2'")[0]
    m.update_run(run.run_id, status=RunStatus.RUNNING)
    m.log_metrics(run.run_id, {"a+b": 1.0})  # a character MLflow does not allow in keys
    dest = f"sqlite:///{tmp_path / 'out.db'}"
    failed(invoke(tmp_path / "src", "export", "mlflow", run.run_id, dest), "MLflow refused")
    left = MlflowClient(dest).search_runs(["1"], run_view_type=MLflowView.ALL)
    assert [r.info.lifecycle_stage for r in left] == ["deleted"]
    assert "tracker.source_run_id" not in left[0].data.tags  # so a re-export is not skipped


def test_export_without_mlflow_says_how_to_install(tmp_path, monkeypatch):
    native_store(tmp_path / "src")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails
    result = invoke(tmp_path / "src", "export", "mlflow", "-e", "A", str(tmp_path / "x"))
    failed(result, "pip install 'qlib-tracker[mlflow]'")


def test_bundle_forms_still_work(tmp_path):
    m = native_store(tmp_path / "src")
    rid = m.search_run_infos(filter_string="run_name = 'r1'")[0].run_id
    ok(invoke(tmp_path / "src", "export", rid, "-o", str(tmp_path / "mlflow")))
    out = ok(invoke(tmp_path / "dst", "import", str(tmp_path / "mlflow"))).stdout
    assert "Imported 1 run(s)" in out
    assert tracker.connect(tmp_path / "dst").get_run_info(rid).name == "r1"
    helps = ok(invoke(tmp_path / "src", "import", "--help")).stdout
    assert "BUNDLE" in helps and "mlflow" in helps
    assert invoke(tmp_path / "src", "export").exit_code == 2


@pytest.mark.slow
def test_an_mlflow_import_killed_half_way_is_written_again(tmp_path, monkeypatch):
    import signal
    import sqlite3
    import time

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlruns = tmp_path / "mlruns"
    client = MlflowClient(f"file:{mlruns}")
    exp = client.create_experiment("big", artifact_location=str(tmp_path / "art"))
    files = tmp_path / "files"
    files.mkdir()
    for i in range(6):
        (files / f"f{i}.bin").write_bytes(os.urandom(1 << 20))
    order = []
    for r in range(3):
        rid = client.create_run(exp, start_time=T0 + r, run_name=f"r{r}").info.run_id
        client.log_param(rid, "r", str(r))
        client.log_artifacts(rid, str(files), "out")
        client.set_terminated(rid, "FINISHED", end_time=T0 + 10)
        (metrics,) = mlruns.glob(f"*/{rid}/metrics")  # a long history, as MLflow writes it
        lines = (f"{T0 + s} {s * 0.5 + r} {s}\n" for s in range(20_000))
        (metrics / "loss").write_text("".join(lines))
        order.append(rid)
    dst = tmp_path / "n"
    tracker.connect(dst)

    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tracker.cli.main import cli; cli(sys.argv[1:])"]
        + ["--uri", str(dst), "import", "mlflow", str(mlruns)],
        cwd=Path(__file__).parents[1],
    )
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(f"file:{dst / 'tracker.db'}?mode=ro", uri=True, timeout=30) as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (order[1],)).fetchone():
                break
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    m = tracker.connect(dst)
    assert m.get_run_info(order[1]).status is RunStatus.SCHEDULED  # not taken for finished

    data = json.loads(ok(invoke(dst, "import", "mlflow", str(mlruns), "--json")).stdout)
    assert data["skipped"] == order[:1] and data["replaced"] == order[1:2]
    assert data["imported"] == order[1:]
    source = Source(
        str(mlruns), f"file:{mlruns}", {f"r{i}": r for i, r in enumerate(order)}, "files"
    )
    assert assert_imported(source, m, tmp_path / "check", deleted=False) == 3
