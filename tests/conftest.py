"""Shared fixtures: real SQLite files, the real PostgreSQL server, and artifact stores on the
local disk, ``memory://`` and a real S3-protocol server (moto's server mode)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tracker
from tracker import exit_hooks, writer
from tracker import store as store_mod

pytest_plugins = ["tests.s3server"]
pytest.register_assert_rewrite("tracker.testing")  # the packaged contract suite's asserts

POSTGRES_ENV = "TRACKER_TEST_POSTGRES_URI"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch) -> Iterator[None]:
    """No test sees another's environment, working directory, active run or cached store."""
    for name in list(os.environ):
        if name.startswith("TRACKER_") and name != POSTGRES_ENV:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
    tracker.R.reset()
    exit_hooks.end_live_runs(tracker.RunStatus.FINISHED)
    store_mod.clear_cache()


@pytest.fixture
def use_writer() -> Iterator[Callable[..., writer.Writer]]:
    """Runs started after ``use_writer(**settings)`` get a writer of their own made with those
    settings (e.g. ``heartbeat_interval=0.1``); the process's writer is back for the next test."""
    made: list[tuple[writer.Writer, writer.Writer | None]] = []

    def install(**settings: Any) -> writer.Writer:
        mine = writer.Writer(**settings)
        made.append((mine, writer.install(mine)))
        return mine

    yield install
    exit_hooks.end_live_runs(tracker.RunStatus.FINISHED)
    for mine, previous in reversed(made):
        mine.stop()
        writer.install(previous)


def postgres_base_uri() -> str | None:
    return os.environ.get(POSTGRES_ENV)


@pytest.fixture
def pg_uri() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    base = postgres_base_uri()
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} must be set in CI: the PostgreSQL tests may not skip")
        pytest.skip(f"set {POSTGRES_ENV} to run against PostgreSQL")
    from sqlalchemy import create_engine

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    store_mod.clear_cache()
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture
def sqlite_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'meta' / 'tracker.db'}"


def _artifact_root(kind: str, tmp_path, request) -> str:
    if kind == "local":
        return str(tmp_path / "artifacts")
    if kind == "memory":
        return f"memory://t{uuid.uuid4().hex[:10]}"
    server = request.getfixturevalue("s3_server")
    return f"s3://{server.bucket}/t{uuid.uuid4().hex[:10]}"


BACKENDS = [
    pytest.param(("sqlite", "local"), id="sqlite-local"),
    pytest.param(("sqlite", "memory"), id="sqlite-memory"),
    pytest.param(("sqlite", "s3"), id="sqlite-s3", marks=pytest.mark.s3),
    pytest.param(("postgres", "local"), id="postgres-local", marks=pytest.mark.postgres),
    pytest.param(
        ("postgres", "s3"), id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]
    ),
    pytest.param(("mlflow", "local"), id="mlflow-sqlite", marks=pytest.mark.mlflow),
]


@pytest.fixture(params=BACKENDS)
def manager(request, tmp_path) -> Iterator[tracker.ExpManager]:
    """The same contract, every metadata backend and artifact filesystem."""
    yield from open_manager(request, tmp_path)


def open_manager(request, tmp_path) -> Iterator[tracker.ExpManager]:
    """An empty store of the backend ``request.param`` names: (metadata, artifacts)."""
    meta, art = request.param
    if meta == "mlflow":
        yield from _mlflow_manager(request, tmp_path)
        return
    if meta == "memory":
        uri = f"memory://m{uuid.uuid4().hex[:12]}"
    elif meta == "postgres":
        uri = request.getfixturevalue("pg_uri")
    else:
        uri = f"sqlite:///{tmp_path / 'm.db'}"
    root = _artifact_root(art, tmp_path, request)
    options = request.getfixturevalue("s3_server").storage_options if art == "s3" else None
    m = tracker.connect(uri, root, storage_options=options)
    yield m
    exit_hooks.end_live_runs(tracker.RunStatus.FINISHED)
    m.close()


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database, created once: MLflow's 68 migrations take ~1.5 s."""
    pytest.importorskip("mlflow")
    from tracker.backends.mlflow import MLflowExpManager

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MLflowExpManager(f"mlflow+sqlite:///{path}").close()
    return path


def _mlflow_manager(request, tmp_path) -> Iterator[tracker.ExpManager]:
    """The MLflow adapter on a real MLflow SQLite store (a copy of the template)."""
    pytest.importorskip("mlflow")
    db = tmp_path / "mlflow.db"
    shutil.copyfile(request.getfixturevalue("mlflow_db_template"), db)
    m = tracker.connect(f"mlflow+sqlite:///{db}", str(tmp_path / "mlartifacts"))
    yield m
    exit_hooks.end_live_runs(tracker.RunStatus.FINISHED)
    m.close()


@pytest.fixture
def local_manager(tmp_path) -> Iterator[tracker.ExpManager]:
    m = tracker.connect(tmp_path / "store")
    yield m
    m.close()
