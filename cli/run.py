"""``tracker run CONFIG.yaml``: Qlib's ``qrun`` on the tracker store."""

from __future__ import annotations

import click

from tracker.cli.context import Context

HEADLINE = (
    "IC",
    "ICIR",
    "Rank IC",
    "Rank ICIR",
    "1day.excess_return_with_cost.annualized_return",
    "1day.excess_return_with_cost.information_ratio",
    "1day.excess_return_with_cost.max_drawdown",
)


def set_seed(task: dict, seed: int) -> None:
    """Give the model (and LightGBM-style configs) a new seed, as run_all_model varies runs."""
    model = task.get("model")
    if isinstance(model, dict):
        model.setdefault("kwargs", {})["seed"] = seed


def parse_tags(items: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


@click.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "-e",
    "--experiment",
    help="Experiment name (default: the config's experiment_name, else 'workflow').",
)
@click.option("--recorder-name", help="Name of the new run (default: mlflow_recorder).")
@click.option("--seed", type=int, help="Override the model's seed.")
@click.option("--tag", "tags", metavar="KEY=VALUE", multiple=True, help="Tag the run; repeatable.")
@click.pass_obj
def run(
    obj: Context,
    config: str,
    experiment: str | None,
    recorder_name: str | None,
    seed: int | None,
    tags: tuple[str, ...],
) -> None:
    """Train the task of a workflow CONFIG and generate its records.

    The YAML may use anchors, ${ENV} (or ${ENV:-default}) and a BASE_CONFIG_PATH merged
    underneath. The merged config is stored as the run's ``config`` artifact. A bad config
    (an unknown class or argument, a value of the wrong type, a date that does not parse, a
    missing file) fails before any training, naming the key; top-level keys that nothing reads
    are warned about.
    """
    import tracker
    from tracker.online.model.train import task_train
    from tracker.online.workflow.config import load_config, validate_task

    run_tags = parse_tags(tags)
    cfg = load_config(config, warn=warn)
    task = cfg.get("task")
    validate_task(task)
    if seed is not None:
        set_seed(task, seed)
    name = experiment or cfg.get("experiment_name") or "workflow"
    tracker.init(obj.uri, obj.artifact_uri)
    recorder = task_train(task, name, recorder_name, tags=run_tags)
    recorder.save_objects(config=cfg)
    metrics = recorder.list_metrics()
    click.echo(f"run {recorder.id} in experiment {name!r}: {recorder.refresh().status}")
    for key in HEADLINE:
        if key in metrics:
            click.echo(f"  {key:<48} {metrics[key]:.6g}")
