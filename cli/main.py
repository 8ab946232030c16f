"""Entry point of the ``tracker`` command.

Exit codes: 0 success, 1 a tracker error (one line on stderr, no traceback), 2 bad usage.
"""

from __future__ import annotations

from typing import Any

import click

import tracker
from cli.context import Context


class TrackerGroup(click.Group):
    """Turns tracker's errors into click's one-line errors (exit 1) at one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except tracker.TrackerError as e:
            raise click.ClickException(str(e)) from e
        finally:
            if isinstance(ctx.obj, Context):
                ctx.obj.close()


@click.group(cls=TrackerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--uri",
    envvar="TRACKER_URI",
    metavar="URI",
    help="Store: a directory, sqlite:///file.db or postgresql+psycopg://… "
    "(default: $TRACKER_URI, else the nearest .tracker/ here or above).",
)
@click.option(
    "--artifact-uri",
    envvar="TRACKER_ARTIFACT_URI",
    metavar="URL",
    help="Artifact location (fsspec URL) when the store does not imply one.",
)
@click.version_option(tracker.__version__, prog_name="tracker")
@click.pass_context
def cli(ctx: click.Context, uri: str | None, artifact_uri: str | None) -> None:
    """Track experiments in a local SQLite store (or PostgreSQL + S3) and inspect them."""
    ctx.obj = Context(uri, artifact_uri)


@cli.group()
def db() -> None:
    """Maintain the metadata database."""


@db.command()
@click.pass_obj
def upgrade(obj: Context) -> None:
    """Migrate a store's schema to this version of tracker."""
    from tracker.backends.sql.db import Database

    loc = tracker.uri.resolve(obj.uri, obj.artifact_uri, create=False)
    database = Database(loc.uri, upgrade=True)
    click.echo(f"{loc.uri}: schema v{database.schema_version()}")
    database.dispose()


# Commands live in modules named for them; each module adds its commands to ``cli``.
# (registration lines below)
from cli import diff, ls, show  # noqa: E402,F401  (read commands)

cli.add_command(ls.ls)
cli.add_command(show.show)
cli.add_command(diff.diff)

from cli.bundle import export, import_  # noqa: E402
from cli.manage import gc, reap, restore, rm  # noqa: E402

for _command in (rm, restore, gc, reap, export, import_):
    cli.add_command(_command)

from cli.mlflow_io import export_group, import_group  # noqa: E402

# Same names: the groups add `mlflow` subcommands and fall back to the bundle commands.
cli.add_command(export_group)
cli.add_command(import_group)

from cli.batch import batch  # noqa: E402
from cli.run import run  # noqa: E402

cli.add_command(run)
cli.add_command(batch)

from cli.tasks import tasks, worker  # noqa: E402

cli.add_command(worker)
cli.add_command(tasks)

from cli.online import online  # noqa: E402

cli.add_command(online)


def main() -> None:
    cli()
