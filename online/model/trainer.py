"""Qlib's trainers (``qlib/model/trainer.py``): turn tasks into trained recorders.

- :class:`TrainerR` trains each task at once in this process (``task_train``).
- :class:`DelayTrainerR` only records the tasks in ``train`` (``begin_task_train``) and trains
  them in ``end_train`` (``end_task_train``), optionally on ``n_workers`` local processes.
- :class:`TrainerRM` / :class:`DelayTrainerRM` go through a task pool of the SQL queue
  (:class:`TaskManager`), so any number of ``tracker worker`` processes,
  here or on other machines, can share the work; ``n_workers=K`` starts K of them locally.

Every method returns recorders in the order of the tasks given. Recorders are tagged
``train_status`` = ``begin_task_train`` after ``train`` and ``end_task_train`` after
``end_train``; the RM trainers also tag the task's id (``"_id in TaskManager"``).

Fixes over Qlib: ``call_in_subproc`` wraps ``train_func`` once, not on every task (bug 16); the
queue stores run ids, not pickled recorders, so results load again in any process (bug 17).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tracker import R, Recorder
from tracker.errors import InvalidInputError
from tracker.online.model.parallel import end_in_processes, run_in_subprocess, spawn_pool_workers
from tracker.online.model.train import begin_task_train, end_task_train, task_train
from tracker.online.workflow.task import manage as tmm
from tracker.online.workflow.task.worker import run_task

__all__ = [
    "STATUS_BEGIN",
    "STATUS_END",
    "STATUS_KEY",
    "TM_ID",
    "DelayTrainerR",
    "DelayTrainerRM",
    "Trainer",
    "TrainerR",
    "TrainerRM",
]

log = logging.getLogger(__name__)

STATUS_KEY = "train_status"
STATUS_BEGIN = "begin_task_train"
STATUS_END = "end_task_train"
TM_ID = "_id in TaskManager"


def _as_tasks(tasks: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict]:
    return [dict(tasks)] if isinstance(tasks, Mapping) else [dict(t) for t in tasks]


def _as_recs(models: Recorder | Sequence[Recorder]) -> list[Recorder]:
    return [models] if isinstance(models, Recorder) else list(models)


def _workers(n_workers: Any) -> int:
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise InvalidInputError(f"n_workers {n_workers!r} must be an integer >= 1")
    return n_workers


class Trainer:
    """Base trainer: ``train`` makes recorders, ``end_train`` finishes them (identity here)."""

    def __init__(self) -> None:
        self.delay = False

    def train(self, tasks: list, *args: Any, **kwargs: Any) -> list:
        """Train the tasks; the recorders in input order."""
        raise NotImplementedError(f"{type(self).__name__}.train is not implemented")

    def end_train(self, models: list, *args: Any, **kwargs: Any) -> list:
        """Finish the models ``train`` returned (nothing to do for a non-delay trainer)."""
        return models

    def is_delay(self) -> bool:
        """True when ``train`` only records the tasks and ``end_train`` trains them."""
        return self.delay

    def __call__(self, *args: Any, **kwargs: Any) -> list:
        return self.end_train(self.train(*args, **kwargs))

    def has_worker(self) -> bool:
        """Whether :meth:`worker` can serve tasks submitted elsewhere."""
        return False

    def worker(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no worker; use an RM trainer")


class TrainerR(Trainer):
    """Train each task in turn in this process with ``train_func`` (default ``task_train``).

    ``call_in_subproc`` runs each task in a fresh "spawn" process on the same store, so its
    memory is given back after every task.
    """

    def __init__(
        self,
        experiment_name: str | None = None,
        train_func: Callable[..., Recorder] = task_train,
        call_in_subproc: bool = False,
        default_rec_name: str | None = None,
    ) -> None:
        super().__init__()
        self.experiment_name = experiment_name
        self.train_func = train_func
        self.call_in_subproc = call_in_subproc
        self.default_rec_name = default_rec_name

    def _exp(self, experiment_name: str | None) -> str:
        name = experiment_name or self.experiment_name
        if name is None:
            raise InvalidInputError(
                f"{type(self).__name__}: no experiment; pass experiment_name= to the trainer "
                "or to train()"
            )
        return name

    def train(
        self,
        tasks: Any,
        train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Train every task; the recorders (tagged ``begin_task_train``) in input order."""
        task_list = _as_tasks(tasks)
        if not task_list:
            return []
        func = train_func or self.train_func
        exp = self._exp(experiment_name)
        kwargs.setdefault("recorder_name", self.default_rec_name)
        if self.call_in_subproc:  # wrapped once for all tasks (Qlib re-wrapped per task)
            inner = func

            def func(task: dict, experiment_name: str, **kw: Any) -> Recorder:
                return run_in_subprocess(inner, task, experiment_name, **kw)

        recs = []
        for i, task in enumerate(task_list):
            log.info("%s: task %d/%d", type(self).__name__, i + 1, len(task_list))
            rec = func(task, exp, **kwargs)
            rec.set_tags(**{STATUS_KEY: STATUS_BEGIN})
            recs.append(rec)
        return recs

    def end_train(self, models: Any, **kwargs: Any) -> list[Recorder]:
        """Tag the recorders ``end_task_train``."""
        recs = _as_recs(models)
        for rec in recs:
            rec.set_tags(**{STATUS_KEY: STATUS_END})
        return recs


class DelayTrainerR(TrainerR):
    """``train`` records the tasks only; ``end_train`` trains them, on ``n_workers`` local
    "spawn" processes when it is more than 1 (the recorders must be in a SQL store)."""

    def __init__(
        self,
        experiment_name: str | None = None,
        train_func: Callable[..., Recorder] = begin_task_train,
        end_train_func: Callable[..., Recorder] = end_task_train,
        n_workers: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(experiment_name, train_func, **kwargs)
        self.end_train_func = end_train_func
        self.n_workers = _workers(n_workers)
        self.delay = True

    def end_train(
        self,
        models: Any,
        end_train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        n_workers: int | None = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Train the recorders not tagged ``end_task_train`` yet; all of them in input order."""
        recs = _as_recs(models)
        func = end_train_func or self.end_train_func
        exp = self._exp(experiment_name)
        todo = [i for i, r in enumerate(recs) if r.list_tags().get(STATUS_KEY) != STATUS_END]
        workers = _workers(n_workers or self.n_workers)
        if workers > 1 and len(todo) > 1:
            done = end_in_processes(func, [recs[i] for i in todo], exp, workers, **kwargs)
        else:
            done = [func(recs[i], exp, **kwargs) for i in todo]
        out = list(recs)
        for i, rec in zip(todo, done, strict=True):
            rec.set_tags(**{STATUS_KEY: STATUS_END})
            out[i] = rec
        return out


class TrainerRM(TrainerR):
    """Train through the task pool ``task_pool`` (default: the experiment's name).

    ``train`` adds the tasks (deduplicated: a task already done is not trained again), runs
    them here (``n_workers=1``) or on ``n_workers`` local worker processes, unless
    ``skip_run_task`` (workers elsewhere take them: ``tracker worker --pool NAME``), waits
    for them, and returns their recorders.
    """

    def __init__(
        self,
        experiment_name: str | None = None,
        task_pool: str | None = None,
        train_func: Callable[..., Recorder] = task_train,
        skip_run_task: bool = False,
        default_rec_name: str | None = None,
        n_workers: int = 1,
    ) -> None:
        super().__init__(experiment_name, train_func, default_rec_name=default_rec_name)
        self.task_pool = task_pool
        self.skip_run_task = skip_run_task
        self.n_workers = _workers(n_workers)

    def _pool(self, exp: str) -> str:
        return self.task_pool or exp

    def _run(
        self,
        func: Callable[..., Any],
        pool: str,
        ids: list[int],
        before: str,
        after: str,
        **kwargs: Any,
    ) -> None:
        query = {"_id": {"$in": ids}}
        if self.n_workers > 1 and len(ids) > 1:
            spawn_pool_workers(func, pool, query, before, after, self.n_workers, **kwargs)
        else:
            run_task(func, pool, query=query, before_status=before, after_status=after, **kwargs)

    def train(  # type: ignore[override]
        self,
        tasks: Any,
        train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        before_status: str = tmm.STATUS_WAITING,
        after_status: str = tmm.STATUS_DONE,
        default_rec_name: str | None = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Queue, run (unless skipped), wait; recorders tagged with their task id."""
        task_list = _as_tasks(tasks)
        if not task_list:
            return []
        exp = self._exp(experiment_name)
        pool = self._pool(exp)
        tm = tmm.TaskManager(pool, R.exp_manager)
        ids = [int(i) for i in tm.create_task(task_list)]  # type: ignore[arg-type]
        kwargs.update(experiment_name=exp)
        kwargs["recorder_name"] = default_rec_name or self.default_rec_name
        if not self.skip_run_task:
            func = train_func or self.train_func
            self._run(func, pool, ids, before_status, after_status, **kwargs)
        if not self.is_delay():
            tm.wait({"_id": {"$in": ids}})
        return self._results(tm, ids, STATUS_BEGIN)

    @staticmethod
    def _results(tm: tmm.TaskManager, ids: list[int], status: str) -> list[Recorder]:
        recs = []
        for tid in ids:
            res = tm.re_query(tid)["res"]
            if not isinstance(res, Recorder):
                raise InvalidInputError(
                    f"task {tid} of pool {tm.pool!r} has no recorder result ({res!r}); its "
                    f"status is {tm.re_query(tid)['status']!r}"
                )
            res.set_tags(**{STATUS_KEY: status, TM_ID: str(tid)})
            recs.append(res)
        return recs

    def has_worker(self) -> bool:
        return True

    def worker(
        self, train_func: Callable[..., Recorder] | None = None, experiment_name: str | None = None
    ) -> int:
        """Run every waiting task of the pool here; how many ran."""
        exp = self._exp(experiment_name)
        return run_task(train_func or self.train_func, self._pool(exp), experiment_name=exp)


class DelayTrainerRM(TrainerRM):
    """``train`` records the tasks here (waiting -> part_done); ``end_train`` trains them
    through the pool (part_done -> done), here, on ``n_workers`` local processes, or, with
    ``skip_run_task``, on workers elsewhere (``tracker worker --pool NAME --phase end``)."""

    def __init__(
        self,
        experiment_name: str | None = None,
        task_pool: str | None = None,
        train_func: Callable[..., Recorder] = begin_task_train,
        end_train_func: Callable[..., Recorder] = end_task_train,
        skip_run_task: bool = False,
        n_workers: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(experiment_name, task_pool, train_func, skip_run_task, **kwargs)
        self.end_train_func = end_train_func
        self.n_workers = _workers(n_workers)
        self.delay = True

    def train(  # type: ignore[override]
        self,
        tasks: Any,
        train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Record the tasks in this process (begin steps are cheap; always run here)."""
        skip, workers = self.skip_run_task, self.n_workers
        self.skip_run_task, self.n_workers = False, 1
        try:
            return super().train(
                tasks,
                train_func,
                experiment_name,
                after_status=tmm.STATUS_PART_DONE,
                **kwargs,
            )
        finally:
            self.skip_run_task, self.n_workers = skip, workers

    def end_train(  # type: ignore[override]
        self,
        models: Any,
        end_train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Train the recorders' tasks through the pool, wait, tag them ``end_task_train``."""
        recs = _as_recs(models)
        if not recs:
            return []
        exp = self._exp(experiment_name)
        pool = self._pool(exp)
        tm = tmm.TaskManager(pool, R.exp_manager)
        ids = []
        for rec in recs:
            tid = rec.list_tags().get(TM_ID)
            if tid is None:
                raise InvalidInputError(
                    f"recorder {rec.id} has no {TM_ID!r} tag: it was not made by "
                    "DelayTrainerRM.train"
                )
            ids.append(int(tid))
        if not self.skip_run_task:
            func = end_train_func or self.end_train_func
            kwargs.update(experiment_name=exp)
            self._run(func, pool, ids, tmm.STATUS_PART_DONE, tmm.STATUS_DONE, **kwargs)
        tm.wait({"_id": {"$in": ids}})
        return self._results(tm, ids, STATUS_END)

    def worker(  # type: ignore[override]
        self,
        end_train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
    ) -> int:
        """Train every part_done task of the pool here; how many ran."""
        exp = self._exp(experiment_name)
        return run_task(
            end_train_func or self.end_train_func,
            self._pool(exp),
            before_status=tmm.STATUS_PART_DONE,
            experiment_name=exp,
        )
