"""What the README and examples/ show works as shown: the README's Python blocks, the
quickstart, and every shipped workflow config (validated; the synthetic ones run end to end)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import tracker
from tracker import R, objects
from tracker.cli.main import cli
from tracker.online.workflow.config import load_config, validate_task

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
WORKFLOWS = sorted((ROOT / "examples" / "workflows").glob("*.yaml"))
SP500 = "sp500_5yr_2013_2018.parquet"

# README blocks that cannot run here, found by a line they contain, and why.
CANNOT_RUN_HERE = {
    'tracker.init("mlflow+http://': "opens an MLflow tracking server and a PostgreSQL server",
    "qlib.init(": "needs pyqlib and Qlib's us_data (tests/qlib runs tracker.qlib under real Qlib)",
}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block."""
    pattern = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in pattern.finditer(text)]


BLOCKS = python_blocks(README.read_text())


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2
    for needle in CANNOT_RUN_HERE:  # a skip that no longer matches anything is dropped
        assert any(needle in code for _, code in BLOCKS), needle


def readme_context() -> dict[str, object]:
    """The names a README block takes from the text around it: ``pred`` (a prediction frame)
    and ``rec`` (a finished run holding ``pred.pkl`` and its ``task``, as ``tracker run``
    leaves it)."""
    index = pd.MultiIndex.from_product(
        [pd.bdate_range("2024-01-01", periods=3), ["A", "B"]], names=["datetime", "instrument"]
    )
    pred = pd.DataFrame({"score": np.arange(6.0)}, index=index)
    task = {"model": {"class": "RidgeModel", "module_path": "tracker.online.model.base"}}
    with R.start(experiment_name="readme-context") as rec:
        R.save_objects(**{"pred.pkl": pred, "task": task})
    return {"pred": pred, "rec": rec, "tracker": tracker}


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_python_block_runs(line, code, tmp_path):
    for needle, reason in CANNOT_RUN_HERE.items():
        if needle in code:
            pytest.skip(f"README.md:{line} {reason}")
    namespace = readme_context()
    pred = namespace["pred"]
    exec(compile(code, f"README.md:{line}", "exec"), namespace)
    if "pred" in namespace:
        pd.testing.assert_frame_equal(namespace["pred"], pred)  # what was saved comes back


def test_quickstart_runs(capsys):
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "(FINISHED)" in out and "pred.pkl" in out
    (run,) = R.list_recorders(experiment_name="quickstart").values()
    assert run.status == "FINISHED" and {"IC", "ICIR", "loss"} <= set(run.list_metrics())


# ------------------------------------------------------------------------- workflow configs


def sp500_file() -> Path | None:
    for candidate in (Path("/work/shared/data") / SP500, ROOT.parent / "shared" / "data" / SP500):
        if candidate.is_file():
            return candidate
    return None


def test_every_workflow_config_is_covered():
    names = {p.name for p in WORKFLOWS}
    assert {"ridge.yaml", "lightgbm.yaml", "ridge_sp500.yaml", "lightgbm_sp500.yaml"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_config_validates(path, monkeypatch):
    if "sp500" in path.name:
        data = sp500_file()
        if data is None:
            pytest.skip(f"{SP500} is not available (see shared/data/README.md)")
        monkeypatch.setenv("TRACKER_DATA", str(data))
    warnings: list[str] = []
    config = load_config(path, warn=warnings.append)
    assert warnings == []
    validate_task(config["task"])
    assert config["experiment_name"] == path.stem


def test_sp500_configs_name_their_data_file(monkeypatch, tmp_path):
    """Without TRACKER_DATA they point at the shared file, and a missing file is refused
    before any training, naming the key."""
    monkeypatch.setenv("TRACKER_DATA", str(tmp_path / "absent.parquet"))
    for path in (p for p in WORKFLOWS if "sp500" in p.name):
        with pytest.raises(tracker.InvalidInputError, match=r"handler\.kwargs\.data"):
            validate_task(load_config(path)["task"])
    monkeypatch.delenv("TRACKER_DATA")
    for path in (p for p in WORKFLOWS if "sp500" in p.name):
        data = load_config(path)["task"]["dataset"]["kwargs"]["handler"]["kwargs"]["data"]
        assert data.endswith(f"shared/data/{SP500}")


SYNTHETIC = [p for p in WORKFLOWS if "sp500" not in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("path", SYNTHETIC, ids=[p.name for p in SYNTHETIC])
def test_synthetic_workflow_runs_end_to_end(path, tmp_path):
    store = tmp_path / "store"
    result = CliRunner().invoke(cli, ["--uri", str(store), "run", str(path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"in experiment '\w+': FINISHED", result.output)
    manager = tracker.connect(store)
    exp = objects.get_exp(manager, experiment_name=path.stem, create=False)
    (run,) = exp.list_recorders().values()
    assert run.status == "FINISHED"
    assert {"IC", "ICIR"} <= set(run.list_metrics())
    assert {"pred.pkl", "config"} <= set(run.list_artifacts())
    assert run.load_object("config")["task"] == load_config(path)["task"]
