"""A backend as a third party ships it: a distribution declaring an entry point in the
``tracker.backends`` group, found by URI in a fresh process, and used by the whole CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
"""A plug-in backend keeping its metadata in a tracker SQLite file: myplug:///path/to.db"""
from tracker.backends.sql.store import SQLExpManager

LOADED = True


class PlugManager(SQLExpManager):
    def __init__(self, uri, default_exp_name="Experiment", artifact_uri=None, **kwargs):
        path = uri.split("://", 1)[1]
        super().__init__("sqlite://" + path, default_exp_name, artifact_uri, **kwargs)
        self.uri = uri

    @classmethod
    def upgrade_store(cls, uri):
        return "myplug: " + super().upgrade_store("sqlite://" + uri.split("://", 1)[1])
'''


@pytest.fixture
def site(tmp_path) -> Path:
    """A directory on sys.path holding the plug-in and its installed metadata, as pip leaves
    them: the package and a ``.dist-info`` with ``entry_points.txt``."""
    site = tmp_path / "site"
    (site / "myplug").mkdir(parents=True)
    (site / "myplug" / "__init__.py").write_text(PLUGIN)
    info = site / "myplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[tracker.backends]\nmyplug = myplug:PlugManager\nbroken = no_such_module_xyz:Backend\n"
    )
    return site


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env = {k: v for k, v in env.items() if not k.startswith("TRACKER_")}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def _tracker(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(site, sys.executable, "-c", "from tracker.cli.main import main; main()", *args)


def test_entry_point_backend_found_by_uri_and_used_by_the_cli(site, tmp_path):
    uri = f"myplug://{tmp_path / 'meta' / 'plug.db'}"
    (tmp_path / "meta").mkdir()
    art = str(tmp_path / "artifacts")
    script = textwrap.dedent(
        f"""
        import sys
        import tracker
        from tracker import objects

        m = tracker.connect({uri!r}, {art!r})
        print(type(m).__module__, type(m).__name__)
        rec = objects.get_exp(m, experiment_name="plugged").start(recorder_name="r1")
        rec.log_metrics(ic=0.25)
        rec.log_params(model="ridge")
        rec.end_run()
        """
    )
    made = _run(site, sys.executable, "-c", script)
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["myplug", "PlugManager"]

    listed = _tracker(site, "--uri", uri, "--artifact-uri", art, "ls", "plugged", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["name"] == "r1" and run["metrics"] == {"ic": 0.25}
    assert run["params"]["model"] == "ridge"

    shown = _tracker(site, "--uri", uri, "--artifact-uri", art, "show", "plugged/r1")
    assert shown.returncode == 0, shown.stderr
    assert "ridge" in shown.stdout

    upgraded = _tracker(site, "--uri", uri, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("myplug: ") and "schema v" in upgraded.stdout


def test_a_broken_plugin_fails_only_its_own_scheme(site, tmp_path):
    broken = _tracker(site, "--uri", "broken://x", "ls")
    assert broken.returncode != 0
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1 and "'broken'" in lines[0] and "no_such_module_xyz" in lines[0]
    assert "Traceback" not in broken.stderr

    ok = _run(
        site,
        sys.executable,
        "-c",
        f"import sys, tracker; tracker.connect({str(tmp_path / 'plain')!r}); "
        "print('myplug' in sys.modules)",
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "False"  # entry points load only when their scheme is used
