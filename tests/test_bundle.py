"""The bundle format's Python API (tracker.migrate.bundle), without the CLI, on real SQLite
stores: a round trip, a second import adding nothing, a damaged bundle importing nothing."""

from __future__ import annotations

import json
import math

import pytest

import tracker
from tracker import Metric, Recorder, RunStatus, objects
from tracker.migrate.bundle import BundleError, export_bundle, import_bundle


def test_export_then_import_keeps_the_runs_and_a_second_import_adds_nothing(tmp_path):
    src = tracker.connect(tmp_path / "src")
    rec = Recorder(src, objects.get_exp(src, experiment_name="e").id, "r").start_run()
    points = [Metric("m", v, i, 1000 + i) for i, v in enumerate([0.5, math.nan, math.inf])]
    src.log_batch(rec.id, {"lr": "0.1"}, points)
    (tmp_path / "model.txt").write_text("weights")
    rec.log_artifact(str(tmp_path / "model.txt"))
    rec.end_run()
    info = rec.run_info
    labels: list[str] = []

    def progress(items, label):
        labels.append(label)
        return items

    out = export_bundle(src, [src.get_run_info(info.run_id)], tmp_path / "b", progress=progress)
    assert (out.runs, out.metric_points, labels) == ([info.run_id], 3, ["Exporting"])
    assert len(out.artifact_sizes) == len(src.list_artifact_entries(info.run_id)) > 0
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["runs"] == [info.run_id]

    dst = tracker.connect(tmp_path / "dst")
    first = import_bundle(dst, tmp_path / "b")
    assert (first.imported, first.skipped, first.metric_points) == ([info.run_id], [], 3)
    got = dst.get_run(info.run_id)
    assert got.info.status is RunStatus.FINISHED and got.data.params["lr"] == "0.1"
    assert (
        Recorder(dst, got.info.experiment_id, info=got.info).load_object("model.txt") == "weights"
    )
    history = [m.value for m in dst.get_metric_history(info.run_id, "m")]
    assert history[0] == 0.5 and math.isnan(history[1]) and history[2] == math.inf
    again = import_bundle(dst, tmp_path / "b")
    assert (again.imported, again.skipped) == ([], [info.run_id])


def test_a_damaged_bundle_raises_and_imports_nothing(tmp_path):
    src = tracker.connect(tmp_path / "src")
    info = src.create_run(objects.get_exp(src, experiment_name="e").id, "r", RunStatus.FINISHED)
    export_bundle(src, [info], tmp_path / "b")
    run_json = tmp_path / "b" / "runs" / info.run_id / "run.json"
    doc = json.loads(run_json.read_text())
    doc["metrics"] = {"m": [[0, 0, "lots"]]}
    run_json.write_text(json.dumps(doc))
    dst = tracker.connect(tmp_path / "dst")
    with pytest.raises(BundleError, match="metric value 'lots' is not a number"):
        import_bundle(dst, tmp_path / "b")
    assert not dst.has_run(info.run_id)
