"""Workflow configs (Qlib's ``qrun`` YAML): ``${ENV}`` substitution, YAML anchors, a base
config merged underneath (``BASE_CONFIG_PATH``), and checks that fail before any training."""

from __future__ import annotations

import copy
import importlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracker.errors import InvalidInputError

_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def substitute_env(text: str, source: str = "config") -> str:
    """Replace ``${NAME}`` (or ``${NAME:-default}``) by the environment variable."""

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise InvalidInputError(
            f"{source}: ${{{name}}} is not set; export {name}=… or write ${{{name}:-default}}"
        )

    return _ENV.sub(value, text)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, merging nested dicts (Qlib's ``update_config``)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"config {str(path)!r} does not exist")
    try:
        config = yaml.safe_load(substitute_env(path.read_text(), str(path)))
    except yaml.YAMLError as e:
        raise InvalidInputError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path}: expected a mapping at the top level")
    base = config.pop("BASE_CONFIG_PATH", None)
    if base:
        base_path = Path(base)
        if not base_path.is_absolute() and not base_path.exists():
            base_path = path.parent / base_path  # relative to the config, as qrun does
        config = deep_merge(load_config(base_path), config)
    return config


def _check_class(config: Any, where: str, default_module: str | None = None) -> None:
    if not isinstance(config, Mapping):
        return  # a ready object or a "module.Class" string: checked when built
    name = config.get("class")
    if not name:
        raise InvalidInputError(f"{where}: missing 'class'")
    module = config.get("module_path", default_module)
    if module is None and "." in str(name):
        module, _, name = str(name).rpartition(".")
    try:
        found = getattr(importlib.import_module(str(module)), str(name), None)
    except ImportError as e:
        raise InvalidInputError(f"{where}: cannot import module {module!r}: {e}") from e
    if found is None:
        raise InvalidInputError(f"{where}: module {module!r} has no class {name!r}")


def validate_task(task: Any, needs: tuple[str, ...] = ("train", "test")) -> None:
    """Fail fast, naming the key: unknown classes, missing segments, missing data files."""
    if not isinstance(task, Mapping):
        raise InvalidInputError("config: 'task' must be a mapping with model, dataset, record")
    for key in ("model", "dataset"):
        if key not in task:
            raise InvalidInputError(f"config: task.{key} is missing")
    _check_class(task["model"], "task.model")
    _check_class(task["dataset"], "task.dataset", "online.dataset")
    records = task.get("record") or []
    for i, record in enumerate(records if isinstance(records, list) else [records]):
        _check_class(record, f"task.record[{i}]", "online.record")
    dataset_kwargs = (
        task["dataset"].get("kwargs", {}) if isinstance(task["dataset"], Mapping) else {}
    )
    segments = dataset_kwargs.get("segments")
    if segments is not None:
        for name in needs:
            if name not in segments:
                raise InvalidInputError(
                    f"task.dataset.kwargs.segments.{name} is missing (have: {', '.join(segments)})"
                )
    handler = dataset_kwargs.get("handler")
    if isinstance(handler, Mapping):
        data = handler.get("kwargs", {}).get("data")
        if isinstance(data, str) and not Path(data).exists():
            raise InvalidInputError(
                f"task.dataset.kwargs.handler.kwargs.data: {data!r} does not exist"
            )
