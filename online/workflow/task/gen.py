"""Task generators, Qlib's ``qlib/workflow/task/gen.py``: expand task templates into many tasks,
notably :class:`RollingGen`, which cuts one task into a series of rolling train/test windows.

A task is ``{"model": ..., "dataset": {"class": "Dataset", "kwargs": {"handler": ...,
"segments": {"train": (start, end), "valid": ..., "test": ...}}}, "record": [...]}``; segment
ends are dates, ``None`` meaning open-ended.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from tracker.errors import InvalidInputError
from tracker.online.workflow.task.utils import TimeAdjuster

ROLL_EX = TimeAdjuster.SHIFT_EX  # train start fixed, train end moves
ROLL_SD = TimeAdjuster.SHIFT_SD  # every window moves


def task_generator(tasks: dict | Sequence[dict], generators: Any) -> list[dict]:
    """Expand task templates with generators applied one after another (a cross product).

    Args:
        tasks: a task template or a list of them.
        generators: a :class:`TaskGen` (or any callable mapping a task to a list of tasks), or
            a list of them. Each expands every task produced by the previous one, so 3
            templates, a generator making 2 and one making 3 give 3 x 2 x 3 = 18 tasks.

    Returns:
        The generated tasks.
    """
    task_list = [tasks] if isinstance(tasks, Mapping) else list(tasks)
    gens = [generators] if isinstance(generators, TaskGen) or callable(generators) else generators
    for gen in gens:
        if not callable(gen):
            raise InvalidInputError(
                f"task_generator: {gen!r} is not a TaskGen; pass TaskGen instances or callables"
            )
        task_list = [new for task in task_list for new in gen(task)]
    return task_list


class TaskGen(abc.ABC):
    """Base class of task generators: one task template in, a list of tasks out."""

    @abc.abstractmethod
    def generate(self, task: dict) -> list[dict]:
        """The tasks generated from the template ``task`` (which is left unchanged)."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict]:
        """Same as :meth:`generate`."""
        return self.generate(*args, **kwargs)


def _needs_extending(ta: TimeAdjuster, current: Any, test_end: Any) -> bool:
    if current is None:
        return False  # the handler is already open-ended
    if test_end is None:
        return True  # PR #2068: Qlib kept the old end here and trained on truncated data
    return ta.cal_interval(current, test_end) < 0


def handler_mod(task: dict, rolling_gen: RollingGen) -> None:
    """Extend the task's handler ``end_time`` to cover its test segment (in place).

    The default ``ds_extra_mod_func`` of :class:`RollingGen`. An open (None) test end makes the
    handler's end None too. A handler config dict gets ``kwargs.end_time`` changed; a handler
    object with an ``end_time`` attribute is replaced by a shallow copy with the new end (a
    ``FeatureHandler`` copy drops its cached features, so they are recomputed over the longer
    range, and an object shared between tasks is left alone). Tasks without a handler or
    segments, and handlers given as strings, are left as they are (as in Qlib).
    """
    try:
        kwargs = task["dataset"]["kwargs"]
        handler = kwargs["handler"]
        test_end = kwargs["segments"][rolling_gen.test_key][1]
    except (KeyError, TypeError, IndexError):
        return
    if isinstance(handler, dict):
        h_kwargs = handler.get("kwargs")
        if isinstance(h_kwargs, dict) and _needs_extending(
            rolling_gen.ta, h_kwargs.get("end_time"), test_end
        ):
            h_kwargs["end_time"] = copy.deepcopy(test_end)
    elif (
        not isinstance(handler, (str, bytes, Mapping))
        and hasattr(handler, "end_time")
        and _needs_extending(rolling_gen.ta, handler.end_time, test_end)
    ):
        new = copy.copy(handler)
        new.end_time = None if test_end is None else pd.Timestamp(test_end)
        kwargs["handler"] = new


def trunc_segments(
    ta: TimeAdjuster, segments: dict[str, Any], days: int, test_key: str = "test"
) -> None:
    """Cut every non-test segment (in place) to end ``days`` trading days before the test start,
    so that labels looking ``days`` ahead do not leak test-period prices into training."""
    points = [t for t in segments[test_key] if t is not None]
    if not points:
        raise InvalidInputError(f"trunc_segments: the {test_key!r} segment has no dates")
    test_start = min(pd.Timestamp(t) for t in points)
    for key in list(segments):
        if key != test_key:
            segments[key] = ta.truncate(segments[key], test_start, days)


def _segments_of(task: Mapping[str, Any], test_key: str) -> Mapping[str, Any]:
    try:
        segments = task["dataset"]["kwargs"]["segments"]
    except (KeyError, TypeError):
        raise InvalidInputError(
            "the task has no dataset.kwargs.segments; give it "
            "{'dataset': {'kwargs': {'segments': {'train': (...), 'test': (start, end)}}}}"
        ) from None
    if not isinstance(segments, Mapping) or test_key not in segments:
        raise InvalidInputError(
            f"the task's segments {segments!r} have no {test_key!r} segment; add it or pass "
            "test_key= to RollingGen"
        )
    return segments


class RollingGen(TaskGen):
    """Cut a task into rolling tasks whose test segments are ``step`` trading days long.

    Args:
        step: trading days between consecutive tasks (and the length of each test segment).
        rtype: ``ROLL_EX`` ("expanding": the train start stays, its end moves) or ``ROLL_SD``
            ("sliding": the train window moves); valid and test segments always slide.
        ds_extra_mod_func: called as ``f(task, rolling_gen)`` on each generated task
            (default :func:`handler_mod`); None for nothing.
        test_key: name of the test segment.
        train_key: name of the train segment.
        trunc_days: if set, non-test segments end this many trading days before the test start.
        task_copy_func: copies a task (deep copy by default).
        calendar: a :class:`TimeAdjuster` or any calendar source; None takes
            the calendar from each task's handler data (re-read on every call, so new days count).
    """

    ROLL_EX = ROLL_EX
    ROLL_SD = ROLL_SD

    def __init__(
        self,
        step: int = 40,
        rtype: str = ROLL_EX,
        ds_extra_mod_func: Callable[[dict, RollingGen], None] | None = handler_mod,
        test_key: str = "test",
        train_key: str = "train",
        trunc_days: int | None = None,
        task_copy_func: Callable[[Any], Any] = copy.deepcopy,
        calendar: Any = None,
    ) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise InvalidInputError(f"RollingGen: step must be a positive integer, got {step!r}")
        if rtype not in (ROLL_EX, ROLL_SD):
            raise InvalidInputError(
                f"RollingGen: rtype must be {ROLL_EX!r} or {ROLL_SD!r}, got {rtype!r}"
            )
        if trunc_days is not None and (not isinstance(trunc_days, int) or trunc_days < 0):
            raise InvalidInputError(
                f"RollingGen: trunc_days must be None or an integer >= 0, got {trunc_days!r}"
            )
        self.step, self.rtype = step, rtype
        self.ds_extra_mod_func = ds_extra_mod_func
        self.test_key, self.train_key = test_key, train_key
        self.trunc_days = trunc_days
        self.task_copy_func = task_copy_func
        self._fixed = calendar is not None
        self.ta: TimeAdjuster | None = None
        if isinstance(calendar, TimeAdjuster):
            self.ta = calendar
        elif calendar is not None:
            self.ta = TimeAdjuster(calendar)

    def _adjuster(self, task: Mapping[str, Any]) -> TimeAdjuster:
        if not self._fixed:
            try:
                self.ta = TimeAdjuster(task)
            except InvalidInputError as e:
                raise InvalidInputError(
                    f"RollingGen: cannot take a calendar from the task's handler ({e}); pass "
                    "RollingGen(calendar=...) with the data or a TimeAdjuster"
                ) from None
        assert self.ta is not None
        return self.ta

    def _update_task_segs(self, task: dict, segments: dict[str, Any]) -> None:
        task["dataset"]["kwargs"]["segments"] = copy.deepcopy(segments)
        if self.ds_extra_mod_func is not None:
            self.ds_extra_mod_func(task, self)

    def _following_segments(
        self, segments: Mapping[str, Any], test_end: pd.Timestamp
    ) -> Iterator[dict[str, Any]]:
        ta = self.ta
        assert ta is not None
        prev = segments
        while True:
            try:
                new = {
                    key: ta.shift(
                        seg,
                        self.step,
                        ta.SHIFT_EX
                        if key == self.train_key and self.rtype == ROLL_EX
                        else ta.SHIFT_SD,
                    )
                    for key, seg in prev.items()
                }
            except KeyError:  # a segment left a bounded calendar: no more rolling (as Qlib)
                return
            if new[self.test_key][0] > test_end:
                return
            yield new
            prev = new

    def _roll_end(self, test_end: Any) -> pd.Timestamp:
        """Qlib's ``transform_end_date``: open or past the data means the data's last date."""
        assert self.ta is not None
        if test_end is None:
            return self.ta.data_end
        try:
            end = pd.Timestamp(test_end)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"test_end {test_end!r} is not a date; pass a date or None"
            ) from None
        return min(end, self.ta.data_end)

    def gen_following_tasks(self, task: dict, test_end: Any) -> list[dict]:
        """The rolling tasks after ``task`` (excluded) whose test start is at most ``test_end``.

        Every segment of ``task`` moves ``step`` trading days per task (the train segment only
        grows under ``ROLL_EX``); None ends stay None. ``test_end`` None, or past the data,
        means the data's last date.
        """
        test_start = _segments_of(task, self.test_key)[self.test_key][0]
        if test_start is None:
            raise InvalidInputError(
                f"gen_following_tasks: the {self.test_key!r} segment has no start; give it one"
            )
        self._adjuster(task)
        segments = task["dataset"]["kwargs"]["segments"]
        res = []
        for segs in self._following_segments(segments, self._roll_end(test_end)):
            new = self.task_copy_func(task)
            self._update_task_segs(new, segs)
            res.append(new)
        return res

    def generate(self, task: dict) -> list[dict]:
        """The rolling tasks of ``task``.

        The first test segment starts at the task's test start (moved to a trading day) and
        spans ``step`` trading days; each next task moves every segment ``step`` days further,
        until a test start would fall after the test end (or the data's last date, if the test
        end is open or later). The last test segment ends at the task's test end, or stays
        open if that is None. With ``trunc_days``, train/valid end ``trunc_days`` trading days
        before the first test start (and keep that gap as they roll).
        """
        ta = self._adjuster(task)
        first = self.task_copy_func(task)
        segments = dict(ta.align_seg(_segments_of(first, self.test_key)))
        test_start, test_end = segments[self.test_key]
        if test_start is None:
            raise InvalidInputError(
                f"RollingGen: the {self.test_key!r} segment has no start; rolling needs one"
            )
        if test_end is not None and test_end < test_start:
            raise InvalidInputError(
                f"RollingGen: the {self.test_key!r} segment {test_start:%Y-%m-%d}.."
                f"{test_end:%Y-%m-%d} holds no trading day; widen it"
            )
        start_idx = ta.align_idx(test_start)
        segments[self.test_key] = (ta.get(start_idx), ta.get(start_idx + self.step - 1))
        if self.trunc_days is not None:
            trunc_segments(ta, segments, self.trunc_days, self.test_key)
        all_segs = [segments, *self._following_segments(segments, self._roll_end(test_end))]
        # Departure from Qlib, whose last test segment runs a full step (past the requested
        # end, or to an invented date for an open end): ours ends where the task's test ends.
        all_segs[-1][self.test_key] = (all_segs[-1][self.test_key][0], test_end)
        self._update_task_segs(first, all_segs[0])
        res = [first]
        for segs in all_segs[1:]:
            new = self.task_copy_func(first)  # from the first task, as Qlib's following tasks
            self._update_task_segs(new, segs)
            res.append(new)
        return res
