"""Store location resolution, the backend registry, schema versions and import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

import tracker
from tracker import (
    BackendUnavailable,
    ConfigError,
    SchemaVersionError,
    UnsupportedURIError,
    registry,
)
from tracker.backends.sql import migrations, models
from tracker.uri import resolve

# ------------------------------------------------------------------------------ resolution


@pytest.mark.parametrize(
    ("given", "db"),
    [
        ("{tmp}/store", "{tmp}/store/tracker.db"),
        ("file:{tmp}/mlruns", "{tmp}/mlruns/tracker.db"),
        ("file://{tmp}/mlruns", "{tmp}/mlruns/tracker.db"),
        ("file://localhost{tmp}/m", "{tmp}/m/tracker.db"),
        ("sqlite:///{tmp}/x/meta.db", "{tmp}/x/meta.db"),
    ],
    ids=["dir", "file-colon", "file-slashes", "file-localhost", "sqlite"],
)
def test_uri_forms(tmp_path, given, db):
    loc = resolve(given.format(tmp=tmp_path))
    assert loc.uri == "sqlite:///" + db.format(tmp=tmp_path)
    assert loc.artifact_uri is not None and loc.artifact_uri.endswith("artifacts")


def test_resolution_order(tmp_path, monkeypatch):
    (tmp_path / "up" / ".tracker").mkdir(parents=True)
    (tmp_path / "up" / "down").mkdir()
    monkeypatch.chdir(tmp_path / "up" / "down")
    assert resolve().uri == f"sqlite:///{tmp_path}/up/.tracker/tracker.db"
    monkeypatch.setenv("TRACKER_URI", str(tmp_path / "env"))
    monkeypatch.setenv("TRACKER_ARTIFACT_URI", "memory://arts")
    assert resolve() == tracker.uri.Location(
        f"sqlite:///{tmp_path}/env/tracker.db", "memory://arts"
    )
    assert resolve(tmp_path / "arg").uri == f"sqlite:///{tmp_path}/arg/tracker.db"


def test_no_store_found_says_where_it_looked(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        resolve(create=False)


@pytest.mark.parametrize(
    ("uri", "error", "match"),
    [
        (
            "ftp://x/y",
            UnsupportedURIError,
            "registered: memory, mlflow, postgres, postgresql, sqlite",
        ),
        ("sqlite://", ConfigError, "in-memory"),
        ("postgresql+psycopg://h/db", ConfigError, "artifact_uri"),
        ("file://otherhost/x", ConfigError, "remote host"),
    ],
    ids=["unknown-scheme", "sqlite-memory", "pg-no-artifacts", "remote-file"],
)
def test_bad_uris(uri, error, match):
    with pytest.raises(error, match=match):
        tracker.connect(uri)


def test_registry_plugins_and_install_hints(tmp_path, monkeypatch):
    monkeypatch.setitem(
        registry._registry,
        "needs",
        registry.BackendSpec("x:Y", "pip install needs", ("no_such_mod_xyz",)),
    )
    with pytest.raises(BackendUnavailable, match="pip install needs"):
        registry.get_backend_class("needs://a")
    with pytest.raises(ValueError, match="clobber"):
        tracker.register_backend("sqlite", "x:Y")

    class Mine(tracker.ExpManager):
        pass

    monkeypatch.setitem(registry._registry, "mine", Mine)
    assert registry.get_backend_class("mine+extra://x") is Mine
    with pytest.raises(TypeError, match="abstract"):
        Mine("mine://x")
    assert registry.registry["mine"] is Mine  # a live view of the registrations ...
    with pytest.raises(TypeError):
        registry.registry["x"] = Mine  # type: ignore[index]  # ... that cannot be written
    assert "x" not in registry.registry


# ----------------------------------------------------------------------------- schema versions


def test_schema_version_recorded_and_newer_refused(tmp_path):
    manager = tracker.connect(tmp_path / "s")
    assert manager.db.schema_version() == models.SCHEMA_VERSION
    manager.close()
    engine = create_engine(f"sqlite:///{tmp_path}/s/tracker.db")
    with engine.begin() as conn:
        conn.execute(text("UPDATE tracker_schema SET version = 99"))
    engine.dispose()
    tracker.store.clear_cache()
    with pytest.raises(SchemaVersionError, match="newer tracker"):
        tracker.connect(tmp_path / "s")


def test_older_schema_is_migrated_forward_or_refused(tmp_path, monkeypatch):
    tracker.connect(tmp_path / "s").create_experiment("kept")
    tracker.store.clear_cache()

    def add_note_column(conn):
        conn.exec_driver_sql("ALTER TABLE experiments ADD COLUMN note TEXT")

    version = models.SCHEMA_VERSION + 1
    monkeypatch.setattr(tracker.backends.sql.db, "SCHEMA_VERSION", version)
    monkeypatch.setattr(migrations, "STEPS", [(version, add_note_column)])
    from tracker.backends.sql.store import SQLExpManager

    with pytest.raises(SchemaVersionError, match="tracker db upgrade"):
        SQLExpManager(f"sqlite:///{tmp_path}/s/tracker.db", upgrade=False)
    manager = SQLExpManager(f"sqlite:///{tmp_path}/s/tracker.db", artifact_uri=str(tmp_path / "a"))
    assert manager.db.schema_version() == version
    assert manager.find_experiment("kept") is not None  # data kept
    with manager.db.read() as conn:
        assert conn.exec_driver_sql("SELECT note FROM experiments").all() == [(None,)]


# ------------------------------------------------------------------------------ import hygiene


def test_import_is_light():
    code = (
        "import sys, tracker, tracker.online, tracker.cli.main\n"
        "names = ('mlflow', 's3fs', 'gcsfs', 'pandas', 'pyarrow', 'sqlalchemy')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tracker_never_imports_online_or_cli():
    from pathlib import Path

    root = Path(tracker.__file__).parent  # the tracker/ folder; online/ and cli/ are beside it
    for path in root.rglob("*.py"):
        source = path.read_text()
        for package in ("tracker.online", "tracker.cli"):
            assert f"import {package}" not in source and f"from {package}" not in source, path
