"""Named date segments over a :class:`FeatureHandler` (Qlib's ``DatasetH``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from tracker.errors import InvalidInputError
from tracker.online.data.features import FeatureHandler
from tracker.online.utils import init_instance_by_config

Segment = tuple[pd.Timestamp | None, pd.Timestamp | None]


def parse_date(value: Any, where: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise InvalidInputError(f"{where}: {value!r} is not a date ({e})") from None
    return None if pd.isna(stamp) else stamp


def parse_segments(segments: Mapping[str, Any]) -> dict[str, Segment]:
    """``{name: (start, end)}`` as timestamps (``None``: open); a malformed segment or a value
    that is not a date raises InvalidInputError naming it."""
    if not isinstance(segments, Mapping) or not segments:
        raise InvalidInputError(
            "Dataset: segments must be a non-empty mapping such as "
            "{'train': ('2020-01-01', '2020-12-31'), 'test': ('2021-01-01', None)}"
        )
    out: dict[str, Segment] = {}
    for name, pair in segments.items():
        where = f"Dataset: segment {name!r}"
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise InvalidInputError(f"{where} must be a (start, end) pair, got {pair!r}")
        start, end = parse_date(pair[0], where), parse_date(pair[1], where)
        if start is not None and end is not None and start > end:
            raise InvalidInputError(f"{where}: start {start:%Y-%m-%d} is after end {end:%Y-%m-%d}")
        out[str(name)] = (start, end)
    return out


class Dataset:
    """A handler cut into named date segments, ``train``/``valid``/``test`` by convention.

    ``handler`` is a :class:`~tracker.online.data.features.FeatureHandler` or its config
    ``{"class": "FeatureHandler", "module_path": "tracker.online.data.features", "kwargs": {...}}``
    (``module_path`` defaults to ``tracker.online.data.features``). ``segments`` maps names to
    ``(start, end)`` dates, both inclusive; ``None`` leaves that side open. Pickles without
    data: the handler recomputes its features after loading.
    """

    def __init__(self, handler: FeatureHandler | Mapping[str, Any], segments: Mapping[str, Any]):
        self.handler: FeatureHandler = init_instance_by_config(
            handler, default_module="tracker.online.data.features", accept_types=FeatureHandler
        )
        self.segments = parse_segments(segments)

    def config(self, **kwargs: Any) -> Dataset:
        """Qlib's ``config(dump_all=False, ...)``: a no-op, since pickling never keeps data."""
        return self

    def setup_data(self) -> Dataset:
        """Compute the handler's data now rather than on the first :meth:`prepare`."""
        self.handler.setup_data()
        return self

    def prepare(
        self,
        segments: str | Sequence[str] | slice,
        col_set: str | Sequence[str] = "__all",
        data_key: str | None = None,
    ) -> pd.DataFrame | list[pd.DataFrame]:
        """The rows of one segment (a name, or a ``slice`` of dates), or a list of frames for a
        list of names. ``col_set`` and ``data_key`` are passed to
        :meth:`FeatureHandler.fetch`: ``"__all"`` (two column levels), ``"feature"`` or
        ``"label"`` (one level), or a list of groups; ``data_key`` ``"infer"`` (default),
        ``"learn"`` or ``"raw"``. Rows whose label is NaN are included."""
        if isinstance(segments, slice):
            return self.handler.fetch(segments.start, segments.stop, col_set, data_key)
        if isinstance(segments, str):
            start, end = self._segment(segments)
            return self.handler.fetch(start, end, col_set, data_key)
        names = list(segments)
        for name in names:
            self._segment(name)  # all names are checked before any computing
        return [self.prepare(name, col_set, data_key) for name in names]

    def _segment(self, name: str) -> Segment:
        if name not in self.segments:
            raise InvalidInputError(
                f"Dataset has no segment {name!r}; segments: {', '.join(self.segments)}"
            )
        return self.segments[name]

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{k}=({'' if s is None else f'{s:%Y-%m-%d}'}..{'' if e is None else f'{e:%Y-%m-%d}'})"
            for k, (s, e) in self.segments.items()
        )
        return f"Dataset({self.handler!r}, {parts})"
