"""Training one task inside a recorder: Qlib's ``task_train``, ``begin_task_train`` and
``end_task_train``.

A task is a dict ``{"model": …, "dataset": …, "record": […]}`` of
``{"class", "module_path", "kwargs"}`` configs. Training logs the flattened task as params,
saves the artifacts ``task``, ``params.pkl`` (the fitted model) and ``dataset`` (its config,
without data), then generates the records in order, with ``<MODEL>``/``<DATASET>`` (and
``<dataset.kwargs.segments.test.0>``-style paths into the task) replaced by their values.
"""

from __future__ import annotations

import copy
import inspect
import re
import socket
from collections.abc import Mapping
from typing import Any

from tracker import R, Recorder
from tracker.errors import InvalidInputError
from tracker.online.utils import flatten_dict, init_instance_by_config

RECORD_MODULE = "tracker.online.workflow.record_temp"
_PATH = re.compile(r"<([\w.]+)>")


def fill_placeholder(
    config: Any, values: Mapping[str, Any], task: Mapping[str, Any] | None = None
) -> Any:
    """A copy of ``config`` with ``"<MODEL>"``-style strings replaced from ``values`` and
    ``"<a.b.0>"`` paths resolved against ``task`` (Qlib's ``fill_placeholder``)."""
    if isinstance(config, dict):
        return {k: fill_placeholder(v, values, task) for k, v in config.items()}
    if isinstance(config, list):
        return [fill_placeholder(v, values, task) for v in config]
    if isinstance(config, tuple):
        return tuple(fill_placeholder(v, values, task) for v in config)
    if isinstance(config, str):
        if config in values:
            return values[config]
        match = _PATH.fullmatch(config)
        if match and task is not None:
            return _lookup(task, match.group(1), config)
    return config


def _lookup(task: Mapping[str, Any], path: str, placeholder: str) -> Any:
    node: Any = task
    for part in path.split("."):
        try:
            node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise InvalidInputError(
                f"placeholder {placeholder!r} does not resolve: the task has no {path!r}"
            ) from None
    return node


def _log_task_info(task: Mapping[str, Any]) -> None:
    R.log_params(**flatten_dict(dict(task)))
    R.save_objects(task=task)
    R.set_tags(hostname=socket.gethostname())


def _fit(model: Any, dataset: Any, reweighter: Any) -> None:
    """Call ``fit`` with only the keyword arguments it accepts (Qlib's behaviour)."""
    accepted = inspect.signature(model.fit).parameters
    kwargs = {"reweighter": reweighter} if "reweighter" in accepted else {}
    model.fit(dataset, **kwargs)


def _log_training_curve(model: Any) -> None:
    """Qlib's LGBModel logs each round's loss as ``<metric>.<segment>`` with the round as step."""
    curves = getattr(model, "evals_result", None) or {}
    for segment, metrics in curves.items():
        for metric, values in metrics.items():
            name = f"{metric}.{segment}".replace("@", "_")
            for step, value in enumerate(values):
                R.log_metrics(step=step, **{name: value})


def _exe_task(task: Mapping[str, Any]) -> None:
    recorder = R.get_recorder()
    model = init_instance_by_config(task["model"])
    dataset = init_instance_by_config(task["dataset"])
    _fit(model, dataset, task.get("reweighter"))
    _log_training_curve(model)
    R.save_objects(**{"params.pkl": model})
    R.save_objects(dataset=dataset)
    records = task.get("record") or []
    if not isinstance(records, list):
        records = [records]
    filled = fill_placeholder(records, {"<MODEL>": model, "<DATASET>": dataset}, task)
    for config in filled:
        record = init_instance_by_config(
            config,
            default_module=RECORD_MODULE,
            try_kwargs={"model": model, "dataset": dataset},
            recorder=recorder,
        )
        record.generate()


def task_train(
    task_config: Mapping[str, Any],
    experiment_name: str,
    recorder_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Recorder:
    """Train ``task_config`` in a new recorder of ``experiment_name``: ``tags`` first (so a
    failed run has them too), params, ``task``, ``params.pkl``, ``dataset``, then the records.
    The recorder ends FINISHED (FAILED if anything raises, and the error propagates)."""
    task = copy.deepcopy(dict(task_config))
    with R.start(experiment_name=experiment_name, recorder_name=recorder_name) as recorder:
        if tags:
            R.set_tags(**tags)
        _log_task_info(task)
        _exe_task(task)
    return recorder


def begin_task_train(
    task_config: Mapping[str, Any], experiment_name: str, recorder_name: str | None = None
) -> Recorder:
    """Only record the task (params, ``task`` artifact, tags); training waits for
    :func:`end_task_train`, possibly on another machine."""
    task = copy.deepcopy(dict(task_config))
    with R.start(experiment_name=experiment_name, recorder_name=recorder_name) as recorder:
        _log_task_info(task)
    return recorder


def end_task_train(rec: Recorder, experiment_name: str) -> Recorder:
    """Resume the recorder made by :func:`begin_task_train`, load its ``task`` and train it."""
    with R.start(experiment_name=experiment_name, recorder_id=rec.id, resume=True) as recorder:
        task = recorder.load_object("task")
        _exe_task(task)
    return recorder
