"""Bringing runs tracked elsewhere into a store (``tracker import mlflow SOURCE``).

A reader turns a source into :class:`SourceRun` objects: :mod:`tracker.migrate.mlflow_files`
reads an MLflow file store (``mlruns``) from its files, :mod:`tracker.migrate.mlflow_sql` an
MLflow SQLite/PostgreSQL database with plain SQL; neither imports mlflow. :func:`import_runs`
writes them, the same way for both: run ids are kept (so importing twice adds nothing), a run
that tracker exported to MLflow comes back under its own id (so a round trip adds nothing
either), experiments are found or created by name, and each run is written all or nothing
(:mod:`tracker.migrate.write`).
"""

from __future__ import annotations

import posixpath
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tracker.entities import ArtifactEntry, Lifecycle, Metric, RunInfo, RunStatus, ViewType
from tracker.errors import InvalidInputError, MigrationError
from tracker.manager import ExpManager, now_ms
from tracker.migrate.write import import_state, write_run
from tracker.validation import check_key, check_name, text_items

if TYPE_CHECKING:
    from tracker.migrate.files import ArtifactPlan

Progress = Callable[[Sequence[Any], str], Iterable[Any]]
#: On a run tracker exported to MLflow: its id here. On a run imported from MLflow whose id
#: is not 32 hex digits: that id (the run gets a stable id derived from it).
SOURCE_ID_TAG = "tracker.source_run_id"
_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class RunContent:
    """What a run holds besides its info; loaded only when needed (it can be large)."""

    params: dict[str, str]
    tags: dict[str, str]
    metrics: list[Metric]  # the full history, in the source's order


@dataclass(frozen=True)
class SourceRun:
    """One run of a source store, in tracker's terms."""

    run_id: str  # as the source has it
    experiment: str  # name
    name: str
    status: RunStatus
    lifecycle: Lifecycle  # DELETED also for every run of a deleted experiment
    start_time: int | None
    end_time: int | None
    load: Callable[[], RunContent] = field(repr=False, compare=False)
    artifact_uris: tuple[str, ...] = ()  # where its files may be, tried in order
    experiment_deleted: bool = False
    source_id: str | None = None  # its SOURCE_ID_TAG: the tracker run it was exported from

    @property
    def target_id(self) -> str:
        """The id in our store: the tracker run it was exported from, if any (it comes
        home); else the source's own when it has our form (MLflow's have); else a stable id
        derived from it. Either way a second import finds it."""
        if self.source_id is not None and _RUN_ID.fullmatch(self.source_id):
            return self.source_id
        rid = self.run_id.lower()
        if _RUN_ID.fullmatch(rid):
            return rid
        return uuid.uuid5(uuid.NAMESPACE_URL, f"tracker-import:{self.run_id}").hex


@dataclass
class ImportSummary:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the store
    #: Of ``imported``: runs an import that died had left half-written, written again.
    replaced: list[str] = field(default_factory=list)
    #: Of ``skipped``: runs another import is writing right now.
    in_progress: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # deleted, or another experiment
    experiments: list[str] = field(default_factory=list)  # names that received runs
    params: int = 0
    tags: int = 0
    metric_points: int = 0
    artifacts: int = 0
    bytes: int = 0
    #: Artifacts not copied: {"run_id", "path" (None: the whole run), "reason"}.
    artifacts_skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Source(Protocol):
    """What a reader offers: its experiments' names and its runs (metadata; content lazily)."""

    location: str

    def experiment_names(self) -> list[str]: ...

    def runs(self) -> Iterable[SourceRun]: ...

    def close(self) -> None: ...


def import_runs(
    manager: ExpManager,
    runs: Iterable[SourceRun],
    *,
    experiments: Sequence[str] = (),
    include_deleted: bool = False,
    progress: Progress | None = None,
) -> ImportSummary:
    """Write ``runs`` into ``manager`` and count what was done.

    Runs already in the store (by id) are skipped. Every run to import is read and checked
    first (keys, names, metric lines, artifact locations), so a damaged source imports
    nothing; then each run is written all or nothing (:func:`write_run`), and one that an
    import killed half-way left behind is written again. Artifacts that cannot be reached
    are reported in ``artifacts_skipped`` and the run is imported without them."""
    from tracker.migrate.files import locate

    bar: Progress = progress or (lambda items, _label: items)
    summary = ImportSummary()
    wanted = set(experiments)
    todo: list[SourceRun] = []
    abandoned: set[str] = set()
    for run in runs:
        if (wanted and run.experiment not in wanted) or (
            run.lifecycle is Lifecycle.DELETED and not include_deleted
        ):
            summary.excluded.append(run.run_id)
            continue
        state = import_state(manager, run.target_id)
        if state in ("absent", "abandoned"):
            todo.append(run)
            if state == "abandoned":
                abandoned.add(run.run_id)
        else:
            summary.skipped.append(run.run_id)
            if state == "importing":
                summary.in_progress.append(run.run_id)
    plans = {}
    for run in bar(todo, "Checking"):
        _checked(run, run.load())
        plans[run.run_id] = locate(run.artifact_uris)
    with ExperimentsByName(manager) as exps:
        for run in bar(todo, "Importing"):
            plan = plans[run.run_id]
            # Read again rather than kept from the check: years of mlruns need not fit in memory.
            content = _checked(run, run.load())
            exp_id = exps.id_for(run.experiment, run.experiment_deleted)
            entries = _write_run(manager, exp_id, run, content, plan)
            if entries is None:
                summary.skipped.append(run.run_id)  # another import took the id meanwhile
                continue
            summary.imported.append(run.run_id)
            if run.run_id in abandoned:
                summary.replaced.append(run.run_id)
            if run.experiment not in summary.experiments:
                summary.experiments.append(run.experiment)
            summary.params += len(content.params)
            summary.tags += len(content.tags)
            summary.metric_points += len(content.metrics)
            summary.artifacts += len(entries)
            summary.bytes += sum(e.size for e in entries)
            if plan.skipped is not None:
                summary.artifacts_skipped.append(
                    {"run_id": run.run_id, "path": None, "reason": plan.skipped}
                )
            summary.artifacts_skipped += [
                {"run_id": run.run_id, "path": p, "reason": why} for p, why in plan.bad_paths
            ]
    return summary


def _checked(run: SourceRun, content: RunContent) -> RunContent:
    """The content with every key and value checked as tracker's own writes are."""
    where = f"run {run.run_id} of experiment {run.experiment!r}"
    try:
        check_name(run.experiment, "experiment name")
        check_name(run.name, "run name")
        tags = text_items(content.tags, "tag")
        if run.target_id == run.source_id:
            tags.pop(SOURCE_ID_TAG, None)  # back home: the tag would name the run itself
        elif not _RUN_ID.fullmatch(run.run_id.lower()):
            tags[SOURCE_ID_TAG] = run.run_id
        for metric in content.metrics:
            check_key(metric.key, "metric key")
        return RunContent(text_items(content.params, "param"), tags, content.metrics)
    except InvalidInputError as e:
        raise MigrationError(f"{where}: {e}; nothing was imported") from e


def _write_run(
    manager: ExpManager, exp_id: str, run: SourceRun, content: RunContent, plan: ArtifactPlan
) -> list[ArtifactEntry] | None:
    def put(info: RunInfo) -> Iterator[ArtifactEntry]:
        with tempfile.TemporaryDirectory(prefix="tracker-import-") as tmp:
            for rel in plan.files:
                local = plan.fetch(rel, tmp)
                folder = posixpath.dirname(rel) or None
                yield manager.artifacts.put_file(info.artifact_prefix, local, folder)

    # A run another tool left RUNNING gets no heartbeat: `tracker reap` then judges it by its
    # start time instead of thinking it alive since the import. A source run that never
    # started gets the import time, as a new run would.
    start = run.start_time if run.start_time is not None else now_ms()
    info = RunInfo(run.target_id, exp_id, run.name, run.status, run.lifecycle, start, run.end_time)
    return write_run(manager, exp_id, info, content.params, content.tags, content.metrics, put)


class ExperimentsByName:
    """Experiment ids by name. A deleted source experiment gets a deleted experiment of the
    same name here: one an earlier import left (restored while runs go in), else a new one;
    if an active experiment has the name, the runs go there, deleted like their source."""

    def __init__(self, manager: ExpManager) -> None:
        self.manager = manager
        self.ids: dict[tuple[str, bool], str] = {}
        self.to_delete: list[str] = []

    def __enter__(self) -> ExperimentsByName:
        return self

    def __exit__(self, *exc: object) -> None:
        for exp_id in self.to_delete:
            self.manager.set_experiment_lifecycle(exp_id, Lifecycle.DELETED)

    def id_for(self, name: str, deleted: bool) -> str:
        key = (name, deleted)
        if key not in self.ids:
            m = self.manager
            active = m.find_experiment(name)
            if not deleted or active is not None:
                exp_id = (active or m.get_or_create_experiment(name)).experiment_id
            else:
                gone = [e for e in m.list_experiment_infos(ViewType.DELETED_ONLY) if e.name == name]
                if gone:
                    exp_id = gone[-1].experiment_id
                    m.set_experiment_lifecycle(exp_id, Lifecycle.ACTIVE)
                else:
                    exp_id = m.create_experiment(name).experiment_id
                self.to_delete.append(exp_id)
            self.ids[key] = exp_id
        return self.ids[key]
