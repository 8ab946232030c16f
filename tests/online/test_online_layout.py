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


def imports(folder: str) -> dict[str, set[str]]:
    """``{file: modules it imports}`` for every module under ``folder``, lazy imports too."""
    import ast

    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_library_draws_no_ui():
    """Progress goes through tracker.online.progress; only the CLI imports click."""
    users = [
        f for d in ("tracker", "online") for f, names in imports(d).items() if "click" in names
    ]
    assert users == []


def test_only_the_queue_class_touches_the_sql_database():
    users = [f for f, names in imports("online").items() if "tracker.backends.sql.db" in names]
    assert users == ["online/workflow/task/queue.py"]


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("tracker.online.model.base", "tracker.online.model.gbdt", "LGBModel"),
        ("tracker.online.model.base", "tracker.online.model.linear", "RidgeModel"),
        ("online.model", "tracker.online.model.gbdt", "LGBModel"),
        ("tracker.online.workflow.task.manage", "tracker.online.workflow.task.worker", "run_task"),
        ("tracker.online.model.ens", "tracker.online.model.ens.group", "RollingGroup"),
        ("tracker.online.model.ens", "tracker.online.model.ens.ensemble", "AverageEnsemble"),
    ],
)
def test_moved_names_resolve_from_their_old_module(old, new, name):
    """Configs and pickles name the old paths; Qlib users the new (Qlib's) ones."""
    assert getattr(import_module(old), name) is getattr(import_module(new), name)


def test_a_config_naming_the_old_module_builds_the_moved_class():
    config = {"class": "LGBModel", "module_path": "tracker.online.model.base"}
    klass, _ = get_callable_kwargs(config)
    assert klass.__module__ == "tracker.online.model.gbdt"
