"""Qlib's object API over a backend: experiments as :class:`~tracker.experiment.Experiment`
objects and runs as a DataFrame. Backends know nothing of these; ``R`` and the experiment
objects call here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracker.entities import Lifecycle
from tracker.errors import ExperimentNotFound, InvalidInputError
from tracker.experiment import Experiment
from tracker.manager import ExpManager
from tracker.validation import check_name

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["create_exp", "delete_exp", "get_exp", "list_experiments", "search_records"]


def create_exp(manager: ExpManager, experiment_name: str | None = None) -> Experiment:
    name = check_name(experiment_name or manager.default_exp_name, "experiment name")
    return Experiment(manager, manager.create_experiment(name))


def get_exp(
    manager: ExpManager,
    *,
    experiment_id: str | None = None,
    experiment_name: str | None = None,
    create: bool = True,
) -> Experiment:
    """By id, else by name (default: ``default_exp_name``); created if missing and
    ``create``, else ExperimentNotFound. Deleted experiments count as missing."""
    if experiment_id is not None:
        info = manager.get_experiment(str(experiment_id))
        if info.lifecycle is Lifecycle.DELETED:
            raise ExperimentNotFound(f"experiment {experiment_id!r} is deleted")
    else:
        name = experiment_name or manager.default_exp_name
        info = (
            manager.get_or_create_experiment(name)
            if create
            else manager.get_experiment_by_name(name)
        )
    return Experiment(manager, info)


def delete_exp(
    manager: ExpManager, experiment_id: str | None = None, experiment_name: str | None = None
) -> None:
    if experiment_id is None and experiment_name is None:
        raise InvalidInputError("delete_exp needs experiment_id or experiment_name")
    exp = get_exp(
        manager, experiment_id=experiment_id, experiment_name=experiment_name, create=False
    )
    manager.set_experiment_lifecycle(exp.id, Lifecycle.DELETED)


def list_experiments(manager: ExpManager) -> dict[str, Experiment]:
    return {i.name: Experiment(manager, i) for i in manager.list_experiment_infos()}


def search_records(manager: ExpManager, *args: Any, **kwargs: Any) -> pd.DataFrame:
    """:func:`tracker.records.search_records`: runs as a DataFrame (pandas loads on use)."""
    from tracker.records import search_records as frame

    return frame(manager, *args, **kwargs)
