"""A Qlib-style task dict on a synthetic market, for the online tests (each picks its sizes)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

#: Where each model lives, as in Qlib (``qlib.contrib.model.gbdt`` …).
MODEL_MODULES = {
    "LGBModel": "tracker.online.model.gbdt",
    "RidgeModel": "tracker.online.model.linear",
}
SIGNAL_RECORD = {"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}


def synthetic_task(
    segments: Mapping[str, Sequence[Any]],
    *,
    data: Any = None,
    synthetic: Mapping[str, Any] | None = None,
    windows: Sequence[int] = (5, 10, 20),
    model: str = "RidgeModel",
    model_kwargs: Mapping[str, Any] | None = None,
    records: Sequence[Mapping[str, Any]] = (SIGNAL_RECORD,),
) -> dict[str, Any]:
    """``data`` (a path or frame) or a ``synthetic`` market config; everything is copied, so
    a test may change the returned dict freely."""
    source = data if data is not None else {"synthetic": dict(synthetic or {})}
    return copy.deepcopy(
        {
            "model": {
                "class": model,
                "module_path": MODEL_MODULES.get(model, "tracker.online.model.base"),
                "kwargs": model_kwargs or {},
            },
            "dataset": {
                "class": "Dataset",
                "module_path": "tracker.online.data.dataset",
                "kwargs": {
                    "handler": {
                        "class": "FeatureHandler",
                        "module_path": "tracker.online.data.features",
                        "kwargs": {"data": source, "windows": list(windows)},
                    },
                    "segments": {k: list(v) for k, v in segments.items()},
                },
            },
            "record": list(records),
        }
    )
