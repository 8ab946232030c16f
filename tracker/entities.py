"""Plain entities that every :class:`~tracker.manager.ExpManager` speaks in.

They are frozen dataclasses: backends build them from their own rows and never hand rows out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RunStatus(str, enum.Enum):
    """A run's status; the strings are MLflow's, so Qlib code comparing strings keeps working."""

    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED})

#: Which status may follow which. Ended runs may be resumed (Qlib's ``resume=True``) and
#: ended again with another status (of two processes resuming one run, the last to end sets
#: it, as MLflow lets any status follow); the task queue may hand a RUNNING run back to
#: SCHEDULED when its worker's lease expires.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.SCHEDULED: frozenset({RunStatus.RUNNING, RunStatus.KILLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.SCHEDULED}
    ),
    RunStatus.FINISHED: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.KILLED}),
    RunStatus.FAILED: frozenset({RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.KILLED}),
    RunStatus.KILLED: frozenset({RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.FAILED}),
}


class Lifecycle(str, enum.Enum):
    """Soft-deletion stage of experiments and runs."""

    ACTIVE = "active"
    DELETED = "deleted"

    def __str__(self) -> str:
        return self.value


class ViewType(enum.IntEnum):
    """Which lifecycle stages a listing includes (MLflow's ``run_view_type`` numbers)."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3

    def stages(self) -> tuple[str, ...]:
        if self is ViewType.ACTIVE_ONLY:
            return (Lifecycle.ACTIVE.value,)
        if self is ViewType.DELETED_ONLY:
            return (Lifecycle.DELETED.value,)
        return (Lifecycle.ACTIVE.value, Lifecycle.DELETED.value)


@dataclass(frozen=True)
class ExperimentInfo:
    experiment_id: str
    name: str
    lifecycle: Lifecycle = Lifecycle.ACTIVE
    creation_time: int = 0  # epoch milliseconds


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    step: int = 0
    timestamp: int = 0  # epoch milliseconds


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    name: str
    status: RunStatus
    lifecycle: Lifecycle = Lifecycle.ACTIVE
    start_time: int | None = None  # epoch milliseconds
    end_time: int | None = None
    heartbeat: int | None = None
    pid: int | None = None
    host: str | None = None

    @property
    def artifact_prefix(self) -> str:
        """The run's artifact directory relative to the artifact root."""
        return f"{self.experiment_id}/{self.run_id}/artifacts"


@dataclass(frozen=True)
class RunData:
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest value per key
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData


@dataclass(frozen=True)
class ArtifactEntry:
    """One stored file; ``path`` is relative to the run's artifact directory."""

    path: str
    size: int
    checksum: str  # "sha256:<hex>"
    mtime: int = 0  # epoch milliseconds


@dataclass(frozen=True)
class ExperimentSummary:
    """An experiment with its run counts, for listings."""

    info: ExperimentInfo
    runs: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    last_activity: int | None = None  # epoch milliseconds: latest start, end or heartbeat
