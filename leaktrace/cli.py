"""The `leaktrace` command."""

from __future__ import annotations

import gc
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from leaktrace.autograph.cli import app as autograph_app

if TYPE_CHECKING:
    from leaktrace.config import Settings

app = typer.Typer(help="Leaktrace: forensic video watermarking and leak tracing.", no_args_is_help=True)
app.add_typer(autograph_app, name="autograph")
admin_app = typer.Typer(help="Accounts and applications.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")

err = Console(stderr=True)
DEMO_NAME = "demo"
DEMO_CREDENTIALS = "demo-credentials.json"


def _settings() -> Settings:
    """The service settings, imported on first use: `leaktrace autograph` needs none of the service stack."""
    from leaktrace.config import get_settings

    return get_settings()


def _database(settings: Settings):  # type: ignore[no-untyped-def]
    # Every command creates or upgrades the database on first use.
    from leaktrace.store.db import open_database

    settings.ensure_data_dir()
    return open_database(settings.resolved_database_url)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    embedded_worker: bool = typer.Option(
        None, "--embedded-worker/--no-embedded-worker", help="Consume the queue in this process (default: yes for the SQLite queue)."
    ),
) -> None:
    """Run the API, with queue consumer threads inside it by default."""
    import uvicorn

    from leaktrace.api.app import create_app
    from leaktrace.api.redact import access_log_config
    from leaktrace.tasks.queue import make_queue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    if settings.public_url is None:
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
    db = _database(settings)
    queue = make_queue(settings)
    run_worker = queue.is_embedded if embedded_worker is None else embedded_worker
    err.print(
        f"Leaktrace on http://{host}:{port} (data in {settings.data_dir.resolve()}, "
        f"{'embedded worker' if run_worker else 'no embedded worker'})"
    )
    api = create_app(settings, db=db, queue=queue, run_worker=run_worker)
    # Everything built so far lives as long as the process. Freezing it keeps the garbage
    # collector's full passes, which a large list response triggers, from walking it again on
    # every request: about a quarter of the CPU time of a 1000-job page (bench/api.py).
    gc.collect()
    gc.freeze()
    # The access log leaves out secrets sent in URLs (tokens, client secrets, signatures).
    uvicorn.run(api, host=host, port=port, log_config=access_log_config())


@app.command()
def worker(threads: int = typer.Option(None, help="Consumer threads (default LEAKTRACE_WORKER_THREADS).")) -> None:
    """Consume the queue (jobs and backtraces) until interrupted."""
    from leaktrace.tasks.queue import Supervisor, make_queue, process_consumer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings()
    _database(settings)
    queue = make_queue(settings)
    supervisor = Supervisor(queue)
    supervisor.start()
    try:
        process_consumer(queue, workers=threads or settings.worker_threads).run()
    finally:
        supervisor.stop()


@admin_app.command("create-app")
def create_app_command(
    name: str = typer.Option(..., help="Account (user) name; created if it does not exist."),
    email: str = typer.Option(None, help="Email of a new account."),
    scopes: str = typer.Option("me,mediahub,autograph", help="Comma-separated scopes the application may request."),
    app_name: str = typer.Option(None, "--app-name", help="Application name (default: the account name)."),
) -> None:
    """Create an application (and its account if needed); prints user_id, client_id, client_secret."""
    from leaktrace.store import accounts
    from leaktrace.store.errors import InvalidInput

    settings = _settings()
    db = _database(settings)
    try:
        scope_list = accounts.parse_scopes(scopes)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.message, param_hint="--scopes") from None
    user = accounts.find_user_by_name(db, name=name) or accounts.create_user(db, name=name, email=email)
    application, secret = accounts.create_application(
        db, settings.fernet(), user_id=user.id, name=app_name or name, scopes=scope_list
    )
    typer.echo(json.dumps({"user_id": user.id, "client_id": application.client_id, "client_secret": secret}))


@admin_app.command("reset-secret")
def reset_secret(client_id: str = typer.Option(..., help="The application's client_id.")) -> None:
    """Give an application a new client_secret (its tokens stop working); prints it as JSON."""
    from leaktrace.store import accounts
    from leaktrace.store.errors import NotFound

    settings = _settings()
    try:
        application, secret = accounts.reset_client_secret(_database(settings), settings.fernet(), client_id=client_id)
    except NotFound:
        err.print(f"[red]No application with client_id {client_id}[/red]")
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"user_id": application.user_id, "client_id": application.client_id, "client_secret": secret}))


@admin_app.command("demo")
def demo(reset: bool = typer.Option(False, "--reset", help="Issue a new secret for the demo application.")) -> None:
    """Create the demo account and application once and print its credentials.

    The credentials are also written to `<data dir>/demo-credentials.json` (mode 600); later runs
    only say where they are.
    """
    from leaktrace.store import accounts

    settings = _settings()
    db = _database(settings)
    path = settings.data_dir / DEMO_CREDENTIALS
    user = accounts.find_user_by_name(db, name=DEMO_NAME)
    existing = accounts.list_applications(db, user_id=user.id) if user else []
    if existing and not reset:
        typer.echo(
            f"Demo application exists: client_id {existing[0].client_id}.\n"
            f"Its client_secret was printed on the first run and saved in {path}.\n"
            f"For a new secret run: .venv/bin/leaktrace admin demo --reset"
        )
        return
    if existing:
        application, secret = accounts.reset_client_secret(db, settings.fernet(), client_id=existing[0].client_id)
    else:
        user = user or accounts.create_user(db, name=DEMO_NAME, email="demo@localhost")
        application, secret = accounts.create_application(
            db, settings.fernet(), user_id=user.id, name="demo", scopes=["me", "mediahub", "autograph"]
        )
    credentials = {"user_id": application.user_id, "client_id": application.client_id, "client_secret": secret}
    _write_private(path, json.dumps(credentials, indent=2) + "\n")
    typer.echo(f"Demo account created. Keep these credentials (also saved in {path}):")
    typer.echo(f"  client_id:     {application.client_id}")
    typer.echo(f"  client_secret: {secret}")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@app.command("sign-link")
def sign_link(
    file_id: str = typer.Option(..., "--file-id", help="Id of the file (an AutoGraph master) to download."),
    tag: str = typer.Option(..., "--tag", help="The viewer's tag to embed; percent-encoded in the link."),
    validity: int = typer.Option(..., "--validity", min=1, help="Seconds from now until the link expires."),
    client_id: str = typer.Option(..., "--client-id", help="The signing application's client_id."),
    client_secret_file: Path = typer.Option(
        None, "--client-secret-file", help="File holding the application's client_secret (default: the env variable)."
    ),
    base_url: str = typer.Option(None, "--base-url", help="Scheme and host of the API (default LEAKTRACE_PUBLIC_URL)."),
    client_secret_arg: str = typer.Option(
        None, "--client-secret", hidden=True, help="Deprecated: visible to other users in the process list."
    ),
) -> None:
    """Print an HMAC-signed download link for one viewer (works offline: nothing is looked up).

    The client_secret is read from the file `--client-secret-file` or from the environment
    variable LEAKTRACE_CLIENT_SECRET, never from the command line, where other users of the
    machine can read it (`--client-secret` still works for old scripts).
    """
    from leaktrace.delivery import signing
    from leaktrace.ids import is_id

    client_secret = _client_secret(client_secret_file, client_secret_arg)

    if not is_id(file_id):
        raise typer.BadParameter("must be 24 lowercase hex characters", param_hint="--file-id")
    if not tag:
        raise typer.BadParameter("must not be empty", param_hint="--tag")
    try:
        signing.secret_key(client_secret)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="the client_secret") from None
    try:
        origin = signing.origin(base_url or _settings().base_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--base-url") from None
    link = signing.download_link(
        file_id=file_id,
        tag=tag,
        expiry_time=signing.expiry_after(validity),
        client_id=client_id,
        client_secret=client_secret,
        base_url=origin,
    )
    typer.echo(link)


CLIENT_SECRET_ENV = "LEAKTRACE_CLIENT_SECRET"


def _client_secret(path: Path | None, given: str | None) -> str:
    """The signing secret: the old `--client-secret` flag, else the file, else LEAKTRACE_CLIENT_SECRET."""
    if given:
        return given.strip()
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read it: {exc.strerror}", param_hint="--client-secret-file") from None
    secret = os.environ.get(CLIENT_SECRET_ENV, "").strip()
    if not secret:
        raise typer.BadParameter(f"give the client_secret in a file or in {CLIENT_SECRET_ENV}", param_hint="--client-secret-file")
    return secret


if __name__ == "__main__":
    app()
