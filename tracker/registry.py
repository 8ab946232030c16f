"""URI scheme -> backend class, with lazy imports and install hints (fsspec's pattern).

Built-ins are import strings so nothing heavy loads until a store is opened. Third-party
backends register under the ``tracker.backends`` entry-point group (``myscheme =
"package.module:Class"``); the entry point is kept as its import string and loaded only when a
store of that scheme is opened, so a broken plug-in breaks only its own scheme. A scheme may also
name a fast read-only class (``reader``), which the CLI's read commands use.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tracker.errors import (
    BackendUnavailable,
    InvalidInputError,
    UnsupportedURIError,
    install_hint,
)
from tracker.redact import mask


@dataclass(frozen=True)
class BackendSpec:
    target: str  # "package.module:Class", or the class itself
    hint: str = ""  # how to install what it needs
    requires: tuple[str, ...] = ()  # modules that must be importable
    reader: str = ""  # "package.module:Class" of a faster read-only ExpReader, if any


_SQL = "tracker.backends.sql.store:SQLExpManager"
_registry: dict[str, BackendSpec | type] = {
    "sqlite": BackendSpec(_SQL, reader="tracker.backends.sql.reader:SQLiteReader"),
    "postgresql": BackendSpec(_SQL, install_hint("postgres"), ("psycopg",)),
    "postgres": BackendSpec(_SQL, install_hint("postgres"), ("psycopg",)),
    "memory": BackendSpec("tracker.backends.memory:MemoryExpManager"),
    "mlflow": BackendSpec(
        "tracker.backends.mlflow:MLflowExpManager", install_hint("mlflow"), ("mlflow",)
    ),
}
registry = MappingProxyType(_registry)
_entry_points_loaded = False


def register_backend(scheme: str, target: str | type, *, clobber: bool = False) -> None:
    """Register a backend class (or its import string) for a URI scheme."""
    if scheme in _registry and not clobber:
        raise InvalidInputError(
            f"scheme {scheme!r} is already registered; pass clobber=True to replace"
        )
    _registry[scheme] = BackendSpec(target) if isinstance(target, str) else target


def scheme_of(uri: str) -> str:
    return uri.split(":", 1)[0].lower() if ":" in uri else ""


def _spec(uri: str) -> BackendSpec | type:

    _load_entry_points()
    scheme = scheme_of(uri)
    spec = _registry.get(scheme) or _registry.get(scheme.split("+", 1)[0])
    if spec is None:
        known = ", ".join(sorted(_registry))
        raise UnsupportedURIError(
            f"unknown store scheme {scheme!r} in {mask(uri)!r}; registered: {known} "
            "(a plain directory path also works)"
        )
    return spec


def get_backend_class(uri: str) -> type:
    """The backend class for a resolved URI; ``postgresql+psycopg`` falls back to
    ``postgresql``, ``mlflow+sqlite`` to ``mlflow``."""

    spec = _spec(uri)
    if isinstance(spec, type):
        return spec
    for module in spec.requires:
        if importlib.util.find_spec(module) is None:
            raise BackendUnavailable(f"{mask(uri)!r} needs the {module!r} package: {spec.hint}")
    return _import(spec.target, scheme_of(uri), spec.hint)


def get_reader_class(uri: str) -> type | None:
    """The fast read-only class registered for the URI's scheme, or None (then the backend
    itself reads)."""
    spec = _spec(uri)
    if isinstance(spec, type) or not spec.reader:
        return None
    return _import(spec.reader, scheme_of(uri), spec.hint)


def _import(target: str, scheme: str, hint: str) -> type:
    module_name, _, attr = target.partition(":")
    try:
        cls: type = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise BackendUnavailable(f"backend for {scheme!r} failed to import: {e}. {hint}") from e
    return cls


def _load_entry_points() -> None:
    """Register every ``tracker.backends`` entry point by its import string, unloaded."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="tracker.backends"):
        _registry.setdefault(ep.name, BackendSpec(ep.value))


def build(uri: str, **kwargs: Any) -> Any:
    return get_backend_class(uri)(uri, **kwargs)


def upgrade(uri: str) -> str:
    """Bring the store at ``uri`` to this tracker's schema through its backend's
    ``upgrade_store`` classmethod, and say what it is now."""
    return str(get_backend_class(uri).upgrade_store(uri))
