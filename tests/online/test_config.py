"""Workflow configs: env substitution, base configs, and checks before any training."""

from __future__ import annotations

import pytest

from online.config import deep_merge, load_config, substitute_env, validate_task
from tracker.errors import InvalidInputError


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
        "model": {"class": "RidgeModel", "module_path": "online.model"},
        "dataset": {
            "class": "Dataset",
            "module_path": "online.dataset",
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
            {"model": {"class": "Nope", "module_path": "online.model"}},
            "task.model: module 'online.model' has no class 'Nope'",
        ),
        (
            {"model": {"class": "X", "module_path": "no_such_module_q"}},
            "cannot import module 'no_such_module_q'",
        ),
        (
            {"record": [{"class": "NoRecord"}]},
            r"task.record\[0\]: module 'online.record' has no class",
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
