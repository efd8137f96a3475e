"""The ``clientswarm`` command line: parse, validate, call one entry point.

Every failure prints one clear line to stderr and exits non-zero; ``--debug`` shows tracebacks.
Exit codes (:mod:`clientswarm.verdict`): 0 success (a run completed and every threshold held),
1 failed (a run failed, was aborted or cancelled), 2 invalid input (config file, options, paths),
3 a run completed but a threshold failed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click

from clientswarm import __version__
from clientswarm.errors import ClientswarmError, ConfigError
from clientswarm.imports import single_threaded_native_libraries
from clientswarm.verdict import EXIT_FAILED, EXIT_INVALID


class _Group(click.Group):
    """Turns clientswarm errors into one line and an exit code instead of a traceback, and
    imports the commands of :data:`LAZY_COMMANDS` only when they are needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            source = f"{exc.source}: " if exc.source else ""
            for line in exc.problems:
                click.echo(f"error: {source}{line}", err=True)
            sys.exit(EXIT_INVALID)
        except ClientswarmError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="clientswarm")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Spawn many clients that load-test an AI inference service and measure every interaction."""
    single_threaded_native_libraries()  # before any command imports numpy
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
def validate(file: Path) -> None:
    """Check a cluster configuration FILE (YAML or JSON); one line per problem."""
    from clientswarm.config.loader import load_config_file
    from clientswarm.config.paths import FileScope
    from clientswarm.interactions.registry import build_group_interactions

    config = load_config_file(file)
    build_group_interactions(config, files=FileScope.anywhere(file.parent))  # datasets, prompts
    groups = ", ".join(
        f"{g.name} ({g.clients} client{'s' if g.clients != 1 else ''}, {g.interaction.kind})"
        for g in config.groups
    )
    click.echo(f"{file}: valid cluster {config.name!r}: {groups}")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--service",
    default="http://<service-host>:8080",
    show_default=True,
    help="The service URL the workers would be given.",
)
def render(file: Path, service: str) -> None:
    """Print exactly what the spawner of FILE would submit (secrets redacted)."""
    from clientswarm.config.loader import load_config_file
    from clientswarm.spawners.registry import render_submission

    click.echo(render_submission(load_config_file(file), service_url=service), nl=False)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the configuration file."""
    import json

    from clientswarm.config.loader import config_json_schema

    click.echo(json.dumps(config_json_schema(), indent=2))


LAZY_COMMANDS: dict[str, str] = {
    "mock-server": "clientswarm.mock.cli:mock_server_command",
    "run": "clientswarm.run.cli:run_command",
    "calibrate": "clientswarm.run.calibrate:calibrate_command",
    "serve": "clientswarm.service.cli:serve_command",
    "submit": "clientswarm.service.client_cli:submit_command",
    "status": "clientswarm.service.client_cli:status_command",
    "stop": "clientswarm.service.client_cli:stop_command",
    "results": "clientswarm.service.client_cli:results_command",
    "samples": "clientswarm.service.client_cli:samples_command",
    "compare": "clientswarm.service.compare_cli:compare_command",
    "report": "clientswarm.service.report_cli:report_command",
    "worker": "clientswarm.worker.cli:worker_command",
}
"""Commands that live next to the code they drive, imported only when invoked (or listed):
``clientswarm worker`` need not load the service, nor ``run`` the simulator."""
