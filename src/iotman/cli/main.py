"""``iotman``: serve, workspace, token and view commands (SPEC §1.2)."""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Any

import orjson
import typer

from iotman import __version__
from iotman.app import build_engine
from iotman.cli.view_commands import view_app
from iotman.engine.admin_service import workspace_json
from iotman.engine.engine import Engine
from iotman.errors import DefinitionInvalid, IotmanError
from iotman.settings import Settings, load_settings

__all__ = ["app", "run"]

app = typer.Typer(help="iotman: a self-hostable IoT event platform.", no_args_is_help=True, add_completion=False)
workspace_app = typer.Typer(help="Create and list workspaces in the local store.", no_args_is_help=True)
token_app = typer.Typer(help="Create bearer tokens for the admin API and ingest.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
app.add_typer(token_app, name="token")
app.add_typer(view_app, name="view")

DataOpt = Annotated[str | None, typer.Option("--data", help="Data folder of the embedded store.", show_default=False)]
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (sqlite:///path).", show_default=False)]


def _fail(exc: IotmanError) -> None:
    typer.echo(orjson.dumps({"error": exc.to_dict()}).decode(), err=True)
    raise typer.Exit(code=2)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except IotmanError as exc:
        _fail(exc)
        raise  # unreachable


def _local_engine(data: str | None, store: str | None) -> Engine:
    engine = build_engine(_settings(data=data, store=store))
    engine.open()
    return engine


def _print(value: object) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address.", show_default="127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.", show_default="8080")] = None,
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Run the HTTP server (Ctrl-C or SIGTERM stops it gracefully)."""
    import uvicorn

    from iotman.cli.tuned_server import TunedServer
    from iotman.logging_setup import configure_logging
    from iotman.web.application import create_app
    from iotman.web.http_protocol import BoundedHttpToolsProtocol

    settings = _settings(host=host, port=port, data=data, store=store)
    configure_logging(settings.log_level, settings.log_format)
    try:
        engine = build_engine(settings)
    except IotmanError as exc:
        _fail(exc)
        return
    config = uvicorn.Config(
        create_app(engine),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        access_log=settings.access_log,
        log_config=None,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    server = TunedServer(config, settings.gc_gen0_threshold)
    # uvicorn re-raises the stop signal after its graceful shutdown; with these no-op
    # handlers in place that ends the process normally (exit 0) instead of by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    if settings.gil_switch_interval_us > 0:
        sys.setswitchinterval(settings.gil_switch_interval_us / 1_000_000)
    server.run()
    if not server.started:
        sys.exit(1)


@workspace_app.command("create")
def workspace_create(
    slug: Annotated[str, typer.Argument(help="a-z, 0-9 and '-', up to 64 characters.")],
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Create a workspace; prints {"slug", "uuid", ...}."""
    engine = _local_engine(data, store)
    try:
        _print(workspace_json(engine.admin.create_workspace(slug)))
    except IotmanError as exc:
        _fail(exc)
    finally:
        engine.close()


@workspace_app.command("list")
def workspace_list(data: DataOpt = None, store: StoreOpt = None) -> None:
    """List the workspaces of the store."""
    engine = _local_engine(data, store)
    try:
        _print({"data": [workspace_json(w) for w in engine.admin.list_workspaces()]})
    finally:
        engine.close()


@token_app.command("create")
def token_create(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Workspace slug.", show_default=False)
    ] = None,
    server_admin: Annotated[
        bool, typer.Option("--server-admin", help="A token for every workspace (creates and deletes them).")
    ] = False,
    preset: Annotated[str | None, typer.Option(help="read-only, operator or full-access.", show_default=False)] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="An extra scope (repeatable).", show_default=False)
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "bootstrap",
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Print a new bearer token (shown once; only its hash is stored)."""
    engine = _local_engine(data, store)
    try:
        if server_admin:
            if workspace or preset or scope:
                raise DefinitionInvalid(
                    "--server-admin takes no --workspace, --preset or --scope",
                    code="invalid_option",
                    field="server_admin",
                )
            typer.echo(engine.admin.create_server_token(name if name != "bootstrap" else "server-admin"))
            return
        if workspace is None:
            raise DefinitionInvalid(
                "give --workspace SLUG (or --server-admin)", code="invalid_option", field="workspace"
            )
        token, _ = engine.admin.create_token(workspace, preset=preset, scopes=scope, name=name)
        typer.echo(token)
    except IotmanError as exc:
        _fail(exc)
    finally:
        engine.close()


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def run() -> None:
    app()
