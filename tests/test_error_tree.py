"""One error tree: what tracker, tracker.online and tracker.cli raise for a user's mistake is a
TrackerError defined in tracker/errors.py (and drawn in its docstring), never a bare built-in."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracker import errors

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("tracker", "online", "cli")
# What a user's mistake would otherwise surface as. NotImplementedError stays allowed: it marks
# a method a subclass must write (Qlib's convention), not a user's mistake.
BUILTINS = {
    "Exception",
    "ValueError",
    "TypeError",
    "KeyError",
    "IndexError",
    "LookupError",
    "RuntimeError",
    "FileNotFoundError",
    "TimeoutError",
    "AssertionError",
}


def modules() -> Iterator[tuple[Path, ast.Module]]:
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def tracker_errors() -> dict[str, type]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.TrackerError)
    }


def test_no_bare_builtin_is_raised():
    found = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BUILTINS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: raise {exc.id}")
    assert not found, "raise a tracker.errors class instead:\n" + "\n".join(found)


def test_every_tracker_error_is_defined_in_errors_py():
    names = set(tracker_errors())
    elsewhere = []
    for path, tree in modules():
        if path == ROOT / "tracker" / "errors.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {
                    b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
                }
                if bases & names:
                    elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}")
    assert not elsewhere, "define these in tracker/errors.py:\n" + "\n".join(elsewhere)


def test_the_docstring_draws_every_class():
    doc = errors.__doc__ or ""
    missing = [name for name in tracker_errors() if name not in doc]
    assert not missing


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("tracker.backends.mlflow", "MLflowLimitation"),
        ("tracker.migrate", "MigrationError"),
        ("tracker.migrate.bundle", "BundleError"),
        ("tracker.online.workflow.task.utils", "CalendarRangeError"),
        ("tracker.online.workflow.task.manage", "WaitTimeout"),
        ("tracker.online.workflow.task.manage", "TaskFuncError"),
        ("tracker.online.workflow.task.manage", "LeaseLost"),
    ],
)
def test_moved_errors_still_import_from_their_old_module(module, name):
    if module == "tracker.backends.mlflow":
        pytest.importorskip("mlflow")
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_every_branch_is_also_its_builtin():
    """``except ValueError`` (Qlib's code) and ``except KeyError`` keep catching them."""
    assert issubclass(errors.CalendarRangeError, KeyError)
    assert issubclass(errors.WaitTimeout, TimeoutError)
    assert issubclass(errors.MLflowLimitation, NotImplementedError)
    assert issubclass(errors.InvalidTypeError, TypeError)
    assert issubclass(errors.ArtifactNotFound, FileNotFoundError)
