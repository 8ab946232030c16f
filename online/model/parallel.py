"""Training in other processes for the trainers: one task in a fresh process
(``call_in_subproc``), ``end_train`` on a process pool, and ``run_task`` workers on a task pool.

"spawn" everywhere: a forked child would share the parent's database connections.
"""

from __future__ import annotations

import base64
import logging
import multiprocessing
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tracker import R, Recorder
from tracker.errors import TrackerError

__all__ = ["end_in_processes", "run_in_subprocess", "spawn_pool_workers"]

log = logging.getLogger(__name__)


def _store() -> tuple[str, str | None]:
    manager = R.exp_manager
    return manager.uri, manager.artifact_uri


def _init_store(uri: str, artifact_uri: str | None) -> None:
    import tracker

    tracker.init(exp_manager=tracker.connect(uri, artifact_uri))


def _executor(workers: int) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_store, initargs=_store())


def _train_one(func: Callable[..., Recorder], task: dict, exp: str, kwargs: dict) -> str:
    return func(task, exp, **kwargs).id  # an id: a Recorder holds a database engine


def _end_one(func: Callable[..., Recorder], rec_id: str, exp: str, kwargs: dict) -> str:
    rec = R.get_exp(experiment_name=exp, create=False).get_recorder(rec_id, create=False)
    return func(rec, exp, **kwargs).id


def _recorder(exp: str, rec_id: str) -> Recorder:
    return R.get_exp(experiment_name=exp, create=False).get_recorder(rec_id, create=False)


def run_in_subprocess(func: Callable[..., Recorder], task: dict, exp: str, **kw: Any) -> Recorder:
    """``func(task, exp, **kw)`` in a fresh process on ``R``'s store (memory given back)."""
    with _executor(1) as pool:
        rec_id = pool.submit(_train_one, func, task, exp, kw).result()
    return _recorder(exp, rec_id)


def end_in_processes(
    func: Callable[..., Recorder], recs: list[Recorder], exp: str, workers: int, **kw: Any
) -> list[Recorder]:
    """``func(rec, exp, **kw)`` for every recorder on ``workers`` processes; input order."""
    with _executor(min(workers, len(recs))) as pool:
        futures = [pool.submit(_end_one, func, rec.id, exp, kw) for rec in recs]
        ids = [f.result() for f in futures]
    return [_recorder(exp, rec_id) for rec_id in ids]


_WORKER_ARGS = "TRACKER_WORKER_ARGS"
_WORKER = f"""
import base64, os, pickle
import tracker
from tracker.online.workflow.task.worker import run_task
a = pickle.loads(base64.b64decode(os.environ.pop({_WORKER_ARGS!r})))
manager = tracker.connect(a["uri"], a["artifact_uri"])
tracker.init(exp_manager=manager)
run_task(a["func"], a["pool"], query=a["query"], before_status=a["before"],
         after_status=a["after"], idle_exit=False, exp_manager=manager, **a["kwargs"])
"""


def spawn_pool_workers(
    func: Callable[..., Any],
    pool: str,
    query: Mapping[str, Any],
    before: str,
    after: str,
    n: int,
    **kwargs: Any,
) -> None:
    """Run ``n`` ``run_task`` worker processes on ``pool`` (same store as ``R``) and wait
    until they have drained the tasks matching ``query``."""
    uri, artifact_uri = _store()
    args = {"uri": uri, "artifact_uri": artifact_uri, "func": func, "pool": pool}
    args.update(query=dict(query), before=before, after=after, kwargs=kwargs)
    payload = base64.b64encode(pickle.dumps(args)).decode()
    root = str(Path(__file__).resolve().parents[1])  # so that `online` imports in the child
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    # The store URI (a password in it) through the environment: a command line is public,
    # and runs record theirs.
    env[_WORKER_ARGS] = payload
    with tempfile.TemporaryDirectory() as tmp:
        logs = [Path(tmp) / f"worker-{i}.log" for i in range(n)]
        procs = []
        for path in logs:
            with open(path, "w") as err:
                cmd = [sys.executable, "-c", _WORKER]
                procs.append(subprocess.Popen(cmd, env=env, stdout=err, stderr=err))
        codes = [p.wait() for p in procs]
        failed = [(c, path.read_text()[-2000:]) for c, path in zip(codes, logs, strict=True) if c]
    if failed:
        code, tail = failed[0]
        raise TrackerError(f"{len(failed)} of {n} worker processes failed (exit {code}):\n{tail}")
    log.info("%d worker processes drained pool %r", n, pool)
