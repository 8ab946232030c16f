"""Table definitions of the native store; rows never leave ``tracker.backends.sql``.

Child tables key on ``runs.pk`` (an integer) rather than the 32-character public run id, which
keeps the metric-history index small and inserts fast.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Text, text
from sqlmodel import Field, SQLModel

from tracker.backends.sql import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "metadata"]

metadata = SQLModel.metadata


class SchemaRow(SQLModel, table=True):
    __tablename__ = "tracker_schema"

    id: int = Field(default=1, primary_key=True)
    version: int


class ExperimentRow(SQLModel, table=True):
    __tablename__ = "experiments"
    # A deleted experiment frees its name (MLflow keeps it forever, which makes Qlib users
    # `rm -r mlruns`); only active names are unique.
    __table_args__ = (
        Index(
            "ux_experiments_active_name",
            "name",
            unique=True,
            sqlite_where=text("lifecycle = 'active'"),
            postgresql_where=text("lifecycle = 'active'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(Text, nullable=False))
    lifecycle: str = Field(default="active", max_length=16)
    creation_time: int = Field(sa_column=Column(BigInteger, nullable=False))


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_exp_life_start", "experiment_id", "lifecycle", "start_time"),)

    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=32, unique=True)
    experiment_id: int = Field(foreign_key="experiments.id")
    name: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16)
    lifecycle: str = Field(default="active", max_length=16)
    start_time: int | None = Field(default=None, sa_column=Column(BigInteger))
    end_time: int | None = Field(default=None, sa_column=Column(BigInteger))
    heartbeat: int | None = Field(default=None, sa_column=Column(BigInteger))
    pid: int | None = None
    host: str | None = Field(default=None, sa_column=Column(Text))


class ParamRow(SQLModel, table=True):
    __tablename__ = "params"

    run_pk: int = Field(foreign_key="runs.pk", primary_key=True)
    key: str = Field(sa_column=Column(Text, primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))
    # The value parsed as a number, or NULL: lets filters compare params numerically.
    value_num: float | None = Field(default=None, sa_column=Column(Float))


class TagRow(SQLModel, table=True):
    __tablename__ = "tags"

    run_pk: int = Field(foreign_key="runs.pk", primary_key=True)
    key: str = Field(sa_column=Column(Text, primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))


class MetricRow(SQLModel, table=True):
    """The full history. ``value`` is NULL for NaN, which SQLite cannot store; filters treat
    NULL as NaN (only ``!=`` and ``NOT IN`` match it) on SQLite and PostgreSQL alike."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_key_step", "run_pk", "key", "step"),)

    id: int | None = Field(default=None, primary_key=True)
    run_pk: int = Field(foreign_key="runs.pk")
    key: str = Field(sa_column=Column(Text, nullable=False))
    step: int = Field(sa_column=Column(BigInteger, nullable=False))
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    value: float | None = Field(default=None, sa_column=Column(Float(precision=53)))


class LatestMetricRow(SQLModel, table=True):
    __tablename__ = "latest_metrics"
    __table_args__ = (Index("ix_latest_key_value", "key", "value"),)

    run_pk: int = Field(foreign_key="runs.pk", primary_key=True)
    key: str = Field(sa_column=Column(Text, primary_key=True))
    step: int = Field(sa_column=Column(BigInteger, nullable=False))
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    value: float | None = Field(default=None, sa_column=Column(Float(precision=53)))


class ArtifactRow(SQLModel, table=True):
    __tablename__ = "artifacts"

    run_pk: int = Field(foreign_key="runs.pk", primary_key=True)
    path: str = Field(sa_column=Column(Text, primary_key=True))
    size: int
    checksum: str = Field(max_length=80)
    mtime: int = Field(sa_column=Column(BigInteger, nullable=False))
