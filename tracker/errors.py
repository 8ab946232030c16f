"""Every error tracker raises, rooted at :class:`TrackerError`.

Each branch also subclasses the matching built-in, so ``except LookupError`` keeps working::

    TrackerError
    ├── ConfigError
    │   ├── UnsupportedURIError (ValueError)
    │   └── BackendUnavailable (ImportError)
    ├── NotFoundError (LookupError)
    │   ├── ExperimentNotFound
    │   ├── RunNotFound
    │   └── ArtifactNotFound (also FileNotFoundError)
    ├── AlreadyExistsError
    ├── InvalidInputError (ValueError)
    │   ├── InvalidQueryError      carries .query and .position
    │   └── InvalidArtifactPath
    ├── InvalidStateError (RuntimeError)
    │   └── InvalidTransition
    ├── LoadObjectError
    └── StoreError
        ├── StoreUnavailable
        └── SchemaVersionError
"""

from __future__ import annotations


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


class ExperimentNotFound(NotFoundError):
    """No (active) experiment with that id or name."""


class RunNotFound(NotFoundError):
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


class InvalidStateError(TrackerError, RuntimeError):
    """The operation is not allowed in the current state (e.g. logging to a finished run)."""


class InvalidTransition(InvalidStateError):
    """A run status change that the lifecycle does not allow."""


class LoadObjectError(TrackerError):
    """An artifact could not be loaded back into a Python object."""


class StoreError(TrackerError):
    """The metadata database failed; wraps the driver's error."""


class StoreUnavailable(StoreError):
    """The store did not answer in time: a dropped connection, a failover, a lock held too
    long. Nothing of the failed transaction was written, so running it again is safe; tracker
    retries these itself and raises one only when the store stays unavailable."""


class SchemaVersionError(StoreError):
    """The store's schema version does not match this version of tracker."""
