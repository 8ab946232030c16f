"""A task as the queue keeps it: its statuses, its id, the canonical hash that deduplicates
tasks, and how its definition and result are pickled (a Recorder result stored as its ids)."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from tracker.errors import InvalidInputError, RunNotFound
from tracker.manager import ExpManager
from tracker.recorder import Recorder

STATUS_WAITING = "waiting"
STATUS_RUNNING = "running"
STATUS_PART_DONE = "part_done"
STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUSES = (STATUS_WAITING, STATUS_RUNNING, STATUS_PART_DONE, STATUS_DONE, STATUS_FAILED)

PICKLE_PROTOCOL = 5


def check_status(status: Any) -> str:
    if status not in STATUSES:
        raise InvalidInputError(f"task status {status!r} is not one of {', '.join(STATUSES)}")
    return str(status)


def task_id(value: Any) -> int:
    """A task id: an int, a digit string (as typed on a command line), or a task dict."""
    if isinstance(value, Mapping) and "_id" in value:
        value = value["_id"]
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise InvalidInputError(f"task id {value!r} must be a non-negative integer")
    return int(value)


# ------------------------------------------------------------------------------ canonical hash


def canonical(value: Any, path: str = "task") -> Any:
    """A JSON-able form in which equal tasks are equal: dict keys in any order, tuples as
    lists (as MongoDB stored them in Qlib), dates as ISO strings. Raises InvalidInputError
    for values without a stable form (arbitrary objects)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, dt.datetime):  # also pandas.Timestamp
        return {"__datetime__": value.isoformat()}
    if isinstance(value, (dt.date, dt.time, dt.timedelta)):
        return {f"__{type(value).__name__}__": str(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: canonical(v, f"{path}.{k}") for k, v in value.items()}
        pairs = [[canonical(k, path), canonical(v, f"{path}[{k!r}]")] for k, v in value.items()]
        return {"__items__": sorted(pairs, key=_dumps)}
    if isinstance(value, (set, frozenset)):
        return {"__set__": sorted((canonical(v, path) for v in value), key=_dumps)}
    if isinstance(value, enum.Enum):
        return {"__enum__": f"{type(value).__module__}.{type(value).__qualname__}.{value.name}"}
    if isinstance(value, PurePath):
        return {"__path__": str(value)}
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        return {"__object__": f"{value.__module__}.{value.__qualname__}"}
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # numpy scalars
        return canonical(value.item(), path)
    raise InvalidInputError(
        f"{path} holds a {type(value).__name__} ({_short(value)}) that has no canonical form, "
        "so the task cannot be deduplicated: give plain values (dict, list, tuple, str, number, "
        "bool, None, dates) or the object's config dict instead"
    )


def task_hash(task: Any) -> str:
    """sha256 of the task's canonical JSON (sorted keys)."""
    return hashlib.sha256(_dumps(canonical(task)).encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------- results, decoding


@dataclass(frozen=True)
class RecorderRef:
    """What is stored for a :class:`Recorder` result: its ids, not the live object (which
    holds the store's connections and would not unpickle elsewhere)."""

    run_id: str
    experiment_id: str
    name: str


def to_storable(res: Any) -> Any:
    """Recorders (also inside lists, tuples and dicts) replaced by :class:`RecorderRef`."""
    if isinstance(res, Recorder) and res.id is not None:
        return RecorderRef(res.id, str(res.experiment_id), res.name)
    if isinstance(res, (list, tuple)):
        return type(res)(to_storable(v) for v in res)
    if isinstance(res, dict):
        return {k: to_storable(v) for k, v in res.items()}
    return res


def from_storable(res: Any, manager: ExpManager) -> Any:
    """:class:`RecorderRef` back into a Recorder of ``manager`` (the ref itself if the run was
    purged meanwhile)."""
    if isinstance(res, RecorderRef):
        try:
            info = manager.get_run_info(res.run_id)
        except RunNotFound:
            return res
        return Recorder(manager, info.experiment_id, info.name, info=info)
    if isinstance(res, (list, tuple)):
        return type(res)(from_storable(v, manager) for v in res)
    if isinstance(res, dict):
        return {k: from_storable(v, manager) for k, v in res.items()}
    return res


def run_id_of(res: Any) -> str | None:
    return res.run_id if isinstance(res, RecorderRef) else None


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=PICKLE_PROTOCOL)


def decode(task: dict[str, Any], manager: ExpManager) -> dict[str, Any]:
    """A task document as the queue returns it (``def`` and ``res`` pickled) with both
    unpickled, Recorder results as Recorders of ``manager``."""
    # Plain pickle, trusted as the pool's writers are: a worker then trains what the task
    # names anyway (README, "What tracker trusts").
    task_def = pickle.loads(task["def"])
    res = None if task["res"] is None else from_storable(pickle.loads(task["res"]), manager)
    return {**task, "def": task_def, "filter": task_def, "res": res}
