"""``Recorder``: one tracked run, with Qlib's method names and semantics."""

from __future__ import annotations

import os
import pickle
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tracker import codestate, exit_hooks, writer
from tracker.entities import ArtifactEntry, Metric, RunInfo, RunStatus
from tracker.errors import (
    ArtifactTimeout,
    InvalidInputError,
    InvalidStateError,
    LoadObjectError,
)
from tracker.manager import ExpManager, now_ms
from tracker.validation import check_key, metric_step, metric_value, text_items

DEFAULT_RECORDER_NAME = "mlflow_recorder"  # Qlib's name, so R.get_recorder() finds old runs


def local_time(ms: int | None) -> str | None:
    """Qlib shows times as local-time strings."""
    return None if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


class Recorder:
    """A run. Built by :class:`~tracker.experiment.Experiment`; ``start_run`` creates (or
    resumes) it in the store, ``end_run`` ends it.

    Metrics and tags logged while it runs in this process are queued and written in the
    background (``async_log=False``, or ``TRACKER_SYNC_LOGGING=1`` for every recorder, writes
    each call in its own transaction); params are written at once, so
    a conflicting value raises where it was logged.
    """

    STATUS_S = RunStatus.SCHEDULED.value
    STATUS_R = RunStatus.RUNNING.value
    STATUS_FI = RunStatus.FINISHED.value
    STATUS_FA = RunStatus.FAILED.value
    STATUS_K = RunStatus.KILLED.value

    def __init__(
        self,
        manager: ExpManager,
        experiment_id: str,
        name: str | None = None,
        info: RunInfo | None = None,
        *,
        async_log: bool | None = None,
    ) -> None:
        self.manager = manager
        self.experiment_id = experiment_id
        self.name = name or (info.name if info else DEFAULT_RECORDER_NAME)
        if async_log is None:
            async_log = os.environ.get("TRACKER_SYNC_LOGGING", "") in ("", "0")
        self.async_log = async_log
        self._info = info
        self._buffer: writer.LogBuffer | None = None

    # -------------------------------------------------------------------------------- identity

    @property
    def id(self) -> str | None:
        return None if self._info is None else self._info.run_id

    @property
    def run_info(self) -> RunInfo:
        return self._require_info()

    @property
    def status(self) -> str:
        return RunStatus.SCHEDULED.value if self._info is None else self._info.status.value

    @property
    def start_time(self) -> str | None:
        return None if self._info is None else local_time(self._info.start_time)

    @property
    def end_time(self) -> str | None:
        return None if self._info is None else local_time(self._info.end_time)

    @property
    def info(self) -> dict[str, Any]:
        return {
            "class": type(self).__name__,
            "id": self.id,
            "name": self.name,
            "experiment_id": self.experiment_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "status": self.status,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(info={self.info})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recorder) and self.id is not None and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def refresh(self) -> Recorder:
        """Re-read status and times from the store."""
        self._info = self.manager.get_run_info(self._require_id())
        return self

    # ------------------------------------------------------------------------------- lifecycle

    def start_run(self) -> Recorder:
        """Create the run, or resume it if it has an id; it is RUNNING afterwards."""
        pid, host, ts = os.getpid(), socket.gethostname(), now_ms()
        first = self._info is None
        if first:
            self._info = self.manager.create_run(
                self.experiment_id, self.name, RunStatus.RUNNING, pid=pid, host=host
            )
        else:
            self._info = self.manager.update_run(
                self._require_id(),
                status=RunStatus.RUNNING,
                start_time=ts,
                end_time=None,
                heartbeat=ts,
                pid=pid,
                host=host,
            )
        run_id = self._require_id()
        self._buffer = writer.current().add_run(self.manager, run_id)
        exit_hooks.track_live(run_id, self.end_run)
        self._log_code_state()
        if first:
            self._buffer.add_params({"cmd-sys.argv": " ".join(sys.argv)})
        return self

    def end_run(self, status: str | RunStatus = RunStatus.FINISHED) -> None:
        """Flush what is queued, then end the run with ``status`` (a no-op if not started
        here). A queued write that fails is raised after the run is ended as FAILED. SIGINT
        and SIGTERM arriving meanwhile take effect once the run is ended."""
        status = _status(status)
        buffer = self._buffer
        if buffer is None:
            return

        def note() -> str:
            return f"ending run {buffer.run_id}: writing {buffer.pending():,} queued points first"

        with exit_hooks.signals_held(note):
            self._buffer = None
            try:
                self._info = writer.end(buffer, status)
            finally:
                exit_hooks.untrack_live(buffer.run_id)

    def _log_code_state(self) -> None:
        state = codestate.capture()
        if state is None:
            return
        self._put({name: text.encode() for name, text in state.files.items()})
        tags = {"tracker.git_dirty": str(state.dirty).lower()}
        if state.commit:
            tags["tracker.git_commit"] = state.commit
        self.manager.set_tags(self._require_id(), tags)

    # --------------------------------------------------------------------------------- logging

    def log_params(self, **kwargs: Any) -> None:
        self.manager.log_batch(self._require_id(), params=text_items(kwargs, "param"))

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        ts, st = now_ms(), metric_step(step, kwargs)
        points = [Metric(check_key(k), metric_value(k, v), st, ts) for k, v in kwargs.items()]
        buffer = self._buffer
        if buffer is not None and self.async_log:
            if buffer.error is not None:
                buffer.raise_error()
            buffer.add_metrics(points)
        else:
            self.manager.log_batch(self._require_id(), metrics=points)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics(step=step, **{key: value})

    def set_tags(self, **kwargs: Any) -> None:
        tags = text_items(kwargs, "tag")
        buffer = self._buffer
        if buffer is not None and self.async_log:
            buffer.raise_error()
            buffer.add_tags(tags)
        else:
            self.manager.set_tags(self._require_id(), tags)

    def delete_tags(self, *keys: str) -> None:
        self.flush()
        self.manager.delete_tags(self._require_id(), list(keys))

    def flush(self) -> None:
        """Write everything queued now; raises a failed background write."""
        if self.id is not None:
            writer.flush_run(self.id)

    # --------------------------------------------------------------------------------- reading

    def _data(self) -> Any:
        run_id = self._require_id()
        return self.manager.get_runs_data([run_id])[run_id]

    def list_metrics(self) -> dict[str, float]:
        """Latest value of each metric."""
        return dict(self._data().metrics)

    def list_params(self) -> dict[str, str]:
        return dict(self._data().params)

    def list_tags(self) -> dict[str, str]:
        return dict(self._data().tags)

    def get_metric_history(self, key: str) -> list[Metric]:
        """Every (step, value, timestamp) of ``key``, in step order."""
        return self.manager.get_metric_history(self._require_id(), key)

    # ------------------------------------------------------------------------------- artifacts

    @property
    def _prefix(self) -> str:
        return self._require_info().artifact_prefix

    def _put(self, files: dict[str, bytes]) -> None:
        store, prefix = self.manager.artifacts, self._prefix
        self._store(list(files), lambda: (store.put_bytes(prefix, p, d) for p, d in files.items()))

    def _store(self, paths: list[str], write: Callable[[], Iterable[ArtifactEntry]]) -> None:
        """Write files so that the manifest only ever lists fully stored ones
        (:mod:`tracker.manifest`)."""
        from tracker.manifest import store_recorded

        store_recorded(self.manager, self._require_id(), paths, write)

    def save_objects(
        self,
        local_path: str | os.PathLike[str] | None = None,
        artifact_path: str | None = None,
        **objects: Any,
    ) -> None:
        """Store a local file or directory, or Python objects by name. The name's suffix
        picks the format: ``.parquet``, ``.json``, else pickle (``pred.pkl``, ``task`` …).
        Saving an existing name replaces it."""
        from tracker.codecs import dumps

        if local_path is not None and objects:
            raise InvalidInputError("save_objects takes local_path or objects by name, not both")
        if local_path is not None:
            self.log_artifact(local_path, artifact_path)
            return
        store = self.manager.artifacts
        # Every object is serialised before the first write, so that a bad one stores nothing.
        files = {}
        for name, obj in objects.items():
            path = f"{artifact_path.rstrip('/')}/{name}" if artifact_path else name
            files[store.validate_path(path)] = dumps(name, obj)
        self._put(files)

    def load_object(self, name: str, unpickler: type[pickle.Unpickler] | None = None) -> Any:
        """The object saved under ``name``, unpickled as it streams from the store while its
        sha256 is checked against the manifest. Raises ArtifactChecksumError (a
        LoadObjectError) if the file was changed outside tracker, LoadObjectError naming it
        on any other failure to load, ArtifactTimeout if a remote store does not answer."""
        from tracker.codecs import load
        from tracker.manifest import read_checked

        try:
            return read_checked(
                self.manager, self.run_info, name, lambda f: load(name, f, unpickler)
            )
        except (LoadObjectError, ArtifactTimeout):
            raise
        except Exception as e:
            raise LoadObjectError(f"cannot load artifact {name!r} of run {self.id}: {e}") from e

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        """A local file goes under ``artifact_path/<its name>``; a directory's contents go
        under ``artifact_path``."""
        from tracker.artifacts import dir_files, join_path

        path, store, prefix = Path(local_path), self.manager.artifacts, self._prefix
        if path.is_dir():
            paths = [rel for _, rel in dir_files(str(path), artifact_path)]
            self._store(paths, lambda: store.put_dir(prefix, str(path), artifact_path))
        elif path.is_file():
            rel = join_path(artifact_path, path.name)
            self._store([rel], lambda: [store.put_file(prefix, str(path), artifact_path)])
        else:
            raise InvalidInputError(f"log_artifact: {str(path)!r} is not a file or directory")

    def list_artifacts(
        self, artifact_path: str | None = None, recursive: bool = False
    ) -> list[str]:
        """Paths under ``artifact_path``: one level (files and folders, as Qlib/MLflow) or,
        with ``recursive``, every file."""
        base = artifact_path.strip("/") + "/" if artifact_path else ""
        out: dict[str, None] = {}
        for entry in self.manager.list_artifact_entries(self._require_id()):
            if not entry.path.startswith(base):
                continue
            if recursive:
                out[entry.path] = None
            else:
                head = entry.path[len(base) :].split("/", 1)[0]
                out[base + head] = None
        return list(out)

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        """The local path of the artifact (a file or folder), downloaded if remote. Copied
        files are checked against the manifest as they stream (ArtifactChecksumError if one
        was changed outside tracker); a local store's file given in place is not read."""
        from tracker.manifest import download_check

        check = download_check(self.manager, self._require_id())
        return self.manager.artifacts.download(self._prefix, path, dst_path, check)

    def get_artifact_uri(self) -> str:
        return self.manager.artifacts.url(self._prefix)

    def get_local_dir(self) -> str:
        """The run's local folder (the parent of its ``artifacts``), as in Qlib."""
        local = self.manager.artifacts.local_dir(self._prefix)
        if local is None:
            raise InvalidStateError(
                f"run {self.id} keeps artifacts at {self.get_artifact_uri()}, not on this "
                "disk; use download_artifact()"
            )
        return str(Path(local).parent)

    # --------------------------------------------------------------------------------- helpers

    def _require_info(self) -> RunInfo:
        if self._info is None:
            raise InvalidStateError(
                f"recorder {self.name!r} has not been started; call start_run() first"
            )
        return self._info

    def _require_id(self) -> str:
        return self._require_info().run_id


def _status(status: str | RunStatus) -> RunStatus:
    try:
        return RunStatus(str(status).upper())
    except ValueError:
        valid = ", ".join(s.value for s in RunStatus)
        raise InvalidInputError(f"unknown status {status!r}; valid: {valid}") from None
