"""Entry point of the ``tracker`` command."""

from __future__ import annotations

import click

import tracker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(tracker.__version__, prog_name="tracker")
def cli() -> None:
    """Track experiments in a local SQLite store (or PostgreSQL + S3) and inspect them."""


def main() -> None:
    cli()
