"""Which models are online, and keeping their predictions current (Qlib's
``qlib.workflow.online.utils``).

A recorder is online when its tag ``online_status`` is ``"online"``; a recorder without the
tag is offline. :meth:`OnlineToolR.online_models` asks the database for that tag.

Online history. Every change of a recorder's state (offline -> online or back) is kept in the
store, without any schema change, in two places on that recorder:

- tags ``online_since`` / ``online_until``: UTC ISO times of the start of its latest online
  period and the end of its latest finished one (cheap to read, filterable);
- one small JSON artifact per change, ``online_history/<time_ns>-<random>.json`` holding
  ``{recorder_id, name, status, time, time_ns, host, pid}``. Each change writes a new file,
  never rewrites one, so concurrent writers cannot lose each other's entries (append-only
  without locks); artifacts may be written to FINISHED runs.

The tag is written first, then the event: the tag is the truth, the events its log. A crash in
between loses one event, which :meth:`OnlineToolR.online_history` repairs from the tags.
Setting a state a recorder already has records nothing.

Differences from Qlib, deliberately: :meth:`OnlineToolR.reset_online_tag` only writes to the
recorders whose state changes (Qlib tagged every recorder of the experiment, one write each);
an experiment name that does not exist raises instead of being created (quirk 3); tags other
than online/offline are refused.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any

import pandas as pd

from tracker import Experiment, R, Recorder, objects
from tracker.errors import InvalidInputError, LoadObjectError
from tracker.online.workflow.online.update import PredUpdater

__all__ = ["OFFLINE_TAG", "ONLINE_KEY", "ONLINE_TAG", "OnlineTool", "OnlineToolR"]

logger = logging.getLogger(__name__)

ONLINE_KEY = "online_status"
ONLINE_TAG = "online"
OFFLINE_TAG = "offline"
SINCE_KEY = "online_since"
UNTIL_KEY = "online_until"
HISTORY_DIR = "online_history"
HISTORY_COLUMNS = ["recorder_id", "name", "online_from", "online_to", "online_by", "offline_by"]


class OnlineTool(abc.ABC):
    """Marks models online or offline and updates their predictions."""

    ONLINE_KEY = ONLINE_KEY
    ONLINE_TAG = ONLINE_TAG
    OFFLINE_TAG = OFFLINE_TAG

    @abc.abstractmethod
    def set_online_tag(self, tag: str, recorder: Recorder | list[Recorder]) -> None:
        """Tag the recorder(s) ``online`` or ``offline``."""

    @abc.abstractmethod
    def get_online_tag(self, recorder: Recorder) -> str:
        """``online`` or ``offline``."""

    @abc.abstractmethod
    def reset_online_tag(self, recorder: Recorder | list[Recorder], *args: Any) -> None:
        """Make exactly these recorders online."""

    @abc.abstractmethod
    def online_models(self, *args: Any) -> list[Recorder]:
        """The online recorders."""

    @abc.abstractmethod
    def update_online_pred(self, to_date: Any = None, *args: Any, **kwargs: Any) -> None:
        """Extend the online models' predictions up to ``to_date``."""


def _as_list(recorder: Recorder | Iterable[Recorder]) -> list[Recorder]:
    return [recorder] if isinstance(recorder, Recorder) else list(recorder)


def _utc(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, unit="ns", tz="UTC")


class OnlineToolR(OnlineTool):
    """:class:`OnlineTool` on recorder tags, for experiments in ``R``'s store.

    ``default_exp_name`` is used when a method gets no ``exp_name``.
    """

    def __init__(self, default_exp_name: str | None = None) -> None:
        self.default_exp_name = default_exp_name

    # ---------------------------------------------------------------------------------- tags

    def set_online_tag(self, tag: str, recorder: Recorder | list[Recorder]) -> None:
        """Tag each recorder; a change of state is appended to its online history."""
        if tag not in (ONLINE_TAG, OFFLINE_TAG):
            raise InvalidInputError(
                f"online tag {tag!r} is not {ONLINE_TAG!r} or {OFFLINE_TAG!r}; use "
                "OnlineToolR.ONLINE_TAG / OFFLINE_TAG"
            )
        recs = _as_list(recorder)
        for rec in recs:
            was_online = self.get_online_tag(rec) == ONLINE_TAG
            if was_online == (tag == ONLINE_TAG):
                rec.set_tags(**{ONLINE_KEY: tag})  # no change of state: no history entry
                continue
            self._change(rec, tag)
        logger.info("OnlineToolR: %d recorder(s) tagged %s", len(recs), tag)

    def _change(self, rec: Recorder, tag: str) -> None:
        ns = time.time_ns()
        when = _utc(ns).isoformat()
        rec.set_tags(**{ONLINE_KEY: tag, SINCE_KEY if tag == ONLINE_TAG else UNTIL_KEY: when})
        event = {
            "recorder_id": rec.id,
            "name": rec.name,
            "status": tag,
            "time": when,
            "time_ns": ns,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        name = f"{ns:020d}-{uuid.uuid4().hex[:8]}.json"
        rec.save_objects(artifact_path=HISTORY_DIR, **{name: event})

    def get_online_tag(self, recorder: Recorder) -> str:
        """The recorder's tag; ``offline`` when it has none."""
        return recorder.list_tags().get(ONLINE_KEY, OFFLINE_TAG)

    def reset_online_tag(
        self, recorder: Recorder | list[Recorder], exp_name: str | None = None
    ) -> None:
        """Make the given recorders online and every other recorder of the experiment
        offline. The experiment: ``exp_name``, else the default, else the recorders' own."""
        recs = _as_list(recorder)
        keep = {rec.id for rec in recs}
        others = [r for r in self._online(self._exp(exp_name, recs)) if r.id not in keep]
        # Offline first, as Qlib: readers may briefly see no model, never an unintended mix.
        self.set_online_tag(OFFLINE_TAG, others)
        self.set_online_tag(ONLINE_TAG, recs)

    def online_models(self, exp_name: str | None = None) -> list[Recorder]:
        """The experiment's recorders tagged online, newest first (one database query)."""
        return self._online(self._exp(exp_name))

    @staticmethod
    def _online(exp: Experiment) -> list[Recorder]:
        return exp.list_recorders(
            rtype=Experiment.RT_L, filter_string=f"tags.{ONLINE_KEY} = '{ONLINE_TAG}'"
        )

    # ------------------------------------------------------------------------------- updates

    def update_online_pred(
        self, to_date: Any = None, from_date: Any = None, exp_name: str | None = None
    ) -> None:
        """Run :class:`PredUpdater` on every online model; a model whose
        ``pred.pkl``, ``dataset`` or model cannot be loaded is skipped with a log message."""
        for rec in self.online_models(exp_name):
            try:
                PredUpdater(rec, to_date=to_date, from_date=from_date).update()
            except LoadObjectError as e:
                logger.warning("update_online_pred: skipping recorder %s: %s", rec.id, e)

    # ------------------------------------------------------------------------------- history

    def online_events(self, exp_name: str | None = None) -> pd.DataFrame:
        """Every recorded change: ``time`` (UTC), ``recorder_id``, ``name``, ``status``,
        ``host``, ``pid``; in time order."""
        rows = []
        for rec in self._history_recorders(exp_name):
            rows.extend(self._events(rec))
        columns = ["time", "recorder_id", "name", "status", "host", "pid"]
        frame = pd.DataFrame(rows, columns=["time_ns", *columns[1:]])
        frame.insert(0, "time", pd.to_datetime(frame.pop("time_ns"), unit="ns", utc=True))
        return frame.sort_values(["time", "recorder_id"], ignore_index=True)

    def online_history(self, exp_name: str | None = None) -> pd.DataFrame:
        """One row per online period: ``recorder_id``, ``name``, ``online_from``,
        ``online_to`` (UTC; NaT while still online), ``online_by``/``offline_by``
        (``host:pid`` that made the change); ordered by ``online_from``."""
        rows: list[dict[str, Any]] = []
        for rec in self._history_recorders(exp_name):
            rows.extend(self._periods(rec))
        frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
        for col in ("online_from", "online_to"):
            frame[col] = pd.to_datetime(frame[col], utc=True)
        return frame.sort_values(["online_from", "recorder_id"], ignore_index=True)

    def _history_recorders(self, exp_name: str | None) -> list[Recorder]:
        exp = self._exp(exp_name)
        return exp.list_recorders(
            rtype=Experiment.RT_L,
            filter_string=f"tags.{SINCE_KEY} IS NOT NULL OR tags.{ONLINE_KEY} = '{ONLINE_TAG}'",
        )

    @staticmethod
    def _events(rec: Recorder) -> list[dict[str, Any]]:
        events = []
        for path in sorted(rec.list_artifacts(HISTORY_DIR)):
            try:
                ev = rec.load_object(path)
            except LoadObjectError as e:  # a half-written file must not hide the rest
                logger.warning("online history: skipping %s: %s", path, e)
                continue
            events.append({k: ev.get(k) for k in ("time_ns", "recorder_id", "name", "status")})
            events[-1].update(host=ev.get("host"), pid=ev.get("pid"), recorder_id=rec.id)
        return sorted(events, key=lambda e: e["time_ns"])

    def _periods(self, rec: Recorder) -> list[dict[str, Any]]:
        periods: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for ev in self._events(rec):
            by = f"{ev['host']}:{ev['pid']}"
            # Repeated events (two processes making the same change at once) are no-ops.
            if ev["status"] == ONLINE_TAG and current is None:
                current = {"recorder_id": rec.id, "name": rec.name, "online_by": by}
                current.update(online_from=_utc(ev["time_ns"]), online_to=pd.NaT)
            elif ev["status"] == OFFLINE_TAG and current is not None:
                current.update(online_to=_utc(ev["time_ns"]), offline_by=by)
                periods.append(current)
                current = None
        # Reconcile with the tags (the truth) in case a crash lost the last event.
        tags = rec.list_tags()
        online = tags.get(ONLINE_KEY) == ONLINE_TAG
        if current is not None and not online:
            until = pd.Timestamp(tags.get(UNTIL_KEY) or pd.NaT)
            current["online_to"] = until if until >= current["online_from"] else pd.NaT
        if current is None and online:
            since = pd.Timestamp(tags.get(SINCE_KEY) or pd.NaT)
            current = {"recorder_id": rec.id, "name": rec.name, "online_from": since}
        if current is not None:
            periods.append(current)
        return periods

    # ------------------------------------------------------------------------------- helpers

    def _exp(self, exp_name: str | None, hint: list[Recorder] | None = None) -> Experiment:
        name = exp_name or self.default_exp_name
        if name is not None:
            return R.get_exp(experiment_name=name, create=False)
        if hint:
            rec = hint[0]
            return objects.get_exp(rec.manager, experiment_id=rec.experiment_id, create=False)
        raise InvalidInputError(
            "OnlineToolR: no experiment given; pass exp_name= or build "
            "OnlineToolR(default_exp_name=...)"
        )
