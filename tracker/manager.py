"""The pluggable backend interface.

An :class:`ExpManager` stores experiments, runs and their params, metrics, tags and artifact
manifest. Backends implement a small abstract core that speaks in the plain entities of
:mod:`tracker.entities`; Qlib's conveniences (``get_exp``, ``search_records``, ``log_metrics`` …)
are derived here once, so every backend behaves the same.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tracker import writer
from tracker.entities import (
    ArtifactEntry,
    ExperimentInfo,
    ExperimentSummary,
    Lifecycle,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    ViewType,
)
from tracker.errors import ExperimentNotFound, InvalidInputError
from tracker.uri import mask
from tracker.validation import check_key, check_name, metric_step, metric_value, text_items

if TYPE_CHECKING:
    import pandas as pd

    from tracker.artifacts import ArtifactStore
    from tracker.experiment import Experiment

#: A RUNNING run whose heartbeat is older than this (seconds) is reported as stale.
DEFAULT_STALE_AFTER = 60.0


def now_ms() -> int:
    return int(time.time() * 1000)


def check_transition(
    run_id: str, current: RunStatus, new: RunStatus, expect: Iterable[RunStatus] | None = None
) -> None:
    """Raise InvalidTransition unless ``current -> new`` is allowed (and ``current`` is one of
    ``expect``, when given); backends call it inside their compare-and-set."""
    from tracker.entities import TRANSITIONS
    from tracker.errors import InvalidTransition

    if expect is not None and current not in set(expect):
        raise InvalidTransition(f"run {run_id} is {current}, expected one of {sorted(expect)}")
    if new != current and new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current]))
        raise InvalidTransition(
            f"run {run_id} cannot go from {current} to {new} (allowed: {allowed})"
        )


class ExpManager(abc.ABC):
    """A tracking backend. Construct through :func:`tracker.init` or :func:`tracker.connect`.

    Args:
        uri: where the metadata lives, as the backend understands it.
        default_exp_name: the experiment used when none is named (Qlib: ``"Experiment"``).
        artifact_uri: an fsspec URL for artifacts; backends may derive a default.
    """

    def __init__(
        self,
        uri: str,
        default_exp_name: str = "Experiment",
        artifact_uri: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.uri = uri
        self.default_exp_name = default_exp_name
        self.artifact_uri = artifact_uri
        self.storage_options = dict(storage_options or {})
        self._artifacts: ArtifactStore | None = None

    def __repr__(self) -> str:
        artifacts = None if self.artifact_uri is None else mask(self.artifact_uri)
        return f"{type(self).__name__}(uri={mask(self.uri)!r}, artifact_uri={artifacts!r})"

    # ----------------------------------------------------------------- abstract core: experiments

    @abc.abstractmethod
    def create_experiment(self, name: str) -> ExperimentInfo:
        """Create an active experiment. Raises AlreadyExistsError if an active one has the name."""

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> ExperimentInfo:
        """The experiment with that id, deleted or not. Raises ExperimentNotFound."""

    @abc.abstractmethod
    def find_experiment(self, name: str) -> ExperimentInfo | None:
        """The active experiment with that name, or None."""

    @abc.abstractmethod
    def list_experiment_infos(self, view: ViewType = ViewType.ACTIVE_ONLY) -> list[ExperimentInfo]:
        """Experiments in creation order."""

    @abc.abstractmethod
    def set_experiment_lifecycle(self, experiment_id: str, lifecycle: Lifecycle) -> None:
        """Soft-delete or restore an experiment. Raises ExperimentNotFound, AlreadyExistsError
        (restoring while another active experiment took the name)."""

    # ------------------------------------------------------------------------ abstract core: runs

    @abc.abstractmethod
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
        """Create a run in an active experiment; ``run_id`` (32 hex digits) keeps an id when
        importing. Raises ExperimentNotFound, AlreadyExistsError (the id is taken)."""

    @abc.abstractmethod
    def get_run_info(self, run_id: str) -> RunInfo:
        """The run's info, deleted or not. Raises RunNotFound."""

    @abc.abstractmethod
    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | None = None,
        expect: Iterable[RunStatus] | None = None,
        lifecycle: Lifecycle | None = None,
        **fields: Any,
    ) -> RunInfo:
        """Change a run atomically and return its new info.

        ``status`` must be a legal transition (``entities.TRANSITIONS``) from the stored status,
        else InvalidTransition; with ``expect`` the stored status must also be one of those
        (compare-and-set, e.g. reaping only if still RUNNING). ``fields`` may set
        ``start_time``, ``end_time``, ``heartbeat``, ``pid``, ``host`` and ``name``.
        Raises RunNotFound.
        """

    @abc.abstractmethod
    def _get_runs_data(self, run_ids: Sequence[str]) -> dict[str, RunData]:
        """Params, latest metrics and tags of many runs in one go (missing ids are left out)."""

    @abc.abstractmethod
    def search_run_infos(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter_string: str = "",
        order_by: Sequence[str] | str | None = None,
        max_results: int | None = None,
        view: ViewType = ViewType.ACTIVE_ONLY,
    ) -> list[RunInfo]:
        """Runs matching the filter grammar of :mod:`tracker.search`, newest first unless
        ordered otherwise. Raises InvalidQueryError for a malformed filter."""

    @abc.abstractmethod
    def log_batch(
        self,
        run_id: str,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Write params, metrics and tags in one transaction: all of it or nothing.

        Values are already validated. Any run that is not deleted takes them, ended or not
        (as in Qlib and MLflow: records analyse finished runs), and keeps its status.
        A param logged again with the same value is a no-op, with another value an
        InvalidInputError. Raises RunNotFound, InvalidStateError (a deleted run).
        """

    @abc.abstractmethod
    def delete_tags(self, run_id: str, keys: Sequence[str]) -> None:
        """Remove tags; missing keys are ignored."""

    @abc.abstractmethod
    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of one metric, ordered by step, then time, then logging order."""

    @abc.abstractmethod
    def delete_run_permanently(self, run_id: str) -> None:
        """Remove a run, its data and its manifest (not its files: see ``purge_run``)."""

    # --------------------------------------------------------------- abstract core: artifacts

    @abc.abstractmethod
    def record_artifacts(self, run_id: str, entries: Sequence[ArtifactEntry]) -> None:
        """Add or replace manifest entries of a run."""

    @abc.abstractmethod
    def forget_artifacts(self, run_id: str, paths: Sequence[str]) -> None:
        """Remove the manifest entries of these paths (absent ones are fine)."""

    @abc.abstractmethod
    def list_artifact_entries(self, run_id: str) -> list[ArtifactEntry]:
        """Every manifest entry of a run, ordered by path."""

    def beat(self, run_id: str, at: int, wait: float) -> RunInfo:
        """Set the run's heartbeat to ``at`` (epoch ms), waiting at most ``wait`` seconds for
        locks where the backend can bound it, and return its info (the status as stored)."""
        return self.update_run(run_id, heartbeat=at)

    # ------------------------------------------------------------------- derived conveniences

    @property
    def artifacts(self) -> ArtifactStore:
        if self._artifacts is None:
            from tracker.artifacts import ArtifactStore

            if self.artifact_uri is None:
                raise InvalidInputError(
                    f"store {mask(self.uri)!r} has no artifact location: pass artifact_uri= "
                    "(a path, s3://bucket/prefix, gs://…) or set TRACKER_ARTIFACT_URI"
                )
            self._artifacts = ArtifactStore(self.artifact_uri, self.storage_options)
        return self._artifacts

    def get_experiment_by_name(self, name: str) -> ExperimentInfo:
        info = self.find_experiment(name)
        if info is None:
            names = ", ".join(repr(e.name) for e in self.list_experiment_infos()[:10]) or "none"
            raise ExperimentNotFound(f"no experiment named {name!r} (existing: {names})")
        return info

    def get_or_create_experiment(self, name: str) -> ExperimentInfo:
        """Race-safe: two processes creating the same name both get the one experiment."""
        from tracker.errors import AlreadyExistsError

        found = self.find_experiment(name)
        if found is not None:
            return found
        try:
            return self.create_experiment(check_name(name, "experiment name"))
        except AlreadyExistsError:
            return self.get_experiment_by_name(name)

    def get_runs_data(self, run_ids: Sequence[str]) -> dict[str, RunData]:
        """Params, latest metrics and tags of many runs; what this process still has queued
        for them is written first."""
        for run_id in run_ids:
            writer.flush_run(run_id)
        return self._get_runs_data(run_ids)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of one metric, ordered by step, then time, then logging order."""
        writer.flush_run(run_id)
        return self._get_metric_history(run_id, key)

    def has_run(self, run_id: str) -> bool:
        """Whether a run with that id exists (deleted or not)."""
        from tracker.errors import RunNotFound

        try:
            self.get_run_info(run_id)
        except RunNotFound:
            return False
        return True

    def get_run(self, run_id: str) -> Run:
        info = self.get_run_info(run_id)
        return Run(info, self.get_runs_data([run_id]).get(run_id, RunData()))

    def search_runs(self, *args: Any, **kwargs: Any) -> list[Run]:
        infos = self.search_run_infos(*args, **kwargs)
        data = self.get_runs_data([i.run_id for i in infos])
        return [Run(i, data.get(i.run_id, RunData())) for i in infos]

    def log_metric(self, run_id: str, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics(run_id, {key: value}, step=step)

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        ts, st = now_ms(), metric_step(step, metrics)
        points = [Metric(check_key(k), metric_value(k, v), st, ts) for k, v in metrics.items()]
        self.log_batch(run_id, metrics=points)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_batch(run_id, params=text_items(params, "param"))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(run_id, tags=text_items(tags, "tag"))

    def delete_run(self, run_id: str) -> RunInfo:
        return self.update_run(run_id, lifecycle=Lifecycle.DELETED)

    def restore_run(self, run_id: str) -> RunInfo:
        return self.update_run(run_id, lifecycle=Lifecycle.ACTIVE)

    def purge_run(self, run_id: str) -> None:
        """Delete a run for good: its files first, then its rows (a crash in between leaves a
        run without files, which ``tracker gc`` finishes, never files without a run)."""
        info = self.get_run_info(run_id)
        self.artifacts.delete_prefix(info.artifact_prefix)
        self.delete_run_permanently(run_id)

    def find_runs(self, prefix: str, view: ViewType = ViewType.ALL) -> list[RunInfo]:
        """Runs whose id starts with ``prefix`` (as git resolves short hashes)."""
        if not prefix or not all(c in "0123456789abcdef" for c in prefix.lower()):
            return []
        return self.search_run_infos(
            filter_string=f"run_id LIKE '{prefix.lower()}%'", view=view, max_results=50
        )

    def summarize_experiments(
        self, view: ViewType = ViewType.ACTIVE_ONLY
    ) -> list[ExperimentSummary]:
        """Every experiment with its run and status counts; backends override for speed."""
        out = []
        for info in self.list_experiment_infos(view):
            runs = self.search_run_infos([info.experiment_id], view=view)
            statuses: dict[str, int] = {}
            for run in runs:
                statuses[run.status.value] = statuses.get(run.status.value, 0) + 1
            times = [t for r in runs for t in (r.start_time, r.end_time, r.heartbeat) if t]
            out.append(ExperimentSummary(info, len(runs), statuses, max(times, default=None)))
        return out

    def stale_runs(self, stale_after: float = DEFAULT_STALE_AFTER) -> list[RunInfo]:
        """RUNNING runs whose heartbeat is older than ``stale_after`` seconds."""
        cutoff = now_ms() - int(stale_after * 1000)
        running = self.search_run_infos(
            filter_string=f"status = 'RUNNING' and heartbeat < {cutoff}", view=ViewType.ALL
        )
        no_beat = self.search_run_infos(filter_string="status = 'RUNNING'", view=ViewType.ALL)
        # Runs written by another tool may have no heartbeat: judge those by start time.
        legacy = [r for r in no_beat if r.heartbeat is None and (r.start_time or 0) < cutoff]
        return running + legacy

    def dead_runs(self, stale_after: float = DEFAULT_STALE_AFTER) -> list[RunInfo]:
        """Stale runs whose process is not known to be alive: gone from this host, or on
        another host, where only the heartbeat tells (:func:`tracker.liveness.process_alive`)."""
        from tracker.liveness import process_alive

        return [r for r in self.stale_runs(stale_after) if not process_alive(r)]

    def reap(self, stale_after: float = DEFAULT_STALE_AFTER) -> list[RunInfo]:
        """Mark dead runs (see :meth:`dead_runs`) FAILED and return them. A run whose process
        turns out to be alive after all (another host's reaper could not see it) is set
        RUNNING again by that process, and every point it logged is kept."""
        from tracker.errors import InvalidTransition

        reaped = []
        for info in self.dead_runs(stale_after):
            try:
                reaped.append(
                    self.update_run(
                        info.run_id,
                        status=RunStatus.FAILED,
                        expect=[RunStatus.RUNNING],
                        end_time=now_ms(),
                    )
                )
            except InvalidTransition:
                continue  # it ended or was resumed meanwhile
            self.set_tags(info.run_id, {"tracker.reaped": "heartbeat lost"})
        return reaped

    # ------------------------------------------------------------ Qlib's ExpManager surface

    def create_exp(self, experiment_name: str | None = None) -> Experiment:
        from tracker.experiment import Experiment

        name = check_name(experiment_name or self.default_exp_name, "experiment name")
        return Experiment(self, self.create_experiment(name))

    def get_exp(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        create: bool = True,
    ) -> Experiment:
        """By id, else by name (default: ``default_exp_name``); created if missing and
        ``create``, else ExperimentNotFound. Deleted experiments count as missing."""
        from tracker.experiment import Experiment

        if experiment_id is not None:
            info = self.get_experiment(str(experiment_id))
            if info.lifecycle is Lifecycle.DELETED:
                raise ExperimentNotFound(f"experiment {experiment_id!r} is deleted")
        else:
            name = experiment_name or self.default_exp_name
            info = (
                self.get_or_create_experiment(name) if create else self.get_experiment_by_name(name)
            )
        return Experiment(self, info)

    def delete_exp(
        self, experiment_id: str | None = None, experiment_name: str | None = None
    ) -> None:
        if experiment_id is None and experiment_name is None:
            raise InvalidInputError("delete_exp needs experiment_id or experiment_name")
        exp = self.get_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, create=False
        )
        self.set_experiment_lifecycle(exp.id, Lifecycle.DELETED)

    def list_experiments(self) -> dict[str, Experiment]:
        from tracker.experiment import Experiment

        return {i.name: Experiment(self, i) for i in self.list_experiment_infos()}

    def search_records(
        self,
        experiment_ids: Sequence[str] | str | None = None,
        filter_string: str = "",
        order_by: Sequence[str] | str | None = None,
        max_results: int | None = 100_000,
        experiment_names: Sequence[str] | None = None,
        run_view_type: int = ViewType.ACTIVE_ONLY,
    ) -> pd.DataFrame:
        """Runs as a DataFrame with MLflow's ``search_runs`` columns: run_id, experiment_id,
        name, status, start_time, end_time, then ``metrics.*``, ``params.*``, ``tags.*``."""
        from tracker.records import runs_frame

        ids = [experiment_ids] if isinstance(experiment_ids, str) else experiment_ids
        if experiment_names:
            named = [self.get_experiment_by_name(n).experiment_id for n in experiment_names]
            ids = list(ids or []) + named
        return runs_frame(
            self.search_runs(ids, filter_string, order_by, max_results, ViewType(run_view_type))
        )

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; the manager must not be used afterwards."""
