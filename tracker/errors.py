"""Every error tracker raises, rooted at :class:`TrackerError`.

Each branch also subclasses the matching built-in, so ``except LookupError`` keeps working::

    TrackerError
    ├── ConfigError
    │   ├── UnsupportedURIError (ValueError)
    │   └── BackendUnavailable (ImportError)
    ├── NotFoundError (LookupError)
    │   ├── ExperimentNotFound (also ValueError, as Qlib raises)
    │   ├── RunNotFound (also ValueError, as Qlib raises)
    │   └── ArtifactNotFound (also FileNotFoundError)
    ├── AlreadyExistsError
    ├── InvalidInputError (ValueError)
    │   ├── InvalidQueryError          carries .query and .position
    │   ├── InvalidArtifactPath
    │   ├── InvalidTypeError (also TypeError)
    │   ├── CalendarRangeError (also KeyError)
    │   ├── MigrationError             a source store missing, of the wrong kind, damaged
    │   └── BundleError                a bundle missing, malformed or damaged
    ├── InvalidStateError (RuntimeError)
    │   ├── InvalidTransition
    │   ├── ImportConflict
    │   ├── LeaseLost                  a task queue worker's lease went to another worker
    │   └── WaitTimeout (also TimeoutError)
    ├── TaskFuncError                  a task function failed in its own process
    ├── LoadObjectError
    │   ├── UnsafeObjectError (also pickle.UnpicklingError)  carries .reference
    │   └── ArtifactChecksumError
    ├── ArtifactTimeout (TimeoutError)
    ├── MLflowLimitation (NotImplementedError)
    └── StoreError
        ├── StoreUnavailable
        └── SchemaVersionError

Every class is defined here (a test checks it); modules that raise one import it from here.
"""

from __future__ import annotations

import pickle

#: The name tracker is installed under (``tracker`` on the package index is another project).
DISTRIBUTION = "qlib-tracker"


def install_hint(extra: str) -> str:
    """The command that installs an optional part of tracker."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


class TrackerError(Exception):
    """Base class of every error raised by tracker."""


class ConfigError(TrackerError):
    """The store or backend configuration is wrong."""


class UnsupportedURIError(ConfigError, ValueError):
    """No backend is registered for the URI's scheme."""


class BackendUnavailable(ConfigError, ImportError):
    """The backend exists but its optional dependency is not installed."""


class NotFoundError(TrackerError, LookupError):
    """Something looked up by id, name or path does not exist."""


class ExperimentNotFound(NotFoundError, ValueError):
    """No (active) experiment with that id or name."""


class RunNotFound(NotFoundError, ValueError):
    """No run (recorder) with that id or name."""


class ArtifactNotFound(NotFoundError, FileNotFoundError):
    """The run has no artifact at that path."""


class AlreadyExistsError(TrackerError):
    """Something with that name already exists."""


class InvalidInputError(TrackerError, ValueError):
    """A value given to tracker is malformed; the message names it and the fix."""


class InvalidQueryError(InvalidInputError):
    """A filter or order-by string does not parse."""

    def __init__(self, message: str, query: str = "", position: int | None = None) -> None:
        self.query = query
        self.position = position
        if position is not None and query:
            message = f"{message}\n  {query}\n  {' ' * position}^"
        super().__init__(message)


class InvalidArtifactPath(InvalidInputError):
    """An artifact path is absolute, empty or climbs out of the run."""


class InvalidTypeError(InvalidInputError, TypeError):
    """A value given to tracker has the wrong type (a string where a number belongs)."""


class CalendarRangeError(InvalidInputError, KeyError):
    """A point or shifted segment falls outside a bounded trading calendar.

    Also a ``KeyError`` because Qlib's rolling code stops at the calendar's end by catching it.
    """

    __str__ = Exception.__str__  # KeyError's own __str__ would quote the message


class MigrationError(InvalidInputError):
    """A source store that is missing, not of the expected kind, or damaged."""


class BundleError(InvalidInputError):
    """A bundle that is missing, malformed or damaged."""


class InvalidStateError(TrackerError, RuntimeError):
    """The operation is not allowed in the current state (e.g. logging to a finished run)."""


class InvalidTransition(InvalidStateError):
    """A run status change that the lifecycle does not allow."""


class ImportConflict(InvalidStateError):
    """Another import took over a run while this one was writing it."""


class LeaseLost(InvalidStateError):
    """This worker no longer holds the task (its lease expired and another worker took it)."""


class WaitTimeout(InvalidStateError, TimeoutError):
    """``TaskManager.wait`` saw no progress for its timeout: no worker takes the pool's tasks."""


class TaskFuncError(TrackerError):
    """``task_func`` failed in its own process (``force_release=True``); carries its traceback."""


class LoadObjectError(TrackerError):
    """An artifact could not be loaded back into a Python object."""


class UnsafeObjectError(LoadObjectError, pickle.UnpicklingError):
    """A pickle names code (a class or function outside the allow-list of data types in
    :mod:`tracker.safe_pickle`) or holds a pandas/numpy structure that would read memory out
    of bounds; read-only commands refuse it. ``reference`` is the ``module.name`` refused."""

    def __init__(self, message: str, reference: str = "") -> None:
        self.reference = reference
        super().__init__(message)


class ArtifactChecksumError(LoadObjectError):
    """An artifact's stored bytes differ from what its manifest recorded: the file was changed
    or damaged outside tracker (``tracker verify`` lists such files, ``--repair`` re-records)."""


class ArtifactTimeout(TrackerError, TimeoutError):
    """The artifact server did not answer in time (``TRACKER_ARTIFACT_TIMEOUT``)."""


class MLflowLimitation(TrackerError, NotImplementedError):
    """MLflow cannot do what the native store does here; the message says what instead."""


class StoreError(TrackerError):
    """The metadata database failed; wraps the driver's error."""


class StoreUnavailable(StoreError):
    """The store did not answer in time: a dropped connection, a failover, a lock held too
    long. Nothing of the failed transaction was written, so running it again is safe; tracker
    retries these itself and raises one only when the store stays unavailable."""


class SchemaVersionError(StoreError):
    """The store's schema version does not match this version of tracker."""
