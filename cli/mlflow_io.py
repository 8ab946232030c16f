"""``tracker import mlflow SOURCE`` and ``tracker export mlflow [RUN]... DEST``.

``import`` and ``export`` become groups with an ``mlflow`` subcommand; anything else after
them goes to the bundle commands of :mod:`tracker.cli.bundle`, so ``tracker import DIR`` and
``tracker export RUN -o DIR`` work as before (a bundle directory named ``mlflow`` is
reached as ``./mlflow``).
"""

from __future__ import annotations

from typing import Any

import click

from tracker.cli.bundle import INCLUDE_DELETED, _os_errors, _progress, _store, select_runs
from tracker.cli.bundle import export as export_bundle
from tracker.cli.bundle import import_ as import_bundle
from tracker.cli.context import Context
from tracker.cli.output import emit_json, fmt_bytes
from tracker.errors import ExperimentNotFound
from tracker.uri import mask

_FALLBACK = "_tracker_fallback_args"


class FallbackGroup(click.Group):
    """A group whose arguments, unless they start with one of its subcommands (or ask for
    help), go to a fallback command invoked under the group's own name."""

    def __init__(self, *args: Any, fallback: click.Command, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fallback = fallback

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            setattr(ctx, _FALLBACK, list(args))  # parsed by the fallback in invoke()
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        args = getattr(ctx, _FALLBACK, None)
        if args is None:
            return super().invoke(ctx)
        with ctx:
            # Parent and name as if the fallback were the command itself: its usage line and
            # errors read "tracker import …", not "tracker import <hidden name> …".
            sub = self.fallback.make_context(ctx.info_name, args, parent=ctx.parent)
            with sub:
                return sub.command.invoke(sub)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sub = click.Context(self.fallback, info_name=ctx.info_name, parent=ctx.parent)
        self.fallback.format_help(sub, formatter)
        self.format_commands(ctx, formatter)


# -------------------------------------------------------------------------------------- import


@click.command("mlflow")
@click.argument("source")
@click.option(
    "--experiment",
    "-e",
    "experiments",
    multiple=True,
    metavar="NAME",
    help="Import only this experiment (repeat for more).",
)
@click.option("--include-deleted", is_flag=True, help="Also deleted runs and experiments.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def import_mlflow(
    obj: Context, source: str, experiments: tuple[str, ...], include_deleted: bool, as_json: bool
) -> None:
    """Read an MLflow store into this one, keeping run ids.

    SOURCE is an mlruns directory (or file: URI), an MLflow SQLite file, or a database URL
    (sqlite:///mlflow.db, postgresql://…); it is read directly, without mlflow, and never
    changed. Experiments, runs, statuses, times, params, tags (mlflow.* ones included), full
    metric histories and artifacts are copied. Runs already here are skipped, so importing
    twice adds nothing; a run `tracker export mlflow` wrote comes back under its own id, so
    a round trip adds nothing either. Every run is checked before anything is written, and
    written all or nothing (one an interrupted import left is written again)."""
    from tracker.migrate import import_runs
    from tracker.migrate.mlflow_source import open_mlflow_source

    src = open_mlflow_source(source)
    try:
        unknown = set(experiments) - set(src.experiment_names())
        if unknown:
            raise ExperimentNotFound(
                f"{mask(source)} has no experiment named {sorted(unknown)[0]!r}"
            )
        manager, own = _store(obj)
        try:
            with _os_errors():
                summary = import_runs(
                    manager,
                    list(src.runs()),
                    experiments=experiments,
                    include_deleted=include_deleted,
                    progress=_progress,
                )
        finally:
            if own:
                manager.close()
    finally:
        src.close()
    for run_id in summary.in_progress:
        click.echo(f"warning: run {run_id} is being imported by another process", err=True)
    for skip in summary.artifacts_skipped:
        what = f"artifact {skip['path']!r}" if skip["path"] else "artifacts"
        click.echo(f"warning: run {skip['run_id']}: {what} not copied: {skip['reason']}", err=True)
    if as_json:
        emit_json(summary.as_dict())
        return
    left = f", left out {len(summary.excluded)} deleted or unselected" if summary.excluded else ""
    if summary.replaced:
        left += f", wrote {len(summary.replaced)} again that an interrupted import had left"
    click.echo(
        f"Imported {len(summary.imported)} run(s) into {len(summary.experiments)} "
        f"experiment(s), skipped {len(summary.skipped)} already in the store{left}: "
        f"{summary.params} param(s), {summary.tags} tag(s), {summary.metric_points} metric "
        f"point(s), {summary.artifacts} artifact(s), {fmt_bytes(summary.bytes)}."
    )


# -------------------------------------------------------------------------------------- export


@click.command("mlflow")
@click.argument("args", nargs=-1, required=True, metavar="[RUN]... DEST")
@click.option("--experiment", "-e", metavar="NAME", help="Export every run of this experiment.")
@click.option("--include-deleted", is_flag=True, help=INCLUDE_DELETED)
@click.option(
    "--artifact-root",
    metavar="URL",
    help="Artifact location for experiments created in DEST "
    "(default: mlartifacts/ beside a SQLite file, else MLflow's default).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def export_mlflow(
    obj: Context,
    args: tuple[str, ...],
    experiment: str | None,
    include_deleted: bool,
    artifact_root: str | None,
    as_json: bool,
) -> None:
    """Write runs (by id, unique id prefix or EXPERIMENT/RUN_NAME) into an MLflow store.

    DEST is what MLflow's client takes: sqlite:///mlflow.db, postgresql://…, http://server,
    or a directory / file: URI (a file store). Experiments are found or created by name;
    runs get params, tags, full metric histories, status, times and artifacts, and the tag
    tracker.source_run_id, by which a second export skips them (as it skips runs imported
    from DEST). Deleted runs and experiments (--include-deleted) arrive deleted. Needs the
    mlflow package."""
    from tracker.migrate.mlflow_export import export_runs

    *runs, dest = args
    if not runs and not experiment:
        raise click.UsageError("give RUN arguments, --experiment NAME, or both, then DEST")
    manager = obj.manager
    infos = select_runs(obj, manager, runs, experiment, include_deleted)
    with _os_errors():
        summary = export_runs(
            manager, list(infos.values()), dest, artifact_root=artifact_root, progress=_progress
        )
    if as_json:
        emit_json(
            {
                "exported": summary.exported,
                "skipped": summary.skipped,
                "metric_points": summary.metric_points,
                "artifacts": summary.artifacts,
                "bytes": summary.bytes,
            }
        )
        return
    click.echo(
        f"Exported {len(summary.exported)} run(s) to {mask(dest)}, skipped {len(summary.skipped)} "
        f"exported before: {summary.metric_points} metric point(s), {summary.artifacts} "
        f"artifact(s), {fmt_bytes(summary.bytes)}."
    )


import_group = FallbackGroup(
    "import",
    fallback=import_bundle,
    commands={"mlflow": import_mlflow},
    help="Import a bundle written by `tracker export` (import BUNDLE) or an MLflow store "
    "(import mlflow SOURCE).",
    short_help="Import a bundle (import DIR) or an MLflow store (import mlflow SOURCE).",
)
export_group = FallbackGroup(
    "export",
    fallback=export_bundle,
    commands={"mlflow": export_mlflow},
    help="Export runs to a bundle directory (export RUN... -o DIR) or into an MLflow store "
    "(export mlflow RUN... DEST).",
    short_help="Export runs to a bundle (export RUN… -o DIR) or to MLflow (export mlflow …).",
)
