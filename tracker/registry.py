"""URI scheme -> backend class, with lazy imports and install hints (fsspec's pattern).

Built-ins are import strings so nothing heavy loads until a store is opened. Third-party
backends register under the ``tracker.backends`` entry-point group; one that fails to load
warns instead of breaking every other backend.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tracker.errors import (
    BackendUnavailable,
    InvalidInputError,
    UnsupportedURIError,
    install_hint,
)


@dataclass(frozen=True)
class BackendSpec:
    target: str  # "package.module:Class", or the class itself
    hint: str = ""  # how to install what it needs
    requires: tuple[str, ...] = ()  # modules that must be importable


_SQL = "tracker.backends.sql.store:SQLExpManager"
_registry: dict[str, BackendSpec | type] = {
    "sqlite": BackendSpec(_SQL),
    "postgresql": BackendSpec(_SQL, install_hint("postgres"), ("psycopg",)),
    "postgres": BackendSpec(_SQL, install_hint("postgres"), ("psycopg",)),
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


def get_backend_class(uri: str) -> type:
    """The backend class for a resolved URI; ``postgresql+psycopg`` falls back to
    ``postgresql``, ``mlflow+sqlite`` to ``mlflow``."""
    from tracker.uri import mask  # not at the top: tracker.uri imports this module

    _load_entry_points()
    scheme = scheme_of(uri)
    spec = _registry.get(scheme) or _registry.get(scheme.split("+", 1)[0])
    if spec is None:
        known = ", ".join(sorted(_registry))
        raise UnsupportedURIError(
            f"unknown store scheme {scheme!r} in {mask(uri)!r}; registered: {known} "
            "(a plain directory path also works)"
        )
    if isinstance(spec, type):
        return spec
    for module in spec.requires:
        if importlib.util.find_spec(module) is None:
            raise BackendUnavailable(f"{mask(uri)!r} needs the {module!r} package: {spec.hint}")
    module_name, _, attr = spec.target.partition(":")
    try:
        cls: type = getattr(importlib.import_module(module_name), attr)
    except ImportError as e:
        raise BackendUnavailable(
            f"backend for {scheme!r} failed to import: {e}. {spec.hint}"
        ) from e
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="tracker.backends"):
        try:
            _registry.setdefault(ep.name, ep.load())
        except Exception as e:  # a broken plugin must not break the built-ins
            warnings.warn(f"tracker backend plugin {ep.name!r} failed to load: {e}", stacklevel=2)


def build(uri: str, **kwargs: Any) -> Any:
    return get_backend_class(uri)(uri, **kwargs)
