"""Grouping and ensembling collected predictions (Qlib: ``qlib.model.ens``).

``RecorderCollector(..., process_list=[RollingGroup()])`` turns ``{(model, segment): pred}``
into ``{(model,): one rolling pred}``; :class:`AverageEnsemble` then merges models.
:mod:`.ensemble` holds the ensembles, :mod:`.group` the groups, as in Qlib.
"""

from tracker.online.model.ens.ensemble import (
    AverageEnsemble,
    Ensemble,
    RollingEnsemble,
    SingleKeyEnsemble,
)
from tracker.online.model.ens.group import Group, RollingGroup, rolling_group_func

__all__ = [
    "AverageEnsemble",
    "Ensemble",
    "Group",
    "RollingEnsemble",
    "RollingGroup",
    "SingleKeyEnsemble",
    "rolling_group_func",
]
