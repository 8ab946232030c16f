"""Entry point of the ``tracker`` command."""

from __future__ import annotations

import click

import tracker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(tracker.__version__, prog_name="tracker")
def cli() -> None:
    """Track experiments in a local SQLite store (or PostgreSQL + S3) and inspect them."""


@cli.group()
def db() -> None:
    """Maintain the metadata database."""


@db.command()
@click.option("--uri", envvar="TRACKER_URI", help="Store to upgrade (default: nearest .tracker/).")
def upgrade(uri: str | None) -> None:
    """Migrate a store's schema to this version of tracker."""
    from tracker.backends.sql.db import Database
    from tracker.uri import resolve

    try:
        loc = resolve(uri, create=False)
        database = Database(loc.uri, upgrade=True)
        click.echo(f"{loc.uri}: schema v{database.schema_version()}")
        database.dispose()
    except tracker.TrackerError as e:
        raise click.ClickException(str(e)) from e


def main() -> None:
    cli()
