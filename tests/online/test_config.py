"""Workflow configs: env substitution, base configs, hostile files, and checks before any
training."""

from __future__ import annotations

import time

import pytest
import yaml
from click.testing import CliRunner

import tracker.online.workflow.config
from tests.test_cli_errors import one_error
from tracker.cli.main import cli
from tracker.errors import InvalidInputError
from tracker.online.workflow.config import deep_merge, load_config, substitute_env, validate_task


def test_env_substitution(monkeypatch):
    monkeypatch.setenv("DATA_DIR", "/data")
    assert substitute_env("path: ${DATA_DIR}/x") == "path: /data/x"
    assert substitute_env("n: ${MISSING_VAR:-5}") == "n: 5"
    with pytest.raises(InvalidInputError, match=r"\$\{MISSING_VAR\} is not set"):
        substitute_env("n: ${MISSING_VAR}")


def test_deep_merge_keeps_base_and_overrides():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}
    merged = deep_merge(base, {"a": {"c": {"d": 3}}, "e": [2]})
    assert merged == {"a": {"b": 1, "c": {"d": 3}}, "e": [2]}
    assert base["a"]["c"]["d"] == 2


def test_load_config_with_anchors_and_base(tmp_path, monkeypatch):
    (tmp_path / "base.yaml").write_text("x: &x {k: 1, j: 2}\ny: *x\ntask: {model: 1}\n")
    monkeypatch.setenv("J", "7")
    (tmp_path / "cfg.yaml").write_text("BASE_CONFIG_PATH: base.yaml\ny: {j: ${J}}\n")
    cfg = load_config(tmp_path / "cfg.yaml")
    assert cfg == {"x": {"k": 1, "j": 2}, "y": {"k": 1, "j": 7}, "task": {"model": 1}}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[1, 2]", "mapping at the top level"),
        ("a: [", "not valid YAML"),
    ],
    ids=["not-a-mapping", "bad-yaml"],
)
def test_bad_config_files(tmp_path, text, match):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(InvalidInputError, match=match):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def task(**over):
    base = {
        "model": {"class": "RidgeModel", "module_path": "tracker.online.model.linear"},
        "dataset": {
            "class": "Dataset",
            "module_path": "tracker.online.data.dataset",
            "kwargs": {
                "handler": {"class": "FeatureHandler", "kwargs": {"data": {"synthetic": {}}}},
                "segments": {"train": [1, 2], "test": [3, 4]},
            },
        },
        "record": [{"class": "SignalRecord"}],
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (
            {"model": {"class": "Nope", "module_path": "tracker.online.model.base"}},
            "task.model: module 'tracker.online.model.base' has no class 'Nope'",
        ),
        (
            {"model": {"class": "X", "module_path": "no_such_module_q"}},
            "cannot import module 'no_such_module_q'",
        ),
        (
            {"record": [{"class": "NoRecord"}]},
            r"task.record\[0\]: module 'tracker.online.workflow.record_temp' has no class",
        ),
        (
            {"dataset": {"class": "Dataset", "kwargs": {"segments": {"train": [1, 2]}}}},
            "segments.test is missing",
        ),
        (
            {
                "dataset": {
                    "class": "Dataset",
                    "kwargs": {
                        "handler": {
                            "class": "FeatureHandler",
                            "kwargs": {"data": "/no/such.parquet"},
                        },
                        "segments": {"train": 1, "test": 2},
                    },
                }
            },
            "does not exist",
        ),
        ({"model": None}, "task.model: missing 'class'"),
    ],
    ids=[
        "unknown-class",
        "unknown-module",
        "unknown-record",
        "missing-segment",
        "missing-data",
        "no-class",
    ],
)
def test_validate_task_names_the_key(bad, match):
    t = task(**bad)
    if bad.get("model", 1) is None:
        t["model"] = {"kwargs": {}}
    with pytest.raises(InvalidInputError, match=match):
        validate_task(t)


# ------------------------------------------------------------------------- hostile configs


def test_base_config_cycle_names_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("BASE_CONFIG_PATH: b.yaml\ntask: {}\n")
    (tmp_path / "b.yaml").write_text("BASE_CONFIG_PATH: c.yaml\n")
    (tmp_path / "c.yaml").write_text("BASE_CONFIG_PATH: b.yaml\n")
    (tmp_path / "self.yaml").write_text("BASE_CONFIG_PATH: self.yaml\n")
    with pytest.raises(InvalidInputError, match="BASE_CONFIG_PATH cycle") as e:
        load_config(tmp_path / "a.yaml")
    assert str(e.value).count("\n") == 0
    assert "b.yaml -> " in str(e.value) and "c.yaml -> " in str(e.value)
    assert "a.yaml" not in str(e.value)  # a names the cycle's entry, it is not part of it
    with pytest.raises(InvalidInputError, match=r"self.yaml -> .*self.yaml"):
        load_config(tmp_path / "self.yaml")


def billion_laughs(levels: int = 10, top: str = "laughs") -> str:
    """The classic alias bomb: each level aliases the one below 9 times (9**10 strings)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\n{top}: *a{levels - 1}\n"


def test_alias_bomb_is_refused_at_once(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    assert bomb.stat().st_size < 2048
    started = time.perf_counter()
    with pytest.raises(InvalidInputError, match="aliases expand to .* alias bomb"):
        load_config(bomb)
    assert time.perf_counter() - started < 1.0
    (tmp_path / "loop.yaml").write_text("task: &x {model: [1, *x]}\n")
    with pytest.raises(InvalidInputError, match="refers to the block that contains it"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InvalidInputError, match="nested too deeply"):
        load_config(tmp_path / "deep.yaml")


def test_the_bound_counts_alias_expansion_not_file_size(tmp_path, monkeypatch):
    # Qlib's configs alias a few blocks; a file that is big by itself is not a bomb.
    monkeypatch.setattr(tracker.online.workflow.config, "MAX_ALIAS_NODES", 1_000)
    (tmp_path / "big.yaml").write_text(yaml.safe_dump({"x": list(range(5_000))}))
    assert len(load_config(tmp_path / "big.yaml")["x"]) == 5_000
    (tmp_path / "ok.yaml").write_text(billion_laughs(levels=2, top="task"))  # ~200 values
    assert len(load_config(tmp_path / "ok.yaml")["task"]) == 9
    (tmp_path / "over.yaml").write_text(billion_laughs(levels=4, top="task"))  # ~15,000
    with pytest.raises(InvalidInputError, match="more than 1,000 beyond"):
        load_config(tmp_path / "over.yaml")


def test_unknown_top_level_keys_warn_unless_they_hold_an_anchor(tmp_path):
    (tmp_path / "base.yaml").write_text("handler: &h {class: X}\ntask: {dataset: *h}\n")
    (tmp_path / "c.yaml").write_text(
        "BASE_CONFIG_PATH: base.yaml\nport: &p {topk: 5}\nexperiment_nam: x\ntask: {r: *p}\n"
    )
    warnings: list[str] = []
    load_config(tmp_path / "c.yaml", warn=warnings.append)
    assert len(warnings) == 1, warnings
    assert "'experiment_nam' is ignored; did you mean 'experiment_name'?" in warnings[0]


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("cycle", "BASE_CONFIG_PATH: cycle.yaml\n", "BASE_CONFIG_PATH cycle"),
        ("bomb", billion_laughs() + "task: {}\n", "alias bomb"),
    ],
    ids=["cycle", "bomb"],
)
def test_tracker_run_refuses_hostile_configs_in_one_line(tmp_path, name, text, needle):
    (tmp_path / f"{name}.yaml").write_text(text)
    result = CliRunner().invoke(
        cli, ["--uri", str(tmp_path / "s"), "run", str(tmp_path / f"{name}.yaml")]
    )
    one_error(result, needle)
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------- kwargs and their types


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"model": {"class": "RidgeModel", "kwargs": {"alpah": 1.0}}}, "takes no argument 'alpah'"),
        ({"model": {"class": "RidgeModel", "kwargs": {"alpha": "big"}}}, "'big' is not a number"),
        ({"model": {"class": "RidgeModel", "kwargs": [1]}}, "kwargs must be a mapping"),
        ({"record": [{"class": "PortAnaRecord", "kwargs": {"topk": 2.5}}]}, "not an integer"),
        ({"record": [{"class": "SigAnaRecord", "kwargs": {"ana_long_short": "no"}}]}, "true or"),
        (
            {"record": [{"class": "PortAnaRecord", "kwargs": {"start_time": "2020-02-30"}}]},
            r"record\[0\].kwargs.start_time: '2020-02-30' is not a date",
        ),
    ],
    ids=["unknown-kwarg", "float", "kwargs-list", "int", "bool", "date"],
)
def test_validate_task_checks_kwargs(bad, match):
    t = task(**bad)
    if "model" in bad:
        t["model"]["module_path"] = "tracker.online.model.linear"
    with pytest.raises(InvalidInputError, match=match):
        validate_task(t)


def test_validate_task_accepts_placeholders_and_unannotated_kwargs():
    t = task(
        model={
            "class": "LGBModel",
            "module_path": "tracker.online.model.gbdt",
            "kwargs": {"num_leaves": 8},
        },
        record=[
            {"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
            {"class": "PortAnaRecord", "kwargs": {"end_time": "<dataset.kwargs.segments.test.1>"}},
        ],
    )
    validate_task(t)
