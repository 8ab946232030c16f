"""Online strategies (Qlib's ``qlib/workflow/online/strategy.py``): which tasks to train and
which models to put online as time goes by.

An :class:`OnlineStrategy` named ``name_id`` works on the experiment of that name: the trainer
records its models there and its :class:`OnlineToolR` tags them.
"""

from __future__ import annotations

import abc
import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from tracker import Recorder
from tracker.errors import InvalidInputError, LoadObjectError
from tracker.online.model.ens import RollingGroup
from tracker.online.workflow.online.utils import OnlineToolR
from tracker.online.workflow.task.collect import Collector, RecorderCollector
from tracker.online.workflow.task.gen import RollingGen, task_generator

__all__ = ["OnlineStrategy", "RollingStrategy", "segment_of"]

log = logging.getLogger(__name__)


class OnlineStrategy(abc.ABC):
    """Decides the tasks to train and the models to put online for experiment ``name_id``."""

    def __init__(self, name_id: str) -> None:
        if not isinstance(name_id, str) or not name_id:
            raise InvalidInputError(f"strategy name_id {name_id!r} must be a non-empty string")
        self.name_id = name_id
        self.tool = OnlineToolR(name_id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name_id!r})"

    @abc.abstractmethod
    def prepare_tasks(self, cur_time: Any, **kwargs: Any) -> list[dict]:
        """The tasks to train at ``cur_time`` (often none)."""

    def prepare_online_models(
        self, trained_models: list[Recorder], cur_time: Any = None
    ) -> list[Recorder]:
        """Make the newly trained models the online set (Qlib's default) and return it; with
        no new model the online set stays and is returned."""
        if not trained_models:
            return self.tool.online_models()
        self.tool.reset_online_tag(trained_models)
        return list(trained_models)

    @abc.abstractmethod
    def first_tasks(self) -> list[dict]:
        """The tasks trained when the strategy starts."""

    @abc.abstractmethod
    def get_collector(self) -> Collector:
        """Collects the strategy's predictions for the signals."""


def segment_of(task: Mapping[str, Any], test_key: str = "test") -> tuple[Any, Any]:
    """A task's test segment ``(start, end)`` as Timestamps (None stays None)."""
    try:
        start, end = task["dataset"]["kwargs"]["segments"][test_key]
    except (KeyError, TypeError, ValueError):
        raise InvalidInputError(f"the task has no dataset.kwargs.segments.{test_key}") from None
    return tuple(None if t is None else pd.Timestamp(t) for t in (start, end))  # type: ignore[return-value]


class RollingStrategy(OnlineStrategy):
    """Retrain on a rolling window: Qlib's ``RollingStrategy``.

    ``first_tasks`` are the rolling tasks of the template(s); later, once the latest online
    model's test segment has been entered by ``step`` trading days, ``prepare_tasks`` gives
    the following task(s) (``rolling_gen.gen_following_tasks``), which replace it online.

    Args:
        name_id: the experiment (also the strategy's name).
        task_template: a task or a list of tasks with a test segment.
        rolling_gen: the :class:`~tracker.online.workflow.task.gen.RollingGen` cutting them.
    """

    def __init__(
        self,
        name_id: str,
        task_template: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        rolling_gen: RollingGen,
    ) -> None:
        super().__init__(name_id)
        templates = [task_template] if isinstance(task_template, Mapping) else task_template
        self.task_template = [copy.deepcopy(dict(t)) for t in templates]
        if not self.task_template:
            raise InvalidInputError("RollingStrategy: task_template is empty")
        for task in self.task_template:
            segment_of(task, rolling_gen.test_key)  # fail now, not at the first routine
        self.rg = rolling_gen

    def first_tasks(self) -> list[dict]:
        """The whole rolling history of the templates."""
        return task_generator(self.task_template, self.rg)

    def get_collector(
        self,
        process_list: list[Any] | None = None,
        rec_key_func: Any = None,
        rec_filter_func: Any = None,
        artifacts_key: Any = None,
    ) -> RecorderCollector:
        """``{"pred": {(model class,): rolling-concatenated pred}}`` over the experiment's
        FINISHED runs with a ``pred.pkl``; keys ``(model class, test segment)`` before
        grouping."""
        key_func = rec_key_func or self._rec_key
        return RecorderCollector(
            experiment=self.name_id,
            process_list=[RollingGroup()] if process_list is None else process_list,
            rec_key_func=key_func,
            rec_filter_func=rec_filter_func,
            artifacts_key=artifacts_key,
        )

    def _rec_key(self, rec: Recorder) -> tuple[str, tuple[Any, Any]]:
        task = rec.load_object("task")
        return task["model"]["class"], segment_of(task, self.rg.test_key)

    def _latest(self, models: list[Recorder]) -> list[dict]:
        """The tasks of the online models with the latest test start."""
        tasks = []
        for rec in models:
            try:
                tasks.append(rec.load_object("task"))
            except LoadObjectError as e:
                log.warning("RollingStrategy %s: skipping recorder %s: %s", self.name_id, rec.id, e)
        starts = [segment_of(t, self.rg.test_key)[0] for t in tasks]
        latest = max((s for s in starts if s is not None), default=None)
        return [t for t, s in zip(tasks, starts, strict=True) if s == latest and s is not None]

    def prepare_tasks(self, cur_time: Any, **kwargs: Any) -> list[dict]:
        """The tasks following the latest online ones whose test start is at most
        ``cur_time`` (None or past the data: the data's last date)."""
        latest = self._latest(self.tool.online_models())
        if not latest:
            log.warning("RollingStrategy %s: no online model: no task to prepare", self.name_id)
            return []
        tasks = []
        for task in latest:
            tasks.extend(self.rg.gen_following_tasks(task, cur_time))
        if tasks:
            log.info("RollingStrategy %s: %d new task(s) at %s", self.name_id, len(tasks), cur_time)
        return tasks
