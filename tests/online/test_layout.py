"""The installed layout: one import namespace, and the 0.1 module paths still build objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker.online.utils import LEGACY_MODULES, get_callable_kwargs, import_module

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_installed():
    """A sub-package missing from pyproject's list would be left out of the wheel silently."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = config["package-dir"]
    found = set()
    for package, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert found == set(config["packages"])
    assert set(dirs) == {"tracker", "tracker.online", "tracker.cli"}


@pytest.mark.parametrize("old", sorted(LEGACY_MODULES))
def test_legacy_module_paths_still_import(old):
    assert import_module(old).__name__ == LEGACY_MODULES[old]


def test_a_01_config_builds_the_same_class():
    klass, kwargs = get_callable_kwargs(
        {"class": "RidgeModel", "module_path": "online.model", "kwargs": {"alpha": 1.0}}
    )
    from tracker.online.model.base import RidgeModel

    assert klass is RidgeModel and kwargs == {"alpha": 1.0}
