"""Entry point of the ``tracker`` command.

Exit codes: 0 success, 1 an error, 2 bad usage. An error is one line on stderr, ``Error: …``,
with any password masked: a user's mistake (every :class:`tracker.TrackerError`), a file or
network problem, missing cloud credentials. Anything else is a bug in tracker or in code it
ran: the same one line naming the exception, then how to see the traceback (``--debug`` or
``TRACKER_DEBUG=1``, which show every error's traceback).
"""

from __future__ import annotations

import sys
from typing import Any

import click

import tracker
from tracker import registry
from tracker.cli.context import Context
from tracker.cli.progress import progress_bars
from tracker.errors import InvalidQueryError
from tracker.redact import mask, one_line

DEBUG_ENV = "TRACKER_DEBUG"


class TrackerGroup(click.Group):
    """Turns every error into click's one-line error (exit 1) at one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with progress_bars():
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise  # click reports these itself (a closed pipe, as in `tracker ls | head`, quietly)
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(describe(e)) from e
        finally:
            if isinstance(ctx.obj, Context):
                ctx.obj.close()


def describe(error: Exception) -> str:
    """The line shown for ``error``: its message for a user's or the environment's error, else
    the exception's type and message and how to see the traceback."""
    if isinstance(error, InvalidQueryError):
        return mask(str(error))  # its caret lines point into the query
    if isinstance(error, (tracker.TrackerError, OSError)):
        return _one_line(error)
    if _is_cloud_error(error):
        hint = ""
        if "Credentials" in type(error).__name__:
            hint = "; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        return f"S3: {_one_line(error)}{hint}"
    return (
        f"unexpected {type(error).__name__}: {_one_line(error)}\n"
        f"(run `tracker --debug …` or set {DEBUG_ENV}=1 to see the traceback)"
    )


def _one_line(error: BaseException) -> str:
    return one_line(error) or type(error).__name__


def _is_cloud_error(error: Exception) -> bool:
    """botocore's errors (missing credentials, an unreachable endpoint, a refused request),
    recognised without importing botocore, which only a command that used S3 has loaded."""
    exceptions = sys.modules.get("botocore.exceptions")
    return exceptions is not None and isinstance(
        error, (exceptions.BotoCoreError, exceptions.ClientError)
    )


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
@click.option(
    "--debug",
    is_flag=True,
    envvar=DEBUG_ENV,
    help=f"Show the Python traceback of an error (also: {DEBUG_ENV}=1).",
)
@click.version_option(tracker.__version__, prog_name="tracker")
@click.pass_context
def cli(ctx: click.Context, uri: str | None, artifact_uri: str | None, debug: bool) -> None:
    """Track experiments in a local SQLite store (or PostgreSQL + S3) and inspect them."""
    ctx.obj = Context(uri, artifact_uri)


@cli.group()
def db() -> None:
    """Maintain the metadata database."""


@db.command()
@click.pass_obj
def upgrade(obj: Context) -> None:
    """Migrate a store's schema to this version of tracker."""
    loc = tracker.uri.resolve(obj.uri, obj.artifact_uri, create=False)
    click.echo(registry.upgrade(loc.uri))


# Commands live in modules named for them; each module adds its commands to ``cli``.
# (registration lines below)
from tracker.cli import diff, ls, show  # noqa: E402,F401  (read commands)

cli.add_command(ls.ls)
cli.add_command(show.show)
cli.add_command(diff.diff)

from tracker.cli.bundle import export, import_  # noqa: E402
from tracker.cli.manage import gc, reap, restore, rm, verify  # noqa: E402

for _command in (rm, restore, gc, reap, verify, export, import_):
    cli.add_command(_command)

from tracker.cli.mlflow_io import export_group, import_group  # noqa: E402

# Same names: the groups add `mlflow` subcommands and fall back to the bundle commands.
cli.add_command(export_group)
cli.add_command(import_group)

from tracker.cli.batch import batch  # noqa: E402
from tracker.cli.run import run  # noqa: E402

cli.add_command(run)
cli.add_command(batch)

from tracker.cli.tasks import tasks, worker  # noqa: E402

cli.add_command(worker)
cli.add_command(tasks)

from tracker.cli.online import online  # noqa: E402

cli.add_command(online)


def main() -> None:
    cli()
