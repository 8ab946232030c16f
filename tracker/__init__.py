"""tracker: Qlib's experiment tracking (``R``, ``Experiment``, ``Recorder``) on SQLite or
PostgreSQL plus fsspec artifacts, without MLflow."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tracker.entities import (
    ArtifactEntry,
    ExperimentInfo,
    Lifecycle,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    ViewType,
)
from tracker.errors import (
    AlreadyExistsError,
    ArtifactNotFound,
    BackendUnavailable,
    ConfigError,
    ExperimentNotFound,
    InvalidArtifactPath,
    InvalidInputError,
    InvalidQueryError,
    InvalidStateError,
    InvalidTransition,
    LoadObjectError,
    NotFoundError,
    RunNotFound,
    SchemaVersionError,
    StoreError,
    StoreUnavailable,
    TrackerError,
    UnsupportedURIError,
)
from tracker.experiment import Experiment
from tracker.facade import QlibRecorder, R
from tracker.manager import ExpManager, ExpReader, RunUpdate
from tracker.recorder import Recorder
from tracker.registry import register_backend
from tracker.store import connect

__version__ = "0.1.0"


def init(
    uri: str | os.PathLike[str] | None = None,
    artifact_uri: str | None = None,
    default_exp_name: str = "Experiment",
    exp_manager: ExpManager | Mapping[str, Any] | None = None,
) -> ExpManager:
    """Set the store ``R`` uses (Qlib's ``qlib.init(exp_manager=…)`` in one call).

    ``exp_manager`` may be a manager or Qlib's config form
    ``{"class": …, "module_path": …, "kwargs": {"uri": …, "default_exp_name": …}}``; the
    class named there is ignored, the URI picks the backend.
    """
    return R.init(uri, artifact_uri, default_exp_name, exp_manager)


__all__ = [
    "AlreadyExistsError",
    "ArtifactEntry",
    "ArtifactNotFound",
    "BackendUnavailable",
    "ConfigError",
    "ExpManager",
    "ExpReader",
    "Experiment",
    "ExperimentInfo",
    "ExperimentNotFound",
    "InvalidArtifactPath",
    "InvalidInputError",
    "InvalidQueryError",
    "InvalidStateError",
    "InvalidTransition",
    "Lifecycle",
    "LoadObjectError",
    "Metric",
    "NotFoundError",
    "QlibRecorder",
    "R",
    "Recorder",
    "Run",
    "RunData",
    "RunInfo",
    "RunNotFound",
    "RunStatus",
    "RunUpdate",
    "SchemaVersionError",
    "StoreError",
    "StoreUnavailable",
    "TrackerError",
    "UnsupportedURIError",
    "ViewType",
    "connect",
    "init",
    "register_backend",
    "__version__",
]
