"""Runs as a self-describing directory (a bundle) that any store reads back, with full metric
histories and artifacts checked by sha256: :func:`export_bundle` and :func:`import_bundle`
(``tracker export`` / ``tracker import``)::

    DIR/bundle.json                {"format": "tracker-bundle", "version": 1, "created": …,
                                    "tracker_version": …, "runs": [run ids]}
    DIR/runs/<run_id>/run.json     {"experiment": {"name", "lifecycle"}, "info": {every
                                    RunInfo field},
                                    "params": {…}, "tags": {…},
                                    "metrics": {key: [[step, timestamp, value], …]},
                                    "artifacts": [{"path", "size", "checksum", "mtime"}]}
    DIR/runs/<run_id>/artifacts/…  the artifact files at their manifest paths

Metric values NaN/±inf are the strings "nan"/"inf"/"-inf" (JSON has no such numbers). A
bundle holds only plain files and directories: import refuses symbolic links and special
files anywhere in it, which could make it read files from elsewhere on the importing machine.
The experiment's "lifecycle" came after the first bundles; without it, "active" is meant.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import tracker
from tracker.entities import ArtifactEntry, Lifecycle, Metric, RunInfo, RunStatus
from tracker.errors import BundleError, InvalidInputError
from tracker.manager import ExpManager
from tracker.migrate import ExperimentsByName
from tracker.migrate.write import import_state, write_run
from tracker.validation import check_key, check_name, text_items

T = TypeVar("T")
#: Called with the items of a long step and its label ("Exporting", "Checking", "Importing");
#: returns them, as it reports progress (the CLI draws a bar).
Progress = Callable[[Sequence[T], str], Iterable[T]]
FORMAT, VERSION = "tracker-bundle", 1
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_NON_FINITE = {"nan", "inf", "-inf"}


@dataclass
class RunDoc:
    """One run of a bundle, checked and decoded."""

    experiment: str
    experiment_deleted: bool
    info: RunInfo
    params: dict[str, str]
    tags: dict[str, str]
    metrics: list[Metric]
    artifacts: list[ArtifactEntry]
    folder: Path = field(default=Path())

    def file(self, entry: ArtifactEntry) -> Path:
        return self.folder / "artifacts" / Path(*entry.path.split("/"))


@dataclass
class ExportResult:
    runs: list[str]
    metric_points: int
    artifact_sizes: list[int]


@dataclass
class ImportResult:
    imported: list[str]
    #: Runs already in the store (``busy`` among them: being imported by another process).
    skipped: list[str]
    #: Imported runs that an interrupted import had left half-written.
    replaced: list[str]
    busy: list[str]
    metric_points: int
    artifact_sizes: list[int]


def _no_progress(items: Sequence[T], label: str) -> Iterable[T]:
    return items


def export_bundle(
    manager: ExpManager,
    runs: Iterable[RunInfo],
    out: str | Path,
    *,
    progress: Progress[RunInfo] = _no_progress,
) -> ExportResult:
    """Write ``runs`` to the bundle directory ``out`` (created if needed). Folders of runs
    exported there before are replaced; bundle.json is written last, so an export that dies
    half-way leaves no bundle to import. OSError (a full disk) passes as it is."""
    out, infos = Path(out), {info.run_id: info for info in runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bundle.json").unlink(missing_ok=True)
    docs = [
        _export_run(manager, i, out / "runs" / i.run_id)
        for i in progress(list(infos.values()), "Exporting")
    ]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tracker_version": tracker.__version__,
        "runs": list(infos),
    }
    (out / "bundle.json").write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    points = sum(len(v) for d in docs for v in d["metrics"].values())
    return ExportResult(list(infos), points, [a["size"] for d in docs for a in d["artifacts"]])


def import_bundle(
    manager: ExpManager, bundle: str | Path, *, progress: Progress[RunDoc] = _no_progress
) -> ImportResult:
    """Read a bundle into ``manager``'s store, keeping run ids, status, times and soft
    deletion; experiments are found or created by name. Runs whose id is in the store already
    are skipped. The whole bundle (JSON and every artifact's sha256) is checked before anything
    is written (BundleError: nothing was imported); each run is written all or nothing, and
    one an import killed half-way left is written again."""
    return import_runs(manager, read_bundle(Path(bundle)), progress=progress)


def import_runs(
    manager: ExpManager, docs: Sequence[RunDoc], *, progress: Progress[RunDoc] = _no_progress
) -> ImportResult:
    """:func:`import_bundle` for runs :func:`read_bundle` has read already."""
    states = {d.info.run_id: import_state(manager, d.info.run_id) for d in docs}
    todo = [d for d in docs if states[d.info.run_id] in ("absent", "abandoned")]
    for doc in progress(todo, "Checking"):
        verify_files(doc)
    with ExperimentsByName(manager) as exps:
        imported = [d for d in progress(todo, "Importing") if import_run(manager, d, exps)]
    done = {d.info.run_id for d in imported}
    return ImportResult(
        imported=[d.info.run_id for d in imported],
        skipped=[d.info.run_id for d in docs if d.info.run_id not in done],
        replaced=[r for r in done if states[r] == "abandoned"],
        busy=[r for r, state in states.items() if state == "importing"],
        metric_points=sum(len(d.metrics) for d in imported),
        artifact_sizes=[e.size for d in imported for e in d.artifacts],
    )


# ------------------------------------------------------------------------------------ helpers


def _sha256(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, "sha256:" + h.hexdigest()


def _encode(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)  # 'nan', 'inf', '-inf'


def _decode(value: Any, where: str) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise BundleError(f"{where}: metric value {value!r} is not a number, 'nan', 'inf' or '-inf'")


def _check_tree(bundle: Path) -> None:
    """Refuse a bundle holding anything but plain files and directories, at any depth: a
    symbolic link would make import read (and copy into the store) a file from elsewhere
    on this machine, a FIFO would block it for ever."""

    def fail(error: OSError) -> NoReturn:
        raise BundleError(f"{error.filename}: {error.strerror}: cannot check the bundle")

    for folder, dirs, files in os.walk(bundle, onerror=fail):
        for name in dirs + files:
            path = Path(folder, name)
            try:
                mode = path.lstat().st_mode
            except OSError as e:
                fail(e)
            if stat.S_ISLNK(mode):
                raise BundleError(
                    f"{path} is a symbolic link (to {os.readlink(path)}): a bundle holds only "
                    "plain files and directories; nothing was imported"
                )
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise BundleError(
                    f"{path} is not a regular file or directory: a bundle holds only plain "
                    "files and directories; nothing was imported"
                )


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path`` is a regular file that resolves to a place inside ``root``."""
    return (
        not path.is_symlink() and path.is_file() and path.resolve().is_relative_to(root.resolve())
    )


def _load_json(path: Path, bundle: Path) -> Any:
    if path.exists() and not _inside(bundle, path):
        # Checked by _check_tree already; again here, where the file is read.
        raise BundleError(f"{path} is not a plain file inside the bundle {bundle}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise BundleError(f"{path} is missing: not a complete tracker bundle") from e
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BundleError(f"{path} is not valid JSON: {e}") from e


def _get(doc: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BundleError(f"{where}: {key!r} is missing or not of the expected type")
    return value


# ------------------------------------------------------------------------------------- export


def run_document(manager: ExpManager, info: RunInfo) -> dict[str, Any]:
    """Everything about a run except its files, as JSON-ready data."""
    data = manager.get_runs_data([info.run_id]).get(info.run_id)
    keys = sorted(data.metrics) if data else []
    exp = manager.get_experiment(info.experiment_id)
    return {
        "experiment": {"name": exp.name, "lifecycle": exp.lifecycle.value},
        "info": {**asdict(info), "status": info.status.value, "lifecycle": info.lifecycle.value},
        "params": data.params if data else {},
        "tags": data.tags if data else {},
        "metrics": {
            k: [
                [m.step, m.timestamp, _encode(m.value)]
                for m in manager.get_metric_history(info.run_id, k)
            ]
            for k in keys
        },
        "artifacts": [asdict(e) for e in manager.list_artifact_entries(info.run_id)],
    }


def _export_run(manager: ExpManager, info: RunInfo, folder: Path) -> dict[str, Any]:
    if folder.exists():
        shutil.rmtree(folder)  # replace what an earlier export wrote
    folder.mkdir(parents=True)
    doc = run_document(manager, info)
    for entry in doc["artifacts"]:
        dst = folder / "artifacts" / Path(*entry["path"].split("/"))
        manager.artifacts.download(info.artifact_prefix, entry["path"], str(dst.parent))
        size, checksum = _sha256(dst)
        if entry["checksum"] and checksum != entry["checksum"]:
            raise BundleError(
                f"artifact {entry['path']!r} of run {info.run_id} does not match its manifest "
                f"({entry['checksum']} recorded, {checksum} stored): the stored file is damaged"
            )
        entry.update(size=size, checksum=checksum)
    (folder / "run.json").write_text(
        json.dumps(doc, ensure_ascii=False, allow_nan=False), encoding="utf-8"
    )
    return doc


# ------------------------------------------------------------------------------------- import


def _parse_run(bundle: Path, run_id: str) -> RunDoc:
    from tracker.artifacts import validate_path  # fsspec: slow to import, needed only here

    folder = bundle / "runs" / run_id
    where = str(folder / "run.json")
    doc = _load_json(folder / "run.json", bundle)
    raw = _get(doc, "info", dict, where)
    try:
        info = RunInfo(
            run_id=_get(raw, "run_id", str, where),
            experiment_id=str(raw.get("experiment_id", "")),
            name=check_name(raw.get("name"), "run name"),
            status=RunStatus(raw.get("status")),
            lifecycle=Lifecycle(raw.get("lifecycle")),
            **{k: raw.get(k) for k in ("start_time", "end_time", "heartbeat", "pid", "host")},
        )
        for key in ("start_time", "end_time", "heartbeat", "pid"):
            value = getattr(info, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise BundleError(f"{where}: info {key!r} must be an integer or null")
        if info.run_id != run_id:
            raise BundleError(f"{where}: holds run {info.run_id!r}, not {run_id!r}")
        metrics = []
        for key, points in _get(doc, "metrics", dict, where).items():
            check_key(key, "metric key")
            for point in points:
                if not (isinstance(point, list) and len(point) == 3):
                    raise BundleError(f"{where}: metric {key!r} point {point!r} is not a triple")
                step, ts, value = point
                if not all(isinstance(x, int) and not isinstance(x, bool) for x in (step, ts)):
                    raise BundleError(f"{where}: metric {key!r} step/timestamp must be integers")
                metrics.append(Metric(key, _decode(value, where), step, ts))
        artifacts = []
        for entry in _get(doc, "artifacts", list, where):
            path = _get(entry, "path", str, where)
            if validate_path(path) != path:
                raise BundleError(f"{where}: artifact path {path!r} is not normalised")
            checksum = _get(entry, "checksum", str, where)
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", checksum):
                raise BundleError(f"{where}: artifact {path!r} has no sha256 checksum")
            size, mtime = _get(entry, "size", int, where), entry.get("mtime", 0)
            artifacts.append(ArtifactEntry(path, size, checksum, int(mtime or 0)))
        exp = _get(doc, "experiment", dict, where)
        return RunDoc(
            experiment=check_name(exp.get("name"), "experiment"),
            experiment_deleted=Lifecycle(exp.get("lifecycle", "active")) is Lifecycle.DELETED,
            info=info,
            params=text_items(_get(doc, "params", dict, where), "param"),
            tags=text_items(_get(doc, "tags", dict, where), "tag"),
            metrics=metrics,
            artifacts=artifacts,
            folder=folder,
        )
    except (InvalidInputError, ValueError, TypeError) as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(f"{where}: {e}") from e


def read_bundle(bundle: Path) -> list[RunDoc]:
    """Every run of a bundle, fully checked (JSON and structure) before anything is written."""
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a directory (expected a bundle from tracker export)")
    _check_tree(bundle)
    head = _load_json(bundle / "bundle.json", bundle)
    where = str(bundle / "bundle.json")
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise BundleError(f"{where}: not a tracker bundle (format is not {FORMAT!r})")
    version = head.get("version")
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or version > VERSION
        or version < 1
    ):
        raise BundleError(
            f"{where}: bundle version {version!r} is not supported (this tracker reads up to "
            f"v{VERSION}; a newer tracker wrote it?)"
        )
    run_ids = _get(head, "runs", list, where)
    bad = [r for r in run_ids if not (isinstance(r, str) and _RUN_ID.fullmatch(r))]
    if bad:
        raise BundleError(f"{where}: {bad[0]!r} is not a run id (32 lowercase hex digits)")
    return [_parse_run(bundle, r) for r in dict.fromkeys(run_ids)]


def verify_files(doc: RunDoc) -> None:
    """Every artifact file is present, inside the bundle and matches its size and sha256."""
    for entry in doc.artifacts:
        path = doc.file(entry)
        # _check_tree refused links already; again here, where the file is read.
        if not _inside(doc.folder / "artifacts", path):
            raise BundleError(f"artifact {entry.path!r} of run {doc.info.run_id}: no file {path}")
        size, checksum = _sha256(path)
        if (size, checksum) != (entry.size, entry.checksum):
            raise BundleError(
                f"artifact {entry.path!r} of run {doc.info.run_id} is damaged: {path} has "
                f"{checksum} ({size} bytes), the bundle recorded {entry.checksum} "
                f"({entry.size} bytes); nothing was imported"
            )


def import_run(manager: ExpManager, doc: RunDoc, exps: ExperimentsByName) -> bool:
    """Create the run with its original id and contents; False if a complete run has that
    id already (see :func:`tracker.migrate.write_run`)."""

    def put(info: RunInfo) -> Iterator[ArtifactEntry]:
        for entry in doc.artifacts:
            folder = posixpath.dirname(entry.path) or None
            stored = manager.artifacts.put_file(info.artifact_prefix, str(doc.file(entry)), folder)
            if (stored.path, stored.checksum) != (entry.path, entry.checksum):
                raise BundleError(f"artifact {entry.path!r} changed while it was imported")
            yield entry  # the source's manifest as it was, mtimes included

    exp_id = exps.id_for(doc.experiment, doc.experiment_deleted)
    written = write_run(manager, exp_id, doc.info, doc.params, doc.tags, doc.metrics, put)
    return written is not None
