"""Reading an MLflow file store (an ``mlruns`` directory) straight from its files.

MLflow itself refuses to open a file store since 3.13 unless ``MLFLOW_ALLOW_FILE_STORE`` is
set, and old trees outlive the versions that wrote them, so nothing here imports mlflow::

    mlruns/<exp_id>/meta.yaml                 name, lifecycle_stage, artifact_location, …
    mlruns/<exp_id>/<run_id>/meta.yaml        run_id (run_uuid in old versions), run_name,
                                              status (int enum), start/end_time, lifecycle_stage,
                                              artifact_uri
    mlruns/<exp_id>/<run_id>/params/<key>     the value; keys with "/" are nested directories
    mlruns/<exp_id>/<run_id>/tags/<key>       the value (same nesting)
    mlruns/<exp_id>/<run_id>/metrics/<key>    "<timestamp_ms> <value> <step>" per point; legacy
                                              lines have no step (0), 5-field lines add the
                                              dataset name and digest (not kept)
    mlruns/<exp_id>/<run_id>/artifacts/…      when the artifact root is local
    mlruns/.trash/<exp_id>/…                  deleted experiments, same layout
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tracker.entities import Lifecycle, Metric, RunStatus
from tracker.migrate import SOURCE_ID_TAG, MigrationError, RunContent, SourceRun
from tracker.migrate.files import local_path

#: MLflow's RunStatus enum as the file store writes it.
STATUS_CODES = {
    1: RunStatus.RUNNING,
    2: RunStatus.SCHEDULED,
    3: RunStatus.FINISHED,
    4: RunStatus.FAILED,
    5: RunStatus.KILLED,
}
TRASH = ".trash"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ~10x faster


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.load(path.read_bytes(), Loader=_LOADER)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as e:
        raise MigrationError(f"{path} is not readable YAML: {e}") from e
    if not isinstance(doc, dict):
        raise MigrationError(f"{path} does not hold a mapping")
    return doc


def status_of(value: Any, where: Path) -> RunStatus:
    """An int code (file store) or a name (anything else); a missing one means RUNNING,
    as MLflow reads it."""
    if value is None:
        return RunStatus.RUNNING
    if isinstance(value, int) and value in STATUS_CODES:
        return STATUS_CODES[value]
    try:
        return RunStatus(str(value).upper())
    except ValueError:
        raise MigrationError(f"{where}: unknown run status {value!r}") from None


def read_values(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` as key -> text; nested directories make "/" keys."""
    out = {}
    if folder.is_dir():
        for dirpath, _, files in os.walk(folder):
            for name in files:
                path = Path(dirpath, name)
                key = path.relative_to(folder).as_posix()
                try:
                    # Bytes, then decode: reading as text would turn "\r\n" into "\n".
                    out[key] = path.read_bytes().decode("utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    raise MigrationError(f"{path}: {e}") from e
    return out


def parse_metric_lines(key: str, text: str, where: Path) -> list[Metric]:
    """A metric file's points; values may be nan, inf, -inf or Infinity."""
    points = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.strip().split(" ")
        if parts == [""]:
            continue  # a blank line, e.g. after a crash between two appends
        if len(parts) not in (2, 3, 5):
            raise MigrationError(
                f"{where}:{lineno}: {len(parts)} fields; MLflow writes 2, 3 or 5 "
                "('<timestamp> <value> [<step> [<dataset> <digest>]]')"
            )
        try:
            ts, value = int(parts[0]), float(parts[1])
            step = int(parts[2]) if len(parts) >= 3 else 0
        except ValueError as e:
            raise MigrationError(f"{where}:{lineno}: {e}") from e
        points.append(Metric(key, value, step, ts))
    return points


class MLflowFileStore:
    """An ``mlruns`` directory (a path or a ``file:`` URI), read-only."""

    def __init__(self, location: str) -> None:
        path = local_path(location)
        if path is None:
            raise MigrationError(f"{location!r} is not a local directory")
        self.root = Path(path).expanduser().resolve()
        self.location = str(self.root)
        if not self.root.is_dir():
            raise MigrationError(f"{self.root} is not a directory (expected an mlruns folder)")
        if not any(self._experiment_dirs()):
            raise MigrationError(
                f"{self.root} is not an MLflow file store: no <experiment>/meta.yaml in it"
            )

    def close(self) -> None:
        """Nothing to release; here for symmetry with the database reader."""

    def _experiment_dirs(self) -> Iterator[tuple[Path, bool]]:
        for parent, in_trash in ((self.root, False), (self.root / TRASH, True)):
            if parent.is_dir():
                for child in sorted(parent.iterdir()):
                    if not child.name.startswith(".") and (child / "meta.yaml").is_file():
                        yield child, in_trash

    def _experiments(self) -> list[tuple[Path, bool, dict[str, Any]]]:
        """(folder, in the trash, meta) in creation order (file-store ids are random)."""
        found = [(d, t, read_yaml(d / "meta.yaml")) for d, t in self._experiment_dirs()]
        return sorted(found, key=lambda e: (_ms(e[2].get("creation_time"), e[0]) or 0, e[0].name))

    def experiment_names(self) -> list[str]:
        return [str(meta.get("name", d.name)) for d, _, meta in self._experiments()]

    def runs(self) -> Iterator[SourceRun]:
        """Every run, deleted ones included, experiment by experiment, oldest first."""
        for exp_dir, in_trash, meta in self._experiments():
            name = str(meta.get("name", exp_dir.name))
            deleted = in_trash or meta.get("lifecycle_stage") == Lifecycle.DELETED.value
            runs = [
                self._run(d, name, deleted)
                for d in sorted(exp_dir.iterdir())
                # Runs are the sub-folders with a meta.yaml; models/, traces/, tags/ … are not.
                if d.is_dir() and (d / "meta.yaml").is_file()
            ]
            yield from sorted(runs, key=lambda r: (r.start_time or 0, r.run_id))

    def _run(self, run_dir: Path, experiment: str, exp_deleted: bool) -> SourceRun:
        where = run_dir / "meta.yaml"
        meta = read_yaml(where)
        run_id = str(meta.get("run_id") or meta.get("run_uuid") or "")
        if run_id != run_dir.name:
            raise MigrationError(f"{where}: holds run {run_id!r}, not {run_dir.name!r}")
        stage = meta.get("lifecycle_stage", Lifecycle.ACTIVE.value)
        if stage not in (Lifecycle.ACTIVE.value, Lifecycle.DELETED.value):
            raise MigrationError(f"{where}: unknown lifecycle_stage {stage!r}")
        name = meta.get("run_name") or _read_tag(run_dir, "mlflow.runName") or run_id
        uri = meta.get("artifact_uri")
        return SourceRun(
            run_id=run_id,
            experiment=experiment,
            name=str(name),
            status=status_of(meta.get("status"), where),
            lifecycle=Lifecycle.DELETED if exp_deleted else Lifecycle(stage),
            start_time=_ms(meta.get("start_time"), where),
            end_time=_ms(meta.get("end_time"), where),
            load=lambda: self._content(run_dir),
            # The recorded URI first; then the run's own folder, for a tree that was moved
            # (the URI is absolute and still names the old place).
            artifact_uris=(*([str(uri)] if uri else []), str(run_dir / "artifacts")),
            experiment_deleted=exp_deleted,
            source_id=_read_tag(run_dir, SOURCE_ID_TAG),
        )

    @staticmethod
    def _content(run_dir: Path) -> RunContent:
        metrics = []
        for key, text in sorted(read_values(run_dir / "metrics").items()):
            metrics += parse_metric_lines(key, text, run_dir / "metrics" / key)
        return RunContent(
            params=read_values(run_dir / "params"),
            tags=read_values(run_dir / "tags"),
            metrics=metrics,
        )


def _read_tag(run_dir: Path, key: str) -> str | None:
    path = run_dir / "tags" / key
    try:
        return path.read_bytes().decode("utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def _ms(value: Any, where: Path) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MigrationError(f"{where}: time {value!r} is not epoch milliseconds") from None
