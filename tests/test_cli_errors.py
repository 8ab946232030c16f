"""Errors through the real ``tracker`` command: a user's mistake, a damaged store, missing
credentials or a bug in a user's model give exit 1 and exactly one ``Error:`` line, never a
traceback (unless ``--debug``); a password in a store URI never reaches the output."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

import tracker
from tests.online.tasks import SIGNAL_RECORD, synthetic_task
from tracker import objects
from tracker.cli.main import cli

SEGMENTS = {"train": ["2020-01-01", "2020-06-30"], "test": ["2020-07-01", None]}
PASSWORD = "hunter2-S3cret"


def small_task(model: str = "RidgeModel", **model_kwargs: object) -> dict:
    return synthetic_task(
        SEGMENTS,
        synthetic={"n_instruments": 10, "n_days": 200, "seed": 1},
        model=model,
        model_kwargs=model_kwargs,
        records=[
            SIGNAL_RECORD,
            {"class": "PortAnaRecord", "kwargs": {"topk": 3, "n_drop": 1}},
        ],
    )


def write(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def invoke(*args: str, **kwargs: object) -> Result:
    return CliRunner().invoke(cli, list(args), **kwargs)


def one_error(result: Result, *needles: str) -> str:
    """The single error line, after checking there is nothing else wrong with the output."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if "error:" in line.lower()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------- workflow configs (run)


@pytest.mark.parametrize(
    ("mutate", "needles"),
    [
        (
            lambda t: t["dataset"]["kwargs"]["segments"]["train"].__setitem__(0, "2020-13-45"),
            ("task.dataset.kwargs.segments", "'2020-13-45' is not a date"),
        ),
        (
            lambda t: t["record"][1]["kwargs"].update(topk="thirty"),
            ("task.record[1].kwargs.topk", "'thirty' is not an integer"),
        ),
        (
            lambda t: t["model"]["kwargs"].update(alpha="abc"),
            ("task.model.kwargs.alpha", "'abc' is not a number"),
        ),
        (
            lambda t: t["model"]["kwargs"].update(alpha="1e-3"),
            ("task.model.kwargs.alpha", "write it with a dot"),
        ),
        (
            lambda t: t["dataset"]["kwargs"]["handler"]["kwargs"].update(end_time="someday"),
            ("task.dataset.kwargs.handler.kwargs.end_time", "'someday' is not a date"),
        ),
        (
            lambda t: t["record"][1]["kwargs"].update(topk=True),
            ("task.record[1].kwargs.topk", "True is not an integer"),
        ),
        (
            lambda t: t["model"]["kwargs"].update(alpah=1.0),
            ("task.model.kwargs", "takes no argument 'alpah'"),
        ),
    ],
    ids=[
        "bad-date",
        "topk-thirty",
        "model-kwarg-type",
        "yaml-float",
        "handler-date",
        "bool-int",
        "model-kwarg-unknown",
    ],
)
def test_bad_workflow_config_is_one_line_before_training(tmp_path, mutate, needles):
    task = small_task()
    mutate(task)
    config = write(tmp_path / "bad.yaml", {"task": task})
    one_error(invoke("--uri", str(tmp_path / "s"), "run", config), *needles)
    assert not (tmp_path / "s").exists()  # refused before any run (or store) was made


def test_a_model_refusing_its_kwarg_is_one_line(tmp_path):
    """A value of the right type that the model itself refuses (raised while building it)."""
    config = write(tmp_path / "neg.yaml", {"task": small_task(alpha=-1.0)})
    line = one_error(invoke("--uri", str(tmp_path / "s"), "run", config), "alpha must be >= 0")
    assert "unexpected" not in line  # a TrackerError, not a bug


def test_a_bad_lightgbm_parameter_is_one_line(tmp_path):
    task = small_task("LGBModel", num_boost_round=5, num_leaves="many")
    config = write(tmp_path / "lgb.yaml", {"task": task})
    one_error(invoke("--uri", str(tmp_path / "s"), "run", config), "LGBModel", "num_leaves")


def test_a_bug_in_user_code_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    (tmp_path / "buggy_model.py").write_text(
        "from tracker.online.model.linear import RidgeModel\n"
        "class Buggy(RidgeModel):\n"
        "    def fit(self, dataset, reweighter=None):\n"
        "        raise KeyError('oops')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task = small_task()
    task["model"] = {"class": "Buggy", "module_path": "buggy_model"}
    config = write(tmp_path / "buggy.yaml", {"task": task})
    uri = str(tmp_path / "s")
    result = invoke("--uri", uri, "run", config)
    one_error(result, "unexpected KeyError: 'oops'")
    assert "--debug" in result.stderr
    debug = invoke("--uri", uri, "--debug", "run", config)
    assert debug.exit_code == 1 and isinstance(debug.exception, KeyError)  # not swallowed
    env = invoke("--uri", uri, "run", config, env={"TRACKER_DEBUG": "1"})
    assert isinstance(env.exception, KeyError)


def test_unknown_top_level_key_warns(tmp_path):
    config = write(
        tmp_path / "typo.yaml", {"tsak": small_task(), "notes": "x", "experiment_name": "e"}
    )
    result = invoke("--uri", str(tmp_path / "s"), "run", config)
    assert "warning: " in result.stderr and "'tsak' is ignored; did you mean 'task'?" in (
        result.stderr
    )
    assert "'notes' is ignored" in result.stderr
    one_error(result, "'task' must be a mapping")


# ------------------------------------------------------------------------ stores and storage


def _damaged_store(tmp_path: Path) -> Path:
    """A store whose ``runs`` table page is overwritten, as a bad disk sector would."""
    manager = tracker.connect(tmp_path / "s")
    exp = objects.get_exp(manager, experiment_name="e")
    rec = exp.start(recorder_name="r")
    rec.log_metrics(IC=0.1)
    exp.end()
    manager.close()
    tracker.store.clear_cache()
    db = tmp_path / "s" / "tracker.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'runs'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(b"\xa5" * page_size)
    return tmp_path / "s"


@pytest.mark.parametrize(
    "args",
    [["ls"], ["ls", "e"], ["ls", "e", "--json"], ["show", "e/r"], ["rm", "--yes", "e/r"]],
    ids=["ls", "ls-exp", "ls-json", "show", "rm"],
)
def test_damaged_sqlite_page_is_one_line(tmp_path, args):
    store = _damaged_store(tmp_path)
    one_error(invoke("--uri", str(store), *args), "malformed")


def test_s3_without_credentials_is_one_line(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # never a real bucket
    config = write(tmp_path / "c.yaml", {"task": small_task()})
    result = invoke(
        "--uri", str(tmp_path / "s"), "--artifact-uri", "s3://no-bucket/x", "run", config
    )
    one_error(result, "S3:", "credentials", "AWS_ACCESS_KEY_ID")


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("postgresql+psycopg://bob:{pw}@127.0.0.1:abc/db", "not a usable database URL"),
        ("postgresql+nodriver://bob:{pw}@127.0.0.1/db", "not a usable database URL"),
        ("mysql://bob:{pw}@127.0.0.1/db", "unknown store scheme"),
    ],
    ids=["bad-port", "unknown-driver", "unknown-scheme"],
)
def test_bad_database_url_is_one_line_without_password(tmp_path, uri, needle):
    result = invoke("--uri", uri.format(pw=PASSWORD), "--artifact-uri", str(tmp_path / "a"), "ls")
    line = one_error(result, needle, "bob:***@")
    assert PASSWORD not in result.output and PASSWORD not in line


# ---------------------------------------------------------------------------------- passwords


def test_password_never_shown_when_the_server_is_unreachable(tmp_path):
    uri = f"postgresql+psycopg://bob:{PASSWORD}@127.0.0.1:1/test"  # nothing listens on port 1
    for args in (
        ["--uri", uri, "--artifact-uri", str(tmp_path / "a"), "ls"],
        ["--uri", uri, "--artifact-uri", str(tmp_path / "a"), "db", "upgrade"],
        ["--uri", uri, "ls"],  # no artifact location: refused before connecting
        ["--uri", f"{uri}?password={PASSWORD}", "ls"],
    ):
        result = invoke(*args)
        one_error(result)
        assert PASSWORD not in result.output, result.output


def with_password(uri: str) -> str:
    """The test server trusts local connections: any password is accepted."""
    with_it = re.sub(r"://([^:/@]+)@", rf"://\1:{PASSWORD}@", uri, count=1)
    assert PASSWORD in with_it
    return with_it


@pytest.mark.postgres
def test_password_never_shown_on_success(pg_uri, tmp_path):
    uri = with_password(pg_uri)
    art = str(tmp_path / "a")
    config = write(tmp_path / "c.yaml", {"task": small_task()})
    outputs = []
    for args in (
        ["db", "upgrade"],
        ["run", config, "-e", "pg"],
        ["ls"],
        ["ls", "--json"],
        ["ls", "pg", "--json"],
        ["show", "pg/mlflow_recorder", "--json"],
        ["ls", "nope"],
    ):
        result = invoke("--uri", uri, "--artifact-uri", art, *args)
        outputs.append(result.output)
        assert result.exit_code == (1 if args == ["ls", "nope"] else 0), result.output
    assert "***" in outputs[0]  # db upgrade names the store, masked
    manager = tracker.connect(uri, art)
    tracker.init(uri, art)
    from tracker.online.workflow.task.manage import TaskManager

    shown = [repr(manager), repr(tracker.R), str(manager), repr(TaskManager("pool", manager))]
    assert all("***" in text for text in shown)
    assert PASSWORD not in "\n".join(outputs + shown)
    assert tracker.R.get_uri() == uri  # the API gives back what it was given


@pytest.mark.slow
@pytest.mark.postgres
def test_batch_keeps_the_password_off_command_lines(pg_uri, tmp_path):
    uri, art = with_password(pg_uri), str(tmp_path / "a")
    config = write(tmp_path / "ridge.yaml", {"task": small_task()})
    result = invoke("--uri", uri, "--artifact-uri", art, "batch", config, "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    (run,) = objects.get_exp(tracker.connect(uri, art), experiment_name="ridge").list_recorders(
        "list"
    )
    command_line = run.list_params()["cmd-sys.argv"]  # what `ps` showed while it ran
    assert "ridge.yaml" in command_line and PASSWORD not in command_line


def test_progress_bar_draws_what_the_library_reports():
    """The library reports (label, done, total); the CLI's renderer draws and closes bars."""
    import io

    from tracker.cli.progress import ProgressBar, progress_bars
    from tracker.online import progress

    out = io.StringIO()
    bar = ProgressBar(out)
    bar("backtest", 0, 4)
    bar("backtest", 2, 4)
    bar("task pool p", 1, 2)  # another step: the first bar is closed
    bar("task pool p", 2, 2)
    assert "backtest" in out.getvalue() and "task pool p" in out.getvalue()
    assert bar._bar is None
    with progress_bars(enabled=True) as installed:
        assert progress.current() is installed
    assert progress.current() is None
