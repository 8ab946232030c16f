"""The backend interface stays small and below the object API: what a new backend must write,
and that the base classes never import the layer built on them."""

from __future__ import annotations

import ast
from pathlib import Path

import tracker
from tracker.backends.memory import MemoryExpManager
from tracker.backends.sql.reader import SQLiteReader
from tracker.manager import ExpManager, ExpReader

READS = {
    "list_experiment_infos",
    "get_run_info",
    "_list_run_infos",
    "_get_runs_data",
    "_get_metric_history",
    "list_artifact_entries",
}
WRITES = {
    "create_experiment",
    "set_experiment_lifecycle",
    "create_run",
    "_update_run",
    "log_batch",
    "delete_tags",
    "delete_run_permanently",
    "record_artifacts",
    "forget_artifacts",
}


def test_the_abstract_core_is_what_the_readme_lists():
    assert ExpReader.__abstractmethods__ == READS
    assert ExpManager.__abstractmethods__ == READS | WRITES
    source = (Path(tracker.__file__).parent / "backends" / "memory.py").read_text()
    for name in READS | WRITES:  # the reference backend writes exactly the core
        assert f"def {name}(" in source


def test_the_reader_has_no_writes():
    assert not issubclass(SQLiteReader, ExpManager)
    for name in WRITES | {"update_run", "log_metrics", "purge_run", "reap"}:
        assert not hasattr(SQLiteReader, name)


def test_the_memory_backend_overrides_nothing_but_the_core():
    own = {n for n, v in vars(MemoryExpManager).items() if callable(v) and not n.startswith("__")}
    assert own - {"_run", "_writable"} == READS | WRITES


def test_the_backend_base_never_imports_the_object_layer():
    """Not even lazily: manager ⇢ experiment → recorder → manager was a hidden cycle."""
    source = (Path(tracker.__file__).parent / "manager.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    layer = {"tracker.experiment", "tracker.recorder", "tracker.records", "tracker.objects"}
    assert not imported & layer
    assert not {"pandas", "tracker.facade"} & imported
