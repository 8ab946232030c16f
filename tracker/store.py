"""Opening stores: resolve a location, pick the backend, cache the manager per location."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from tracker import registry
from tracker import uri as urimod
from tracker.manager import ExpManager

_cache: dict[tuple[str, str | None, str], ExpManager] = {}
_lock = threading.Lock()


def connect(
    uri: str | os.PathLike[str] | None = None,
    artifact_uri: str | None = None,
    *,
    default_exp_name: str = "Experiment",
    storage_options: Mapping[str, Any] | None = None,
    create: bool = True,
) -> ExpManager:
    """The manager for a store, opened once per process per resolved location.

    Args:
        uri: a directory, ``file:`` URI, ``sqlite:///…``, ``postgresql+psycopg://…`` or a
            registered scheme; default: ``TRACKER_URI``, else the nearest ``.tracker/``.
        artifact_uri: any fsspec URL; default: ``TRACKER_ARTIFACT_URI``, else beside the DB.
        create: with False, a missing default store raises instead of being created.
    """
    loc = urimod.resolve(uri, artifact_uri, create=create)
    key = (loc.uri, loc.artifact_uri, default_exp_name)
    with _lock:
        manager = _cache.get(key)
        if manager is None or storage_options:
            manager = registry.build(
                loc.uri,
                default_exp_name=default_exp_name,
                artifact_uri=loc.artifact_uri,
                storage_options=storage_options,
            )
            if not storage_options:
                _cache[key] = manager
    return manager


def clear_cache() -> None:
    """Close and forget every cached manager (tests, or before forking workers)."""
    with _lock:
        for manager in _cache.values():
            manager.close()
        _cache.clear()
