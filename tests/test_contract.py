"""The packaged contract suite (:mod:`tracker.testing`) on every backend: SQLite and
PostgreSQL metadata, MLflow, and the in-memory reference backend, with artifacts on the local
disk, memory:// and S3."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tracker
from tests.conftest import BACKENDS, open_manager
from tracker.testing import *  # noqa: F403 - the suite itself


@pytest.fixture(params=[*BACKENDS, pytest.param(("memory", "memory"), id="memory")])
def manager(request, tmp_path) -> Iterator[tracker.ExpManager]:
    yield from open_manager(request, tmp_path)
