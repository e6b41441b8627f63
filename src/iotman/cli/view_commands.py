"""``iotman view rebuild``: ask a running server to rebuild a view and show its progress."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

__all__ = ["view_app"]

view_app = typer.Typer(help="Work with views on a running server.", no_args_is_help=True)


def _call(method: str, url: str, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 - http(s) checked below
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the user's server URL
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, orjson.loads(body)
        except orjson.JSONDecodeError:
            return exc.code, {"error": {"code": "http_error", "message": body[:300].decode(errors="replace")}}
    except urllib.error.URLError as exc:
        typer.echo(f"cannot reach {url}: {exc.reason}", err=True)
        raise typer.Exit(code=3) from None


def _error(status: int, body: Any) -> None:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    typer.echo(f"HTTP {status}: {error.get('code', 'error')}: {error.get('message', body)}", err=True)
    raise typer.Exit(code=2)


@view_app.command("rebuild")
def rebuild(
    workspace: Annotated[str, typer.Argument(help="Workspace slug.")],
    name: Annotated[str, typer.Argument(help="View name.")],
    url: Annotated[str, typer.Option(help="The server's base URL.")] = "http://127.0.0.1:8080",
    token: Annotated[
        str, typer.Option(envvar="IOTMAN_TOKEN", help="Bearer token with iotman:views:update (or IOTMAN_TOKEN).")
    ] = "",
    wait: Annotated[bool, typer.Option(help="Follow the rebuild with a progress bar until it ends.")] = True,
) -> None:
    """Re-fold the whole log into the view; reads keep serving the old rows until the swap."""
    if not token:
        typer.echo("give --token (or set IOTMAN_TOKEN): a token with iotman:views:update", err=True)
        raise typer.Exit(code=2)
    if not url.startswith(("http://", "https://")):
        typer.echo(f"--url must be an http:// or https:// URL, not {url!r}", err=True)
        raise typer.Exit(code=2)
    base = url.rstrip("/")
    ws, view = urllib.parse.quote(workspace, safe=""), urllib.parse.quote(name, safe="")
    status, body = _call("POST", f"{base}/views/{ws}/{view}/rebuild", token)
    if status != 202:
        _error(status, body)
    if not wait:
        typer.echo(orjson.dumps(body).decode())
        return
    columns = (TextColumn(f"rebuilding {name}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("rebuild", total=1.0)
        while True:
            status, body = _call("GET", f"{base}/api/v1/workspaces/{ws}/views/{view}", token)
            if status != 200:
                _error(status, body)
            progress = body["status"]["rebuild"] or {}
            bar.update(task, completed=progress.get("fraction", 0.0))
            if progress.get("state") != "running":
                break
            time.sleep(0.2)
    state = progress.get("state")
    typer.echo(orjson.dumps(progress).decode())
    if state != "done":
        raise typer.Exit(code=1)
