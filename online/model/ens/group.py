"""Splitting a dict of collected predictions into groups, each reduced by an ensemble (Qlib:
``qlib.model.ens.group``).

``Group(n_jobs>1)`` reduces groups on threads (no joblib dependency, as Qlib needed); nothing
is pickled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tracker.errors import InvalidTypeError
from tracker.online.model.ens.ensemble import Ensemble, RollingEnsemble

__all__ = ["Group", "RollingGroup", "rolling_group_func"]

logger = logging.getLogger(__name__)


class Group:
    """Split a dict into groups with ``group_func``, then reduce each group with ``ens``."""

    def __init__(
        self,
        group_func: Callable[..., dict[Any, Any]] | None = None,
        ens: Ensemble | Callable[..., Any] | None = None,
    ) -> None:
        self._group_func = group_func
        self._ens_func = ens

    def group(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        """``{group_key: {key: value}}`` from the ungrouped dict."""
        if not callable(self._group_func):
            raise NotImplementedError(f"{type(self).__name__}: pass group_func= to group")
        return self._group_func(*args, **kwargs)

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        """One group's dict merged into one object."""
        if not callable(self._ens_func):
            raise NotImplementedError(f"{type(self).__name__}: pass ens= to reduce groups")
        return self._ens_func(*args, **kwargs)

    def __call__(
        self,
        ungrouped_dict: Mapping[Any, Any],
        n_jobs: int = 1,
        verbose: int = 0,
        *args: Any,
        **kwargs: Any,
    ) -> dict[Any, Any]:
        """``{group_key: reduced}``; ``n_jobs > 1`` reduces groups on that many threads."""
        grouped = self.group(ungrouped_dict, *args, **kwargs)
        if verbose:
            logger.info("%s: reducing %d groups", type(self).__name__, len(grouped))
        if n_jobs == 1 or len(grouped) <= 1:
            return {key: self.reduce(value) for key, value in grouped.items()}
        workers = None if n_jobs is None or n_jobs < 1 else n_jobs
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reduced = list(pool.map(self.reduce, grouped.values()))
        return dict(zip(grouped, reduced, strict=True))


def rolling_group_func(rolling_dict: Mapping[Any, Any]) -> dict[Any, dict[Any, Any]]:
    """``{(A, B, R): x}`` -> ``{(A, B): {R: x}}``: the rolling key is the last element."""
    grouped: dict[Any, dict[Any, Any]] = {}
    for key, value in rolling_dict.items():
        if not isinstance(key, tuple) or not key:
            raise InvalidTypeError(
                f"RollingGroup: key {key!r} is not a non-empty tuple; use keys such as "
                "(model_class, test_segment) with the rolling part last"
            )
        grouped.setdefault(key[:-1], {})[key[-1]] = value
    return grouped


class RollingGroup(Group):
    """Group rolling models by everything but the last key element and concatenate each
    group with ``ens`` (default :class:`RollingEnsemble`)."""

    def __init__(self, ens: Ensemble | Callable[..., Any] | None = None) -> None:
        super().__init__(group_func=rolling_group_func, ens=ens or RollingEnsemble())
