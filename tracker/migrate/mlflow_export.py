"""Writing runs into an MLflow store through MLflow's own client (``tracker export mlflow``).

This is the one place migration imports mlflow, inside the functions, so that importing tracker
never does. Each exported run is tagged ``tracker.source_run_id`` with its id here; runs
carrying the tag in the destination are skipped, which makes exporting twice a no-op, and
``tracker import mlflow`` brings such a run back under that id, which makes a round trip one
too. The tag is written last, after data, artifacts and status, so a run that failed
half-way (and was deleted) is never mistaken for a finished export.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tracker.entities import ArtifactEntry, Lifecycle, RunData, RunInfo, RunStatus
from tracker.errors import BackendUnavailable, InvalidInputError, install_hint
from tracker.manager import ExpManager
from tracker.migrate import SOURCE_ID_TAG, MigrationError, Progress

# MLflow's limits (mlflow.utils.validation); long values would be truncated with a warning.
MAX_PARAMS_TAGS, MAX_METRICS = 100, 1000
MAX_PARAM_VALUE, MAX_TAG_VALUE = 6000, 8000
RUN_NAME_TAG = "mlflow.runName"


@dataclass
class ExportSummary:
    exported: dict[str, str] = field(default_factory=dict)  # our run id -> MLflow run id
    skipped: dict[str, str] = field(default_factory=dict)  # already there: ours -> theirs
    metric_points: int = 0
    artifacts: int = 0
    bytes: int = 0


def tracking_uri(dest: str) -> str:
    """``dest`` as MLflow's client takes it; a plain path is a file-store directory."""
    if re.match(r"[A-Za-z][\w+.-]+:", dest) and not re.match(r"[A-Za-z]:[\\/]", dest):
        return dest
    return Path(dest).expanduser().resolve().as_uri()


def default_artifact_root(uri: str) -> str | None:
    """Where new experiments keep artifacts: beside a SQLite file ("mlartifacts", as
    ``mlflow server`` names it) rather than MLflow's ``./mlruns`` under whatever directory
    the command ran in; other stores keep MLflow's default."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts")
    return None


def export_runs(
    manager: ExpManager,
    infos: Sequence[RunInfo],
    dest: str,
    *,
    artifact_root: str | None = None,
    progress: Progress | None = None,
) -> ExportSummary:
    """Copy runs (info, params, tags, full metric histories, artifacts) into an MLflow store.

    Every run's values are checked against MLflow's limits before anything is written. A
    run already there is skipped: one exported before (tagged with our id), and one that
    came from there (same id, or our SOURCE_ID_TAG naming it). Runs of a deleted
    experiment go to a deleted experiment of the same name (see :class:`_Experiments`)."""
    datas = manager.get_runs_data([i.run_id for i in infos])
    for info in infos:
        data = datas.get(info.run_id)
        _check_limits(info, data.params if data else {}, data.tags if data else {})
    client = _client(tracking_uri(dest))
    bar: Progress = progress or (lambda items, _label: items)
    summary = ExportSummary()
    with _Experiments(client, artifact_root or default_artifact_root(tracking_uri(dest))) as exps:
        for info in bar(list(infos), "Exporting"):
            exp = manager.get_experiment(info.experiment_id)
            data = datas.get(info.run_id) or RunData()
            there = exps.exported(exp.name)
            theirs = there.get(info.run_id) or there.get(data.tags.get(SOURCE_ID_TAG, ""))
            if theirs is not None:
                summary.skipped[info.run_id] = theirs
                continue
            deleted = exp.lifecycle is Lifecycle.DELETED
            exp_id = exps.id_for_writing(exp.name, deleted)
            if deleted:
                info = replace(info, lifecycle=Lifecycle.DELETED)
            try:
                summary.exported[info.run_id] = _export_run(
                    manager, client, exp_id, info, data, summary
                )
            except Exception as e:
                if not type(e).__module__.startswith("mlflow"):
                    raise
                # MLflow's own refusals (a key it does not allow, …) as tracker errors.
                raise MigrationError(f"run {info.run_id}: MLflow refused it: {e}") from e
    return summary


def _client(uri: str) -> Any:
    try:
        from mlflow import MlflowClient
    except ImportError as e:
        raise BackendUnavailable(
            f"exporting to MLflow needs the mlflow package ({e}): {install_hint('mlflow')}"
        ) from e
    if uri.startswith("file:"):
        # MLflow refuses file stores since 3.13 unless opted in; naming one as DEST is that.
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return MlflowClient(tracking_uri=uri)


def _check_limits(info: RunInfo, params: dict[str, str], tags: dict[str, str]) -> None:
    for what, values, limit in (("param", params, MAX_PARAM_VALUE), ("tag", tags, MAX_TAG_VALUE)):
        for key, value in values.items():
            if len(value) > limit:
                raise InvalidInputError(
                    f"run {info.run_id}: {what} {key!r} is {len(value)} characters; MLflow "
                    f"keeps at most {limit} (it would truncate it): nothing was exported"
                )


class _Experiments:
    """The destination's experiments by name, with the runs each holds already.

    An experiment deleted here is deleted there too: created, or (deleted there already)
    restored while its runs go in, and deleted at the end; if an active experiment has the
    name there, the runs go in deleted. Runs of an active experiment here are not written
    into a deleted one there (MLflow would hide them): that is refused."""

    def __init__(self, client: Any, root: str | None) -> None:
        self.client, self.root = client, root
        self.found: dict[str, tuple[Any, dict[str, str]]] = {}  # name -> (experiment, runs)
        self.to_delete: list[str] = []

    def __enter__(self) -> _Experiments:
        return self

    def __exit__(self, *exc: object) -> None:
        for exp_id in self.to_delete:
            self.client.delete_experiment(exp_id)

    def exported(self, name: str) -> dict[str, str]:
        """Which of our runs the experiment ``name`` holds there: our id -> theirs."""
        if name not in self.found:
            exp = self.client.get_experiment_by_name(name)
            self.found[name] = (exp, {} if exp is None else _runs_of(self.client, exp))
        return self.found[name][1]

    def id_for_writing(self, name: str, deleted: bool) -> str:
        """The id of the experiment to write a run of ``name`` into (deleted here or not)."""
        exp, runs = self.found[name]
        if not deleted and exp is not None and exp.experiment_id in self.to_delete:
            raise MigrationError(
                f"experiment {name!r} is both active and deleted here: export the runs of "
                "each to a different MLflow store, or rename one"
            )
        if exp is None:
            location = None if self.root is None else f"{self.root.rstrip('/')}/{_slug(name)}"
            exp_id = self.client.create_experiment(name, artifact_location=location)
            exp = self.client.get_experiment(exp_id)
            if deleted:
                self.to_delete.append(exp_id)
        elif exp.lifecycle_stage == Lifecycle.DELETED.value:
            if not deleted:
                raise MigrationError(
                    f"experiment {name!r} is deleted in the MLflow store: restore it (mlflow "
                    f"experiments restore --experiment-id {exp.experiment_id}) or rename it"
                )
            self.client.restore_experiment(exp.experiment_id)
            self.to_delete.append(exp.experiment_id)
            exp = self.client.get_experiment(exp.experiment_id)
        self.found[name] = (exp, runs)
        return str(exp.experiment_id)


def _runs_of(client: Any, exp: Any) -> dict[str, str]:
    """Every run of an MLflow experiment by the ids it is known by here: its own (a run
    imported from there keeps it) and its SOURCE_ID_TAG (a run exported from here)."""
    from mlflow.entities import ViewType

    runs: dict[str, str] = {}
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id], run_view_type=ViewType.ALL, max_results=10_000, page_token=token
        )
        for run in page:
            runs[run.info.run_id] = run.info.run_id
            source = run.data.tags.get(SOURCE_ID_TAG)
            if source:
                runs[source] = run.info.run_id
        token = page.token
        if not token:
            return runs


def _slug(name: str) -> str:
    # Runs live in <location>/<run id>/, so experiments sharing a slug do not collide.
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"


def _export_run(
    manager: ExpManager,
    client: Any,
    exp_id: str,
    info: RunInfo,
    data: RunData,
    summary: ExportSummary,
) -> str:
    from mlflow.entities import Metric, Param, RunTag

    # create_run sets mlflow.runName from the name, which wins over a stale tag; the source
    # tag is set on its own at the end.
    tags = {k: v for k, v in data.tags.items() if k not in (SOURCE_ID_TAG, RUN_NAME_TAG)}
    run = client.create_run(exp_id, start_time=info.start_time, run_name=info.name)
    run_id = run.info.run_id
    try:
        for chunk in _chunks(list(data.params.items()), MAX_PARAMS_TAGS):
            client.log_batch(run_id, params=[Param(k, v) for k, v in chunk])
        for chunk in _chunks(list(tags.items()), MAX_PARAMS_TAGS):
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in chunk])
        points = [
            Metric(m.key, m.value, m.timestamp, m.step)
            for key in sorted(data.metrics)
            for m in manager.get_metric_history(info.run_id, key)
        ]
        for chunk in _chunks(points, MAX_METRICS):
            client.log_batch(run_id, metrics=chunk)
        entries = manager.list_artifact_entries(info.run_id)
        if entries:
            with tempfile.TemporaryDirectory(prefix="tracker-export-") as tmp:
                for entry in entries:
                    _fetch(manager, info, entry, tmp)
                client.log_artifacts(run_id, tmp)
        if info.status is RunStatus.SCHEDULED:
            client.update_run(run_id, status=info.status.value)
        elif info.status.is_terminal:
            client.set_terminated(run_id, info.status.value, end_time=info.end_time)
        client.set_tag(run_id, SOURCE_ID_TAG, info.run_id)  # last: the export is complete
        if info.lifecycle is Lifecycle.DELETED:
            client.delete_run(run_id)
    except BaseException:
        # MLflow's client cannot remove a run for good (only `mlflow gc` can); a deleted
        # run without the source tag is not taken for a finished export.
        with contextlib.suppress(Exception):
            client.delete_run(run_id)
        raise
    summary.metric_points += len(points)
    summary.artifacts += len(entries)
    summary.bytes += sum(e.size for e in entries)
    return str(run_id)


def _fetch(manager: ExpManager, info: RunInfo, entry: ArtifactEntry, tmp: str) -> None:
    """Download one artifact into ``tmp`` at its path and check it against the manifest."""
    dst = Path(tmp, *entry.path.split("/"))
    dst.parent.mkdir(parents=True, exist_ok=True)
    manager.artifacts.download(info.artifact_prefix, entry.path, str(dst.parent))
    h = hashlib.sha256()
    with open(dst, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if entry.checksum and "sha256:" + h.hexdigest() != entry.checksum:
        raise MigrationError(
            f"artifact {entry.path!r} of run {info.run_id} does not match its manifest "
            f"({entry.checksum} recorded): the stored file is damaged"
        )


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
