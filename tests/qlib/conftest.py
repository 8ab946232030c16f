"""Real Qlib (pyqlib) on tracker's store. Everything here skips unless ``qlib`` imports: pyqlib
pulls a large tree (MLflow among it), so CI runs this directory in its own virtual
environment (see ``.ci/run``).

Market data is synthetic and seeded, written with :func:`tracker.qlib_data.write_qlib_data`:
no download. Every test checks that MLflow was never used for tracking.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.qlib.market import CODES, MARKET, synthetic_market
from tracker.qlib_data import write_qlib_data

NO_QLIB = importlib.util.find_spec("qlib") is None


class _SkippedModule(pytest.File):
    def collect(self) -> list[pytest.Item]:
        pytest.skip("pyqlib is not installed (run tests/qlib in a venv with pyqlib==0.9.7)")


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    """Without Qlib, each test module here is reported as skipped (it is not imported)."""
    if NO_QLIB:
        return _SkippedModule.from_parent(parent, path=module_path)
    return None


# Qlib and its dependencies (pandas 3, numpy 2, lightgbm) warn a lot about their own code;
# warnings from tracker's code stay errors (pyproject's filterwarnings = error).
_THIRD_PARTY_WARNINGS = [
    f"ignore::{kind}:{module}.*"
    for kind in ("DeprecationWarning", "FutureWarning", "UserWarning", "RuntimeWarning")
    for module in ("qlib", "lightgbm", "pandas", "numpy", "mlflow", "joblib")
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            for spec in _THIRD_PARTY_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


@pytest.fixture(scope="session")
def provider_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qlib_data(
        synthetic_market(), tmp_path_factory.mktemp("qlib") / "us_data", universes={MARKET: CODES}
    )


class MlflowSpy:
    """Records every entry into MLflow's tracking API (the calls delegate unchanged)."""

    ENTRY_POINTS = ["start_run", "end_run", "set_tracking_uri", "set_experiment", "log_metric"]

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import mlflow
        import mlflow.tracking

        self.calls: list[str] = []
        for name in self.ENTRY_POINTS:
            monkeypatch.setattr(mlflow, name, self._spy(name, getattr(mlflow, name)))
        client = mlflow.tracking.MlflowClient
        spy = self

        class SpiedClient(client):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                spy.calls.append("MlflowClient")
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(mlflow.tracking, "MlflowClient", SpiedClient)
        monkeypatch.setattr(mlflow, "MlflowClient", SpiedClient)

    def _spy(self, name: str, func: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return func(*args, **kwargs)

        return wrapper


@pytest.fixture
def qlib_store(
    provider_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """``qlib.init`` on the synthetic data with tracker as the experiment manager; yields the
    store's URI. Afterwards: no MLflow call was made and no ``mlruns`` folder exists."""
    import qlib
    from qlib.workflow import R

    # qlib.init installs its own excepthook; keep the test process's.
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    spy = MlflowSpy(monkeypatch)
    uri = f"sqlite:///{tmp_path / 'store' / 'tracker.db'}"
    qlib.init(
        provider_uri=str(provider_dir),
        region="us",
        kernels=1,
        logging_level=logging.WARNING,
        exp_manager={
            "class": "TrackerExpManager",
            "module_path": "tracker.qlib",
            "kwargs": {"uri": uri, "default_exp_name": "Experiment"},
        },
    )
    try:
        yield uri
    finally:
        R.end_exp()
    assert spy.calls == [], f"MLflow's tracking API was used: {spy.calls}"
    # tmp_path is also the working directory (tests/conftest.py), MLflow's default place.
    found = [str(p) for p in tmp_path.rglob("mlruns")]
    assert not found, f"an MLflow store was created: {found}"
