"""The pluggable backend interface: a read side and a write side.

An :class:`ExpReader` answers every read (the CLI's stdlib SQLite reader is one); an
:class:`ExpManager` adds the writes. Backends implement a small abstract core that speaks in the
plain entities of :mod:`tracker.entities`; filter parsing, update validation, transition checks,
staleness and the conveniences (``log_metrics``, ``reap`` …) are derived here once, so every
backend behaves the same. Qlib's object API (``get_exp``, ``search_records`` …) lives above, in
:mod:`tracker.objects`.
"""

from __future__ import annotations

import abc
import dataclasses
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
from tracker.errors import ExperimentNotFound, InvalidInputError, RunNotFound
from tracker.stale import DEFAULT_STALE_AFTER, now_ms, run_is_stale, stale_cutoff
from tracker.uri import mask
from tracker.validation import check_key, check_name, metric_step, metric_value, text_items

if TYPE_CHECKING:
    from tracker.artifacts import ArtifactStore
    from tracker.search import Expr, OrderKey

__all__ = [
    "DEFAULT_STALE_AFTER",
    "ExpManager",
    "ExpReader",
    "RunUpdate",
    "check_transition",
    "now_ms",
]


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


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: A RunUpdate field left as it is (``None`` clears it).
UNSET: Any = _Unset()
_RUN_FIELDS = ("start_time", "end_time", "heartbeat", "pid", "host", "name")


@dataclasses.dataclass(frozen=True)
class RunUpdate:
    """One atomic change of a run, validated once: what ``update_run`` hands a backend.

    ``status`` must be a legal transition from the stored one (``check``), and with ``expect``
    the stored status one of those (compare-and-set). Fields left ``UNSET`` keep their value.
    """

    status: RunStatus | None = None
    expect: tuple[RunStatus, ...] | None = None
    lifecycle: Lifecycle | None = None
    start_time: int | None = UNSET
    end_time: int | None = UNSET
    heartbeat: int | None = UNSET
    pid: int | None = UNSET
    host: str | None = UNSET
    name: str | None = UNSET

    def __post_init__(self) -> None:
        if self.status is not None:
            object.__setattr__(self, "status", RunStatus(self.status))
        if self.lifecycle is not None:
            object.__setattr__(self, "lifecycle", Lifecycle(self.lifecycle))
        if self.expect is not None:
            object.__setattr__(self, "expect", tuple(RunStatus(s) for s in self.expect))

    def fields(self) -> dict[str, Any]:
        """The run fields this update sets (``start_time``, ``end_time``, ``heartbeat``,
        ``pid``, ``host``, ``name``), by column name."""
        return {f: v for f in _RUN_FIELDS if (v := getattr(self, f)) is not UNSET}

    def check(self, run_id: str, current: RunStatus) -> None:
        """Raise InvalidTransition unless this update may apply to a run stored as
        ``current``; backends call it inside their compare-and-set."""
        if self.status is not None:
            check_transition(run_id, RunStatus(current), self.status, self.expect)


class ExpReader(abc.ABC):
    """The read side of a tracking backend. Construct through :func:`tracker.connect`.

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

    # ------------------------------------------------------------------- abstract core: reads

    @abc.abstractmethod
    def list_experiment_infos(self, view: ViewType = ViewType.ACTIVE_ONLY) -> list[ExperimentInfo]:
        """Experiments in creation order."""

    @abc.abstractmethod
    def get_run_info(self, run_id: str) -> RunInfo:
        """The run's info, deleted or not. Raises RunNotFound."""

    @abc.abstractmethod
    def _list_run_infos(
        self, experiment_ids: Sequence[str] | None, view: ViewType
    ) -> list[RunInfo]:
        """Every run of these experiments (all when None) in ``view``, in any order: what the
        default :meth:`_search_run_infos` filters and orders in Python."""

    @abc.abstractmethod
    def _get_runs_data(self, run_ids: Sequence[str]) -> dict[str, RunData]:
        """Params, latest metrics and tags of many runs in one go (missing ids are left out)."""

    @abc.abstractmethod
    def _get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every point of one metric, ordered by step, then time, then logging order."""

    @abc.abstractmethod
    def list_artifact_entries(self, run_id: str) -> list[ArtifactEntry]:
        """Every manifest entry of a run, ordered by path."""

    # --------------------------------------------------------- hooks with a generic default

    def get_experiment(self, experiment_id: str) -> ExperimentInfo:
        """The experiment with that id, deleted or not. Raises ExperimentNotFound."""
        for info in self.list_experiment_infos(ViewType.ALL):
            if info.experiment_id == str(experiment_id):
                return info
        raise ExperimentNotFound(f"no experiment with id {experiment_id!r}")

    def find_experiment(self, name: str) -> ExperimentInfo | None:
        """The active experiment with that name, or None."""
        return next((i for i in self.list_experiment_infos() if i.name == name), None)

    def _search_run_infos(
        self,
        experiment_ids: Sequence[str] | None,
        expr: Expr | None,
        order: Sequence[OrderKey],
        max_results: int | None,
        view: ViewType,
    ) -> list[RunInfo]:
        """Runs matching a parsed filter, ordered by ``order`` then newest first. This default
        evaluates in Python (:func:`tracker.search.search_in_python`); a backend that can
        evaluate the expression itself overrides it."""
        from tracker.search import search_in_python

        infos = self._list_run_infos(experiment_ids, view)
        data = self._get_runs_data([i.run_id for i in infos]) if expr or order else {}
        runs = [Run(i, data.get(i.run_id, RunData())) for i in infos]
        return [run.info for run in search_in_python(runs, expr, order, max_results)]

    def _search_runs(
        self,
        experiment_ids: Sequence[str] | None,
        expr: Expr | None,
        order: Sequence[OrderKey],
        max_results: int | None,
        view: ViewType,
    ) -> list[Run]:
        """As :meth:`_search_run_infos`, with each run's data."""
        infos = self._search_run_infos(experiment_ids, expr, order, max_results, view)
        data = self.get_runs_data([i.run_id for i in infos])
        return [Run(i, data.get(i.run_id, RunData())) for i in infos]

    # ------------------------------------------------------------------ template methods

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
        from tracker.search import parse_filter, parse_order_by

        expr, order = parse_filter(filter_string or ""), parse_order_by(order_by)
        return self._search_run_infos(experiment_ids, expr, order, max_results, ViewType(view))

    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter_string: str = "",
        order_by: Sequence[str] | str | None = None,
        max_results: int | None = None,
        view: ViewType = ViewType.ACTIVE_ONLY,
    ) -> list[Run]:
        from tracker.search import parse_filter, parse_order_by

        expr, order = parse_filter(filter_string or ""), parse_order_by(order_by)
        return self._search_runs(experiment_ids, expr, order, max_results, ViewType(view))

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
        try:
            self.get_run_info(run_id)
        except RunNotFound:
            return False
        return True

    def get_run(self, run_id: str) -> Run:
        info = self.get_run_info(run_id)
        return Run(info, self.get_runs_data([run_id]).get(run_id, RunData()))

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

    def stale_runs(
        self, stale_after: float = DEFAULT_STALE_AFTER, view: ViewType = ViewType.ALL
    ) -> list[RunInfo]:
        """RUNNING runs whose heartbeat is older than ``stale_after`` seconds
        (:func:`tracker.stale.is_stale`)."""
        cutoff = stale_cutoff(stale_after)
        running = self.search_run_infos(filter_string="status = 'RUNNING'", view=view)
        return [r for r in running if run_is_stale(r, cutoff)]

    def count_stale_runs(self, view: ViewType = ViewType.ACTIVE_ONLY) -> dict[str, int]:
        """Stale runs per experiment id; backends override for speed."""
        counts: dict[str, int] = {}
        for run in self.stale_runs(view=view):
            counts[run.experiment_id] = counts.get(run.experiment_id, 0) + 1
        return counts

    def dead_runs(self, stale_after: float = DEFAULT_STALE_AFTER) -> list[RunInfo]:
        """Stale runs whose process is not known to be alive: gone from this host, or on
        another host, where only the heartbeat tells (:func:`tracker.liveness.process_alive`)."""
        from tracker.liveness import process_alive

        return [r for r in self.stale_runs(stale_after) if not process_alive(r)]

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; the reader must not be used afterwards."""


class ExpManager(ExpReader):
    """A tracking backend: the reads of :class:`ExpReader` and the writes."""

    # ------------------------------------------------------------------ abstract core: writes

    @abc.abstractmethod
    def create_experiment(self, name: str) -> ExperimentInfo:
        """Create an active experiment. Raises AlreadyExistsError if an active one has the name."""

    @abc.abstractmethod
    def set_experiment_lifecycle(self, experiment_id: str, lifecycle: Lifecycle) -> None:
        """Soft-delete or restore an experiment. Raises ExperimentNotFound, AlreadyExistsError
        (restoring while another active experiment took the name)."""

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
    def _update_run(self, run_id: str, update: RunUpdate, wait: float | None = None) -> RunInfo:
        """Apply a validated update atomically, calling ``update.check(run_id, stored status)``
        inside the compare-and-set, and return the new info. ``wait`` bounds lock waits (in
        seconds) where the backend can. Raises RunNotFound, InvalidTransition."""

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
    def delete_run_permanently(self, run_id: str) -> None:
        """Remove a run, its data and its manifest (not its files: see ``purge_run``)."""

    @abc.abstractmethod
    def record_artifacts(self, run_id: str, entries: Sequence[ArtifactEntry]) -> None:
        """Add or replace manifest entries of a run."""

    @abc.abstractmethod
    def forget_artifacts(self, run_id: str, paths: Sequence[str]) -> None:
        """Remove the manifest entries of these paths (absent ones are fine)."""

    @classmethod
    def upgrade_store(cls, uri: str) -> str:
        """Migrate the store at ``uri`` to this tracker's schema (``tracker db upgrade``) and
        say what it is now; backends with a schema of their own override it."""
        cls(uri).close()
        return f"{mask(uri)}: up to date"

    # ------------------------------------------------------------------ template methods

    def update_run(
        self,
        run_id: str,
        update: RunUpdate | None = None,
        *,
        status: RunStatus | None = None,
        expect: Iterable[RunStatus] | None = None,
        lifecycle: Lifecycle | None = None,
        start_time: int | None = UNSET,
        end_time: int | None = UNSET,
        heartbeat: int | None = UNSET,
        pid: int | None = UNSET,
        host: str | None = UNSET,
        name: str | None = UNSET,
    ) -> RunInfo:
        """Change a run atomically and return its new info: a :class:`RunUpdate`, or its
        fields as keywords. Raises RunNotFound, InvalidTransition."""
        if update is None:
            update = RunUpdate(
                status,
                None if expect is None else tuple(expect),
                lifecycle,
                start_time,
                end_time,
                heartbeat,
                pid,
                host,
                name,
            )
        return self._update_run(run_id, update)

    def beat(self, run_id: str, at: int, wait: float) -> RunInfo:
        """Set the run's heartbeat to ``at`` (epoch ms), waiting at most ``wait`` seconds for
        locks where the backend can bound it, and return its info (the status as stored)."""
        return self._update_run(run_id, RunUpdate(heartbeat=at), wait)

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
