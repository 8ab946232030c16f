"""The ``tracker`` command so far: --version and db upgrade."""

from __future__ import annotations

from click.testing import CliRunner

import tracker
from tracker.cli.main import cli


def test_version():
    result = CliRunner().invoke(cli, ["--version"], catch_exceptions=False)
    assert result.exit_code == 0 and tracker.__version__ in result.stdout


def test_db_upgrade_reports_version(tmp_path):
    tracker.connect(tmp_path / "s")
    result = CliRunner().invoke(cli, ["--uri", str(tmp_path / "s"), "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "schema v1" in result.stdout


def test_no_store_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "no tracker store found" in result.stderr and "Traceback" not in result.output


def test_every_command_has_help():
    for args in (["--help"], ["db", "--help"], ["db", "upgrade", "--help"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0 and "Usage" in result.stdout
