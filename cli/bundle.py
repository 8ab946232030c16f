"""``tracker export`` / ``tracker import``: the commands over :mod:`tracker.migrate.bundle`
(the bundle format and its Python API)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import click

import tracker
from tracker.cli.context import Context
from tracker.cli.output import emit_json, fmt_bytes
from tracker.entities import RunInfo, ViewType
from tracker.errors import ConfigError, ExperimentNotFound
from tracker.manager import ExpManager

T = TypeVar("T")
INCLUDE_DELETED = (
    "With --experiment, also its deleted runs; NAME may then be a deleted experiment "
    "(exported as deleted)."
)


def _progress(items: Sequence[T], label: str) -> Iterator[T]:
    """A progress bar on stderr when it is a terminal and there is more than one item."""
    stream = sys.stderr
    if len(items) < 2 or not stream.isatty():
        yield from items
        return
    with click.progressbar(items, label=label, file=stream) as bar:
        yield from bar


@click.command("export")
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Bundle directory to write; must be new or empty unless --force.",
)
@click.option("--experiment", "-e", metavar="NAME", help="Export every run of this experiment.")
@click.option("--include-deleted", is_flag=True, help=INCLUDE_DELETED)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty directory, replacing bundle.json and the exported runs' "
    "folders (other files are left alone).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def export(
    obj: Context,
    runs: tuple[str, ...],
    out: Path,
    experiment: str | None,
    include_deleted: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Write runs (by id, unique id prefix or EXPERIMENT/RUN_NAME) to a bundle directory:
    JSON metadata with full metric histories, plus every artifact file.

    `tracker import DIR` reads it back into any store."""
    if not runs and not experiment:
        raise click.UsageError("give RUN arguments, --experiment NAME, or both")
    if out.exists() and any(out.iterdir()) and not force:
        raise click.BadParameter(f"{out} is not empty (use --force)", param_hint="'--output'")
    from tracker.migrate.bundle import export_bundle  # heavy: not on every start-up

    manager = obj.manager
    infos = select_runs(obj, manager, runs, experiment, include_deleted)
    with _os_errors():
        done = export_bundle(manager, infos.values(), out, progress=_progress)
    head = f"Exported {len(done.runs)} run(s) to {out}"
    _summary(head, {"runs": done.runs}, done.metric_points, done.artifact_sizes, as_json)


def select_runs(
    obj: Context,
    manager: ExpManager,
    refs: Sequence[str],
    experiment: str | None,
    include_deleted: bool,
) -> dict[str, RunInfo]:
    """The runs named by ``refs``, and those of ``experiment`` (its deleted runs too with
    ``include_deleted``, which also reaches a deleted experiment of that name), by id."""
    infos = {i.run_id: i for i in (obj.run(ref, manager) for ref in refs)}
    if experiment:
        view = ViewType.ALL if include_deleted else ViewType.ACTIVE_ONLY
        for exp_id in _experiment_ids(manager, experiment, include_deleted):
            infos.update({i.run_id: i for i in manager.search_run_infos([exp_id], view=view)})
    return infos


def _experiment_ids(manager: ExpManager, name: str, include_deleted: bool) -> list[str]:
    active = manager.find_experiment(name)
    if active is not None:
        return [active.experiment_id]
    gone = [
        e.experiment_id
        for e in manager.list_experiment_infos(ViewType.DELETED_ONLY)
        if e.name == name
    ]
    if not gone:
        return [manager.get_experiment_by_name(name).experiment_id]  # raises, naming others
    if not include_deleted:
        raise ExperimentNotFound(
            f"experiment {name!r} is deleted: add --include-deleted to export it (as deleted)"
        )
    return gone


def _summary(
    head: str, ids: dict[str, list[str]], points: int, sizes: list[int], as_json: bool
) -> None:
    if as_json:
        emit_json({**ids, "metric_points": points, "artifacts": len(sizes), "bytes": sum(sizes)})
    else:
        click.echo(
            f"{head}: {points} metric point(s), {len(sizes)} artifact(s), {fmt_bytes(sum(sizes))}."
        )


@contextlib.contextmanager
def _os_errors() -> Iterator[None]:
    """A full disk or a permission problem as a one-line error, not a traceback."""
    try:
        yield
    except OSError as e:
        if isinstance(e, tracker.TrackerError):
            raise
        raise click.ClickException(str(e)) from e


@click.command("import")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def import_(obj: Context, bundle: Path, as_json: bool) -> None:
    """Read a bundle written by `tracker export` into this store, keeping run ids.

    Runs keep their status, times and soft deletion; experiments are found or created by
    name. Runs whose id is already in the store are skipped, so importing twice adds
    nothing. The whole bundle (JSON and every artifact's sha256) is checked before anything
    is written; a damaged bundle imports nothing. Each run is written all or nothing: one
    an import killed half-way left (SCHEDULED, host "… (importing)") is written again.
    An explicit --uri naming a store that does not exist yet creates it."""
    from tracker.migrate.bundle import import_runs, read_bundle  # not on every start-up

    docs = read_bundle(bundle)  # before the store is opened (or created)
    manager, own = _store(obj)
    try:
        with _os_errors():
            done = import_runs(manager, docs, progress=_progress)
    finally:
        if own:
            manager.close()
    for run_id in done.busy:
        click.echo(f"warning: run {run_id} is being imported by another process", err=True)
    head = f"Imported {len(done.imported)} run(s), skipped {len(done.skipped)} already in the store"
    if done.replaced:
        head += f", wrote {len(done.replaced)} again that an interrupted import had left"
    ids = {"imported": done.imported, "skipped": done.skipped, "replaced": done.replaced}
    _summary(head, ids, done.metric_points, done.artifact_sizes, as_json)


def _store(obj: Context) -> tuple[ExpManager, bool]:
    """The store to import into, and whether this command opened it (and must close it)."""
    try:
        return obj.manager, False
    except ConfigError:
        if obj.uri is None:
            raise  # no store found: do not create one somewhere by surprise
    return tracker.connect(obj.uri, obj.artifact_uri), True
