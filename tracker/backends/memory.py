"""An in-memory backend (``memory://NAME``): the reference implementation of the small core.

It implements only the abstract methods of :class:`~tracker.manager.ExpReader` and
:class:`~tracker.manager.ExpManager`; filtering, ordering, update validation, transition checks
and staleness come from the base class. Stores live as long as the process, one per name
(``tracker.connect("memory://a")`` twice sees the same runs, as fsspec's ``memory://`` does);
artifacts default to fsspec's memory filesystem. For tests and as a template for new backends.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker.entities import (
    ArtifactEntry,
    ExperimentInfo,
    Lifecycle,
    Metric,
    RunData,
    RunInfo,
    RunStatus,
    ViewType,
)
from tracker.errors import (
    AlreadyExistsError,
    ExperimentNotFound,
    InvalidInputError,
    InvalidStateError,
    RunNotFound,
)
from tracker.manager import ExpManager, RunUpdate, now_ms
from tracker.validation import check_point

_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class _Run:
    info: RunInfo
    data: RunData = field(default_factory=RunData)
    history: dict[str, list[Metric]] = field(default_factory=dict)
    latest: dict[str, Metric] = field(default_factory=dict)
    artifacts: dict[str, ArtifactEntry] = field(default_factory=dict)


@dataclass
class _Store:
    lock: threading.RLock = field(default_factory=threading.RLock)
    experiments: dict[str, ExperimentInfo] = field(default_factory=dict)
    runs: dict[str, _Run] = field(default_factory=dict)


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


class MemoryExpManager(ExpManager):
    """A store in this process's memory, named by its URI (``memory://NAME``)."""

    def __init__(
        self,
        uri: str,
        default_exp_name: str = "Experiment",
        artifact_uri: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        name = uri.split("://", 1)[-1].strip("/") or "default"
        artifact_uri = artifact_uri or f"memory://tracker-artifacts/{name}"
        super().__init__(uri, default_exp_name, artifact_uri, storage_options)
        with _stores_lock:
            self._store = _stores.setdefault(name, _Store())

    # ------------------------------------------------------------------------------------ reads

    def list_experiment_infos(self, view: ViewType = ViewType.ACTIVE_ONLY) -> list[ExperimentInfo]:
        stages = view.stages()
        with self._store.lock:
            return [e for e in self._store.experiments.values() if e.lifecycle.value in stages]

    def get_run_info(self, run_id: str) -> RunInfo:
        with self._store.lock:
            return self._run(run_id).info

    def _list_run_infos(
        self, experiment_ids: Sequence[str] | None, view: ViewType
    ) -> list[RunInfo]:
        stages, wanted = view.stages(), None if experiment_ids is None else set(experiment_ids)
        with self._store.lock:
            return [
                r.info
                for r in self._store.runs.values()
                if r.info.lifecycle.value in stages
                and (wanted is None or r.info.experiment_id in wanted)
            ]

    def _get_runs_data(self, run_ids: Sequence[str]) -> dict[str, RunData]:
        with self._store.lock:
            return {
                i: _copy_data(self._store.runs[i].data) for i in run_ids if i in self._store.runs
            }

    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        with self._store.lock:
            points = list(self._run(run_id).history.get(key, []))
        return sorted(points, key=lambda m: (m.step, m.timestamp))  # stable: logging order

    def list_artifact_entries(self, run_id: str) -> list[ArtifactEntry]:
        with self._store.lock:
            return sorted(self._run(run_id).artifacts.values(), key=lambda e: e.path)

    # ----------------------------------------------------------------------------------- writes

    def create_experiment(self, name: str) -> ExperimentInfo:
        with self._store.lock:
            if any(e.name == name for e in self.list_experiment_infos()):
                raise AlreadyExistsError(f"an experiment named {name!r} already exists")
            info = ExperimentInfo(
                str(len(self._store.experiments) + 1), name, Lifecycle.ACTIVE, now_ms()
            )
            self._store.experiments[info.experiment_id] = info
            return info

    def set_experiment_lifecycle(self, experiment_id: str, lifecycle: Lifecycle) -> None:
        with self._store.lock:
            info = self.get_experiment(experiment_id)
            lifecycle = Lifecycle(lifecycle)
            restoring = lifecycle is Lifecycle.ACTIVE and info.lifecycle is not Lifecycle.ACTIVE
            if restoring and self.find_experiment(info.name) is not None:
                raise AlreadyExistsError(
                    f"cannot restore experiment {info.name!r}: an active experiment has "
                    "that name; rename or delete it first"
                )
            self._store.experiments[info.experiment_id] = dataclasses.replace(
                info, lifecycle=lifecycle
            )

    def create_run(
        self,
        experiment_id: str,
        name: str,
        status: RunStatus = RunStatus.RUNNING,
        *,
        start_time: int | None = None,
        pid: int | None = None,
        host: str | None = None,
        run_id: str | None = None,
    ) -> RunInfo:
        if run_id is None:
            run_id = uuid.uuid4().hex
        elif not _RUN_ID.fullmatch(run_id):
            raise InvalidInputError(f"run id {run_id!r} must be 32 lowercase hex digits")
        ts, status = now_ms(), RunStatus(status)
        with self._store.lock:
            exp = self._store.experiments.get(str(experiment_id))
            if exp is None or exp.lifecycle is not Lifecycle.ACTIVE:
                state = "is deleted" if exp is not None else "does not exist"
                raise ExperimentNotFound(f"experiment {experiment_id!r} {state}")
            if run_id in self._store.runs:
                raise AlreadyExistsError(f"a run with id {run_id!r} already exists")
            info = RunInfo(
                run_id,
                exp.experiment_id,
                name,
                status,
                start_time=ts if start_time is None else start_time,
                heartbeat=ts if status is RunStatus.RUNNING else None,
                pid=pid,
                host=host,
            )
            self._store.runs[run_id] = _Run(info)
            return info

    def _update_run(self, run_id: str, update: RunUpdate, wait: float | None = None) -> RunInfo:
        with self._store.lock:
            run = self._run(run_id)
            update.check(run_id, run.info.status)
            changes: dict[str, Any] = update.fields()
            if update.status is not None:
                changes["status"] = update.status
            if update.lifecycle is not None:
                changes["lifecycle"] = update.lifecycle
            run.info = dataclasses.replace(run.info, **changes)
            return run.info

    def log_batch(
        self,
        run_id: str,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        with self._store.lock:
            run = self._writable(run_id)
            for m in metrics or ():  # everything checked first: all or nothing
                check_point(m)
            for key, value in (params or {}).items():
                old = run.data.params.get(key)
                if old is not None and old != value:
                    raise InvalidInputError(
                        f"param {key!r} of run {run_id} is already {old!r}; params are "
                        f"immutable, so it cannot become {value!r} (log it under another key, "
                        "or use a tag)"
                    )
            run.data.params.update(params or {})
            for m in metrics or ():
                run.history.setdefault(m.key, []).append(m)
                cur = run.latest.get(m.key)
                if cur is None or (m.step, m.timestamp) >= (cur.step, cur.timestamp):
                    run.latest[m.key] = m
                    run.data.metrics[m.key] = m.value
            run.data.tags.update(tags or {})

    def delete_tags(self, run_id: str, keys: Sequence[str]) -> None:
        with self._store.lock:
            run = self._writable(run_id)
            for key in keys:
                run.data.tags.pop(key, None)

    def delete_run_permanently(self, run_id: str) -> None:
        with self._store.lock:
            self._run(run_id)
            del self._store.runs[run_id]

    def record_artifacts(self, run_id: str, entries: Sequence[ArtifactEntry]) -> None:
        with self._store.lock:
            run = self._writable(run_id)
            run.artifacts.update((e.path, e) for e in entries)

    def forget_artifacts(self, run_id: str, paths: Sequence[str]) -> None:
        with self._store.lock:
            run = self._writable(run_id)
            for path in paths:
                run.artifacts.pop(path, None)

    # ---------------------------------------------------------------------------------- helpers

    def _run(self, run_id: str) -> _Run:
        run = self._store.runs.get(run_id)
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return run

    def _writable(self, run_id: str) -> _Run:
        run = self._run(run_id)
        if run.info.lifecycle is not Lifecycle.ACTIVE:
            raise InvalidStateError(f"run {run_id} is deleted; restore it before writing")
        return run


def _copy_data(data: RunData) -> RunData:
    return RunData(dict(data.params), dict(data.metrics), dict(data.tags))
