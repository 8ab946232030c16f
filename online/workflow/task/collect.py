"""Collecting artifacts from recorders (Qlib's ``qlib.workflow.task.collect``).

A collector returns a dict; ``process_list`` (e.g. ``[RollingGroup()]``) then transforms each of
its top-level values. :class:`RecorderCollector` gathers artifacts of an experiment's runs::

    preds = RecorderCollector("rolling", rec_key_func=lambda r: r.load_object("task")["name"])()
    # {"pred": {key: pred DataFrame, ...}}

Differences from Qlib, deliberately:

- a missing experiment name raises :class:`~tracker.errors.ExperimentNotFound` when collecting
  (Qlib created an empty experiment, quirk 3), and nothing is resolved at construction, so a
  collector can be built before its experiment exists and pickled (an ``Experiment`` is kept
  as its store location and name);
- ``status`` is filtered in the database, not after listing every run (Qlib PR #512);
- when two recorders map to the same key, the newest run wins (Qlib kept whichever came last
  in listing order, which is the oldest);
- problems are logged (``logging``), not raised as warnings.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import tracker
from tracker import Experiment, R, Recorder, objects
from tracker.errors import InvalidInputError, LoadObjectError

__all__ = ["ART_KEY_RAW", "Collector", "MergeCollector", "RecorderCollector"]

logger = logging.getLogger(__name__)

ART_KEY_RAW = "__raw"  #: artifact key that yields the recorder itself


class Collector:
    """Collect something into a dict, then run each value through ``process_list``."""

    def __init__(self, process_list: Callable[..., Any] | list[Callable[..., Any]] = []) -> None:  # noqa: B006 - Qlib's signature; never mutated
        if not isinstance(process_list, list):
            process_list = [process_list]
        self.process_list = list(process_list)

    def collect(self) -> dict[Any, Any]:
        """The collected dict; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement collect()")

    @staticmethod
    def process_collect(
        collected_dict: Mapping[Any, Any],
        process_list: Callable[..., Any] | list[Callable[..., Any]] = [],  # noqa: B006
        *args: Any,
        **kwargs: Any,
    ) -> dict[Any, Any]:
        """Apply every processor, in order, to each top-level value of ``collected_dict``."""
        if not isinstance(process_list, list):
            process_list = [process_list]
        for process in process_list:
            if not callable(process):
                raise InvalidInputError(
                    f"process_list item {process!r} is not callable; pass functions or "
                    "objects such as RollingGroup()"
                )
        result = {}
        for key, value in collected_dict.items():
            for process in process_list:
                value = process(value, *args, **kwargs)
            result[key] = value
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        """``process_collect(collect(), process_list)``."""
        return self.process_collect(self.collect(), self.process_list, *args, **kwargs)


class MergeCollector(Collector):
    """Several collectors in one: keys become ``(collector_key, inner_key)``, or
    ``merge_func(collector_key, inner_key)`` when given."""

    def __init__(
        self,
        collector_dict: Mapping[str, Collector],
        process_list: Callable[..., Any] | list[Callable[..., Any]] = [],  # noqa: B006
        merge_func: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        super().__init__(process_list)
        self.collector_dict = dict(collector_dict)
        self.merge_func = merge_func

    def collect(self) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for collector_key, collector in self.collector_dict.items():
            for key, value in collector().items():
                merged = (
                    (collector_key, key)
                    if self.merge_func is None
                    else self.merge_func(collector_key, key)
                )
                out[merged] = value
        return out


class _ExpRef:
    """A picklable stand-in for an :class:`Experiment`: its store location and name."""

    def __init__(self, exp: Experiment) -> None:
        self.uri, self.artifact_uri = exp.manager.uri, exp.manager.artifact_uri
        self.name = exp.name

    def resolve(self) -> Experiment:
        manager = tracker.connect(self.uri, self.artifact_uri)
        return objects.get_exp(manager, experiment_name=self.name, create=False)


def _recorder_id(rec: Recorder) -> str | None:
    """The default key (a module function, so collectors pickle)."""
    return rec.id


ExperimentSource = str | Experiment | Callable[[], Any]


class RecorderCollector(Collector):
    """Artifacts of an experiment's recorders: ``{artifact_key: {rec_key: object}}``.

    Args:
        experiment: an experiment name (looked up in ``R``'s store when collecting; never
            created), an :class:`Experiment`, or a callable returning Experiments and/or
            Recorders (a single one, or an iterable).
        process_list: processors applied to each artifact key's dict.
        rec_key_func: ``recorder -> key``; default: the recorder id.
        rec_filter_func: ``recorder -> bool``; recorders for which it is false are skipped.
        artifacts_path: ``{artifact_key: artifact path}``; :data:`ART_KEY_RAW` as a key
            collects the recorder object itself.
        artifacts_key: the keys of ``artifacts_path`` to collect; default: all.
        list_kwargs: passed to :meth:`Experiment.list_recorders` (e.g. a ``filter_string``).
        status: run statuses to keep (default FINISHED); None keeps every status.
    """

    def __init__(
        self,
        experiment: ExperimentSource,
        process_list: Callable[..., Any] | list[Callable[..., Any]] = [],  # noqa: B006
        rec_key_func: Callable[[Recorder], Any] | None = None,
        rec_filter_func: Callable[[Recorder], bool] | None = None,
        artifacts_path: Mapping[str, str] = {"pred": "pred.pkl"},  # noqa: B006
        artifacts_key: str | list[str] | None = None,
        list_kwargs: Mapping[str, Any] = {},  # noqa: B006
        status: Iterable[str] | str | None = frozenset({Recorder.STATUS_FI}),
    ) -> None:
        super().__init__(process_list)
        if not isinstance(experiment, (str, Experiment)) and not callable(experiment):
            raise InvalidInputError(
                f"RecorderCollector: experiment {experiment!r} must be a name, an Experiment "
                "or a callable returning recorders"
            )
        self.experiment: ExperimentSource | _ExpRef = experiment
        self.rec_key_func = rec_key_func or _recorder_id
        self.rec_filter_func = rec_filter_func
        self.artifacts_path = dict(artifacts_path)
        self.artifacts_key = artifacts_key
        self.list_kwargs = dict(list_kwargs)
        if isinstance(status, str):
            status = [status]
        self.status = None if status is None else frozenset(s.upper() for s in status)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self.experiment, Experiment):  # its database engine does not pickle
            state["experiment"] = _ExpRef(self.experiment)
        return state

    def get_exp_name(self) -> str | None:
        """The experiment's name (None when ``experiment`` is a callable)."""
        if isinstance(self.experiment, str):
            return self.experiment
        if isinstance(self.experiment, (Experiment, _ExpRef)):
            return self.experiment.name
        return None

    def _experiment(self) -> Experiment | None:
        if isinstance(self.experiment, str):
            return R.get_exp(experiment_name=self.experiment, create=False)
        if isinstance(self.experiment, _ExpRef):
            return self.experiment.resolve()
        return self.experiment if isinstance(self.experiment, Experiment) else None

    def _list(self, exp: Experiment) -> list[Recorder]:
        kwargs = dict(self.list_kwargs)
        kwargs.pop("rtype", None)
        flt = kwargs.pop("filter_string", "") or ""
        if self.status is not None:
            # In the database: listing every run and dropping most was Qlib's slow path.
            listed = ", ".join(f"'{s}'" for s in sorted(self.status))
            cond = f"status IN ({listed})"
            flt = f"({flt}) AND {cond}" if flt else cond
        return exp.list_recorders(rtype=Experiment.RT_L, filter_string=flt, **kwargs)

    def _recorders(self) -> list[Recorder]:
        exp = self._experiment()
        if exp is not None:
            return self._list(exp)
        produced = self.experiment()  # type: ignore[operator]
        if isinstance(produced, (Experiment, Recorder)):
            produced = [produced]
        elif isinstance(produced, Mapping):  # list_recorders(rtype="dict")
            produced = produced.values()
        recs: list[Recorder] = []
        for item in produced:
            if isinstance(item, Experiment):
                recs.extend(self._list(item))
            elif self.status is None or item.status in self.status:
                recs.append(item)
        return recs

    def collect(
        self,
        artifacts_key: str | list[str] | None = None,
        rec_filter_func: Callable[[Recorder], bool] | None = None,
        only_exist: bool = True,
    ) -> dict[str, dict[Any, Any]]:
        """``{artifact_key: {rec_key: object}}``. A recorder whose artifact cannot be loaded
        is skipped for that key with a log message when ``only_exist`` (an older recorder with
        the same key, if any, then keeps it); else LoadObjectError is raised."""
        keys = artifacts_key if artifacts_key is not None else self.artifacts_key
        if keys is None:
            keys = list(self.artifacts_path)
        elif isinstance(keys, str):
            keys = [keys]
        unknown = [k for k in keys if k != ART_KEY_RAW and k not in self.artifacts_path]
        if unknown:
            raise InvalidInputError(
                f"RecorderCollector: artifact keys {unknown} are not in artifacts_path "
                f"{self.artifacts_path}; add them there"
            )
        rec_filter_func = rec_filter_func or self.rec_filter_func
        recs = self._recorders()
        logger.info(
            "RecorderCollector %s: %d recorders %s",
            self.get_exp_name(),
            len(recs),
            dict(Counter(r.status for r in recs)),
        )
        collected: dict[str, dict[Any, Any]] = {k: {} for k in keys}
        owner: dict[tuple[str, Any], str | None] = {}
        # Oldest first, so that on a duplicate key the newest recorder is the one kept.
        for rec in reversed(recs):
            if rec_filter_func is not None and not rec_filter_func(rec):
                continue
            rec_key = self.rec_key_func(rec)
            for key in keys:
                try:
                    value = rec if key == ART_KEY_RAW else rec.load_object(self.artifacts_path[key])
                except LoadObjectError as e:
                    if not only_exist:
                        raise
                    logger.info("RecorderCollector: skipping recorder %s: %s", rec.id, e)
                    continue
                if (key, rec_key) in owner:
                    logger.warning(
                        "RecorderCollector: %r of recorders %s and %s share the key %r; "
                        "keeping the newer %s",
                        key,
                        owner[key, rec_key],
                        rec.id,
                        rec_key,
                        rec.id,
                    )
                owner[key, rec_key] = rec.id
                collected[key][rec_key] = value
        return collected
